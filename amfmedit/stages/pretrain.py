"""``pretrain``: image-tabular contrastive pretraining (§3.4, Appendix A.2).

ResNet-50 and a tabular encoder learn from augmented image / corrupted tabular pairs with
the ITC loss (eq. 11); validation uses clean pairs. Adam with weight decay 1e-4, learning
rate 3e-4 for binary (OL3I-like) and 3e-3 for multiclass (DVM-like) data, 10 warm-up epochs
and cosine annealing over 500 epochs. Writes ``<run>/pretrain/``; later stages read the
encoders from its ``last.pt`` (the reference fine-tunes from the last epoch's checkpoint).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from amfmedit.data import load_prepared
from amfmedit.env import environment
from amfmedit.errors import UserError
from amfmedit.models import (
    TABULAR_ENCODERS,
    ContrastiveModel,
    build_image_encoder,
    build_tabular_encoder,
    from_checkpoint,
    model_config,
)
from amfmedit.models.image import parse_image_weights
from amfmedit.models.losses import itc_loss
from amfmedit.paths import runs_dir
from amfmedit.io import read_json
from amfmedit.stages import names, sanity
from amfmedit.stages.classify import check_selectable
from amfmedit.stages.common import (
    CONFIG_TOML,
    ProgressFactory,
    RunOptions,
    jsonable,
    no_progress,
    runtime_for,
    write_stage_config,
)
from amfmedit.stages.configs import BLOCK_OPTIONS, READOUT_OPTION, STACKINGS, PretrainConfig
from amfmedit.stages.kinds import kind_of
from amfmedit.stages.lifecycle import finish_stage
from amfmedit.train import rundir
from amfmedit.train.augment import preset
from amfmedit.train.checkpoint import LAST, load_checkpoint
from amfmedit.train.corruption import TabularCorruptor
from amfmedit.train.engine import FitConfig, fit
from amfmedit.train.inputs import DeviceData
from amfmedit.train.seeding import STREAM_INIT, seed_everything
from amfmedit.train.tasks import ContrastiveTask

STAGE = names.PRETRAIN


@dataclass
class PretrainResult:
    run: str
    stage_dir: Path
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    chance_loss: float = math.nan  # the validation ITC loss of embeddings that carry nothing, log(batch)
    warnings: list[str] = field(default_factory=list)


def tabular_kwargs(cfg: PretrainConfig, missing_features: list[int] | None = None) -> dict:
    """The tabular encoder's keyword arguments set by ``cfg`` (its declared width argument, its readout,
    how it reads missing values); ``missing_features``: the features a token encoder reads as missing
    (``PreparedDataset.missing_features("train")``; None: every feature)."""
    cls = TABULAR_ENCODERS[cfg.tabular_encoder]
    kw = {} if cfg.tabular_dim is None else {cls.width_argument: cfg.tabular_dim}
    kw["missing"] = cfg.missing
    if cfg.missing == "token":
        kw["missing_features"] = missing_features
    if cfg.ft_mamba_pooling is not None:
        kw[READOUT_OPTION] = cfg.ft_mamba_pooling
    for name, (argument, _) in BLOCK_OPTIONS.items():
        value = getattr(cfg, name)
        if value is not None:
            kw[argument] = STACKINGS[value] if name == "stacking" else value
    return kw


def image_encoder(name: str, schema, weights=None):
    """The image encoder ``name`` (``IMAGE_ENCODERS``) for the prepared images of ``schema``."""
    try:
        return build_image_encoder(name, in_channels=schema.image.channels, weights=weights,
                                   geometry=schema.image.geometry)
    except ValueError as exc:
        raise UserError(f"--image-arch {name}: {exc}") from None


def build_contrastive(schema, cfg: PretrainConfig, missing_features: list[int] | None = None):
    """ResNet + tabular encoder + projection heads for ``schema``'s features and channels
    (``missing_features``: as for :func:`tabular_kwargs`)."""
    image = image_encoder(cfg.image_arch, schema, weights=parse_image_weights(cfg.image_weights))
    tab = build_tabular_encoder(
        cfg.tabular_encoder, n_cont_features=schema.n_cont, cat_cardinalities=schema.cardinalities,
        **tabular_kwargs(cfg, missing_features),
    )
    return ContrastiveModel(image, tab, d_proj=cfg.projection_dim)


def _open_or_create_run(data: str | None, opts: RunOptions, cfg: PretrainConfig, rt) -> rundir.Run:
    if opts.resume:
        run = rundir.open_run(opts.runs_dir, opts.run)
        if data is not None and Path(str(data)).name != Path(run.data).name:
            raise UserError(f"--resume: run {run.name} was started on {run.data!r}, not {data!r}; pass --run or drop --data")
        return run
    if data is None:
        raise UserError("pretrain needs --data NAME (a prepared dataset; see `amfmedit prepare`)")
    if opts.run is not None and (runs_dir(opts.runs_dir) / opts.run / rundir.RUN_FILE).is_file():
        run = rundir.open_run(opts.runs_dir, opts.run)
        if Path(run.data).name != Path(str(data)).name:
            raise UserError(f"--run {opts.run} holds data {run.data!r}, not {data!r}; choose another run name")
        return run
    name = opts.run
    if name is None and rt.is_main:
        name = rundir.new_run_name(opts.runs_dir, str(data), cfg.tabular_encoder)
    name = rt.broadcast_object(name)
    if rt.is_main:
        rundir.create_run(opts.runs_dir, name, data=str(data), data_dir=opts.data_dir, environment=environment())
    rt.barrier()
    return rundir.open_run(opts.runs_dir, name)


def pretrain(
    data: str | None, cfg: PretrainConfig, opts: RunOptions, *, progress: ProgressFactory = no_progress
) -> PretrainResult:
    """Run (or ``--resume``) contrastive pretraining; returns where it went and how it ended.

    Every input is checked and loaded before a run or stage folder exists: the settings, the
    dataset and its splits, the logging backend (:class:`RunOptions`) and the model itself,
    built with its ``--image-weights``, so a refused command leaves nothing behind.
    """
    cfg.validate()
    rt = runtime_for(opts)
    existing = data is None and opts.run is not None and (runs_dir(opts.runs_dir) / opts.run / rundir.RUN_FILE).is_file()
    run = None
    if opts.resume or existing:  # the run's own data (a second pretraining, --missing, needs no --data)
        run = _open_or_create_run(data, opts, cfg, rt) if opts.resume else rundir.open_run(opts.runs_dir, opts.run)
        ds = load_prepared(run.data, opts.data_dir or run.data_dir)
    else:
        if data is None:
            raise UserError("pretrain needs --data NAME (a prepared dataset; see `amfmedit prepare`), --run NAME of "
                            "an existing run (a second pretraining, --missing), or --resume to continue an "
                            "interrupted pretraining")
        ds = load_prepared(data, opts.data_dir)  # unknown --data fails here, before any folder exists
    check_pairs(ds)
    check_selectable(ds)  # every stage after this one selects its models on the validation split
    schema = ds.schema
    lr = cfg.lr if cfg.lr is not None else kind_of(schema).pretrain_lr
    cfg = replace(cfg, lr=lr)
    seed_everything(cfg.seed, STREAM_INIT)  # initial weights are a function of the seed
    # loads --image-weights: a bad file is refused here, before any folder exists
    model = build_contrastive(schema, cfg, ds.missing_features("train"))
    if run is None:
        run = _open_or_create_run(data, opts, cfg, rt)
    stage = stage_for(run, cfg.missing)  # pretrain/, or the run's second pretraining pretrain-<missing>/
    with rundir.stage_lock(run, stage, rt=rt):  # one writer: a second process is refused and touches nothing
        stage_dir = rundir.begin_stage(run, stage, force=opts.force, resume=opts.resume, rt=rt)
        if rt.is_main:
            write_stage_config(stage_dir, cfg, rt, {"data": run.data}, toml_extra={"data": Path(run.data).name})
            run.record_command(stage, opts.argv)

        # contrastive pairs need both sides: rows without an image or a table wait for fine-tuning
        dd = DeviceData(ds, device=rt.device, residency=opts.images_in).with_complete_rows()
        train_rows = dd.rows("train")
        idx = torch.as_tensor(train_rows, device=rt.device)
        corruptor = TabularCorruptor(
            x_cont=dd.x_cont.index_select(0, idx), x_cat=dd.x_cat.index_select(0, idx), rate=cfg.corruption_rate,
            missing=dd.missing.index_select(0, idx), mode=cfg.corruption,
        )
        task = ContrastiveTask(
            model=model,
            loss=functools.partial(itc_loss, temperature=cfg.temperature),
            data=dd,
            augment=preset("pretrain", schema.image.channels).with_rate(cfg.augment_rate),
            corruptor=corruptor,
            channels_last=rt.channels_last,
            eval_batch_size=max(cfg.batch_size, 2),
            spec=model_config(model),
            probe_every=cfg.probe_every,
            embed=lambda m, img: m.image_encoder(img),
        )
        fit_cfg = FitConfig(
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=lr,
            weight_decay=cfg.weight_decay,
            weight_decay_scope=cfg.weight_decay_scope,
            optimizer=cfg.optimizer,
            schedule="cosine",
            schedule_unit=cfg.schedule_unit,
            warmup_epochs=cfg.warmup_epochs,
            monitor="val_loss",
            mode="min",
            patience=None,  # the reference pretrains for a fixed number of epochs
            seed=cfg.seed,
            log=opts.log,
        )
        result = fit(
            task, fit_cfg, rt, stage_dir, resume=opts.resume, progress=progress(stage, "val_loss"),
            extra_config={"pretrain": jsonable(cfg), "data": Path(run.data).name},
        )
        chance = sanity.itc_chance(len(dd.rows("val")), task.eval_batch_size)
        warns = sanity.pretrain_warnings(result.history, epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs, chance=chance)
        finish_stage(run, stage_dir, {"best_val_loss": result.best_metric, "epochs": result.epochs_run,
                                      "chance_val_loss": chance, "warnings": warns, "missing": cfg.missing,
                                      "complete_pairs": {s: len(dd.rows(s)) for s in ("train", "val")}}, rt=rt)
        return PretrainResult(run.name, stage_dir, result.best_metric, result.best_epoch, result.epochs_run, chance, warns)


#: what a pretraining record written before a setting existed stands for (its encoders imputed)
LEGACY_PRETRAIN = {"missing": "impute", "corruption": "swap"}


def check_pairs(ds) -> None:
    """Pretraining contrasts complete pairs only: at least 2 in each of train and val, else one line
    with the counts (a cohort kept with rows without an image can have too few)."""
    counts = {}
    for split in ("train", "val"):
        rows = ds.indices(split)
        counts[split] = (len(rows), int(ds.complete[rows].sum()), int((~ds.image_present[rows]).sum()),
                         int((~ds.table_present[rows]).sum()))
    if all(c[1] >= 2 for c in counts.values()):
        return
    text = "; ".join(f"{s} {n} rows, {k} complete ({a} without an image, {t} without a table)"
                     for s, (n, k, a, t) in counts.items())
    raise UserError(f"{ds.root}: pretraining contrasts complete pairs (an image and a table) and needs at least 2 in "
                    f"train and in val: {text}; prepare more patients with both, or train supervised baselines "
                    "(`amfmedit finetune --fusion none`), which use every row")


def run_missing(run: rundir.Run) -> str | None:
    """How the encoders of the run's ``pretrain/`` read missing values (``--missing``; impute for a run
    pretrained before the setting existed); None before pretraining has started."""
    path = run.stage(STAGE) / rundir.CONFIG_FILE
    if not path.is_file():
        return None
    return str((read_json(path).get("config") or {}).get("missing", LEGACY_PRETRAIN["missing"]))


def missing_tag(run: rundir.Run, missing: str | None) -> str | None:
    """``missing`` when it differs from the mode of the run's ``pretrain/`` (stage names then carry
    it), else None."""
    mode = run_missing(run)
    return None if missing is None or mode in (None, missing) else missing


def stage_for(run: rundir.Run, missing: str | None = None) -> str:
    """The pretrain stage of encoders reading missing values as ``missing`` (None: the run's own):
    ``pretrain/``, or ``pretrain-<missing>/``, a run's second pretraining for comparing the modes."""
    return names.pretrain_stage(missing_tag(run, missing))


def second_pretrain_command(run: rundir.Run, missing: str) -> str:
    """The command that pretrains the run's encoders again reading missing values as ``missing``, with
    every other setting of its ``pretrain/`` (its config.toml), so the two modes differ in nothing else."""
    return f"amfmedit pretrain --run {run.name} --config {run.stage(STAGE) / CONFIG_TOML} --missing {missing}"


def load_pretrained(run: rundir.Run, missing: str | None = None):
    """The pretrained ``ContrastiveModel`` of a run (``last.pt`` of :func:`stage_for` ``missing``) and its
    config."""
    name = stage_for(run, missing)
    command = f"amfmedit pretrain --data {run.data}" if name == STAGE else second_pretrain_command(run, missing)
    stage = rundir.require_stage(run, name, command)
    # the mode is named: without --missing the default (token) would start pretrain-token/ on an impute run
    redo = f"amfmedit pretrain --run {run.name} --config {stage / CONFIG_TOML} --missing {missing or run_missing(run)}"
    ckpt = load_checkpoint(stage / LAST, hint=f"run `{redo} --force` to redo it")
    model = from_checkpoint(ckpt["model"])
    cfg_dict = {**LEGACY_PRETRAIN, **dict(ckpt["config"]["stage"]["pretrain"])}
    return model, PretrainConfig(**cfg_dict)
