"""``bench.loader.jpeg_folder``: a root rewritten at another count or size holds only the new tree."""

from __future__ import annotations

from PIL import Image

from spidercache.bench.loader import jpeg_folder


def _files(root, split):
    return sorted((root / split).rglob("*.jpg"))


def test_rewriting_at_another_count_and_size_leaves_no_old_file(tmp_path):
    jpeg_folder(tmp_path, 12, file_px=8, n_test=3)
    assert len(_files(tmp_path, "train")) == 12 and len(_files(tmp_path, "test")) == 3
    jpeg_folder(tmp_path, 5, file_px=16, n_test=2)
    train = _files(tmp_path, "train")
    assert len(train) == 5 and len(_files(tmp_path, "test")) == 2
    assert {Image.open(f).size for f in train} == {(16, 16)}
    assert [m.name for m in tmp_path.glob(".done-*")] == [".done-5-2-16"]
    before = {f: f.stat().st_mtime_ns for f in train}
    jpeg_folder(tmp_path, 5, file_px=16, n_test=2)  # the same tree again: kept as written
    assert {f: f.stat().st_mtime_ns for f in _files(tmp_path, "train")} == before
