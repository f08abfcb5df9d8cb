"""Cost and size of an evaluation report as the data set grows: the real per-image lines of an
`eval --per-image` run repeated to N images (new ids, true classes spread over 1000 labels),
pictures from the real images, a random 7x7 CAM each. Prints the time of each part and the
page's size, the pictures' share of it and the bytes per picture.

    python scripts/benchmarks/bench_report.py --json report.json --per-image per_image.jsonl \\
        --images 1000 50000 [--resize 500x375]

--resize re-encodes the pictures' source images at that size first (quality 90, in a temp
folder), to measure pictures of full-size ILSVRC photos from a sample stored smaller.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from cam_cli.report.eval_page import eval_report_html, gallery_selection, row_categories
from cam_cli.report.from_eval_files import eval_input, read_lines
from cam_cli.report.inputs import Box, ImageRow, ReportOptions, RunInfo


def grown(rows: list[ImageRow], count: int, rng: np.random.Generator) -> list[ImageRow]:
    """``count`` rows cycling through ``rows``, each its own image id and one of 1000 labels."""
    out = []
    for i in range(count):
        row = rows[i % len(rows)]
        label = f"n{i % 1000:08d}"
        out.append(replace(row, image_id=f"{row.image_id}-{i}", true_label=label,
                           true_name=f"class {i % 1000}", true_cam=rng.random((7, 7)),
                           top1_cam=rng.random((7, 7))))  # fmt: skip
    return out


def resized_copies(rows: list[ImageRow], size: tuple[int, int], folder: Path) -> list[ImageRow]:
    """The rows' images re-encoded at ``size`` (their boxes scaled with them)."""
    out = []
    for row in rows:
        target = folder / Path(row.path).name
        if not target.exists():
            with Image.open(row.path) as image:
                image.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(target, quality=90)
        sx, sy = size[0] / row.width, size[1] / row.height

        def scale(box: Box | None, sx: float = sx, sy: float = sy) -> Box | None:
            return None if box is None else (round(box[0] * sx), round(box[1] * sy),
                                             round(box[2] * sx), round(box[3] * sy))  # fmt: skip

        top1 = None if row.top1 is None else replace(row.top1, box=scale(row.top1.box))
        out.append(replace(row, path=str(target), width=size[0], height=size[1], top1=top1,
                           gt_boxes=tuple(scale(b) for b in row.gt_boxes),
                           gt_known_box=scale(row.gt_known_box)))  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--per-image", required=True, type=Path)
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 50000])
    parser.add_argument("--resize", help="WxH: re-encode the source images at this size first")
    parser.add_argument("--cap", type=int, default=24)
    args = parser.parse_args()

    report = json.loads(args.json.read_text())
    start = time.perf_counter()
    run = RunInfo("cam-cli eval ...", "bench", "2026-01-01T00:00:00", 1.0)
    base = eval_input(report, read_lines(args.per_image), run)
    print(f"read {len(base.rows)} per-image lines: {time.perf_counter() - start:.2f} s")
    rows = list(base.rows)
    with tempfile.TemporaryDirectory() as folder:
        if args.resize:
            width, height = (int(v) for v in args.resize.split("x"))
            rows = resized_copies(rows, (width, height), Path(folder))
        options = ReportOptions(gallery_cap=args.cap)
        rng = np.random.default_rng(0)
        for count in args.images:
            many = grown(rows, count, rng)
            data = replace(base, rows=many, figures={**report, "images": count})
            start = time.perf_counter()
            row_categories(many)
            categories_s = time.perf_counter() - start
            start = time.perf_counter()
            gallery_selection(many, options)
            selection_s = time.perf_counter() - start
            start = time.perf_counter()
            text = eval_report_html(data, options)
            total_s = time.perf_counter() - start
            uris = re.findall(r'src="(data:image/jpeg;base64,[^"]+)"', text)
            pictures = sum(len(u) for u in uris)
            print(
                f"{count} images: page {total_s:.2f} s (categories {categories_s:.2f} s, "
                f"selection {selection_s:.2f} s); {len(text) / 1e6:.2f} MB, of which "
                f"{len(uris)} pictures {pictures / 1e6:.2f} MB "
                f"({pictures / max(len(uris), 1) / 1e3:.1f} kB each, base64)"
            )


if __name__ == "__main__":
    main()
