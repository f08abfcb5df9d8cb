"""A bounded part of a training recipe: its first N steps on synthetic images, with img/s and the
loss after them. What the GPU check runs of the fine-tuning recipe (every layer trained), and a
smoke run of any recipe here.

The data are the synthetic ILSVRC-layout images (`cam_cli.synthetic`), as many as N steps need,
so the run needs no dataset; the recipe's own settings (arch, size, batch, optimizer, schedule)
are kept, except one epoch of N steps, no val images and no threshold choice.

  python scripts/device_checks/train_smoke.py --config configs/tiny-imagenet-finetune.toml \\
      --device cuda --steps 30 --backbone-weights device_data/weights/mobilenet_v2-imagenet.pth
  python scripts/device_checks/train_smoke.py --config configs/tiny-imagenet-finetune.toml \\
      --device cpu --steps 2 --batch-size 4 --image-size 64      # a dry run on 2 cores

Prints one JSON line: steps, images, seconds of the epoch, img/s (the first step, with its
warm-up, counted out: ``img_s_after_first``), the loss of the first and the last step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs/tiny-imagenet-finetune.toml")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--image-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument(
        "--workers", type=int, default=None, help="default: the recipe's, at most the CPUs"
    )
    parser.add_argument("--backbone-weights", type=Path, default=None,
                        help="ImageNet weights; without: a random start")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None, help="the run folder (default: a temp dir)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from cam_cli.synthetic.dataset import generate_dataset
    from cam_cli.training.config import read_config_file, resolve_config
    from cam_cli.training.trainer import Trainer, train

    recipe = read_config_file(args.config)
    batch = args.batch_size or recipe.get("batch_size", 32)
    workers = args.workers if args.workers is not None else recipe.get("workers", 2)
    overrides = {
        "epochs": 1,
        "batch_size": batch,
        "train_images_per_class": 0,
        "val_images": 0,
        "threshold_images_per_class": 0,
        "workers": min(workers, os.cpu_count() or 1),
        "device": args.device,
        "image_size": args.image_size,
        "pretrained": args.backbone_weights is not None,
        "backbone_weights": str(args.backbone_weights) if args.backbone_weights else "",
    }
    losses: list[float] = []
    times: list[float] = []
    step = Trainer.train_step

    def timed_step(self, pixels, labels):  # the script's probe; the trainer carries none
        result = step(self, pixels, labels)
        times.append(time.perf_counter())
        losses.append(result[0] / max(result[2], 1))
        return result

    Trainer.train_step = timed_step
    with tempfile.TemporaryDirectory(prefix="train_smoke_") as tmp:
        data = Path(tmp) / "data"
        per_class = math.ceil(args.steps * batch / args.classes)
        generate_dataset(data, num_classes=args.classes, train_per_class=per_class,
                         val_images=1, image_size=64, seed=0)  # fmt: skip
        config = resolve_config(overrides=overrides, config_file=args.config).config
        out = args.out or Path(tmp) / "run"
        began = time.perf_counter()
        result = train(config, data, out, progress=False)
        wall = time.perf_counter() - began
    steps = len(losses)
    images = steps * batch
    after_first = (steps - 1) * batch / (times[-1] - times[0]) if steps > 1 else None
    row = result.history[-1]
    report = {
        "recipe": str(args.config),
        "arch": config.arch,
        "device": config.device,
        "image_size": config.image_size,
        "batch_size": batch,
        "steps": steps,
        "images": images,
        "epoch_seconds": row["seconds"],
        "img_s": round(images / row["seconds"], 2) if row["seconds"] else None,
        "img_s_after_first": round(after_first, 2) if after_first else None,
        "first_loss": round(losses[0], 4) if losses else None,
        "last_loss": round(losses[-1], 4) if losses else None,
        "mean_loss": round(row["train_loss"], 4),
        "wall_seconds": round(wall, 2),
        "pretrained": config.pretrained,
    }
    print(json.dumps(report))
    ok = steps == args.steps and all(math.isfinite(x) for x in losses)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
