"""A frozen backbone's outputs as the training inputs: the split of a `CAMNet` into the fixed
part (run once per image and view, into a `FeatureCache`) and the head trained on its output.

What is cached depends on where the trainable layers start:

- ``trunk``: a net with a truncated ``trunk`` and added ``cam_conv`` layers (the paper's -gap
  nets): the trunk's maps ``[K, h, w]``; the head is the added convs, pooling and the linear.
- ``pooled-avg`` / ``pooled-max``: a net that ends in pooling + linear (mobilenet_v2, resnet...):
  only the linear layer trains and it sees nothing but the pooled vector, so the cache holds
  the pooled features ``[K]`` (GAP and GMP give different caches).

Epoch e reads view ``e % views``; view v of an image is the crop and flip epoch v of the image
path would draw (same generator seed), so with ``views >= epochs`` the cached run trains on
what the image run would, up to the storage precision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from cam_cli.data.batches import collate_images
from cam_cli.errors import TrainError
from cam_cli.files.lock import FolderLock
from cam_cli.models.camnet import CAMNet
from cam_cli.models.preprocess import Preprocessing
from cam_cli.runtime.distributed import Dist
from cam_cli.training.data import LabeledImages, TrainData
from cam_cli.training.feature_cache import (
    CacheLayout,
    FeatureCache,
    cache_key,
    data_listing_digest,
    tensors_digest,
)

if TYPE_CHECKING:  # the type only
    from cam_cli.training.config import TrainConfig

logger = logging.getLogger(__name__)

__all__ = ["CacheRequest", "CachedHead", "build_cache", "cache_kind", "cached_batches"]


def cache_kind(model: CAMNet) -> str:
    """What a frozen ``model`` caches: ``trunk``, ``pooled-avg`` or ``pooled-max``."""
    net = model.net
    if getattr(net, "trunk", None) is not None and hasattr(net, "trunk_features"):
        return "trunk"
    if model.classifier is None:
        raise TrainError("freeze_backbone needs a network with a linear classifier to train")
    return f"pooled-{model.pooling}"


class CachedHead(nn.Module):
    """The trainable part of ``model`` over cached inputs: ``forward(cached) -> (logits, maps)``
    (maps None for pooled inputs). Its parameters are the model's own, so training it trains
    the model, and the checkpoint is the model's as always."""

    def __init__(self, model: CAMNet, kind: str) -> None:
        super().__init__()
        self.model = model
        self.kind = kind

    def forward(self, cached: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.kind == "trunk":
            cam_conv = cast(nn.Module, self.model.net.cam_conv)
            maps = cam_conv(cached)
            return self.model.pooled_logits(self.model.pool(maps)), maps
        return self.model.pooled_logits(cached), None


@torch.no_grad()
def backbone_outputs(model: CAMNet, kind: str, x: Tensor) -> Tensor:
    """What the cache stores for a batch of preprocessed images."""
    if kind == "trunk":
        trunk_features = cast(Callable[[Tensor], Tensor], model.net.trunk_features)
        return trunk_features(x)
    _, maps = model(x)
    return model.pool(maps)


@dataclass(frozen=True)
class CacheRequest:
    """One cache to build: the images, how they are drawn, where and how it is stored."""

    items: list[tuple[str, int]]
    image_size: int
    augment: bool
    seed: int
    crop_scale_min: float
    views: int
    dtype: str
    root: Path
    max_bytes: int
    workers: int
    batch: int  # images per forward pass
    name: str  # "training" or "val", for the messages


def _key_parts(model: CAMNet, arch: str, kind: str, frozen: list[nn.Module],
               request: CacheRequest, preprocessing: Preprocessing) -> dict:  # fmt: skip
    weights = tensors_digest(
        (f"{i}.{name}", tensor)
        for i, module in enumerate(frozen)
        for name, tensor in module.state_dict().items()
    )
    return {
        "arch": arch,
        "kind": kind,
        "weights": weights,
        "preprocessing": [list(preprocessing.mean), list(preprocessing.std)],
        "image_size": request.image_size,
        "augment": request.augment,
        "seed": request.seed if request.augment else None,
        "crop_scale_min": request.crop_scale_min if request.augment else None,
        "views": request.views,
        "dtype": request.dtype,
        "data": data_listing_digest(request.items),
    }


@dataclass
class BuildContext:
    """The model side of a cache build."""

    model: CAMNet
    arch: str
    frozen: list[nn.Module]
    preprocessing: Preprocessing
    device: torch.device
    autocast: Callable
    ddp: Dist


def build_cache(context: BuildContext, request: CacheRequest, log: Callable) -> FeatureCache:
    """The finished cache of ``request`` (found, resumed, or computed now).

    Under torchrun rank 0 creates the arrays, every rank computes every world-th chunk still to
    do, and rank 0 marks the cache complete; the ranks share the folder's file system."""
    model, kind = context.model, cache_kind(context.model)
    views = request.views if request.augment else 1
    request = replace(request, views=views)
    size = request.image_size
    was_training = model.training
    model.eval()
    try:
        probe = torch.zeros((1, 3, size, size), device=context.device)
        with context.autocast():
            shape = tuple(backbone_outputs(model, kind, probe).shape[1:])
        layout = CacheLayout(len(request.items), views, shape, request.dtype)
        if layout.nbytes > request.max_bytes:
            raise TrainError(
                f"the {request.name} feature cache would take {layout.nbytes / 1e9:.2f} GB "
                f"({layout.count} images x {views} views of {list(shape)} {request.dtype}), "
                f"over feature_cache_max_gb {request.max_bytes / 1e9:g}; raise it, or lower "
                "feature_cache_views or image_size"
            )
        parts = _key_parts(model, context.arch, kind, context.frozen, request,
                           context.preprocessing)  # fmt: skip
        cache = FeatureCache(request.root, cache_key(parts), layout)
        ddp = context.ddp
        lock = FolderLock(cache.folder, "feature_cache_dir") if ddp.main else None
        try:
            if lock is not None:
                lock.acquire()
            todo = cache.prepare() if ddp.main else []
            _barrier(ddp)
            if not ddp.main:
                todo = cache.prepare()
            what = (f"{request.name} feature cache: {layout.count} images x {views} view(s) of "
                    f"{list(shape)} {request.dtype} = {layout.nbytes / 1e6:.1f} MB "
                    f"in {cache.folder}")  # fmt: skip
            total = views * layout.chunks_per_view
            if not todo:
                log(f"{what} (complete, reused)")
            else:
                done = total - len(todo)
                log(f"{what}: computing {len(todo)} of {total} chunks"
                    + (f" ({done} done before)" if done else ""))  # fmt: skip
                mine = todo[ddp.rank :: ddp.world]
                _compute(context, kind, request, cache, mine)
            _barrier(ddp)
            if todo and ddp.main:
                cache.finish()
            _barrier(ddp)
            if not ddp.main:
                cache.open_read()
        finally:
            if lock is not None:
                lock.release()
    finally:
        model.train(was_training)
    return cache


def _barrier(ddp: Dist) -> None:
    if ddp.enabled:
        import torch.distributed as dist

        dist.barrier()


def _compute(context: BuildContext, kind: str, request: CacheRequest, cache: FeatureCache,
             chunks: list[tuple[int, int]]) -> None:  # fmt: skip
    """Decode the chunks' images (DataLoader workers), run the backbone, store chunk by chunk."""
    dataset = LabeledImages(request.items, request.image_size, request.augment, request.seed,
                            request.crop_scale_min)  # fmt: skip
    keys = [[(view, i) for i in cache.chunk_indices(chunk)] for view, chunk in chunks]
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=keys, num_workers=request.workers, collate_fn=collate_images
    )
    dtype = np.dtype(request.dtype)
    shape = cache.layout.shape
    for (view, chunk), batch in zip(chunks, loader, strict=True):
        for item in batch.failed:
            logger.warning("skipped image %s: %s", item.path, item.error)
        span = cache.chunk_indices(chunk)
        values = np.zeros((len(span), *shape), dtype=dtype)
        valid = np.zeros(len(span), dtype=np.bool_)
        rows = np.array([item.index - span.start for item in batch.items], dtype=np.int64)
        if len(rows):
            pixels = batch.pixels
            outputs = []
            for start in range(0, len(rows), request.batch):
                x = context.preprocessing.apply(
                    pixels[start : start + request.batch].to(context.device)
                )
                with context.autocast():
                    outputs.append(backbone_outputs(context.model, kind, x).float().cpu())
            values[rows] = torch.cat(outputs).numpy().astype(dtype)
            valid[rows] = True
        cache.write_chunk(view, chunk, values, valid)


