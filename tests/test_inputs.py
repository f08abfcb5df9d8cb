"""Every file `eval` reads is an input, whatever option brought it in (`evaluation.inputs`): an
output pointed at one of them is refused before any work, in one line naming both (issue 25,
item 1: `--json` once overwrote a map of `--scoremaps DIR`, a file of `--wsol-metadata DIR`, a
mask under the mask root, with exit 0)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke, model_args, one_line_error, write_xml
from PIL import Image

from cam_cli.data.wsol_metadata import WsolMetadata, write_wsol_metadata
from cam_cli.eval_options import EvalOptions, SourceOptions, TruthOptions
from cam_cli.evaluation.inputs import input_files
from cam_cli.evaluation.truth import load_truth

STEMS = ("a", "b")


@pytest.fixture
def data(tmp_path) -> Path:
    """root/val/{a,b}.jpg with xml/, maps/val/*.jpg.npy, boxes/ and masks/ metadata, masks/."""
    (tmp_path / "val").mkdir()
    rng = np.random.default_rng(0)
    for stem in STEMS:
        pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "val" / f"{stem}.jpg")
        write_xml(tmp_path / "xml" / f"{stem}.xml", 48, 40, [("n01440764", (2, 3, 30, 33))])
        maps = tmp_path / "maps" / "val"
        maps.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{stem}.jpg.npy", np.linspace(0, 1, 224 * 224).reshape(224, 224))
        mask = np.zeros((40, 48), dtype=np.uint8)
        mask[3:34, 2:31] = 255
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(mask).save(tmp_path / "masks" / f"{stem}.png")
    ids = tuple(f"val/{stem}.jpg" for stem in STEMS)
    sizes = dict.fromkeys(ids, (48, 40))
    boxes = dict.fromkeys(ids, ((2, 3, 30, 33),))
    write_wsol_metadata(WsolMetadata(ids, dict.fromkeys(ids, 0), sizes, boxes), tmp_path / "boxes")
    masks = {i: (f"masks/{Path(i).stem}.png",) for i in ids}
    metadata = WsolMetadata(ids, dict.fromkeys(ids, 0), sizes, masks=masks, ignore={})
    write_wsol_metadata(metadata, tmp_path / "meta")
    return tmp_path


def refused(result, output: Path, before: bytes, *parts: str) -> None:
    one_line_error(result, "is an input", "refusing to overwrite it", *parts)
    assert output.read_bytes() == before


def test_json_inside_the_scoremaps_folder_is_refused(data):
    target = data / "maps" / "val" / "a.jpg.npy"
    before = target.read_bytes()
    result = invoke("eval", "--scoremaps", data / "maps", "--annotations", data / "xml",
                    "--json", target)  # fmt: skip
    refused(result, target, before, "--json", "(--scoremaps", "a.jpg.npy")


def test_json_over_a_metadata_file_is_refused(data):
    target = data / "boxes" / "image_ids.txt"
    before = target.read_bytes()
    result = invoke("eval", "--scoremaps", data / "maps", "--wsol-metadata", data / "boxes",
                    "--json", target)  # fmt: skip
    refused(result, target, before, "--json", "(--wsol-metadata", "image_ids.txt")


def test_json_over_a_mask_is_refused(data):
    """A mask under the default mask root (the images root) and under --mask-root."""
    target = data / "masks" / "b.png"
    before = target.read_bytes()
    result = invoke("eval", "--scoremaps", data / "maps", "--wsol-metadata", data / "meta",
                    "--mask-root", data, "--json", target)  # fmt: skip
    refused(result, target, before, "--json", "(--mask-root", "b.png")
    result = invoke("eval", *model_args(_classes(data)), "--wsol-metadata", data / "meta",
                    "--images", data, "--json", target)  # fmt: skip
    refused(result, target, before, "--json", "(--wsol-metadata", "b.png")


def test_per_image_over_an_image_of_the_metadata_root_is_refused(data):
    target = data / "val" / "a.jpg"
    before = target.read_bytes()
    result = invoke("eval", *model_args(_classes(data)), "--wsol-metadata", data / "boxes",
                    "--images", data, "--per-image", target)  # fmt: skip
    refused(result, target, before, "--per-image", "(--images", "a.jpg")


def test_json_where_a_score_map_will_be_saved_is_refused(data):
    target = data / "saved" / "val" / "a.jpg.npy"
    target.parent.mkdir(parents=True)
    target.write_text("an old map, or anything")
    result = invoke("eval", *model_args(_classes(data)), "--images", data / "val",
                    "--annotations", data / "xml", "--save-scoremaps", data / "saved",
                    "--json", target)  # fmt: skip
    one_line_error(result, "--json", "is the score map --save-scoremaps writes")
    assert target.read_text() == "an old map, or anything"


def test_input_files_name_every_file_read(data):
    """The model run of a mask split: its four files, the masks, the images of the root, the
    model's files; score maps: the maps of the split's ids only."""
    options = EvalOptions(
        truth=TruthOptions(wsol_metadata=data / "meta", images=data),
        source=SourceOptions(scoremaps=data / "maps"),
    )
    files = input_files(options, load_truth(options.truth))
    assert sorted(Path(p).name for p in files["wsol_metadata"]) == sorted(
        [
            "image_ids.txt",
            "class_labels.txt",
            "image_sizes.txt",
            "localization.txt",
            "a.png",
            "b.png",
        ]  # fmt: skip
    )
    assert sorted(files["images"]) == [data / "val" / "a.jpg", data / "val" / "b.jpg"]
    assert sorted(files["scoremaps"]) == sorted((data / "maps" / "val").glob("*.npy"))


def _classes(data: Path) -> Path:
    """A small-gap model's files beside the data (one class: n01440764)."""
    import torch

    from cam_cli.models.registry import build_model

    (data / "classes.txt").write_text("n01440764 tench\n")
    torch.manual_seed(0)
    torch.save(build_model("small-gap", 1).state_dict(), data / "weights.pth")
    return data


def test_carried_thresholds_off_the_grid_stop_before_any_image(data, tmp_path):
    """Issue 25, item 6: a threshold that is not on the run's grid was found after every image
    had run (a traceback, no report); it is one line and exit 2 before the first image."""
    report = tmp_path / "other.json"
    maxbox = {"images": 3, "iou_thresholds": [0.3, 0.5, 0.7], "protocol": "wsol",
              "best_threshold": [0.555, 0.5, 0.2]}  # fmt: skip
    report.write_text(json.dumps({"maxboxacc_v2": maxbox}))
    per_image = tmp_path / "lines.jsonl"
    result = invoke("eval", *model_args(_classes(data)), "--images", data / "val",
                    "--annotations", data / "xml", "--maxboxacc", "--cam-threshold-from", report,
                    "--per-image", per_image)  # fmt: skip
    one_line_error(result, "other.json", "0.555 is not on this run's CAM threshold grid")
    assert not per_image.exists()  # no image was run
