"""The CPU comparison of `scripts/benchmarks/bench_bbox.py` (without ``--device``): variants
a-f, cam-cli against the forward-only bound and the peers, their agreement, the speed bounds
they meet and the report.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_harness import (
    DEFAULT_CLASSES,
    MOBILENET_WEIGHTS,
    QUIET_SHARE,
    benchmark_images,
    fmt,
    load_timed,
    print_rss,
    ratio,
    repeat_to,
    rss_check,
    run_variant,
    summarize,
    time_records,
    timed_passes,
)

VARIANTS = {
    "a": "forward only (decoded uint8 in memory, fp32)",
    "b": "cam-cli bbox (fp32)",
    "c": "cam-cli bbox --fast",
    "d": "torchcam CAM + skimage (peers)",
    "e": "pytorch-grad-cam GradCAM + skimage",
    "f": "cam-cli bbox --fast --compile",
}
# The project's targets: (numerator, denominator, minimum ratio, architectures it applies to).
TARGETS = [
    ("b", "a", 0.85, {"mobilenet_v2", "googlenet"}),
    ("c", "b", 2.5, {"googlenet", "vgg16-gap"}),
    ("b", "d", 1.5, None),  # every architecture
    ("c", "d", 4.0, {"googlenet"}),
]


# Where a user of the peers hooks the CAM features and finds the linear classifier. The
# torchvision-native networks are used as torchvision builds them (``CAMNet.net``); the paper's
# networks have no torchvision forward, so a user would wrap the CAM network to return logits.
PEER_LAYERS = {
    "mobilenet_v2": ("features", "classifier.1"),
    "googlenet": ("inception5b", "fc"),
    "resnet18": ("layer4", "fc"),
    "resnet34": ("layer4", "fc"),
    "resnet50": ("layer4", "fc"),
}
WRAPPED_LAYERS = ("camnet.net.cam_conv", "camnet.net.fc")  # the paper's *-gap nets, small-gap
# Variants that need a peer package: (module, pip name); `pip install -e ".[bench]"`.
PEER_PACKAGES = {"d": ("torchcam", "torchcam"), "e": ("pytorch_grad_cam", "grad-cam")}


# ---------------------------------------------------------------------------------------------
# Child side: one variant, in its own process


def run_forward_only(config: dict) -> dict:
    """(a): the bound. Images decoded by cam-cli's own decoder before the clock starts."""
    import numpy
    import torch

    from cam_cli.data.batches import ImageListDataset

    loaded, load_s = load_timed(config)
    model, prep = loaded.model.eval(), loaded.preprocessing
    unique = list(dict.fromkeys(config["paths"]))
    dataset = ImageListDataset(unique, loaded.input_size)
    decoded = [d.pixels for d in (dataset[i] for i in range(len(dataset))) if d.error is None]
    pool = torch.from_numpy(numpy.stack(decoded))  # [U, 3, S, S] uint8
    n, bs = config["num_images"], config["batch_size"]
    index_batches = [torch.arange(i, min(i + bs, n)) % len(pool) for i in range(0, n, bs)]

    def one_pass(batches) -> None:
        with torch.inference_mode():
            for index in batches:
                model(prep.apply(pool[index]))

    timing = timed_passes(
        lambda: one_pass(index_batches[: config["warmup_batches"]]),
        lambda: one_pass(index_batches),
        config["repeats"],
    )
    return {"load_s": load_s, "setup_s": 0.0, **timing, "decoded_pool_mb": pool.numel() / 2**20}


def run_cam_cli(config: dict, fast: bool, compiled: bool = False) -> dict:
    """(b), (c), (f): what `cam-cli bbox` runs (`api.write_boxes`): its set-up (the
    `Localizer`; (f) compiles it, a one-time cost counted as set-up) timed apart from its run
    over the images (`api.write_boxes` with that Localizer), minus argument parsing."""
    from cam_cli.inference.localizer import Localizer

    loaded, load_s = load_timed(config)
    start = time.perf_counter()
    localizer = Localizer(
        loaded,
        topk=config["topk"],
        threshold=0.2,
        device="cpu",
        fast=fast,
        lanes=config.get("lanes") or None,
        batch_size=config["batch_size"],
        workers=config["workers"],
        progress=False,
    )
    if compiled:
        localizer.compile(config["batch_size"])
    setup_s = time.perf_counter() - start
    timing = time_records(localizer, config)
    return {"load_s": load_s, "setup_s": setup_s, **timing}


