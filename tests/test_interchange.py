"""`data.interchange`: Pascal VOC, YOLO, COCO and CSV ground truth read into inclusive 0-based
pixel boxes (hand-computed on non-square images), format detection, and hostile files refused
in one line naming the file and the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from cam_cli.data import interchange
from cam_cli.data.classes import ClassInfo
from cam_cli.data.interchange import detect_format, read_ground_truth
from cam_cli.errors import InputFileError

VOC_XML = """<annotation>
  <folder>VOC2007</folder>
  <filename>{stem}.jpg</filename>
  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>
{objects}</annotation>
"""
VOC_OBJECT = """  <object>
    <name>{name}</name><difficult>0</difficult>
    <bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox>
  </object>
"""
CLASSES = [
    ClassInfo(0, "jellyfish", "jellyfish"),
    ClassInfo(1, "king_penguin", "king_penguin"),
    ClassInfo(2, "golden_retriever", "golden_retriever"),
]


def voc_file(path: Path, width: int, height: int, objects: list[tuple[str, tuple]]) -> Path:
    body = "".join(VOC_OBJECT.format(name=name, b=box) for name, box in objects)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(VOC_XML.format(stem=path.stem, width=width, height=height, objects=body))
    return path


def image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (10, 20, 30)).save(path)
    return path


def boxes(truth, image_id: str) -> list:
    return [(label, list(box)) for label, box in truth.annotations[image_id].boxes]


# --- VOC --------------------------------------------------------------------------------------


def voc_root(tmp_path: Path) -> Path:
    root = tmp_path / "VOC"
    voc_file(root / "Annotations" / "a.xml", 40, 30, [("Golden Retriever", (5, 3, 20, 30))])
    voc_file(root / "Annotations" / "b.xml", 40, 30,
             [("jellyfish", (1, 1, 40, 30)), ("king_penguin", (0, 10, 2, 12))])  # fmt: skip
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("a\nb\n")
    return root


def test_voc_boxes_are_one_based_inclusive(tmp_path):
    root = voc_root(tmp_path)
    assert detect_format(root) == "voc"
    assert detect_format(root / "Annotations") == "voc"
    truth = read_ground_truth(root)
    # 1-based pixels minus one; a 0 some tools write is read as 0
    assert boxes(truth, "a") == [("Golden Retriever", [4, 2, 19, 29])]
    assert boxes(truth, "b") == [("jellyfish", [0, 0, 39, 29]), ("king_penguin", [0, 9, 1, 11])]
    assert (truth.annotations["a"].width, truth.annotations["a"].height) == (40, 30)
    assert truth.class_names
    assert truth.files["annotations"] == [root / "Annotations" / "a.xml",
                                          root / "Annotations" / "b.xml"]  # fmt: skip


def test_voc_names_matched_to_the_models_classes(tmp_path):
    truth = read_ground_truth(voc_root(tmp_path), classes=CLASSES)
    assert boxes(truth, "a") == [("golden_retriever", [4, 2, 19, 29])]
    assert truth.annotations["b"].labels == ("jellyfish", "king_penguin")
    assert not truth.class_names


def test_unknown_class_names_are_named(tmp_path):
    root = voc_root(tmp_path)
    voc_file(root / "Annotations" / "c.xml", 40, 30, [("zebra", (1, 1, 2, 2)),
                                                      ("aardvark", (1, 1, 2, 2))])  # fmt: skip
    with pytest.raises(ValueError, match=r"2 class name\(s\) are not classes of the model: "
                       r"aardvark, zebra; the model's 3 classes are 0: jellyfish"):  # fmt: skip
        read_ground_truth(root, classes=CLASSES)


def test_ilsvrc_xml_folder_reads_as_before(tmp_path):
    """A folder of XML without a VOC root stays ILSVRC's 0-based reading."""
    voc_file(tmp_path / "xml" / "a.xml", 40, 30, [("n01440764", (5, 3, 20, 29))])
    assert detect_format(tmp_path / "xml") == "ilsvrc"
    truth = read_ground_truth(tmp_path / "xml")
    assert boxes(truth, "a") == [("n01440764", [5, 3, 20, 29])]
    assert not truth.class_names
    voc = read_ground_truth(tmp_path / "xml", fmt="voc")
    assert boxes(voc, "a") == [("n01440764", [4, 2, 19, 28])]


