"""The training folder as read for training (`training.data`)."""

from __future__ import annotations

from conftest import write_image

from cam_cli.training.data import scan_data


def test_empty_class_folder_is_not_a_class(tmp_path):
    from cam_cli.training.data import scan_train_dir

    for name in ("a", "b", "c"):
        (tmp_path / "train" / name).mkdir(parents=True)
    write_image(tmp_path / "train" / "a" / "1.jpg")
    write_image(tmp_path / "train" / "c" / "1.jpg")
    classes, items, notes = scan_train_dir(tmp_path)
    assert [c.wnid for c in classes] == ["a", "c"]
    assert [i for _, i in items] == [0, 1]
    assert any("has no images; skipped" in note for note in notes)


# --- issue 25: what a Tiny ImageNet layout leaves out is said in a note -------------------


def test_a_missing_val_image_and_a_wnid_without_a_folder_are_notes(tmp_path):
    from test_tiny_imagenet import WNIDS, _jpeg

    root = tmp_path / "tiny"
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join([*WNIDS, "n03000003"]) + "\n")
    for wnid in WNIDS:
        _jpeg(root / "train" / wnid / "images" / f"{wnid}_0.JPEG")
    _jpeg(root / "val" / "images" / "val_0.JPEG")
    (root / "val" / "val_annotations.txt").write_text(
        f"val_0.JPEG\t{WNIDS[0]}\t0\t0\t5\t5\nval_1.JPEG\t{WNIDS[1]}\t0\t0\t5\t5\n"
    )
    data = scan_data(root)
    assert len(data.val) == 1
    assert any("1 images of" in n and "val_annotations.txt are not in" in n and "val_1" in n
               for n in data.notes), data.notes  # fmt: skip
    assert any("1 wnids of" in n and "have no class folder" in n and "n03000003" in n
               for n in data.notes), data.notes  # fmt: skip
