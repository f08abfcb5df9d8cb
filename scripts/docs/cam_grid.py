"""A picture of localization: a grid of annotated images, each with a CAM overlaid, the
ground-truth boxes (green) and the box cam-cli makes from that CAM (red), as a PNG.

    python scripts/docs/cam_grid.py --checkpoint run/best.pt --images ROOT/val/images \\
        --annotations ROOT/val/val_annotations.txt --out docs/tiny-imagenet-cams.png
    python scripts/docs/cam_grid.py --arch mobilenet_v2 --weights mobilenet_v2-imagenet.pth \\
        --classes LOC_synset_mapping.txt --images val/ --annotations annotations/ \\
        --show top1 --count 8 --columns 4 --out docs/ilsvrc-boxes.png

The first ``--count`` images (sorted by name) that have an annotation are shown, at the CAM
threshold the checkpoint carries (else the paper's 0.2) unless ``--threshold`` is given.
``--show true`` (the default): the CAM of the image's true class and its box, as GT-known
localization scores it; the caption is the true class, then the box's best IoU with the ground
truth. ``--show top1``: the network's top-1 class, its CAM and its box, what ``cam-cli bbox``
writes as rank 1; the caption is that class, then "correct" (the true class, and IoU >= 0.5
with one of its ground-truth boxes: the ILSVRC rule), "box missed" or "wrong class".
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

GREEN, RED = (40, 230, 40), (255, 30, 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="A cam-cli train checkpoint.")
    parser.add_argument("--arch", help="A registry network (with --weights, --classes).")
    parser.add_argument("--weights")
    parser.add_argument("--classes", type=Path)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--annotations", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--show", choices=("true", "top1"), default="true")
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--cell", type=int, default=160, help="Pixels per image in the grid.")
    parser.add_argument("--threshold", type=float, default=None)
    args = parser.parse_args()
    if (args.checkpoint is None) == (args.arch is None):
        parser.error("give --checkpoint, or --arch (with --weights and --classes)")

    truth = read_annotations(args.annotations)
    paths = [p for p in list_images(args.images) if p.stem in truth][: args.count]
    model = ModelOptions(
        checkpoint=args.checkpoint, arch=args.arch, weights=args.weights,
        classes_file=args.classes,
    )  # fmt: skip
    loaded = load_model(model, device="cpu")
    index = {c.wnid: c.index for c in loaded.classes}
    name = {c.index: c.name or c.wnid or str(c.index) for c in loaded.classes}
    label = {str(p): index[truth[p.stem].labels[0]] for p in paths}
    run = RunOptions(device="cpu", fast=False, progress=False, workers=0)
    localizer = Localizer(loaded, CamOptions(topk=1, threshold=args.threshold), run)
    try:
        if args.show == "true":
            wants = {"extra_classes": lambda p: [label[p]], "extra_cams": "input"}
        else:
            wants = {"keep_cams": True}
        results = list(localizer.localize(list(label), **wants))
    finally:
        localizer.close()
    cell, caption = args.cell, (14 if args.show == "true" else 26)
    rows = -(-len(results) // args.columns)
    grid = Image.new("RGB", (args.columns * cell, rows * (cell + caption)), (255, 255, 255))
    for i, result in enumerate(results):
        image, _ = open_rgb(result.path)
        true_index = label[result.path]
        if args.show == "true":
            shown, cam = result.extra[0], result.extra_cams[0]
        else:
            shown, cam = result.predictions[0], result.cams[0]
        overlay = heatmap_overlay(image, np.asarray(cam), alpha=0.45)
        scale = cell / max(image.size)
        overlay = overlay.resize((cell, cell), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(overlay)
        wnid = truth[Path(result.path).stem].labels[0]
        gts = [box for w, box in truth[Path(result.path).stem].boxes if w == wnid]
        for coords, colour in [*((gt, GREEN) for gt in gts), (shown.box, RED)]:
            x0, y0, x1, y1 = (v * scale for v in coords)
            draw.rectangle([x0, y0, x1 + scale - 1, y1 + scale - 1], outline=colour, width=3)
        iou = float(np.max(iou_inclusive(shown.box, np.array(gts))))
        x, y = (i % args.columns) * cell, (i // args.columns) * (cell + caption)
        grid.paste(overlay, (x, y))
        chars = cell // 6 - 1  # Pillow's default font: about 6 pixels a character
        if args.show == "true":
            text = f"{name[true_index][: chars - 10]}  IoU {iou:.2f}"
        elif shown.class_index != true_index:
            text = f"{name[shown.class_index][:chars]}\nwrong class ({name[true_index]})"
        else:
            verdict = "correct" if iou >= 0.5 else "box missed"
            text = f"{name[shown.class_index][:chars]}\n{verdict}, IoU {iou:.2f}"
        ImageDraw.Draw(grid).multiline_text(
            (x + 3, y + cell + 1), text[: 2 * chars + 1], fill=(0, 0, 0), spacing=2
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"{args.out}: {len(results)} images, threshold {localizer.threshold}")


if __name__ == "__main__":
    main()
