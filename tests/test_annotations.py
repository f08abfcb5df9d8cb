"""Ground-truth readers on small files written in the real formats, plus the real sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import WNIDS, invoke, write_xml

from cam_cli.data.annotations import (
    ImageAnnotation,
    cub_box,
    read_annotations,
    read_cub,
    read_devkit_labels,
    read_loc_solution_csv,
    read_xml_dir,
)
from cam_cli.data.classes import ClassInfo
from cam_cli.data.matching import check_labels_known, match_images

SHARED = Path(__file__).parents[2] / "shared"
SAMPLE = SHARED / "data" / "ilsvrc2012-val-sample"

# --- ILSVRC XML -------------------------------------------------------------------------------


def test_xml_dir_reads_boxes_size_and_recurses(tmp_path):
    write_xml(
        tmp_path / "ILSVRC2012_val_00008726.xml",
        500,
        375,
        [("n02119789", (255, 142, 454, 329)), ("n02119789", (44, 21, 322, 295))],
    )
    write_xml(
        tmp_path / "n01751748" / "ILSVRC2012_val_00000001.xml",
        500,
        375,
        [("n01751748", (111, 108, 441, 193))],
    )
    annotations = read_xml_dir(tmp_path)
    assert set(annotations) == {"ILSVRC2012_val_00008726", "ILSVRC2012_val_00000001"}
    fox = annotations["ILSVRC2012_val_00008726"]
    assert fox == ImageAnnotation(
        image_id="ILSVRC2012_val_00008726",
        labels=("n02119789",),
        boxes=(("n02119789", (255, 142, 454, 329)), ("n02119789", (44, 21, 322, 295))),
        width=500,
        height=375,
    )
    assert annotations["ILSVRC2012_val_00000001"].labels == ("n01751748",)


def test_malformed_xml_names_the_file(tmp_path):
    write_xml(tmp_path / "ILSVRC2012_val_00000001.xml", 10, 10, [("n01", (0, 0, 5, 5))])
    bad = tmp_path / "ILSVRC2012_val_00000002.xml"
    bad.write_text("<annotation><size><width>10</width></size")
    with pytest.raises(ValueError, match="ILSVRC2012_val_00000002.xml"):
        read_xml_dir(tmp_path)


def test_xml_missing_coordinate_and_inverted_box_are_errors(tmp_path):
    path = write_xml(tmp_path / "a.xml", 10, 10, [("n01", (0, 0, 5, 5))])
    path.write_text(path.read_text().replace("\t\t\t<ymax>5</ymax>\n", ""))
    with pytest.raises(ValueError, match=r"a\.xml: missing <ymax>"):
        read_xml_dir(tmp_path)
    write_xml(tmp_path / "a.xml", 10, 10, [("n01", (6, 0, 5, 5))])
    with pytest.raises(ValueError, match="invalid box"):
        read_xml_dir(tmp_path)


def test_empty_xml_dir_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no .xml"):
        read_xml_dir(tmp_path)


# --- Kaggle CSV -------------------------------------------------------------------------------


def test_loc_solution_csv(tmp_path):
    path = tmp_path / "LOC_val_solution.csv"
    path.write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295 \n"
        "ILSVRC2012_val_00000001,n01751748 111 108 441 193 \n"
    )
    annotations = read_loc_solution_csv(path)
    assert annotations["ILSVRC2012_val_00008726"].boxes == (
        ("n02119789", (255, 142, 454, 329)),
        ("n02119789", (44, 21, 322, 295)),
    )
    assert annotations["ILSVRC2012_val_00008726"].labels == ("n02119789",)
    assert annotations["ILSVRC2012_val_00000001"].width is None  # the CSV has no sizes


def test_loc_solution_csv_errors_give_file_and_line(tmp_path):
    path = tmp_path / "LOC_val_solution.csv"
    path.write_text("ImageId,Boxes\nx,n01 0 0 1 1\n")
    with pytest.raises(ValueError, match=r"LOC_val_solution\.csv:1: expected header"):
        read_loc_solution_csv(path)
    path.write_text("ImageId,PredictionString\na,n01 0 0 1 1\nb,n01 0 0 1\n")
    with pytest.raises(ValueError, match=r"LOC_val_solution\.csv:3: .*got 4 tokens"):
        read_loc_solution_csv(path)
    path.write_text("ImageId,PredictionString\na,n01 0 0 1 1\na,n01 0 0 1 1\n")
    with pytest.raises(ValueError, match=r":3: duplicate ImageId a"):
        read_loc_solution_csv(path)
    path.write_text("ImageId,PredictionString\na,n01 0 0 x 1\n")
    with pytest.raises(ValueError, match=r":2: non-integer"):
        read_loc_solution_csv(path)


def test_coordinates_outside_any_image_and_huge_csv_fields_are_errors(tmp_path):
    """Issue 19 (9): ``<xmax>1e30</xmax>``, a CSV coordinate of 10^23 and a CSV field over csv's
    131,072-character limit are ValueErrors naming the file (and line), found while reading:
    before, they were an OverflowError after the model ran, or csv.Error."""
    write_xml(tmp_path / "a.xml", 10, 10, [("n01", (0, 0, 5, 5))])
    (tmp_path / "a.xml").write_text((tmp_path / "a.xml").read_text()
                                    .replace("<xmax>5</xmax>", "<xmax>1e30</xmax>"))  # fmt: skip
    with pytest.raises(ValueError, match=r"a\.xml: <xmax> 1e30 is outside any image"):
        read_xml_dir(tmp_path)
    path = tmp_path / "LOC_val_solution.csv"
    path.write_text(f"ImageId,PredictionString\na,n01 0 0 1 1\nb,n01 0 0 {10**23} 1\n")
    with pytest.raises(ValueError, match=r"LOC_val_solution\.csv:3: invalid box .*outside"):
        read_loc_solution_csv(path)
    path.write_text(f"ImageId,PredictionString\na,n01 0 0 1 1\nb,n01 0 0 {'1' * 140_000} 1\n")
    with pytest.raises(ValueError, match=r"LOC_val_solution\.csv:3: not a readable CSV row"):
        read_loc_solution_csv(path)


# --- devkit ground truth + meta.mat -----------------------------------------------------------


def write_meta_mat(path: Path, synsets: list[tuple[int, str, str, int]]) -> Path:
    """A meta.mat shaped like the devkit's: a column struct array ``synsets`` with its fields."""
    from scipy.io import savemat

    fields = [
        "ILSVRC2012_ID",
        "WNID",
        "words",
        "gloss",
        "num_children",
        "children",
        "wordnet_height",
        "num_train_images",
    ]
    array = np.zeros((len(synsets),), dtype=[(f, "O") for f in fields])
    for row, (ilsvrc_id, wnid, words, num_children) in enumerate(synsets):
        children = np.arange(1, num_children + 1, dtype=float)
        array[row] = (
            float(ilsvrc_id),
            wnid,
            words,
            "gloss",
            float(num_children),
            children,
            0.0,
            1300.0,
        )
    savemat(str(path), {"synsets": array}, oned_as="column")
    return path


