"""Speed and memory benchmark of `cam-cli bbox` against a forward-only bound and the peers.

On the same images and the same model, in one run, images/s of:

  a  forward only: uint8 batches already decoded (by cam-cli's decoder) and in memory ->
     preprocessing -> forward of the plain model (fp32, NCHW, inference_mode, no cam-cli
     inference settings). The bound for (b): everything else is overhead on top of it.
  b  cam-cli's top-k bbox pipeline, JPEG files -> JSON Lines: ``Localizer(fast=False).localize``
     + ``RecordWriter`` (the loop of ``cam-cli bbox``, in-process, records to a temp file),
     with cam-cli's own execution (on the CPU: lanes and a decode thread; see pipeline.py).
  c  the same with the fast path (``fast=True``: bf16 autocast; bf16/fp16 on CUDA).
     Boxes of (c)-(e) are checked against (b): rank-1 class agreement and box IoU.
  d  what a user builds from the peers: PIL + torchvision transforms (resize the whole image,
     normalise) in a DataLoader with the same batch size and ``--workers`` (default 2; on
     2 cores the peers ran as fast with 0: 25.2 vs 24.3 img/s for googlenet), torchcam's ``CAM``
     extractor called once per rank for the top-k classes (raw maps, ``normalized=False``, so
     "20% of the max" means what the paper means), bilinear upsampling to the input size, then
     scikit-image ``label`` + ``regionprops`` per map (largest component's box), JSON Lines.
  e  (optional, reference) pytorch-grad-cam ``GradCAM`` per rank (one forward + backward per
     rank), then the same scikit-image boxes. Slow: it runs on at most ``--e-images`` images.
  f  (optional) (c) with ``--compile``: torch.compile first; the compile time is its set-up
     time (a one-time cost; inductor's disk cache makes a second run's shorter).

Every variant runs in a subprocess of its own, so their memory does not mix: its peak RSS is
the child's ``ru_maxrss`` from ``os.wait4`` (the largest single process: the main process or
a reaped DataLoader worker), plus the peak of the summed RSS of its process tree sampled with
psutil every 0.1 s (counts pages shared between the main process and forked workers more than
once). Each variant first runs ``--warmup-batches`` batches (not timed; their time, and how
much longer they took than the same images at the steady rate, is reported with the model
set-up time: that is where one-time costs of the fast path show), then ``--repeats`` timed
passes over ``--num-images`` images; the median pass is reported, with the CPU time per image
(process + DataLoader workers). ``--rounds N`` runs the whole set N times in alternating order;
ratios are the medians of per-round ratios.

Noise: for every pass the script reads /proc/stat and reports the share of the CPUs that
*other* processes (or the hypervisor) used meanwhile; "quiet" rates use only passes where it
was <= 10%. With a 2-thread forward on a 2-core machine, one busy neighbour can halve the
measured rate, so read the "others %" column before trusting a number.

Weights: speed does not depend on the values of the weights, so architectures other than
mobilenet_v2 run with random initialisation (seeded) unless ``--weights FILE`` is given; for
mobilenet_v2 the real ImageNet file in ../shared/weights is used when present. Random weights
give random classes and boxes, which cost the same to compute.

``--rss-check`` runs the real ``cam-cli bbox`` command over 500 and over 5000 image paths (the
image list repeated, given on stdin with ``--images -``, output to /dev/null) and reports the
peak RSS of both and their difference: streaming means it must not grow with the input.

Examples (from the repository root):

  .venv/bin/pip install -e ".[bench]"        # torchcam, grad-cam, psutil
  .venv/bin/python scripts/bench_bbox.py --arch mobilenet_v2 --num-images 256 --rounds 2
  .venv/bin/python scripts/bench_bbox.py --arch googlenet --variants a,b,c,d,e --json
  .venv/bin/python scripts/bench_bbox.py --rss-only --fast

Timings on a shared machine are noisy: repeat, and compare medians.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "ilsvrc2012-val-sample"
DEFAULT_IMAGES = SAMPLE / "val"
DEFAULT_CLASSES = SAMPLE / "LOC_synset_mapping.txt"
MOBILENET_WEIGHTS = REPO.parent / "shared" / "weights" / "mobilenet_v2-imagenet.pth"

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
RSS_TARGET_MB = 150.0
# A pass counts as quiet when other processes used at most this share of the machine's CPUs.
QUIET_SHARE = 0.10

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
# Images


def generate_images(folder: Path, count: int = 64) -> list[str]:
    """Stand-in JPEGs (smooth background + a bright ellipse) when the real sample is absent."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    sizes = [(227, 227), (320, 240), (500, 375), (375, 500), (640, 480)]
    paths = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        width, height = sizes[i % len(sizes)]
        xx = np.mgrid[0:height, 0:width][1]
        base = rng.uniform(40, 120, size=3)
        pixels = base + 40 * np.sin(xx[..., None] / rng.uniform(20, 60) + np.arange(3))
        pixels += rng.normal(0, 8, size=pixels.shape)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
        ImageDraw.Draw(image).ellipse(
            (x0, y0, x0 + width // 3, y0 + height // 3), fill=tuple(rng.integers(150, 256, 3))
        )
        path = folder / f"generated_{i:04d}.jpg"
        image.save(path, quality=90)
        paths.append(str(path))
    return paths


def repeat_to(paths: list[str], count: int) -> list[str]:
    return [paths[i % len(paths)] for i in range(count)]


# ---------------------------------------------------------------------------------------------
# Child side: one variant, in its own process


def _load(config: dict):
    import torch

    from cam_cli.models.loading import load_model

    torch.manual_seed(0)  # random-init architectures: the same weights in every child
    if config["torch_threads"]:
        torch.set_num_threads(config["torch_threads"])
    start = time.perf_counter()
    loaded = load_model(
        arch=config["arch"], weights=config["weights"], classes_file=config["classes"]
    )
    return loaded, time.perf_counter() - start


def _cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (the DataLoader workers of a pass)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat), else None."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _timed(warm_up, one_pass, repeats: int) -> dict:
    """Run the warm-up once (timed apart), then `repeats` passes: wall and CPU seconds each.

    ``foreign`` is the share of the machine's CPU capacity that *other* processes used during
    a pass (machine busy time minus ours): passes with little of it are the trustworthy ones.
    """
    start = time.perf_counter()
    warm_up()
    warmup_s = time.perf_counter() - start
    times, cpu, foreign = [], [], []
    for _ in range(repeats):
        busy_start, cpu_start, start = _machine_busy_seconds(), _cpu_seconds(), time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - start)
        cpu.append(_cpu_seconds() - cpu_start)
        busy_end = _machine_busy_seconds()
        if busy_start is not None and busy_end is not None:
            other = max(0.0, busy_end - busy_start - cpu[-1])
            foreign.append(other / (times[-1] * (os.cpu_count() or 1)))
    return {"warmup_s": warmup_s, "times_s": times, "cpu_s": cpu, "foreign": foreign or None}


