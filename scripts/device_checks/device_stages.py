"""Where the bbox pipeline's time goes on a device: its stages timed one by one, its host
syncs per batch, a profiler trace, and PIL against device JPEG decoding (scripts/device_check.sh
runs it as its stages step; ``--device cpu`` is a dry run).

Parts, in this order (``--parts``; one that would start too close to ``--time-limit`` is
skipped, and says so):

  stages  ms per batch and img/s of each stage over ``--batches`` batches of the sample
          (replicated by hard links to distinct files), after one untimed batch: read (file
          bytes, JPEG routing, collate: one process, the DataLoader spreads it over its
          workers), decode (``--decode device``: `decode_pending`, the resize included),
          forward (preprocessing, the network, softmax, top-k), CAMs (`compute_cams` +
          `upsample_cams`), the box step of each available ``--box-step`` (torch, triton on the
          device; scipy on the host, after the copy of the maps there), the MaxBoxAccV2 sweep
          of the cam-cli protocol (`evaluation.maxboxacc.sweeps.device_best_ious`, ground truth
          included) per
          device step, and the host output (`DeviceOutput.to_host`: the resolved box step and
          the batch's one copy; then the results and their JSON Lines). Each stage runs alone,
          the device drained before it: ms/batch is CUDA-event time (perf_counter on the CPU),
          host ms the time the host spent queueing it (its own syncs included). The pieces are
          the library's own; a check says they give what `Localizer.launch_batch` gives;
  syncs   host syncs per batch (`sync_count`: set_sync_debug_mode("warn") plus CUDA event
          waits, every thread) of the real pipeline, `api.write_boxes` with a prepared
          Localizer, and of `evaluate` with MaxBoxAccV2 of the cam-cli protocol,
          with the top call sites; targets <= 2 (bbox) and <= 4 (eval) per batch. CUDA only;
  decode  ``--decode pil`` against ``--decode device`` image by image on the sample (and on
          ``--val500``): network input pixels (max / mean absolute difference), top-1 class
          and boxes (how many images differ); then the decode rate of both paths on each
          folder (DataLoader workers, pinned memory, the device decode thread on CUDA);
  trace   torch.profiler over 3 batches of `api.write_boxes`: a chrome trace (gzipped when
          big) and the top 25 of key_averages, in ``--out``.

Results: a table per part on stdout, ``check`` / ``target`` lines as bench_bbox.py prints
them, and every figure in ``--out``/stages.json.

  python3 scripts/device_checks/device_stages.py --device cuda --out runs/stages
  .venv/bin/python scripts/device_checks/device_stages.py --device cpu --batch-size 8 --batches 2 \\
      --decode-images 32 --compare-images 16
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # cam_cli, imported where it is used
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts" / "benchmarks"))  # the benchmarks' harness and sizes

from bench_bbox_gpu import replicate  # noqa: E402
from bench_harness import (  # noqa: E402
    DEFAULT_ANNOTATIONS,
    DEFAULT_CLASSES,
    DEFAULT_IMAGES,
    DEVICE_DATA,
    MOBILENET_WEIGHTS,
)

PARTS = ("stages", "syncs", "decode", "trace")  # the profiler last: the most fragile
# The targets for host syncs per batch (on CUDA).
BBOX_SYNCS = 2
EVAL_SYNCS = 4
# Seconds a part needs at least (on CUDA) to be started before --time-limit.
MIN_PART_S = {"stages": 15, "syncs": 15, "trace": 10, "decode": 10}
GZIP_OVER_BYTES = 2 * 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a dry run)")
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--weights", default=None, help="default: the sample's mobilenet_v2")
    parser.add_argument("--classes", default=str(DEFAULT_CLASSES))
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--annotations", type=Path, default=DEFAULT_ANNOTATIONS)
    parser.add_argument(
        "--val500",
        type=Path,
        default=DEVICE_DATA / "val500",
        help="the sample re-encoded at ~500x375 (scripts/device_checks/prepare_device_data.sh)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="256 on CUDA, else 32")
    parser.add_argument("--batches", type=int, default=8, help="timed batches per stage")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--box-step", default="auto", help="the pipeline's (auto, torch, ...)")
    parser.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument(
        "--decode-images", type=int, default=None, help="images per decode-rate pass"
    )
    parser.add_argument(
        "--compare-images", type=int, default=0, help="images compared (0: every one)"
    )
    parser.add_argument("--parts", default=",".join(PARTS), help="comma list of " + ",".join(PARTS))
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "device_stages")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds for all parts")
    args = parser.parse_args(argv)
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))}")
    return args


# ---------------------------------------------------------------------------------------------
# Timing


class StageClock:
    """Per-stage times: CUDA events around each stage on the current stream (the device
    drained before it, so each stage is timed alone), and the host's perf_counter."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.order: list[str] = []
        self.host: dict[str, list[float]] = {}
        self.events: dict[str, list] = {}

    def reset(self) -> None:
        self.order, self.host, self.events = [], {}, {}

    @contextlib.contextmanager
    def stage(self, name: str):
        if name not in self.host:
            self.order.append(name)
            self.host[name], self.events[name] = [], []
        start = end = None
        if self.cuda:
            torch.cuda.synchronize(self.device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        began = time.perf_counter()
        yield
        if self.cuda:
            end.record()
        self.host[name].append(1000 * (time.perf_counter() - began))
        self.events[name].append((start, end))

    def table(self, batch_size: int) -> list[dict]:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        rows = []
        for name in self.order:
            host = statistics.median(self.host[name])
            device = None
            if self.cuda:
                device = statistics.median(s.elapsed_time(e) for s, e in self.events[name])
            ms = device if device is not None else host
            rows.append({
                "stage": name,
                "ms_per_batch": ms,
                "host_ms_per_batch": host,
                "img_per_s": 1000 * batch_size / ms if ms > 0 else None,
                "batches": len(self.host[name]),
            })  # fmt: skip
        return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_steps(device: torch.device) -> tuple[list[str], dict[str, str]]:
    """The box steps that run on ``device`` here, and why the others do not."""
    from cam_cli.boxes.backends import triton_problem

    steps, missing = ["torch"], {}
    problem = triton_problem(device) if device.type == "cuda" else "CUDA only"
    if problem is None:
        steps.append("triton")
    else:
        missing["triton"] = problem
    return steps, missing


def _annotation_of(paths: list[str], sources: list[str], truth: dict) -> dict:
    """Each replicated path's ground truth (its source file's, by stem)."""
    return {p: truth.get(Path(sources[i % len(sources)]).stem) for i, p in enumerate(paths)}


def time_stages(loaded, sources, paths, truth, args, device) -> dict:
    from cam_cli.boxes.backends import device_boxes
    from cam_cli.boxes.components import boxes_from_cams
    from cam_cli.cam.maps import compute_cams, upsample_cams
    from cam_cli.data.batches import ImageListDataset, collate_images
    from cam_cli.data.decode import JpegRoutingDataset, decode_pending, resolve_decode
    from cam_cli.errors import SetupError
    from cam_cli.evaluation.gt_boxes import gt_boxes_in_grid
    from cam_cli.evaluation.maxboxacc.metric import MaxBoxAccV2
    from cam_cli.evaluation.maxboxacc.sweep_torch import pad_gt_boxes
    from cam_cli.evaluation.maxboxacc.sweeps import device_best_ious
    from cam_cli.inference.computation import NOTHING_MORE, DeviceOutput, channels_last
    from cam_cli.inference.localizer import Localizer
    from cam_cli.outputs.writers import RecordWriter
    from cam_cli.runtime.streams import STREAMS, to_device

    bs = args.batch_size
    localizer = Localizer(loaded, topk=args.topk, device=args.device, fast=args.fast,
                          box_backend=args.box_step, batch_size=bs, progress=False)  # fmt: skip
    size, threshold = localizer.input_size, localizer.threshold
    notes = []
    try:
        on_device = resolve_decode("device", device) == "device"
    except SetupError as error:
        on_device = False
        notes.append(f"decode stage: PIL ({error})")
    dataset = (JpegRoutingDataset if on_device else ImageListDataset)(list(paths), size)
    steps, missing = device_steps(device)
    for step, why in missing.items():
        notes.append(f"box step {step}: not timed ({why})")
    annotation_of = _annotation_of(paths, sources, truth)
    thresholds = MaxBoxAccV2(protocol="cam-cli").thresholds
    clock = StageClock(device)
    weight, _ = localizer.model.class_weights()
    weight = None if weight is None else weight.float()
    check = None
    sink = io.StringIO()
    writer = RecordWriter(sink)
    started = time.perf_counter()
    with torch.inference_mode():
        for b in range(args.batches + 1):  # batch 0: the untimed warm-up
            if b == 1:
                warm_s = time.perf_counter() - started
                clock.reset()
            chunk = range(b * bs, min((b + 1) * bs, len(paths)))
            with clock.stage("read: file bytes, routing, collate (1 process)"):
                batch = collate_images([dataset[i] for i in chunk])
                if device.type == "cuda":
                    batch.pin_memory()
            with clock.stage(f"decode: {'device' if on_device else 'PIL'} + resize"):
                if on_device:
                    batch = decode_pending(batch, device, size, dataset.max_pixels)
                else:
                    batch.pixels = to_device(batch.pixels, device)
            with clock.stage(f"forward: preprocess + network ({_precision(localizer)}) + top-k"):
                x = channels_last(localizer.preprocessing.apply(batch.pixels))
                logits, features = localizer.network(x)
                scores, indices = logits.float().softmax(dim=1).topk(localizer.topk, dim=1)
            with clock.stage("CAMs: compute_cams + upsample_cams"):
                cams = compute_cams(features, weight, indices)
                upsampled = upsample_cams(cams, (size, size))
            maps = upsampled.flatten(0, 1)
            for step in steps:
                with clock.stage(f"box step {step} (device)"):
                    device_boxes(step, maps, threshold)
            with clock.stage("box step scipy: maps to host"):
                host_maps = maps.cpu().numpy()
            with clock.stage("box step scipy (host)"):
                boxes_from_cams(host_maps, threshold)
            for step in steps:
                with clock.stage(f"sweep {step}: ground truth + device_best_ious (cam-cli)"):
                    gt = [
                        gt_boxes_in_grid(annotation_of[item.path], item.width, item.height,
                                         (size, size))
                        for item in batch.items
                    ]  # fmt: skip
                    gt_boxes, gt_valid = pad_gt_boxes(gt, device)
                    device_best_ious(step, upsampled[:, 0], gt_boxes, gt_valid, thresholds)
            out = DeviceOutput(batch, localizer.boxing, indices, scores, cams, upsampled)
            with clock.stage(f"host output: to_host (box step {localizer.box_backend}, one copy)"):
                host = out.to_host(NOTHING_MORE, STREAMS.current(device))
            with clock.stage("host output: results + JSON Lines"):
                for result in localizer.boxes_and_results(host):
                    writer.write(result.as_record())
                sink.seek(0)
                sink.truncate()
            if b == 0:
                check = _composition_check(localizer, batch, indices, upsampled)
    rows = clock.table(bs)
    localizer.close()
    workers = _workers(device)
    return {
        "rows": rows,
        "warmup_s": warm_s,
        "batch_size": bs,
        "box_backend": localizer.box_backend,
        "decode": "device" if on_device else "pil",
        "workers": workers,
        "notes": notes,
        "check": check,
    }


def _precision(localizer) -> str:
    precision = localizer.precision
    if not precision.enabled:
        return "fp32"
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}[precision.dtype]


