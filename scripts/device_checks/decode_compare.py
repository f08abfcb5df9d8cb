"""``--decode pil`` against ``--decode device``, image by image, and the decode rates of both
(`scripts/device_checks/device_stages.py`): what the device decoder changes in the network's
input, whether that moves a class or a box, and whether decoding keeps up with the network.

Only library pieces run here (the datasets, `collate_images`, `decode_pending`,
`decode_batches`, `threads.decoded_beside`, `Localizer.localize`), as the pipeline runs them.
"""

from __future__ import annotations

import time
from functools import partial

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pixel_differences(paths: list[str], size: int, device: torch.device, batch_size: int) -> dict:
    """Network input pixels (uint8, ``size`` x ``size``) of both decoders: the largest and the
    mean absolute difference, and how many images differ at all / by more than 2 levels."""
    from cam_cli.data.batches import ImageListDataset, collate_images
    from cam_cli.data.decode import JpegRoutingDataset, decode_pending

    pil = ImageListDataset(list(paths), size)
    routed = JpegRoutingDataset(list(paths), size)
    largest, total, values, differ, over_two, on_device = 0, 0.0, 0, 0, 0, 0
    for start in range(0, len(paths), batch_size):
        chunk = range(start, min(start + batch_size, len(paths)))
        batch = collate_images([routed[i] for i in chunk])
        on_device += 0 if batch.pending is None else len(batch.pending.items)
        done = decode_pending(batch, device, size, routed.max_pixels)
        reference = collate_images([pil[i] for i in chunk])
        by_index = {item.index: row for row, item in enumerate(reference.items)}
        both = [k for k, item in enumerate(done.items) if item.index in by_index]
        rows = [by_index[done.items[k].index] for k in both]
        a = done.pixels[both].cpu().to(torch.int16)
        b = reference.pixels[rows].to(torch.int16)
        diff = (a - b).abs()
        per_image = diff.flatten(1).amax(dim=1)
        largest = max(largest, int(per_image.max()) if len(per_image) else 0)
        total += float(diff.sum(dtype=torch.float64))
        values += diff.numel()
        differ += int((per_image > 0).sum())
        over_two += int((per_image > 2).sum())
    return {
        "images": len(paths),
        "decoded_on_device": on_device,
        "max_abs": largest,
        "mean_abs": total / max(1, values),
        "images_differing": differ,
        "images_over_2": over_two,
    }


def result_differences(loaded, paths: list[str], run_fields: dict) -> dict:
    """`Localizer.localize` with ``decode="pil"`` and with ``decode="device"``: how many
    images get another top-1 class, another top-1 box, another box at any rank; the largest
    score difference."""
    from cam_cli.inference.localizer import Localizer

    records = {}
    for mode in ("pil", "device"):
        localizer = Localizer(loaded, decode=mode, progress=False, **run_fields)
        try:
            records[mode] = [r.as_record() for r in localizer.localize(paths)]
        finally:
            localizer.close()
    top1_class = top1_box = any_box = failed = 0
    score = 0.0
    for a, b in zip(records["pil"], records["device"], strict=True):
        if "predictions" not in a or "predictions" not in b:
            failed += 1
            continue
        pa, pb = a["predictions"], b["predictions"]
        top1_class += pa[0]["class_index"] != pb[0]["class_index"]
        top1_box += pa[0]["box"] != pb[0]["box"]
        any_box += any(x["box"] != y["box"] for x, y in zip(pa, pb, strict=True))
        same = [
            abs(x["score"] - y["score"])
            for x, y in zip(pa, pb, strict=True)
            if x["class_index"] == y["class_index"]
        ]
        score = max([score, *same])
    return {
        "images": len(paths),
        "top1_class_differs": top1_class,
        "top1_box_differs": top1_box,
        "any_box_differs": any_box,
        "max_score_diff_same_class": score,
        "failed": failed,
    }


def decode_rate(
    paths: list[str], size: int, device: torch.device, mode: str, batch_size: int, workers: int
) -> dict:
    """JPEG files -> uint8 batches on ``device`` the way `Localizer._run` loads them
    (DataLoader workers, pinned memory; on CUDA device decoding in a thread and on a stream of
    its own). img/s of the steady part (after the first batch) and when the first batch came
    (the workers' start-up)."""
    from torch.utils.data import DataLoader

    from cam_cli.data.batches import ImageListDataset, collate_images
    from cam_cli.data.decode import JpegRoutingDataset, decode_batches
    from cam_cli.inference.threads import decoded_beside, prefetched
    from cam_cli.runtime.streams import to_device

    on_device = mode == "device"
    dataset = (JpegRoutingDataset if on_device else ImageListDataset)(list(paths), size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_images,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
    start = time.perf_counter()
    batches = loader if workers > 0 else prefetched(loader, depth=2)
    if on_device:
        decode = partial(decode_batches, device=device, size=size, max_pixels=dataset.max_pixels)
        if device.type == "cuda":
            batches = decoded_beside(batches, decode, device)
        else:
            batches = decode(batches)
    count, first_at, first_count = 0, None, 0
    for batch in batches:
        to_device(batch.pixels, device)  # the PIL path's copy, as launch_batch makes it
        count += len(batch.items)
        if first_at is None:
            _sync(device)
            first_at, first_count = time.perf_counter(), count
    _sync(device)
    end = time.perf_counter()
    steady = count - first_count
    return {
        "mode": mode,
        "images": count,
        "workers": workers,
        "first_batch_s": None if first_at is None else first_at - start,
        "total_s": end - start,
        "img_per_s": steady / (end - first_at) if steady and end > first_at else None,
        "img_per_s_overall": count / (end - start) if end > start else None,
    }


def image_sizes(paths: list[str]) -> str:
    """``227x227`` or ``500x375 (325), 375x500 (109)``: the sizes of a folder's files."""
    from PIL import Image

    counts: dict[str, int] = {}
    for path in paths:
        with Image.open(path) as image:
            key = f"{image.width}x{image.height}"
        counts[key] = counts.get(key, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    if len(ranked) == 1:
        return ranked[0][0]
    shown = ", ".join(f"{k} ({v})" for k, v in ranked[:3])
    return shown + (", ..." if len(ranked) > 3 else "")
