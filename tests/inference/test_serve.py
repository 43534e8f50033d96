"""gRPC round trip on a free loopback port: predictions, layer names, bad images, CLI errors."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from gati_synthetic import make_images
from PIL import Image

from spidercache.errors import UserError
from spidercache.inference.runtime import Exit, GatiRuntime
from spidercache.inference.serve import GatiClient, GatiServicer, read_image, start_server


@pytest.fixture()
def server(tiny_base, tiny_exploration):
    exits = [
        Exit(h.unit, h.name, tiny_exploration.build_head(i), 0.9)
        for i, h in enumerate(tiny_exploration.heads)
        if h.variant == "pool2_mlp"
    ]
    runtime = GatiRuntime(tiny_base, exits)
    srv, port = start_server(GatiServicer(runtime, ["a", "b", "c", "d"]), port=0)
    client = GatiClient(f"127.0.0.1:{port}")
    yield runtime, client, port
    client.close()
    srv.stop(0)


def test_round_trip_matches_local_runtime(server):
    runtime, client, _ = server
    x, _ = make_images(12, seed=21)
    local = runtime.predict_images(x)
    for i in range(len(x)):
        r = client.predict(x[i])
        assert r.prediction == int(local.labels[i])
        assert r.layer == runtime.layer_name(int(local.exit_unit[i]))
        assert r.label == "abcd"[r.prediction]
        assert r.roundtrip_ms >= r.handler_ms >= r.server_ms >= 0
    info = client.info()
    assert (info.channels, info.height, info.width) == (1, 28, 28)
    assert len(info.heads) == 2


def test_wrong_image_is_resized_or_refused_and_server_goes_on(server):
    runtime, client, _ = server
    with pytest.raises(UserError, match="model takes 1x28x28"):
        client.predict(np.zeros((4, 28, 28), dtype=np.uint8))  # neither grey nor colour: refused
    x, _ = make_images(3, seed=22, size=40)
    colour = x.repeat(3, axis=1)
    for image in (x[0], colour[1]):  # another size, and colour for a grey model: resized like preprocess does
        assert client.predict(image).prediction == int(runtime.predict_images(image[None].copy()).labels[0])
    x, _ = make_images(1, seed=22)
    assert client.predict(x[0]).prediction == int(runtime.predict_images(x).labels[0])


def test_a_second_server_on_a_port_in_use_is_refused(server):
    runtime, client, port = server
    with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{port} \\(in use"):
        start_server(GatiServicer(runtime), port=port)  # gRPC's port reuse would let both serve
    assert client.predict(make_images(1, seed=26)[0][0]).layer  # the first one still answers


def test_a_large_photo_is_resized_by_the_client_not_refused_for_size(server):
    runtime, client, _ = server
    rng = np.random.default_rng(27)
    photo = rng.integers(0, 256, size=(3, 1200, 1200), dtype=np.uint8)  # 4.3 MB: over gRPC's 4 MB cap
    r = client.predict(photo)
    assert r.prediction == int(runtime.predict_images(photo[None].copy()).labels[0])
    assert "resized to the model's 1x28x28" in r.note


def test_a_decompression_bomb_is_one_error(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    PILImage.new("L", (100, 100)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # 100x100 is over twice the limit: PIL refuses
    with pytest.raises(UserError, match="cannot read image .*bomb.png"):
        read_image(tmp_path / "bomb.png")


def test_query_cli_reports_a_wrong_image_in_one_line(server, tmp_path):
    _, client, port = server
    x, _ = make_images(1, seed=23)
    good = tmp_path / "good.png"
    Image.fromarray(x[0, 0]).save(good)
    image = read_image(good)
    assert image.shape == (1, 28, 28) and np.array_equal(image, x[0])
    bad = tmp_path / "four.npy"
    np.save(bad, np.zeros((4, 28, 28), dtype=np.uint8))
    assert read_image(bad).shape == (4, 28, 28)  # sent as it is: the server says what it expects
    cmd = [sys.executable, "-m", "spidercache", "gati", "query", "--address", f"127.0.0.1:{port}", str(bad)]
    wrong = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2
    assert wrong.stderr.strip().count("\n") == 0 and "model takes 1x28x28" in wrong.stderr
    assert client.predict(image).layer  # and the server still answers


def test_serve_cli_refuses_a_corrupt_checkpoint_in_one_line(tmp_path, tiny_exploration):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02garbage")
    tiny_exploration.save(tmp_path / "caches")
    cmd = [
        sys.executable,
        "-m",
        "spidercache",
        "gati",
        "serve",
        "--port",
        "0",
        "--caches",
        str(tmp_path / "caches"),
        "--model",
        str(bad),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "checkpoint" in r.stderr


def test_table_decode_is_exactly_preprocess(tiny_base):
    """The server looks uint8 pixels up in a table instead of running preprocess: same bytes."""
    from spidercache.inference import gati_pb2

    servicer = GatiServicer(GatiRuntime(tiny_base, []))
    assert servicer._lut is not None
    x, _ = make_images(4, seed=24)
    for image in x:
        request = gati_pb2.PredictRequest(
            pixels=image.tobytes(), channels=1, height=28, width=28, dtype="uint8"
        )
        got = servicer.decode(request)
        want = tiny_base.preprocess(image[None].copy())
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got, want)


def test_rpc_overhead_reports_model_handler_and_empty_call_figures(tiny_base, tiny_exploration):
    from spidercache.inference.loadtest import rpc_overhead

    exits = [
        Exit(h.unit, h.name, tiny_exploration.build_head(i), 0.9)
        for i, h in enumerate(tiny_exploration.heads)
        if h.variant == "pool2_mlp"
    ]
    x, _ = make_images(8, seed=25)
    r = rpc_overhead(GatiRuntime(tiny_base, exits), x[:, 0], requests=20)
    assert r["requests"] == 20
    assert r["roundtrip_mean_ms"] > r["server_model_mean_ms"] > 0
    # the handler includes the model, so the overhead against it is the smaller one
    assert r["overhead_mean_ms"] >= r["overhead_vs_handler_mean_ms"] > 0
    assert r["empty_rpc_mean_ms"] > 0 and r["empty_rpc_p50_ms"] > 0
