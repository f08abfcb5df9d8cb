"""Training speed: the real loop on JPEG files against its ceiling, in one run.

On the same images, model and settings (a `TrainConfig`, e.g. a recipe in configs/):

  ceiling  forward + backward + SGD step (`Trainer.train_step`, with the loop's preprocessing)
           on batches decoded beforehand and held in memory: nothing left to wait for.
  loop     `Trainer.train_epoch`: JPEG files -> DataLoader workers (decode, random resized
           crop, flip) -> the same steps; what `cam-cli train` runs, worker start-up included.

The two alternate for ``--rounds`` rounds (neighbours on a shared CPU come and go); the
medians are printed with their ratio, which should be >= 0.8 (the loop keeps the CPU busy with
the network, not with decoding). Other processes' CPU share during each pass is printed too.

    python scripts/benchmarks/bench_train.py --data ../shared/data/tiny-imagenet-dev \\
        --config configs/tiny-imagenet-cpu-64.toml --classes 10 --images-per-class 64 \\
        --backbone-weights ../shared/weights/mobilenet_v2-imagenet.pth
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cam_cli.runtime.distributed import Dist
from cam_cli.training.config import read_config_file, resolve_config
from cam_cli.training.data import TrainData, limit_per_class, scan_data
from cam_cli.training.trainer import Trainer


def _busy() -> tuple[float, float]:
    """(all CPU time, idle time) from /proc/stat, in ticks."""
    with open("/proc/stat") as handle:
        values = [float(v) for v in handle.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def _others_share(before: tuple[float, float], own_before: float, seconds: float) -> float:
    """The share of all CPUs used by other processes during a pass (0..1)."""
    total, idle = _busy()
    used = (total - before[0]) - (idle - before[1])
    own = (time.process_time() - own_before) * 100.0  # ticks are 1/100 s
    return max(0.0, used - own) / max(total - before[0], 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Dataset root (train/ [val/]).")
    parser.add_argument("--config", type=Path, required=True, help="A training recipe (TOML).")
    parser.add_argument("--classes", type=int, default=10, help="First N classes only.")
    parser.add_argument("--images-per-class", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="Override the recipe's.")
    parser.add_argument("--backbone-weights", default=None,
                        help="Local ImageNet weights (the recipes download them).")  # fmt: skip
    args = parser.parse_args()

    overrides = {"workers": args.workers} if args.workers is not None else {}
    if args.backbone_weights is not None:
        overrides["backbone_weights"] = args.backbone_weights
    file_keys = read_config_file(args.config)
    config = resolve_config(overrides=overrides, config_file=args.config).config
    config = config.replace(epochs=1, threshold_images_per_class=0)
    data = scan_data(args.data)
    classes = data.classes[: args.classes]
    kept = [item for item in data.train if item[1] < len(classes)]
    data = TrainData(classes, limit_per_class(kept, args.images_per_class), [], [])
    steps = len(data.train) // config.batch_size
    images = steps * config.batch_size
    print(f"{config.arch} at {config.image_size}px, batch {config.batch_size}, "
          f"{config.workers} workers, torch threads {torch.get_num_threads()}; {len(classes)} "
          f"classes, {images} images a pass ({', '.join(sorted(file_keys))} from "
          f"{args.config})")  # fmt: skip

    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, data, Path(run_dir), Dist(), torch.device("cpu"), False)
        trainer.sampler.set_epoch(0)
        batches = [trainer.labelled(batch) for batch in trainer.train_loader]  # decoded once
        trainer.train_step(*batches[0])  # warm-up (oneDNN kernels), not timed
        rates: dict[str, list[float]] = {"ceiling": [], "loop": []}
        for round_number in range(args.rounds):
            for name in ("ceiling", "loop") if round_number % 2 == 0 else ("loop", "ceiling"):
                before, own = _busy(), time.process_time()
                began = time.perf_counter()
                if name == "ceiling":
                    trainer.model.train()
                    for frozen in trainer.frozen:
                        frozen.eval()
                    for pixels, labels in batches:
                        trainer.train_step(pixels, labels)
                else:
                    trainer.train_epoch()
                seconds = time.perf_counter() - began
                others = _others_share(before, own, seconds)
                rates[name].append(images / seconds)
                print(f"round {round_number + 1} {name:>7}: {images / seconds:7.1f} img/s "
                      f"({seconds:.1f} s; others used {100 * others:.0f}% of the CPUs)",
                      flush=True)  # fmt: skip
    ceiling = statistics.median(rates["ceiling"])
    loop = statistics.median(rates["loop"])
    print(
        f"median: loop {loop:.1f} img/s, ceiling {ceiling:.1f} img/s, "
        f"loop/ceiling {loop / ceiling:.2f}"
    )


if __name__ == "__main__":
    main()
