"""`cam-cli convert` (`evaluation.wsol_convert`): names the metadata format cannot carry are
refused up front, naming them; a class list out of sorted order gets a note; image sizes are
read as every image is opened (the pixel limit from the header)."""

from __future__ import annotations

import os

import pytest
from conftest import BAD, invoke, one_line_error, write_image, write_xml
from test_scoremaps import png_header

WNIDS = ["n01440764", "n01751748"]


def data(root, names) -> None:
    (root / "val").mkdir(parents=True)
    for i, name in enumerate(names):
        write_image(root / "val" / f"{name}.JPEG", seed=i)
        write_xml(root / "xml" / f"{name}.xml", 48, 40, [(WNIDS[i % 2], (2, 3, 30, 33))])
    (root / "classes.txt").write_text("".join(f"{w} c{i}\n" for i, w in enumerate(WNIDS)))


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a,b", "a comma"),
        ("a\nb", "a newline"),
        ("a\rb", "a carriage return"),
        (BAD, "bytes that are not UTF-8"),
    ],  # fmt: skip
)
def test_a_name_the_metadata_cannot_carry_is_refused_before_anything(tmp_path, name, reason):
    """Issue 25 (11): a non-UTF-8 name gave UnicodeEncodeError; a comma or a newline wrote
    metadata that its own reader then refused."""
    data(tmp_path, ["ok", name])
    out = tmp_path / "wsol"
    result = invoke("convert", out, "--annotations", tmp_path / "xml", "--images",
                    tmp_path / "val", "--classes", tmp_path / "classes.txt")  # fmt: skip
    one_line_error(result, "1 image name(s) that wsolevaluation's metadata cannot carry", reason)
    assert not out.exists() or not any(out.iterdir())


def test_a_class_list_out_of_sorted_order_gets_a_note(tmp_path):
    data(tmp_path, ["a", "b"])
    (tmp_path / "classes.txt").write_text(f"{WNIDS[1]} c1\n{WNIDS[0]} c0\n")
    result = invoke("convert", tmp_path / "wsol", "--annotations", tmp_path / "xml", "--images",
                    tmp_path / "val", "--classes", tmp_path / "classes.txt", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "note: " in result.stderr
    assert "classes.txt: its wnids are not in sorted" in result.stderr
    labels = (tmp_path / "wsol" / "class_labels.txt").read_text().splitlines()
    assert labels == ["val/a.JPEG,1", "val/b.JPEG,0"]  # the file's own line numbers


def test_an_image_over_the_pixel_limit_is_one_line(tmp_path):
    """Issue 25 (9): image sizes read by `convert` crashed on a bomb's header."""
    data(tmp_path, ["a"])
    os.remove(tmp_path / "val" / "a.JPEG")
    png_header(tmp_path / "val" / "a.png", 30_000, 30_000)
    result = invoke("convert", tmp_path / "wsol", "--annotations", tmp_path / "xml", "--images",
                    tmp_path / "val", "--classes", tmp_path / "classes.txt")  # fmt: skip
    one_line_error(result, "a.png: cannot read the image's size (refused: ", "exceeds the limit")
