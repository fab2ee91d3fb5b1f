"""The typed settings of every stage, torch-free: the CLI builds its ``--help`` from their defaults.

A default is written once, here, in the config it belongs to; ``--help`` shows it and a stage
runs with it. The stages import their config from here (``amfmedit.stages.finetune.FinetuneConfig``
is this module's class). Checks that need the model registries (a fusion registered at run time
is a valid ``--fusion``) import them inside ``validate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from amfmedit.errors import UserError, close_matches
from amfmedit.models.specs import D_OUT, FINAL_NORM_NAMES, MISSING_MODES, FOCAL_GAMMA, ITC_TEMPERATURE, NORMALISERS, STRATEGIES
from amfmedit.stages import names
from amfmedit.stages.kinds.base import LossChoice, Weights
from amfmedit.stages.baseline_models import BASELINES
from amfmedit.stages.names import NO_FUSION
from amfmedit.train.logging import LOG_KINDS, require_logger


# ----------------------------------------------------------------------------------------------
# where and how a stage runs
# ----------------------------------------------------------------------------------------------


PAPER_SEEDS = (2022, 2023, 2024, 2025, 2026)  # Appendix A.3: five seeds, the first one searches the lr


@dataclass
class RunOptions:
    """Where and how a stage runs (not what it computes: that is the stage config)."""

    runs_dir: str | None = None
    run: str | None = None
    data_dir: str | None = None
    device: str = "auto"
    compile: bool = False
    images_in: str = "auto"  # auto | device | host | stream
    resume: bool = False
    force: bool = False
    # keep every checkpoint (last.pt for continuing, each search candidate's); by default a finished
    # stage keeps what later stages load (amfmedit.train.retention)
    keep_checkpoints: bool = False
    log: str = "none"  # also log every metrics.jsonl scalar: none | tensorboard | mlflow (amfmedit.train.logging)
    argv: list[str] | None = None  # the command line to record in run.json (None: sys.argv)

    def __post_init__(self) -> None:
        check_choice(self.log, LOG_KINDS, "--log")
        require_logger(self.log)  # a missing backend package is refused before any folder exists


def check_choice(value, choices, option: str) -> None:
    if value not in choices:
        hint = close_matches(str(value), [str(c) for c in choices])
        raise UserError(
            f"{option} {value}: not one of {', '.join(map(str, choices))}" + (f"; did you mean {hint}?" if hint else "")
        )


# ----------------------------------------------------------------------------------------------
# the fine-tuning recipe (rconf probes, finetune, baselines; Appendix A.3)
# ----------------------------------------------------------------------------------------------


# NOTE[paper]: the reference augments multimodal fine-tuning with rate 0.95 (its
# augmentation_rate) and image-only training with 0.8 (eval_train_augment_rate).
AUGMENT_RATE_MULTIMODAL = 0.95
AUGMENT_RATE_IMAGE_ONLY = 0.8


@dataclass
class Recipe:
    """How a classifier is trained (Appendix A.3 defaults)."""

    epochs: int = 500
    batch_size: int = 128  # the reference fine-tuning batch
    lr: float | None = None  # None: chosen from ``lrs`` on validation with the first seed
    lrs: tuple[float, ...] = (1e-2, 1e-3, 1e-4)  # Appendix A.3: searched on validation with the first seed
    weight_decay: float = 0.0  # Appendix A.3 (cross-attention searched 1e-1..1e-4 in the reference)
    weight_decay_scope: str = "selective"  # not biases, norms, A_log, D; "all": the authors' Adam
    optimizer: str = "adam"  # adam (the paper) or adamw
    patience: int = 10  # Appendix A.3: early stopping after 10 epochs without improvement
    min_delta: float = 2e-4  # ... larger than 0.0002
    sampler_weights: tuple[float, ...] | None = None  # None: the prediction kind's (binary: ×0.5 / ×5, Appendix A.3)
    loss_weights: tuple[float, ...] | None = None  # None: the kind's (binary: α of eq. 12 = 0.1 / 2), else unweighted
    # None: the kind's own loss (classification: cross-entropy, eq. 12/13). "focal": the authors'
    # OL3I loss (--recipe paper); not our default because the paper's text gives eq. 12.
    loss: str | None = None
    focal_gamma: float = FOCAL_GAMMA  # γ of --loss focal (the authors' default, 1)
    # eq. 14: weights of a fusion's auxiliary losses by name, overriding what the fusion declares
    # (AMF: leakage λ1 = density λ2 = 5)
    aux_weights: dict[str, float] = field(default_factory=dict)
    augment_rate: float | None = None  # None: AUGMENT_RATE_MULTIMODAL with a tabular input, else AUGMENT_RATE_IMAGE_ONLY
    # validate after every N-th training batch (0: once per epoch). The authors' configurations
    # validate every 5 batches (Lightning's val_check_interval); ours once per epoch, as Appendix
    # A.3's early stopping counts epochs and a validation pass per epoch costs the least.
    val_every: int = 0

    def validate(self) -> None:
        from amfmedit.train.optim import DECAY_SCOPES, OPTIMIZERS

        if self.lr is not None and not self.lr > 0:
            raise UserError(f"--lr {self.lr}: the learning rate must be positive")
        if any(not lr > 0 for lr in self.lrs) or not self.lrs:
            raise UserError(f"--lrs {list(self.lrs)}: learning rates must be positive")
        if self.augment_rate is not None and not 0 <= self.augment_rate <= 1:
            raise UserError(f"--augment-rate {self.augment_rate}: must lie in [0, 1]")
        if self.val_every < 0:
            raise UserError(f"--val-every {self.val_every}: a number of training batches, or 0 for once per epoch")
        if self.patience < 1:
            raise UserError(f"--patience {self.patience}: must be at least 1")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"--optimizer {self.optimizer}: use {' or '.join(OPTIMIZERS)}")
        if self.weight_decay_scope not in DECAY_SCOPES:
            raise UserError(f"--weight-decay-scope {self.weight_decay_scope}: use {' or '.join(DECAY_SCOPES)}")
        if self.epochs < 1:
            raise UserError(f"--epochs {self.epochs}: must be at least 1")
        if self.batch_size < 2:
            raise UserError(f"--batch-size {self.batch_size}: must be at least 2")
        if self.weight_decay < 0 or not math.isfinite(self.weight_decay):
            raise UserError(f"--weight-decay {self.weight_decay}: must be a finite number >= 0")
        if not (self.focal_gamma >= 0 and math.isfinite(self.focal_gamma)):
            raise UserError(f"--focal-gamma {self.focal_gamma}: must be a finite number >= 0")
        for name, w in self.aux_weights.items():
            if not (math.isfinite(w) and w >= 0):
                raise UserError(f"auxiliary-loss weight {name}={w}: must be a finite number >= 0")

    def resolved(self, kind, schema) -> "Recipe":
        """Fill the kind's defaults (Appendix A.3 for binary tasks); check weight vectors against the kind."""
        default = kind.default_weights(schema)
        weights = Weights(sampler=tuple(self.sampler_weights if self.sampler_weights is not None else default.sampler),
                          loss=tuple(self.loss_weights if self.loss_weights is not None else default.loss))
        kind.check_weights(weights, schema)
        kind.check_loss(self.loss_choice)
        return replace(self, sampler_weights=weights.sampler, loss_weights=weights.loss)

    @property
    def weights(self) -> Weights:
        return Weights(sampler=tuple(self.sampler_weights or ()), loss=tuple(self.loss_weights or ()))

    @property
    def loss_choice(self) -> LossChoice:
        return LossChoice(self.loss, self.focal_gamma)