def _workers(device: torch.device) -> int:
    from cam_cli.inference.localizer import default_workers

    return default_workers(device)


def _composition_check(localizer, batch, indices, upsampled) -> dict:
    """The stages' pieces against `Localizer.launch_batch` on the same pixels."""
    reference = localizer.launch_batch(batch)
    same_classes = bool(torch.equal(reference.indices, indices))
    diff = float((reference.upsampled - upsampled).abs().max()) if same_classes else math.inf
    scale = float(upsampled.abs().max()) or 1.0
    return {
        "same_classes": same_classes,
        "max_abs_diff": diff,
        "passed": same_classes and diff <= 1e-4 * scale,
    }


def print_stages(report: dict, device: torch.device) -> None:
    bs, workers = report["batch_size"], report["workers"]
    print(
        f"stages: batch {bs}, {report['rows'][0]['batches']} timed batches after one untimed "
        f"({report['warmup_s']:.2f} s); decode {report['decode']}; the pipeline's box step "
        f"{report['box_backend']}; each stage alone, the device drained before it"
    )
    header = ["stage", "ms/batch", "host ms/batch", "img/s"]
    rows = [
        [r["stage"], f"{r['ms_per_batch']:.2f}", f"{r['host_ms_per_batch']:.2f}",
         f"{r['img_per_s']:.0f}" if r["img_per_s"] else "-"]
        for r in report["rows"]
    ]  # fmt: skip
    _print_table(header, rows)
    unit = "CUDA events" if device.type == "cuda" else "perf_counter (no device clock)"
    print(f"ms/batch: {unit}; host ms/batch: the host's time in the stage (its syncs included)")
    read = report["rows"][0]
    if read["img_per_s"] and workers:
        print(
            f"read in the pipeline: {workers} DataLoader workers at ~{read['img_per_s']:.0f} "
            f"img/s each -> ~{workers * read['img_per_s']:.0f} img/s if they scale"
        )
    elif read["img_per_s"]:
        print(f"read in the pipeline: one decode thread, ~{read['img_per_s']:.0f} img/s")
    pipeline = [r for r in report["rows"][1:] if r["stage"].split(":")[0] in
                ("decode", "forward", "CAMs", "host output")]  # fmt: skip
    if pipeline:
        slowest = max(pipeline, key=lambda r: r["ms_per_batch"])
        total = sum(r["ms_per_batch"] for r in pipeline)
        print(
            f"pipeline's own stages in series: {total:.2f} ms/batch "
            f"({1000 * bs / total:.0f} img/s); the slowest is {slowest['stage']} "
            f"({slowest['img_per_s']:.0f} img/s)"
        )
    for note in report["notes"]:
        print(f"note: {note}")
    check = report["check"]
    word = "PASS" if check["passed"] else "FAIL"
    print(
        f"check stages' pieces give what Localizer.launch_batch gives (classes equal: "
        f"{check['same_classes']}, upsampled CAMs max |diff| {check['max_abs_diff']:.2g}): {word}"
    )


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]  # fmt: skip
        print("  ".join(cells).rstrip())


