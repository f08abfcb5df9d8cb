"""`cam-cli bbox --format coco`: one COCO JSON document that pycocotools loads, whose boxes are
the JSON Lines boxes in COCO's [x, y, w, h] (inclusive pixel boxes: w = xmax - xmin + 1)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import invoke

from cam_cli.models.registry import build_model
from cam_cli.synthetic.dataset import generate_dataset

pytest.importorskip("pycocotools")


def test_bbox_coco_loads_with_pycocotools_and_equals_the_jsonl_boxes(tmp_path):
    from pycocotools.coco import COCO

    data = tmp_path / "data"
    generate_dataset(data, num_classes=3, train_per_class=1, val_images=4, image_size=32, seed=0)
    torch.manual_seed(0)
    weights = tmp_path / "small.pth"
    torch.save(build_model("small-gap", 3).state_dict(), weights)  # the same model twice
    common = ["--arch", "small-gap", "--weights", weights, "--images", data / "val",
              "--workers", 0, "--topk", 2, "--device", "cpu"]  # fmt: skip
    jsonl = invoke("bbox", *common)
    assert jsonl.exit_code == 0, jsonl.output
    records = [json.loads(line) for line in jsonl.stdout.splitlines()]
    out = tmp_path / "boxes.json"
    coco = invoke("bbox", *common, "--format", "coco", "--output", out)
    assert coco.exit_code == 0, coco.output
    assert not list(tmp_path.glob("*cam-cli-tmp*"))  # written atomically: no temporary left
    document = json.loads(out.read_text())
    assert set(document) == {"images", "categories", "annotations"}

    ground = COCO(str(out))
    assert len(ground.getImgIds()) == len(records) == 4
    results = ground.loadRes(document["annotations"])
    assert len(results.getAnnIds()) == sum(len(r["predictions"]) for r in records)

    by_path = {image["file_name"]: image["id"] for image in document["images"]}
    for record in records:
        image_id = by_path[record["path"]]
        image = ground.loadImgs(image_id)[0]
        assert (image["width"], image["height"]) == (record["width"], record["height"])
        anns = sorted(results.loadAnns(results.getAnnIds(imgIds=image_id)),
                      key=lambda a: a["rank"])  # fmt: skip
        for ann, p in zip(anns, record["predictions"], strict=True):
            x0, y0, x1, y1 = p["box"]
            assert ann["bbox"] == [x0, y0, x1 - x0 + 1, y1 - y0 + 1]
            assert ann["category_id"] == p["class_index"]
            assert ann["score"] == p["score"]
    assert {c["id"] for c in document["categories"]} == {
        p["class_index"] for r in records for p in r["predictions"]
    }


def test_coco_is_not_a_boxes_format():
    result = invoke("boxes", "--maps", "-", "--format", "coco")
    assert result.exit_code == 2