META_SYNSETS = [
    (449, "n01440764", "tench, Tinca tinca", 0),
    (490, "n01751748", "sea snake", 0),
    (1001, "n00001740", "entity", 2),  # not a leaf: not an image class
]


def test_devkit_ids_map_to_wnids_through_meta_mat_not_sorted_index(tmp_path):
    meta = write_meta_mat(tmp_path / "meta.mat", META_SYNSETS)
    ground_truth = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    ground_truth.write_text("490\n449\n")
    annotations = read_devkit_labels(ground_truth, meta)
    # Image 1 has ILSVRC2012_ID 490 = n01751748 (sea snake), sorted-wnid index 65, not 490 and
    # not 489: only meta.mat knows the mapping.
    assert annotations["ILSVRC2012_val_00000001"].labels == ("n01751748",)
    assert annotations["ILSVRC2012_val_00000002"].labels == ("n01440764",)
    assert annotations["ILSVRC2012_val_00000001"].boxes == ()
    assert read_annotations(ground_truth, meta_mat=meta) == annotations


@pytest.mark.shared
def test_devkit_trap_against_the_real_sorted_mapping(tmp_path):
    mapping = SAMPLE / "LOC_synset_mapping.txt"
    if not mapping.is_file():
        pytest.skip(f"shared sample absent ({mapping})")
    from cam_cli.data.classes import read_synset_mapping

    wnids = [c.wnid for c in read_synset_mapping(mapping)]
    meta = write_meta_mat(tmp_path / "meta.mat", META_SYNSETS)
    ground_truth = tmp_path / "gt.txt"
    ground_truth.write_text("490\n")
    label = read_devkit_labels(ground_truth, meta)["ILSVRC2012_val_00000001"].labels[0]
    assert wnids.index(label) == 65
    assert label not in (wnids[489], wnids[490])  # what an index-based reading would give


