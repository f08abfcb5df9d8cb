"""Per-image Python cost, in microseconds, of the output path at top-5 (records, JSON lines).

Times, on synthetic model outputs (no network, no decoding), the two stages every image goes
through after its boxes are made:
1. results: `Localizer.boxes_and_results` with boxes already made on the device (scaled to the
   image's own pixels, `ImageResult`/`Prediction` objects), in the box thread or a lane;
2. writing: `ImageResult.as_record` + `RecordWriter` (JSON Lines, and CSV), in the main thread.

    .venv/bin/python scripts/benchmarks/bench_writer.py [--images 256] [--topk 5] [--repeats 20]

Prints the best of ``--repeats`` passes, in microseconds per image, and the total.
"""

from __future__ import annotations

import argparse
import io
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="images per batch")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import numpy as np

    from cam_cli.data.batches import DecodedImage, ImageBatch
    from cam_cli.data.classes import classes_from_names
    from cam_cli.inference.computation import ForwardOutput
    from cam_cli.inference.localizer import Localizer
    from cam_cli.models.loading import LoadedModel, load_model
    from cam_cli.models.weights import imagenet_class_names
    from cam_cli.outputs.writers import RecordWriter

    small = load_model(arch="small-gap", num_classes=1000)
    named = classes_from_names(imagenet_class_names())
    loaded = LoadedModel(small.arch, small.model, named, small.preprocessing, 224)
    localizer = Localizer(loaded, topk=args.topk, fast=False, box_backend="torch")
    rng = np.random.default_rng(0)
    n, k = args.images, args.topk
    items = [
        DecodedImage(i, f"/data/imagenet/val/ILSVRC2012_val_{i + 1:08d}.JPEG", 500, 375, None)
        for i in range(n)
    ]
    out = ForwardOutput(
        ImageBatch(None, items, []),
        class_indices=rng.integers(0, 1000, (n, k)),
        scores=rng.random((n, k)).astype(np.float32),
        boxes=np.sort(rng.integers(0, 224, (n, k, 4)), axis=2)[..., [0, 1, 2, 3]],
    )

    def best_of(work) -> float:
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            work()
            best = min(best, time.perf_counter() - start)
        return best * 1e6 / n

    results = localizer.boxes_and_results(out)
    figures = {"results": best_of(lambda: localizer.boxes_and_results(out))}
    for fmt in ("jsonl", "csv"):

        def write(fmt=fmt) -> None:
            writer = RecordWriter(io.StringIO(), fmt)
            for result in results:
                writer.write(result.as_record())

        figures[f"writing ({fmt})"] = best_of(write)
    for name, micros in figures.items():
        print(f"{name:<16} {micros:6.1f} us/image")
    total = figures["results"] + figures["writing (jsonl)"]
    print(f"{'total (jsonl)':<16} {total:6.1f} us/image (target: well under 50)")


if __name__ == "__main__":
    main()
