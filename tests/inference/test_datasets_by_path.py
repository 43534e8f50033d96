"""Datasets by path for GATI: CIFAR-10/100 folders, ImageFolder trees, .npz; resized to the model's input."""

import json
import subprocess
import sys

import numpy as np
import pytest
from gati_synthetic import make_images, write_cifar, write_image_folder

from spidercache.errors import UserError
from spidercache.inference.basemodel import load_checkpoint
from spidercache.inference.datasets import check_classes, load_splits


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spidercache", "gati", *args], capture_output=True, text=True, timeout=300
    )


def test_each_format_gives_train_and_test_arrays(tmp_path):
    c10 = load_splits(str(write_cifar(tmp_path / "c10", classes=10)))
    assert c10.train_images.shape == (200, 3, 32, 32) and c10.test_images.shape == (40, 3, 32, 32)
    assert c10.num_classes == 10 and not c10.note
    c100 = load_splits(str(write_cifar(tmp_path / "c100", classes=100)))
    assert c100.num_classes == 100 and c100.train_labels.max() < 100
    tree = write_image_folder(tmp_path / "tree" / "train", n=30)
    write_image_folder(tmp_path / "tree" / "test", n=12, seed=5)
    split = load_splits(str(tree.parent), image_size=40)
    assert split.train_images.shape == (30, 3, 40, 40) and split.test_images.shape == (12, 3, 40, 40)
    assert split.classes == ["person0", "person1", "person2", "person3"]
    x, y = make_images(50, seed=3, size=20)
    np.savez(tmp_path / "a.npz", x=x[:, 0], y=y)
    np.savez(tmp_path / "b.npz", x=x[:10, 0], y=y[:10])
    pair = load_splits(f"{tmp_path / 'a.npz'},{tmp_path / 'b.npz'}")
    assert pair.train_images.shape == (50, 1, 20, 20) and len(pair.test_images) == 10 and not pair.note


def test_data_without_a_test_split_holds_out_a_fixed_fifth(tmp_path):
    x, y = make_images(50, seed=3)
    np.savez(tmp_path / "one.npz", x=x, y=y)
    a = load_splits(str(tmp_path / "one.npz"))
    b = load_splits(str(tmp_path / "one.npz"))
    assert 0 < len(a.test_images) < 25 and len(a.train_images) + len(a.test_images) == 50 and "held" in a.note
    assert np.array_equal(a.test_labels, b.test_labels)  # the same split every time
    rows = {r.tobytes() for r in a.train_images}
    assert not any(
        r.tobytes() in rows for r in a.test_images if (a.test_images == r).all(axis=(1, 2, 3)).sum() == 1
    )
    with pytest.raises(UserError, match="has 4 classes but the base network was trained for 10"):
        check_classes(10, a)
    with pytest.raises(UserError, match="dataset path not found"):
        load_splits(str(tmp_path / "missing"))


def test_train_base_and_build_on_cifar100_and_an_image_folder(tmp_path):
    c100 = write_cifar(tmp_path / "c100", classes=100, n_per_batch=120)
    r = run_cli(
        "train-base",
        "--network",
        "small",
        "--dataset",
        str(c100),
        "--epochs",
        "2",
        "--train-samples",
        "60",
        "--head-samples",
        "30",
        "--val-samples",
        "30",
        "--out",
        str(tmp_path / "c100.pt"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["num_classes"] == 100 and info["input_shape"] == [3, 32, 32] and len(info["val_history"]) >= 1
    assert "ETA" in r.stderr and "validation accuracy" in r.stderr
    # the per-epoch state goes once the checkpoint is written
    assert not (tmp_path / "c100.pt.partial.pt").exists()
    r = run_cli(
        "build",
        "--model",
        str(tmp_path / "c100.pt"),
        "--dataset",
        str(c100),
        "--out",
        str(tmp_path / "h"),
        "--head-samples",
        "30",
        "--val-samples",
        "30",
        "--head-epochs",
        "1",
        "--variants",
        "gap_linear",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["heads"] and "ETA" in r.stderr

    tree = write_image_folder(tmp_path / "cars", n=60, size=80)
    r = run_cli(
        "train-base",
        "--network",
        "resnet18",
        "--stem",
        "imagenet",
        "--image-size",
        "64",
        "--dataset",
        str(tree),
        "--epochs",
        "1",
        "--no-converge",
        "--train-samples",
        "20",
        "--head-samples",
        "10",
        "--val-samples",
        "10",
        "--out",
        str(tmp_path / "cars.pt"),
    )
    assert r.returncode == 0, r.stderr
    assert "held" in r.stderr and "no test split" in r.stderr
    base = load_checkpoint(tmp_path / "cars.pt")
    assert base.stem == "imagenet" and base.input_shape == (3, 64, 64) and base.num_classes == 4
    # a 100-class dataset for a 4-class base: one line, exit 2
    r = run_cli(
        "build", "--model", str(tmp_path / "cars.pt"), "--dataset", str(c100), "--out", str(tmp_path / "x")
    )
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "has 100 classes but the base network was trained for 4" in r.stderr