# ----------------------------------------------------------------------------------------------
# pretrain (Appendix A.2)
# ----------------------------------------------------------------------------------------------


READOUT_OPTION = "pooling"  # the encoder argument --ft-mamba-pooling sets (encoders that have a readout choice)
STACKINGS = {"residual": True, "bare": False}  # --stacking -> the encoder's ``residual`` argument
# config field -> (the encoder argument it sets, its option)
BLOCK_OPTIONS = {"d_state": ("d_state", "--d-state"), "expand": ("expand", "--expand"),
                 "stacking": ("residual", "--stacking"), "final_norm": ("final_norm", "--final-norm")}


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
    final_norm: str | None = None  # "layernorm" (torch's) or "mambular" ((x - mean) / (std + eps), the reference code)
    image_arch: str = "resnet50"  # resnet18 only for quick experiments and tests
    image_weights: str | None = None  # None: random initialisation (the paper); "imagenet" or a state-dict path
    epochs: int = 500
    batch_size: int = 32  # the reference configuration's pretraining batch
    lr: float | None = None  # None: the prediction kind's pretrain_lr (3e-4 binary, 3e-3 multiclass)
    weight_decay: float = 1e-4
    # "selective" (not biases, norms, A_log, D: mamba_ssm's hints) or "all" (the authors' Adam)
    weight_decay_scope: str = "selective"
    optimizer: str = "adam"  # adam (the paper: coupled L2 decay) or adamw (decoupled)
    warmup_epochs: int = 10
    # the warm-up + cosine schedule advances every "step" (from one warm-up increment) or every
    # "epoch" (from 0: the authors' pl_bolts scheduler under Lightning), amfmedit.train.optim
    schedule_unit: str = "step"
    temperature: float = ITC_TEMPERATURE
    projection_dim: int = 128
    augment_rate: float = 0.95
    corruption_rate: float = 0.3
    # how the tabular encoder reads missing values (docs/missing-data.md): "token" reads the mask
    # (measured: no cost under MCAR, about +1 AUC point under MNAR), "impute" the imputed values (the paper)
    missing: str = "token"
    # "swap": a corrupted cell takes another training row's value (SCARF, the paper); "missing": it is
    # marked missing (TIP's masking; token mode only). Swap acts on every encoder (docs/missing-data.md)
    corruption: str = "swap"
    probe_every: int = 0  # online logistic-regression probe every N epochs (0: off)
    seed: int = 2022

    def validate(self) -> None:
        from amfmedit.models import IMAGE_ENCODERS, TABULAR_ENCODERS, options_of
        from amfmedit.models.image import parse_image_weights
        from amfmedit.train.corruption import CORRUPTION_MODES
        from amfmedit.train.optim import DECAY_SCOPES, OPTIMIZERS, SCHEDULE_UNITS

        check_choice(self.tabular_encoder, list(TABULAR_ENCODERS), "--tabular-encoder")
        check_choice(self.image_arch, list(IMAGE_ENCODERS), "--image-arch")
        check_choice(self.optimizer, OPTIMIZERS, "--optimizer")
        check_choice(self.weight_decay_scope, DECAY_SCOPES, "--weight-decay-scope")
        check_choice(self.schedule_unit, SCHEDULE_UNITS, "--schedule-unit")
        check_choice(self.missing, MISSING_MODES, "--missing")
        check_choice(self.corruption, CORRUPTION_MODES, "--corruption")
        if self.corruption == "missing" and self.missing != "token":
            raise UserError(f"--corruption missing --missing {self.missing}: marking cells missing only corrupts an "
                            "encoder that reads the mask; use --missing token, or --corruption swap")
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
        if self.final_norm is not None:
            check_choice(self.final_norm, FINAL_NORM_NAMES, "--final-norm")
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