# ---------------------------------------------------------------------------------------------
# Host syncs


def host_syncs(loaded, sources, paths, truth, args, device) -> dict:
    from sync_count import count_syncs

    from cam_cli.api import write_boxes
    from cam_cli.boxes.backends import resolve_box_backend
    from cam_cli.data.ground_truth import GroundTruth
    from cam_cli.eval_options import EvalOptions, MetricOptions, SourceOptions
    from cam_cli.evaluation.evaluate import evaluate as evaluate_options
    from cam_cli.inference.localizer import Localizer
    from cam_cli.settings import RunOptions

    bs = args.batch_size
    steps, _ = device_steps(device)
    chosen = resolve_box_backend(args.box_step, device)
    out: dict = {"bbox": {}, "eval": None, "box_backend": chosen}
    with open(os.devnull, "w") as devnull:
        for step in dict.fromkeys([chosen, *steps]):  # the run's step first, then the others
            localizer = Localizer(loaded, topk=args.topk, device=args.device, fast=args.fast,
                                  box_backend=step, batch_size=bs, progress=False)  # fmt: skip
            try:
                write_boxes(localizer, paths[:bs], output=devnull)  # warm-up: kernels, probes
                batches = math.ceil(len(paths) / localizer.batch_for_memory(bs))
                report = count_syncs(lambda loc=localizer: write_boxes(loc, paths, output=devnull))
                out["bbox"][step] = {
                    "resolved": localizer.box_backend,
                    "decode": localizer.decode,
                    **report.as_dict(batches),
                }
            finally:
                localizer.close()
    stems = {Path(p).stem: p for p in sources if Path(p).stem in truth}
    run = RunOptions(device=args.device, batch_size=bs, box_backend=args.box_step, fast=args.fast,
                     progress=False)  # fmt: skip

    def evaluate(chosen: dict) -> None:
        evaluate_options(
            EvalOptions(
                truth=GroundTruth({s: truth[s] for s in chosen}, chosen),
                source=SourceOptions(model=loaded, run=run),
                metrics=MetricOptions(maxboxacc=True, maxboxacc_protocol="cam-cli"),
            )
        )

    if stems:
        evaluate(dict(list(stems.items())[:bs]))  # warm-up: the sweep's kernels
        report = count_syncs(lambda: evaluate(stems))
        out["eval"] = report.as_dict(math.ceil(len(stems) / bs))
    return out


