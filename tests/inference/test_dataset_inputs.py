"""Damaged or unusual user data for GATI: unreadable images, float pixels, bad labels."""

import pytest
from gati_synthetic import write_image_folder

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
