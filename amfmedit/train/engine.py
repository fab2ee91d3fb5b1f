"""The one training loop: pretraining, probes, fine-tuning and supervised baselines.

A stage hands :func:`fit` a :class:`Task` (the model, how to turn a batch of row indices
into a loss, how to validate) and a :class:`FitConfig`; the engine owns everything else:
device placement, DDP, bf16 autocast, channels-last, ``torch.compile``, the optimizer with
decay groups, warm-up + cosine schedule, sampling order, early stopping, NaN detection,
atomic ``last.pt`` / ``best.pt`` checkpoints every epoch, exact ``--resume`` and one
``metrics.jsonl`` line per epoch. It reports progress through a callback and never prints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Protocol

import numpy as np
import torch
from torch import nn

from amfmedit.errors import UserError
from amfmedit.io import disk_full_as_error, write_text
from amfmedit.train import seeding
from amfmedit.train.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from amfmedit.train.logging import open_logger
from amfmedit.train.optim import build_optimizer, build_scheduler
from amfmedit.train.runtime import Runtime
from amfmedit.train.sampling import EpochSampler, batches, sample_weights

METRICS_FILE = "metrics.jsonl"
_TIMING_KEYS = ("time_s", "samples_per_s")


@dataclass
class FitConfig:
    """How to optimise (the stage decides what)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    weight_decay_scope: Literal["selective", "all"] = "selective"  # amfmedit.train.optim.DECAY_SCOPES
    optimizer: Literal["adam", "adamw"] = "adam"
    schedule: Literal["cosine", "constant"] = "cosine"
    schedule_unit: Literal["step", "epoch"] = "step"  # the schedule advances per step or per epoch (optim)
    warmup_epochs: int = 0
    monitor: str = "val_loss"  # key of the validation dict that selects the best epoch
    mode: Literal["min", "max"] = "min"
    patience: int | None = None  # epochs without improvement > min_delta before stopping (None: never)
    min_delta: float = 2e-4
    seed: int = 2022
    class_weights: list[float] | None = None  # class-balanced sampling (A.3); None: plain shuffling
    # 0: validate once, after each epoch. N: after every N-th training batch of an epoch instead
    # (Lightning's integer val_check_interval, the authors' fine-tuning: 5); best.pt is the best of
    # every validation, early stopping looks at each epoch's last one (their EarlyStopping checks at
    # the end of the training epoch), so patience still counts epochs
    val_every: int = 0
    log: str = "none"  # also log each metrics.jsonl line: "tensorboard" / "mlflow" (amfmedit.train.logging)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"{self.epochs=} must be >= 1")
        if self.batch_size < 2:
            raise ValueError(f"{self.batch_size=} must be >= 2")
        if self.mode not in ("min", "max"):
            raise ValueError(f"{self.mode=} must be 'min' or 'max'")
        if self.warmup_epochs < 0 or (self.patience is not None and self.patience < 1):
            raise ValueError(f"bad {self.warmup_epochs=} or {self.patience=}")
        if self.val_every < 0:
            raise ValueError(f"{self.val_every=} must be >= 0")


class Task(Protocol):
    """What a stage gives the engine.

    Row-indexed tasks (the stages') give ``train_labels`` and take row positions in
    ``train_step``; a task that brings its own batches (:class:`amfmedit.train.batches.BatchTask`)
    gives ``epoch_batches(epoch)`` and ``steps_per_epoch()`` instead, and ``train_step`` takes a batch.
    """

    module: nn.Module  # everything the checkpoint holds (frozen parts included)

    def model_spec(self) -> dict:
        """``{"kind": ..., "config": ...}``: enough to rebuild ``module`` from a checkpoint."""
    def train_labels(self) -> np.ndarray:
        """(N_train,) labels of the training rows (for class-balanced sampling)."""
    def train_step(self, model: nn.Module, positions: np.ndarray, gen: torch.Generator) -> tuple[torch.Tensor, int]:
        """Loss (scalar, on the device) of the training rows at ``positions`` and the batch size.

        ``model`` is ``module`` possibly wrapped (DDP, compile): call it, not ``module``.
        """

    def validate(self, model: nn.Module, runtime: Runtime) -> dict[str, float]:
        """Validation metrics, already combined across ranks (identical on every rank).

        A task may also define ``set_epoch(epoch)``: the engine calls it with the 1-based
        epoch number before each epoch (resumed runs continue the count from the checkpoint).
        """