def print_syncs(report: dict | None, args, device: torch.device, why: str | None = None) -> None:
    bbox_name = f"bbox (api.write_boxes, box step {args.box_step})"
    eval_name = f"eval --maxboxacc --maxboxacc-protocol cam-cli (box step {args.box_step})"
    if report is None:
        print(f"target host syncs per batch, {bbox_name} <= {BBOX_SYNCS}: NOT MEASURED ({why})")
        print(f"target host syncs per batch, {eval_name} <= {EVAL_SYNCS}: NOT MEASURED ({why})")
        return
    for step, counts in report["bbox"].items():
        _print_counts(f"bbox, box step {step} ({counts['resolved']}, decode {counts['decode']})",
                      counts)  # fmt: skip
    if report["eval"] is not None:
        _print_counts("eval --maxboxacc cam-cli", report["eval"])
    main = report["bbox"][report["box_backend"]]
    word = "PASS" if main["per_batch"] <= BBOX_SYNCS else "FAIL"
    print(f"target host syncs per batch, {bbox_name} <= {BBOX_SYNCS}: {main['per_batch']:.2f} "
          f"over {main['batches']} batches  {word}")  # fmt: skip
    if report["eval"] is None:
        print(f"target host syncs per batch, {eval_name} <= {EVAL_SYNCS}: NOT MEASURED "
              "(no annotated image)")  # fmt: skip
        return
    per_batch = report["eval"]["per_batch"]
    word = "PASS" if per_batch <= EVAL_SYNCS else "FAIL"
    print(f"target host syncs per batch, {eval_name} <= {EVAL_SYNCS}: {per_batch:.2f} over "
          f"{report['eval']['batches']} batches  {word}")  # fmt: skip