@pytest.mark.parametrize(
    ("box", "reason"),
    [
        ((-3, 1, 5, 5), "negative"),
        ((1, 1, 1e12, 5), "outside any image"),
        ((1, 1, "nan", 5), "outside any image"),
        ((1, 1, "x", 5), "is not a number"),
        ((50, 1, 60, 5), "starts outside the 40x30 image"),
        ((9, 1, 5, 5), "need 0 <= min <= max"),
    ],
)
def test_voc_hostile_boxes(tmp_path, box, reason):
    path = voc_file(tmp_path / "xml" / "a.xml", 40, 30, [("jellyfish", box)])
    with pytest.raises(ValueError, match=reason) as error:
        read_ground_truth(tmp_path / "xml", fmt="voc")
    assert str(error.value).startswith(str(path))


def test_voc_entities_and_huge_files_refused(tmp_path, monkeypatch):
    path = tmp_path / "xml" / "a.xml"
    path.parent.mkdir()
    path.write_text('<!DOCTYPE lol [<!ENTITY a "aaaa">]><annotation>&a;</annotation>')
    with pytest.raises(ValueError, match="DOCTYPE or entities"):
        read_ground_truth(path.parent, fmt="voc")
    voc_file(path, 40, 30, [("jellyfish", (1, 1, 2, 2))])
    monkeypatch.setattr(interchange, "MAX_XML_BYTES", 100)
    with pytest.raises(InputFileError, match=r"a.xml: \d+ bytes; more than the 100"):
        read_ground_truth(path.parent, fmt="voc")


# --- YOLO -------------------------------------------------------------------------------------


def yolo_root(tmp_path: Path, names: str = "names:\n  0: jellyfish\n  1: golden retriever\n"):
    root = tmp_path / "yolo"
    image(root / "images" / "a.png", 40, 30)
    image(root / "images" / "b.jpg", 50, 20)
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    (root / "labels" / "b.txt").write_text("1 0.1 0.25 0.2 0.5\n0 1.0 1.0 0.0 0.0\n\n")
    (root / "data.yaml").write_text(f"path: .\ntrain: images\nval: images\n{names}")
    return root


def test_yolo_boxes_from_normalised_centres(tmp_path):
    root = yolo_root(tmp_path)
    assert detect_format(root) == "yolo"
    assert detect_format(root / "data.yaml") == "yolo"
    truth = read_ground_truth(root)
    # 40x30: x 15 .. 25 -> pixels 15..24; y 7.5 .. 22.5 -> 8..22 (half pixels round up)
    assert boxes(truth, "a") == [("jellyfish", [15, 8, 24, 22])]
    # 50x20: x 0 .. 10 -> 0..9, y 0 .. 10 -> 0..9; a zero-size box at the corner -> its pixel
    assert boxes(truth, "b") == [
        ("golden retriever", [0, 0, 9, 9]),
        ("jellyfish", [49, 19, 49, 19]),
    ]
    assert truth.annotations["b"].width == 50
    assert read_ground_truth(root / "data.yaml").annotations == truth.annotations
    assert read_ground_truth(root / "labels").annotations == truth.annotations


@pytest.mark.parametrize(
    "names",
    [
        "names: [jellyfish, 'golden retriever']\n",
        'names: ["jellyfish", "golden retriever"]  # two\n',
        "names:\n- jellyfish\n- golden retriever\nnc: 2\n",
        "names:\n  - jellyfish\n  - 'golden retriever'\n",
    ],
)
def test_yolo_names_forms(tmp_path, names):
    truth = read_ground_truth(yolo_root(tmp_path, names))
    assert truth.annotations["b"].labels == ("golden retriever", "jellyfish")


