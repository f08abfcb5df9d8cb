"""The training folder as read for training (`training.data`)."""

from __future__ import annotations

from conftest import write_image


def test_empty_class_folder_is_not_a_class(tmp_path):
    from cam_cli.training.data import scan_train_dir

    for name in ("a", "b", "c"):
        (tmp_path / "train" / name).mkdir(parents=True)
    write_image(tmp_path / "train" / "a" / "1.jpg")
    write_image(tmp_path / "train" / "c" / "1.jpg")
    classes, items, notes = scan_train_dir(tmp_path)
    assert [c.wnid for c in classes] == ["a", "c"] and [i for _, i in items] == [0, 1]
    assert any("has no images; skipped" in note for note in notes)
