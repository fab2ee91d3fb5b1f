"""The plan of a ``study`` (:mod:`amfmedit.stages.study`): its settings, its steps, their time.

:class:`StudyConfig` is what a user chooses (``--config study.toml``, see ``docs/study.md``);
:func:`build_plan` turns it into :class:`Step` s in dependency order, times each model shape with
a short pilot on this machine (a few training batches of the real data through the stage's own
task) and, with a budget, shortens epochs or drops optional arms to fit, saying which.
:func:`execute` runs one step by calling the stage functions a command would.
"""

from __future__ import annotations

import dataclasses
import math
import time
import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from amfmedit.data import load_prepared
from amfmedit.data.design import table_design
from amfmedit.errors import UserError, close_matches
from amfmedit.io import read_json
from amfmedit.models import FUSIONS, STRATEGIES, TABULAR_ENCODERS
from amfmedit.stages import names
from amfmedit.stages.baseline_models import BASELINES
from amfmedit.stages.classify import Recipe
from amfmedit.stages.common import PAPER_SEEDS, RunOptions, check_choice
from amfmedit.stages.configs import BaselineConfig
from amfmedit.stages.kinds import kind_of
from amfmedit.stages.recipes import RECIPES
from amfmedit.train import rundir

#: optional arms, dropped in this order when the budget is short (the core study is kept)
OPTIONAL_ARMS = ("fractions", "masked", "ablation", "rconf_sweep", "table1", "encoders", "gradcam", "baselines")
#: epochs are never cut below these when fitting a budget
MIN_PRETRAIN_EPOCHS, MIN_FINETUNE_EPOCHS = 5, 3
SAFETY = 0.85  # plan to this share of the budget: pilots are noisy and early stopping is not free
PILOT_STEPS = 3
MIN_CAM_SIDE = 64  # below this many pixels a ResNet's last stage is 1 x 1 (Grad-CAM refuses it)


@dataclass
class StudyConfig:
    """What a study runs. Defaults: the paper's study (Tables 1, 2, 5, 6; Figs. 4-6) on one encoder."""

    data: str = ""
    name: str = ""  # default: <data>-study
    recipe: str | None = None  # a --recipe preset applied to every stage (e.g. "cpu")
    encoders: tuple[str, ...] = ("ft_mamba",)  # contrastive pretraining, one run each (Table 2's rows)
    fusions: tuple[str, ...] = tuple(FUSIONS)
    strategies: tuple[str, ...] = STRATEGIES
    seeds: tuple[int, ...] = PAPER_SEEDS
    supervised: tuple[str, ...] = ("image", "tabular")  # the unimodal models of Tables 1-2
    table1: tuple[str, ...] = tuple(TABULAR_ENCODERS)  # supervised tabular encoders (Table 1)
    rconf_sweep: tuple[float, ...] = (0.5, 1.0, 1.5)  # Table 5 (with "auto" beside it)
    rconf_auto: bool = True
    ablation: bool = True  # Table 6
    masked_top_k: int = 0  # Table 4: the top K features of the supervised model's IG masked (0: off)
    fractions: tuple[float, ...] = ()  # label fractions (e.g. 0.1, 0.5)
    baselines: tuple[str, ...] = tuple(BASELINES)  # scikit-learn baselines in the main run (() : none)
    explain: tuple[str, ...] = ("ig", "gradcam")
    ig_samples: int = 500  # IG on at most this many training rows (the paper: all of them)
    pretrain_epochs: int | None = None  # None: the recipe's (else the stage default)
    finetune_epochs: int | None = None
    budget_s: float | None = None  # --budget: plan to fit it

    def validate(self) -> None:
        if not self.data:
            raise UserError("study: give --data NAME (a prepared dataset)")
        if self.recipe is not None and self.recipe not in RECIPES:
            hint = close_matches(self.recipe, list(RECIPES))
            raise UserError(f"recipe {self.recipe!r}: no such recipe (known: {', '.join(RECIPES)})"
                            + (f"; did you mean {hint}?" if hint else ""))
        for e in (*self.encoders, *self.table1):
            check_choice(e, list(TABULAR_ENCODERS), "encoders")
        for f in self.fusions:
            check_choice(f, list(FUSIONS), "fusions")
        for s in self.strategies:
            check_choice(s, STRATEGIES, "strategies")
        for m in self.supervised:
            check_choice(m, names.MODALITIES, "supervised")
        for x in self.explain:
            check_choice(x, ("ig", "gradcam"), "explain")
        for b in self.baselines:
            check_choice(b, list(BASELINES), "baselines")
        if len(set(self.baselines)) != len(self.baselines):
            raise UserError(f"baselines {list(self.baselines)}: a model is given twice")
        if not self.encoders or not self.seeds:
            raise UserError("study: give at least one encoder and one seed")
        if any(not 0 < f < 1 for f in self.fractions):
            raise UserError(f"fractions {list(self.fractions)}: label fractions lie in (0, 1)")
        if any(not (r > 0 and math.isfinite(r)) for r in self.rconf_sweep):
            raise UserError(f"rconf_sweep {list(self.rconf_sweep)}: R_conf values must be positive")
        if self.budget_s is not None and not self.budget_s > 0:
            raise UserError(f"--budget: must be positive, got {self.budget_s:g} s")
        for key in ("pretrain_epochs", "finetune_epochs", "masked_top_k", "ig_samples"):
            v = getattr(self, key)
            if v is not None and v < (0 if key == "masked_top_k" else 1):
                raise UserError(f"{key} = {v}: too small")

    @property
    def folder_name(self) -> str:
        return self.name or f"{Path(self.data).name}-study"

    def to_dict(self) -> dict:
        return json_safe(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "StudyConfig":
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name in d:
                v = d[f.name]
                kw[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**kw)

    def plan_key(self) -> dict:
        """What fixes the plan: everything but the budget (a second call need not repeat it)."""
        d = self.to_dict()
        d.pop("budget_s", None)
        return d


def json_safe(d):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def load_study_config(path: str | Path | None, **given) -> StudyConfig:
    """Defaults < ``[study]`` of a TOML file < options typed (``given``, None = not typed)."""
    values: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"--config {p}: no such file")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"--config {p}: not a readable TOML file ({exc})") from None
        table = data.get("study", data)
        known = {f.name: f for f in dataclasses.fields(StudyConfig)}
        for k, v in table.items():
            if k not in known:
                hint = close_matches(k, list(known))
                raise UserError(f"--config {p}: unknown study key {k!r}" + (f"; did you mean {hint}?" if hint else "")
                                + f" (known: {', '.join(known)})")
            values[k] = tuple(v) if isinstance(v, list) else v
    values.update({k: v for k, v in given.items() if v is not None})
    return StudyConfig(**values)


