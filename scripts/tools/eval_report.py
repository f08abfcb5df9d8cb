"""An evaluation's HTML report from the files `cam-cli eval` wrote (its --json and --per-image),
until `eval --report` makes it as it runs. With the model (--arch/--weights/--classes), the
gallery images' CAMs (true class and top-1 class) are computed again, in one batched run over
those images only; without it the pictures show the boxes on the bare images.

    python scripts/tools/eval_report.py --json report.json --per-image per_image.jsonl \\
        --classes LOC_synset_mapping.txt --arch mobilenet_v2 --weights mnv2.pth -o report.html

Prints the time each step took (reading, CAMs, rendering) and the file's size.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np

from cam_cli.report.eval_page import gallery_selection, write_eval_report
from cam_cli.report.from_eval_files import eval_input, read_lines, run_info_from_settings
from cam_cli.report.inputs import ImageRow, ReportOptions


def gallery_cams(
    rows: list[ImageRow], classes_file: Path | None, arch: str, weights: str, device: str = "cpu"
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{image_id: (true-class CAM, top-1 CAM)} of ``rows`` at feature resolution, one run."""
    from cam_cli.inference.localizer import Localizer
    from cam_cli.models.loading import load_model
    from cam_cli.settings import CamOptions, ModelOptions, RunOptions

    loaded = load_model(ModelOptions(arch=arch, weights=weights, classes_file=classes_file),
                        device=device)  # fmt: skip
    index = {c.wnid: c.index for c in loaded.classes}
    true_of = {r.path: index.get(r.true_label, 0) for r in rows}
    localizer = Localizer(loaded, CamOptions(topk=1), RunOptions(device=device, workers=0))
    try:
        results = localizer.localize(
            list(true_of),
            keep_cams=True,
            extra_classes=lambda p: [true_of[p]],
            extra_cams="feature",
        )
        by_path = {r.path: r for r in results}
    finally:
        localizer.close()
    out = {}
    for row in rows:
        result = by_path.get(row.path)
        if result is not None and result.error is None:
            out[row.image_id] = (result.extra_cams[0], result.cams[0])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--per-image", required=True, type=Path)
    parser.add_argument("--classes", type=Path)
    parser.add_argument("--arch")
    parser.add_argument("--weights")
    parser.add_argument("--command", default="", help="the eval command line, to show")
    parser.add_argument("--seconds", type=float, help="the time eval took, to show")
    parser.add_argument("--cap", type=int, default=24)
    parser.add_argument("-o", "--output", required=True, type=Path)
    args = parser.parse_args()

    start = time.perf_counter()
    report = json.loads(args.json.read_text())
    lines = read_lines(args.per_image)
    names = {}
    if args.classes:
        from cam_cli.data.classes import read_synset_mapping

        names = {c.wnid: c.name for c in read_synset_mapping(args.classes)}
    started = datetime.fromtimestamp(args.json.stat().st_mtime).isoformat(timespec="seconds")
    command = args.command or "cam-cli eval (command line not recorded)"
    run = run_info_from_settings(report["settings"], command, started, args.seconds)
    data = eval_input(report, lines, run, names)
    options = ReportOptions(gallery_cap=args.cap)
    read_s = time.perf_counter() - start

    cams_s = 0.0
    if args.arch and args.weights:
        start = time.perf_counter()
        chosen = {r.image_id: r for rows in gallery_selection(data.rows, options).values()
                  for r in rows}  # fmt: skip
        cams = gallery_cams(list(chosen.values()), args.classes, args.arch, args.weights)
        rows = [
            replace(r, true_cam=cams[r.image_id][0], top1_cam=cams[r.image_id][1])
            if r.image_id in cams
            else r
            for r in data.rows
        ]
        data = replace(data, rows=rows)
        cams_s = time.perf_counter() - start
    start = time.perf_counter()
    written = write_eval_report(data, args.output, options)
    render_s = time.perf_counter() - start
    size = sum(p.stat().st_size for p in written)
    print(
        f"{len(data.rows)} images: read {read_s:.2f} s, gallery CAMs {cams_s:.2f} s, "
        f"render+write {render_s:.2f} s; {size / 1e6:.2f} MB -> {shlex.quote(str(args.output))}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