def test_devkit_errors(tmp_path):
    meta = write_meta_mat(tmp_path / "meta.mat", META_SYNSETS)
    ground_truth = tmp_path / "gt.txt"
    ground_truth.write_text("490\n1001\n")
    with pytest.raises(ValueError, match=r"gt\.txt:2: ILSVRC2012_ID 1001 is not a class"):
        read_devkit_labels(ground_truth, meta)
    ground_truth.write_text("490\nsea snake\n")
    with pytest.raises(ValueError, match=r"gt\.txt:2: expected an ILSVRC2012_ID"):
        read_devkit_labels(ground_truth, meta)
    with pytest.raises(ValueError, match="meta.mat"):
        read_annotations(ground_truth)  # a .txt without meta.mat: refuse to guess
    not_mat = tmp_path / "not.mat"
    not_mat.write_text("hello")
    with pytest.raises(ValueError, match=r"not\.mat"):
        read_devkit_labels(ground_truth, not_mat)


def test_single_synset_meta_mat(tmp_path):
    meta = write_meta_mat(tmp_path / "meta.mat", [(490, "n01751748", "sea snake", 0)])
    ground_truth = tmp_path / "gt.txt"
    ground_truth.write_text("490\n")
    assert read_devkit_labels(ground_truth, meta)["ILSVRC2012_val_00000001"].labels == (
        "n01751748",
    )


# --- dispatch ---------------------------------------------------------------------------------


def test_read_annotations_dispatch(tmp_path):
    xml = write_xml(tmp_path / "xml" / "img.xml", 10, 10, [("n01", (0, 0, 5, 5))])
    csv_path = tmp_path / "solution.csv"
    csv_path.write_text("ImageId,PredictionString\nimg,n01 0 0 5 5\n")
    from_dir = read_annotations(tmp_path / "xml")
    from_csv = read_annotations(csv_path)
    assert from_dir["img"].boxes == from_csv["img"].boxes == (("n01", (0, 0, 5, 5)),)
    assert read_annotations(xml) == from_dir
    (tmp_path / "boxes.json").write_text("{}")
    with pytest.raises(ValueError, match="unknown annotation format"):
        read_annotations(tmp_path / "boxes.json")
    with pytest.raises(ValueError, match="no such file"):
        read_annotations(tmp_path / "missing.csv")


# --- CUB-200-2011 -----------------------------------------------------------------------------


