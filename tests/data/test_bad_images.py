"""Unreadable images wherever a training run reads them, and test splits named unlike the training one."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from test_remote_and_nodes import write_tree

from spidercache.data import ImageFolder
from spidercache.data.datasets import Subset
from spidercache.data.evaluate import evaluate
from spidercache.data.train import TrainConfig, train
from spidercache.data.transforms import Normalize
from spidercache.errors import UserError


def _truncate(good, bad) -> None:
    """``bad``: the first 100 bytes of the image ``good`` (a JPEG that does not decode)."""
    bad.write_bytes(good.read_bytes()[:100])


def _config(root, **kw) -> TrainConfig:
    kw = {
        "epochs": 1,
        "workers": 0,
        "storage_latency_ms": 0.0,
        "image_size": 8,
        "batch_size": 4,
        "policy": "lru",
        "progress": False,
        **kw,
    }
    return TrainConfig(train_paths=[str(root / "train")], **kw)


def test_a_bad_test_image_is_skipped_and_counted_or_an_error_with_strict(tmp_path):
    root = write_tree(tmp_path / "data", n_per_class=4)
    _truncate(root / "test" / "a" / "1.jpg", root / "test" / "a" / "broken.jpg")
    with pytest.warns(UserWarning, match="broken.jpg"):
        row = train(_config(root)).rows[0]
    assert row["test_skipped"] == 1 and 0 <= row["test_accuracy"] <= 100
    with pytest.raises(UserError, match="broken.jpg"):
        train(_config(root, strict=True))


def test_a_bad_image_in_the_held_out_split_is_skipped(tmp_path):
    root = write_tree(tmp_path / "data", n_per_class=4)
    _truncate(root / "train" / "a" / "1.jpg", root / "train" / "a" / "broken.jpg")
    ds = ImageFolder(str(root / "train"), 8)
    held = Subset(ds, np.arange(len(ds)), "held-out-0")  # the broken one included
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    norm = Normalize([0.0] * 3, [255.0] * 3)
    with pytest.warns(UserWarning, match="broken.jpg"):
        acc, skipped = evaluate(model, held, norm, torch.device("cpu"), workers=0)
    assert skipped == 1 and 0 <= acc <= 100
    with pytest.raises(UserError, match="broken.jpg"):
        evaluate(model, held, norm, torch.device("cpu"), workers=0, strict=True)


@pytest.mark.parametrize("workers", [0, 2])
def test_raw_cache_skips_a_bad_image_as_decoded_does(tmp_path, workers):
    import spidercache

    root = write_tree(tmp_path / "data", n_per_class=4)
    _truncate(root / "train" / "a" / "1.jpg", root / "train" / "a" / "broken.jpg")
    ref = ImageFolder(str(root / "train"), 8)
    loader = spidercache.CachedLoader(
        ImageFolder(str(root / "train"), 8),
        batch_size=4,
        policy="lru",
        working_set=1.0,
        shuffle=True,
        num_workers=workers,
        cache="raw",
    )
    # a worker's warning is its own process's: only the main process's can be caught here
    warns = pytest.warns(UserWarning, match="broken.jpg") if workers == 0 else contextlib.nullcontext()
    with warns:
        for _ in range(2):  # the second epoch reads the broken file's bytes from the cache
            n = 0
            for x, y in loader:
                for j, i in enumerate(loader.last.served.tolist()):
                    rx, ry = ref[i]
                    assert torch.equal(x[j], rx) and int(y[j]) == ry
                n += len(y)
            assert n == 12 and loader.stats()["epoch"]["skipped"] == 1
    loader.close()
    strict = spidercache.CachedLoader(
        ImageFolder(str(root / "train"), 8), batch_size=4, policy="lru", cache="raw", strict=True
    )
    with pytest.raises(UserError, match="broken.jpg"):
        for _ in strict:
            pass


def test_test_classes_take_the_training_labels_by_name(tmp_path):
    from spidercache.data import open_splits

    root = write_tree(tmp_path / "data", n_per_class=2)
    for f in (root / "test" / "a").iterdir():  # the test split lacks class "a"
        f.unlink()
    (root / "test" / "a").rmdir()
    tr, te, _ = open_splits([str(root)], 8)
    assert tr.classes == te.classes == ["a", "b", "c"]
    assert sorted(set(te.targets.tolist())) == [1, 2]
    for i in range(len(te)):
        assert te.classes[te[i][1]] == te.paths[i].rsplit("/", 2)[-2]
    tr2, te2, _ = open_splits([str(root / "train")], 8)  # the sibling test/ of root/train
    assert sorted(set(te2.targets.tolist())) == [1, 2]
    (root / "test" / "zebra").mkdir()
    (root / "test" / "zebra" / "0.png").write_bytes((root / "test" / "b" / "0.png").read_bytes())
    for paths in ([str(root)], [str(root / "train")]):
        with pytest.raises(UserError, match="zebra"):
            open_splits(paths, 8)
