"""How many bytes of memory the box backends and the MaxBoxAccV2 sweep read and write per batch.

The sizes counted: boxing 1,280 maps (256 images x top-5, 224x224) and a sweep of 256 images
x the 100 MaxBoxAccV2 thresholds; the bounds checked: 2 GB per boxing, 20 GB per sweep (the
torch path was measured at ~75 GB and ~885 GB). For each step of ``--steps``
(torch; triton where `boxes.backends.triton_problem` is None for the device, which on a CPU means
running with TRITON_INTERPRET=1) this runs the step once inside `traffic_count.TrafficCounter`
(every ATen op and every ``cam_cli::`` custom op, with the bytes of its tensors; the rule is in
that module) and reports:

  traffic   GB counted, ops, the ops that move the most, views/allocations apart; also the
            GB with only-written destinations (out=, copy_) counted once, not read + write;
  syncs     on CUDA the host syncs counted with torch.cuda.set_sync_debug_mode("warn"); on
            the CPU the ops that would sync on CUDA (nonzero, unique, equal, .item(), ...),
            an inference from op names, not a CUDA count;
  labelling the torch path's window-minimum passes (`component_roots`' third return);
  time      wall time per step (CUDA events on CUDA, perf_counter on the CPU; the median of
            ``--repeats`` runs after the counted one), the time the bytes take at 3.35 TB/s
            (H100 HBM3) and both as a share of ``--forward-ms`` (mobilenet_v2's bf16 forward of
            a 256-image batch on an H100).

Maps: real MobileNetV2 CAMs (the shared weights) of the sample's images, top-5 upsampled to
224x224 as `Localizer.launch_batch` makes them, tiled to ``--maps``; the sweep takes each
image's true-class CAM (an extra class, as `cam-cli eval` asks for it) against its real ground
truth in the CAM's grid. ``--family spiral|snake|maze|checkerboard`` takes adversarial masks
(times a left-to-right ramp, so the sweep's thresholds cut them) instead of CAMs, with the
same ground truth.

Smaller batches (``--maps N``, ``--sweep-images N``; the Triton interpreter is slow) are
counted as such and scaled linearly per map to the issue's sizes; every scaled figure is marked
"extrapolated". Lines starting with ``target `` give PASS/FAIL for the two targets per step,
NOT MEASURED when a step cannot run here (or ran without any ``cam_cli::`` op being seen, so
its kernels were invisible to the counter). Exit code 0 when every step ran (a FAIL is a
figure, not an error), 1 when one raised.

Examples (from the repository root, PYTHONPATH=. or an installed cam-cli):

  python scripts/benchmarks/bench_box_traffic.py --save runs/box_traffic.json
  python scripts/benchmarks/bench_box_traffic.py --sweep-images 64 --repeats 1
  TRITON_INTERPRET=1 python scripts/benchmarks/bench_box_traffic.py --steps triton --maps 40 \\
      --sweep-images 2 --repeats 1
  python scripts/benchmarks/bench_box_traffic.py --device cuda --family spiral
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from bench_harness import DEFAULT_ANNOTATIONS, DEFAULT_CLASSES, DEFAULT_IMAGES, MOBILENET_WEIGHTS
from traffic_count import GB, TrafficCounter, count_cuda_syncs

ISSUE_MAPS = 1280  # 256 images x top-5
ISSUE_SWEEP_IMAGES = 256
BOX_TARGET_GB = 2.0
SWEEP_TARGET_GB = 20.0
HBM_BYTES_PER_S = 3.35e12  # H100 SXM HBM3
MAP_SIZE = 224
FAMILIES = ("cam", "spiral", "snake", "maze", "checkerboard")
STEPS = ("torch", "triton")
DISTINCT_PATTERNS = 8  # maze seeds (the other families are one pattern, shifted)


# ---------------------------------------------------------------------------------------------
# Adversarial masks (the tests' generators need pytest; these are small stand-alone ones)


def spiral(size: int) -> np.ndarray:
    """A one-pixel-wide square spiral with one-pixel gaps: one component, as long as it gets."""
    mask = np.zeros((size, size), dtype=bool)
    y, x, dy, dx = 0, 0, 0, 1
    mask[y, x] = True

    def free(cy: int, cx: int) -> bool:
        return 0 <= cy < size and 0 <= cx < size and not mask[cy, cx]

    def room(cy: int, cx: int) -> bool:  # the cell after next is not on the spiral already
        return not (0 <= cy < size and 0 <= cx < size and mask[cy, cx])

    while True:
        for turn in range(2):
            if turn:
                dy, dx = dx, -dy  # turn right
            if free(y + dy, x + dx) and room(y + 2 * dy, x + 2 * dx):
                y, x = y + dy, x + dx
                mask[y, x] = True
                break
        else:
            return mask


def snake(size: int) -> np.ndarray:
    """Full rows on even lines, joined at alternate ends: one component, zigzagging."""
    mask = np.zeros((size, size), dtype=bool)
    mask[::2] = True
    for row in range(1, size, 2):
        mask[row, -1 if row % 4 == 1 else 0] = True
    return mask


def maze(size: int, seed: int) -> np.ndarray:
    """A random spanning-tree maze (depth-first), corridors one pixel wide: one component."""
    rng = np.random.default_rng(seed)
    cells = (size + 1) // 2
    mask = np.zeros((size, size), dtype=bool)
    seen = np.zeros((cells, cells), dtype=bool)
    stack = [(0, 0)]
    seen[0, 0] = mask[0, 0] = True
    while stack:
        cy, cx = stack[-1]
        steps = [
            (dy, dx)
            for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0))
            if 0 <= cy + dy < cells and 0 <= cx + dx < cells and not seen[cy + dy, cx + dx]
        ]
        if not steps:
            stack.pop()
            continue
        dy, dx = steps[rng.integers(len(steps))]
        ny, nx = cy + dy, cx + dx
        seen[ny, nx] = True
        mask[2 * ny, 2 * nx] = mask[2 * cy + dy, 2 * cx + dx] = True
        stack.append((ny, nx))
    return mask


def checkerboard(size: int) -> np.ndarray:
    """Every other pixel: one component through the diagonals alone (8-connectivity)."""
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy + xx) % 2 == 0


def family_maps(family: str, count: int, size: int = MAP_SIZE) -> np.ndarray:
    """``count`` float32 maps of a family: the mask times a ramp from 0.25 (left) to 1 (right),
    so the box step's 20%-of-max threshold keeps the whole mask and the sweep's cut it."""
    if family == "maze":
        patterns = [maze(size, seed) for seed in range(DISTINCT_PATTERNS)]
    else:
        one = {"spiral": spiral, "snake": snake, "checkerboard": checkerboard}[family](size)
        patterns = [np.rot90(one, k) for k in range(4)]  # a little variety, same difficulty
    ramp = np.linspace(0.25, 1.0, size, dtype=np.float32)[None, :]
    stack = np.stack([p * ramp for p in patterns]).astype(np.float32)
    return stack[np.arange(count) % len(stack)]


# ---------------------------------------------------------------------------------------------
# Real CAMs and ground truth of the sample


def sample_maps(args, device: torch.device) -> dict:
    """The sample's first ``--images`` images through MobileNetV2 as `Localizer.launch_batch`
    runs them: top-5 CAMs at 224x224 ``[N, 5, S, S]`` and the true class's ``[N, S, S]``, with
    each image's ground truth in that grid. With ``--family``, the images' ground truth only."""
    from cam_cli.api import Localizer, load_model
    from cam_cli.data.annotations import read_loc_solution_csv
    from cam_cli.data.batches import ImageListDataset, collate_images
    from cam_cli.data.images import list_images
    from cam_cli.data.matching import label_indices
    from cam_cli.evaluation.gt_boxes import gt_boxes_in_grid

    annotations = read_loc_solution_csv(args.annotations)
    paths = [str(p) for p in list_images(args.images_dir) if p.stem in annotations]
    paths = paths[: args.images]
    if not paths:
        raise SystemExit(f"bench_box_traffic.py: {args.images_dir}: no annotated images")
    loaded = load_model(arch="mobilenet_v2", weights=str(args.weights), classes_file=args.classes)
    index_of = label_indices(loaded.classes)
    localizer = Localizer(loaded, topk=5, device=str(device), fast=args.fast)
    dataset = ImageListDataset(paths, loaded.input_size)
    top5, true, gt = [], [], []
    batch_size = 32
    for start in range(0, len(paths), batch_size):
        batch = collate_images(
            [dataset[i] for i in range(start, min(start + batch_size, len(paths)))]
        )
        for item in batch.items:
            annotation = annotations[Path(item.path).stem]
            gt.append(gt_boxes_in_grid(annotation, item.width, item.height, (MAP_SIZE, MAP_SIZE)))
        if args.family != "cam":
            continue
        labels = [annotations[Path(i.path).stem].labels[0] for i in batch.items]
        extra = torch.tensor([[index_of(label)] for label in labels])
        out = localizer.launch_batch(batch, extra)
        top5.append(out.upsampled[:, :5].contiguous())
        true.append(out.upsampled[:, 5].contiguous())
    localizer.close()
    facts = {
        "images": len(gt),
        "precision": {torch.bfloat16: "bf16", torch.float16: "fp16"}[localizer.precision.dtype]
        if localizer.precision.enabled
        else "fp32",
    }
    if args.family != "cam":
        return {"gt": gt, **facts}
    return {"top5": torch.cat(top5), "true": torch.cat(true), "gt": gt, **facts}


def inputs(args, device: torch.device) -> dict:
    """Box maps ``[--maps, S, S]``, sweep maps ``[--sweep-images, S, S]`` and their padded
    ground truth, all on ``device``."""
    from cam_cli.evaluation.maxboxacc.sweep_torch import pad_gt_boxes

    sample = sample_maps(args, device)
    images = sample["images"]
    sweep_rows = np.arange(args.sweep_images) % images
    if args.family == "cam":
        box_maps = sample["top5"].flatten(0, 1)
        box_maps = box_maps[torch.arange(args.maps, device=device) % len(box_maps)]
        sweep_maps = sample["true"][torch.as_tensor(sweep_rows, device=device)]
    else:
        box_maps = torch.from_numpy(family_maps(args.family, args.maps)).to(device)
        sweep_maps = torch.from_numpy(family_maps(args.family, args.sweep_images)).to(device)
    gt_boxes, gt_valid = pad_gt_boxes([sample["gt"][i] for i in sweep_rows], device)
    return {
        "box_maps": box_maps.contiguous(),
        "sweep_maps": sweep_maps.contiguous(),
        "gt_boxes": gt_boxes,
        "gt_valid": gt_valid,
        "unique_images": images,
        "precision": sample["precision"],
    }


# ---------------------------------------------------------------------------------------------
# Measuring one step


@contextmanager
def labelling_iterations() -> Iterator[list[int]]:
    """The window-minimum passes of every `component_roots` call inside (the torch path),
    read from its third return; the module's function is put back afterwards."""
    from cam_cli.boxes import components_torch

    original = components_torch.component_roots
    passes: list[int] = []

    def watched(masks):
        at, roots, iterations = original(masks)
        passes.append(iterations)
        return at, roots, iterations

    components_torch.component_roots = watched
    try:
        yield passes
    finally:
        components_torch.component_roots = original


