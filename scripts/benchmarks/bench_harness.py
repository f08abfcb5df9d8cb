"""The harness both benchmarks share (`bench_bbox_cpu`, `bench_bbox_gpu`): where the sample
is, the images, the timing of passes in a child process, the child processes themselves and
their memory, the summaries of rounds, and the RSS check of the real CLI.

Every child is started as ``scripts/benchmarks/bench_bbox.py --child ...`` (`ENTRY`), the
one front door, so a variant runs in a fresh process of its own whichever benchmark asked for it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The real sample and weights: ../shared, else the copy that
# scripts/device_checks/prepare_device_data.sh makes in device_data/ (carried to a machine that
# has no ../shared).
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
# Every child process runs the front door with --child (see bench_bbox.main).
ENTRY = Path(__file__).resolve().with_name("bench_bbox.py")
# The memory targets: peak RSS (and, with --device, GPU memory) of 500 vs 5000 images.
RSS_TARGET_MB = 150.0
GPU_GROWTH_TARGET_MB = RSS_TARGET_MB  # GPU memory peak, 500 vs 5000 images
# A pass counts as quiet when other processes used at most this share of the machine's CPUs.
QUIET_SHARE = 0.10


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
# Child side: loading and timed passes, shared by every variant


def load_timed(config: dict):
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


def timed_passes(warm_up, one_pass, repeats: int, sync=None) -> dict:
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


def time_records(localizer, config: dict, sync=None) -> dict:
    """`timed_passes` of `api.write_boxes` (what `cam-cli bbox` runs) with a prepared
    Localizer: a warm-up to /dev/null, then the timed passes into the records file."""
    from cam_cli.api import write_boxes

    def one_pass(paths: list[str], out) -> None:
        write_boxes(localizer, paths, output=out)

    warm = config["paths"][: config["warmup_batches"] * config["batch_size"]]
    with open(os.devnull, "w") as devnull:
        return timed_passes(
            lambda: one_pass(warm, devnull),
            lambda: one_pass(config["paths"], config["records"]),
            config["repeats"],
            sync=sync,
        )


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
    command = [sys.executable, str(ENTRY), "--child", variant]
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


def ratio(results: dict, num: str, den: str) -> float | None:
    """Median over rounds of the per-round rate ratio (rounds share the machine's load)."""
    if "img_per_s" not in results.get(num, {}) or "img_per_s" not in results.get(den, {}):
        return None
    pairs = zip(results[num]["round_rates"], results[den]["round_rates"], strict=True)
    return statistics.median(n / d for n, d in pairs)


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
    command = [sys.executable, str(ENTRY), "--child", "cli"]
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


def fmt(value, spec: str = ".1f") -> str:
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
            f"{fmt(run['peak_tree_rss_mb'], '.0f')} MB){gpu}, {run['wall_s']:.1f} s, "
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
        f"{rss['worst_growth_mb']:+.1f} MB; tree {fmt(rss['tree_growth_mb'], '+.1f')} MB)"
        f", target <= {rss['target_mb']:.0f} MB: {verdict}"
    )
