"""Face models: nearest-centroid identification, LFW-format pairs.txt verification, checkpoint round trip."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from gati_synthetic import make_images, write_image_folder

from spidercache.errors import UserError
from spidercache.inference.basemodel import evaluate, load_checkpoint
from spidercache.inference.faces import read_pairs, use_centroids, verify_pairs
from spidercache.inference.training import train_base_model


def lfw(tmp_path):
    root = write_image_folder(tmp_path / "lfw", n=40, size=32, seed=7, prefix_names=True)
    lines = ["2 3"]  # 2 folds of 3 + 3 pairs
    for fold in range(2):
        lines += [f"person{k} 1 {2 + fold}" for k in range(3)]
        lines += [f"person{k} {1 + fold} person{(k + 1) % 4} 1" for k in range(3)]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root, tmp_path / "pairs.txt"


def test_pairs_file_is_read_in_both_line_forms(tmp_path):
    root, pairs = lfw(tmp_path)
    got, folds = read_pairs(pairs, root)
    assert folds == 2 and len(got) == 12 and sum(s for *_, s in got) == 6
    assert got[0][0].name == "person0_0001.png" and got[0][1].name == "person0_0002.png"
    (tmp_path / "bad.txt").write_text("person0 1\n")
    with pytest.raises(UserError, match="expected 'name i j'"):
        read_pairs(tmp_path / "bad.txt", root)
    (tmp_path / "missing.txt").write_text("person0 1 99\nperson1 1 2\n")
    with pytest.raises(UserError, match="image 99 of person0 not found"):
        read_pairs(tmp_path / "missing.txt", root)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"person0 1\nperson1 1 2\n", "line 1: expected 'name i j'"),  # headerless: its first line is 1
        (b"2 3\n\nperson0 1 2\nperson0 one 2\n", "line 4: image number must be a whole number"),
        (b"person0 -1 2\nperson1 1 2\n", "line 1: image number must be a whole number"),
        (b"Al\xe9 1 2\n", "not UTF-8 text"),
    ],
)
def test_a_bad_pairs_line_is_one_error_with_its_line_number(tmp_path, content, message):
    root, _ = lfw(tmp_path)
    (tmp_path / "bad.txt").write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_pairs(tmp_path / "bad.txt", root)


def test_centroids_identify_and_verify(tmp_path):
    torch.manual_seed(0)
    x, y = make_images(256, seed=8, size=32)
    base = train_base_model("small", x.repeat(3, axis=1), y, num_classes=4, epochs=3, batch_size=32)
    test_x, test_y = make_images(64, seed=9, size=32)
    test_x = test_x.repeat(3, axis=1)
    linear_acc = evaluate(base, test_x, test_y)
    use_centroids(base, x.repeat(3, axis=1), y)
    assert base.classifier == "centroid"
    assert evaluate(base, test_x, test_y) >= min(linear_acc, 90.0) - 5  # identification by nearest centroid
    root, pairs = lfw(tmp_path)
    result = verify_pairs(base, pairs, root)
    assert result["pairs"] == 12 and result["folds"] == 2
    assert result["mean_same_score"] > result["mean_different_score"]
    assert result["verification_accuracy"] >= 75.0
    base.save(tmp_path / "face.pt")
    again = load_checkpoint(tmp_path / "face.pt")
    assert again.classifier == "centroid" and again.fingerprint() == base.fingerprint()
    with torch.no_grad():
        assert torch.equal(again.model(base.preprocess(test_x)), base.model(base.preprocess(test_x)))
    # the same figures from the command line (the LFW tree has no test split: a fixed part is held out)
    cmd = [
        "eval",
        "--model",
        str(tmp_path / "face.pt"),
        "--dataset",
        str(root),
        "--pairs",
        str(pairs),
        "--json",
    ]
    r = subprocess.run(
        [sys.executable, "-m", "spidercache", "gati", *cmd], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["classifier"] == "centroid" and 0 < out["test_images"] < 40
    assert out["verification_accuracy"] == pytest.approx(result["verification_accuracy"])


def test_face_network_trains_with_a_centroid_classifier(tmp_path):
    from spidercache.inference.build import train_base
    from spidercache.inference.datasets import load_splits

    root = write_image_folder(tmp_path / "faces", n=40, size=24, seed=3)
    data = load_splits(str(root), image_size=24)
    said = []
    base = train_base(
        data,
        "se-lresnet18e-ir",
        epochs=1,
        converge=False,
        train_samples=16,
        head_samples=8,
        val_samples=8,
        lr=0.01,
        say=said.append,
    )
    assert base.classifier == "centroid" and base.input_shape == (3, 24, 24)
    assert any("nearest class centroid" in m for m in said)
    assert np.isfinite(base.meta["val_accuracy_centroid"])
