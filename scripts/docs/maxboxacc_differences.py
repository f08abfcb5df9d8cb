"""Each difference between cam-cli's old MaxBoxAccV2 and wsolevaluation's, switched on alone.

Runs the model once over annotated images (fp32), keeps every image's true-class CAM at
feature resolution, and scores the same CAMs under wsolevaluation's rules (`--maxboxacc`'s
default) and with one rule at a time changed to cam-cli's old one: the README's table.

    .venv/bin/python scripts/docs/maxboxacc_differences.py --arch mobilenet_v2 \\
        --weights ../shared/weights/mobilenet_v2-imagenet.pth \\
        --classes ../shared/data/ilsvrc2012-val-sample/LOC_synset_mapping.txt \\
        --images ../shared/data/ilsvrc2012-val-sample/val \\
        --annotations ../shared/data/ilsvrc2012-val-sample/annotations
"""

from __future__ import annotations

import argparse

import numpy as np


def _contour_boxes(scoremap, thresholds, tight: bool, holes: bool, empty_box: bool):
    """`wsol_protocol.scoremap_boxes` with one of its box rules changed."""
    import cv2

    from cam_cli.evaluation.maxboxacc.wsol_protocol import threshold_cuts

    quantised = (scoremap * 255).astype(np.uint8)
    size = scoremap.shape[0]
    index, boxes = [], []
    for t, cut in enumerate(threshold_cuts(int(quantised.max()), thresholds).tolist()):
        _, binary = cv2.threshold(quantised, cut, 255, cv2.THRESH_BINARY)
        mode = cv2.RETR_TREE if holes else cv2.RETR_EXTERNAL
        contours = cv2.findContours(binary, mode, cv2.CHAIN_APPROX_SIMPLE)[-2]
        if not contours and empty_box:
            index.append(t)
            boxes.append([0, 0, 0, 0])
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            grow = 0 if tight else 1
            x1, y1 = min(x + w - 1 + grow, size - 1), min(y + h - 1 + grow, size - 1)
            index.append(t)
            boxes.append([x, y, x1, y1])
    return np.array(index, dtype=np.int64), np.array(boxes, dtype=np.int64).reshape(-1, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--classes", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--annotations", required=True)
    args = parser.parse_args()

    from cam_cli.boxes.geometry import pairwise_iou_inclusive
    from cam_cli.data.annotations import read_annotations
    from cam_cli.data.matching import label_indices, pair_images
    from cam_cli.evaluation.maxboxacc.metric import MaxBoxAccV2
    from cam_cli.evaluation.maxboxacc.protocol import MaxBoxAccProtocol
    from cam_cli.inference.localizer import Localizer
    from cam_cli.models.loading import load_model
    from cam_cli.settings import RunOptions

    loaded = load_model(arch=args.arch, weights=args.weights, classes_file=args.classes)
    items, _ = pair_images(args.images, read_annotations(args.annotations))
    to_index = label_indices(loaded.classes)
    true_class = {str(path): to_index(a.labels[0]) for path, a in items}
    run = RunOptions(device="cpu", fast=False)
    localizer = Localizer(loaded, run=run)
    results = localizer.localize(
        list(true_class), extra_classes=lambda path: [true_class[path]], extra_cams="feature"
    )
    annotation_of = {str(path): a for path, a in items}
    cams = [(r.extra_cams[0], annotation_of[r.path], r.width, r.height) for r in results]
    localizer.close()

    def score(protocol: MaxBoxAccProtocol, boxes=None) -> dict:
        metric = MaxBoxAccV2(protocol=protocol)
        for cam, annotation, width, height in cams:
            scoremap = metric.scoremap(cam)
            if boxes is None:
                metric.add_best_ious(
                    metric.scoremap_image_ious(scoremap, annotation, width, height)
                )
                continue
            gt = metric.gt_boxes(annotation, width, height)
            index, found = _contour_boxes(scoremap, metric.thresholds, **boxes)
            best = np.zeros(len(metric.thresholds))
            if len(found):
                np.maximum.at(best, index, pairwise_iou_inclusive(found, gt).max(axis=1))
            metric.add_best_ious(best)
        return metric.summary()

    wsol = {"tight": False, "holes": True, "empty_box": True}
    variants = [
        ("wsolevaluation (wsol, the default)", MaxBoxAccProtocol("wsol"), None),
        ("  gt rounded outwards, not truncated", MaxBoxAccProtocol("x", gt_boxes="outward"), None),
        ("  bilinear CAM, not bicubic", MaxBoxAccProtocol("x", resize="bilinear"), None),
        ("  tight boxes, not boundingRect's x+w", MaxBoxAccProtocol("x"), {**wsol, "tight": True}),
        ("  no hole contours", MaxBoxAccProtocol("x"), {**wsol, "holes": False}),
        ("  no box for an empty mask", MaxBoxAccProtocol("x"), {**wsol, "empty_box": False}),
        ("  components (the three above)", MaxBoxAccProtocol("x", boxes="components"), None),
        (
            "cam-cli (all of them)",
            MaxBoxAccProtocol("x", resize="bilinear", gt_boxes="outward", boxes="components"),
            None,
        ),
    ]
    base = None
    print(f"{len(cams)} images; MaxBoxAccV2, IoU 0.3 / 0.5 / 0.7 (best CAM threshold)")
    for name, protocol, boxes in variants:
        summary = score(protocol, boxes)
        figure = summary["maxboxacc_v2"]
        base = figure if base is None else base
        levels = " / ".join(
            f"{a:.2f} ({t:.2f})"
            for a, t in zip(summary["accuracy"], summary["best_threshold"], strict=True)
        )
        print(f"{name:<40} {figure:6.2f} {figure - base:+6.2f}   {levels}")


if __name__ == "__main__":
    main()
