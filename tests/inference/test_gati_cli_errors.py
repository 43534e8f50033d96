"""`spidercache gati ...` on bad input: one line on stderr, exit status 2, no traceback."""

import subprocess
import sys

import pytest
import torch
from gati_synthetic import make_images

from spidercache.inference.basemodel import load_checkpoint
from spidercache.inference.training import train_base_model


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spidercache", "gati", *args], capture_output=True, text=True, timeout=300
    )


def assert_one_line_error(r: subprocess.CompletedProcess, fragment: str) -> None:
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "Traceback" not in r.stderr and fragment in r.stderr, r.stderr


def test_serve_refuses_heads_built_for_another_model(tmp_path, tiny_base, tiny_exploration):
    tiny_exploration.save(tmp_path / "caches")
    tiny_base.save(tmp_path / "base.pt")
    other = load_checkpoint(tmp_path / "base.pt")
    with torch.no_grad():
        next(other.model.parameters()).mul_(1.5)  # other weights: another fingerprint
    other._fingerprint = None
    other.save(tmp_path / "other.pt")
    r = run_cli(
        "serve", "--port", "0", "--model", str(tmp_path / "other.pt"), "--caches", str(tmp_path / "caches")
    )
    assert_one_line_error(r, "another base model")


def test_build_refuses_a_dataset_with_another_class_count(tmp_path):
    # A 3-channel 32x32 model of 4 classes: Fashion-MNIST would be resized to fit, but it has 10 classes.
    images, labels = make_images(64, seed=4, size=32)
    colour = images.repeat(3, axis=1)
    base = train_base_model("small", colour, labels, num_classes=4, epochs=1, batch_size=32)
    base.save(tmp_path / "colour.pt")
    r = run_cli(
        "build",
        "--model",
        str(tmp_path / "colour.pt"),
        "--out",
        str(tmp_path / "caches"),
        "--train-samples",
        "10",
        "--head-samples",
        "10",
        "--val-samples",
        "10",
    )
    assert_one_line_error(r, "has 10 classes but the base network was trained for 4")
    assert not (tmp_path / "caches").exists()


def test_corrupt_checkpoint_at_build_and_bench(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    r = run_cli("build", "--model", str(bad), "--out", str(tmp_path / "caches"))
    assert_one_line_error(r, "cannot read model checkpoint")
    r = run_cli("bench", "--checkpoint", str(bad), "--work-dir", str(tmp_path / "work"), "--no-rpc")
    assert_one_line_error(r, "cannot read model checkpoint")


def test_out_of_range_port_and_missing_gpu_are_one_line_errors(tmp_path, tiny_base, tiny_exploration):
    tiny_exploration.save(tmp_path / "caches")
    tiny_base.save(tmp_path / "base.pt")
    r = run_cli(
        "serve", "--port", "99999", "--model", str(tmp_path / "base.pt"), "--caches", str(tmp_path / "caches")
    )
    assert_one_line_error(r, "--port must be 0..65535, got 99999")
    if torch.cuda.is_available():
        return  # the GPU path runs there (scripts/gpu_gati.sh); the clear error is for machines without one
    r = run_cli(
        "serve",
        "--port",
        "0",
        "--device",
        "cuda",
        "--model",
        str(tmp_path / "base.pt"),
        "--caches",
        str(tmp_path / "caches"),
    )
    assert_one_line_error(r, "no CUDA GPU")
    r = run_cli("train-base", "--network", "small", "--device", "cuda", "--out", str(tmp_path / "x.pt"))
    assert_one_line_error(r, "no CUDA GPU")
    r = run_cli("bench", "--model", "small", "--gpu", "--work-dir", str(tmp_path / "w"))
    assert_one_line_error(r, "no CUDA GPU")


def test_a_checkpoint_of_another_network_is_one_line(tmp_path, tiny_base, tiny_exploration):
    # The small network's weights in a checkpoint that says resnet18: build and serve refuse it.
    tiny_base.save(tmp_path / "base.pt")
    blob = torch.load(tmp_path / "base.pt", weights_only=True)
    blob["network"] = "resnet18"
    torch.save(blob, tmp_path / "other.pt")
    r = run_cli("build", "--model", str(tmp_path / "other.pt"), "--out", str(tmp_path / "caches"))
    assert_one_line_error(r, "does not fit network resnet18")
    assert not (tmp_path / "caches").exists()
    tiny_exploration.save(tmp_path / "heads")
    r = run_cli(
        "serve", "--port", "0", "--model", str(tmp_path / "other.pt"), "--caches", str(tmp_path / "heads")
    )
    assert_one_line_error(r, "does not fit network resnet18")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--batch-window-ms", "inf", "--batch-window-ms must be 0..60000, got inf"),  # never closes
        ("--batch-window-ms", "nan", "--batch-window-ms must be 0..60000, got nan"),
        ("--memory-budget", "-5", "--memory-budget must be at least 0, got -5"),
    ],
)
def test_serve_refuses_an_endless_window_or_a_negative_budget(tmp_path, option, value, message):
    # checked before the checkpoint is read: the text file in its place is never opened
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    r = run_cli("serve", "--checkpoint", str(tmp_path / "text.pt"), "--caches", str(tmp_path), option, value)
    assert_one_line_error(r, message)


def test_serve_on_a_bad_host_is_one_line_without_grpc_log_lines(tmp_path, tiny_base, tiny_exploration):
    tiny_exploration.save(tmp_path / "caches")
    tiny_base.save(tmp_path / "base.pt")
    r = run_cli(
        "serve",
        "--port",
        "0",
        "--host",
        "999.1.1.1",
        "--model",
        str(tmp_path / "base.pt"),
        "--caches",
        str(tmp_path / "caches"),
    )
    assert_one_line_error(r, "cannot listen on 999.1.1.1:0")
