"""The fine-tuning recipe (Appendix A.3), shared by ``rconf`` probes, ``finetune`` and the baselines.

Adam at a constant learning rate chosen from {1e-2, 1e-3, 1e-4} on the validation metric
with the first seed (2022); weighted cross-entropy (α = 0.1 / 2) and class-balanced sampling
(×0.5 / ×5) for binary tasks, plain cross-entropy for multiclass ones; λ1 = λ2 = 5 on AMF's
auxiliary losses (eq. 14, the weights each fusion declares); early stopping after 10 epochs without a validation improvement
larger than 0.0002; the best validation epoch is kept (``best.pt``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from amfmedit.errors import UserError
from amfmedit.io import read_json, write_json
from amfmedit.models import from_checkpoint, losses, model_config
from amfmedit.stages.common import ProgressFactory, jsonable
from amfmedit.stages.configs import AUGMENT_RATE_IMAGE_ONLY, AUGMENT_RATE_MULTIMODAL, Recipe
from amfmedit.stages.kinds import Metric, kind_of
from amfmedit.train import rundir, seeding
from amfmedit.train.augment import preset
from amfmedit.train.checkpoint import BEST, LAST, load_checkpoint
from amfmedit.train.engine import FitConfig, FitResult, fit
from amfmedit.train.inputs import DeviceData
from amfmedit.train.runtime import Runtime
from amfmedit.train.tasks import SupervisedTask


def aux_weights_of(model: nn.Module, recipe: Recipe) -> dict[str, float]:
    """Eq. 14's weights: what the model's fusion declares (``aux_weights``), the recipe's overrides on top."""
    declared = dict(getattr(getattr(model, "fusion", None), "aux_weights", {}) or {})
    return {**declared, **{k: v for k, v in recipe.aux_weights.items() if k in declared}}


def make_loss(recipe: Recipe, aux_weights: dict[str, float], kind) -> Callable:
    """``(output, targets, aux) -> loss``: the kind's loss (eq. 12 or 13 for classification, or the one
    ``--loss`` chose) plus the weighted auxiliary losses (eq. 14)."""
    head_loss = kind.training_loss(recipe.weights, recipe.loss_choice)

    def loss(output: torch.Tensor, targets: torch.Tensor, aux: dict) -> torch.Tensor:
        return losses.finetune_loss(head_loss(output, targets), aux, aux_weights)

    return loss


def augment_for(use_image: bool, use_tabular: bool, channels: int, recipe: Recipe):
    if not use_image:
        return None
    default = AUGMENT_RATE_MULTIMODAL if use_tabular else AUGMENT_RATE_IMAGE_ONLY  # NOTE[paper]: see configs
    rate = recipe.augment_rate if recipe.augment_rate is not None else default
    return preset("finetune", channels).with_rate(rate)


@dataclass
class Trained:
    """One finished training of a classifier."""

    out_dir: Path
    lr: float
    seed: int
    best_val: float
    best_epoch: int
    epochs_run: int
    history: list[dict] = field(default_factory=list)


def train_one(
    build: Callable[[], nn.Module],
    *,
    dataset,
    data: DeviceData,
    recipe: Recipe,
    lr: float,
    seed: int,
    use_image: bool,
    use_tabular: bool,
    out_dir: Path,
    rt: Runtime,
    resume: bool,
    progress: ProgressFactory,
    title: str,
    extra_config: dict,
    log: str = "none",
    modality_dropout: float = 0.0,
) -> Trained:
    """Train one classifier in ``out_dir`` (created by the caller); the model is built under ``seed``
    (``modality_dropout``: :class:`~amfmedit.train.tasks.SupervisedTask`'s, for fusion models)."""
    schema = dataset.schema
    kind = kind_of(schema)
    seeding.seed_everything(seed, seeding.STREAM_INIT)  # head / fusion initialisation: a function of the seed
    model = build()
    metric = kind.headline
    task = SupervisedTask(
        model=model,
        loss=make_loss(recipe, aux_weights_of(model, recipe), kind),
        data=data,
        use_image=use_image,
        augment=augment_for(use_image, use_tabular, schema.image.channels, recipe),
        kind=kind,
        channels_last=rt.channels_last,
        eval_batch_size=max(recipe.batch_size, 2),
        spec=model_config(model),
        modality_dropout=modality_dropout,
    )
    cfg = FitConfig(
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr=lr,
        weight_decay=recipe.weight_decay,
        weight_decay_scope=recipe.weight_decay_scope,
        optimizer=recipe.optimizer,
        # NOTE[paper]: Appendix A.3 names no schedule for fine-tuning and the reference code
        # returns the optimizer without its scheduler, i.e. a constant learning rate.
        schedule="constant",
        warmup_epochs=0,
        monitor=f"val_{metric.key}",
        mode=metric.mode,
        patience=recipe.patience,
        min_delta=recipe.min_delta,
        seed=seed,
        class_weights=list(recipe.sampler_weights) or None,
        val_every=recipe.val_every,
        log=log,
    )
    res: FitResult = fit(
        task, cfg, rt, out_dir, resume=resume, progress=progress(title, f"val_{metric.key}"),
        extra_config={**extra_config, "recipe": jsonable(recipe), "lr": lr, "seed": seed},
    )
    return Trained(out_dir, lr, seed, res.best_metric, res.best_epoch, res.epochs_run, res.history)