# ---------------------------------------------------------------------------------------------- steps


@dataclass
class Step:
    """One unit of the study: a stage call with its settings, the steps it needs and its estimate."""

    id: str
    kind: str  # pretrain | rconf | finetune | supervised | rconf_sweep | ablation | fractions | masked |
    #            baseline | evaluate | ig | gradcam
    run: str  # the run (tabular encoder) it works in
    title: str
    command: str  # the equivalent command line
    args: dict = field(default_factory=dict)
    after: list[str] = field(default_factory=list)
    estimate_s: float = 0.0
    arm: str = "core"  # an optional arm's name (OPTIONAL_ARMS) or "core"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class StudyPlan:
    steps: list[Step]
    data: str
    pretrain_epochs: int
    finetune_epochs: int
    seeds: tuple[int, ...]
    pilot: dict[str, float] = field(default_factory=dict)  # model shape -> seconds per training batch
    notes: list[str] = field(default_factory=list)  # what the budget changed
    budget_s: float | None = None
    created: str = ""

    def total_estimate(self) -> float:
        return float(sum(s.estimate_s for s in self.steps))

    def to_dict(self) -> dict:
        return {"steps": [s.to_dict() for s in self.steps], "data": self.data, "pretrain_epochs": self.pretrain_epochs,
                "finetune_epochs": self.finetune_epochs, "seeds": list(self.seeds), "pilot": self.pilot,
                "notes": self.notes, "budget_s": self.budget_s, "created": self.created}

    @classmethod
    def from_dict(cls, d: dict) -> "StudyPlan":
        return cls([Step(**s) for s in d["steps"]], d["data"], int(d["pretrain_epochs"]), int(d["finetune_epochs"]),
                   tuple(d["seeds"]), dict(d.get("pilot") or {}), list(d.get("notes") or []), d.get("budget_s"),
                   d.get("created", ""))

    def markdown(self, cfg: StudyConfig) -> str:
        lines = [f"# Study plan: {cfg.folder_name}\n",
                 f"Data `{self.data}`; {len(self.steps)} steps, {self.n_trainings()} training runs; estimated "
                 f"{_minutes(self.total_estimate())} on this machine"
                 + (f" (budget {_minutes(self.budget_s)})" if self.budget_s else "") + ". Pretraining "
                 f"{self.pretrain_epochs} epochs, fine-tuning up to {self.finetune_epochs} epochs (early stopping), "
                 f"seeds {', '.join(map(str, self.seeds))}. Planned {self.created}.\n"]
        if self.notes:
            lines.append("\n" + "".join(f"- {n}\n" for n in self.notes))
        lines.append("\n| # | Step | Trainings | Estimate | Command |\n|--:|---|--:|--:|---|\n")
        for i, s in enumerate(self.steps, 1):
            lines.append(f"| {i} | {s.title} | {s.args.get('trainings', 0)} | {_minutes(s.estimate_s)} | "
                         f"`{s.command}` |\n")
        batches = {k: v for k, v in self.pilot.items() if not k.startswith("baseline:")}
        fits = {k: v for k, v in self.pilot.items() if k.startswith("baseline:") and not k.endswith((":grid", ":seeded"))}
        if batches:
            lines.append("\nPilot (seconds per training batch on this machine, the fastest of "
                         f"{PILOT_STEPS} after a warm-up): " + ", ".join(f"{k} {v:.3f}" for k, v in batches.items()) + ".\n")
        if fits:
            lines.append("\nPilot of the baselines (seconds of one fit on the training rows): "
                         + ", ".join(f"{k} {v:.3f}" for k, v in fits.items()) + ".\n")
        return "".join(lines)

    def n_trainings(self) -> int:
        return int(sum(s.args.get("trainings", 0) for s in self.steps))


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _recipe_fields(recipe: str | None, stage: str) -> dict:
    return dict(RECIPES[recipe].get(stage, {})) if recipe else {}


def _training_fields(recipe: str | None, stage: str) -> dict:
    """A recipe's settings of ``stage`` that are :class:`Recipe` fields (how a classifier trains)."""
    own = {f.name for f in dataclasses.fields(Recipe)}
    return {k: v for k, v in _recipe_fields(recipe, stage).items() if k in own}


