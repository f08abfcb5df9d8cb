"""The Python API page works as printed: the two code blocks of docs/api.md (the README's
"Python API" section before the site) run unchanged, in a folder where the names they use are
real files (the shared ILSVRC sample, the shared MobileNetV2 weights, a tiny synthetic training
set). The blocks are read from docs/api.md at test time."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

from cam_cli.synthetic.dataset import generate_dataset

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.shared, pytest.mark.slow]


API_PAGE = REPO / "docs" / "api.md"


def readme_api_blocks() -> list[str]:
    text = API_PAGE.read_text(encoding="utf-8")
    section = text.split("\n## Reference\n", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2, "docs/api.md should hold two python blocks before its reference"
    return blocks


def test_the_readme_python_api_runs_as_printed(tmp_path, sample_dir, mobilenet_weights,
                                                monkeypatch):  # fmt: skip
    images = sorted((sample_dir / "val").glob("*.JPEG"))[:4]
    (tmp_path / "mobilenet_v2-imagenet.pth").symlink_to(mobilenet_weights)
    (tmp_path / "LOC_synset_mapping.txt").symlink_to(sample_dir / "LOC_synset_mapping.txt")
    (tmp_path / "photos").mkdir()
    (tmp_path / "val").mkdir()
    for image in images:
        (tmp_path / "photos" / image.name).symlink_to(image)
        (tmp_path / "val" / image.name).symlink_to(image)
    (tmp_path / "dog.jpg").symlink_to(images[0])
    stems = {image.stem for image in images}
    with open(sample_dir / "LOC_val_solution.csv", newline="") as source:
        rows = [row for row in csv.reader(source)]
    with open(tmp_path / "LOC_val_solution.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(rows[0])
        writer.writerows(row for row in rows[1:] if row[0] in stems)
    generate_dataset(tmp_path / "data", num_classes=3, train_per_class=12, val_images=6)
    monkeypatch.chdir(tmp_path)

    first, second = readme_api_blocks()
    names: dict = {}
    exec(compile(first, "docs/api.md: Python API (1)", "exec"), names)  # noqa: S102

    records = [json.loads(line) for line in Path("boxes.jsonl").read_text().splitlines()]
    assert len(records) == len(images) == names["summary"].images
    assert names["summary"].failed == 0
    assert all(len(r["predictions"]) == 5 for r in records)
    assert any(Path("cams").iterdir())
    report = names["report"].to_json()
    assert report["images"] == len(images)
    assert math.isfinite(report["top1_loc_error"])
    assert math.isfinite(report["top5_loc_error"])
    assert Path("runs/x/best.pt").is_file()

    names = {}
    exec(compile(second, "docs/api.md: Python API (2)", "exec"), names)  # noqa: S102
    assert names["report"].images == len(images)
    assert len(names["loaded"].classes) == 1000