def test_yolo_classes_txt_and_images_elsewhere(tmp_path):
    root = yolo_root(tmp_path)
    (root / "data.yaml").unlink()
    (root / "labels" / "classes.txt").write_text("jellyfish\ngolden retriever\n")
    elsewhere = tmp_path / "pictures"
    (root / "images").rename(elsewhere)
    truth = read_ground_truth(root / "labels", images=elsewhere)
    assert boxes(truth, "a") == [("jellyfish", [15, 8, 24, 22])]
    with pytest.raises(ValueError, match=r"yolo/images: no image folder .* \(`images`\)"):
        read_ground_truth(root / "labels")
    (root / "images").mkdir()
    with pytest.raises(ValueError, match=r"a.txt: no image a.\* in .*yolo/images"):
        read_ground_truth(root / "labels")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("0 0.5 0.5 0.25", "expected 5 numbers"),
        ("0 0.5 0.5 0.25 0.5 0.1", "expected 5 numbers"),
        ("0 1.5 0.5 0.25 0.5", "not all in 0 .. 1"),
        ("0 0.5 -0.5 0.25 0.5", "not all in 0 .. 1"),
        ("0 0.5 0.5 inf 0.5", "outside any image"),
        ("7 0.5 0.5 0.25 0.5", "not an index of the 2 names"),
        ("-1 0.5 0.5 0.25 0.5", "not an index of the 2 names"),
        ("0 0.5 0.5 nope 0.5", "is not a number"),
    ],
)
def test_yolo_hostile_lines(tmp_path, line, reason):
    root = yolo_root(tmp_path)
    (root / "labels" / "b.txt").write_text(f"1 0.1 0.25 0.2 0.5\n{line}\n")
    with pytest.raises(ValueError, match=reason) as error:
        read_ground_truth(root)
    assert str(error.value).startswith(f"{root / 'labels' / 'b.txt'}:2: ")


def test_yolo_hostile_class_lists(tmp_path):
    root = yolo_root(tmp_path, "names: {0: a}\n")
    with pytest.raises(ValueError, match="names must be a list"):
        read_ground_truth(root)
    (root / "data.yaml").write_text("names:\n  0: a\n  2: b\n")
    with pytest.raises(ValueError, match=r"indices must be 0 .. 1"):
        read_ground_truth(root)
    (root / "data.yaml").write_text("nc: 2\n")
    with pytest.raises(ValueError, match="no 'names:' class list"):
        read_ground_truth(root)
    (root / "data.yaml").write_bytes(b"names:\n" + b"  - x\n" * 200_000)
    with pytest.raises(InputFileError, match="more than the 1048576 bytes"):
        read_ground_truth(root)


# --- COCO -------------------------------------------------------------------------------------


def coco_file(path: Path, **changes) -> Path:
    data = {
        "images": [
            {"id": 1, "file_name": "train/a.jpg", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.png", "width": 50, "height": 20},
        ],
        "categories": [{"id": 7, "name": "jellyfish"}, {"id": 9, "name": "king_penguin"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 9, "bbox": [4.0, 2.0, 10.0, 5.5],
             "area": 55.0, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [30, 25, 20, 20],
             "area": 400, "iscrowd": 0},
        ],
    }  # fmt: skip
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


def test_coco_boxes_from_xywh(tmp_path):
    path = coco_file(tmp_path / "instances.json")
    assert detect_format(path) == "coco"
    truth = read_ground_truth(path)
    # x 4 .. 14 -> 4..13; y 2 .. 7.5 -> 2..7; the second clamped into the 40x30 image
    assert boxes(truth, "a") == [("king_penguin", [4, 2, 13, 7]), ("jellyfish", [30, 25, 39, 29])]
    assert truth.annotations["b"].labels == ()
    assert truth.annotations["b"].width == 50


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"categories": [{"id": i, "name": "c"} for i in range(10**6)]},
         "1000000 categories; more than the 100000"),
        ({"images": "x"}, "no 'images' list"),
        ({"annotations": [{"image_id": 5, "category_id": 7, "bbox": [1, 1, 1, 1]}]},
         "annotation 1: image_id 5 is not one of the images"),
        ({"annotations": [{"image_id": 1, "category_id": 8, "bbox": [1, 1, 1, 1]}]},
         "category_id 8 is not a category"),
        ({"annotations": [{"image_id": 1, "category_id": 7, "bbox": [1, 1, -1, 1]}]},
         "negative"),
        ({"annotations": [{"image_id": 1, "category_id": 7, "bbox": [1, 1, 1e300, 1]}]},
         "outside any image"),
        ({"annotations": [{"image_id": 1, "category_id": 7, "bbox": [1, 1, 1]}]},
         "'bbox' must be"),
        ({"images": [{"id": 1, "file_name": "a.jpg", "width": -4, "height": 3}]},
         "'width' must be a positive"),
        ({"categories": [{"id": 7, "name": "x" * 5000}]}, "a class name of 5000 characters"),
    ],
)  # fmt: skip
def test_coco_hostile(tmp_path, changes, reason):
    path = coco_file(tmp_path / "instances.json", **changes)
    with pytest.raises(ValueError, match=reason) as error:
        read_ground_truth(path)
    assert str(error.value).startswith(str(path))