def run_forward_only(config: dict) -> dict:
    """(a): the bound. Images decoded by cam-cli's own decoder before the clock starts."""
    import numpy
    import torch

    from cam_cli.common.batches import ImageListDataset

    loaded, load_s = _load(config)
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

    timing = _timed(
        lambda: one_pass(index_batches[: config["warmup_batches"]]),
        lambda: one_pass(index_batches),
        config["repeats"],
    )
    return {"load_s": load_s, "setup_s": 0.0, **timing, "decoded_pool_mb": pool.numel() / 2**20}


def run_cam_cli(config: dict, fast: bool, compiled: bool = False) -> dict:
    """(b), (c), (f): what `cam-cli bbox` runs (`inference.jobs.write_boxes`): its set-up
    (the `Localizer`; (f) compiles it, a one-time cost counted as set-up) timed apart from its
    run over the images (`inference.jobs.localize_to_records`), minus argument parsing."""
    from cam_cli.inference.jobs import localize_to_records
    from cam_cli.inference.pipeline import Localizer, RunOptions

    loaded, load_s = _load(config)
    start = time.perf_counter()
    localizer = Localizer(
        loaded,
        topk=config["topk"],
        threshold=0.2,
        device="cpu",
        fast=fast,
        lanes=config.get("lanes") or None,
    )
    if compiled:
        localizer.compile(config["batch_size"])
    setup_s = time.perf_counter() - start

    def one_pass(paths: list[str], out) -> None:
        run = RunOptions(
            batch_size=config["batch_size"], workers=config["workers"], device="cpu", progress=False
        )
        localize_to_records(localizer, paths, output=out, run=run)

    warm = config["paths"][: config["warmup_batches"] * config["batch_size"]]
    with open(os.devnull, "w") as devnull:
        timing = _timed(
            lambda: one_pass(warm, devnull),
            lambda: one_pass(config["paths"], config["records"]),
            config["repeats"],
        )
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

    loaded, load_s = _load(config)
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
    timing = _timed(
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


# ---------------------------------------------------------------------------------------------
# Parent side: subprocesses, memory, tables


class TreeSampler(threading.Thread):
    """Peak RSS of a process and of its whole tree (psutil, every `interval` s)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_main = self.peak_tree = 0
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        try:
            process = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop.is_set():
            try:
                main = process.memory_info().rss
                tree = main
                for child in process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        tree += child.memory_info().rss
            except psutil.Error:
                return
            self.peak_main, self.peak_tree = max(self.peak_main, main), max(self.peak_tree, tree)
            self.stop.wait(self.interval)


def run_measured(command: list[str], stdin=None, stdout=None) -> dict:
    """Run a command; its wall time, exit code, ru_maxrss (os.wait4) and psutil tree peak."""
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=stdin, stdout=stdout, cwd=REPO)
    sampler = TreeSampler(process.pid)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    return {
        "returncode": process.returncode,
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux: KiB
        "peak_tree_rss_mb": sampler.peak_tree / 2**20 if sampler.peak_tree else None,
        # 1-minute load average before and after: how busy the machine was meanwhile.
        "loadavg": [load_before, os.getloadavg()[0]],
    }


def run_variant(variant: str, config_file: Path, tmp: Path) -> dict:
    """One variant in a fresh subprocess: its own timings plus its process's memory and CPU."""
    result_file = tmp / f"result-{variant}.json"
    result_file.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", variant]
    command += ["--child-config", str(config_file), "--child-result", str(result_file)]
    measured = run_measured(command, stdout=sys.stderr)
    if measured["returncode"] != 0 or not result_file.exists():
        return {"error": f"failed: exit code {measured['returncode']}", **measured}
    return {**json.loads(result_file.read_text()), **measured}


def summarize(runs: list[dict], warm_images: int) -> dict:
    """Rounds of one variant -> medians (rates over every timed pass), peaks over rounds."""
    if any("error" in run for run in runs):
        return {"error": next(run["error"] for run in runs if "error" in run)}
    images = runs[0]["images"]
    passes = [t for run in runs for t in run["times_s"]]
    cpu = [c for run in runs for c in run["cpu_s"]]
    rate = images / statistics.median(passes)
    foreign = [f for run in runs for f in (run["foreign"] or [])]
    quiet = [t for t, f in zip(passes, foreign, strict=False) if f <= QUIET_SHARE]
    warmup_s = statistics.median(run["warmup_s"] for run in runs)
    tree = [run["peak_tree_rss_mb"] for run in runs if run["peak_tree_rss_mb"]]
    return {
        "images": images,
        "img_per_s": rate,
        "img_per_s_passes": [images / t for t in passes],
        # The least disturbed pass: on a busy machine, closer to what an idle one gives.
        "best_img_per_s": images / min(passes),
        "foreign_cpu_share": foreign or None,
        "quiet_img_per_s": images / statistics.median(quiet) if quiet else None,
        "quiet_passes": len(quiet),
        "round_rates": [images / statistics.median(run["times_s"]) for run in runs],
        "cpu_ms_per_img": 1000 * statistics.median(cpu) / images,
        "load_s": statistics.median(run["load_s"] for run in runs),
        "setup_s": statistics.median(run["setup_s"] for run in runs),
        "warmup_s": warmup_s,
        # One-time costs (first-call kernel/graph set-up, worker start): the warm-up's time
        # beyond what its images take at the steady rate.
        "warmup_excess_s": warmup_s - min(warm_images, images) / rate,
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "peak_tree_rss_mb": max(tree) if tree else None,
        "torch_threads": runs[0]["torch_threads"],
        "loadavg": [x for run in runs for x in run["loadavg"]],
        "records": runs[-1].get("records"),
    }


def agreement(reference: str, other: str) -> dict | None:
    """Rank-1 class agreement and mean rank-1 box IoU (same class) of two JSON Lines files."""
    import numpy as np

    from cam_cli.evaluation.metrics import iou_inclusive

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


def ratio(results: dict, num: str, den: str) -> float | None:
    """Median over rounds of the per-round rate ratio (rounds share the machine's load)."""
    if "img_per_s" not in results.get(num, {}) or "img_per_s" not in results.get(den, {}):
        return None
    pairs = zip(results[num]["round_rates"], results[den]["round_rates"], strict=True)
    return statistics.median(n / d for n, d in pairs)


def evaluate_targets(arch: str, results: dict) -> list[dict]:
    checks = []
    for num, den, minimum, archs in TARGETS:
        value = ratio(results, num, den)
        if value is None or (archs is not None and arch not in archs):
            continue
        target = f"({num}) >= {minimum} x ({den})"
        checks.append({"target": target, "ratio": value, "passed": value >= minimum})
    return checks


def cli_command(args, fast: bool) -> list[str]:
    cam_cli = Path(sys.executable).with_name("cam-cli")
    command = [str(cam_cli)] if cam_cli.exists() else [sys.executable, "-m", "cam_cli"]
    command += [
        "bbox",
        "--arch",
        args.arch,
        "--images",
        "-",
        "--topk",
        str(args.topk),
        "--batch-size",
        str(args.batch_size),
        *(["--workers", str(args.workers)] if args.workers is not None else []),
        "--device",
        "cpu",
        "--quiet",
        "--fast" if fast else "--no-fast",
    ]
    if args.weights:
        command += ["--weights", args.weights]
    if args.classes:
        command += ["--classes", args.classes]
    return command


def rss_check(args, paths: list[str], tmp: Path) -> dict:
    """The real CLI over 500 and 5000 paths (stdin), output to /dev/null: peak RSS of each.

    With ``--rss-repeats N`` every count runs N times (interleaved) and medians are compared:
    a single peak can move by a few hundred MB from run to run with some allocator settings.
    """
    measured: dict[int, list[dict]] = {count: [] for count in args.rss_counts}
    for _ in range(args.rss_repeats):
        for count in args.rss_counts:
            list_file = tmp / f"paths-{count}.txt"
            list_file.write_text("\n".join(repeat_to(paths, count)) + "\n")
            with open(list_file) as stdin:
                run = run_measured(
                    cli_command(args, args.fast), stdin=stdin, stdout=subprocess.DEVNULL
                )
            run["img_per_s"] = count / run["wall_s"]
            measured[count].append(run)
            print(f"  rss-check {count} images: {json.dumps(run)}", file=sys.stderr)

    def median_of(key: str, count: int) -> float | None:
        values = [run[key] for run in measured[count] if run[key] is not None]
        return statistics.median(values) if values else None

    runs = {
        str(count): {
            "returncode": max(run["returncode"] for run in measured[count]),
            "wall_s": median_of("wall_s", count),
            "img_per_s": median_of("img_per_s", count),
            "peak_rss_mb": median_of("peak_rss_mb", count),
            "peak_rss_mb_runs": [run["peak_rss_mb"] for run in measured[count]],
            "peak_tree_rss_mb": median_of("peak_tree_rss_mb", count),
        }
        for count in args.rss_counts
    }
    small, large = (runs[str(c)] for c in (min(args.rss_counts), max(args.rss_counts)))
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    tree_growth = None
    if small["peak_tree_rss_mb"] and large["peak_tree_rss_mb"]:
        tree_growth = large["peak_tree_rss_mb"] - small["peak_tree_rss_mb"]
    return {
        "command": " ".join(cli_command(args, args.fast)) + " < PATHS",
        "repeats": args.rss_repeats,
        "runs": runs,
        "growth_mb": growth,
        "worst_growth_mb": max(large["peak_rss_mb_runs"]) - min(small["peak_rss_mb_runs"]),
        "tree_growth_mb": tree_growth,
        "target_mb": RSS_TARGET_MB,
        "passed": growth <= RSS_TARGET_MB,
    }


def _fmt(value, spec: str = ".1f") -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (format(value, spec))
    )


