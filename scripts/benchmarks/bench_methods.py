"""Batched Grad-CAM top-5 boxes (`cam_cli.cam.methods`) against what a user builds from
pytorch-grad-cam today, on the same images, network and layer, alternated in one run.

  ours  ``make_method("gradcam", model)(images, 5)``: one forward per batch, one backward per
        rank from the layer to the logits only; maps scaled as pytorch-grad-cam scales them,
        upsampled to the input (`cam.maps.upsample_cams`), cam-cli's batched paper boxes
        (`boxes.components.boxes_from_cams`: largest 8-connected component of map > 0.2 max).
  peer  pytorch-grad-cam 1.5.7 ``GradCAM`` called once per rank (5 calls per batch, each a full
        forward + backward), its maps already resized to the input, then scikit-image per map:
        ``label(map > 0.2 * max, connectivity=2)`` + ``regionprops``, the largest region's box.

Both start from the same preprocessed batches in memory (decoding is the same for both and left
out). The two alternate ``--rounds`` times over ``--num-images`` images; the median rate of each
is printed with the machine's load average, then whether the boxes agree (identical boxes, and
the mean IoU of those that are not). Needs ../shared (the sample and the MobileNetV2 weights),
grad-cam and scikit-image (``pip install "cam-cli[bench]"``).

    python scripts/benchmarks/bench_methods.py --num-images 128 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO.parent / "shared" / "data" / "ilsvrc2012-val-sample" / "val"
WEIGHTS = REPO.parent / "shared" / "weights" / "mobilenet_v2-imagenet.pth"
TOPK = 5


def load_batches(count: int, batch: int, size: int) -> list[torch.Tensor]:
    from PIL import Image

    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    files = sorted(SAMPLE.glob("*.JPEG"))[:count]
    images = []
    for file in files:
        image = Image.open(file).convert("RGB").resize((size, size), Image.BILINEAR)
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
        images.append((pixels - mean) / std)
    stacked = torch.stack(images)
    return list(stacked.split(batch))


def ours(method, batches: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    from cam_cli.boxes.components import boxes_from_cams
    from cam_cli.cam.maps import top_classes, upsample_cams
    from cam_cli.cam.methods import minmax

    classes, boxes = [], []
    for images in batches:
        logits, maps = method(images, TOPK)
        scaled = upsample_cams(minmax(minmax(maps)), tuple(images.shape[-2:]))
        flat = scaled.flatten(0, 1).numpy()
        boxes.append(boxes_from_cams(flat).reshape(len(images), TOPK, 4))
        classes.append(top_classes(logits, TOPK)[1].numpy())
    return np.concatenate(classes), np.concatenate(boxes)


def skimage_box(heatmap: np.ndarray) -> list[int]:
    from skimage.measure import label, regionprops

    regions = regionprops(label(heatmap > 0.2 * heatmap.max(), connectivity=2))
    if not regions:
        return [0, 0, heatmap.shape[1] - 1, heatmap.shape[0] - 1]
    top, left, bottom, right = max(regions, key=lambda region: region.area).bbox
    return [left, top, right - 1, bottom - 1]


def peer(network, layer, batches: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    classes, boxes = [], []
    for images in batches:
        with torch.no_grad():
            top = network(images).topk(TOPK, dim=1).indices
        per_rank = []
        for rank in range(TOPK):
            targets = [ClassifierOutputTarget(int(c)) for c in top[:, rank]]
            with GradCAM(network, [layer]) as cam:
                maps = cam(images, targets)
            per_rank.append([skimage_box(m) for m in maps])
        boxes.append(np.array(per_rank).transpose(1, 0, 2))
        classes.append(top.numpy())
    return np.concatenate(classes), np.concatenate(boxes)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lo = np.maximum(a[..., :2], b[..., :2])
    hi = np.minimum(a[..., 2:], b[..., 2:])
    inter = np.clip(hi - lo + 1, 0, None).prod(-1)
    area = lambda box: (box[..., 2:] - box[..., :2] + 1).prod(-1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    if not SAMPLE.is_dir() or not WEIGHTS.is_file():
        print(f"needs {SAMPLE} and {WEIGHTS} (../shared)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from cam_cli.cam.methods import make_method
    from cam_cli.models.registry import build_model
    from cam_cli.models.weights import read_state_file

    model = build_model("mobilenet_v2").eval()
    model.load_weights(read_state_file(WEIGHTS))
    method = make_method("gradcam", model)
    batches = load_batches(args.num_images, args.batch_size, args.size)
    count = sum(len(b) for b in batches)
    print(
        f"mobilenet_v2 (ImageNet), layer {method.layer.name}, {count} images of the sample, "
        f"batch {args.batch_size}, top-{TOPK}, torch threads {torch.get_num_threads()}",
        file=sys.stderr,
    )
    rates: dict[str, list[float]] = {"ours": [], "peer": []}
    results = {}
    for round_index in range(args.rounds):
        order = ("ours", "peer") if round_index % 2 == 0 else ("peer", "ours")
        for name in order:
            load = os.getloadavg()[0]
            start = time.perf_counter()
            if name == "ours":
                results[name] = ours(method, batches)
            else:
                results[name] = peer(model.net, method.layer.module, batches)
            seconds = time.perf_counter() - start
            rates[name].append(count / seconds)
            print(
                f"round {round_index + 1} {name:4s}: {count / seconds:7.2f} images/s "
                f"({seconds:.1f} s, load average before {load:.2f})",
                file=sys.stderr,
            )
    ours_rate, peer_rate = (statistics.median(rates[n]) for n in ("ours", "peer"))
    print(f"ours: {ours_rate:.2f} images/s   peer: {peer_rate:.2f} images/s   "
          f"speed-up: {ours_rate / peer_rate:.2f}x   load average now: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")  # fmt: skip
    (our_classes, our_boxes), (peer_classes, peer_boxes) = results["ours"], results["peer"]
    same_classes = (our_classes == peer_classes).mean()
    same = (our_boxes == peer_boxes).all(-1)
    overlaps = iou(our_boxes, peer_boxes)
    print(
        f"classes agree: {same_classes:.1%}; boxes identical: {same.mean():.1%} of "
        f"{same.size}; IoU of the others: mean {overlaps[~same].mean() if (~same).any() else 1:.3f}"
        f", min {overlaps.min():.3f}; IoU >= 0.5: {(overlaps >= 0.5).mean():.1%}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
