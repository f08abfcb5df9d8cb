"""Train a CAM network on image labels: a plain, explicit SGD loop that survives crashes.

Layout of a run directory::

    config.toml     the resolved config (pass it back with `config` to repeat the run)
    metrics.jsonl   one line per finished epoch (rewritten atomically; never two for one epoch)
    last.pt         everything needed to continue: weights, optimizer, step, RNG states
    best.pt         the best epoch so far (val top-1, or train top-1 without val data), slim

Both checkpoints are self-describing (arch, classes, preprocessing, input size), hold only
tensors and plain containers (``torch.load(weights_only=True)`` reads them) and are written by
temp file + fsync + rename, so ``kill -9`` at any moment leaves the previous file intact.
The write order at an epoch end (metrics, best.pt, last.pt) means a resume from last.pt never
misses a metrics line, and drops lines of epochs it is about to redo.

Determinism is by construction rather than by saved state: the shuffling of epoch e is a
permutation seeded by ``seed + e`` (DistributedSampler's rule), and the crop and flip of image i
in epoch e come from a generator seeded by ``(seed, e, i)``. So a resumed run sees the very same
batches, and N processes under torchrun see, step by step, exactly the global batch a single
process would (rank r takes every N-th image of the global batch's slice of the permutation).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from cam_cli.data.batches import ImageBatch, collate_images
from cam_cli.errors import TrainError, TrainingDiverged
from cam_cli.files.atomic import remove_stale_temp_files
from cam_cli.files.checks import bounded_workers
from cam_cli.files.lock import FolderLock
from cam_cli.models.checkpoint_format import is_checkpoint, model_part
from cam_cli.models.preprocess import IMAGENET, Preprocessing
from cam_cli.models.registry import get_arch
from cam_cli.models.weights import read_state_file
from cam_cli.runtime.device import Precision, keep_freed_memory
from cam_cli.runtime.distributed import Dist, release_group, setup_distributed
from cam_cli.training.cached_inputs import BuildContext, CachedRun, CacheSettings
from cam_cli.training.checkpoints import (
    BEST,
    CONFIG_FILE,
    LAST,
    CheckpointWriter,
    read_metrics,
    rng_state,
    set_rng_state,
    write_metrics,
    write_run_config,
)
from cam_cli.training.choices import choices_summary
from cam_cli.training.config import (
    TrainConfig,
    read_config_file,
    resolve_config,
    resume_differences,
)
from cam_cli.training.data import (
    EpochSampler,
    LabeledImages,
    TrainData,
    ValSampler,
    limit_per_class,
    scan_data,
)
from cam_cli.training.epoch_report import EpochReport, check_tensorboard
from cam_cli.training.initial_weights import initial_model
from cam_cli.training.optim import build_optimizer, freeze_backbone, lr_factor, set_lr
from cam_cli.training.threshold import calibrate_checkpoints, threshold_images
from cam_cli.training.threshold_boxes import boxed_images
from cam_cli.training.val_annotations import annotated_val

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["TrainError", "TrainResult", "TrainingDiverged", "train", "train_from_options"]

logger = logging.getLogger(__name__)

CACHE_FOLDER = "feature-cache"  # in the run folder, unless feature_cache_dir says elsewhere


@dataclass
class EpochStats:
    """Running sums of an epoch (global over ranks), kept in last.pt for a mid-epoch resume."""

    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"loss_sum": self.loss_sum, "correct": self.correct, "count": self.count,
                "seconds": self.seconds}  # fmt: skip


@dataclass
class TrainResult:
    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    epochs: int  # completed epochs
    best_metric: float | None  # top-1 accuracy in [0, 1]
    best_metric_name: str  # "val_acc", or "train_acc" without validation data
    best_epoch: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped_images: int = 0
    main_process: bool = True  # rank 0 (the one that wrote the files), or a single process

    def as_dict(self) -> dict[str, Any]:
        """The summary `cam-cli train` prints as JSON."""
        return {
            "run_dir": str(self.run_dir),
            "best_checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None,
            "last_checkpoint": str(self.last_checkpoint),
            "epochs": self.epochs,
            "best_metric": self.best_metric_name,
            "best_value": self.best_metric,
            "best_epoch": self.best_epoch,
            "skipped_images": self.skipped_images,
        }


def _check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """``load_state_dict`` checks the groups' sizes, not the state's tensors: a buffer of the
    wrong shape would fail the first step after the resume, as a traceback. ValueError here."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, Tensor) and value.ndim > 0 and value.shape != param.shape:
                    raise ValueError(
                        f"optimizer state {key!r} has shape {list(value.shape)}, its parameter "
                        f"{list(param.shape)}"
                    )
                if key == "momentum_buffer" and not isinstance(value, (Tensor, type(None))):
                    raise ValueError(f"optimizer state {key!r} is a {type(value).__name__}")