# ----------------------------------------------------------------------------------------------
# rconf (Appendix A.4)
# ----------------------------------------------------------------------------------------------


RCONF_SPLITS = ("val", "test")


@dataclass
class RconfConfig:
    split: str = "val"
    seed: int = PAPER_SEEDS[0]
    d_out: int = D_OUT  # AMF's D_out for the reported L_img / L_tab
    recipe: Recipe = field(default_factory=Recipe)
    # incomplete tabular data (§4.5): R_conf of probes on the masked table (amfmedit.data.masking)
    mask_features: tuple[str, ...] = ()
    mask_top_k: int | None = None
    # probes trained on this stratified fraction of the training rows (amfmedit.data.subsets, seed ``seed``)
    train_fraction: float = 1.0
    # how the tabular encoder reads missing values: the probes are the pretrained encoders, frozen, so
    # another mode than the run's (``pretrain --missing``; None) probes its second pretraining,
    # pretrain-<missing>/, in rconf-<missing>/
    missing: str | None = None

    def validate(self) -> None:
        check_choice(self.split, RCONF_SPLITS, "--split")
        if self.missing is not None:
            check_choice(self.missing, MISSING_MODES, "--missing")
        if not (0 < self.train_fraction <= 1):
            raise UserError(f"--train-fraction {self.train_fraction:g}: a fraction of the training rows, in (0, 1]")
        if self.d_out < 2:
            raise UserError(f"--d-out {self.d_out}: AMF's D_out must be at least 2")
        self.recipe.validate()