def _print_counts(name: str, counts: dict) -> None:
    threads = ", ".join(f"{t} {n}" for t, n in sorted(counts["by_thread"].items()))
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(counts["kinds"].items()))
    print(
        f"host syncs, {name}: {counts['per_batch']:.2f} per batch ({counts['in_loop']} in "
        f"{counts['batches']} batches; {counts['setup']} in set-up); by thread: {threads}; "
        f"by kind: {kinds}"
    )
    for site, count in counts["top_sites"][:6]:
        print(f"    {count:5d}  {site}")


# ---------------------------------------------------------------------------------------------
# Profiler trace


def profile_trace(loaded, paths, args, device, out_dir: Path) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from cam_cli.api import write_boxes
    from cam_cli.inference.localizer import Localizer

    bs = args.batch_size
    localizer = Localizer(loaded, topk=args.topk, device=args.device, fast=args.fast,
                          box_backend=args.box_step, batch_size=bs, progress=False)  # fmt: skip
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with open(os.devnull, "w") as devnull:
        try:
            write_boxes(localizer, paths[:bs], output=devnull)  # warm-up
            with profile(activities=activities, experimental_config=_profiler_config()) as prof:
                write_boxes(localizer, paths[: 3 * bs], output=devnull)
                _sync(device)
        finally:
            localizer.close()
    trace = out_dir / "trace-bbox-3-batches.json"
    prof.export_chrome_trace(str(trace))
    if trace.stat().st_size > GZIP_OVER_BYTES:  # what comes back from the device is bounded
        packed = trace.with_suffix(".json.gz")
        with open(trace, "rb") as source, gzip.open(packed, "wb", compresslevel=6) as target:
            target.write(source.read())
        trace.unlink()
        trace = packed
    averages = prof.key_averages()
    table = None
    keys = ("device_time_total", "cuda_time_total") if device.type == "cuda" else ()
    for key in (*keys, "cpu_time_total"):
        try:
            table = averages.table(sort_by=key, row_limit=25)
            break
        except (AttributeError, KeyError, ValueError):
            continue
    top = out_dir / "profile-top25.txt"
    top.write_text(f"3 batches of {bs}, api.write_boxes, box step {args.box_step}\n{table}\n")
    return {"trace": str(trace), "trace_bytes": trace.stat().st_size, "table": str(top)}