def _image_size(config: TrainConfig) -> int:
    """The input size of a resolved config (`resolve_config` fills in the architecture's)."""
    if config.image_size is None:
        raise ValueError("`image_size` is unset: resolve the config first (`resolve_config`)")
    return config.image_size


class Trainer:
    """One run: holds the model, optimizer and loaders; `run` goes epoch by epoch."""

    def __init__(
        self,
        config: TrainConfig,
        data: TrainData,
        run_dir: Path,
        ddp: Dist,
        device: torch.device,
        progress: bool | None,
        initial_weights: bool = True,
    ) -> None:
        self.config, self.data, self.run_dir = config, data, run_dir
        self.ddp, self.device, self.progress = ddp, device, progress
        self.log = _main_log(ddp)
        self.spec = get_arch(config.arch)
        self.preprocessing: Preprocessing = self.spec.preprocessing or IMAGENET
        if config.batch_size % ddp.world:
            raise TrainError(
                f"batch_size {config.batch_size} (global) is not divisible by the "
                f"{ddp.world} processes"
            )
        self.batch = config.batch_size // ddp.world
        self.steps_per_epoch = len(data.train) // config.batch_size
        if self.steps_per_epoch == 0:
            raise TrainError(
                f"{len(data.train)} training images are fewer than one batch of "
                f"{config.batch_size}; lower `batch_size`"
            )
        # On resume the weights come from last.pt: no download, no backbone file needed.
        build_config = (
            config if initial_weights else config.replace(pretrained=False, backbone_weights=None)
        )
        self.module = initial_model(build_config, len(data.classes)).to(device)
        self.frozen = freeze_backbone(self.module) if config.freeze_backbone else []
        self.optimizer = build_optimizer(self.module, config)
        # A frozen backbone runs once per image into a cache; its head trains on the cache.
        cache = config.freeze_backbone and config.feature_cache
        self.cached = CachedRun(self.module) if cache else None
        trained: nn.Module = self.module if self.cached is None else self.cached.head
        self.model: nn.Module = trained
        if ddp.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(
                trained, device_ids=ids, broadcast_buffers=self.cached is None
            )
        self.precision = Precision(device, config.amp)
        self.autocast = self.precision.autocast
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision.needs_grad_scaling)
        self.sampler = EpochSampler(
            len(data.train), self.batch, ddp.rank, ddp.world, config.seed, shuffle=True
        )
        size = _image_size(config)
        self.workers = bounded_workers(config.workers, "workers")
        self.train_loader = None
        if self.cached is None:
            self.train_loader = self._loader(
                LabeledImages(data.train, size, config.augment, config.seed,
                              config.crop_scale_min),
                self.sampler,
                drop_last=True,
            )  # fmt: skip
        self.val_loader = None
        if data.val and self.cached is None:
            val_set = LabeledImages(data.val, size, False, config.seed, config.crop_scale_min)
            val_sampler = ValSampler(len(data.val), ddp.rank, ddp.world)
            self.val_loader = self._loader(val_set, val_sampler, drop_last=False)
        self.metric_name = "val_acc" if data.val else "train_acc"
        self.after_epoch: EpochReport | None = None  # rank 0's page (and TensorBoard files)
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.epoch = 0  # completed epochs
        self.start_step = 0
        self.partial = EpochStats()
        self.writer = CheckpointWriter(run_dir)
        self.reported_failures: set[str] = set()
        self.step_in_epoch = 0
        self.on_disk: str | None = None  # what last.pt holds, for the divergence message

    def _loader(
        self, dataset: torch.utils.data.Dataset, sampler: torch.utils.data.Sampler, drop_last: bool
    ) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=self.batch,
            sampler=sampler,
            num_workers=self.workers,
            collate_fn=collate_images,
            pin_memory=self.device.type == "cuda",
            drop_last=drop_last,
            # Workers live for the run: re-forking them every epoch (and for every validation)
            # cost seconds per epoch, a third of a short epoch on two cores.
            persistent_workers=self.config.workers > 0,
        )

    # ---- checkpoints ---------------------------------------------------------------------

    def checkpoint(self, step: int, full: bool = True) -> dict[str, Any]:
        """The self-describing checkpoint; ``full`` adds what resuming needs (optimizer...)."""
        data = model_part(self.spec.name, self.data.classes, self.preprocessing,
                          _image_size(self.config), self.module.state_dict())  # fmt: skip
        data |= {
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "step": step,
            "steps_per_epoch": self.steps_per_epoch,
            "num_train_images": len(self.data.train),
            "world_size": self.ddp.world,
            "best_metric": self.best_metric,
            "best_metric_name": self.metric_name,
            "best_epoch": self.best_epoch,
            "torch_version": str(torch.__version__),
        }
        if full:
            data["optimizer"] = self.optimizer.state_dict()
            data["scheduler"] = {
                "schedule": self.config.lr_schedule,
                "iteration": self.epoch * self.steps_per_epoch + step,
            }
            data["scaler"] = self.scaler.state_dict()
            data["epoch_stats"] = self.partial.as_dict()
            data["rng"] = rng_state()
        return data

    def restore(self, saved: dict[str, Any]) -> None:
        self.module.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        _check_optimizer_state(self.optimizer)
        if self.scaler.is_enabled() and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        self.epoch = int(saved["epoch"])
        self.best_metric = saved.get("best_metric")
        self.best_epoch = saved.get("best_epoch")
        self.start_step = int(saved.get("step", 0))
        where = f"epoch {self.epoch + 1}, step {self.start_step}"
        self.on_disk = where if self.start_step else f"the end of epoch {self.epoch}"
        if self.start_step and saved.get("steps_per_epoch") != self.steps_per_epoch:
            self.log("note: the data changed since the mid-epoch checkpoint; redoing the epoch")
            self.start_step = 0
        if self.start_step:
            self.partial = EpochStats(**saved["epoch_stats"])
            if self.ddp.world == 1 and saved.get("world_size") == 1:
                set_rng_state(saved["rng"])
            else:  # other ranks' dropout states were not saved: a fresh, deterministic seed
                torch.manual_seed(
                    hash((self.config.seed, self.epoch, self.start_step, self.ddp.rank)) % 2**62
                )

    # ---- steps ---------------------------------------------------------------------------

    def labelled(self, batch: ImageBatch) -> tuple[Tensor, Tensor]:
        """A batch's pixels and labels; its failed images are reported (once each)."""
        for item in batch.failed:
            message = f"{item.path}: {item.error}"
            if message not in self.reported_failures:
                self.reported_failures.add(message)
                prefix = f"[rank {self.ddp.rank}] " if self.ddp.enabled else ""
                logger.warning("%sskipped image %s", prefix, message)
        labels = torch.tensor([item.label for item in batch.items], dtype=torch.long)
        return batch.pixels, labels

    def _global_sum(self, values: list[float | Tensor]) -> Tensor:
        device = self.device
        stats = torch.stack(
            [torch.as_tensor(v, dtype=torch.float64, device=device) for v in values]
        )
        if self.ddp.enabled:
            dist.all_reduce(stats)
        return stats.cpu()

    def train_step(self, pixels: Tensor, labels: Tensor) -> tuple[float, float, float]:
        """One SGD step; returns the global (loss_sum, correct, count) of the batch."""
        count = labels.numel()
        if count == 0:
            # Every image of this rank's batch failed to decode. Under DDP all ranks must still
            # run backward (the gradient all-reduce); a zero-weighted dummy image keeps in step.
            size = _image_size(self.config)
            pixels = torch.zeros((1, 3, size, size), dtype=torch.uint8)
            labels = torch.zeros(1, dtype=torch.long)
        if self.cached is not None:
            x = self.cached.inputs(pixels, count, self.device)
        else:
            x = self.preprocessing.apply(pixels.to(self.device, non_blocking=True))
        y = labels.to(self.device, non_blocking=True)
        with self.autocast():
            logits, _ = self.model(x)
        loss = F.cross_entropy(logits.float(), y)
        weight = 1.0 if count else 0.0
        correct = (logits.argmax(1) == y).sum() * weight
        total = self._global_sum([loss.detach() * count, correct.detach(), float(count)])
        loss_sum, correct_sum, seen = (float(v) for v in total)
        if not math.isfinite(loss_sum):
            step = self.step_in_epoch + 1
            raise TrainingDiverged(f"loss is {loss_sum} at epoch {self.epoch + 1}, step {step}")
        if seen == 0 and not self.ddp.enabled:
            return 0.0, 0.0, 0.0
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * weight).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss_sum, correct_sum, seen

    def train_epoch(self) -> EpochStats:
        self.model.train()
        for module in self.frozen:  # a fixed backbone keeps its batch-norm statistics
            module.eval()
        epoch, start = self.epoch, self.start_step
        self.sampler.set_epoch(epoch, start)
        # Dropout randomness per (seed, epoch, rank): an epoch-boundary resume is exact too.
        if start == 0:
            torch.manual_seed(self.config.seed * 1_000_003 + epoch * 1_009 + self.ddp.rank + 1)
        stats = self.partial if start else EpochStats()
        began = time.perf_counter() - stats.seconds
        bar = _progress_bar(self.steps_per_epoch, start, f"epoch {epoch + 1}/{self.config.epochs}",
                            enabled=self.progress if self.ddp.main else False)  # fmt: skip
        step = start
        for pixels, labels in self._train_batches(epoch):
            iteration = epoch * self.steps_per_epoch + step
            set_lr(
                self.optimizer, self.config, lr_factor(self.config, iteration, self.steps_per_epoch)
            )
            self.step_in_epoch = step
            loss_sum, correct, count = self.train_step(pixels, labels)
            stats.loss_sum += loss_sum
            stats.correct += correct
            stats.count += count
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{stats.loss_sum / max(stats.count, 1):.4f}")
            every = self.config.checkpoint_every
            if every and step % every == 0 and step < self.steps_per_epoch:
                stats.seconds = time.perf_counter() - began
                self.partial = stats
                if self.ddp.main:
                    self.writer.save(self.checkpoint(step), LAST)
                    self.on_disk = f"epoch {epoch + 1}, step {step}"
        if bar is not None:
            bar.close()
        stats.seconds = time.perf_counter() - began
        self.start_step, self.partial = 0, EpochStats()
        return stats

    def _train_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The epoch's ``(inputs, labels)`` batches: decoded images, or cached features."""
        if self.cached is not None:
            yield from self.cached.train_batches(epoch, [i for _, i in self.sampler], self.batch)
            return
        assert self.train_loader is not None
        for batch in self.train_loader:
            yield self.labelled(batch)

    def _val_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.cached is not None:
            yield from self.cached.val_batches(self.batch)
            return
        assert self.val_loader is not None
        for batch in self.val_loader:
            pixels, labels = self.labelled(batch)
            yield self.preprocessing.apply(pixels.to(self.device, non_blocking=True)), labels

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Top-1 accuracy on the val images (each rank its share; the counts are summed)."""
        if not self.data.val:
            return None
        self.module.eval()
        network = self.module if self.cached is None else self.cached.head
        correct, count = 0.0, 0.0
        for x, labels in self._val_batches():
            if labels.numel() == 0:
                continue
            with self.autocast():
                logits, _ = network(x.to(self.device, non_blocking=True))
            correct += float((logits.argmax(1).cpu() == labels).sum())
            count += labels.numel()
        total = self._global_sum([correct, count])
        return float(total[0] / total[1]) if total[1] > 0 else None

    # ---- the run -------------------------------------------------------------------------

    def prepare_cache(self) -> None:
        """Build (or find) the feature caches of a frozen run, once its weights are final."""
        if self.cached is None:
            return
        config = self.config
        root = Path(config.feature_cache_dir or self.run_dir / CACHE_FOLDER)
        context = BuildContext(self.module, self.spec.name, self.frozen, self.preprocessing,
                               self.device, self.autocast, self.ddp)  # fmt: skip
        settings = CacheSettings(root, config.feature_cache_views, config.feature_cache_dtype,
                                 int(config.feature_cache_max_gb * 1e9), self.workers,
                                 self.batch)  # fmt: skip
        self.cached.build(context, settings, config, self.data, self.log)

    def run(self) -> TrainResult:
        self.prepare_cache()
        if self.cached is None:
            return self._run()
        with self.cached.threads(self.device):
            return self._run()

    def _run(self) -> TrainResult:
        history = read_metrics(self.run_dir)
        while self.epoch < self.config.epochs:
            stats = self.train_epoch()
            val_acc = self.evaluate()
            self.epoch += 1
            train_acc = stats.correct / max(stats.count, 1)
            last_iteration = self.epoch * self.steps_per_epoch - 1
            lr = self.config.lr * lr_factor(self.config, last_iteration, self.steps_per_epoch)
            row = {
                "epoch": self.epoch,
                "train_loss": stats.loss_sum / max(stats.count, 1),
                "train_acc": train_acc,
                "val_acc": val_acc,
                "lr": lr,
                "images": int(stats.count),
                "seconds": round(stats.seconds, 3),
            }
            metric = val_acc if self.metric_name == "val_acc" else train_acc
            improved = metric is not None and (
                self.best_metric is None or metric > self.best_metric
            )
            if improved:
                self.best_metric, self.best_epoch = metric, self.epoch
            history = [r for r in history if int(r["epoch"]) < self.epoch] + [row]
            if self.ddp.main:
                write_metrics(self.run_dir, history)  # first: a resume never misses a line
                if improved or not (self.run_dir / BEST).exists():
                    self.writer.save(self.checkpoint(0, full=False), BEST)
                self.writer.save(self.checkpoint(0), LAST)
            self.on_disk = f"the end of epoch {self.epoch}"
            self.log(_summary(row, self.config.epochs))
            if self.after_epoch is not None and self.ddp.main:
                self.after_epoch.after_epoch(self.module, self.device, history)
        return TrainResult(
            run_dir=self.run_dir,
            last_checkpoint=self.run_dir / LAST,
            best_checkpoint=(self.run_dir / BEST) if (self.run_dir / BEST).exists() else None,
            epochs=self.epoch,
            best_metric=self.best_metric,
            best_metric_name=self.metric_name,
            best_epoch=self.best_epoch,
            history=history,
            skipped_images=len(self.reported_failures),
        )


def _main_log(ddp: Dist) -> Callable[..., None]:
    """Notes for people, from rank 0 only (every rank would say the same)."""
    return logger.info if ddp.main else (lambda *args: None)


def _progress_bar(total: int, initial: int, desc: str, enabled: bool | None) -> tqdm | None:
    """``enabled=None``: a bar when stderr is a terminal (tqdm decides)."""
    if enabled is False:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, leave=False,
                dynamic_ncols=True, disable=None)  # fmt: skip


def _summary(row: dict[str, Any], epochs: int) -> str:
    val = "-" if row["val_acc"] is None else f"{100 * row['val_acc']:.2f}%"
    return (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f}  "
        f"train acc {100 * row['train_acc']:.2f}%  val acc {val}  lr {row['lr']:.3g}  "
        f"{row['seconds']:.1f}s"
    )


def _check_resume(saved: dict[str, Any], config: TrainConfig, data: TrainData, path: Path) -> None:
    if not is_checkpoint(saved):
        raise TrainError(f"{path}: not a cam-cli checkpoint; cannot resume from it")
    problems = resume_differences(saved.get("config", {}), config.to_dict())
    saved_wnids = [c.get("wnid") for c in saved.get("classes", [])]
    wnids = [c.wnid for c in data.classes]
    if saved_wnids != wnids:
        problems.append(f"classes: {len(saved_wnids)} saved, {len(wnids)} in train/ "
                        "(or a different order)")  # fmt: skip
    if problems:
        raise TrainError(
            f"{path}: cannot resume with a different setup: "
            + "; ".join(problems)
            + ". Use a new `out`, or the run's own settings (epochs may be raised)."
        )
    if config.epochs < int(saved["epoch"]):
        raise TrainError(
            f"{path}: {saved['epoch']} epochs are done; `epochs` must be at least that"
        )


def train(
    config: TrainConfig,
    data_dir: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    *,
    progress: bool | None = None,
    tensorboard: bool = False,
    sources: dict[str, str] | None = None,
) -> TrainResult:
    """Train ``config.arch`` on ``data_dir`` into ``out_dir``; continue from last.pt if resume.
    ``sources``: where each setting came from (`resolve_config`), for the one-line summary
    of the choices. After each epoch rank 0 rewrites ``report.html`` (`epoch_report`; where
    matplotlib is installed) and, with ``tensorboard``, writes TensorBoard event files.

    Works alike as a plain process and under torchrun (DistributedDataParallel; only rank 0
    writes files and logs). Raises a `SetupError` (`TrainError`: set-up problems, incompatible
    resume; `ModelLoadError`: unreadable weights; a device that is not here, a run folder in
    use) or `TrainingDiverged`, a `RunFailed` (NaN/inf loss; the checkpoints on disk are the
    last good ones).
    """
    run_dir = Path(out_dir)
    if tensorboard:
        check_tensorboard()  # one line, before any work
    data = scan_data(data_dir)
    if config.train_images_per_class:
        kept = limit_per_class(data.train, config.train_images_per_class)
        data.notes.append(f"training on the first {config.train_images_per_class} images of "
                          f"every class: {len(kept)} of {len(data.train)}")  # fmt: skip
        data = TrainData(data.classes, kept, data.val, data.notes)
    if config.val_annotations is not None:  # replaces DIR/val's labels; read before any epoch
        val = annotated_val(config.val_annotations, config.val_annotations_format,
                            data.classes, data_dir, data.notes)  # fmt: skip
        data = TrainData(data.classes, data.train, val, data.notes)
    if config.val_images and len(data.val) > config.val_images:
        val = sorted(data.val)[: config.val_images]
        data.notes.append(f"validating on the first {len(val)} of {len(data.val)} val images")
        data = TrainData(data.classes, data.train, val, data.notes)
    ddp, device = setup_distributed(config.device)  # SetupError: a `device` not here
    log = _main_log(ddp)
    lock = FolderLock(run_dir) if ddp.main else None  # rank 0 writes, so rank 0 holds it
    trainer: Trainer | None = None
    try:
        if lock is not None:
            lock.acquire()
        for note in data.notes:
            log(f"note: {note}")
        chosen_on = None  # the threshold's images, read (and checked) before any training
        if ddp.main:
            chosen_on = _threshold_images(data_dir, data, config, log)
        last = run_dir / LAST
        saved = None
        if last.exists() and not resume:
            raise TrainError(
                f"{run_dir} already holds a run ({LAST}); pass `resume` to continue it, "
                "or choose another `out`"
            )
        if resume and last.exists():
            saved = read_state_file(last)
            _check_resume(saved, config, data, last)
        elif resume:
            log(f"nothing to resume in {run_dir} (no {LAST}); starting a new run")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        else:  # every batch allocates the same large activations: keep them in the heap
            keep_freed_memory()
        # The network (and its starting weights: a download that fails offline) first, so a
        # setup error leaves no config.toml behind in a run folder that holds no run.
        trainer = Trainer(config, data, run_dir, ddp, device, progress, saved is None)
        if ddp.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(run_dir)
            write_run_config(run_dir, config)
        if ddp.main:
            settings = {"arch": config.arch, "data": str(data_dir), "epochs": str(config.epochs),
                        "image_size": str(config.image_size),
                        "batch_size": str(config.batch_size), "lr": str(config.lr)}  # fmt: skip
            trainer.after_epoch = EpochReport(
                run_dir,
                data.val,
                data.classes,
                _image_size(config),
                trainer.preprocessing,
                settings,
                tensorboard,
            )
        if saved is not None:
            try:
                trainer.restore(saved)
            except (KeyError, ValueError, TypeError, AttributeError, IndexError,
                    RuntimeError) as error:  # fmt: skip
                detail = " ".join(str(error).split())[:200] or type(error).__name__
                raise TrainError(
                    f"{last}: a damaged checkpoint, cannot resume from it ({detail}); "
                    "start a new run with another `out`"
                ) from None
            if ddp.main:  # drop lines of epochs about to be redone (written before a crash)
                write_metrics(run_dir, [r for r in read_metrics(run_dir)
                                        if int(r["epoch"]) <= trainer.epoch])  # fmt: skip
            if trainer.start_step:
                where = f"in epoch {trainer.epoch + 1} after step {trainer.start_step}"
            else:
                where = f"after epoch {trainer.epoch}"
            log(f"resuming {run_dir} {where}")
            del saved
        log(choices_summary(config, data, sources or {}, trainer.workers))
        log(
            f"training {config.arch} on {len(data.train)} images of {len(data.classes)} classes"
            f" ({len(data.val)} val) at {config.image_size}px, global batch {config.batch_size}"
            f" on {ddp.world} x {device.type}, {trainer.steps_per_epoch} steps/epoch"
        )
        try:
            result = trainer.run()
            result.main_process = ddp.main
            per_class = config.threshold_images_per_class
            if chosen_on is not None and result.best_checkpoint is not None:
                _choose_threshold(run_dir, data_dir, per_class, device, log, chosen_on)
            if ddp.world > 1:
                # Rank 0 may still be writing checkpoints: a rank that tears gloo down alone can
                # abort at exit ("terminate called without an active exception"), seen under load.
                dist.barrier()
            return result
        except TrainingDiverged as error:
            done = trainer.on_disk
            where = (
                f"{run_dir / LAST} keeps the last good state ({done})"
                if done is not None
                else "no checkpoint had been written yet"
            )
            raise TrainingDiverged(f"{error}; stopped: {where}") from None
    finally:
        if trainer is not None and trainer.after_epoch is not None:
            trainer.after_epoch.close()  # TensorBoard's files flushed and closed
        if lock is not None:
            lock.release()
        release_group(ddp)


def _threshold_images(
    data_dir: str | Path, data: TrainData, config: TrainConfig, log: Callable[..., None]
) -> list | None:
    """The boxed images the CAM threshold will be chosen on (None: no threshold is chosen),
    read and checked now, before the first epoch: the user's box file, else the training
    images' own boxes."""
    if config.threshold_boxes is not None:
        if config.threshold_images_per_class:
            log("note: the CAM threshold is chosen on the boxes of `threshold_boxes`; "
                "`threshold_images_per_class` is not used")  # fmt: skip
        notes: list[str] = []
        try:
            images = boxed_images(config.threshold_boxes, data.classes, notes)
        except (ValueError, OSError) as error:
            raise TrainError(f"`threshold_boxes`: {error}") from None
        for note in notes:
            log(f"note: {note}")
        return images
    if not config.threshold_images_per_class:
        return None
    try:
        return threshold_images(data_dir, data.classes, config.threshold_images_per_class)
    except ValueError as error:
        raise TrainError(f"`threshold_images_per_class`: {error}") from None


