"""ONNX Runtime against PyTorch on real images: logits, CAMs and `bbox`'s boxes.

For each model: export it (`cam-cli export`'s library call), then on every image
- logits and every class's CAM from ONNX Runtime and from the PyTorch network (fp32), the
  largest difference relative to each image's logit range and to each map's range;
- the top-k boxes as `bbox` makes them (paper rule, the model's threshold), PyTorch against
  ``--onnx``: how many (image, rank) pairs are identical; each difference is explained, or not,
  by a threshold tie: every pixel whose side of ``threshold * max`` differs between the two
  upsampled maps lies within ``--tie`` (relative to the map's range) of that threshold, and a
  class whose rank differs had a softmax score within ``--tie`` of its neighbour's.

    python scripts/tools/check_onnx.py --images ../shared/data/ilsvrc2012-val-sample/val \\
        --classes ../shared/data/ilsvrc2012-val-sample/LOC_synset_mapping.txt \\
        --mobilenet-weights ../shared/weights/mobilenet_v2-imagenet.pth [--checkpoint best.pt]

Prints one JSON object per model on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from cam_cli.boxes.components import threshold_masks
from cam_cli.cam.maps import upsample_cams
from cam_cli.data.images import find_images, load_resized
from cam_cli.inference.localizer import Localizer
from cam_cli.models.loading import load_model
from cam_cli.models.onnx_export import export_onnx
from cam_cli.models.onnx_runtime import OnnxNetwork
from cam_cli.settings import CamOptions, ModelOptions, RunOptions


def torch_outputs(loaded, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 logits and every class's CAM, as `compute_cams` makes them, from the network."""
    with torch.inference_mode():
        logits, features = loaded.model(loaded.preprocessing.apply(pixels))
        weight, _ = loaded.model.class_weights()
        if weight is None:
            return logits, features
        return logits, torch.einsum("ck,bkhw->bchw", weight, features)


def relative_errors(reference: torch.Tensor, other: torch.Tensor, dims) -> torch.Tensor:
    """max |a - b| over ``dims`` divided by the range of ``reference`` there."""
    span = reference.amax(dim=dims) - reference.amin(dim=dims)
    return (reference - other).abs().amax(dim=dims) / span.clamp_min(1e-12)


def compare_outputs(torch_model, onnx_model, paths: list[str], batch: int = 16) -> dict:
    worst_logit, worst_cam, maps = 0.0, 0.0, 0
    size = torch_model.input_size
    for start in range(0, len(paths), batch):
        pixels = torch.from_numpy(
            np.stack([load_resized(p, size)[0] for p in paths[start : start + batch]])
        )
        logits, cams = torch_outputs(torch_model, pixels)
        with torch.inference_mode():
            onnx_logits, onnx_cams = onnx_model.model(onnx_model.preprocessing.apply(pixels))
        worst_logit = max(worst_logit, relative_errors(logits, onnx_logits, (1,)).max().item())
        worst_cam = max(worst_cam, relative_errors(cams, onnx_cams, (2, 3)).max().item())
        maps += cams.shape[0] * cams.shape[1]
    return {"max_logit_error_rel": worst_logit, "max_cam_error_rel": worst_cam, "maps": maps}


def upsampled_map(loaded, path: str, class_index: int, size: int) -> np.ndarray:
    """One class's map at the input size, as the run upsamples it (the network's own path)."""
    pixels = torch.from_numpy(load_resized(path, size)[0][None])
    with torch.inference_mode():
        if isinstance(loaded.model, OnnxNetwork):
            _, cams = loaded.model(loaded.preprocessing.apply(pixels))
        else:
            _, cams = torch_outputs(loaded, pixels)
    return upsample_cams(cams[:, class_index : class_index + 1], (size, size))[0].numpy()


def tie_margin(torch_model, onnx_model, path: str, class_index: int, threshold: float) -> float:
    """The largest distance, relative to the map's range, between ``threshold * max`` and a
    pixel that is inside the mask of one map and outside the other's (0 if none differ)."""
    size = torch_model.input_size
    a = upsampled_map(torch_model, path, class_index, size)
    b = upsampled_map(onnx_model, path, class_index, size)
    differ = threshold_masks(a, threshold) != threshold_masks(b, threshold)
    if not differ.any():
        return 0.0
    level = threshold * a.max()
    return float(np.abs(a[differ] - level).max() / (a.max() - a.min()))


def compare_boxes(torch_model, onnx_model, paths: list[str], tie: float, topk: int) -> dict:
    run = RunOptions(device="cpu", fast=False, progress=False, workers=0)
    cam = CamOptions(topk=topk)
    ours = Localizer(torch_model, cam, run)
    theirs = Localizer(onnx_model, cam, run)
    threshold = ours.threshold
    pairs, identical, explained, unexplained = 0, 0, [], []
    for a, b in zip(ours.localize(paths), theirs.localize(paths), strict=True):
        for p, q in zip(a.predictions, b.predictions, strict=True):
            pairs += 1
            if (p.class_index, p.box) == (q.class_index, q.box):
                identical += 1
                continue
            record = {"path": Path(a.path).name, "rank": p.rank, "torch": [p.class_index, p.box],
                      "onnx": [q.class_index, q.box]}  # fmt: skip
            if p.class_index != q.class_index:
                record["score_gap"] = abs(p.score - q.score)
                (explained if record["score_gap"] <= tie else unexplained).append(record)
                continue
            record["tie_margin_rel"] = tie_margin(torch_model, onnx_model, a.path,
                                                  p.class_index, threshold)  # fmt: skip
            (explained if record["tie_margin_rel"] <= tie else unexplained).append(record)
    ours.close()
    theirs.close()
    return {"threshold": threshold, "boxes": pairs, "identical": identical,
            "ties": explained, "unexplained": unexplained}  # fmt: skip


def check(name: str, options: ModelOptions, paths: list[str], args, folder: Path) -> dict:
    output = folder / f"{name}.onnx"
    torch.manual_seed(0)  # random weights: the same in the export and in the reference
    summary = export_onnx(options, output)
    torch.manual_seed(0)
    torch_model = load_model(options)
    onnx_model = load_model(ModelOptions(onnx=output))
    report = {"model": name, "onnx_bytes": summary.bytes, "images": len(paths)}
    report |= compare_outputs(torch_model, onnx_model, paths)
    report |= compare_boxes(torch_model, onnx_model, paths, args.tie, args.topk)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--classes")
    parser.add_argument("--mobilenet-weights")
    parser.add_argument("--checkpoint", help="a `cam-cli train` checkpoint, checked too")
    parser.add_argument("--random", default="resnet50", help="an arch checked with random weights")
    parser.add_argument("--limit", type=int, default=0, help="the first N images only")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--tie", type=float, default=1e-4)
    args = parser.parse_args()
    paths = sorted(str(p) for p, problem in find_images([args.images]) if not problem)
    paths = paths[: args.limit] if args.limit else paths
    models = {}
    if args.mobilenet_weights:
        models["mobilenet_v2"] = ModelOptions(
            arch="mobilenet_v2", weights=args.mobilenet_weights, classes_file=args.classes
        )
    if args.random:
        models[f"{args.random}-random"] = ModelOptions(arch=args.random)
    if args.checkpoint:
        models["checkpoint"] = ModelOptions(checkpoint=args.checkpoint)
    failed = False
    with tempfile.TemporaryDirectory() as folder:
        for name, options in models.items():
            report = check(name, options, paths, args, Path(folder))
            failed |= bool(report["unexplained"]) or report["max_cam_error_rel"] > args.tie
            print(json.dumps(report), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