def _profiler_config():
    """Every thread's ops (the decode and box threads, the CPU lanes), and on CUDA the host's
    waits as events of their own, where this torch has those options (2.x: some do not)."""
    from torch._C._profiler import _ExperimentalConfig

    for wanted in (
        {"profile_all_threads": True, "enable_cuda_sync_events": True},
        {"enable_cuda_sync_events": True},
        {},
    ):
        try:
            return _ExperimentalConfig(**wanted)
        except TypeError:
            continue
    return None


# ---------------------------------------------------------------------------------------------
# PIL against device decoding


def compare_decoders(loaded, folders: dict[str, list[str]], args, device) -> dict:
    from decode_compare import decode_rate, image_sizes, pixel_differences, result_differences

    from cam_cli.data.decode import resolve_decode
    from cam_cli.errors import SetupError

    try:
        resolve_decode("device", device)
    except SetupError as error:
        return {"error": str(error)}
    bs, size = args.batch_size, loaded.input_size
    run_fields = {"topk": args.topk, "device": args.device, "fast": args.fast,
                  "box_backend": args.box_step, "batch_size": bs}  # fmt: skip
    out: dict = {}
    for name, files in folders.items():
        chosen = files[: args.compare_images] if args.compare_images else files
        out[name] = {
            "sizes": image_sizes(files),
            "pixels": pixel_differences(chosen, size, device, bs),
            "results": result_differences(loaded, chosen, run_fields),
        }
    with tempfile.TemporaryDirectory(prefix="device_stages_decode_") as tmp:
        for name, files in folders.items():
            many, _ = replicate(files, args.decode_images, Path(tmp) / name)
            out[name]["rates"] = [
                decode_rate(many, size, device, mode, bs, _workers(device))
                for mode in ("pil", "device")
            ]
    return out


