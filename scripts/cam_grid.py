"""A picture of localization: a grid of annotated images, each with the CAM of its true class
overlaid, the ground-truth box (green) and the box cam-cli makes from that CAM (red), as a PNG.

    python scripts/cam_grid.py --checkpoint run/best.pt --images ROOT/val/images \\
        --annotations ROOT/val/val_annotations.txt --out docs/tiny-imagenet-cams.png

The first ``--count`` images (sorted by name) that have an annotation are shown, at the CAM
threshold the checkpoint carries unless ``--threshold`` is given; the caption under each image
is the true class, then the box's IoU with the ground truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cam_cli.boxes.geometry import iou_inclusive
from cam_cli.data.annotations import read_annotations
from cam_cli.data.images import list_images, open_rgb
from cam_cli.inference.localizer import Localizer
from cam_cli.models.loading import load_model
from cam_cli.outputs.draw import heatmap_overlay
from cam_cli.settings import CamOptions, ModelOptions, RunOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--annotations", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--cell", type=int, default=160, help="Pixels per image in the grid.")
    parser.add_argument("--threshold", type=float, default=None)
    args = parser.parse_args()

    truth = read_annotations(args.annotations)
    paths = [p for p in list_images(args.images) if p.stem in truth][: args.count]
    loaded = load_model(ModelOptions(checkpoint=args.checkpoint), device="cpu")
    index = {c.wnid: c.index for c in loaded.classes}
    name = {c.index: c.name for c in loaded.classes}
    label = {str(p): index[truth[p.stem].labels[0]] for p in paths}
    run = RunOptions(device="cpu", fast=False, progress=False, workers=0)
    localizer = Localizer(loaded, CamOptions(topk=1, threshold=args.threshold), run)
    try:
        results = list(
            localizer.localize(list(label), extra_classes=lambda p: [label[p]], extra_cams="input")
        )
    finally:
        localizer.close()
    cell, caption = args.cell, 14
    rows = -(-len(results) // args.columns)
    grid = Image.new("RGB", (args.columns * cell, rows * (cell + caption)), (255, 255, 255))
    for i, result in enumerate(results):
        image, _ = open_rgb(result.path)
        overlay = heatmap_overlay(image, np.asarray(result.extra_cams[0]), alpha=0.45)
        scale = cell / max(image.size)
        overlay = overlay.resize((cell, cell), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(overlay)
        gt = truth[Path(result.path).stem].boxes[0][1]
        box = result.extra[0].box
        for coords, colour in ((gt, (40, 230, 40)), (box, (255, 30, 30))):
            x0, y0, x1, y1 = (v * scale for v in coords)
            draw.rectangle([x0, y0, x1 + scale - 1, y1 + scale - 1], outline=colour, width=3)
        iou = float(iou_inclusive(box, np.array([gt]))[0])
        x, y = (i % args.columns) * cell, (i // args.columns) * (cell + caption)
        grid.paste(overlay, (x, y))
        text = f"{name[label[result.path]][:18]}  IoU {iou:.2f}"
        ImageDraw.Draw(grid).text((x + 3, y + cell + 1), text, fill=(0, 0, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"{args.out}: {len(results)} images, threshold {localizer.threshold}")


if __name__ == "__main__":
    main()