@dataclass
class Progress:
    """What the engine tells its caller (the CLI draws a progress bar from it)."""

    epoch: int  # 1-based
    epochs: int
    step: int
    steps: int
    loss: float | None = None
    metrics: dict[str, float] | None = None  # set once the epoch's validation is done
    samples_per_s: float | None = None
    done: bool = False  # the epoch is finished (validation included)


ProgressFn = Callable[[Progress], None]


@dataclass
class FitResult:
    best_metric: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: list[dict] = field(default_factory=list)


class _EarlyStopping:
    """Lightning's rule (Appendix A.3): improvement means beating the best by more than min_delta."""

    def __init__(self, mode: str, patience: int | None, min_delta: float) -> None:
        self.sign = 1.0 if mode == "max" else -1.0
        self.patience = patience
        self.min_delta = min_delta
        self.best = -math.inf  # in "larger is better" units
        self.wait = 0

    def update(self, value: float) -> bool:
        """Record an epoch's metric; True when training should stop."""
        v = self.sign * value
        if math.isfinite(v) and v > self.best + self.min_delta:
            self.best, self.wait = v, 0
        else:
            self.wait += 1
        return self.patience is not None and self.wait >= self.patience

    def state(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def load(self, state: dict) -> None:
        self.best, self.wait = float(state["best"]), int(state["wait"])


def _better(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


def _config_diff(saved: dict, current: dict) -> list[str]:
    return sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))


def _jsonl(history: list[dict]) -> str:

    return "".join(json.dumps(h) + "\n" for h in history)


