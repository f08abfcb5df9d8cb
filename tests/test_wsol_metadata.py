"""wsolevaluation's metadata (read as their data_loaders.py reads it, written by `cam-cli
convert`), PxAP on masks (hand-computed), and `synth --masks`. PxAP and the mask loading were
also checked against wsolevaluation's own MaskEvaluator and get_mask (README, "PxAP")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke
from PIL import Image

from cam_cli.data.annotations import read_annotations, read_cub
from cam_cli.data.wsol_metadata import (
    WsolMetadata,
    annotations_from_metadata,
    metadata_texts,
    read_wsol_metadata,
)
from cam_cli.evaluation.pxap import (
    PxAP,
    ground_truth_mask,
    pxap_from_scoremap_dir,
    pxap_of_scoremaps,
    resize_nearest,
    wsol_thresholds,
)
from cam_cli.synthetic.dataset import generate_dataset
from cam_cli.synthetic.render import class_specs, render_sample, val_labels, val_rng


def write_metadata(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("image_ids", "class_labels", "image_sizes", "localization"):
        (folder / f"{name}.txt").write_text(files.get(name, ""))
    return folder


# --- reading their metadata -------------------------------------------------------------------


def test_box_metadata_without_trailing_newline_and_two_boxes_for_one_image(tmp_path):
    folder = write_metadata(
        tmp_path / "m",
        image_ids="val/a.JPEG\nval/b.JPEG",  # their files end without a newline
        class_labels="val/a.JPEG,65\nval/b.JPEG,970",
        image_sizes="val/a.JPEG,500,375\nval/b.JPEG,500,375",
        localization="val/a.JPEG,111,108,441,193\nval/b.JPEG,45,49,499,162\nval/b.JPEG,2,69,437,207",
    )
    metadata = read_wsol_metadata(folder)
    assert metadata.image_ids == ("val/a.JPEG", "val/b.JPEG")
    assert metadata.kind == "boxes"
    assert metadata.boxes["val/b.JPEG"] == ((45, 49, 499, 162), (2, 69, 437, 207))  # file order
    truth = annotations_from_metadata(metadata)
    assert truth["b"].labels == ("970",)
    assert truth["b"].boxes == (("970", (45, 49, 499, 162)), ("970", (2, 69, 437, 207)))
    assert (truth["a"].width, truth["a"].height) == (500, 375)
    # written back: the same rows, now with newlines
    assert metadata_texts(metadata)["localization.txt"] == (
        "val/a.JPEG,111,108,441,193\nval/b.JPEG,45,49,499,162\nval/b.JPEG,2,69,437,207\n"
    )


def test_mask_metadata_with_an_empty_ignore_field(tmp_path):
    folder = write_metadata(
        tmp_path / "m",
        image_ids="test/c/1.jpg\r\ntest/c/2.jpg\r\n",  # CRLF is tolerated
        class_labels="test/c/1.jpg,0\r\ntest/c/2.jpg,3\r\n",
        localization="test/c/1.jpg,test/c/1_mc_aa.png,test/c/1_ignore.png\r\n"
        "test/c/1.jpg,test/c/1_mc_bb.png,\r\n"
        "test/c/2.jpg,test/c/2_mc_cc.png,",
    )
    metadata = read_wsol_metadata(folder)
    assert metadata.kind == "masks"
    assert metadata.masks["test/c/1.jpg"] == ("test/c/1_mc_aa.png", "test/c/1_mc_bb.png")
    assert metadata.ignore == {"test/c/1.jpg": "test/c/1_ignore.png", "test/c/2.jpg": None}
    assert metadata.image_sizes == {}  # OpenImages' image_sizes.txt is empty
    assert annotations_from_metadata(metadata)["2"].boxes == ()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"localization": "a.jpg,1,2,3"}, "localization.txt:1: expected 3 or 5"),
        ({"localization": "a.jpg,5,2,3,4"}, "localization.txt:1: invalid box"),
        ({"class_labels": "a.jpg,x"}, "class_labels.txt:1: the class label is not an integer"),
        ({"class_labels": ""}, "no label for 1 image"),
        ({"localization": "a.jpg,m1.png,i1.png\na.jpg,m2.png,i2.png"}, "a second ignore mask"),
        ({"localization": "a.jpg,m.png,\na.jpg,1,2,3,4"}, "a box row in a localization.txt"),
    ],
)
def test_malformed_metadata_names_file_and_line(tmp_path, files, message):
    base = {"image_ids": "a.jpg\n", "class_labels": "a.jpg,0\n", "image_sizes": "a.jpg,9,9\n"}
    folder = write_metadata(tmp_path / "m", **{**base, **files})
    with pytest.raises(ValueError, match=message):
        read_wsol_metadata(folder)


def test_rows_of_unlisted_images_are_left_out_as_theirs(tmp_path):
    """A trimmed image_ids.txt evaluates a subset: their evaluators loop over its ids only."""
    folder = write_metadata(
        tmp_path / "m",
        image_ids="a.jpg\n",
        class_labels="a.jpg,0\nb.jpg,1\n",
        image_sizes="a.jpg,9,9\nb.jpg,9,9\n",
        localization="a.jpg,1,2,3,4\nb.jpg,1,2,3,4\n",
    )
    metadata = read_wsol_metadata(folder)
    assert metadata.image_ids == ("a.jpg",)
    assert set(metadata.class_labels) == {"a.jpg"}
    assert set(metadata.boxes) == {"a.jpg"}
    assert set(metadata.image_sizes) == {"a.jpg"}


def test_ids_sharing_a_stem_are_refused():
    metadata = WsolMetadata(
        ("val2/0/0.jpeg", "val2/1/0.jpeg"), {"val2/0/0.jpeg": 0, "val2/1/0.jpeg": 1}
    )
    with pytest.raises(ValueError, match="share the file stem 0"):
        annotations_from_metadata(metadata)


# --- convert: any ground truth -> metadata -> the same ground truth ---------------------------

WNIDS = ["n01440764", "n01751748", "n02119789"]


def write_image(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 90, np.uint8)).save(path)


@pytest.fixture
def ilsvrc(tmp_path) -> Path:
    """Three non-square images (80x60, 60x90), one with two boxes, as XML and as Kaggle CSV."""
    root = tmp_path / "data"
    (root / "xml").mkdir(parents=True)
    truth = {
        "ILSVRC2012_val_00000001": (WNIDS[1], (80, 60), [(5, 4, 40, 35), (50, 10, 79, 59)]),
        "ILSVRC2012_val_00000002": (WNIDS[2], (60, 90), [(0, 0, 59, 89)]),
        "ILSVRC2012_val_00000003": (WNIDS[0], (80, 60), [(10, 20, 30, 40)]),
    }
    rows = []
    for stem, (wnid, size, boxes) in truth.items():
        write_image(root / "val" / f"{stem}.JPEG", size)
        objects = "".join(
            f"<object><name>{wnid}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
            f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for b in boxes
        )
        (root / "xml" / f"{stem}.xml").write_text(
            f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>"
            f"{objects}</annotation>"
        )
        rows.append(f"{stem}," + " ".join(f"{wnid} {' '.join(map(str, b))}" for b in boxes))
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows))
    (root / "classes.txt").write_text("".join(f"{w} class{i}\n" for i, w in enumerate(WNIDS)))
    return root


@pytest.mark.parametrize("source", ["xml", "LOC_val_solution.csv"])
def test_convert_round_trip_ilsvrc(ilsvrc, tmp_path, source):
    out = tmp_path / "wsol" / "test"
    result = invoke("convert", out, "--annotations", ilsvrc / source, "--images",
                    ilsvrc / "val", "--classes", ilsvrc / "classes.txt")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"out": str(out), "images": 3, "boxes": 4}
    assert (out / "image_ids.txt").read_text().splitlines()[0] == "val/ILSVRC2012_val_00000001.JPEG"
    assert (out / "image_sizes.txt").read_text().splitlines()[1] == (
        "val/ILSVRC2012_val_00000002.JPEG,60,90"
    )
    assert (out / "class_labels.txt").read_text().splitlines()[1].endswith(",2")  # n02119789
    back = annotations_from_metadata(read_wsol_metadata(out))
    original = read_annotations(ilsvrc / source)
    index = {w: str(i) for i, w in enumerate(WNIDS)}
    assert set(back) == set(original)
    for stem, annotation in original.items():
        assert back[stem].labels == tuple(index[w] for w in annotation.labels)
        assert back[stem].boxes == tuple((index[w], b) for w, b in annotation.boxes)
        width, height = Image.open(ilsvrc / "val" / f"{stem}.JPEG").size
        assert (back[stem].width, back[stem].height) == (width, height)


def test_convert_round_trip_cub(tmp_path):
    root = tmp_path / "CUB_200_2011"
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    (root / "classes.txt").parent.mkdir(parents=True)
    (root / "classes.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    rows = {"images": [], "image_class_labels": [], "train_test_split": [], "bounding_boxes": []}
    for i in range(4):
        relpath = f"{classes[i % 2]}/bird_{i}.jpg"
        write_image(root / "images" / relpath, (90 + i, 50))
        rows["images"].append(f"{i + 1} {relpath}")
        rows["image_class_labels"].append(f"{i + 1} {i % 2 + 1}")
        rows["train_test_split"].append(f"{i + 1} {int(i == 3)}")
        rows["bounding_boxes"].append(f"{i + 1} {10.0 + i} 8.4 41.6 33.0")
    for name, lines in rows.items():
        (root / f"{name}.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "wsol"
    result = invoke("convert", out, "--cub", root)
    assert result.exit_code == 0, result.output
    assert (out / "image_ids.txt").read_text().splitlines() == [
        "001.Black_footed_Albatross/bird_0.jpg",
        "001.Black_footed_Albatross/bird_2.jpg",
        "002.Laysan_Albatross/bird_1.jpg",
    ]
    # x 10, w 41.6 -> inclusive xmin 10, xmax round(51.6) - 1 = 51; y 8.4, h 33 -> 8, 40
    assert (out / "localization.txt").read_text().splitlines()[0].endswith(",10,8,51,40")
    back = annotations_from_metadata(read_wsol_metadata(out))
    original, _, _ = read_cub(root, "test")
    assert {k: (a.labels, a.boxes) for k, a in back.items()} == {
        k: (a.labels, a.boxes) for k, a in original.items()
    }
    assert (back["bird_2"].width, back["bird_2"].height) == (92, 50)


def test_convert_usage_errors(ilsvrc, tmp_path):
    result = invoke(
        "convert", tmp_path / "o", "--annotations", ilsvrc / "xml", "--images", ilsvrc / "val"
    )
    assert result.exit_code == 2
    assert "--classes LOC_synset_mapping.txt" in result.output
    result = invoke("convert", tmp_path / "o", "--annotations", ilsvrc / "xml")
    assert result.exit_code == 2
    assert "--images DIR" in result.output


def test_eval_with_wsol_metadata_equals_eval_with_xml(ilsvrc, tmp_path):
    """The same predictions scored against the XML and against their conversion."""
    out = tmp_path / "wsol"
    invoke("convert", out, "--annotations", ilsvrc / "xml", "--images", ilsvrc / "val",
           "--classes", ilsvrc / "classes.txt")  # fmt: skip
    records = [
        {"path": "val/ILSVRC2012_val_00000001.JPEG", "width": 80, "height": 60,
         "predictions": [{"rank": 1, "class_index": 1, "wnid": WNIDS[1], "name": None,
                          "score": 0.9, "box": [50, 10, 79, 59]}]},
        {"path": "val/ILSVRC2012_val_00000002.JPEG", "width": 60, "height": 90,
         "predictions": [{"rank": 1, "class_index": 0, "wnid": WNIDS[0], "name": None,
                          "score": 0.9, "box": [0, 0, 59, 89]}]},
        {"path": "val/ILSVRC2012_val_00000003.JPEG", "width": 80, "height": 60,
         "predictions": [{"rank": 1, "class_index": 0, "wnid": WNIDS[0], "name": None,
                          "score": 0.9, "box": [0, 0, 5, 5]}]},
    ]  # fmt: skip
    text = "".join(json.dumps(r) + "\n" for r in records)
    reports = []
    for ground_truth in (["--annotations", ilsvrc / "xml"], ["--wsol-metadata", out]):
        result = invoke("eval", "--predictions", "-", *ground_truth, "--json", "-", input=text)
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout))
    keep = ("top1_loc_error", "top5_loc_error", "top1_cls_error", "images")
    assert {k: reports[0][k] for k in keep} == {k: reports[1][k] for k in keep}
    # image 1 right (second box IoU 1), image 2 wrong class, image 3 right class, box off
    assert reports[1]["top1_loc_error"] == pytest.approx(100 * 2 / 3)
    assert reports[1]["top1_cls_error"] == pytest.approx(100 * 1 / 3)


# --- PxAP ----------------------------------------------------------------------------------------


def save_mask(path: Path, mask) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(mask, np.uint8) * 255, "L").save(path)
    return path.name


def test_threshold_grid_is_theirs():
    grid = wsol_thresholds(0.01)
    assert len(grid) == 100
    assert grid[0] == 0
    assert grid[-1] == 0.99
    assert grid[7] == 0.07000000000000001  # np.arange's values, not round(0.07)
    assert len(wsol_thresholds(0.001)) == 1000


def test_nearest_resize_is_opencvs_not_the_centre_rule():
    row = np.array([[10, 20, 30]])
    # cv2.INTER_NEAREST: x * (1 / (2 / 3)) = 0, 1.5 -> floor -> 0, 1 (PIL's centre rule: 0, 2)
    assert resize_nearest(row, (1, 2)).tolist() == [[10, 20]]
    # 500 -> 224: output 223 reads floor(223 * 500 / 224) = 497
    assert resize_nearest(np.arange(500)[None], (1, 224))[0, 223] == 497
    assert resize_nearest(np.arange(3)[None], (1, 7)).tolist() == [[0, 0, 0, 1, 1, 2, 2]]


SCORES_A = np.array([[0.95, 0.55, 0.15], [0.55, 0.0, 1.0]])
FOREGROUND_A = np.array([[1, 0, 0], [1, 0, 0]], bool)
IGNORE_A = np.array([[0, 0, 0], [0, 0, 1]], bool)


def test_pxap_by_hand_with_an_ignore_region():
    """Foreground scores 0.95, 0.55; background 0.55, 0.15, 0.0; the 1.0 pixel is ignored.
    From the top: at 0.95 precision 1, recall 1/2; at 0.55 precision 2/3, recall 1; lower
    thresholds add no recall. PxAP = 1 * 1/2 + 2/3 * 1/2 = 5/6."""
    scorer = PxAP()
    scorer.add(SCORES_A, FOREGROUND_A, IGNORE_A)
    assert scorer.value() == pytest.approx(100 * 5 / 6, abs=1e-12)
    # a batch of one is the same
    batch = PxAP()
    batch.add(SCORES_A[None], FOREGROUND_A[None], IGNORE_A[None])
    assert batch.value() == scorer.value()
    assert batch.images == 1
    # Without the ignore region the 1.0 background pixel counts: at 1.0 precision 0, then
    # 1/2 at recall 1/2 and 2/4 at recall 1: PxAP = 0.5 * 1/2 + 0.5 * 1/2 = 1/2.
    plain = PxAP()
    plain.add(SCORES_A, FOREGROUND_A)
    assert plain.value() == pytest.approx(50.0, abs=1e-12)


def test_pxap_from_files_with_an_empty_ignore_field(tmp_path):
    """Image a as above (its ignore mask in a file), image b with no ignore mask (empty field,
    wsolevaluation #33): map [1.0, 0.0], foreground the first pixel. Over both: at 1.0 tp 1,
    fp 0; at 0.95 tp 2, fp 0; at 0.55 tp 3, fp 1 (recall steps of 1/3). PxAP = (1 + 1 + 3/4)/3."""
    masks = tmp_path / "masks" / "test" / "c"
    save_mask(masks / "a_mc_00.png", FOREGROUND_A)
    save_mask(masks / "a_ignore.png", IGNORE_A)
    save_mask(masks / "b_mc_01.png", [[1, 0]])
    meta = write_metadata(
        tmp_path / "meta",
        image_ids="test/c/a.jpg\ntest/c/b.jpg",
        class_labels="test/c/a.jpg,0\ntest/c/b.jpg,0",
        localization="test/c/a.jpg,test/c/a_mc_00.png,test/c/a_ignore.png\n"
        "test/c/b.jpg,test/c/b_mc_01.png,",
    )
    maps = tmp_path / "scoremaps" / "test" / "c"
    maps.mkdir(parents=True)
    np.save(maps / "a.jpg.npy", SCORES_A)
    np.save(maps / "b.jpg.npy", np.array([[1.0, 0.0]]))
    summary = pxap_from_scoremap_dir(meta, tmp_path / "scoremaps", tmp_path / "masks")
    assert summary["pxap"] == pytest.approx(100 * 2.75 / 3, abs=1e-12)
    assert summary["images"] == 2
    assert summary["foreground_pixels"] == 3
    assert summary["background_pixels"] == 4  # a: 3 (one ignored), b: 1
    in_memory = pxap_of_scoremaps(
        {"a": SCORES_A, "b": np.array([[1.0, 0.0]])},
        {"a": [masks / "a_mc_00.png"], "b": [masks / "b_mc_01.png"]},
        {"a": masks / "a_ignore.png", "b": None},
    )
    assert in_memory == summary


def test_ground_truth_mask_unites_instances_and_ignores_only_outside_them(tmp_path):
    save_mask(tmp_path / "m1.png", [[1, 0, 0, 0]] * 2)
    save_mask(tmp_path / "m2.png", [[0, 0, 0, 1]] * 2)
    save_mask(tmp_path / "ignore.png", [[1, 1, 0, 0]] * 2)
    foreground, ignored = ground_truth_mask(
        [tmp_path / "m1.png", tmp_path / "m2.png"], tmp_path / "ignore.png", (2, 4)
    )
    assert foreground.tolist() == [[True, False, False, True]] * 2
    assert ignored.tolist() == [[False, True, False, False]] * 2  # the ignore box minus m1


# --- synth --masks ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_masks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    generate_dataset(out, num_classes=3, train_per_class=1, val_images=12, seed=0, masks=True)
    return out


def test_synth_masks_are_the_objects_pixels(synth_masks):
    metadata = read_wsol_metadata(synth_masks / "wsol" / "val")
    assert metadata.kind == "masks"
    assert len(metadata.image_ids) == 12
    classes = class_specs(3)
    labels = val_labels(12, 3, 0)
    two = 0
    for number in range(1, 13):
        image_id = f"val/ILSVRC2012_val_{number:08d}.JPEG"
        spec = classes[int(labels[number - 1])]
        sample = render_sample(spec, classes, val_rng(0, number), 64)
        paths = metadata.masks[image_id]
        assert len(paths) == len(sample.masks)
        two += len(paths) == 2
        for path, mask in zip(paths, sample.masks, strict=True):
            assert f"_m{spec.wnid}_" in path
            assert np.array_equal(np.asarray(Image.open(synth_masks / path)) == 255, mask)
        ignore = np.asarray(Image.open(synth_masks / metadata.ignore[image_id])) == 255
        union = np.logical_or.reduce(sample.masks)
        assert not (ignore & union).any()
        assert ignore.any()
        assert metadata.class_labels[image_id] == spec.index
    assert two >= 1  # an image with two objects: two rows, the ignore on the first only


def test_synth_masks_pxap_of_ideal_and_box_maps(synth_masks, tmp_path):
    """The mask itself as the score map gives PxAP 100; a map that is 1 inside each object's
    box and 0 elsewhere gives 100 * (object pixels) / (box pixels not ignored), by hand."""
    metadata = read_wsol_metadata(synth_masks / "wsol" / "val")
    ideal, boxes = tmp_path / "ideal", tmp_path / "boxes"
    foreground_pixels = box_pixels = 0
    for image_id in metadata.image_ids:
        foreground, ignored = ground_truth_mask(
            [synth_masks / p for p in metadata.masks[image_id]],
            synth_masks / metadata.ignore[image_id],
            (64, 64),
        )
        box_map = np.zeros((64, 64))
        for path in metadata.masks[image_id]:
            ys, xs = np.nonzero(np.asarray(Image.open(synth_masks / path)))
            box_map[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = 1.0
        foreground_pixels += foreground.sum()
        box_pixels += ((box_map == 1) & ~ignored).sum()
        for folder, scoremap in ((ideal, foreground.astype(np.float64)), (boxes, box_map)):
            (folder / "val").mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{image_id}.npy", scoremap)
    meta = synth_masks / "wsol" / "val"
    assert pxap_from_scoremap_dir(meta, ideal, synth_masks)["pxap"] == pytest.approx(100.0)
    expected = 100 * foreground_pixels / box_pixels
    assert pxap_from_scoremap_dir(meta, boxes, synth_masks)["pxap"] == pytest.approx(expected)
    assert 40 < expected < 95


def test_synth_cli_masks_flag_and_default_without_masks(tmp_path):
    result = invoke("synth", tmp_path / "plain", "--train-per-class", "1", "--val-images", "2")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "plain" / "masks").exists()
    assert not (tmp_path / "plain" / "wsol").exists()
    assert "masks" not in json.loads((tmp_path / "plain" / "synthetic.json").read_text())
    result = invoke(
        "synth", tmp_path / "m", "--train-per-class", "1", "--val-images", "2", "--masks"
    )
    assert result.exit_code == 0, result.output
    assert len(read_wsol_metadata(tmp_path / "m" / "wsol" / "val").image_ids) == 2


def test_eval_model_run_gives_pxap_on_synth_masks(synth_masks, tmp_path):
    """A seeded untrained small-gap over the 12 mask images: PxAP is reported, its pixel counts
    are those of the masks at wsolevaluation's 224x224 score-map grid, the table has its line,
    and it equals PxAP of the maps the same run saves with --save-scoremaps (what their
    MaskEvaluator would score)."""
    import torch

    from cam_cli.models.registry import build_model

    size = 224

    torch.manual_seed(0)
    torch.save(build_model("small-gap", 3).state_dict(), tmp_path / "w.pth")
    result = invoke(
        "eval", "--arch", "small-gap", "--weights", tmp_path / "w.pth", "--classes",
        synth_masks / "LOC_synset_mapping.txt", "--wsol-metadata", synth_masks / "wsol" / "val",
        "--images", synth_masks, "--workers", "0", "--no-fast", "--quiet",
        "--json", tmp_path / "r.json", "--save-scoremaps", tmp_path / "maps",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    pxap = report["pxap"]
    saved = pxap_from_scoremap_dir(synth_masks / "wsol" / "val", tmp_path / "maps", synth_masks)
    assert saved["pxap"] == pytest.approx(pxap["pxap"], abs=1e-9)
    assert saved["images"] == 12
    assert pxap["images"] == 12
    assert pxap["failed_images"] == 0
    metadata = read_wsol_metadata(synth_masks / "wsol" / "val")
    foreground = sum(
        ground_truth_mask(
            [synth_masks / p for p in metadata.masks[i]],
            synth_masks / metadata.ignore[i],
            (size, size),
        )[0].sum()
        for i in metadata.image_ids
    )
    assert pxap["foreground_pixels"] == foreground
    assert 0 < pxap["pxap"] <= 100
    assert "PxAP (12 images" in result.stdout
    assert report["images"] == 12  # classification figures as usual; no boxes to localize


def test_real_sample_converted_reads_back_as_the_xml(sample_dir, tmp_path):
    """The 434 real ILSVRC val images: XML and Kaggle CSV convert to the same files, which read
    back as the XML's labels (sorted-wnid indices) and boxes, one row per box."""
    out = {}
    for source in ("annotations", "LOC_val_solution.csv"):
        out[source] = tmp_path / source
        result = invoke(
            "convert", out[source], "--annotations", sample_dir / source,
            "--images", sample_dir / "val", "--classes", sample_dir / "LOC_synset_mapping.txt",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    texts = [{f.name: f.read_text() for f in sorted(o.iterdir())} for o in out.values()]
    assert texts[0] == texts[1]
    assert json.loads(result.stdout) == {"out": str(out[source]), "images": 434, "boxes": 659}
    back = annotations_from_metadata(read_wsol_metadata(out["annotations"]))
    xml = read_annotations(sample_dir / "annotations")
    index = {line.split()[0]: str(i) for i, line in enumerate(
        (sample_dir / "LOC_synset_mapping.txt").read_text().splitlines())}  # fmt: skip
    assert back["ILSVRC2012_val_00000363"].labels == ("133",)  # n02011460 bittern
    for stem, annotation in xml.items():
        assert back[stem].boxes == tuple((index[w], b) for w, b in annotation.boxes)
        assert (back[stem].width, back[stem].height) == (227, 227)


def test_model_run_with_wsol_metadata_equals_xml(ilsvrc, tmp_path):
    import torch

    from cam_cli.models.registry import build_model

    torch.manual_seed(0)
    torch.save(build_model("small-gap", 3).state_dict(), tmp_path / "w.pth")
    invoke("convert", tmp_path / "wsol", "--annotations", ilsvrc / "xml", "--images",
           ilsvrc / "val", "--classes", ilsvrc / "classes.txt")  # fmt: skip
    model = ["eval", "--arch", "small-gap", "--weights", tmp_path / "w.pth", "--classes",
             ilsvrc / "classes.txt", "--workers", "0", "--no-fast", "-q",
             "--maxboxacc"]  # fmt: skip
    reports = []
    for truth in (["--annotations", ilsvrc / "xml", "--images", ilsvrc / "val"],
                  ["--wsol-metadata", tmp_path / "wsol", "--images", ilsvrc]):  # fmt: skip
        result = invoke(*model, *truth, "--json", "-")
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout))
    for report in reports:
        del report["settings"]
    assert reports[0] == reports[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--annotations", "a", "--mask-root", "m", "--images", "i"], "--mask-root goes with"),
        (["--wsol-metadata", "w", "--arch", "small-gap"], "give the images: --images ROOT"),
        (["--wsol-metadata", "w", "--cub", "c"], "--wsol-metadata DIR (one of them)"),
    ],
)
def test_eval_wsol_usage_errors(args, message):
    result = invoke("eval", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.output


def test_eval_missing_mask_file_stops_before_any_image(synth_masks, tmp_path):
    result = invoke(
        "eval", "--arch", "small-gap", "--wsol-metadata", synth_masks / "wsol" / "val",
        "--images", synth_masks, "--mask-root", tmp_path, "--classes",
        synth_masks / "LOC_synset_mapping.txt", "-q",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "no such mask file" in result.stderr, result.output


def test_eval_scoremaps_with_mask_metadata_gives_pxap(synth_masks, tmp_path):
    """`eval --scoremaps DIR --wsol-metadata M --mask-root R` scores anyone's maps against masks
    with no model: the masks themselves as maps give PxAP 100; a damaged map is a failed image
    (exit 1), named, and left out of the curve."""
    metadata = read_wsol_metadata(synth_masks / "wsol" / "val")
    maps = tmp_path / "maps"
    (maps / "val").mkdir(parents=True)
    for image_id in metadata.image_ids:
        foreground, _ = ground_truth_mask(
            [synth_masks / p for p in metadata.masks[image_id]],
            synth_masks / metadata.ignore[image_id],
            (224, 224),
        )
        np.save(maps / f"{image_id}.npy", foreground.astype(np.float64))
    args = ["eval", "--scoremaps", maps, "--wsol-metadata", synth_masks / "wsol" / "val",
            "--mask-root", synth_masks, "--json", tmp_path / "r.json"]  # fmt: skip
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["pxap"]["pxap"] == pytest.approx(100.0)
    assert report["pxap"]["images"] == 12
    assert report["images"] == 12
    assert report["failed_images"] == 0
    assert "PxAP (12 images" in result.stdout
    np.save(maps / metadata.image_ids[0].replace(".JPEG", ".JPEG.npy"), np.full((224, 224), 2.0))
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["failed_images"] == 1
    assert report["pxap"]["images"] == 11
    assert report["pxap"]["pxap"] == pytest.approx(100.0)


def test_convert_tiny_imagenet_val_annotations(tmp_path):
    """Tiny ImageNet's val_annotations.txt (tab-separated, CRLF here) to wsolevaluation's
    metadata: ids under the folder above --images, labels the sorted-wnid index of --classes,
    boxes unchanged (both inclusive), sizes from the images (one is not 64x64)."""
    root = tmp_path / "tiny" / "val"
    write_image(root / "images" / "val_0.JPEG", (64, 64))
    write_image(root / "images" / "val_1.JPEG", (64, 48))
    (root / "val_annotations.txt").write_bytes(
        b"val_0.JPEG\tn02000002\t0\t32\t44\t62\r\nval_1.JPEG\tn01000001\t3\t4\t60\t40\r\n"
    )
    (tmp_path / "wnids.txt").write_text("n01000001\nn02000002\n")  # sorted, as cam-cli trains
    out = tmp_path / "meta"
    result = invoke("convert", out, "--annotations", root / "val_annotations.txt",
                    "--images", root / "images", "--classes", tmp_path / "wnids.txt")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "image_ids.txt").read_text().split() == ["images/val_0.JPEG", "images/val_1.JPEG"]
    assert (out / "class_labels.txt").read_text().split() == [
        "images/val_0.JPEG,1",
        "images/val_1.JPEG,0",
    ]
    assert (out / "image_sizes.txt").read_text().split() == [
        "images/val_0.JPEG,64,64",
        "images/val_1.JPEG,64,48",
    ]
    assert (out / "localization.txt").read_text().split() == [
        "images/val_0.JPEG,0,32,44,62",
        "images/val_1.JPEG,3,4,60,40",
    ]


# --- issue 25: linear reading, bounded lines, ids that stay below their root ---------------


def test_a_hundred_thousand_ids_read_in_linear_time(tmp_path):
    """Issue 25 (4): ``image_id in ids`` on a list made reading quadratic (100k ids: 62 s, ILSVRC
    train's 1.28 M: hours). Linear, it takes well under a second here; the bound only catches
    the quadratic reader (scripts/benchmarks/bench_wsol_metadata.py measures it)."""
    import time

    ids = [f"train/n{i % 1000:08d}/img_{i}.JPEG" for i in range(100_000)]
    folder = write_metadata(
        tmp_path / "m",
        image_ids="".join(f"{i}\n" for i in ids),
        class_labels="".join(f"{i},{n % 1000}\n" for n, i in enumerate(ids)),
        image_sizes="".join(f"{i},64,48\n" for i in ids),
        localization="".join(f"{i},1,2,30,40\n" for i in ids),
    )
    started = time.monotonic()
    metadata = read_wsol_metadata(folder)
    assert time.monotonic() - started < 20
    assert len(metadata.image_ids) == 100_000
    assert metadata.image_ids[-1] == ids[-1]
    assert metadata.boxes[ids[5]] == ((1, 2, 30, 40),)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"image_ids": "../outside/evil.JPEG\n"}, r"image_ids.txt:1: image id '../outside/evil"),
        ({"image_ids": "/etc/passwd\n"}, r"image_ids.txt:1: image id '/etc/passwd' "),
        ({"image_ids": "val/../../x.JPEG\n"}, r"image_ids.txt:1: image id 'val/../../x.JPEG'"),
        ({"localization": "a.jpg,../../m.png,\n"}, r"localization.txt:1: mask path '../../m"),
        ({"localization": "a.jpg,m.png,/abs/i.png\n"}, r":1: ignore mask path '/abs/i.png'"),
    ],
)
def test_paths_that_leave_their_root_are_refused(tmp_path, files, message):
    """Issue 25 (16): an id ``../outside/evil.JPEG`` made ``--scoremaps DIR`` read outside DIR."""
    base = {"image_ids": "a.jpg\n", "class_labels": "a.jpg,0\n", "image_sizes": "a.jpg,9,9\n"}
    folder = write_metadata(tmp_path / "m", **{**base, **files})
    with pytest.raises(ValueError, match=message + ".*leaves the data root"):
        read_wsol_metadata(folder)


def test_a_huge_line_is_refused_with_a_short_message(tmp_path):
    """Issue 25 (12): a 300 MB line took 4.8 GB and gave a 1.26 GB error line."""
    folder = write_metadata(tmp_path / "m", class_labels="a.jpg,0\n")
    (folder / "image_ids.txt").write_bytes(b"a.jpg\n" + b"v" * 3_000_000 + b"\n")
    with pytest.raises(ValueError, match="a line longer than") as refused:
        read_wsol_metadata(folder)
    message = str(refused.value)
    assert message.startswith(f"{folder / 'image_ids.txt'}:2: a line longer than 1048576 bytes")
    assert len(message) < len(str(folder)) + 200
    (folder / "image_ids.txt").write_bytes("a.jpg\nb\xe9.jpg\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"image_ids.txt:2: not UTF-8 text \(byte 0xe9"):
        read_wsol_metadata(folder)
