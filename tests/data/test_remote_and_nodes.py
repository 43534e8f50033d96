"""An ImageFolder served over HTTP, trained from its URL; `--cache_nodes 2` over two redis-servers."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading

import numpy as np
import pytest
import torch
from test_train_cli import cli

import spidercache
from spidercache.errors import UserError
from spidercache.testing import servers


def write_tree(root, n_per_class=12, size=20, classes=("a", "b", "c")):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_per_class), ("test", 3)):
        for c, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True)
            for j in range(n):
                img = np.full((size, size, 3), 40 * c, np.uint8) + rng.integers(
                    0, 30, (size, size, 3), dtype=np.uint8
                )
                ext = "jpg" if j % 2 else "png"
                Image.fromarray(img).save(d / f"{j}.{ext}")
    return root


@contextlib.contextmanager
def http_serve(root):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("cache", ["decoded", "raw"])
def test_imagefolder_over_http_end_to_end(tmp_path, cache):
    write_tree(tmp_path / "data")
    with http_serve(tmp_path / "data") as url:
        ds = spidercache.data.ImageFolder(f"{url}/train", size=16)
        local = spidercache.data.ImageFolder(str(tmp_path / "data" / "train"), size=16)
        assert len(ds) == 36 and ds.classes == ["a", "b", "c"]
        loader = spidercache.CachedLoader(
            ds, batch_size=8, shuffle=True, num_workers=2, policy="minio", working_set=1.0, cache=cache
        )
        for _ in range(2):
            for x, y in loader:
                ids = loader.last.served
                assert x.shape[1:] == (3, 16, 16) and x.dtype == torch.uint8
                for k, i in enumerate(ids.tolist()):
                    lx, ly = local[i]
                    assert torch.equal(x[k], lx) and int(y[k]) == ly  # same bytes as the local files
        st = loader.stats()["epoch"]
        assert st["hits"] == 36 and st["source_reads"] == 0
        loader.close()
        # the CLI trains from the URL and evaluates on the sibling test split
        r = cli(
            "train",
            f"{url}/train",
            "--epochs",
            "1",
            "--batch_size",
            "12",
            "--image-size",
            "16",
            "--workers",
            "0",
            "--storage-latency-ms",
            "0",
            "--policy",
            "lru",
            "--cache",
            cache,
            "--json",
        )
        assert r.returncode == 0, r.stderr
        row = json.loads(r.stdout)["rows"][0]
        assert row["requests"] == 36 and row["source_reads"] == 36 and 0 <= row["test_accuracy"] <= 100


def test_bad_image_skipped_with_a_warning_or_an_error_with_strict(tmp_path):
    root = write_tree(tmp_path / "data", n_per_class=4)
    (root / "train" / "a" / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.warns(UserWarning, match="broken.jpg"):
        loader = spidercache.CachedLoader(
            spidercache.data.ImageFolder(str(root / "train"), 8),
            batch_size=4,
            policy="lru",
            working_set=0.5,
            shuffle=True,
        )
        n = sum(len(y) for _, y in loader)
    assert n == 12 and loader.stats()["epoch"]["skipped"] == 1
    r = cli(
        "train",
        str(root / "train"),
        "--epochs",
        "1",
        "--workers",
        "0",
        "--storage-latency-ms",
        "0",
        "--image-size",
        "8",
        "--strict",
        "--quiet",
        "--batch_size",
        "4",
    )
    assert r.returncode == 2 and "broken.jpg" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_unreachable_url_is_one_line_exit_2():
    r = cli("train", "http://127.0.0.1:1/train", "--epochs", "1", "--quiet")
    assert r.returncode == 2 and "cannot reach" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    with pytest.raises(UserError):
        spidercache.data.ImageFolder("http://127.0.0.1:1/train")


class Ids(torch.utils.data.Dataset):
    targets = np.arange(600) % 5

    def __len__(self):
        return 600

    def __getitem__(self, i):
        return torch.full((16,), float(i)), int(i % 5)


def test_cache_nodes_2_one_killed_mid_epoch(tmp_path):
    a = servers.start_redis(tmp_path / "a")
    b = servers.start_redis(tmp_path / "b")
    try:
        from spidercache.data.stores import train_store_specs

        specs = train_store_specs(
            "redis", host_ip="127.0.0.1", port_num=a.port, port_num2=b.port, cache_nodes=2
        )
        assert specs == [f"redis://127.0.0.1:{a.port},127.0.0.1:{b.port}"]
        loader = spidercache.CachedLoader(
            Ids(), batch_size=50, shuffle=True, policy="minio", working_set=1.0, store=specs
        )
        for _ in loader:  # fills both servers
            pass
        sharded = loader.dataset.stores[0].opener()
        on_b = sharded.node_of([loader.dataset.key(i) for i in range(600)]) == 1
        assert 150 < on_b.sum() < 450  # keys spread over both nodes
        seen = []
        for k, (x, y) in enumerate(loader):
            if k == 2:
                b.kill()
            ids = loader.last.served
            assert torch.equal(x[:, 0], torch.as_tensor(ids, dtype=torch.float32)) and torch.equal(
                y, torch.as_tensor(ids % 5)
            )
            seen.append(ids.copy())
        st = loader.stats()["epoch"]
        assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(600))  # every sample, once
        # the dead node takes only its share: the live node still serves its keys
        assert st["lost_hits"] <= on_b.sum() and st["hits"] >= (~on_b).sum()
        assert st["store_errors"] > 0  # the dead node is counted
        loader.close()
    finally:
        a.stop()
        b.stop()
