"""Damaged or unusual user data for GATI: unreadable images, float pixels, bad labels."""

import numpy as np
import pytest
from gati_synthetic import make_images, write_image_folder

from spidercache.errors import UserError
from spidercache.inference.datasets import load_splits


def test_an_unreadable_image_in_a_tree_is_skipped_with_one_counted_warning(tmp_path):
    tree = write_image_folder(tmp_path / "tree" / "train", n=20)
    write_image_folder(tmp_path / "tree" / "test", n=8, seed=5)
    (tree / "person0" / "zz_bad.png").write_text("not an image\n")
    (tmp_path / "tree" / "test" / "person1" / "zz_bad.png").write_bytes(b"\x89PNG broken")
    split = load_splits(str(tree.parent), image_size=24)
    assert len(split.train_images) == 20 and len(split.test_images) == 8
    assert split.note.count("\n") == 0 and "warning: skipped 2 unreadable image(s)" in split.note
    assert "zz_bad.png" in split.note


def test_a_tree_of_only_unreadable_images_is_one_error(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "t" / cls).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "t" / cls / f"{i}.png").write_text("text")
    with pytest.raises(UserError, match="no training image could be read"):
        load_splits(str(tmp_path / "t"), image_size=16)


def test_float_pixels_in_0_to_1_are_scaled_and_said_once(tmp_path):
    x, y = make_images(40, seed=7)
    np.savez(tmp_path / "f.npz", x=x.astype(np.float32) / 255, y=y)
    split = load_splits(str(tmp_path / "f.npz"))
    assert split.note.count("scaled to 0..255") == 1
    together = np.concatenate([split.train_images, split.test_images])
    assert sorted(r.tobytes() for r in together) == sorted(r.tobytes() for r in x)  # not black


@pytest.mark.parametrize(
    ("x_of", "y_of", "message"),
    [
        (lambda x: x.astype(np.float32) * 2, lambda y: y, "pixels must lie in 0..255"),
        (lambda x: np.where(x > 0, np.nan, 0.0), lambda y: y, "NaN or infinite"),
        (lambda x: x, lambda y: y - 1, "y must hold class indices 0..C-1, got -1"),
        (lambda x: x, lambda y: y + 0.5, "whole class indices"),
    ],
)
def test_npz_pixels_or_labels_out_of_range_are_one_error(tmp_path, x_of, y_of, message):
    x, y = make_images(20, seed=8)
    np.savez(tmp_path / "bad.npz", x=x_of(x), y=y_of(y))
    with pytest.raises(UserError, match=message):
        load_splits(str(tmp_path / "bad.npz"))


def test_train_base_keeps_the_class_names_and_cifar_names_come_from_its_meta(tmp_path):
    import pickle

    from gati_synthetic import write_cifar

    from spidercache.inference.build import train_base

    tree = write_image_folder(tmp_path / "tree", n=40, size=28)
    data = load_splits(str(tree), image_size=28)
    base = train_base(
        data, "small", epochs=1, converge=False, train_samples=20, head_samples=4, val_samples=4
    )
    assert base.meta["classes"] == ["person0", "person1", "person2", "person3"]  # what replies carry
    root = write_cifar(tmp_path / "c100", classes=100)
    names = [f"thing{i}".encode() for i in range(100)]  # the real download's bytes keys and names
    (root / "meta").write_bytes(pickle.dumps({b"fine_label_names": names}, protocol=2))
    assert load_splits(str(root)).classes[:2] == ["thing0", "thing1"]