def print_decoders(report: dict) -> None:
    if "error" in report:
        print(f"decode comparison: NOT MEASURED ({report['error']})")
        return
    header = ["files", "sizes", "compared", "on device", "pixels max|d|", "mean|d|",
              "img differ", ">2 levels", "top-1 class", "top-1 box", "any box",
              "score max|d|"]  # fmt: skip
    rows = []
    for name, part in report.items():
        p, r = part["pixels"], part["results"]
        rows.append([name, part["sizes"], p["images"], p["decoded_on_device"], p["max_abs"],
                     f"{p['mean_abs']:.4f}", p["images_differing"], p["images_over_2"],
                     r["top1_class_differs"], r["top1_box_differs"], r["any_box_differs"],
                     f"{r['max_score_diff_same_class']:.2g}"])  # fmt: skip
    print("--decode pil vs --decode device (network input pixels; images whose results differ)")
    _print_table(header, rows)
    header = ["files", "decode", "images", "workers", "first batch s", "img/s (steady)",
              "img/s (with start-up)"]  # fmt: skip
    rows = []
    for name, part in report.items():
        for rate in part["rates"]:
            rows.append([name, rate["mode"], rate["images"], rate["workers"],
                         _fmt(rate["first_batch_s"], ".2f"), _fmt(rate["img_per_s"], ".0f"),
                         _fmt(rate["img_per_s_overall"], ".0f")])  # fmt: skip
    print("decode rates: JPEG files -> uint8 batches on the device, as Localizer._run loads them")
    _print_table(header, rows)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    from cam_cli.data.annotations import read_annotations
    from cam_cli.data.images import list_images
    from cam_cli.models.loading import load_model
    from cam_cli.runtime.device import resolve_device

    device = resolve_device(args.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    args.batch_size = args.batch_size or (256 if device.type == "cuda" else 32)
    args.decode_images = args.decode_images or 4 * args.batch_size
    if args.weights is None and args.arch == "mobilenet_v2" and MOBILENET_WEIGHTS.is_file():
        args.weights = str(MOBILENET_WEIGHTS)
    args.out.mkdir(parents=True, exist_ok=True)
    parts = [p for p in PARTS if p in args.parts.split(",")]
    loaded = load_model(arch=args.arch, weights=args.weights, classes_file=args.classes)
    sources = [str(p) for p in list_images(args.images)]
    if not sources:
        raise SystemExit(f"device_stages.py: {args.images}: no images")
    truth = read_annotations(args.annotations) if args.annotations.exists() else {}
    val500 = [str(p) for p in list_images(args.val500)] if args.val500.is_dir() else []
    print(
        f"device_stages: {device}"
        f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
        f"torch {torch.__version__}; {args.arch}, top-{args.topk}, batch {args.batch_size}, "
        f"box step {args.box_step}; {len(sources)} files in {args.images}"
        f"{f', {len(val500)} in {args.val500}' if val500 else ''}; parts {','.join(parts)}"
    )
    results: dict = {"config": {k: str(v) if isinstance(v, Path) else v
                                for k, v in vars(args).items()}}  # fmt: skip

    def time_left() -> float:
        if args.time_limit is None:
            return math.inf
        return args.time_limit - (time.monotonic() - started)

    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="device_stages_") as tmp:
        count = (args.batches + 1) * args.batch_size
        paths, _ = replicate(sources, count, Path(tmp) / "replicated")
        for part in parts:
            left = time_left()
            minimum = MIN_PART_S[part] if device.type == "cuda" else 1
            if left < minimum:
                print(f"== {part}: SKIPPED ({left:.0f} s left of --time-limit)")
                if part == "syncs":
                    print_syncs(None, args, device, "skipped: --time-limit")
                results[part] = {"skipped": "--time-limit"}
                continue
            t0 = time.monotonic()
            print(f"== {part}", flush=True)
            try:
                results[part] = run_part(part, loaded, sources, val500, paths, truth, args, device)
            except Exception as error:  # noqa: BLE001 - one part's failure: say it, go on
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
                print(f"== {part}: ERROR {type(error).__name__}: {reason}")
                traceback.print_exc()
                if part == "syncs":
                    print_syncs(None, args, device, f"error: {reason}")
                results[part] = {"error": f"{type(error).__name__}: {reason}"}
                failed.append(part)
            print(f"== {part}: {time.monotonic() - t0:.1f} s", flush=True)
            (args.out / "stages.json").write_text(json.dumps(results, indent=1, default=str))
    if device.type == "cuda":
        print(f"GPU memory peak: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    print(f"device_stages: {time.monotonic() - started:.0f} s; figures in {args.out}/stages.json")
    if failed:
        print(f"device_stages: {', '.join(failed)} stopped on an error (see above)")
    return 1 if failed else 0


def run_part(part: str, loaded, sources, val500, paths, truth, args, device) -> dict:
    """One part, its table printed; what it measured."""
    if part == "stages":
        report = time_stages(loaded, sources, paths, truth, args, device)
        print_stages(report, device)
    elif part == "syncs":
        if device.type != "cuda":
            print_syncs(None, args, device, "CUDA only: set_sync_debug_mode")
            return {"skipped": "CUDA only"}
        report = host_syncs(loaded, sources, paths, truth, args, device)
        print_syncs(report, args, device)
    elif part == "trace":
        report = profile_trace(loaded, paths, args, device, args.out)
        print(f"profiler: trace {report['trace']} ({report['trace_bytes'] / 2**20:.1f} MiB), "
              f"top 25 in {report['table']}")  # fmt: skip
    else:  # decode
        folders = {"sample": sources}
        if val500:
            folders["val500"] = val500
        else:
            print(f"note: {args.val500}: no images "
                  "(scripts/device_checks/prepare_device_data.sh makes them); "
                  "decode measured on the sample only")  # fmt: skip
        report = compare_decoders(loaded, folders, args, device)
        print_decoders(report)
    return report


if __name__ == "__main__":
    sys.exit(main())
