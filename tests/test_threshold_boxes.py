"""Hand-drawn boxes for the CAM threshold: the CSV read, its rows checked against the classes
and the disk, what is left out said, a malformed file refused naming file and line."""

from __future__ import annotations

import pytest
from PIL import Image

from cam_cli.data.classes import ClassInfo
from cam_cli.training.threshold_boxes import boxed_images, class_index, read_box_rows

CLASSES = [ClassInfo(0, "golden_retriever", "golden_retriever"),
           ClassInfo(1, "n01910747", "jellyfish"),
           ClassInfo(2, "n02056570", "king penguin, Aptenodytes patagonica")]  # fmt: skip


def _image(path, size=(48, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 40, 10)).save(path)


def test_classes_are_matched_by_folder_then_by_synset_name():
    index = class_index(CLASSES)
    assert index["golden_retriever"] == 0 and index["n01910747"] == 1
    assert index["jellyfish"] == 1 and index["king penguin"] == 2
    assert index["king penguin, Aptenodytes patagonica"] == 2


def test_rows_of_present_images_of_known_classes_are_kept_the_rest_said(tmp_path):
    _image(tmp_path / "imgs" / "a.jpg")
    _image(tmp_path / "imgs" / "b.png")
    csv = tmp_path / "boxes.csv"
    csv.write_text(
        "path,class,xmin,ymin,xmax,ymax\r\n"
        "imgs/a.jpg,golden_retriever,1,2,30,20\r\n"
        "imgs/a.jpg,golden_retriever,5,5,9.6,9\r\n"  # a second box; 9.6 rounds to 10
        '"imgs/b.png",king penguin,0,0,47,31\r\n'
        "imgs/gone.jpg,jellyfish,0,0,3,3\r\n"
        "imgs/b.png,tabby cat,0,0,3,3\r\n"
        "\r\n"
    )
    notes: list[str] = []
    images = boxed_images(csv, CLASSES, notes)
    assert [(path, label) for path, label, _ in images] == [
        (str(tmp_path / "imgs" / "a.jpg"), 0),
        (str(tmp_path / "imgs" / "b.png"), 2),
    ]
    a = images[0][2]
    assert a.image_id == "a" and a.labels == ("golden_retriever",)
    assert a.boxes == (("golden_retriever", (1, 2, 30, 20)), ("golden_retriever", (5, 5, 10, 9)))
    assert images[1][2].boxes == (("n02056570", (0, 0, 47, 31)),)
    assert notes == [
        f"1 boxes of {csv} are of classes this run does not train (e.g. 'tabby cat'); left out",
        f"1 boxes of {csv} name images that are not there (e.g. 'imgs/gone.jpg', relative to "
        f"{tmp_path}); left out",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"empty; expected a header path,class,xmin"),
        ("file,label,x1,y1,x2,y2\n", r"boxes.csv:1: expected the header path,class,xmin"),
        ("path,class,xmin,ymin,xmax,ymax\na.jpg,dog,1,2,3\n", r"boxes.csv:2: expected 6 fields"),
        ("path,class,xmin,ymin,xmax,ymax\na.jpg,dog,1,2,x,4\n", r"boxes.csv:2: box coordinates"),
        ("path,class,xmin,ymin,xmax,ymax\na.jpg,dog,5,2,3,4\n", r"boxes.csv:2: invalid box"),
        ("path,class,xmin,ymin,xmax,ymax\n,dog,1,2,3,4\n", r"boxes.csv:2: an empty path"),
    ],
)
def test_a_malformed_file_is_refused_naming_file_and_line(tmp_path, text, message):
    csv = tmp_path / "boxes.csv"
    csv.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_box_rows(csv)


def test_a_file_with_nothing_usable_is_refused(tmp_path):
    csv = tmp_path / "boxes.csv"
    csv.write_text("path,class,xmin,ymin,xmax,ymax\nnone.jpg,jellyfish,0,0,1,1\n")
    with pytest.raises(ValueError, match="no box of an image that is there"):
        boxed_images(csv, CLASSES, [])


def test_one_image_with_boxes_of_two_classes_is_refused(tmp_path):
    _image(tmp_path / "a.jpg")
    csv = tmp_path / "boxes.csv"
    csv.write_text("path,class,xmin,ymin,xmax,ymax\na.jpg,jellyfish,0,0,1,1\n"
                   f"{tmp_path / 'a.jpg'},golden_retriever,0,0,1,1\n")  # fmt: skip
    with pytest.raises(ValueError, match="has boxes of two classes"):
        boxed_images(csv, CLASSES, [])