def fit(
    task: Task,
    cfg: FitConfig,
    runtime: Runtime,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: ProgressFn | None = None,
    extra_config: dict | None = None,
) -> FitResult:
    """Train ``task.module`` in ``out_dir`` (``last.pt``, ``best.pt``, ``metrics.jsonl``).

    With ``resume`` and an existing ``last.pt`` it continues after the last finished epoch
    with the model, optimizer, scheduler, early-stopping and RNG states restored; the
    sampling, augmentation and dropout draws of every epoch depend only on
    ``(seed, epoch, rank)``, so the result equals an uninterrupted run (bit for bit on the CPU).
    ``extra_config`` (the stage's settings) is stored with the checkpoint and must match on resume.
    """
    out_dir = Path(out_dir)
    rt = runtime
    if rt.device.type == "cpu":
        seeding.deterministic_cpu()
    seeding.seed_everything(cfg.seed, 0, rt.rank, seeding.STREAM_GLOBAL)
    module = task.module.to(rt.device)
    if rt.channels_last:
        module = module.to(memory_format=torch.channels_last)
    own_batches = getattr(task, "epoch_batches", None)
    if own_batches is None:
        labels = np.asarray(task.train_labels())
        sampler = EpochSampler(
            n=len(labels),
            seed=cfg.seed,
            weights=None if cfg.class_weights is None else sample_weights(labels, cfg.class_weights),
            rank=rt.rank,
            world_size=rt.world_size,
        )
        steps_per_epoch = len(batches(np.arange(sampler.per_rank), cfg.batch_size))
    else:
        steps_per_epoch = task.steps_per_epoch()
    optimizer = build_optimizer(module, kind=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                weight_decay_scope=cfg.weight_decay_scope)
    per_epoch = cfg.schedule_unit == "epoch"
    units = 1 if per_epoch else steps_per_epoch  # scheduler steps per epoch
    scheduler = build_scheduler(
        optimizer,
        schedule=cfg.schedule,
        warmup_steps=cfg.warmup_epochs * units,
        total_steps=cfg.epochs * units,
        unit=cfg.schedule_unit,
    )
    stopper = _EarlyStopping(cfg.mode, cfg.patience, cfg.min_delta)
    # where the scalars are also logged is not a training setting: a run may resume with another
    config_record = {"fit": {k: v for k, v in asdict(cfg).items() if k != "log"}, "stage": extra_config or {},
                     "world_size": rt.world_size}
    history: list[dict] = []
    best_metric: float | None = None
    best_epoch = 0
    start = 0
    last_path, best_path, metrics_path = out_dir / LAST, out_dir / BEST, out_dir / METRICS_FILE

    if resume and last_path.exists():
        ckpt = load_checkpoint(last_path)
        diff = _config_diff(_flatten(ckpt.get("config", {})), _flatten(config_record))
        if diff:
            raise UserError(
                f"{last_path}: the settings differ from the interrupted run ({', '.join(diff[:5])}); "
                "resume with the same options, or start over with --force"
            )
        module.load_state_dict(ckpt["model"]["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        stopper.load(ckpt["early_stopping"])
        seeding.set_rng_state(ckpt["rng"])
        history = list(ckpt["history"])
        best_metric, best_epoch = ckpt["best_metric"], int(ckpt["best_epoch"])
        start = int(ckpt["epoch"])
        if rt.is_main:  # the log is rebuilt from the checkpoint: lines of a lost epoch disappear
            write_text(metrics_path, _jsonl(history))
        if ckpt.get("finished"):
            return FitResult(float(best_metric), best_epoch, start, bool(ckpt.get("stopped_early")), history)
    elif rt.is_main:
        write_text(metrics_path, "")
    logger = open_logger(cfg.log if rt.is_main else "none", out_dir, purge_step=start + 1 if start else None)

    model: nn.Module = module
    if rt.distributed:
        model = nn.parallel.DistributedDataParallel(
            module, device_ids=[rt.device.index] if rt.device.type == "cuda" else None
        )
    if rt.compile:
        model = torch.compile(model)

    def validate() -> dict[str, float]:
        if rt.distributed:
            # DDP copies rank 0's buffers at each forward, so after the last step every rank holds
            # BatchNorm statistics updated by its own last batch; validate (and save) rank 0's.
            for buf in module.buffers():
                torch.distributed.broadcast(buf, src=0)
        module.eval()
        with torch.no_grad(), rt.autocast():
            return task.validate(module, rt)

    def keep_if_best(val: dict[str, float], epoch: int, batch: int) -> None:
        nonlocal best_metric, best_epoch
        metric = float(val[cfg.monitor])
        if _better(metric, best_metric, cfg.mode):
            best_metric, best_epoch = metric, epoch
            if rt.is_main:
                spec = {**task.model_spec(), "state_dict": module.state_dict()}
                save_checkpoint(best_path, {"model": spec, "epoch": epoch, "batch": batch, "metric": metric,
                                            "monitor": cfg.monitor})

    stopped = False
    epoch = start
    for epoch in range(start + 1, cfg.epochs + 1):
        # Dropout and any global draw: a function of (seed, epoch, rank) only.
        seeding.seed_everything(cfg.seed, epoch, rt.rank, seeding.STREAM_GLOBAL)
        if hasattr(task, "set_epoch"):
            task.set_epoch(epoch)  # epoch-dependent task behaviour (the online probe) survives --resume
        gen = seeding.generator(cfg.seed, epoch, rt.rank, seeding.STREAM_AUGMENT, device=rt.device)
        steps = batches(sampler.epoch(epoch), cfg.batch_size) if own_batches is None else own_batches(epoch)
        module.train()
        val, validations = None, 0
        loss_sum = torch.zeros((), dtype=torch.float64, device=rt.device)
        seen = 0
        t0 = last_report = time.perf_counter()
        for i, positions in enumerate(steps):
            with rt.autocast():
                loss, n = task.train_step(model, positions, gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if not per_epoch:
                scheduler.step()
            loss_sum += loss.detach().double() * n
            seen += n
            if cfg.val_every and (i + 1) % cfg.val_every == 0 and i + 1 < len(steps):
                val = validate()
                validations += 1
                keep_if_best(val, epoch, i + 1)
                module.train()
            now = time.perf_counter()
            if progress is not None and rt.is_main and (now - last_report > 0.5 or i == len(steps) - 1):
                last_report = now
                mean = float(loss_sum) / max(seen, 1)
                if not rt.distributed and not math.isfinite(mean):
                    _non_finite(mean, epoch, cfg, out_dir, history)
                progress(Progress(epoch, cfg.epochs, i + 1, len(steps), loss=mean,
                                  samples_per_s=seen * rt.world_size / max(now - t0, 1e-9)))
        train_time = time.perf_counter() - t0
        if per_epoch:
            scheduler.step()
        totals = torch.stack([loss_sum, torch.tensor(float(seen), dtype=torch.float64, device=rt.device)])
        if rt.distributed:
            torch.distributed.all_reduce(totals)
        train_loss = float(totals[0] / totals[1].clamp(min=1))
        if not math.isfinite(train_loss):
            _non_finite(train_loss, epoch, cfg, out_dir, history)

        # With val_every, batches after an epoch's last multiple of N are not validated (as in
        # Lightning) unless the epoch had no validation at all (fewer than N batches).
        if val is None or not cfg.val_every or len(steps) % cfg.val_every == 0:
            val = validate()
            validations += 1
            keep_if_best(val, epoch, len(steps))
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "lr": optimizer.param_groups[0]["lr"],
            **{k: float(v) for k, v in val.items()},
            "time_s": round(train_time, 3),
            "samples_per_s": round(float(totals[1]) / max(train_time, 1e-9), 2),
            **({"validations": validations} if cfg.val_every else {}),
        }
        history.append(record)
        stopped = stopper.update(float(val[cfg.monitor]))
        finished = stopped or epoch == cfg.epochs
        if rt.is_main:
            spec = {**task.model_spec(), "state_dict": module.state_dict()}
            save_checkpoint(
                last_path,
                {
                    "model": spec,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "early_stopping": stopper.state(),
                    "rng": seeding.rng_state(),
                    "epoch": epoch,
                    "best_metric": best_metric,
                    "best_epoch": best_epoch,
                    "history": history,
                    "config": config_record,
                    "finished": finished,
                    "stopped_early": stopped,
                },
            )
            with disk_full_as_error(metrics_path), open(metrics_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            logger.log_scalars(epoch, {k: v for k, v in record.items() if k != "epoch"})
        rt.barrier()
        if progress is not None and rt.is_main:
            progress(Progress(epoch, cfg.epochs, len(steps), len(steps), loss=train_loss, metrics=val,
                              samples_per_s=record["samples_per_s"], done=True))
        if stopped:
            break
    logger.close()
    if best_metric is None:
        best_metric = math.nan
    return FitResult(float(best_metric), best_epoch, epoch, stopped, history)


def _flatten(d: Any, prefix: str = "") -> dict:
    """Nested dict -> {"a.b": value} for readable config differences."""
    if dataclasses.is_dataclass(d):
        d = asdict(d)
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def _non_finite(value: float, epoch: int, cfg: FitConfig, out_dir: Path, history: list[dict]) -> None:
    kept = (
        f"the last good checkpoint (epoch {history[-1]['epoch']}) is kept in {out_dir / LAST}"
        if history
        else "no checkpoint had been written yet"
    )
    raise UserError(
        f"{out_dir}: the training loss became {value} in epoch {epoch}; stopped, {kept}; "
        f"lower the learning rate (e.g. --lr {cfg.lr / 10:g}) and run again with --force"
    )


def metrics_without_timing(record: dict) -> dict:
    """A ``metrics.jsonl`` record without its wall-clock fields (for comparing runs)."""
    return {k: v for k, v in record.items() if k not in _TIMING_KEYS}