def test_coco_deep_or_huge_json_refused(tmp_path, monkeypatch):
    path = tmp_path / "instances.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputFileError, match="nested deeper"):
        read_ground_truth(path)
    monkeypatch.setattr(interchange, "MAX_COCO_BYTES", 10)
    with pytest.raises(InputFileError, match="more than the 10 this file may hold"):
        read_ground_truth(coco_file(path))


# --- CSV --------------------------------------------------------------------------------------


def test_csv_inclusive_zero_based(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text(
        "path,class,xmin,ymin,xmax,ymax\n"
        "val/a.jpg,Jellyfish,1,2,30,20\n"
        "val/b.jpg,king_penguin,0,0,49,19\n"
        "val/a.jpg,golden_retriever,5,6,7,8\n"
    )
    assert detect_format(path) == "csv"
    truth = read_ground_truth(path, classes=CLASSES)
    assert boxes(truth, "a") == [("jellyfish", [1, 2, 30, 20]), ("golden_retriever", [5, 6, 7, 8])]
    assert boxes(truth, "b") == [("king_penguin", [0, 0, 49, 19])]
    kaggle = tmp_path / "LOC_val_solution.csv"
    kaggle.write_text("ImageId,PredictionString\na,n01440764 1 2 3 4\n")
    assert detect_format(kaggle) == "ilsvrc"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("path,label,xmin,ymin,xmax,ymax\n", ":1: expected the header"),
        ("path,class,xmin,ymin,xmax,ymax\na.jpg,x,1,2,3\n", ":2: expected 6 fields"),
        ("path,class,xmin,ymin,xmax,ymax\na.jpg,x,1,2,3.5,4\n", ":2: coordinates must be whole"),
        ("path,class,xmin,ymin,xmax,ymax\na.jpg,x,-1,2,3,4\n", ":2: invalid box"),
        ("path,class,xmin,ymin,xmax,ymax\na.jpg,x,1,2,3,1e20\n", ":2: ymax 1e20 is outside"),
        ("path,class,xmin,ymin,xmax,ymax\na.jpg,,1,2,3,4\n", ":2: empty class name"),
        ("path,class,xmin,ymin,xmax,ymax\n1/a.jpg,x,1,2,3,4\n2/a.jpg,x,1,2,3,4\n",
         ":3: 2/a.jpg and 1/a.jpg have one file stem a"),
        ("path,class,xmin,ymin,xmax,ymax\n", "no rows"),
    ],
)  # fmt: skip
def test_csv_hostile(tmp_path, text, reason):
    path = tmp_path / "boxes.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=reason) as error:
        read_ground_truth(path, fmt="csv")
    assert str(error.value).startswith(str(path))


def test_csv_long_line_refused(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_bytes(b"path,class,xmin,ymin,xmax,ymax\n" + b"a" * (2 << 20) + b"\n")
    with pytest.raises(InputFileError, match=r"boxes.csv:2: a line longer than"):
        read_ground_truth(path)


def test_unknown_format_and_meta(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("path,class,xmin,ymin,xmax,ymax\na.jpg,x,1,2,3,4\n")
    with pytest.raises(ValueError, match="unknown annotation format 'tfrecord'"):
        read_ground_truth(path, fmt="tfrecord")
    with pytest.raises(ValueError, match="`meta` goes with the devkit's labels"):
        read_ground_truth(path, meta=tmp_path / "meta.mat")
