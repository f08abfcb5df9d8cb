"""What `eval --report` adds per image: `report.eval_run.EvalCollector.add` over N images
(real-shaped per-image lines: 5 predictions, 1-3 ground-truth boxes, 100 MaxBoxAccV2 IoUs,
7x7 CAMs), then `report_input`. CPU time of this process (robust to other jobs on the
machine), and the peak of what it keeps (`tracemalloc`).

    python scripts/benchmarks/bench_eval_collector.py --images 50000
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from cam_cli.data.annotations import ImageAnnotation
from cam_cli.evaluation.evaluators.base import ScoredImage
from cam_cli.evaluation.report import Report
from cam_cli.report.eval_run import EvalCollector
from cam_cli.report.inputs import ReportOptions


def scored(n: int, rng: np.random.Generator) -> ScoredImage:
    boxes = [[int(v) for v in sorted(rng.integers(0, 300, 2)) * 2] for _ in range(1 + n % 3)]
    label = f"n{n % 1000:08d}"
    predictions = [{"rank": r, "class_index": (n + r) % 1000, "wnid": f"n{(n + r) % 1000:08d}",
                    "name": f"class {(n + r) % 1000}", "score": float(rng.random()),
                    "box": boxes[0], "iou": float(rng.random())} for r in range(1, 6)]  # fmt: skip
    line = {"path": f"/val/{n}.JPEG", "image_id": str(n), "labels": [label],
            "gt_boxes": [{"label": label, "box": b} for b in boxes], "error": None,
            "predictions": predictions, "top1_cls_correct": bool(n % 2),
            "top1_loc_correct": bool(n % 3), "gt_known_box": boxes[-1],
            "gt_known_iou": float(rng.random()), "gt_known_correct": bool(n % 2),
            "width": 500, "height": 375,
            "maxboxacc_ious": [float(v) for v in rng.random(100)]}  # fmt: skip
    cams = (rng.random((7, 7), dtype=np.float32), rng.random((7, 7), dtype=np.float32))
    annotation = ImageAnnotation(str(n), (label,), (), 500, 375)
    return ScoredImage(annotation, line["path"], line=line, from_map={"report_cams": cams})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = [scored(n, rng) for n in range(args.images)]
    collector = EvalCollector(ReportOptions(), (0.3, 0.5, 0.7))
    tracemalloc.start()
    start = time.process_time()
    for image in images:
        collector.add(image)
    added = time.process_time() - start
    kept = sum(1 for _ in collector.kept)
    _, peak = tracemalloc.get_traced_memory()
    report = Report(args.images, 0, [], {}, {"mode": "model"})  # type: ignore[arg-type]
    start = time.process_time()
    data = collector.report_input(report, 0.0, "now")
    made = time.process_time() - start
    print(f"{args.images} images: add {added:.2f} s CPU ({1e6 * added / args.images:.1f} us "
          f"per image), report_input {made:.2f} s; {kept} images' CAMs kept, "
          f"{sum(r.true_cam is not None for r in data.rows)} on the rows; peak traced "
          f"{peak / 1e6:.0f} MB while adding")  # fmt: skip


if __name__ == "__main__":
    main()