def cached_batches(
    cache: FeatureCache, labels: np.ndarray, view: int, indices: list[int], batch: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """``(features float32, labels)`` batches of ``indices`` (in order) from view ``view``;
    images that failed to decode are left out, as the image path leaves them out."""
    assert cache.features is not None
    assert cache.valid is not None
    for start in range(0, len(indices), batch):
        chosen = np.asarray(indices[start : start + batch], dtype=np.int64)
        keep = chosen[np.asarray(cache.valid[view, chosen], dtype=bool)]
        features = torch.from_numpy(np.asarray(cache.features[view, keep], dtype=np.float32))
        yield features, torch.from_numpy(labels[keep].astype(np.int64))


@dataclass(frozen=True)
class CacheSettings:
    """Where and how a run keeps its caches (from the config's ``feature_cache_*`` keys)."""

    root: Path
    views: int
    dtype: str
    max_bytes: int
    workers: int
    batch: int


class CachedRun:
    """A frozen run's inputs: the head it trains, and the training and val caches it reads."""

    def __init__(self, model: CAMNet) -> None:
        self.kind = cache_kind(model)
        self.head = CachedHead(model, self.kind)
        self.train: FeatureCache | None = None
        self.val: FeatureCache | None = None
        self.train_labels = np.zeros(0, dtype=np.int64)
        self.val_labels = np.zeros(0, dtype=np.int64)
        self.val_indices: list[int] = []

    def build(
        self,
        context: BuildContext,
        settings: CacheSettings,
        config: TrainConfig,
        data: TrainData,
        log: Callable[[str], None],
    ) -> None:
        """Both caches: the training images in ``views`` augmented views, the val images as
        inference sees them (one view, no augmentation)."""
        common: dict[str, Any] = dict(image_size=config.image_size, seed=config.seed,
                      crop_scale_min=config.crop_scale_min, dtype=settings.dtype,
                      root=settings.root, max_bytes=settings.max_bytes,
                      workers=settings.workers, batch=settings.batch)  # fmt: skip
        train = CacheRequest(data.train, augment=config.augment, views=settings.views,
                             name="training", **common)  # fmt: skip
        self.train = build_cache(context, train, log)
        self.train_labels = np.array([label for _, label in data.train], dtype=np.int64)
        if data.val:
            val = CacheRequest(data.val, augment=False, views=1, name="val", **common)
            self.val = build_cache(context, val, log)
            self.val_labels = np.array([label for _, label in data.val], dtype=np.int64)
            ddp = context.ddp
            self.val_indices = list(range(ddp.rank, len(data.val), ddp.world))

    def train_batches(
        self, epoch: int, indices: list[int], batch: int
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Epoch ``epoch``'s batches (``indices`` in the sampler's order) from its view."""
        assert self.train is not None
        view = epoch % self.train.layout.views
        yield from cached_batches(self.train, self.train_labels, view, indices, batch)

    def val_batches(self, batch: int) -> Iterator[tuple[Tensor, Tensor]]:
        if self.val is not None:
            yield from cached_batches(self.val, self.val_labels, 0, self.val_indices, batch)

    @contextmanager
    def threads(self, device: torch.device) -> Iterator[None]:
        """One CPU thread for the steps of a linear head on pooled features: they are too small
        to share, and two threads wait on each other at every op (on a loaded 2-core machine
        an epoch of 1,000 cached vectors took 28 s with two threads, 1.4 s with one)."""
        if device.type != "cpu" or self.kind == "trunk":
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def inputs(self, features: Tensor, count: int, device: torch.device) -> Tensor:
        """A batch's cached inputs on ``device``; a stand-in zero input for an empty batch
        (every rank must still step under DDP)."""
        if count == 0:
            assert self.train is not None
            return torch.zeros((1, *self.train.layout.shape), device=device)
        return features.to(device, non_blocking=True)
