"""The GPU-scale run of `scripts/benchmarks/bench_bbox.py` (``--device``): per network,
forward only, decode only, pipeline and eval, their ratios, the speed bounds they meet and the
report.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_harness import (
    DEFAULT_ANNOTATIONS,
    DEFAULT_CLASSES,
    MOBILENET_WEIGHTS,
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

# The variants, and the targets of the issue "GPU-scale localization", which hold under
# TARGET_CONDITIONS.
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


# ---------------------------------------------------------------------------------------------
# Child side, GPU-scale mode (--device): forward, decode, pipeline, eval


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
    loaded, load_s = load_timed(config)
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

    timing = timed_passes(
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
    timing = timed_passes(
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
    """pipeline: `api.write_boxes` (the run of `cam-cli bbox`) with a prepared `Localizer`
    (device, batch_size, workers): JPEG files -> JSON Lines."""
    from cam_cli.inference.localizer import Localizer

    device = _device_start(config)
    loaded, load_s = load_timed(config)
    start = time.perf_counter()
    localizer = Localizer(
        loaded,
        topk=config["topk"],
        threshold=0.2,
        batch_size=config["batch_size"],
        workers=config["workers"],
        device=config["device"],
        fast=config["fast"],
        box_backend=config.get("box_backend", "auto"),
        progress=False,
    )
    setup_s = time.perf_counter() - start
    timing = time_records(localizer, config, sync=_device_sync(device))
    localizer.close()
    facts = _device_facts(device, localizer.precision)
    facts["box_backend"] = localizer.box_backend  # the resolved one
    return {"load_s": load_s, "setup_s": setup_s, **timing, **facts}


def run_device_eval(config: dict) -> dict:
    """eval: `evaluate` of the loaded model with MaxBoxAccV2, what `cam-cli eval --maxboxacc`
    runs once the model and the annotations are loaded, over the annotated sample files."""
    from cam_cli.data.annotations import read_annotations
    from cam_cli.data.ground_truth import GroundTruth
    from cam_cli.eval_options import EvalOptions, MetricOptions, SourceOptions
    from cam_cli.evaluation.evaluate import evaluate
    from cam_cli.runtime.device import Precision
    from cam_cli.settings import RunOptions

    device = _device_start(config)
    loaded, load_s = load_timed(config)
    truth = read_annotations(config["annotations"])
    files = [p for p in _unique_files(config["source_paths"]) if Path(p).stem in truth]
    files = files[: config["eval_images"]]
    run = RunOptions(
        batch_size=config["batch_size"],
        workers=config["workers"],
        device=config["device"],
        fast=config["fast"],
        box_backend=config.get("box_backend", "auto"),
        progress=False,
    )
    reports = []

    def one_pass(paths: list[str]) -> None:
        stems = {Path(p).stem: p for p in paths}
        annotations = {stem: truth[stem] for stem in stems}
        options = EvalOptions(
            truth=GroundTruth(annotations, stems),
            source=SourceOptions(model=loaded, run=run),
            metrics=MetricOptions(maxboxacc=True),
        )
        reports.append(evaluate(options).to_json())

    timing = timed_passes(
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


# ---------------------------------------------------------------------------------------------
# Parent side, GPU-scale mode (--device)

# A variant is not started with less time than this left before --time-limit.
MIN_START_S = 10.0
# Per-variant results the children report beyond the timings (`summarize` keeps the timings).
DEVICE_FACTS = (
    "device",
    "device_name",
    "precision",
    "workers",
    "figures",
    "decoded_pool_mb",
    "box_backend",
)


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
            "box_backend": args.box_step,
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
                "box_backend": args.box_step,
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
            cli_args += ["--box-step", args.box_step]
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
    box_backend = next((r["box_backend"] for r in results.values() if r.get("box_backend")), None)
    if results:
        device = config["device"] + (f" ({config['device_name']})" if config["device_name"] else "")
        repeats = ", ".join(f"{a} {n}" for a, n in config["repeats"].items())
        print(
            f"cam-cli GPU-scale benchmark: device {device}, torch {report['torch']} (CUDA "
            f"{report['cuda']}), {report['cpus']} CPUs; {config['num_images']} images from "
            f"{config['images_label']}; top-{config['topk']}, batch {config['batch_size']}, "
            f"precision {precision or '-'}, box step {config.get('box_backend', 'auto')}"
            f"{f' ({box_backend})' if box_backend else ''}, decode workers {config['workers']}"
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
                    fmt(result["peak_tree_rss_mb"], ".0f"),
                    fmt(result.get("gpu_peak_mb"), ".0f"),
                    fmt(result.get("gpu_reserved_peak_mb"), ".0f"),
                    fmt(others and 100 * statistics.median(others), ".0f"),
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
                fmt(ratios[arch]["pipeline_over_bound"], ".2f"),
                fmt(ratios[arch]["pipeline_over_forward"], ".2f"),
                ratios[arch]["bound"] or "-",
                fmt(ratios[arch].get("eval_over_pipeline"), ".2f"),
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
                    f"localization error top-1 {fmt(figures['top1_loc_error'], '.2f')}, "
                    f"top-5 {fmt(figures['top5_loc_error'], '.2f')}, GT-known "
                    f"{fmt(figures['gt_known_loc_error'], '.2f')}; MaxBoxAccV2 "
                    f"{fmt(figures['maxboxacc_v2'], '.2f')}"
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