def stage_fields(recipe: str | None, stage: str) -> dict:
    """A recipe's settings of ``stage`` that belong to the stage's config (e.g. FinetuneConfig.rconf,
    RconfConfig.split), not to its :class:`Recipe`."""
    own = {f.name for f in dataclasses.fields(Recipe)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in _recipe_fields(recipe, stage).items()
            if k not in own}


def stage_configs(cfg: StudyConfig, pretrain_epochs: int, finetune_epochs: int):
    """The pretrain, probe and fine-tuning settings every step uses (recipe, then the study's epochs)."""
    from amfmedit.stages.pretrain import PretrainConfig

    pre = {k: v for k, v in _recipe_fields(cfg.recipe, "pretrain").items()}
    pre["epochs"] = pretrain_epochs
    pcfg = PretrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in pre.items()})
    recipes = {}
    full = default_epochs(cfg)[1]
    for stage in ("rconf", "finetune"):
        fields = _training_fields(cfg.recipe, stage)
        own = fields.get("epochs", Recipe.epochs) if stage == "rconf" else full
        # the probes keep their own epochs (the recipe's), cut in the same proportion as fine-tuning's
        fields["epochs"] = finetune_epochs if stage == "finetune" else max(1, round(own * finetune_epochs / full))
        recipes[stage] = Recipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    return pcfg, recipes["rconf"], recipes["finetune"]


def default_epochs(cfg: StudyConfig) -> tuple[int, int]:
    from amfmedit.stages.pretrain import PretrainConfig

    pre = cfg.pretrain_epochs or _recipe_fields(cfg.recipe, "pretrain").get("epochs") or PretrainConfig.epochs
    fin = cfg.finetune_epochs or _recipe_fields(cfg.recipe, "finetune").get("epochs") or Recipe.epochs
    return int(pre), int(fin)


def steps_of(cfg: StudyConfig) -> list[Step]:
    """Every step of ``cfg`` in dependency order (estimates filled later)."""
    seeds = ",".join(map(str, cfg.seeds))
    rec = f" --recipe {cfg.recipe}" if cfg.recipe else ""
    main = cfg.encoders[0]
    out: list[Step] = []

    def add(step: Step) -> Step:
        out.append(step)
        return step

    for enc in cfg.encoders:
        arm = "core" if enc == main else "encoders"
        p = add(Step(f"pretrain-{enc}", "pretrain", enc, f"pretrain ({enc})",
                     f"amfmedit pretrain --data {cfg.data} --run {enc} --tabular-encoder {enc}{rec}",
                     {"encoder": enc, "trainings": 1}, arm=arm))
        r = add(Step(f"rconf-{enc}", "rconf", enc, f"R_conf probes ({enc})", f"amfmedit rconf --run {enc}{rec}",
                     {"trainings": 2}, [p.id], arm=arm))
        for fusion in cfg.fusions:
            needs = [p.id] + ([r.id] if FUSIONS[fusion].run_inputs else [])
            strat = " ".join(f"--strategy {s}" for s in cfg.strategies)
            add(Step(f"finetune-{enc}-{fusion}", "finetune", enc, f"{FUSIONS[fusion].title} ({enc}; {', '.join(cfg.strategies)})",
                     f"amfmedit finetune --run {enc} --fusion {fusion} {strat} --seeds {seeds}{rec}",
                     {"fusion": fusion, "strategies": list(cfg.strategies), "trainings": len(cfg.strategies) * len(cfg.seeds)},
                     needs, arm=arm))
    for modality in cfg.supervised:
        enc_args = "" if modality == "image" else f" --tabular-encoder {main}"
        add(Step(f"supervised-{modality}", "supervised", main, f"supervised {modality} model",
                 f"amfmedit finetune --run {main} --fusion none --modality {modality}{enc_args} --seeds {seeds}{rec}",
                 {"modality": modality, "encoders": [main] if modality == "tabular" else [],
                  "trainings": len(cfg.seeds)}, [f"pretrain-{main}"]))
    others = [e for e in cfg.table1 if e != main]
    if others:
        add(Step("table1", "supervised", main, "supervised tabular encoders (Table 1)",
                 f"amfmedit finetune --run {main} --fusion none --modality tabular --tabular-encoder "
                 f"{','.join(cfg.table1)} --seeds {seeds}{rec}",
                 {"modality": "tabular", "encoders": list(cfg.table1), "trainings": len(others) * len(cfg.seeds)},
                 [f"pretrain-{main}"], arm="table1"))
    rfusions = [f for f in cfg.fusions if FUSIONS[f].run_inputs]
    if rfusions and (cfg.rconf_sweep or cfg.rconf_auto):
        values = [*map(float, cfg.rconf_sweep), *(["auto"] if cfg.rconf_auto else [])]
        add(Step("rconf_sweep", "rconf_sweep", main, "R_conf sweep and auto (Table 5)",
                 f"amfmedit finetune --run {main} --fusion {rfusions[0]} --rconf {','.join(map(str, values))} "
                 f"--seeds {seeds}{rec}",
                 {"fusion": rfusions[0], "values": values, "trainings": (len(values) + 4 * cfg.rconf_auto) * len(cfg.seeds)},
                 [f"finetune-{main}-{rfusions[0]}", f"rconf-{main}"], arm="rconf_sweep"))
    afusions = [f for f in cfg.fusions if FUSIONS[f].aux_weights]
    if cfg.ablation and afusions:
        n = 2 ** len(FUSIONS[afusions[0]].aux_weights) - 1
        add(Step("ablation", "ablation", main, "loss ablation (Table 6)",
                 f"amfmedit finetune --run {main} --fusion {afusions[0]} --ablate-losses --seeds {seeds}{rec}",
                 {"fusion": afusions[0], "trainings": n * len(cfg.seeds)},
                 [f"finetune-{main}-{afusions[0]}", f"rconf-{main}"], arm="ablation"))
    if cfg.fractions:
        fr = ",".join(f"{f:g}" for f in cfg.fractions)
        add(Step("fractions", "fractions", main, "label fractions",
                 f"amfmedit rconf --run {main} --train-fraction {fr} && amfmedit finetune --run {main} "
                 f"--fusion {cfg.fusions[0]} --fusion none --modality tabular --train-fraction {fr} --seeds {seeds}{rec}",
                 {"fractions": list(cfg.fractions), "fusion": cfg.fusions[0],
                  "trainings": len(cfg.fractions) * (2 * len(cfg.seeds) + 2)},
                 [f"pretrain-{main}"], arm="fractions"))
    if cfg.baselines:  # after the neural models, before evaluate ranks them all together
        models = " ".join(f"--model {b}" for b in cfg.baselines)
        add(Step("baselines", "baseline", main, "tabular baselines (" + ", ".join(cfg.baselines) + ")",
                 f"amfmedit baseline --run {main} {models} --seeds {seeds}",
                 {"models": list(cfg.baselines)}, [f"pretrain-{main}"], arm="baselines"))
    out.append(Step(f"evaluate-{main}", "evaluate", main, f"evaluate ({main})", f"amfmedit evaluate --run {main}",
                    {}, [s.id for s in out if s.run == main]))
    if "ig" in cfg.explain:
        add(Step("ig", "ig", main, "Integrated Gradients (Figs. 4-5)",
                 f"amfmedit explain --run {main} --method ig --max-samples {cfg.ig_samples}",
                 {"max_samples": cfg.ig_samples}, [f"evaluate-{main}"]))
    if cfg.masked_top_k and "ig" in cfg.explain:
        add(Step("masked", "masked", main, f"top {cfg.masked_top_k} features masked (Table 4)",
                 f"amfmedit rconf --run {main} --mask-top-k {cfg.masked_top_k} && amfmedit finetune --run {main} "
                 f"--fusion {cfg.fusions[0]} --fusion none --modality tabular --mask-top-k {cfg.masked_top_k} "
                 f"--seeds {seeds}{rec}",
                 {"k": cfg.masked_top_k, "fusion": cfg.fusions[0], "trainings": 2 * len(cfg.seeds) + 2},
                 ["ig"], arm="masked"))
        out.append(Step(f"evaluate-{main}-masked", "evaluate", main, f"evaluate again ({main}, with Table 4)",
                        f"amfmedit evaluate --run {main}", {}, ["masked"], arm="masked"))
    if "gradcam" in cfg.explain:
        add(Step("gradcam", "gradcam", main, "Grad-CAM (Fig. 6)", f"amfmedit explain --run {main} --method gradcam",
                 {}, [f"evaluate-{main}"], arm="gradcam"))
    for enc in cfg.encoders[1:]:
        out.append(Step(f"evaluate-{enc}", "evaluate", enc, f"evaluate ({enc})", f"amfmedit evaluate --run {enc}",
                        {}, [s.id for s in out if s.run == enc], arm="encoders"))
    return out