def _fmt_lr(lr: float) -> str:
    return f"lr{lr:g}"


def select_lr(
    train: Callable[[float, Path, bool], Trained],
    *,
    search_dir: Path,
    lrs: tuple[float, ...],
    rt: Runtime,
    resume: bool,
    metric: Metric,
) -> tuple[float, Trained, dict]:
    """Train once per learning rate in ``search_dir/lr<lr>/`` and pick the best validation ``metric``
    (the prediction kind's headline, which says whether higher is better).

    ``train(lr, out_dir, resume)`` trains one model. Finished sub-runs are reused (their
    ``COMPLETE`` marker holds the result), unfinished ones continue with ``resume``.
    Returns the chosen learning rate, its training and the selection record.
    """
    results: dict[float, Trained] = {}
    for lr in lrs:
        sub = search_dir / _fmt_lr(lr)
        done = sub / rundir.MARKER
        if done.is_file():
            rec = read_json(done)
            results[lr] = Trained(sub, lr, int(rec["seed"]), float(rec["best_val"]), int(rec["best_epoch"]),
                                  int(rec["epochs_run"]))
            continue
        has_ckpt = (sub / LAST).is_file()
        rt.barrier()  # every rank has read the folder before rank 0 changes it
        if rt.is_main:
            if sub.exists() and not (resume and has_ckpt):
                rundir.remove_tree(sub)
            sub.mkdir(parents=True, exist_ok=True)
        rt.barrier()
        trained = train(lr, sub, resume and has_ckpt)
        if rt.is_main:
            rundir.mark_complete(sub, {"seed": trained.seed, "lr": lr, "best_val": trained.best_val,
                                       "best_epoch": trained.best_epoch, "epochs_run": trained.epochs_run})
        rt.barrier()
        results[lr] = trained
    finite = {lr: t for lr, t in results.items() if math.isfinite(t.best_val)}
    if not finite:
        rt.barrier()
        if rt.is_main:  # nothing here can be chosen or resumed: leave no half-made search behind
            rundir.remove_tree(search_dir)
        raise UserError(f"{search_dir}: no learning rate gave a finite validation metric (the search was removed); "
                        "check that the validation split has both classes")
    # Ties go to the earlier (larger) learning rate in the listed order.
    best_lr = max(finite, key=lambda lr: (metric.rank(finite[lr].best_val), -list(lrs).index(lr)))
    record = {"chosen_lr": best_lr, "val": {f"{lr:g}": results[lr].best_val for lr in lrs}}
    if rt.is_main:
        write_json(search_dir / "selection.json", record)
    return best_lr, results[best_lr], record


def check_selectable(dataset, split: str = "val", rows=None) -> None:
    """Model selection needs a defined validation metric (e.g. AUC needs both classes in ``split``).

    Called before any folder is made, so a cohort whose validation split cannot select a model
    fails with one line instead of after a learning-rate search has written its candidates.
    ``rows``: the split's rows that are scored (default all; the R_conf probes: the complete ones).
    """
    kind = kind_of(dataset.schema)
    targets = kind.targets(dataset)[dataset.indices(split) if rows is None else rows]
    if len(targets) == 0:
        raise UserError(f"{dataset.root}: the {split} split is empty: nothing to select the learning rate and the "
                        "best epoch on; prepare the data with a validation split")
    why = kind.selectable(targets)
    if why is not None:
        raise UserError(f"{dataset.root}: the {split} split ({len(targets)} rows) {why}: the validation "
                        f"{kind.headline.title} that selects the learning rate and the best epoch is undefined; "
                        "prepare the data with a split where it is defined")


def best_model(stage_dir: Path):
    """The model of a finished training at its best validation epoch (``best.pt``)."""
    ckpt = load_checkpoint(stage_dir / BEST, hint=f"run the training of {stage_dir.name} again with --force")
    return from_checkpoint(ckpt["model"]), ckpt