# ----------------------------------------------------------------------------------------------
# finetune (§4.2.3, Tables 1-2)
# ----------------------------------------------------------------------------------------------


def fusion_choices() -> list[str]:
    """``--fusion`` values: the registered fusions and ``none`` (a supervised baseline)."""
    from amfmedit.models import FUSIONS

    return [*FUSIONS, NO_FUSION]


@dataclass
class FinetuneConfig:
    """One fusion x strategy (or one supervised baseline), over seeds."""

    fusion: str = "amf"
    strategy: str = "trainable"
    modality: str | None = None  # fusion "none": the baseline's input, image or tabular
    rconf: float | str | None = None  # fusions with run input r_conf (AMF): None reads <run>/rconf/rconf.json,
    # "auto" chooses among measured x rconf_multipliers on validation with the first seed
    # ``--rconf auto``: candidates = measured R_conf x these; the ±10-25 % span covers the probes'
    # run-to-run spread, and candidates giving the same eq. 6 split (L_img, L_tab) are trained once
    rconf_multipliers: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.25)
    rconf_in_name: bool = False  # a member of an R_conf sweep: the value is part of the stage name
    d_out: int | None = None  # fusions with a d_out setting (AMF's D_out): None keeps the fusion's default
    # fusions with a normaliser setting (AMF's eq. 9/10, losses.NORMALISERS): None keeps the fusion's
    # default ("paper": each sum over its own length); "authors" swaps L_img / L_tab as their code does.
    # Other fusions ignore it, so one recipe serves every fusion.
    amf_normaliser: str | None = None
    seeds: tuple[int, ...] = PAPER_SEEDS
    recipe: Recipe = field(default_factory=Recipe)
    # supervised baselines without a pretrain stage in the run (else the pretrain settings are used)
    tabular_encoder: str | None = None
    tabular_dim: int | None = None
    image_arch: str | None = None
    # the baseline's tabular blocks (pretrain's --d-state / --stacking / --final-norm), over the run's
    # pretrain settings; passed to encoders that have them, so one recipe serves every encoder
    d_state: int | None = None
    stacking: str | None = None
    final_norm: str | None = None
    # incomplete tabular data (§4.2.4): these features replaced by training constants at train
    # and test time (amfmedit.data.masking), or the top K of the run's IG report
    mask_features: tuple[str, ...] = ()
    mask_top_k: int | None = None
    # label fractions: train on this stratified fraction of the training rows (amfmedit.data.subsets),
    # nested across fractions and fixed per seed; validation and test rows are untouched
    train_fraction: float = 1.0
    aux_off: tuple[str, ...] = ()  # Table 6: these auxiliary losses switched off (weight 0)
    encoder_in_name: bool = False  # a member of a --tabular-encoder sweep (Table 1): the encoder is in the stage name
    # how the tabular encoder reads missing values (impute | token); None: the run's (``pretrain --missing``;
    # a run without pretraining: PretrainConfig's). Another mode carries it in the stage name (set by
    # resolve_missing); a fusion model then uses the run's second pretraining, pretrain-<missing>/
    missing: str | None = None
    missing_in_name: bool = False
    # fusion models: each complete training row loses its image or its table with this probability
    # (ModDrop); None: amfmedit.stages.availability.MODALITY_DROPOUT when the training rows hold
    # incomplete ones, else 0
    modality_dropout: float | None = None

    def validate(self) -> None:
        from amfmedit.models import FUSIONS, IMAGE_ENCODERS, TABULAR_ENCODERS, options_of
        from amfmedit.stages import run_inputs

        check_choice(self.fusion, fusion_choices(), "--fusion")
        if self.tabular_encoder is not None:  # each item of a --tabular-encoder list, before any trains
            check_choice(self.tabular_encoder, list(TABULAR_ENCODERS), "--tabular-encoder")
        if self.image_arch is not None:
            check_choice(self.image_arch, list(IMAGE_ENCODERS), "--image-arch")
        if self.tabular_dim is not None and self.tabular_dim < 1:
            raise UserError(f"--tabular-dim {self.tabular_dim}: must be a positive width")
        if not (0 < self.train_fraction <= 1):
            raise UserError(f"--train-fraction {self.train_fraction:g}: a fraction of the training rows, in (0, 1]")
        check_choice(self.strategy, STRATEGIES, "--strategy")
        if self.fusion == NO_FUSION:
            if self.modality is None:
                raise UserError("--fusion none trains a supervised baseline: add --modality image or --modality tabular")
            check_choice(self.modality, names.MODALITIES, "--modality")
            if self.strategy == "frozen":
                raise UserError("--fusion none --strategy frozen: a supervised baseline is trained from scratch; "
                                "use --strategy trainable (frozen unimodal probes are what `amfmedit rconf` trains)")
        elif self.modality is not None:
            raise UserError(f"--modality {self.modality} is for --fusion none (supervised baselines) only")
        if self.fusion == NO_FUSION and self.aux_off:
            raise UserError("--ablate-losses: a supervised baseline has no auxiliary losses")
        if self.fusion != NO_FUSION:
            declared = FUSIONS[self.fusion].aux_weights
            unknown = [n for n in self.aux_off if n not in declared]
            if unknown:
                raise UserError(f"auxiliary loss {unknown[0]}: fusion {self.fusion} has "
                                f"{', '.join(declared) or 'no auxiliary losses'}; nothing to switch off")
            settings = options_of(FUSIONS[self.fusion])
            if self.d_out is not None:
                if "d_out" not in settings:
                    having = [k for k, c in FUSIONS.items() if "d_out" in options_of(c)]
                    raise UserError(f"--d-out {self.d_out}: only for --fusion {' or '.join(having)} (not {self.fusion})")
                if self.d_out < 2:
                    raise UserError(f"--d-out {self.d_out}: D_out must be at least 2")
            for inp in run_inputs.declared(self.fusion):
                inp.validate(self, self.d_out or settings.get("d_out"))
        if self.amf_normaliser is not None:
            check_choice(self.amf_normaliser, NORMALISERS, "--amf-normaliser")
        if self.stacking is not None:
            check_choice(self.stacking, list(STACKINGS), "--stacking")
        if self.final_norm is not None:
            check_choice(self.final_norm, FINAL_NORM_NAMES, "--final-norm")
        if self.d_state is not None and self.d_state < 1:
            raise UserError(f"--d-state {self.d_state}: must be at least 1")
        if self.missing is not None:
            check_choice(self.missing, MISSING_MODES, "--missing")
        if self.modality_dropout is not None:
            if not 0 <= self.modality_dropout <= 1:
                raise UserError(f"--modality-dropout {self.modality_dropout:g}: a probability, in [0, 1]")
            if self.fusion == NO_FUSION and self.modality_dropout > 0:
                raise UserError(f"--modality-dropout {self.modality_dropout:g}: a supervised baseline reads one "
                                "modality; dropout of a modality is for fusion models")
        if not self.seeds:
            raise UserError("--seeds: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"--seeds {','.join(map(str, self.seeds))}: repeated seed")
        self.recipe.validate()
        self.stage(self.seeds[0])  # a value the stage name cannot hold is refused before anything trains

    @property
    def prefix(self) -> str:
        from amfmedit.stages import run_inputs

        parts = {k: v for inp in run_inputs.declared(self.fusion) for k, v in inp.name_part(self).items()}
        return names.classifier_prefix(self.fusion, self.strategy, self.modality,
                                       encoder=self.tabular_encoder if self.encoder_in_name else None,
                                       off=self.aux_off, fraction=self.train_fraction,
                                       missing=self.missing if self.missing_in_name else None, **parts)

    def stage(self, seed: int) -> str:
        return names.seed_stage(self.prefix, seed, self.mask_features)


# ----------------------------------------------------------------------------------------------
# evaluate, predict, explain
# ----------------------------------------------------------------------------------------------


@dataclass
class EvaluateConfig:
    split: str = "test"
    batch_size: int = 128
    threshold: str = "youden"  # youden | sensitivity:X | specificity:X | a number; chosen on validation
    # test-time missingness (amfmedit.stages.missing_sweep): shares of each row's features removed at
    # random, and of the patients' images removed; () scores nothing more
    missingness_sweep: tuple[float, ...] = ()
    image_drop: tuple[float, ...] = ()
    horizons: str | None = None  # survival: "1,2,5" in the time unit; None: the kind's default (amfmedit.stages.kinds)
    subgroups: tuple[str, ...] = ()  # COLUMN or COLUMN=c1,c2: every metric per subgroup (amfmedit.stages.subgroups)
    external: str | None = None  # a dataset prepared --like the run's: scored into <run>/external-<NAME>/
    recalibrate_on: str | None = None  # a split of the external dataset a logistic recalibration is fitted on


@dataclass
class PredictConfig:
    table: str
    stage: str | None = None  # a finetune-*/supervised-* folder; None: the best on validation
    image_column: str | None = None  # None: the schema's image column
    out: str | None = None  # None: <run>/predict/<table stem>.csv
    batch_size: int = 64
    calibration: str = "temperature"  # temperature (fitted on validation by evaluate) | none
    skip_bad_rows: bool = False  # score the good rows and list the bad ones in <out>.skipped.csv
    horizons: str | None = None  # survival: times of the survival probabilities (default: those evaluated)
    model: str | None = None  # an `amfmedit export` folder instead of a run's classifier
    runtime: str = "auto"  # with model: auto (PyTorch when importable, else ONNX Runtime) | onnxruntime | pytorch


@dataclass
class ExportConfig:
    out: str
    stage: str | None = None  # a finetune-*/supervised-* folder; None: the run's model (stages.selection)
    batch_size: int = 64  # rows per forward pass of the parity check


METHODS = ("ig", "gradcam", "permutation")  # explain --method; permutation: the scikit-learn baselines (amfmedit.stages.permutation)
CAM_SCALES = ("per-map", "common")


@dataclass
class CamConfig:
    """What ``explain --method gradcam`` draws."""

    cases: int = 4  # positive and negative cases each
    split: str = "test"
    target: str | None = None  # None: the positive class (binary); required for multiclass
    seed: int = 0
    batch_size: int = 16
    compare: list[str] = field(default_factory=list)  # other runs: "RUN" or "RUN:STAGE"
    scale: str = CAM_SCALES[0]  # per-map (each map over its own maximum) or common (one scale per figure)

    def validate(self) -> None:
        check_choice(self.scale, CAM_SCALES, "--cam-scale")
        if self.cases < 1:
            raise UserError(f"--cases {self.cases}: must be at least 1")
        if self.split not in ("train", "val", "test"):
            raise UserError(f"--split {self.split}: use train, val or test")
        if self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size}: must be positive")


