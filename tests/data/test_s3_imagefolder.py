"""An ImageFolder in an S3 bucket, read through its ``s3://`` URL and cached.

The bucket is served by moto's S3 server (a real HTTP endpoint speaking the S3
API) on a free loopback port; s3fs finds it through ``AWS_ENDPOINT_URL_S3``,
the same variable a user sets for MinIO or any S3-compatible store.
"""

from __future__ import annotations

import pytest
import torch
from test_remote_and_nodes import write_tree

import spidercache
from spidercache.engine.stores.launch import free_port

moto_server = pytest.importorskip("moto.server", reason="moto[server] is a test dependency")
pytest.importorskip("s3fs", reason="s3fs is needed for s3:// URLs")


@pytest.fixture
def s3_bucket(monkeypatch):
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield "spidercache-test"
    finally:
        server.stop()


def test_imagefolder_from_s3_url_is_cached_and_equal_to_the_files(tmp_path, s3_bucket):
    import s3fs

    root = write_tree(tmp_path / "data", n_per_class=6)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir(s3_bucket)
    fs.put(str(root / "train"), f"{s3_bucket}/train", recursive=True)

    ds = spidercache.data.ImageFolder(f"s3://{s3_bucket}/train", size=16)
    local = spidercache.data.ImageFolder(str(root / "train"), size=16)
    assert len(ds) == 18 and ds.classes == ["a", "b", "c"]
    loader = spidercache.CachedLoader(
        ds, batch_size=6, shuffle=True, num_workers=2, policy="minio", working_set=1.0, seed=0
    )
    for epoch in range(2):
        for x, y in loader:
            for k, i in enumerate(loader.last.served.tolist()):
                lx, ly = local[i]
                assert torch.equal(x[k], lx) and int(y[k]) == ly  # the bucket's bytes, decoded
        st = loader.stats()["epoch"]
        # the first epoch reads every object from the bucket once; the second only the cache
        assert st["source_reads"] == (18 if epoch == 0 else 0)
        assert st["hits"] == (0 if epoch == 0 else 18)
    loader.close()