class _PeerDataset:
    """What a torchvision user writes: PIL open, RGB, Resize (whole image), ToTensor, Normalize."""

    def __init__(self, paths: list[str], size: int) -> None:
        from torchvision import transforms as T

        from cam_cli.models.preprocess import IMAGENET

        self.paths = paths
        self.transform = T.Compose(
            [T.Resize((size, size)), T.ToTensor(), T.Normalize(IMAGENET.mean, IMAGENET.std)]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            image = image.convert("RGB")
        return self.transform(image), image.width, image.height, index


def _peer_model(loaded):
    """The model as a peer user holds it (logits out) and the names of its CAM/fc layers."""
    from torch import nn

    if loaded.arch in PEER_LAYERS:
        return loaded.model.net.eval(), *PEER_LAYERS[loaded.arch]
    if loaded.model.classifier is None:
        raise SystemExit(f"variants d/e need a linear classifier; {loaded.arch} has none")

    class LogitsOnly(nn.Module):
        def __init__(self, camnet: nn.Module) -> None:
            super().__init__()
            self.camnet = camnet

        def forward(self, x):
            return self.camnet(x)[0]

    return LogitsOnly(loaded.model).eval(), *WRAPPED_LAYERS


def _skimage_box(cam, threshold: float, width: int, height: int) -> list[int]:
    """Largest 8-connected component of ``cam > threshold * max`` -> box in image pixels."""
    import numpy as np
    from skimage.measure import label, regionprops

    size_y, size_x = cam.shape
    regions = regionprops(label(cam > threshold * cam.max(), connectivity=2))
    if not regions:
        return [0, 0, width - 1, height - 1]
    min_row, min_col, max_row, max_col = max(regions, key=lambda r: r.area).bbox
    sx, sy = width / size_x, height / size_y
    return [
        int(np.floor(min_col * sx)),
        int(np.floor(min_row * sy)),
        min(width - 1, int(np.ceil(max_col * sx)) - 1),
        min(height - 1, int(np.ceil(max_row * sy)) - 1),
    ]


def _peer_records(paths, batch, cams, top, scores, classes) -> list[str]:
    """JSON lines for one batch, in the shape `cam-cli bbox` writes."""
    _, widths, heights, indices = batch
    lines = []
    for i, index in enumerate(indices.tolist()):
        width, height = int(widths[i]), int(heights[i])
        predictions = []
        for r in range(top.shape[1]):
            info = classes[int(top[i, r])]
            predictions.append(
                {
                    "rank": r + 1,
                    "class_index": int(top[i, r]),
                    "wnid": info.wnid,
                    "name": info.name,
                    "score": round(float(scores[i, r]), 6),
                    "box": _skimage_box(cams[i, r], 0.2, width, height),
                }
            )
        record = {
            "path": paths[index],
            "width": width,
            "height": height,
            "predictions": predictions,
        }
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    return lines


def run_peers(config: dict, method: str) -> dict:
    """(d) torchcam CAM, or (e) pytorch-grad-cam GradCAM; then skimage boxes, JSON Lines."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    loaded, load_s = load_timed(config)
    start = time.perf_counter()
    model, target_name, fc_name = _peer_model(loaded)
    modules = dict(model.named_modules())
    size, k = loaded.input_size, config["topk"]
    if method == "torchcam":
        from torchcam.methods import CAM

        extractor = CAM(model, target_layer=target_name, fc_layer=fc_name)
    else:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        extractor = GradCAM(model=model, target_layers=[modules[target_name]])
    setup_s = time.perf_counter() - start

    def batch_cams(x):
        if method == "torchcam":
            with torch.inference_mode():
                logits = model(x)
                scores, top = logits.softmax(dim=1).topk(k, dim=1)
                maps = [
                    extractor(top[:, r].tolist(), logits, normalized=False)[0] for r in range(k)
                ]
                cams = F.interpolate(
                    torch.stack(maps, dim=1),
                    size=(size, size),
                    mode="bilinear",
                    align_corners=False,
                )
            return cams.numpy(), top.numpy(), scores.numpy()
        with torch.inference_mode():
            scores, top = model(x).softmax(dim=1).topk(k, dim=1)
        maps = [
            extractor(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in top[:, r]])
            for r in range(k)
        ]  # numpy [B, S, S] at input size

        return np.stack(maps, axis=1), top.numpy(), scores.numpy()

    def one_pass(paths: list[str], out: str) -> None:
        loader = DataLoader(
            _PeerDataset(paths, size),
            batch_size=config["batch_size"],
            num_workers=2 if config["workers"] is None else config["workers"],
        )
        with open(out, "w", encoding="utf-8") as handle:
            for batch in loader:
                cams, top, scores = batch_cams(batch[0])
                handle.writelines(_peer_records(paths, batch, cams, top, scores, loaded.classes))

    paths = config["paths"]
    if method == "gradcam":
        paths = paths[: config["e_images"]]
    timing = timed_passes(
        lambda: one_pass(paths[: config["warmup_batches"] * config["batch_size"]], os.devnull),
        lambda: one_pass(paths, config["records"]),
        config["repeats"],
    )
    return {"load_s": load_s, "setup_s": setup_s, **timing, "images": len(paths)}


def child_main(config_file: str, variant: str, result_file: str) -> None:
    import torch

    config = json.loads(Path(config_file).read_text())
    config["records"] = str(Path(config["out_dir"]) / f"{variant}.jsonl")
    runners = {
        "a": run_forward_only,
        "b": lambda c: run_cam_cli(c, fast=False),
        "c": lambda c: run_cam_cli(c, fast=True),
        "f": lambda c: run_cam_cli(c, fast=True, compiled=True),
        "d": lambda c: run_peers(c, "torchcam"),
        "e": lambda c: run_peers(c, "gradcam"),
    }
    result = runners[variant](config)
    result.setdefault("images", config["num_images"])
    result["torch_threads"] = torch.get_num_threads()
    if variant != "a":
        result["records"] = config["records"]
    Path(result_file).write_text(json.dumps(result))


def agreement(reference: str, other: str) -> dict | None:
    """Rank-1 class agreement and mean rank-1 box IoU (same class) of two JSON Lines files."""
    import numpy as np

    from cam_cli.boxes.geometry import iou_inclusive

    def read(path: str) -> dict:
        records = {}
        for line in Path(path).read_text().splitlines():
            record = json.loads(line)
            if "predictions" in record:
                records.setdefault(record["path"], record["predictions"][0])
        return records

    ref, oth = read(reference), read(other)
    common = [p for p in ref if p in oth]
    if not common:
        return None
    same = [p for p in common if ref[p]["class_index"] == oth[p]["class_index"]]
    ious = [float(iou_inclusive(ref[p]["box"], np.array([oth[p]["box"]]))[0]) for p in same]
    return {
        "images": len(common),
        "top1_same": len(same) / len(common),
        "box_iou_mean": statistics.fmean(ious) if ious else math.nan,
    }


def evaluate_targets(arch: str, results: dict) -> list[dict]:
    checks = []
    for num, den, minimum, archs in TARGETS:
        value = ratio(results, num, den)
        if value is None or (archs is not None and arch not in archs):
            continue
        target = f"({num}) >= {minimum} x ({den})"
        checks.append({"target": target, "ratio": value, "passed": value >= minimum})
    return checks


def print_report(report: dict) -> None:
    config, results = report["config"], report["results"]
    rss = report.get("rss_check")
    if rss:
        print_rss(rss)
    if not results:
        return
    workers = config["workers"]
    if workers is None:
        workers = "cam-cli's default (0 on the CPU: a decode thread) for b, c; 2 for d, e"
    print(
        f"cam-cli bbox benchmark: arch {config['arch']} (weights: {config['weights_label']}), "
        f"{config['num_images']} images from {config['images_label']}, top-{config['topk']}, "
        f"batch {config['batch_size']}, workers {workers}, {config['rounds']} round(s)"
        f" x {config['repeats']} timed passes (median), torch {report['torch']}, "
        f"{report['cpus']} CPUs, {report['torch_threads']} intra-op threads"
    )
    header = ["variant", "img/s", "best", "quiet (n)", "x (a)", "x (d)", "CPU ms/img", "setup s",
              "warm-up s (excess)", "peak RSS MB", "tree RSS MB", "others %"]  # fmt: skip
    rows = []
    for variant, result in results.items():
        name = f"({variant}) {VARIANTS[variant]}"
        if "error" in result:
            rows.append([name, result["error"]] + [""] * (len(header) - 2))
            continue
        others = result["foreign_cpu_share"]
        if result["images"] != config["num_images"]:
            name += f" [{result['images']} img]"
        rows.append([
            name,
            f"{result['img_per_s']:.1f}",
            f"{result['best_img_per_s']:.1f}",
            f"{fmt(result['quiet_img_per_s'])} ({result['quiet_passes']})",
            fmt(ratio(results, variant, "a"), ".2f"),
            fmt(ratio(results, variant, "d"), ".2f"),
            f"{result['cpu_ms_per_img']:.0f}",
            f"{result['setup_s']:.2f}",
            f"{result['warmup_s']:.2f} ({result['warmup_excess_s']:+.2f})",
            f"{result['peak_rss_mb']:.0f}",
            fmt(result["peak_tree_rss_mb"], ".0f"),
            fmt(others and 100 * statistics.median(others), ".0f"),
        ])  # fmt: skip
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    if report["agreement"] and config["weights"] is None:
        print(
            "(random weights: class scores are near ties, so low-precision variants may rank "
            "classes differently; the agreement check means something with trained weights)"
        )
    for variant, agree in report["agreement"].items():
        if agree:
            print(
                f"agreement of ({variant}) with (b) over {agree['images']} images: rank-1 class "
                f"{agree['top1_same']:.1%} the same, rank-1 box IoU "
                f"{fmt(agree['box_iou_mean'], '.3f')} (same class)"
            )
    for check in report["targets"]:
        verdict = "PASS" if check["passed"] else "FAIL"
        print(f"target {check['target']}: {check['ratio']:.2f}  {verdict}")
    print(
        "img/s: median pass; best: fastest pass; quiet (n): median of the n passes during which "
        f"other processes used <= {QUIET_SHARE:.0%} of the CPUs; "
        "x (a), x (d): medians of per-round ratios; "
        "CPU ms/img: CPU time of the process and its workers per image (median pass); "
        "others %: median share of the CPUs used by other processes during its passes. On a "
        "shared machine timings are noisy: compare medians of repeated runs."
    )


def cpu_main(args) -> int:
    """The CPU comparison (variants a-f, then the RSS check when asked): its report."""
    device_only = {
        "--archs": args.archs,
        "--repeats-per-arch": args.repeats_per_arch,
        "--replicate-to": args.replicate_to,
        "--eval": args.eval,
        "--eval-images": args.eval_images,
        "--annotations": args.annotations,
        "--time-limit": args.time_limit,
    }
    if given := [name for name, value in device_only.items() if value]:
        raise SystemExit(f"bench_bbox.py: {', '.join(given)} go(es) with --device")
    args.fast = bool(args.fast)
    args.batch_size = args.batch_size or 32

    import torch

    from cam_cli.models.registry import get_arch

    args.arch = get_arch(args.arch).name
    weights_label = "random init"
    if args.weights is None and args.arch == "mobilenet_v2" and MOBILENET_WEIGHTS.is_file():
        args.weights = str(MOBILENET_WEIGHTS)
    if args.weights in (None, "none"):
        args.weights = None
    else:
        weights_label = Path(args.weights).name
    if args.classes is None and DEFAULT_CLASSES.is_file():
        args.classes = str(DEFAULT_CLASSES)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if unknown := [v for v in variants if v not in VARIANTS]:
        raise SystemExit(f"unknown variants {unknown}; choose from {','.join(VARIANTS)}")

    with tempfile.TemporaryDirectory(prefix="bench_bbox_") as tmp_name:
        tmp = Path(tmp_name)
        paths, images_label = benchmark_images(args.images, tmp)
        num_images = args.num_images or len(paths)
        config = {
            "arch": args.arch,
            "weights": args.weights,
            "weights_label": weights_label,
            "classes": args.classes,
            "images_label": images_label,
            "num_images": num_images,
            "paths": repeat_to(paths, num_images),
            "batch_size": args.batch_size,
            "workers": args.workers,
            "topk": args.topk,
            "repeats": args.repeats,
            "warmup_batches": args.warmup_batches,
            "e_images": args.e_images,
            "torch_threads": args.torch_threads,
            "lanes": args.lanes,
            "rounds": args.rounds,
            "out_dir": str(tmp),
        }
        config_file = tmp / "config.json"
        config_file.write_text(json.dumps(config))

        rounds: dict[str, list[dict]] = {v: [] for v in ([] if args.rss_only else variants)}
        for index in range(args.rounds):
            order = variants if index % 2 == 0 else variants[::-1]  # cancel slow drifts
            for variant in [] if args.rss_only else order:
                module, package = PEER_PACKAGES.get(variant, (None, None))
                if module and importlib.util.find_spec(module) is None:
                    rounds[variant].append({"error": f"not installed (pip install {package})"})
                    continue
                print(f"round {index + 1}: ({variant}) {VARIANTS[variant]}", file=sys.stderr)
                rounds[variant].append(run_variant(variant, config_file, tmp))
        warm_images = args.warmup_batches * args.batch_size
        results = {v: summarize(runs, warm_images) for v, runs in rounds.items()}
        agree = {}
        if results.get("b", {}).get("records"):
            for variant, result in results.items():
                if variant != "b" and result.get("records"):
                    agree[variant] = agreement(results["b"]["records"], result["records"])
        report = {
            "config": {k: v for k, v in config.items() if k not in ("paths", "out_dir")},
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": args.torch_threads or torch.get_num_threads(),
            "results": results,
            "agreement": agree,
            "targets": evaluate_targets(args.arch, results),
        }
        if args.rss_check or args.rss_only:
            report["rss_check"] = rss_check(args, paths, tmp)
    for result in results.values():
        result.pop("records", None)
    if args.save:
        args.save.write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print_report(report)
    return 0