PERMUTATION_SPLITS = ("val", "test", "train")  # explain --method permutation --split


@dataclass
class PermutationConfig:
    split: str = "val"  # rows the columns are shuffled on (the split that chose the hyper-parameters)
    repeats: int = 5
    seed: int = 0
    top_k: int = 10

    def validate(self) -> None:
        if self.split not in PERMUTATION_SPLITS:
            raise UserError(f"--split {self.split}: use {', '.join(PERMUTATION_SPLITS)}")
        if self.repeats < 1:
            raise UserError(f"--repeats {self.repeats}: shuffle each column at least once")


# ----------------------------------------------------------------------------------------------
# baseline (the reviewer's tabular models, amfmedit.stages.baseline)
# ----------------------------------------------------------------------------------------------


@dataclass
class BaselineConfig:
    models: tuple[str, ...] = tuple(BASELINES)
    seeds: tuple[int, ...] = PAPER_SEEDS
    pca_components: int = 16  # late fusion: principal components of the frozen image embedding kept
    batch_size: int = 256  # late fusion: images per pass of the frozen encoder

    def validate(self) -> None:
        for m in self.models:
            if m not in BASELINES:
                hint = close_matches(m, list(BASELINES))
                raise UserError(f"--model {m}: not a baseline (known: {', '.join(BASELINES)})"
                                + (f"; did you mean {hint}?" if hint else ""))
        if len(set(self.models)) != len(self.models):
            raise UserError(f"--model {','.join(self.models)}: a model is given twice")
        if not self.seeds:
            raise UserError("--seeds: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"--seeds {','.join(map(str, self.seeds))}: repeated seed")
        if self.pca_components < 1:
            raise UserError(f"--pca-components {self.pca_components}: keep at least one component")
        if self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size}: must be at least 1")
