"""Inputs for the report tests, and the headless browser that opens a report.

`synthetic_evaluation` scores hand-made records with the evaluation's own classes
(`LocalizationEvaluator`, `MaxBoxAccV2`), so the report JSON and the per-image lines are the
ones `cam-cli eval` writes; each image is built to land in one failure category. `chromium`
opens a page as a user's browser would and returns what the test reads back.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from conftest import write_image

from cam_cli.data.ground_truth import ImageAnnotation
from cam_cli.evaluation.localization import LocalizationEvaluator
from cam_cli.evaluation.maxboxacc.metric import MaxBoxAccV2
from cam_cli.report.inputs import RunInfo

CHROMIUM = Path("/usr/bin/chromium")
NAMES = {"n01": 'tench <b>&"fish"', "n02": "goldfish", "n03": "great white shark"}
SIZE = (48, 40)  # non-square

# image id: (true label, gt boxes, top-1 (label, box) or None for a failed image, GT-known box)
CASES = {
    "a_correct": ("n01", [(5, 5, 20, 20)], ("n01", (5, 5, 20, 20)), (5, 5, 20, 20)),
    "b_too_large": ("n01", [(5, 5, 20, 20)], ("n02", (0, 0, 47, 39)), (0, 0, 47, 39)),
    "c_merged": ("n02", [(2, 2, 10, 10), (20, 2, 30, 10)], ("n02", (2, 2, 30, 10)), (2, 2, 30, 10)),
    "d_part": ("n02", [(0, 0, 40, 30)], ("n02", (10, 10, 14, 14)), (10, 10, 14, 14)),
    "e_off_target": ("n03", [(0, 0, 10, 10)], ("n01", (30, 25, 40, 35)), (30, 25, 40, 35)),
    "f_other": ("n03", [(5, 5, 20, 20)], ("n03", (12, 5, 27, 20)), (12, 5, 27, 20)),
    "g_failed": ("n03", [(5, 5, 20, 20)], None, None),
}
EXPECTED = {
    "a_correct": "correct",
    "b_too_large": "too large",
    "c_merged": "several instances merged",
    "d_part": "part of the object",
    "e_off_target": "off target",
    "f_other": "other",
}


def synthetic_evaluation(root: Path) -> tuple[dict, list[dict]]:
    """Images under ``root/imgs`` and the evaluation of the `CASES`: (report, per-image lines)."""
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    evaluator, maxbox = LocalizationEvaluator(), MaxBoxAccV2()
    rng = np.random.default_rng(0)
    lines = []
    for n, (image_id, (label, gt, top1, known)) in enumerate(CASES.items()):
        path = root / "imgs" / f"{image_id}.jpg"
        write_image(path, seed=n, size=SIZE)
        annotation = ImageAnnotation(image_id, (label,), tuple((label, b) for b in gt), *SIZE)
        if top1 is None:
            record = {"path": str(path), "error": "truncated or corrupt image"}
        else:
            label, box = top1
            predictions = [{"rank": 1, "class_index": int(label[1:]), "wnid": label,
                            "name": NAMES[label], "score": 0.9 - 0.1 * n,
                            "box": list(box)}]  # fmt: skip
            record = {"path": str(path), "width": SIZE[0], "height": SIZE[1],
                      "predictions": predictions}  # fmt: skip
        line = evaluator.add(record, annotation, known)
        line |= {"width": record.get("width"), "height": record.get("height")}
        ious = np.sort(rng.random(len(maxbox.thresholds)))[::-1] if top1 else np.zeros(100)
        maxbox.add_best_ious(ious)
        line["maxboxacc_ious"] = [float(v) for v in ious]
        lines.append(line)
    report = {
        **evaluator.summary(),
        "maxboxacc_v2": maxbox.summary(),
        "gt_known_available": True,
        "missing": {
            "images_without_annotation": 0,
            "annotations_without_image": 0,
            "left_out": 0,
            "images_without_annotation_list": [],
            "annotations_without_image_list": [],
        },  # fmt: skip
        "settings": {
            "mode": "model",
            "arch": "small-gap",
            "images": str(root / "imgs"),
            "threshold": 0.2,
            "device": "cpu",
            "fast": False,
        },  # fmt: skip
    }
    return report, lines


def run_info(command: str = "cam-cli eval --synthetic") -> RunInfo:
    return RunInfo(command=command, version="0.0-test", started="2026-01-02T03:04:05",
                   seconds=12.5, network="small-gap", device="cpu",
                   precision="float32")  # fmt: skip


class _Dom(HTMLParser):
    """What a test reads back of a page: the figure cards, the text table, every image's
    source and every link's target."""

    def __init__(self) -> None:
        super().__init__()
        self.root: dict[str, str] = {}
        self.cards: dict[str, str] = {}
        self.sources: list[str] = []
        self.links: list[str] = []
        self.table = ""
        self._card: str | None = None
        self._value = False
        self._in_table = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.root = attributes
        if "data-figure" in attributes:
            self._card = attributes["data-figure"]
        if self._card and attributes.get("class") == "v":
            self._value = True
        if tag == "pre" and attributes.get("id") == "figures-table":
            self._in_table = True
        if tag == "img":
            self.sources.append(attributes.get("src", ""))
        for name in ("href", "src", "action", "xlink:href"):
            if name in attributes and tag != "img":
                self.links.append(attributes[name])

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._in_table = False
        if tag == "div" and self._value:
            self._value, self._card = False, None

    def handle_data(self, data: str) -> None:
        if self._value and self._card:
            self.cards[self._card] = self.cards.get(self._card, "") + data
        if self._in_table:
            self.table += data


def read_dom(text: str) -> _Dom:
    dom = _Dom()
    dom.feed(text)
    return dom


@dataclass
class BrowserView:
    dom: _Dom
    console: list[str]  # the page's console lines (errors, blocked requests...)
    screenshot: Path


def chromium(page: Path, out: Path, height: int = 3000) -> BrowserView:
    """Open ``page`` in headless Chromium twice: once to dump the DOM after the load event,
    once for a screenshot; the console lines of both (`--enable-logging=stderr`)."""
    base = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--enable-logging=stderr", "--v=0", "--hide-scrollbars"]  # fmt: skip
    url = page.resolve().as_uri()
    env = {**os.environ, "HOME": str(out)}
    console = []
    shot = [f"--screenshot={out / 'screenshot.png'}", f"--window-size=1280,{height}", url]
    runs = {"dom": ["--dump-dom", url], "shot": shot}
    dumped = ""
    for name, args in runs.items():
        profile = out / f"profile-{name}"
        shutil.rmtree(profile, ignore_errors=True)
        done = subprocess.run([str(CHROMIUM), *base, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        console += [line for line in done.stderr.splitlines() if re.search(r":CONSOLE[:(]", line)]
        if name == "dom":
            dumped = done.stdout
    return BrowserView(read_dom(dumped), console, out / "screenshot.png")
