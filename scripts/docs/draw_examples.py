"""The example pictures of docs/drawing.md: `cam-cli bbox --topk 5 --draw` on one ILSVRC val
photo (227 x 227) and one Tiny ImageNet val image (64 x 64), with MobileNetV2's ImageNet weights,
copied into docs/ with their colours reduced to a 256-colour palette (a few tens of kB each).

    python scripts/docs/draw_examples.py --shared ../shared --out docs

It runs the command line as a user would (``python -m cam_cli``, this checkout first on the
path) and prints each record's names and scores, so the page's captions can be checked.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
# (image below --shared, name of the picture in --out)
EXAMPLES = [
    ("data/ilsvrc2012-val-sample/val/ILSVRC2012_val_00000363.JPEG", "drawing-ilsvrc-top5.png"),
    ("data/tiny-imagenet-dev/val/images/val_0.JPEG", "drawing-tiny-imagenet-top5.png"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--topk", type=int, default=5)
    args = parser.parse_args()
    shared = args.shared
    weights = shared / "weights/mobilenet_v2-imagenet.pth"
    model = ["--arch", "mobilenet_v2", "--weights", str(weights),
             "--classes", str(shared / "data/ilsvrc2012-val-sample/LOC_synset_mapping.txt"),
             "--device", "cpu", "--no-fast"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as draw:
        images = [str(shared / image) for image, _ in EXAMPLES]
        command = [sys.executable, "-m", "cam_cli", "bbox", *model, "--images", *images,
                   "--topk", str(args.topk), "--draw", draw]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        records = [json.loads(line) for line in result.stdout.splitlines()]
        for record, (_, name) in zip(records, EXAMPLES, strict=True):
            with Image.open(record["drawing"]) as picture:
                small = picture.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
            target = args.out / name
            small.save(target, optimize=True)
            ranks = ", ".join(f"{p['name']} {p['score']:.2f}" for p in record["predictions"])
            print(f"{target} ({target.stat().st_size / 1e3:.0f} kB): {ranks}")


if __name__ == "__main__":
    main()
