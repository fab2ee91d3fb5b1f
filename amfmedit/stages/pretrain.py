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
    IMAGE_ENCODERS,
    TABULAR_ENCODERS,
    ContrastiveModel,
    build_image_encoder,
    build_tabular_encoder,
    from_checkpoint,
    model_config,
    options_of,
)
from amfmedit.models.image import parse_image_weights
from amfmedit.models.losses import ITC_TEMPERATURE, itc_loss
from amfmedit.paths import runs_dir
from amfmedit.stages import names, sanity
from amfmedit.stages.classify import check_selectable
from amfmedit.stages.common import (
    ProgressFactory,
    RunOptions,
    check_choice,
    jsonable,
    no_progress,
    runtime_for,
    write_stage_config,
)
from amfmedit.stages.kinds import kind_of
from amfmedit.stages.lifecycle import finish_stage
from amfmedit.train import rundir
from amfmedit.train.augment import preset
from amfmedit.train.checkpoint import LAST, load_checkpoint
from amfmedit.train.corruption import TabularCorruptor
from amfmedit.train.engine import FitConfig, fit
from amfmedit.train.inputs import DeviceData
from amfmedit.train.optim import OPTIMIZERS
from amfmedit.train.seeding import STREAM_INIT, seed_everything
from amfmedit.train.tasks import ContrastiveTask

STAGE = names.PRETRAIN
READOUT_OPTION = "pooling"  # the encoder argument --ft-mamba-pooling sets (encoders that have a readout choice)
STACKINGS = {"residual": True, "bare": False}  # --stacking -> the encoder's ``residual`` argument
# config field -> (the encoder argument it sets, its option)
BLOCK_OPTIONS = {"d_state": ("d_state", "--d-state"), "expand": ("expand", "--expand"),
                 "stacking": ("residual", "--stacking")}


