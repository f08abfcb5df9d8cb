"""Hand-drawn boxes for the CAM threshold: the file read (any ground-truth format of
`data.interchange`), its images found under its folder, its class names matched, what is left
out said, a malformed file refused naming file and line."""

from __future__ import annotations

import pytest
from PIL import Image

from cam_cli.data.classes import ClassInfo
from cam_cli.training.threshold_boxes import boxed_images

CLASSES = [ClassInfo(0, "golden_retriever", "golden_retriever"),
           ClassInfo(1, "n01910747", "jellyfish"),
           ClassInfo(2, "n02056570", "king penguin")]  # fmt: skip
HEADER = "path,class,xmin,ymin,xmax,ymax\n"


def _image(path, size=(48, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 40, 10)).save(path)


def test_boxes_of_present_images_of_known_classes_are_kept_the_rest_said(tmp_path):
    _image(tmp_path / "imgs" / "a.jpg")
    _image(tmp_path / "imgs" / "sub" / "b.png")
    _image(tmp_path / "imgs" / "c.jpg")
    csv = tmp_path / "boxes.csv"
    csv.write_text(
        HEADER + "imgs/a.jpg,golden_retriever,1,2,30,20\n"
        "imgs/a.jpg,Golden Retriever,5,5,10,9\n"  # the same class, loosely named
        "imgs/sub/b.png,king penguin,0,0,47,31\n"
        "imgs/sub/b.png,jellyfish,3,3,9,9\n"  # a second class: only the first one's boxes
        "imgs/gone.jpg,jellyfish,0,0,3,3\n"
        "imgs/c.jpg,tabby cat,0,0,3,3\n"
    )
    notes: list[str] = []
    images = boxed_images(csv, CLASSES, notes)
    assert [(path, label) for path, label, _ in images] == [
        (str(tmp_path / "imgs" / "a.jpg"), 0),
        (str(tmp_path / "imgs" / "sub" / "b.png"), 2),
    ]
    a, b = images[0][2], images[1][2]
    assert a.image_id == "a"
    assert a.labels == ("golden_retriever",)
    assert a.boxes == (("golden_retriever", (1, 2, 30, 20)), ("golden_retriever", (5, 5, 10, 9)))
    assert b.boxes == (("n02056570", (0, 0, 47, 31)),)
    assert b.labels == ("n02056570",)
    assert notes == [
        f"1 images of {csv} have boxes of several classes (e.g. 'b'); only their first class's "
        "boxes are used",
        f"1 class names of {csv} are not (or not only one) class of this run (e.g. 'tabby cat'); "
        "their boxes left out",
        f"1 images of {csv} are not under {tmp_path} (e.g. 'gone'); their boxes left out",
    ]


def test_a_malformed_file_is_refused_naming_file_and_line(tmp_path):
    csv = tmp_path / "boxes.csv"
    csv.write_text(HEADER + "a.jpg,jellyfish,1,2,3\n")
    with pytest.raises(ValueError, match=r"boxes.csv:2: expected 6 fields"):
        boxed_images(csv, CLASSES, [])


def test_a_file_with_nothing_usable_is_refused(tmp_path):
    csv = tmp_path / "boxes.csv"
    csv.write_text(HEADER + "none.jpg,jellyfish,0,0,1,1\n")
    with pytest.raises(ValueError, match="no box of an image under .* of a class trained"):
        boxed_images(csv, CLASSES, [])


def test_two_images_of_the_name_a_box_gives_are_refused_others_may_share_names(tmp_path):
    _image(tmp_path / "train" / "a" / "x.jpg")
    _image(tmp_path / "train" / "b" / "x.jpg")  # not named by the file: no matter
    _image(tmp_path / "boxes" / "y.jpg")
    csv = tmp_path / "boxes.csv"
    csv.write_text(HEADER + "boxes/y.jpg,jellyfish,0,0,1,1\n")
    assert [label for _, label, _ in boxed_images(csv, CLASSES, [])] == [1]
    csv.write_text(HEADER + "train/a/x.jpg,jellyfish,0,0,1,1\n")
    with pytest.raises(ValueError, match="two images named x under"):
        boxed_images(csv, CLASSES, [])