# --------------------------------------------------------------------------------------------- pilot


@dataclass(frozen=True)
class Sizes:
    """What an epoch costs: rows per split and batch sizes."""

    n_train: int
    n_val: int
    n_test: int
    pretrain_batch: int
    finetune_batch: int
    lrs: int  # trainings of a learning-rate search (1 when the recipe fixes the lr)


def _fastest_seconds(fn, steps: int = PILOT_STEPS) -> float:
    """The fastest of ``steps`` timed calls after a warm-up. Not the median: on two cores another process
    deschedules one of the intra-op threads and a step then waits at every barrier, 3-10 x its time; the median
    of three such steps put shapes that cost the same 10 x apart (a cross-attention step at 5.7 s beside a
    concatenation at 0.46 s). A load that lasts is caught at run time (the study corrects its remaining
    estimate by the measured pace and drops optional arms to keep to the budget)."""
    fn()  # warm-up: allocations, kernel build, autotuning
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(min(times))


def pilot(cfg: StudyConfig, opts: RunOptions, pcfg, recipe) -> tuple[dict[str, float], Sizes]:
    """Seconds per training batch of every model shape the study trains, measured here on the real data
    through the stages' own tasks (one optimiser step each), and per evaluation batch (``eval:<shape>``)."""
    import torch

    from amfmedit.models import (
        ImageTabularClassifier,
        UnimodalClassifier,
        build_fusion,
        build_tabular_encoder,
        losses,
    )
    from amfmedit.stages.classify import make_loss
    from amfmedit.stages.pretrain import build_contrastive, image_encoder, tabular_kwargs
    from amfmedit.train.augment import preset
    from amfmedit.train.corruption import TabularCorruptor
    from amfmedit.train.inputs import DeviceData
    from amfmedit.train.optim import build_optimizer
    from amfmedit.train.runtime import setup_runtime
    from amfmedit.train.tasks import ContrastiveTask, SupervisedTask

    rt = setup_runtime(opts.device)
    ds = load_prepared(cfg.data, opts.data_dir)
    schema, kind = ds.schema, kind_of(ds.schema)
    dd = DeviceData(ds, device=rt.device, residency=opts.images_in)
    train, val = dd.rows("train"), dd.rows("val")
    sizes = Sizes(len(train), len(val), len(dd.rows("test")), pcfg.batch_size, recipe.batch_size,
                  1 if recipe.lr is not None else len(recipe.lrs))
    gen = torch.Generator().manual_seed(0)
    resolved = recipe.resolved(kind, schema)
    features = ds.missing_features("train")  # what a token encoder reads, as the stages build it
    out: dict[str, float] = {}

    def time_task(key: str, model, task, batch_size: int, use_image: bool) -> None:
        model.to(rt.device).train()
        opt = build_optimizer(model, lr=1e-4)
        positions = np.arange(min(batch_size, len(train)))

        def step():
            loss, _ = task.train_step(model, positions, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        out[key] = _fastest_seconds(step)
        model.eval()
        batch = dd.batch(val[: max(2, min(len(val), batch_size))], images=use_image)
        image = batch.image.float() / 255.0 if use_image else None
        with torch.no_grad():
            out[f"eval:{key}"] = _fastest_seconds(lambda: model(image, batch.x_cont, batch.x_cat))

    head = kind.head_size(schema)
    for enc in cfg.encoders:
        p = replace(pcfg, tabular_encoder=enc)
        model = build_contrastive(schema, p, features)
        idx = torch.as_tensor(train, device=rt.device)
        corruptor = TabularCorruptor(x_cont=dd.x_cont.index_select(0, idx), x_cat=dd.x_cat.index_select(0, idx),
                                     rate=p.corruption_rate)
        task = ContrastiveTask(model=model, loss=losses.itc_loss, data=dd, corruptor=corruptor, spec={},
                               augment=preset("pretrain", schema.image.channels).with_rate(p.augment_rate))
        time_task(f"pretrain:{enc}", model, task, p.batch_size, True)
        for fusion in cfg.fusions:
            for strategy in cfg.strategies:
                pair = build_contrastive(schema, p, features)
                img, tab = pair.image_encoder, pair.tabular_encoder
                inputs = {n: 1.0 for n in FUSIONS[fusion].run_inputs}
                fm = ImageTabularClassifier(img, tab, build_fusion(fusion, d_img=img.d_out, d_tab=tab.d_out,
                                                                   n_classes=head, **inputs), strategy=strategy)
                ft = SupervisedTask(model=fm, data=dd, use_image=True, kind=kind,
                                    loss=make_loss(resolved, dict(getattr(fm.fusion, "aux_weights", {})), kind),
                                    augment=preset("finetune", schema.image.channels))
                time_task(f"finetune:{enc}:{fusion}:{strategy}", fm, ft, recipe.batch_size, True)
    # only the unimodal shapes the study trains (the IG estimate reads the tabular one)
    tabular = bool(cfg.table1) or "ig" in cfg.explain
    for modality in dict.fromkeys([*cfg.supervised, *(["tabular"] if tabular else [])]):
        for enc in ([None] if modality == "image" else list(dict.fromkeys([cfg.encoders[0], *cfg.table1]))):
            e = (image_encoder(pcfg.image_arch, schema) if modality == "image" else
                 build_tabular_encoder(enc, n_cont_features=schema.n_cont, cat_cardinalities=schema.cardinalities,
                                       **tabular_kwargs(replace(pcfg, tabular_encoder=enc), features)))
            um = UnimodalClassifier(e, n_classes=head, modality=modality)
            task = SupervisedTask(model=um, loss=make_loss(resolved, {}, kind), data=dd, kind=kind,
                                  use_image=modality == "image",
                                  augment=preset("finetune", schema.image.channels) if modality == "image" else None)
            time_task(f"supervised:{modality}:{enc or '-'}", um, task, recipe.batch_size, modality == "image")
    out.update(_pilot_baselines(cfg, ds, kind))
    return out, sizes


def _pilot_baselines(cfg: StudyConfig, ds, kind) -> dict[str, float]:
    """Seconds of one fit of each baseline encoding the study asks for (``baseline:<encoding>``, the grid's first
    candidate on the real training rows); {} when the prediction kind has no tabular baselines."""

    estimators = kind.tabular_baselines(ds.schema) if cfg.baselines else None
    if estimators is None:
        return {}
    train, val = ds.indices("train"), ds.indices("val")
    y = kind.targets(ds)
    out = {}
    for encoding in dict.fromkeys(BASELINES[b].encoding for b in cfg.baselines):
        design, design_val = table_design(ds, train, encoding), table_design(ds, val, encoding)
        t = time.perf_counter()
        est = estimators.build(encoding, estimators.grid(encoding)[0], 0, design)
        estimators.fit(est, encoding, design.X, y[train], design_val.X, y[val])
        out[f"baseline:{encoding}"] = time.perf_counter() - t
        out[f"baseline:{encoding}:grid"] = float(len(estimators.grid(encoding)))
        out[f"baseline:{encoding}:seeded"] = float(estimators.seeded(encoding))
    return out


# ------------------------------------------------------------------------------------------ estimates


def _epoch(pilot: dict, key: str, n_train: int, batch: int, n_val: int) -> float:
    """Seconds of one epoch: its training batches and one validation pass."""
    return math.ceil(n_train / max(batch, 1)) * pilot[key] + math.ceil(n_val / max(batch, 1)) * pilot[f"eval:{key}"]


def estimate(step: Step, pilot: dict, sz: Sizes, cfg: StudyConfig, pe: int, fe: int, seeds: int) -> float:
    """Seconds ``step`` takes at ``pe`` pretraining and ``fe`` fine-tuning epochs over ``seeds`` seeds (an
    upper bound: early stopping only shortens it)."""
    main = cfg.encoders[0]
    tr, va = sz.n_train, sz.n_val

    def fine(key: str, trainings: float) -> float:
        return trainings * fe * _epoch(pilot, key, tr, sz.finetune_batch, va)

    first = sz.lrs + seeds - 1  # a learning-rate search with the first seed, then the other seeds
    if step.kind == "pretrain":
        return pe * _epoch(pilot, f"pretrain:{step.args['encoder']}", tr, sz.pretrain_batch, va)
    if step.kind == "rconf":  # two linear probes on frozen encoders, each with its learning-rate search
        strategy = "frozen" if "frozen" in cfg.strategies else cfg.strategies[0]
        probe_epochs = stage_configs(cfg, pe, fe)[1].epochs
        return 2 * sz.lrs * probe_epochs * _epoch(pilot, f"finetune:{step.run}:{cfg.fusions[0]}:{strategy}", tr,
                                        sz.finetune_batch, va)
    if step.kind == "finetune":
        return sum(fine(f"finetune:{step.run}:{step.args['fusion']}:{s}", first) for s in step.args["strategies"])
    if step.kind == "supervised":
        encs = step.args.get("encoders") or ["-"]
        if step.id == "table1":
            encs = [e for e in encs if e != main]
        return sum(fine(f"supervised:{step.args['modality']}:{e}", first) for e in encs)
    if step.kind in ("rconf_sweep", "ablation"):
        key = f"finetune:{main}:{step.args['fusion']}:{cfg.strategies[-1]}"
        return fine(key, step.args["trainings"] / len(cfg.seeds) * seeds)
    if step.kind in ("fractions", "masked"):
        share = sum(step.args.get("fractions", [1.0])) / max(len(step.args.get("fractions", [1.0])), 1)
        key = f"finetune:{main}:{step.args['fusion']}:{cfg.strategies[-1]}"
        return share * fine(key, step.args["trainings"] / len(cfg.seeds) * seeds)
    if step.kind == "baseline":  # the grid searched with the first seed (its fit is that seed's), then the other seeds
        total = 0.0
        for b in step.args["models"]:
            enc = BASELINES[b].encoding
            refits = (seeds - 1) * pilot.get(f"baseline:{enc}:seeded", 1.0)  # an unseeded fit serves every seed
            total += (pilot.get(f"baseline:{enc}:grid", 0.0) + refits) * pilot.get(f"baseline:{enc}", 0.0)
            if BASELINES[b].uses_image:  # one pass of the frozen image encoder over every row
                batch = BaselineConfig.batch_size
                total += math.ceil((tr + va + sz.n_test) / batch) * pilot[f"eval:pretrain:{main}"] * batch / max(
                    sz.pretrain_batch, 1)
        return total
    if step.kind == "evaluate":
        stages = len(cfg.fusions) * len(cfg.strategies) + len(cfg.supervised) + len(cfg.table1) + 6
        worst = max(v for k, v in pilot.items() if k.startswith("eval:"))
        return stages * seeds * (math.ceil((va + sz.n_test) / max(sz.finetune_batch, 1)) * worst) + 10.0
    if step.kind == "ig":  # sample x steps passes of the tabular branch, forward and backward
        key = f"supervised:tabular:{main}"
        return math.ceil(min(cfg.ig_samples, tr) * 50 / 256) * 3 * pilot[f"eval:{key}"] * 256 / max(sz.finetune_batch, 1) + 5.0
    if step.kind == "gradcam":
        return 15.0
    return 0.0


def _estimate_all(steps: list[Step], pilot: dict, sz: Sizes, cfg: StudyConfig, pe: int, fe: int, seeds: int) -> float:
    return sum(estimate(s, pilot, sz, cfg, pe, fe, seeds) for s in steps)


def build_plan(cfg: StudyConfig, opts: RunOptions, *, line=lambda s: None) -> StudyPlan:
    """Steps, timed by a pilot on this machine, fitted to ``cfg.budget_s`` (shorter epochs first, then
    optional arms dropped in :data:`OPTIONAL_ARMS` order, then fewer seeds), every change noted."""

    pe, fe = default_epochs(cfg)
    pcfg, _, recipe = stage_configs(cfg, pe, fe)
    line("pilot: timing a few training batches of each model shape on this machine ...")
    t0 = time.perf_counter()
    timings, sz = pilot(cfg, opts, pcfg, recipe)
    pilot_s = time.perf_counter() - t0
    steps = steps_of(cfg)
    seeds = len(cfg.seeds)
    notes: list[str] = []
    if any(st.kind == "baseline" for st in steps) and not any(k.startswith("baseline:") for k in timings):
        steps = [replace(st, after=[a for a in st.after if a != "baselines"]) for st in steps if st.kind != "baseline"]
        notes.append("baselines left out: this prediction kind has no tabular baselines")
    side = _image_side(cfg, opts)
    if side < MIN_CAM_SIDE and any(st.kind == "gradcam" for st in steps):
        steps = [st for st in steps if st.kind != "gradcam"]
        notes.append(f"Grad-CAM left out: images of {side} pixels leave the image encoder's last stage too few cells "
                     f"to localise anything (prepare {MIN_CAM_SIDE} pixels or more)")
    if cfg.budget_s:
        target = SAFETY * cfg.budget_s - pilot_s  # the pilot's own time counts against the budget
        full = _estimate_all(steps, timings, sz, cfg, pe, fe, seeds)
        if full > target:
            lo, hi = 0.0, 1.0  # the largest epoch factor that fits (epochs floored at their minimum)
            for _ in range(30):
                mid = (lo + hi) / 2
                p2, f2 = max(MIN_PRETRAIN_EPOCHS, int(pe * mid)), max(MIN_FINETUNE_EPOCHS, int(fe * mid))
                lo, hi = (mid, hi) if _estimate_all(steps, timings, sz, cfg, p2, f2, seeds) <= target else (lo, mid)
            p2, f2 = max(MIN_PRETRAIN_EPOCHS, min(pe, int(pe * lo))), max(MIN_FINETUNE_EPOCHS, min(fe, int(fe * lo)))
            if (p2, f2) != (pe, fe):
                notes.append(f"budget: pretraining {pe} -> {p2} epochs, fine-tuning {fe} -> {f2} epochs "
                             f"(the full plan was estimated at {_minutes(full)})")
                pe, fe = p2, f2
        for arm in OPTIONAL_ARMS:
            if _estimate_all(steps, timings, sz, cfg, pe, fe, seeds) <= target:
                break
            dropped = [st for st in steps if st.arm == arm]
            if dropped:
                kept_ids = {st.id for st in steps if st.arm != arm}
                steps = [replace(st, after=[a for a in st.after if a in kept_ids]) for st in steps if st.arm != arm]
                notes.append(f"budget: dropped {', '.join(st.title for st in dropped)}")
        while seeds > 1 and _estimate_all(steps, timings, sz, cfg, pe, fe, seeds) > target:
            seeds -= 1
            notes.append(f"budget: {seeds} seed{'s' if seeds > 1 else ''} instead of {len(cfg.seeds)}")
        final = _estimate_all(steps, timings, sz, cfg, pe, fe, seeds)
        if final > cfg.budget_s:
            hint = "a smaller cohort or smaller images" + ("" if cfg.recipe == "cpu" else ", or --recipe cpu")
            notes.append(f"budget: even the smallest study is estimated at {_minutes(final)}, over the budget of "
                         f"{_minutes(cfg.budget_s)}; it runs anyway (shorten it with {hint}, or run it when the "
                         "machine is not busy: the pilot measured this machine as it is now)")
    kept_seeds = tuple(cfg.seeds[:seeds])
    steps = [_with_seeds(st, kept_seeds, cfg) for st in steps]
    for st in steps:
        st.estimate_s = round(estimate(st, timings, sz, cfg, pe, fe, seeds), 2)
    notes.append(f"pilot: {pilot_s:.0f} s on this machine (counted against the budget)")
    return StudyPlan(steps, cfg.data, pe, fe, kept_seeds, {k: round(v, 4) for k, v in timings.items()}, notes,
                     cfg.budget_s, datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def _image_side(cfg: StudyConfig, opts: RunOptions) -> int:
    info = load_prepared(cfg.data, opts.data_dir).schema.image
    return min(info.height, info.width)


def _with_seeds(step: Step, seeds: tuple[int, ...], cfg: StudyConfig) -> Step:
    """The step's command and training count for the seeds kept."""
    old = ",".join(map(str, cfg.seeds))
    new = ",".join(map(str, seeds))
    args = dict(step.args)
    if "trainings" in args and step.kind not in ("pretrain", "rconf"):
        args["trainings"] = round(args["trainings"] * len(seeds) / len(cfg.seeds))
    return replace(step, command=step.command.replace(f"--seeds {old}", f"--seeds {new}"), args=args)


# -------------------------------------------------------------------------------------------- running


def run_options(folder: Path, opts: RunOptions, step: Step, *, resume: bool) -> RunOptions:
    return replace(opts, runs_dir=str(folder / "runs"), run=step.run, resume=resume, force=False,
                   argv=step.command.split(" && ")[-1].split())


def _run(folder: Path, step: Step):
    path = folder / "runs" / step.run
    return rundir.Run(path) if (path / rundir.RUN_FILE).is_file() else None


def _plan_of(folder: Path) -> StudyPlan:
    return StudyPlan.from_dict(read_json(folder / "study.json")["plan"])


def _finished(run, config) -> bool:
    return all(run.is_complete(config.stage(seed)) for seed in config.seeds)


def _top(run, k: int) -> tuple[str, ...]:
    from amfmedit.stages.common import top_features

    return tuple(top_features(run, k))


def _configs(step: Step, cfg: StudyConfig, plan: StudyPlan, run=None):
    """The fine-tuning configurations of a training step (as the command's expansion gives them)."""
    from amfmedit.stages.finetune import FinetuneConfig, experiment_configs

    _, _, recipe = stage_configs(cfg, plan.pretrain_epochs, plan.finetune_epochs)
    seeds = tuple(plan.seeds)
    settings = stage_fields(cfg.recipe, "finetune")

    def config(**kw):  # the recipe's stage settings (e.g. a fixed R_conf) under the step's own
        return FinetuneConfig(**{**settings, **kw})

    if step.kind == "finetune":
        return [config(fusion=step.args["fusion"], strategy=s, seeds=seeds, recipe=recipe)
                for s in step.args["strategies"]]
    if step.kind == "supervised":
        base = config(fusion=names.NO_FUSION, modality=step.args["modality"], seeds=seeds, recipe=recipe,
                      tabular_encoder=(step.args["encoders"] or [None])[0] if step.id != "table1" else None)
        encs = step.args["encoders"]
        return experiment_configs(base, encoders=encs) if step.id == "table1" else [base]
    base = config(fusion=step.args.get("fusion", "amf"), strategy=cfg.strategies[-1], seeds=seeds, recipe=recipe)
    if step.kind == "rconf_sweep":
        return experiment_configs(base, rconfs=tuple(step.args["values"]))
    if step.kind == "ablation":
        return experiment_configs(base, ablate=True)
    if step.kind == "fractions":
        tab = config(fusion=names.NO_FUSION, modality="tabular", seeds=seeds, recipe=recipe,
                     tabular_encoder=cfg.encoders[0])
        return [c for b in (base, tab) for c in experiment_configs(b, fractions=tuple(step.args["fractions"]))]
    if step.kind == "masked":
        tab = config(fusion=names.NO_FUSION, modality="tabular", seeds=seeds, recipe=recipe,
                     tabular_encoder=cfg.encoders[0])
        return [replace(c, mask_features=_top(run, step.args["k"])) for c in (base, tab)]
    return []


def is_done(step: Step, folder: Path, opts: RunOptions) -> bool:
    """Whether every stage folder the step makes is finished (a step recorded done whose folders went
    missing runs again)."""
    run = _run(folder, step)
    if step.kind in ("evaluate", "ig", "gradcam"):
        return run is not None and (run.root / ("evaluate" if step.kind == "evaluate" else "explain")).is_dir()
    if run is None:
        return False
    if step.kind == "pretrain":
        return run.is_complete(names.PRETRAIN)
    if step.kind == "rconf":
        return run.is_complete(names.rconf_stage())
    if step.kind == "baseline":
        seeds = _plan_of(folder).seeds
        return all(run.is_complete(names.baseline_stage(m, s)) for m in step.args["models"] for s in seeds)
    return True


def execute(step: Step, folder: Path, opts: RunOptions, cfg: StudyConfig) -> None:
    """Run one step through the stage functions; an interrupted one is resumed."""
    from amfmedit.stages import evaluate as evaluate_mod
    from amfmedit.stages import explain as explain_mod
    from amfmedit.stages.finetune import finetune_many
    from amfmedit.stages.pretrain import pretrain
    from amfmedit.stages.rconf import RconfConfig, rconf

    plan = _plan_of(folder)
    pcfg, probe_recipe, _ = stage_configs(cfg, plan.pretrain_epochs, plan.finetune_epochs)
    probe_settings = stage_fields(cfg.recipe, "rconf")

    def probes(**kw):  # the recipe's probe settings (e.g. the split) under the step's own
        return RconfConfig(**{**probe_settings, **kw})

    run = _run(folder, step)
    if step.kind == "pretrain":
        started = run is not None and (run.root / names.PRETRAIN).is_dir()
        pretrain(cfg.data, replace(pcfg, tabular_encoder=step.args["encoder"]),
                 run_options(folder, opts, step, resume=started))
        return
    if step.kind == "rconf":
        started = (run.root / names.rconf_stage()).is_dir()
        rconf(probes(recipe=probe_recipe), run_options(folder, opts, step, resume=started))
        return
    if step.kind in ("finetune", "supervised", "rconf_sweep", "ablation", "fractions", "masked"):
        if step.kind == "fractions":
            for f in step.args["fractions"]:
                if not run.is_complete(names.rconf_stage((), f)):
                    started = (run.root / names.rconf_stage((), f)).is_dir()
                    rconf(probes(recipe=probe_recipe, train_fraction=f), run_options(folder, opts, step, resume=started))
        if step.kind == "masked":
            stage = names.rconf_stage(_top(run, step.args["k"]))
            if not run.is_complete(stage):
                rconf(probes(recipe=probe_recipe, mask_top_k=step.args["k"]),
                      run_options(folder, opts, step, resume=(run.root / stage).is_dir()))
        configs = [c for c in _configs(step, cfg, plan, run) if not _finished(run, c)]
        if configs:
            started = any((run.root / c.stage(seed)).is_dir() for c in configs for seed in c.seeds)
            finetune_many(configs, run_options(folder, opts, step, resume=started))
        return
    if step.kind == "baseline":
        from amfmedit.stages.baseline import baseline

        seeds = tuple(plan.seeds)
        todo = tuple(m for m in step.args["models"] if not all(run.is_complete(names.baseline_stage(m, s))
                                                                for s in seeds))
        if todo:  # an interrupted model is fitted again from its start (its fits are deterministic per seed)
            baseline(BaselineConfig(models=todo, seeds=seeds), replace(run_options(folder, opts, step, resume=False),
                                                                       force=True))
        return
    if step.kind == "evaluate":
        evaluate_mod.evaluate(evaluate_mod.EvaluateConfig(), run_options(folder, opts, step, resume=False))
        return
    if step.kind == "ig":
        stages = names.classifier_stages(run)
        paper = next((n for n, i in stages.items() if i["modality"] == "tabular" and i["mask"] is None), None)
        o = replace(run_options(folder, opts, step, resume=False), force=True)
        explain_mod.explain_ig(explain_mod.IGConfig(max_samples=step.args["max_samples"]), o, stage=paper)
        return
    if step.kind == "gradcam":  # the run's model (amfmedit.stages.selection), as `explain` chooses it
        o = replace(run_options(folder, opts, step, resume=False), force=True)
        explain_mod.explain_gradcam(explain_mod.CamConfig(), o)
        return
    raise ValueError(f"unknown study step kind {step.kind!r}")