@dataclass
class PretrainConfig:
    """What pretraining computes (Appendix A.2 defaults)."""

    tabular_encoder: str = "ft_mamba"
    tabular_dim: int | None = None  # D_tab (the encoder's width); None: 64 for FT-*, 256 for MLP/ResNet
    ft_mamba_pooling: str | None = None  # FT-Mamba readout: avg (reference code, default) or cls (paper text)
    # FT-Mamba's blocks (None: the encoder's own default, d_state 16 and residual pre-norm stacking;
    # the authors' code: d_state 128 and bare blocks, `--recipe paper`)
    d_state: int | None = None
    expand: int | None = None
    stacking: str | None = None  # "residual" (x + Mamba(LayerNorm(x))) or "bare" (Mamba(x), the reference code)
    image_arch: str = "resnet50"  # resnet18 only for quick experiments and tests
    image_weights: str | None = None  # None: random initialisation (the paper); "imagenet" or a state-dict path
    epochs: int = 500
    batch_size: int = 32  # the reference configuration's pretraining batch
    lr: float | None = None  # None: 3e-4 (binary task) or 3e-3 (multiclass)
    weight_decay: float = 1e-4
    optimizer: str = "adam"  # adam (the paper: coupled L2 decay) or adamw (decoupled)
    warmup_epochs: int = 10
    temperature: float = ITC_TEMPERATURE
    projection_dim: int = 128
    augment_rate: float = 0.95
    corruption_rate: float = 0.3
    probe_every: int = 0  # online logistic-regression probe every N epochs (0: off)
    seed: int = 2022

    def validate(self) -> None:
        check_choice(self.tabular_encoder, list(TABULAR_ENCODERS), "--tabular-encoder")
        check_choice(self.image_arch, list(IMAGE_ENCODERS), "--image-arch")
        check_choice(self.optimizer, OPTIMIZERS, "--optimizer")
        parse_image_weights(self.image_weights)  # an unknown file is an error before any folder exists
        for name in ("augment_rate", "corruption_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise UserError(f"--{name.replace('_', '-')} {v}: must lie in [0, 1]")
        if self.lr is not None and not self.lr > 0:
            raise UserError(f"--lr {self.lr}: the learning rate must be positive")
        if self.ft_mamba_pooling is not None:
            check_choice(self.ft_mamba_pooling, ("avg", "cls"), "--ft-mamba-pooling")
            if READOUT_OPTION not in options_of(TABULAR_ENCODERS[self.tabular_encoder]):
                having = [k for k, c in TABULAR_ENCODERS.items() if READOUT_OPTION in options_of(c)]
                raise UserError(f"--ft-mamba-pooling {self.ft_mamba_pooling}: only for --tabular-encoder "
                                f"{' or '.join(having)} (not {self.tabular_encoder})")
        if self.tabular_dim is not None and self.tabular_dim < 1:
            raise UserError(f"--tabular-dim {self.tabular_dim}: must be a positive width")
        for name, (argument, option) in BLOCK_OPTIONS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if argument not in options_of(TABULAR_ENCODERS[self.tabular_encoder]):
                having = [k for k, c in TABULAR_ENCODERS.items() if argument in options_of(c)]
                raise UserError(f"{option} {value}: only for --tabular-encoder {' or '.join(having)} "
                                f"(not {self.tabular_encoder})")
        if self.stacking is not None:
            check_choice(self.stacking, list(STACKINGS), "--stacking")
        for name in ("d_state", "expand"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise UserError(f"--temperature {self.temperature}: τ of eq. 11 must be a positive finite number")
        for name in ("epochs", "batch_size", "projection_dim"):
            v = getattr(self, name)
            if v < (2 if name == "batch_size" else 1):
                raise UserError(f"--{name.replace('_', '-')} {v}: must be at least {2 if name == 'batch_size' else 1}")
        if self.warmup_epochs < 0 or self.probe_every < 0:
            raise UserError(f"--warmup-epochs {self.warmup_epochs} / --probe-every {self.probe_every}: must be >= 0")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise UserError(f"--weight-decay {self.weight_decay}: must be a finite number >= 0")


@dataclass
class PretrainResult:
    run: str
    stage_dir: Path
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    chance_loss: float = math.nan  # the validation ITC loss of embeddings that carry nothing, log(batch)
    warnings: list[str] = field(default_factory=list)


def tabular_kwargs(cfg: PretrainConfig) -> dict:
    """The tabular encoder's keyword arguments set by ``cfg`` (its declared width argument, its readout)."""
    cls = TABULAR_ENCODERS[cfg.tabular_encoder]
    kw = {} if cfg.tabular_dim is None else {cls.width_argument: cfg.tabular_dim}
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


def build_contrastive(schema, cfg: PretrainConfig):
    """ResNet + tabular encoder + projection heads for ``schema``'s features and channels."""
    image = image_encoder(cfg.image_arch, schema, weights=parse_image_weights(cfg.image_weights))
    tab = build_tabular_encoder(
        cfg.tabular_encoder, n_cont_features=schema.n_cont, cat_cardinalities=schema.cardinalities, **tabular_kwargs(cfg)
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
    if opts.resume:  # settings come from the interrupted run; only its data is needed first
        run = _open_or_create_run(data, opts, cfg, rt)
        ds = load_prepared(run.data, opts.data_dir or run.data_dir)
    else:
        if data is None:
            raise UserError("pretrain needs --data NAME (a prepared dataset; see `amfmedit prepare`), or --resume "
                            "to continue an interrupted pretraining")
        ds = load_prepared(data, opts.data_dir)  # unknown --data fails here, before any folder exists
    schema = ds.schema
    if len(ds.indices("train")) < 2 or len(ds.indices("val")) < 2:
        raise UserError(f"{ds.root}: pretraining needs at least 2 train and 2 val rows")
    check_selectable(ds)  # every stage after this one selects its models on the validation split
    lr = cfg.lr if cfg.lr is not None else kind_of(schema).pretrain_lr
    cfg = replace(cfg, lr=lr)
    seed_everything(cfg.seed, STREAM_INIT)  # initial weights are a function of the seed
    model = build_contrastive(schema, cfg)  # loads --image-weights: a bad file is refused here
    if not opts.resume:
        run = _open_or_create_run(data, opts, cfg, rt)
    with rundir.stage_lock(run, STAGE, rt=rt):  # one writer: a second process is refused and touches nothing
        stage_dir = rundir.begin_stage(run, STAGE, force=opts.force, resume=opts.resume, rt=rt)
        if rt.is_main:
            write_stage_config(stage_dir, cfg, rt, {"data": run.data}, toml_extra={"data": Path(run.data).name})
            run.record_command(STAGE, opts.argv)

        dd = DeviceData(ds, device=rt.device, residency=opts.images_in)
        train_rows = dd.rows("train")
        idx = torch.as_tensor(train_rows, device=rt.device)
        corruptor = TabularCorruptor(
            x_cont=dd.x_cont.index_select(0, idx), x_cat=dd.x_cat.index_select(0, idx), rate=cfg.corruption_rate
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
            optimizer=cfg.optimizer,
            schedule="cosine",
            warmup_epochs=cfg.warmup_epochs,
            monitor="val_loss",
            mode="min",
            patience=None,  # the reference pretrains for a fixed number of epochs
            seed=cfg.seed,
            log=opts.log,
        )
        result = fit(
            task, fit_cfg, rt, stage_dir, resume=opts.resume, progress=progress(STAGE, "val_loss"),
            extra_config={"pretrain": jsonable(cfg), "data": Path(run.data).name},
        )
        chance = sanity.itc_chance(len(dd.rows("val")), task.eval_batch_size)
        warns = sanity.pretrain_warnings(result.history, epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs, chance=chance)
        finish_stage(run, stage_dir, {"best_val_loss": result.best_metric, "epochs": result.epochs_run,
                                      "chance_val_loss": chance, "warnings": warns}, rt=rt)
        return PretrainResult(run.name, stage_dir, result.best_metric, result.best_epoch, result.epochs_run, chance, warns)


def load_pretrained(run: rundir.Run):
    """The pretrained ``ContrastiveModel`` of a run (``pretrain/last.pt``) and its config."""
    stage = rundir.require_stage(run, STAGE, f"amfmedit pretrain --data {run.data}")
    ckpt = load_checkpoint(stage / LAST, hint=f"run `amfmedit pretrain --run {run.name} --force` to redo it")
    model = from_checkpoint(ckpt["model"])
    cfg_dict = dict(ckpt["config"]["stage"]["pretrain"])
    return model, PretrainConfig(**cfg_dict)
