"""Speed and memory benchmark of `cam-cli bbox` against a forward-only bound and the peers.

On the same images and the same model, in one run, images/s of:

  a  forward only: uint8 batches already decoded (by cam-cli's decoder) and in memory ->
     preprocessing -> forward of the plain model (fp32, NCHW, inference_mode, no cam-cli
     inference settings). The bound for (b): everything else is overhead on top of it.
  b  cam-cli's top-k bbox pipeline, JPEG files -> JSON Lines: ``Localizer(fast=False).localize``
     + ``RecordWriter`` (the loop of ``cam-cli bbox``, in-process, records to a temp file),
     with cam-cli's own execution (on the CPU: lanes and a decode thread; see
     inference/localizer.py).
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

GPU-scale mode (``--device cuda``, or ``--device cpu`` to try it here), for each network of
``--archs`` (default ``--arch``), each in a subprocess of its own:

  forward   uint8 images decoded before the clock starts and already on the device ->
            preprocessing -> the network as the `Localizer` prepares it (batch norm folded,
            channels_last, the precision of ``--fast``: cam-cli's default unless given, bf16 on
            CUDA), batch ``--batch-size`` (default 256 on CUDA, 32 on the CPU).
  decode    JPEG files -> uint8 [B, 3, S, S] batches on the device by cam-cli's own decode path
            (`ImageListDataset` + `collate_images` in a DataLoader with `default_workers(device)`
            processes, pinned memory, non-blocking copies; a decode thread with 0 workers). It
            does not depend on the network: measured once per input size, shown for each.
  pipeline  JPEG files -> JSON Lines: `api.write_boxes` with a prepared
            `Localizer` and ``RunOptions(device, batch_size, workers)``, top-k.
  eval      (``--eval [ARCHS]``) what `cam-cli eval --maxboxacc` runs
            (`evaluation.evaluate.evaluate_model`, its Localizer set-up included) over the
            annotated sample files themselves (``--eval-images``), minus model and annotation
            loading.
Every pass is timed between two ``torch.cuda.synchronize()``; each variant reports its host
peak RSS and its GPU memory peak (``torch.cuda.max_memory_allocated``, its own process, reset
at its start). Then the ratios pipeline / min(forward, decode) and pipeline / forward, and the
issue's targets as PASS/FAIL lines (N/A, with the figure, when the run is not under the
targets' conditions: CUDA, top-5, batch 256, bf16). ``--replicate-to N`` makes N distinct files
(hard links, or symlinks across file systems) from the sample in a temp dir. ``--rss-check``
with ``--device`` runs the real CLI through a wrapper that also reads its GPU memory peak.
``--time-limit S`` skips what would start after S seconds and stops a variant still running.

Examples (from the repository root):

  .venv/bin/pip install -e ".[bench]"        # torchcam, grad-cam, psutil
  .venv/bin/python scripts/bench_bbox.py --arch mobilenet_v2 --num-images 256 --rounds 2
  .venv/bin/python scripts/bench_bbox.py --arch googlenet --variants a,b,c,d,e --json
  .venv/bin/python scripts/bench_bbox.py --rss-only --fast
  python3 scripts/bench_bbox.py --device cuda --archs mobilenet_v2,googlenet,resnet50,vgg16-gap \
      --replicate-to 4330 --eval mobilenet_v2 --rss-check
  .venv/bin/python scripts/bench_bbox.py --device cpu --archs mobilenet_v2,googlenet \
      --replicate-to 48 --batch-size 8 --repeats 1

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
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The real sample and weights: ../shared, else the copy that scripts/prepare_device_data.sh
# makes in device_data/ (carried to a machine that has no ../shared).
SHARED_SAMPLE = REPO.parent / "shared" / "data" / "ilsvrc2012-val-sample"
DEVICE_DATA = REPO / "device_data"
SAMPLE = SHARED_SAMPLE if SHARED_SAMPLE.is_dir() or not DEVICE_DATA.is_dir() else DEVICE_DATA
DEFAULT_IMAGES = SAMPLE / "val"
DEFAULT_CLASSES = SAMPLE / "LOC_synset_mapping.txt"
DEFAULT_ANNOTATIONS = SAMPLE / "LOC_val_solution.csv"
MOBILENET_WEIGHTS = next(
    (
        path
        for path in (
            REPO.parent / "shared" / "weights" / "mobilenet_v2-imagenet.pth",
            DEVICE_DATA / "weights" / "mobilenet_v2-imagenet.pth",
        )
        if path.is_file()
    ),
    REPO.parent / "shared" / "weights" / "mobilenet_v2-imagenet.pth",
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
RSS_TARGET_MB = 150.0

# GPU-scale mode (``--device``): the variants, and the targets of the issue "GPU-scale
# localization", which hold under TARGET_CONDITIONS.
DEVICE_VARIANTS = {
    "forward": "forward only (uint8 on the device)",
    "decode": "decode only (JPEG -> uint8 on the device)",
    "pipeline": "pipeline (JPEG -> JSON Lines)",
    "eval": "eval --maxboxacc",
}
TARGET_CONDITIONS = {"device": "cuda", "topk": 5, "batch_size": 256, "precision": "bf16"}
PIPELINE_SHARE = 0.80  # pipeline >= 80% of min(forward only, decode only), every network
MOBILENET_RATE = 5000.0  # mobilenet_v2 pipeline img/s ...
MOBILENET_FILES = 4330  # ... over the sample replicated to this many files
EVAL_SHARE = 0.50  # eval --maxboxacc >= 50% of the pipeline's rate
GPU_GROWTH_TARGET_MB = RSS_TARGET_MB  # GPU memory peak, 500 vs 5000 images
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


def benchmark_images(images: Path | None, tmp: Path) -> tuple[list[str], str]:
    """The images to time (``--images``, else the real sample) and how to name them; stand-in
    JPEGs in ``tmp`` when there are none."""
    from cam_cli.data.images import list_images  # after torch in the children, as before

    folder = images if images is not None else DEFAULT_IMAGES
    paths = [str(p) for p in list_images(folder)] if folder.is_dir() else []
    if paths:
        return paths, str(folder)
    print(f"{folder}: no images; using generated JPEGs", file=sys.stderr)
    paths = generate_images(tmp / "generated")
    return paths, f"{len(paths)} generated JPEGs"


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


def _timed(warm_up, one_pass, repeats: int, sync=None) -> dict:
    """Run the warm-up once (timed apart), then `repeats` passes: wall and CPU seconds each.

    ``foreign`` is the share of the machine's CPU capacity that *other* processes used during
    a pass (machine busy time minus ours): passes with little of it are the trustworthy ones.
    ``sync`` (``torch.cuda.synchronize`` on CUDA) runs before the clock starts and before it
    stops, so a pass counts all the device work it queued.
    """
    sync = sync or (lambda: None)
    start = time.perf_counter()
    warm_up()
    sync()
    warmup_s = time.perf_counter() - start
    times, cpu, foreign = [], [], []
    for _ in range(repeats):
        sync()
        busy_start, cpu_start, start = _machine_busy_seconds(), _cpu_seconds(), time.perf_counter()
        one_pass()
        sync()
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

    from cam_cli.data.batches import ImageListDataset

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


def _time_records(localizer, config: dict, sync=None) -> dict:
    """`_timed` passes of `write_boxes` (what `cam-cli bbox` runs) with a prepared
    Localizer: a warm-up to /dev/null, then the timed passes into the records file."""
    from cam_cli.api import write_boxes

    def one_pass(paths: list[str], out) -> None:
        write_boxes(localizer, paths, output=out)

    warm = config["paths"][: config["warmup_batches"] * config["batch_size"]]
    with open(os.devnull, "w") as devnull:
        return _timed(
            lambda: one_pass(warm, devnull),
            lambda: one_pass(config["paths"], config["records"]),
            config["repeats"],
            sync=sync,
        )


def run_cam_cli(config: dict, fast: bool, compiled: bool = False) -> dict:
    """(b), (c), (f): what `cam-cli bbox` runs (`inference.jobs.write_boxes`): its set-up
    (the `Localizer`; (f) compiles it, a one-time cost counted as set-up) timed apart from its
    run over the images (`api.write_boxes`), minus argument parsing."""
    from cam_cli.inference.localizer import Localizer

    loaded, load_s = _load(config)
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
    timing = _time_records(localizer, config)
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
# Child side, GPU-scale mode (--device): forward, decode, pipeline, eval; the CLI wrapper


def _device_start(config: dict):
    """The device of this variant, with its CUDA context made and its memory peak reset."""
    import torch

    from cam_cli.runtime.device import resolve_device

    device = resolve_device(config["device"])
    if device.type == "cuda":
        if device.index is not None:  # set_device refuses a device without an index
            torch.cuda.set_device(device)
        torch.zeros(1, device=device)  # the context now, not in the first timed batch
        torch.cuda.reset_peak_memory_stats(device)
    return device


def _device_sync(device):
    import torch

    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None


def _device_facts(device, precision=None) -> dict:
    """What the parent prints: the device's name, the precision run, the GPU memory peaks."""
    import torch

    facts: dict = {"device": str(device)}
    if precision is not None:  # a `runtime.device.Precision`
        facts["precision"] = (
            {torch.bfloat16: "bf16", torch.float16: "fp16"}[precision.dtype]
            if precision.enabled
            else "fp32"
        )
    if device.type == "cuda":
        facts["device_name"] = torch.cuda.get_device_name(device)
        facts["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        facts["gpu_reserved_peak_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
    return facts


def _unique_files(paths: list[str]) -> list[str]:
    """One path per file (replicated hard links and symlinks are the same file)."""
    seen, unique = set(), []
    for path in paths:
        stat = os.stat(path)
        if (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            unique.append(path)
    return unique


def run_device_forward(config: dict) -> dict:
    """forward: decoded uint8 images already on the device -> preprocessing -> the network as
    the `Localizer` prepares it (BN folded, channels_last, its precision). Nothing else."""
    import numpy
    import torch

    from cam_cli.data.batches import ImageListDataset
    from cam_cli.inference.localizer import Localizer

    device = _device_start(config)
    loaded, load_s = _load(config)
    start = time.perf_counter()
    localizer = Localizer(loaded, topk=config["topk"], device=config["device"], fast=config["fast"])
    model, prep, precision = localizer.model, localizer.preprocessing, localizer.precision
    setup_s = time.perf_counter() - start
    dataset = ImageListDataset(_unique_files(config["paths"]), loaded.input_size)
    decoded = [d.pixels for d in (dataset[i] for i in range(len(dataset))) if d.error is None]
    pool = torch.from_numpy(numpy.stack(decoded)).to(device)  # [U, 3, S, S] uint8
    n, bs = config["num_images"], config["batch_size"]
    index_batches = [
        (torch.arange(i, min(i + bs, n)) % len(pool)).to(device) for i in range(0, n, bs)
    ]

    def one_pass(batches) -> None:
        with torch.inference_mode():
            for index in batches:
                x = prep.apply(pool[index]).contiguous(memory_format=torch.channels_last)
                with precision.autocast():
                    model(x)

    timing = _timed(
        lambda: one_pass(index_batches[: config["warmup_batches"]]),
        lambda: one_pass(index_batches),
        config["repeats"],
        sync=_device_sync(device),
    )
    localizer.close()
    return {
        "load_s": load_s,
        "setup_s": setup_s,
        **timing,
        "decoded_pool_mb": pool.numel() / 2**20,
        **_device_facts(device, precision),
    }


def run_device_decode(config: dict) -> dict:
    """decode: JPEG files -> uint8 batches on the device, the way `Localizer.localize` loads
    them by default (same dataset, collate, workers, pinning, prefetch; on CUDA the batched
    device JPEG decoding of `data.decode`), and nothing else."""
    from torch.utils.data import DataLoader

    from cam_cli.data.batches import ImageListDataset, collate_images
    from cam_cli.data.decode import JpegRoutingDataset, decode_batches, resolve_decode
    from cam_cli.inference.localizer import default_workers
    from cam_cli.inference.threads import prefetched

    device = _device_start(config)
    workers = config["workers"]
    if workers is None:
        workers = default_workers(device)
    on_device = resolve_decode("auto", device) == "device"
    size = config["input_size"]

    def one_pass(paths: list[str]) -> None:
        dataset = (JpegRoutingDataset if on_device else ImageListDataset)(list(paths), size)
        loader = DataLoader(
            dataset,
            batch_size=config["batch_size"],
            num_workers=workers,
            collate_fn=collate_images,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
        )
        batches = loader if workers > 0 else prefetched(loader, depth=2)
        if on_device:
            batches = decode_batches(batches, device, size, dataset.max_pixels)
        for batch in batches:
            batch.pixels.to(device, non_blocking=True)

    warm = config["paths"][: config["warmup_batches"] * config["batch_size"]]
    timing = _timed(
        lambda: one_pass(warm),
        lambda: one_pass(config["paths"]),
        config["repeats"],
        sync=_device_sync(device),
    )
    decode = "device" if on_device else "pil"
    return {
        "load_s": 0.0,
        "setup_s": 0.0,
        **timing,
        "workers": workers,
        "decode": decode,
        **_device_facts(device),
    }


def run_device_pipeline(config: dict) -> dict:
    """pipeline: `write_boxes` (the run of `cam-cli bbox`) with a prepared `Localizer`
    and ``RunOptions(device, batch_size, workers)``: JPEG files -> JSON Lines."""
    from cam_cli.inference.localizer import Localizer

    device = _device_start(config)
    loaded, load_s = _load(config)
    start = time.perf_counter()
    localizer = Localizer(
        loaded,
        topk=config["topk"],
        threshold=0.2,
        device=config["device"],
        fast=config["fast"],
        batch_size=config["batch_size"],
        workers=config["workers"],
        progress=False,
    )
    setup_s = time.perf_counter() - start
    timing = _time_records(localizer, config, sync=_device_sync(device))
    localizer.close()
    facts = _device_facts(device, localizer.precision)
    return {"load_s": load_s, "setup_s": setup_s, **timing, **facts}


def run_device_eval(config: dict) -> dict:
    """eval: `evaluate_model(..., maxboxacc=True)`, what `cam-cli eval --maxboxacc` runs once
    the model and the annotations are loaded, over the annotated sample files themselves."""
    from cam_cli.data.annotations import read_annotations
    from cam_cli.evaluation.evaluate import evaluate_model
    from cam_cli.inference.localizer import RunOptions
    from cam_cli.runtime.device import Precision

    device = _device_start(config)
    loaded, load_s = _load(config)
    truth = read_annotations(config["annotations"])
    files = [p for p in _unique_files(config["source_paths"]) if Path(p).stem in truth]
    files = files[: config["eval_images"]]
    run = RunOptions(
        batch_size=config["batch_size"],
        workers=config["workers"],
        device=config["device"],
        fast=config["fast"],
        progress=False,
    )
    reports = []

    def one_pass(paths: list[str]) -> None:
        stems = {Path(p).stem: p for p in paths}
        annotations = {stem: truth[stem] for stem in stems}
        reports.append(evaluate_model(loaded, stems, annotations, maxboxacc=True, run=run))

    timing = _timed(
        lambda: one_pass(files[: config["warmup_batches"] * config["batch_size"]]),
        lambda: one_pass(files),
        config["repeats"],
        sync=_device_sync(device),
    )
    report = reports[-1]
    figures = {
        "top1_loc_error": report["top1_loc_error"],
        "top5_loc_error": report["top5_loc_error"],
        "gt_known_loc_error": report.get("gt_known_loc_error"),
        "maxboxacc_v2": (report.get("maxboxacc_v2") or {}).get("maxboxacc_v2"),
    }
    return {
        "load_s": load_s,
        "setup_s": 0.0,
        **timing,
        "images": len(files),
        "figures": figures,
        **_device_facts(device, Precision(device, config["fast"])),
    }


def device_child_main(config_file: str, variant: str, result_file: str) -> None:
    import torch

    config = json.loads(Path(config_file).read_text())
    config["records"] = str(Path(config["out_dir"]) / f"{config['arch']}-{variant}.jsonl")
    runners = {
        "forward": run_device_forward,
        "decode": run_device_decode,
        "pipeline": run_device_pipeline,
        "eval": run_device_eval,
    }
    result = runners[variant](config)
    result.setdefault("images", config["num_images"])
    result["torch_threads"] = torch.get_num_threads()
    Path(result_file).write_text(json.dumps(result))


def cli_child_main(config_file: str, result_file: str) -> int:
    """The real `cam-cli` (its `main`, given the arguments in ``config_file``) in this process,
    so that its GPU memory peak can be read when it ends: the RSS check with ``--device``."""
    import torch

    from cam_cli.cli.main import main as cli_main

    sys.argv = ["cam-cli", *json.loads(Path(config_file).read_text())]
    code: int = 0
    try:
        cli_main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    finally:
        facts: dict = {"cli_returncode": code}
        if torch.cuda.is_initialized():
            facts["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
            facts["gpu_reserved_peak_mb"] = torch.cuda.max_memory_reserved() / 2**20
        Path(result_file).write_text(json.dumps(facts))
    return code


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


def run_measured(command: list[str], stdin=None, stdout=None, timeout: float | None = None) -> dict:
    """Run a command; its wall time, exit code, ru_maxrss (os.wait4) and psutil tree peak.

    With ``timeout`` the command runs in a process group of its own, which is killed (with its
    DataLoader workers) after that many seconds; the result then has ``timed_out``.
    """
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    own_group = {"start_new_session": True} if timeout is not None else {}
    process = subprocess.Popen(command, stdin=stdin, stdout=stdout, cwd=REPO, **own_group)
    sampler = TreeSampler(process.pid)
    sampler.start()
    timed_out = threading.Event()

    def stop_group() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    timer = None
    if timeout is not None:
        timer = threading.Timer(max(0.0, timeout), lambda: (timed_out.set(), stop_group()))
        timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except BaseException:  # interrupted: the variant's group must not outlive us
        if timeout is not None:
            stop_group()
        raise
    finally:
        if timer is not None:
            timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    result = {
        "returncode": process.returncode,
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux: KiB
        "peak_tree_rss_mb": sampler.peak_tree / 2**20 if sampler.peak_tree else None,
        # 1-minute load average before and after: how busy the machine was meanwhile.
        "loadavg": [load_before, os.getloadavg()[0]],
    }
    if timed_out.is_set():
        result["timed_out"] = True
    return result


def run_variant(variant: str, config_file: Path, tmp: Path, timeout: float | None = None) -> dict:
    """One variant in a fresh subprocess: its own timings plus its process's memory and CPU.
    ``timeout`` (``--time-limit``): seconds it may run before its process group is killed."""
    result_file = tmp / f"result-{variant}.json"
    result_file.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", variant]
    command += ["--child-config", str(config_file), "--child-result", str(result_file)]
    measured = run_measured(command, stdout=sys.stderr, timeout=timeout)
    if measured.get("timed_out"):
        return {"error": "stopped at --time-limit", **measured}
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


def run_cli_wrapped(cli_args: list[str], tmp: Path, stdin, deadline: float | None) -> dict:
    """The real CLI through ``--child cli`` (`cli_child_main`): `run_measured`'s figures plus
    the GPU memory peaks the CLI's own process saw."""
    config_file, result_file = tmp / "cli-args.json", tmp / "cli-result.json"
    config_file.write_text(json.dumps(cli_args))
    result_file.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "cli"]
    command += ["--child-config", str(config_file), "--child-result", str(result_file)]
    timeout = None if deadline is None else max(1.0, deadline - time.monotonic())
    run = run_measured(command, stdin=stdin, stdout=subprocess.DEVNULL, timeout=timeout)
    if result_file.exists():
        facts = json.loads(result_file.read_text())
        run["gpu_peak_mb"] = facts.get("gpu_peak_mb")
        run["gpu_reserved_peak_mb"] = facts.get("gpu_reserved_peak_mb")
    return run


def rss_check(
    args, paths: list[str], tmp: Path, cli_args: list[str] | None = None, deadline=None
) -> dict:
    """The real CLI over 500 and 5000 paths (stdin), output to /dev/null: peak RSS of each.

    With ``--rss-repeats N`` every count runs N times (interleaved) and medians are compared:
    a single peak can move by a few hundred MB from run to run with some allocator settings.
    ``cli_args`` (``--device`` mode): these `cam-cli` arguments, run through the wrapper that
    also reads the GPU memory peak, which must not grow either.
    """
    measured: dict[int, list[dict]] = {count: [] for count in args.rss_counts}
    for _ in range(args.rss_repeats):
        for count in args.rss_counts:
            list_file = tmp / f"paths-{count}.txt"
            list_file.write_text("\n".join(repeat_to(paths, count)) + "\n")
            with open(list_file) as stdin:
                if cli_args is None:
                    run = run_measured(
                        cli_command(args, args.fast), stdin=stdin, stdout=subprocess.DEVNULL
                    )
                else:
                    run = run_cli_wrapped(cli_args, tmp, stdin, deadline)
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
    command = cli_command(args, args.fast) if cli_args is None else ["cam-cli", *cli_args]
    check = {
        "command": " ".join(command) + " < PATHS",
        "repeats": args.rss_repeats,
        "runs": runs,
        "growth_mb": growth,
        "worst_growth_mb": max(large["peak_rss_mb_runs"]) - min(small["peak_rss_mb_runs"]),
        "tree_growth_mb": tree_growth,
        "target_mb": RSS_TARGET_MB,
        "passed": growth <= RSS_TARGET_MB,
    }
    if cli_args is not None:  # --device mode: exit codes and the GPU memory peak count too
        check["passed"] = check["passed"] and all(
            run["returncode"] == 0 and not run.get("timed_out")
            for r in measured.values()
            for run in r
        )
        for count in args.rss_counts:
            gpu = [run.get("gpu_peak_mb") for run in measured[count]]
            runs[str(count)]["gpu_peak_mb_runs"] = gpu
            runs[str(count)]["gpu_peak_mb"] = (
                statistics.median(gpu) if gpu and None not in gpu else None
            )
            runs[str(count)]["timed_out"] = any(run.get("timed_out") for run in measured[count])
        if small["gpu_peak_mb"] is not None and large["gpu_peak_mb"] is not None:
            check["gpu_growth_mb"] = large["gpu_peak_mb"] - small["gpu_peak_mb"]
            check["gpu_target_mb"] = GPU_GROWTH_TARGET_MB
            check["passed"] = check["passed"] and check["gpu_growth_mb"] <= GPU_GROWTH_TARGET_MB
    return check


def _fmt(value, spec: str = ".1f") -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (format(value, spec))
    )


def print_rss(rss: dict) -> None:
    """The RSS check's lines; with ``--device`` also the GPU memory peaks (when on CUDA)."""
    print(f"rss-check: {rss['command']}")
    for count, run in rss["runs"].items():
        each = " ".join(f"{v:.0f}" for v in run["peak_rss_mb_runs"])
        gpu = ""
        if run.get("gpu_peak_mb") is not None:
            gpu = f", GPU peak {run['gpu_peak_mb']:.0f} MB"
        print(
            f"  {count} images: peak RSS {run['peak_rss_mb']:.0f} MB (runs: {each}; tree "
            f"{_fmt(run['peak_tree_rss_mb'], '.0f')} MB){gpu}, {run['wall_s']:.1f} s, "
            f"{run['img_per_s']:.1f} img/s incl. start-up, exit code {run['returncode']}"
            + (" (stopped at --time-limit)" if run.get("timed_out") else "")
        )
    if "gpu_growth_mb" in rss:
        print(
            f"  GPU memory peak growth {rss['gpu_growth_mb']:+.1f} MB, "
            f"target <= {rss['gpu_target_mb']:.0f} MB"
        )
    verdict = "PASS" if rss["growth_mb"] <= rss["target_mb"] else "FAIL"  # host RSS
    print(
        f"  growth {rss['growth_mb']:+.1f} MB (medians of {rss['repeats']}; worst pair "
        f"{rss['worst_growth_mb']:+.1f} MB; tree {_fmt(rss['tree_growth_mb'], '+.1f')} MB)"
        f", target <= {rss['target_mb']:.0f} MB: {verdict}"
    )


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


# ---------------------------------------------------------------------------------------------
# Parent side, GPU-scale mode (--device)

# A variant is not started with less time than this left before --time-limit.
MIN_START_S = 10.0
# Per-variant results the children report beyond the timings (`summarize` keeps the timings).
DEVICE_FACTS = ("device", "device_name", "precision", "workers", "figures", "decoded_pool_mb")


def replicate(sources: list[str], count: int, folder: Path) -> tuple[list[str], str]:
    """``count`` distinct files made from ``sources`` in ``folder``: hard links where the file
    system allows, else symlinks. Each name is new (``00042_<name>``); the data is not copied."""
    folder.mkdir(parents=True, exist_ok=True)
    made, linker = [], os.link
    for i in range(count):
        source = Path(sources[i % len(sources)])
        target = folder / f"{i:05d}_{source.name}"
        try:
            linker(source.resolve(), target)
        except OSError:
            if linker is os.symlink:
                raise
            linker = os.symlink  # another file system, or no hard links here
            linker(source.resolve(), target)
        made.append(str(target))
    return made, "hard links" if linker is os.link else "symlinks"


def _per_arch(text: str | None) -> dict[str, int]:
    """``vgg16-gap=1,resnet50=2`` -> {registry name: 1, ...}."""
    from cam_cli.models.registry import get_arch

    pairs = {}
    for item in (text or "").split(","):
        if item.strip():
            name, _, value = item.partition("=")
            pairs[get_arch(name.strip()).name] = int(value)
    return pairs


def _names(text: str) -> list[str]:
    from cam_cli.models.registry import get_arch

    return list(dict.fromkeys(get_arch(a.strip()).name for a in text.split(",") if a.strip()))


def summarize_device(runs: list[dict], warm_images: int) -> dict:
    """`summarize` plus what a device variant reports besides its timings."""
    summary = summarize(runs, warm_images)
    if "error" in summary:
        return summary
    for key in DEVICE_FACTS:
        if key in runs[-1]:
            summary[key] = runs[-1][key]
    for key in ("gpu_peak_mb", "gpu_reserved_peak_mb"):
        values = [run[key] for run in runs if run.get(key) is not None]
        summary[key] = max(values) if values else None
    return summary


def device_ratios(results: dict, arch: str, size: int) -> dict:
    """pipeline / min(forward, decode) and pipeline / forward (medians of per-round ratios)."""
    pipeline, forward = results.get(f"{arch}/pipeline", {}), results.get(f"{arch}/forward", {})
    decode = results.get(f"decode@{size}", {})
    out: dict = {"pipeline_over_bound": None, "pipeline_over_forward": None, "bound": None}
    if "img_per_s" in pipeline and "img_per_s" in forward:
        out["pipeline_over_forward"] = ratio({"p": pipeline, "f": forward}, "p", "f")
    if all("img_per_s" in r for r in (pipeline, forward, decode)):
        rounds = zip(
            pipeline["round_rates"], forward["round_rates"], decode["round_rates"], strict=True
        )
        out["pipeline_over_bound"] = statistics.median(p / min(f, d) for p, f, d in rounds)
        out["bound"] = "forward" if forward["img_per_s"] <= decode["img_per_s"] else "decode"
    evaluation = results.get(f"{arch}/eval", {})
    if "img_per_s" in evaluation and "img_per_s" in pipeline:
        out["eval_over_pipeline"] = evaluation["img_per_s"] / pipeline["img_per_s"]
    return out


def device_targets(report: dict) -> list[dict]:
    """The issue's targets: value, PASS/FAIL, and whether this run is under their conditions."""
    config, results, ratios = report["config"], report["results"], report["ratios"]
    precision = next(
        (r["precision"] for r in results.values() if r.get("precision")), "unknown precision"
    )
    unmet = [
        f"{key.replace('_', ' ')} {value}"
        for key, value in {
            "device": config["device_type"],
            "topk": config["topk"],
            "batch_size": config["batch_size"],
            "precision": precision,
        }.items()
        if value != TARGET_CONDITIONS[key]
    ]
    checks = []

    def check(
        target: str, value, minimum: float, more_unmet: list[str] = (), unit: str = ""
    ) -> None:
        checks.append(
            {
                "target": target,
                "value": value,
                "unit": unit,
                "minimum": minimum,
                "passed": None if value is None else value >= minimum,
                "applies": not (unmet or more_unmet),
                "unmet": [*unmet, *more_unmet],
            }
        )

    for arch in config["archs"]:
        check(
            f"{arch}: pipeline >= {PIPELINE_SHARE:.0%} of min(forward only, decode only)",
            ratios[arch]["pipeline_over_bound"],
            PIPELINE_SHARE,
        )
    if "mobilenet_v2" in config["archs"]:
        few = []
        if config["distinct_files"] < MOBILENET_FILES or config["num_images"] < MOBILENET_FILES:
            few = [f"{config['num_images']} images from {config['distinct_files']} files"]
        check(
            f"mobilenet_v2: pipeline >= {MOBILENET_RATE:.0f} img/s on the sample replicated to "
            f"{MOBILENET_FILES} files",
            results.get("mobilenet_v2/pipeline", {}).get("img_per_s"),
            MOBILENET_RATE,
            few,
            unit=" img/s",
        )
    for arch in config["eval_archs"]:
        check(
            f"{arch}: eval --maxboxacc >= {EVAL_SHARE:.0%} of the pipeline's img/s",
            ratios[arch].get("eval_over_pipeline"),
            EVAL_SHARE,
        )
    return checks


def target_verdict(check: dict) -> str:
    """PASS / FAIL under the targets' conditions; N/A (with what it would be) elsewhere."""
    if check["passed"] is None:
        return "NOT MEASURED"
    word = "PASS" if check["passed"] else "FAIL"
    if check["applies"]:
        return word
    unmet = ", ".join(check["unmet"])
    return f"N/A (would {word}; the target is for CUDA, top-5, batch 256, bf16; here {unmet})"


def device_main(args) -> int:
    import torch

    from cam_cli.errors import SetupError
    from cam_cli.inference.localizer import default_workers
    from cam_cli.models.registry import get_arch
    from cam_cli.runtime.device import resolve_device

    started = time.monotonic()
    deadline = None if args.time_limit is None else started + args.time_limit
    try:
        device = resolve_device(args.device)
        archs = _names(args.archs or args.arch)
        repeats_for = _per_arch(args.repeats_per_arch)
        eval_archs = [] if args.eval is None else archs if args.eval == "all" else _names(args.eval)
    except SetupError as error:
        raise SystemExit(f"bench_bbox.py: {error}") from None
    except KeyError as error:
        raise SystemExit(f"bench_bbox.py: {error.args[0]}") from None
    if not archs:
        raise SystemExit("bench_bbox.py: --archs names no network")
    if stray := [a for a in eval_archs if a not in archs]:
        raise SystemExit(f"bench_bbox.py: --eval {','.join(stray)}: not in --archs")
    if args.weights not in (None, "none") and len(archs) > 1:
        raise SystemExit(
            "bench_bbox.py: --weights goes with one network; with several, mobilenet_v2 "
            "takes the real file and the others random weights"
        )
    annotations = args.annotations or (
        DEFAULT_ANNOTATIONS if DEFAULT_ANNOTATIONS.is_file() else None
    )
    if eval_archs and annotations is None:
        raise SystemExit("bench_bbox.py: --eval needs --annotations (no sample found)")
    classes = args.classes or (str(DEFAULT_CLASSES) if DEFAULT_CLASSES.is_file() else None)
    batch = args.batch_size or (256 if device.type == "cuda" else 32)
    workers = args.workers if args.workers is not None else default_workers(device)

    def weights_for(arch: str) -> str | None:
        if args.weights is not None:
            return None if args.weights == "none" else args.weights
        real = arch == "mobilenet_v2" and MOBILENET_WEIGHTS.is_file()
        return str(MOBILENET_WEIGHTS) if real else None

    with tempfile.TemporaryDirectory(prefix="bench_bbox_") as tmp_name:
        tmp = Path(tmp_name)
        sources, images_label = benchmark_images(args.images, tmp)
        paths = sources
        if args.replicate_to:
            paths, how = replicate(sources, args.replicate_to, tmp / "replicated")
            images_label += f", replicated to {len(paths)} files ({how}, in a temp dir)"
        num_images = args.num_images or len(paths)
        base = {
            "device": args.device,
            "fast": args.fast,
            "classes": classes,
            "num_images": num_images,
            "paths": repeat_to(paths, num_images),
            "source_paths": sources,
            "annotations": None if annotations is None else str(annotations),
            "eval_images": args.eval_images or len(sources),
            "batch_size": batch,
            "workers": args.workers,
            "topk": args.topk,
            "warmup_batches": args.warmup_batches,
            "torch_threads": args.torch_threads,
            "out_dir": str(tmp),
        }
        plan: list[tuple[str, str, Path]] = []  # (result key, child variant, config file)
        sizes: dict[str, int] = {}
        for arch in archs:
            size = sizes[arch] = get_arch(arch).default_input_size
            config = {
                **base,
                "arch": arch,
                "weights": weights_for(arch),
                "repeats": repeats_for.get(arch, args.repeats),
                "input_size": size,
            }
            config_file = tmp / f"config-{arch}.json"
            config_file.write_text(json.dumps(config))
            variants = ["forward", "decode", "pipeline"] if not args.rss_only else []
            for variant in variants:
                key = f"decode@{size}" if variant == "decode" else f"{arch}/{variant}"
                if all(key != k for k, _, _ in plan):  # decode: once per input size
                    plan.append((key, variant, config_file))
        # eval last: a --time-limit that runs short takes it rather than a network's rows
        if not args.rss_only:
            plan += [(f"{a}/eval", "eval", tmp / f"config-{a}.json") for a in eval_archs]
        runs: dict[str, list[dict]] = {key: [] for key, _, _ in plan}
        for index in range(args.rounds):
            for key, variant, config_file in plan if index % 2 == 0 else plan[::-1]:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left < MIN_START_S:
                    runs[key].append({"error": "skipped: --time-limit"})
                    continue
                print(f"round {index + 1}: {key}", file=sys.stderr)
                runs[key].append(run_variant(variant, config_file, tmp, timeout=left))
        warm_images = args.warmup_batches * batch
        results = {key: summarize_device(key_runs, warm_images) for key, key_runs in runs.items()}
        for result in results.values():
            result.pop("records", None)
        names = {r["device_name"] for r in results.values() if r.get("device_name")}
        report = {
            "mode": "device",
            "config": {
                "device": args.device,
                "device_type": device.type,
                "device_name": ", ".join(sorted(names)) or None,
                "archs": archs,
                "input_sizes": sizes,
                "eval_archs": eval_archs,
                "weights": {arch: weights_for(arch) for arch in archs},
                "images_label": images_label,
                "distinct_files": len(set(paths)),
                "num_images": num_images,
                "eval_images": min(base["eval_images"], len(sources)),
                "batch_size": batch,
                "workers": workers,
                "fast": args.fast,
                "topk": args.topk,
                "rounds": args.rounds,
                "repeats": {arch: repeats_for.get(arch, args.repeats) for arch in archs},
                "warmup_batches": args.warmup_batches,
                "time_limit_s": args.time_limit,
            },
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cpus": os.cpu_count(),
            "results": results,
            "ratios": {arch: device_ratios(results, arch, sizes[arch]) for arch in archs},
        }
        report["targets"] = device_targets(report) if not args.rss_only else []
        if args.rss_check or args.rss_only:
            arch = archs[0]
            cli_args = ["bbox", "--arch", arch, "--images", "-", "--topk", str(args.topk)]
            cli_args += ["--batch-size", str(batch), "--device", args.device, "--quiet"]
            if args.workers is not None:
                cli_args += ["--workers", str(args.workers)]
            if args.fast is not None:
                cli_args.append("--fast" if args.fast else "--no-fast")
            if weights_for(arch):
                cli_args += ["--weights", weights_for(arch)]
            if classes:
                cli_args += ["--classes", classes]
            report["rss_check"] = rss_check(args, paths, tmp, cli_args=cli_args, deadline=deadline)
        report["wall_s"] = time.monotonic() - started
    if args.save:
        args.save.write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print_device_report(report)
    return 0


def print_device_report(report: dict) -> None:
    config, results, ratios = report["config"], report["results"], report["ratios"]
    precision = next((r["precision"] for r in results.values() if r.get("precision")), None)
    if results:
        device = config["device"] + (f" ({config['device_name']})" if config["device_name"] else "")
        repeats = ", ".join(f"{a} {n}" for a, n in config["repeats"].items())
        print(
            f"cam-cli GPU-scale benchmark: device {device}, torch {report['torch']} (CUDA "
            f"{report['cuda']}), {report['cpus']} CPUs; {config['num_images']} images from "
            f"{config['images_label']}; top-{config['topk']}, batch {config['batch_size']}, "
            f"precision {precision or '-'}, decode workers {config['workers']}"
            f"{' (pinned memory)' if config['device_type'] == 'cuda' else ''}; "
            f"{config['rounds']} round(s) x timed passes ({repeats}), median pass"
        )
        header = ["network", "variant", "img/s", "best", "ms/batch", "CPU ms/img", "setup s",
                  "warm-up s (excess)", "host peak RSS MB", "tree RSS MB", "GPU peak MB",
                  "GPU reserved MB", "others %"]  # fmt: skip
        rows = []
        for arch in config["archs"]:
            size = config["input_sizes"][arch]
            keys = [f"{arch}/forward", f"decode@{size}", f"{arch}/pipeline", f"{arch}/eval"]
            first = True
            for key in keys:
                if key not in results:
                    continue
                variant = "decode" if key.startswith("decode@") else key.split("/", 1)[1]
                name = DEVICE_VARIANTS[variant]
                result = results[key]
                if variant == "decode":
                    name += " [same run for every network]"
                if variant == "eval" and "images" in result:
                    name += f" [{result['images']} img]"
                cells = [arch if first else "", name]
                first = False
                if "error" in result:
                    rows.append(cells + [result["error"]] + [""] * (len(header) - 3))
                    continue
                others = result["foreign_cpu_share"]
                rows.append(cells + [
                    f"{result['img_per_s']:.1f}",
                    f"{result['best_img_per_s']:.1f}",
                    f"{1000 * config['batch_size'] / result['img_per_s']:.1f}",
                    f"{result['cpu_ms_per_img']:.1f}",
                    f"{result['setup_s']:.2f}",
                    f"{result['warmup_s']:.2f} ({result['warmup_excess_s']:+.2f})",
                    f"{result['peak_rss_mb']:.0f}",
                    _fmt(result["peak_tree_rss_mb"], ".0f"),
                    _fmt(result.get("gpu_peak_mb"), ".0f"),
                    _fmt(result.get("gpu_reserved_peak_mb"), ".0f"),
                    _fmt(others and 100 * statistics.median(others), ".0f"),
                ])  # fmt: skip
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = (str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
            print("  ".join(cells).rstrip())
        print()
        header = ["network", "pipeline / min(forward, decode)", "pipeline / forward",
                  "slower of forward, decode", "eval / pipeline"]  # fmt: skip
        rows = [
            [
                arch,
                _fmt(ratios[arch]["pipeline_over_bound"], ".2f"),
                _fmt(ratios[arch]["pipeline_over_forward"], ".2f"),
                ratios[arch]["bound"] or "-",
                _fmt(ratios[arch].get("eval_over_pipeline"), ".2f"),
            ]
            for arch in config["archs"]
        ]
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = (str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
            print("  ".join(cells).rstrip())
        for arch in config["eval_archs"]:
            figures = results.get(f"{arch}/eval", {}).get("figures")
            if figures:
                print(
                    f"eval figures of {arch} ({results[f'{arch}/eval']['images']} images, "
                    f"weights {Path(config['weights'][arch] or 'random init').name}): "
                    f"localization error top-1 {_fmt(figures['top1_loc_error'], '.2f')}, "
                    f"top-5 {_fmt(figures['top5_loc_error'], '.2f')}, GT-known "
                    f"{_fmt(figures['gt_known_loc_error'], '.2f')}; MaxBoxAccV2 "
                    f"{_fmt(figures['maxboxacc_v2'], '.2f')}"
                )
        weights = ", ".join(
            f"{arch} {Path(w).name if w else 'random init'}"
            for arch, w in config["weights"].items()
        )
        print(f"weights: {weights} (random weights cost the same to compute)")
        for check in report["targets"]:
            value = check["value"]
            shown = "-" if value is None else f"{value:.1f}{check['unit']}"
            if value is not None and not check["unit"]:
                shown = f"{value:.2f}"
            print(f"target {check['target']}: {shown}  {target_verdict(check)}")
    rss = report.get("rss_check")
    if rss:
        print_rss(rss)
        gpu = ""
        if "gpu_growth_mb" in rss:
            gpu = f", GPU memory peak {rss['gpu_growth_mb']:+.1f} MB <= {rss['gpu_target_mb']:.0f}"
        counts = " vs ".join(rss["runs"])
        print(
            f"target flat memory ({counts} images): host RSS {rss['growth_mb']:+.1f} MB <= "
            f"{rss['target_mb']:.0f}{gpu}, every run complete: "
            + ("PASS" if rss["passed"] else "FAIL")
        )
    print(
        f"img/s: median pass; best: fastest pass; ms/batch: per batch of {config['batch_size']} at "
        "the median rate; GPU peak: torch.cuda.max_memory_allocated of the variant's own process "
        f"(reserved: max_memory_reserved); ratios: medians of per-round ratios. "
        f"Wall time {report['wall_s']:.0f} s."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--arch", default="mobilenet_v2", help="a registry name (cam-cli models)")
    parser.add_argument(
        "--device",
        default=None,
        help="GPU-scale mode on this device (cuda, cuda:N, or cpu to try it): forward only, "
        "decode only, pipeline (and eval) per network; without it, the CPU variants a-f",
    )
    parser.add_argument(
        "--archs",
        default=None,
        help="with --device: comma list of networks, e.g. mobilenet_v2,googlenet,resnet50,"
        "vgg16-gap (default --arch)",
    )
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
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per forward (default 32; 256 with --device cuda)",
    )
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
        "--repeats-per-arch",
        default=None,
        help="with --device: NAME=N,... timed passes for these networks (e.g. vgg16-gap=1)",
    )
    parser.add_argument(
        "--replicate-to",
        type=int,
        default=0,
        help="with --device: make this many distinct files from the images (hard links or "
        "symlinks in a temp dir) and time passes over them",
    )
    parser.add_argument(
        "--eval",
        nargs="?",
        const="all",
        default=None,
        help="with --device: also time eval --maxboxacc (for these networks, comma list; "
        "default all of --archs) over the annotated sample",
    )
    parser.add_argument(
        "--eval-images",
        type=int,
        default=0,
        help="images for --eval (default: every annotated sample file, once each)",
    )
    parser.add_argument(
        "--annotations",
        type=Path,
        default=None,
        help="ground truth for --eval (default: the sample's LOC_val_solution.csv)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="with --device: seconds for the whole run; a variant that would start later is "
        "skipped and one still running then is stopped (its row says so)",
    )
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
    parser.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use --fast in the RSS check (default --no-fast); with --device, the precision "
        "of every variant (default cam-cli's own: bf16 on CUDA)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--save", type=Path, help="also write that JSON object to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-config", help=argparse.SUPPRESS)
    parser.add_argument("--child-result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child == "cli":
        return cli_child_main(args.child_config, args.child_result)
    if args.child in DEVICE_VARIANTS:
        device_child_main(args.child_config, args.child, args.child_result)
        return 0
    if args.child:
        child_main(args.child_config, args.child, args.child_result)
        return 0
    if args.device is not None:
        return device_main(args)
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


if __name__ == "__main__":
    sys.exit(main())
