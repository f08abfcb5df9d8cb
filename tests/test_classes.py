"""Class lists (`data.classes`)."""

from __future__ import annotations


def test_bom_in_classes_file(tmp_path):
    from cam_cli.data.classes import read_synset_mapping

    path = tmp_path / "classes.txt"
    path.write_bytes("\ufeffn01440764 tench\nn01751748 sea snake\n".encode())
    assert read_synset_mapping(path)[0].wnid == "n01440764"