def _timed(run: Callable[[], object], device: torch.device, repeats: int) -> list[float]:
    """Seconds per run: between CUDA events on CUDA, perf_counter on the CPU."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            start_s = time.perf_counter()
            run()
            times.append(time.perf_counter() - start_s)
    return times


def measure(run: Callable[[], object], device: torch.device, repeats: int, scale: float) -> dict:
    """One counted run (also the warm-up: Triton compiles there), then ``repeats`` timed ones.
    ``scale``: issue size / counted size, for the extrapolated figures."""
    cuda = device.type == "cuda"
    with torch.inference_mode():
        syncs_counted = count_cuda_syncs() if cuda else nullcontext([])
        with syncs_counted as syncs:
            with labelling_iterations() as passes, TrafficCounter() as counter:
                run()
            if cuda:
                torch.cuda.synchronize(device)
        times = _timed(run, device, repeats)
    counted = counter.summary(top=12)
    wall_s = statistics.median(times)
    scaled_bytes = counted["bytes"] * scale
    return {
        **counted,
        "scale": scale,
        "extrapolated": scale != 1.0,
        "issue_size_gb": scaled_bytes / GB,
        "issue_size_write_once_gb": counted["write_once_gb"] * scale,
        "labelling_iterations": passes,
        "cuda_syncs": len(syncs) if cuda else None,
        "cuda_sync_messages": sorted(set(syncs))[:5] if cuda else None,
        "times_s": times,
        "wall_s": wall_s,
        "issue_size_wall_s": wall_s * scale,
        "hbm_s": scaled_bytes / HBM_BYTES_PER_S,
    }


def step_calls(step: str, data: dict, args) -> tuple[Callable, Callable]:
    """The box step and the sweep of ``step``, through `boxes.backends` (the one place that calls
    the implementations)."""
    from cam_cli.boxes.backends import device_boxes
    from cam_cli.evaluation.maxboxacc.metric import MaxBoxAccV2
    from cam_cli.evaluation.maxboxacc.sweeps import device_best_ious

    thresholds = MaxBoxAccV2().thresholds

    def boxes():
        return device_boxes(step, data["box_maps"], args.threshold)

    def sweep():
        return device_best_ious(
            step, data["sweep_maps"], data["gt_boxes"], data["gt_valid"], thresholds
        )

    return boxes, sweep


def run_step(step: str, data: dict, args, device: torch.device) -> dict:
    """Both measurements of one step, or why it was not measured."""
    from cam_cli.boxes.backends import triton_problem

    if step == "triton" and (problem := triton_problem(device)) is not None:
        return {"not_measured": problem}
    boxes, sweep = step_calls(step, data, args)
    result: dict = {}
    for name, call, scale, repeats in (
        ("box", boxes, ISSUE_MAPS / args.maps, args.repeats),
        ("sweep", sweep, ISSUE_SWEEP_IMAGES / args.sweep_images, args.sweep_repeats),
    ):
        if name == "sweep" and args.no_sweep:
            result[name] = {"not_measured": "--no-sweep"}
            continue
        print(f"{step} {name}: counting ...", file=sys.stderr, flush=True)
        try:
            result[name] = measure(call, device, repeats, scale)
        except Exception as error:  # noqa: BLE001 (reported, and the exit code says so)
            result[name] = {"error": f"{type(error).__name__}: {error}"}
        else:
            if step == "triton" and not result[name]["custom_ops"]:
                result[name]["not_measured"] = (
                    "no cam_cli:: custom op was seen: the kernels were invisible to the counter"
                )
    return result


# ---------------------------------------------------------------------------------------------
# Report


def _size(name: str, args) -> tuple[int, int, str]:
    if name == "box":
        return args.maps, ISSUE_MAPS, "maps"
    return args.sweep_images, ISSUE_SWEEP_IMAGES, "images"


def print_report(report: dict, args) -> None:
    print(f"box traffic on {report['device']} (torch {report['torch']}), maps: {report['maps']}")
    forward_ms = args.forward_ms
    for step, result in report["steps"].items():
        if "not_measured" in result:
            print(f"{step}: NOT MEASURED ({result['not_measured']})")
            continue
        for name, m in result.items():
            counted, issue, unit = _size(name, args)
            title = f"{step} {'box step' if name == 'box' else 'sweep'}"
            if "error" in m or "bytes" not in m:
                print(f"{title}: NOT MEASURED ({m.get('error') or m.get('not_measured')})")
                continue
            how = "extrapolated linearly per map" if m["extrapolated"] else "counted"
            print(
                f"{title}: {m['gb']:.3f} GB counted on {counted:,} {unit}; "
                f"{m['issue_size_gb']:.3f} GB per {issue:,} {unit} ({how}; "
                f"{m['issue_size_write_once_gb']:.3f} GB with only-written destinations once); "
                f"{m['ops']} ops ({m['distinct_ops']} distinct), views/allocations "
                f"{m['free_ops']} ops, {m['free_gb']:.3f} GB if counted"
            )
            for top in m["top"][:8]:
                print(f"    {top['op']:<40} x{top['count']:<5} {top['gb']:9.3f} GB")
            if m["custom_ops"]:
                each = ", ".join(f"{n} x{c}" for n, c in m["custom_ops"].items())
                print(f"  custom ops (interface bytes only): {each}")
            if m["labelling_iterations"]:
                it = m["labelling_iterations"]
                shown = f"{it[0]}" if len(it) == 1 else f"{min(it)}..{max(it)}"
                if len(it) > 1:
                    shown += f" (median {statistics.median(it)}) over {len(it)} calls"
                print(f"  labelling iterations: {shown}")
            syncs = ", ".join(f"{n} x{c}" for n, c in m["sync_ops"].items()) or "none"
            if m["cuda_syncs"] is not None:
                print(f"  host syncs (CUDA, counted): {m['cuda_syncs']}; sync ops: {syncs}")
            else:
                print(
                    f"  host syncs: {m['sync_ops_total']} inferred from ops (not a CUDA count): "
                    f"{syncs}"
                )
            wall_ms, hbm_ms = 1000 * m["issue_size_wall_s"], 1000 * m["hbm_s"]
            clock = "CUDA events" if report["device"].startswith("cuda") else "CPU perf_counter"
            wall = f"{1000 * m['wall_s']:.1f} ms on {counted:,} {unit} ({clock})"
            if m["extrapolated"]:
                wall += f", {wall_ms:.1f} ms per {issue:,} (extrapolated)"
            measured = f"measured {wall_ms / forward_ms:.1f}x"
            if not report["device"].startswith("cuda"):
                measured += ", a CPU wall time: not comparable"
            print(
                f"  time: {wall}; at 3.35 TB/s {hbm_ms:.2f} ms = {hbm_ms / forward_ms:.2f}x the "
                f"{forward_ms} ms forward ({measured})"
            )
            if step == "torch" and not report["device"].startswith("cuda"):
                print(
                    "  (on CUDA the labelling loop checks convergence every 2nd pass, not every"
                    " pass: half the `equal` calls, up to one pass more)"
                )
    for name, target, issue, unit in (
        ("box", BOX_TARGET_GB, ISSUE_MAPS, "maps"),
        ("sweep", SWEEP_TARGET_GB, ISSUE_SWEEP_IMAGES, "images"),
    ):
        for step, result in report["steps"].items():
            label = f"target {name} traffic <= {target:g} GB per {issue:,} {unit} [{step}]"
            m = result.get(name, {})
            why = result.get("not_measured") or m.get("not_measured") or m.get("error")
            if why:
                shown = f" ({m['issue_size_gb']:.3f} GB of ATen ops)" if "bytes" in m else ""
                print(f"{label}: NOT MEASURED ({why}){shown}")
                continue
            how = "extrapolated" if m["extrapolated"] else "counted"
            verdict = "PASS" if m["issue_size_gb"] <= target else "FAIL"
            print(f"{label}: {m['issue_size_gb']:.3f} GB ({how}): {verdict}")


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", default="torch,triton", help="comma list of torch, triton")
    parser.add_argument(
        "--family", choices=FAMILIES, default="cam", help="real CAMs (cam) or adversarial masks"
    )
    parser.add_argument(
        "--maps",
        type=int,
        default=ISSUE_MAPS,
        help=f"maps per box step counted (default {ISSUE_MAPS}; fewer: scaled)",
    )
    parser.add_argument(
        "--sweep-images",
        type=int,
        default=ISSUE_SWEEP_IMAGES,
        help=f"images per sweep counted (default {ISSUE_SWEEP_IMAGES}; fewer: scaled)",
    )
    parser.add_argument("--no-sweep", action="store_true", help="the box step only")
    parser.add_argument(
        "--images",
        type=int,
        default=256,
        help="distinct sample images to take CAMs from (tiled to --maps)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed box steps after the count")
    parser.add_argument("--sweep-repeats", type=int, default=1, help="timed sweeps")
    parser.add_argument("--threshold", type=float, default=0.2, help="the box step's threshold")
    parser.add_argument(
        "--forward-ms",
        type=float,
        default=11.7,
        help="forward time to compare with (mobilenet_v2 bf16 batch 256 H100)",
    )
    parser.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the Localizer's precision (default: cam-cli's for the device)",
    )
    parser.add_argument("--images-dir", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--annotations", type=Path, default=DEFAULT_ANNOTATIONS)
    parser.add_argument("--classes", type=Path, default=DEFAULT_CLASSES)
    parser.add_argument("--weights", type=Path, default=MOBILENET_WEIGHTS)
    parser.add_argument("--save", type=Path, default=None, help="every figure as JSON")
    args = parser.parse_args(argv)
    args.step_list = [s.strip() for s in args.steps.split(",") if s.strip()]
    if stray := [s for s in args.step_list if s not in STEPS]:
        parser.error(f"--steps: unknown {', '.join(stray)} (choose from {', '.join(STEPS)})")
    for name in ("maps", "sweep_images", "images", "repeats", "sweep_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    print("loading maps ...", file=sys.stderr, flush=True)
    data = inputs(args, device)
    maps = args.family
    if args.family == "cam":
        dtype = str(data["box_maps"].dtype).removeprefix("torch.")
        maps = (
            f"MobileNetV2 CAMs of {data['unique_images']} sample images "
            f"(forward {data['precision']}, maps {dtype})"
        )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    report = {
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "maps": maps,
        "counted": {"maps": args.maps, "sweep_images": args.sweep_images},
        "issue_sizes": {"maps": ISSUE_MAPS, "sweep_images": ISSUE_SWEEP_IMAGES},
        "targets_gb": {"box": BOX_TARGET_GB, "sweep": SWEEP_TARGET_GB},
        "hbm_bytes_per_s": HBM_BYTES_PER_S,
        "forward_ms": args.forward_ms,
        "threshold": args.threshold,
        "steps": {},
    }
    for step in args.step_list:
        report["steps"][step] = run_step(step, data, args, device)
    print_report(report, args)
    if args.save is not None:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(report, indent=1) + "\n")
        print(f"saved {args.save}", file=sys.stderr)
    failed = any(
        "error" in m for r in report["steps"].values() for m in r.values() if isinstance(m, dict)
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