def _choose_threshold(
    run_dir: Path,
    data_dir: str | Path,
    per_class: int,
    device: torch.device,
    log: Callable[..., None],
    images: list,
) -> None:
    """The CAM threshold of best.pt, chosen on boxed training images (`training.threshold`)."""
    try:
        choice = calibrate_checkpoints(run_dir, data_dir, per_class, str(device), images)
    except ValueError as error:
        raise TrainError(f"CAM threshold: {error}") from None
    sweep = ", ".join(f"{t} {100 * a:.1f}%" for t, a in choice["accuracy"].items())
    log(f"CAM threshold {choice['cam_threshold']} (GT-known box accuracy on "
        f"{choice['images']} boxed images: {sweep}); stored in best.pt and last.pt")  # fmt: skip


def train_from_options(
    overrides: dict[str, Any],
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    config_file: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    tensorboard: bool = False,
) -> TrainResult:
    """What `cam-cli train` does: the settings resolved in layers (``overrides``, i.e. the
    options given, > ``config_file`` > on ``resume`` the run's own config.toml > the arch's
    recipe > built-ins), then `train`. No option has to be repeated to resume."""
    saved_config = Path(out_dir) / CONFIG_FILE
    base = read_config_file(saved_config) if resume and saved_config.is_file() else None
    on_cpu = base is None and config_file is None and _no_gpu(overrides.get("device"))
    resolved = resolve_config(
        overrides=overrides, config_file=config_file, base=base, on_cpu=on_cpu
    )
    return train(resolved.config, data_dir, out_dir, resume=resume, progress=progress,
                 sources=resolved.sources, tensorboard=tensorboard)  # fmt: skip


def _no_gpu(device: str | None) -> bool:
    """The run will be on the CPU: `device` ``cpu``, or ``auto`` (the default) without CUDA."""
    name = device or "auto"
    return name == "cpu" or (name == "auto" and not torch.cuda.is_available())
