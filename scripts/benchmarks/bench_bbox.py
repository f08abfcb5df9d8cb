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
            `Localizer` and ``RunOptions(device, batch_size, workers, box_backend)``, top-k
            (``--box-step``, default auto; the eval and the RSS check's CLI take it too).
  eval      (``--eval [ARCHS]``) what `cam-cli eval --maxboxacc` runs
            (`evaluation.evaluate.evaluate_model`, its Localizer set-up included) over the
            annotated sample files themselves (``--eval-images``), minus model and annotation
            loading.
Every pass is timed between two ``torch.cuda.synchronize()``; each variant reports its host
peak RSS and its GPU memory peak (``torch.cuda.max_memory_allocated``, its own process, reset
at its start). Then the ratios pipeline / min(forward, decode) and pipeline / forward, and the
project's speed bounds as PASS/FAIL lines (N/A, with the figure, when the run is not under the
targets' conditions: CUDA, top-5, batch 256, bf16). ``--replicate-to N`` makes N distinct files
(hard links, or symlinks across file systems) from the sample in a temp dir. ``--rss-check``
with ``--device`` runs the real CLI through a wrapper that also reads its GPU memory peak.
``--time-limit S`` skips what would start after S seconds and stops a variant still running.

Examples (from the repository root):

  .venv/bin/pip install -e ".[bench]"        # torchcam, grad-cam, psutil
  .venv/bin/python scripts/benchmarks/bench_bbox.py --arch mobilenet_v2 --num-images 256 --rounds 2
  .venv/bin/python scripts/benchmarks/bench_bbox.py --arch googlenet --variants a,b,c,d,e --json
  .venv/bin/python scripts/benchmarks/bench_bbox.py --rss-only --fast
  python3 scripts/benchmarks/bench_bbox.py --device cuda \
      --archs mobilenet_v2,googlenet,resnet50,vgg16-gap --replicate-to 4330 --eval mobilenet_v2 \
      --rss-check
  .venv/bin/python scripts/benchmarks/bench_bbox.py --device cpu --archs mobilenet_v2,googlenet \
      --replicate-to 48 --batch-size 8 --repeats 1

Timings on a shared machine are noisy: repeat, and compare medians.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench_bbox_cpu import child_main, cpu_main
from bench_bbox_gpu import DEVICE_VARIANTS, device_child_main, device_main
from bench_harness import DEFAULT_IMAGES, cli_child_main


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
    parser.add_argument(
        "--box-step",
        default="auto",
        choices=["auto", "scipy", "torch", "triton"],
        help="with --device: where the pipeline, eval and the RSS check's CLI make boxes "
        "(RunOptions.box_backend; default auto: triton, else torch, on CUDA; scipy on the CPU)",
    )
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
    return cpu_main(args)


if __name__ == "__main__":
    sys.exit(main())