def write_cub(root: Path) -> Path:
    root.mkdir()
    (root / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    (root / "images.txt").write_text(
        "1 001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg\n"
        "2 001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg\n"
        "3 002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg\n"
    )
    (root / "image_class_labels.txt").write_text("1 1\n2 1\n3 2\n")
    (root / "train_test_split.txt").write_text("1 0\n2 1\n3 0\n")
    (root / "bounding_boxes.txt").write_text(
        "1 60.0 27.0 325.0 304.0\n2 139.0 30.0 153.0 264.0\n3 10.4 20.6 30.2 40.5\n"
    )
    return root


def test_cub_box_conversion():
    # x=60, w=325 covers pixels 60..384 (325 pixels): inclusive xmax = 60 + 325 - 1.
    assert cub_box(60.0, 27.0, 325.0, 304.0) == (60, 27, 384, 330)
    # xmin = round(10.4) = 10, ymin = round(20.6) = 21,
    # xmax = round(10.4 + 30.2) - 1 = 41 - 1 = 40, ymax = round(20.6 + 40.5) - 1 = 61 - 1 = 60.
    assert cub_box(10.4, 20.6, 30.2, 40.5) == (10, 21, 40, 60)
    assert cub_box(-0.2, 3.0, 0.1, 0.2) == (0, 3, 0, 3)  # clamped to a valid one-pixel box


def test_read_cub_test_split(tmp_path):
    root = write_cub(tmp_path / "CUB_200_2011")
    annotations, classes, paths = read_cub(root)
    assert classes == [
        ClassInfo(0, None, "Black_footed_Albatross"),
        ClassInfo(1, None, "Laysan_Albatross"),
    ]
    assert set(annotations) == {"Black_Footed_Albatross_0046_18", "Laysan_Albatross_0002_1027"}
    albatross = annotations["Black_Footed_Albatross_0046_18"]
    assert albatross.labels == ("0",)  # class id 1 -> class index 0, as a string
    assert albatross.boxes == (("0", (60, 27, 384, 330)),)
    assert annotations["Laysan_Albatross_0002_1027"].labels == ("1",)
    assert paths["Laysan_Albatross_0002_1027"] == (
        root / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0002_1027.jpg"
    )
    assert check_labels_known(annotations, classes) == []


def test_read_cub_other_splits_and_errors(tmp_path):
    root = write_cub(tmp_path / "CUB_200_2011")
    assert set(read_cub(root, split="train")[0]) == {"Black_Footed_Albatross_0009_34"}
    assert len(read_cub(root, split="all")[0]) == 3
    with pytest.raises(ValueError, match="split"):
        read_cub(root, split="val")
    (root / "bounding_boxes.txt").write_text("1 60.0 27.0 325.0\n")
    with pytest.raises(ValueError, match=r"bounding_boxes\.txt:1: expected 5 fields"):
        read_cub(root)
    (root / "bounding_boxes.txt").unlink()
    with pytest.raises(ValueError, match="missing bounding_boxes.txt"):
        read_cub(root)


@pytest.mark.parametrize("value", ["inf", "nan", "1e30"])
def test_cub_box_that_is_not_finite_or_outside_any_image(tmp_path, value):
    """Issue 19 (9): a CUB box of ``inf`` was an OverflowError traceback."""
    root = write_cub(tmp_path / "CUB_200_2011")
    (root / "bounding_boxes.txt").write_text(
        f"1 60.0 27.0 {value} 304.0\n2 139.0 30.0 153.0 264.0\n3 10.4 20.6 30.2 40.5\n"
    )
    with pytest.raises(ValueError, match=r"bounding_boxes\.txt: image id 1: invalid box"):
        read_cub(root)


# --- matching images to annotations -----------------------------------------------------------


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


ANNOTATIONS = {
    image_id: ImageAnnotation(image_id, ("n01751748",), (("n01751748", (0, 0, 9, 9)),))
    for image_id in (
        "ILSVRC2012_val_00000001",
        "ILSVRC2012_val_00000002",
        "ILSVRC2012_val_00000003",
    )
}


def test_match_images_flat_layout_with_mismatches(tmp_path):
    val = tmp_path / "val"
    first = _touch(val / "ILSVRC2012_val_00000001.JPEG")
    second = _touch(val / "ILSVRC2012_val_00000002.jpg")
    stray = _touch(val / "ILSVRC2012_val_00009999.png")
    _touch(val / "notes.txt")  # not an image: ignored
    matched, images_without, annotations_without = match_images(val, ANNOTATIONS)
    assert [(path, a.image_id) for path, a in matched] == [
        (first, "ILSVRC2012_val_00000001"),
        (second, "ILSVRC2012_val_00000002"),
    ]
    assert images_without == [stray]
    assert annotations_without == ["ILSVRC2012_val_00000003"]


def test_match_images_wnid_subfolders(tmp_path):
    val = tmp_path / "val"
    for image_id in ANNOTATIONS:
        _touch(val / "n01751748" / f"{image_id}.JPEG")
    matched, images_without, annotations_without = match_images(val, ANNOTATIONS)
    assert len(matched) == 3
    assert not images_without
    assert not annotations_without
    assert all(path.parent.name == "n01751748" for path, _ in matched)


def test_match_images_refuses_duplicate_stems(tmp_path):
    val = tmp_path / "val"
    _touch(val / "ILSVRC2012_val_00000001.JPEG")
    _touch(val / "n01751748" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(ValueError, match="same name"):
        match_images(val, ANNOTATIONS)


def test_check_labels_known():
    classes = [ClassInfo(0, "n01440764", "tench"), ClassInfo(1, "n01751748", "sea snake")]
    annotations = {
        "a": ImageAnnotation("a", ("n01751748",), (("n01751748", (0, 0, 1, 1)),)),
        "b": ImageAnnotation("b", ("n09999999",), (("n08888888", (0, 0, 1, 1)),)),
        "c": ImageAnnotation("c", ("1",)),
        "d": ImageAnnotation("d", ("2",)),  # index out of range for 2 classes
    }
    assert check_labels_known(annotations, classes) == ["2", "n08888888", "n09999999"]


# --- the real sample --------------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"shared ILSVRC sample absent ({SAMPLE})")
def test_real_sample_xml_and_csv_agree_for_all_images():
    from cam_cli.data.classes import read_synset_mapping

    from_xml = read_annotations(SAMPLE / "annotations")
    from_csv = read_annotations(SAMPLE / "LOC_val_solution.csv")
    assert len(from_xml) == len(from_csv) == 434
    assert set(from_xml) == set(from_csv)
    for image_id, xml_annotation in from_xml.items():
        assert (xml_annotation.labels, xml_annotation.boxes) == (
            from_csv[image_id].labels,
            from_csv[image_id].boxes,
        ), image_id
        assert (xml_annotation.width, xml_annotation.height) == (227, 227)
    matched, images_without, annotations_without = match_images(SAMPLE / "val", from_xml)
    assert len(matched) == 434
    assert not images_without
    assert not annotations_without
    classes = read_synset_mapping(SAMPLE / "LOC_synset_mapping.txt")
    assert check_labels_known(from_xml, classes) == []


def test_a_latin1_csv_is_named_in_its_error(tmp_path):
    from cam_cli.data.annotations import read_annotations

    path = tmp_path / "LOC_val_solution.csv"
    path.write_bytes("ImageId,PredictionString\na,n01440764 1 2 3 4 caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8 text") as failed:
        read_annotations(path)
    assert str(failed.value) == (
        f"{path}:2: not UTF-8 text (byte 0xe9 at column 24); save it as UTF-8"
    )


# --- moved from test_hardening.py (issue 13: what a careless user or an attacker tries) ---


def test_gt_boxes_outside_the_image_are_clipped_with_a_note(fake, tmp_path):
    ann = tmp_path / "ann.csv"
    ann.write_text(f"ImageId,PredictionString\na,{WNIDS[0]} 2 3 300 33\n")
    record = {"path": "a.jpg", "width": 48, "height": 40, "predictions": [
        {"rank": 1, "class_index": 0, "wnid": WNIDS[0], "name": "x", "score": 0.9,
         "box": [2, 3, 47, 33]}]}  # fmt: skip
    result = invoke("eval", "--predictions", "-", "--annotations", ann, "--json", "-",
                    input=json.dumps(record) + "\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "a ground-truth box reaches outside the 48x40 image; clipped" in result.stderr
    assert json.loads(result.stdout)["top1_loc_error"] == 0.0