def print_report(report: dict) -> None:
    config, results = report["config"], report["results"]
    rss = report.get("rss_check")
    if rss:
        print(f"rss-check: {rss['command']}")
        for count, run in rss["runs"].items():
            each = " ".join(f"{v:.0f}" for v in run["peak_rss_mb_runs"])
            print(
                f"  {count} images: peak RSS {run['peak_rss_mb']:.0f} MB (runs: {each}; tree "
                f"{_fmt(run['peak_tree_rss_mb'], '.0f')} MB), {run['wall_s']:.1f} s, "
                f"{run['img_per_s']:.1f} img/s incl. start-up, exit code {run['returncode']}"
            )
        verdict = "PASS" if rss["passed"] else "FAIL"
        print(
            f"  growth {rss['growth_mb']:+.1f} MB (medians of {rss['repeats']}; worst pair "
            f"{rss['worst_growth_mb']:+.1f} MB; tree {_fmt(rss['tree_growth_mb'], '+.1f')} MB)"
            f", target <= {rss['target_mb']:.0f} MB: {verdict}"
        )
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
            f"{_fmt(result['quiet_img_per_s'])} ({result['quiet_passes']})",
            _fmt(ratio(results, variant, "a"), ".2f"),
            _fmt(ratio(results, variant, "d"), ".2f"),
            f"{result['cpu_ms_per_img']:.0f}",
            f"{result['setup_s']:.2f}",
            f"{result['warmup_s']:.2f} ({result['warmup_excess_s']:+.2f})",
            f"{result['peak_rss_mb']:.0f}",
            _fmt(result["peak_tree_rss_mb"], ".0f"),
            _fmt(others and 100 * statistics.median(others), ".0f"),
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
                f"{_fmt(agree['box_iou_mean'], '.3f')} (same class)"
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--arch", default="mobilenet_v2", help="a registry name (cam-cli models)")
    parser.add_argument(
        "--weights",
        default=None,
        help="state_dict FILE, or 'none' for random "
        "init (default: ../shared mobilenet_v2 file for mobilenet_v2, else none)",
    )
    parser.add_argument(
        "--classes",
        default=None,
        help="LOC_synset_mapping.txt (default: the sample's, when present)",
    )
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        help=f"image folder (default {DEFAULT_IMAGES}; generated JPEGs if absent)",
    )
    parser.add_argument(
        "--num-images",
        type=int,
        default=None,
        help="images per timed pass; the list is repeated to reach it",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="DataLoader processes (b, c: default cam-cli's own choice; d, e: default 2)",
    )
    parser.add_argument("--topk", type=int, default=5, help="boxes for the k best classes")
    parser.add_argument("--variants", default="a,b,c,d", help="comma list of a,b,c,d,e")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per round")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every variant this many times, each in a fresh process, order alternating; "
        "ratios are medians of per-round ratios (use 2-3 on a busy machine)",
    )
    parser.add_argument(
        "--warmup-batches", type=int, default=2, help="untimed batches before the passes"
    )
    parser.add_argument(
        "--e-images", type=int, default=64, help="images for (e) GradCAM, which is slow"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch.set_num_threads in every variant (0: torch's default)",
    )
    parser.add_argument(
        "--lanes",
        type=int,
        default=0,
        help="(b), (c): parallel single-threaded forwards on the CPU (0: cam-cli's default)",
    )
    parser.add_argument(
        "--rss-check",
        action="store_true",
        help="also run the real CLI over 500 and 5000 paths; report peak RSS",
    )
    parser.add_argument("--rss-only", action="store_true", help="only the RSS check")
    parser.add_argument(
        "--rss-repeats",
        type=int,
        default=1,
        help="runs per image count in the RSS check (medians compared; use 3 to be sure)",
    )
    parser.add_argument(
        "--rss-counts",
        type=lambda s: [int(v) for v in s.split(",")],
        default=[500, 5000],
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--fast", action="store_true", help="use --fast in the RSS check")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--save", type=Path, help="also write that JSON object to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-config", help=argparse.SUPPRESS)
    parser.add_argument("--child-result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(args.child_config, args.child, args.child_result)
        return 0

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
        from cam_cli.common.images import list_images  # after torch in the children, as before

        folder = args.images if args.images is not None else DEFAULT_IMAGES
        paths = [str(p) for p in list_images(folder)] if folder.is_dir() else []
        images_label = str(folder)
        if not paths:
            print(f"{folder}: no images; using generated JPEGs", file=sys.stderr)
            paths = generate_images(tmp / "generated")
            images_label = f"{len(paths)} generated JPEGs"
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


if __name__ == "__main__":
    sys.exit(main())
