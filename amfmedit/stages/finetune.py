"""``finetune``: the downstream classifier (§4.2.3) and the supervised baselines (Tables 1-2).

Multimodal: the pretrained encoders + a fusion module of the registry
(:data:`amfmedit.models.FUSIONS`: concatenation, cross-attention, AMF), strategy "frozen"
(encoder weights AND BatchNorm statistics fixed) or "trainable". A fusion declares the run
inputs it needs (AMF: R_conf, filled by :mod:`amfmedit.stages.run_inputs` from ``amfmedit rconf``
or the user) and its settings (AMF: ``d_out``); nothing here branches on a fusion's or a run
input's name.
Supervised baselines (``fusion="none"``): the tabular encoder alone or ResNet-50 alone,
trained from scratch. Every combination runs once per seed (default 2022-2026); the
learning rate, unless given, is chosen from {1e-2, 1e-3, 1e-4} on validation with the first
seed. Writes ``finetune-<fusion>-<strategy>-seed<N>/`` or ``supervised-<modality>-seed<N>/``.

The paper's experiments (``docs/experiments.md``) are configurations of the same stage, each
with its part of the stage name (:func:`amfmedit.stages.names.variant_tag`): one member per
value of an R_conf sweep (Table 5), ``rconf="auto"`` (R_conf chosen on validation among
candidates around the measured ratio, :mod:`amfmedit.stages.run_inputs`), a label fraction of the
training rows (:mod:`amfmedit.data.subsets`; pretraining keeps every training row), the
auxiliary losses switched off (Table 6) and one tabular baseline per encoder (Table 1).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from amfmedit.data.masking import mask_record
from amfmedit.data.subsets import subset_record, train_subset
from amfmedit.env import environment
from amfmedit.errors import UserError
from amfmedit.io import read_json, write_json
from amfmedit.models import (
    FUSIONS,
    TABULAR_ENCODERS,
    ImageTabularClassifier,
    UnimodalClassifier,
    build_fusion,
    build_tabular_encoder,
    from_checkpoint,
    model_config,
    options_of,
)
from amfmedit.data import load_prepared
from amfmedit.paths import runs_dir
from amfmedit.stages import availability, names, run_inputs
from amfmedit.stages.classify import Trained, check_selectable, select_lr, train_one
from amfmedit.stages.common import (
    ProgressFactory,
    RunOptions,
    check_new_run_mask,
    load_dataset,
    masked_data,
    no_progress,
    resolve_mask,
    runtime_for,
    write_stage_config,
)
from amfmedit.stages.configs import FinetuneConfig, Recipe
from amfmedit.stages.kinds import kind_of
from amfmedit.stages.lifecycle import finish_stage
from amfmedit.stages.pretrain import (
    BLOCK_OPTIONS,
    PretrainConfig,
    image_encoder,
    load_pretrained,
    run_missing,
    second_pretrain_command,
    tabular_kwargs,
)
from amfmedit.train import rundir
from amfmedit.train.inputs import DeviceData

NO_FUSION = names.NO_FUSION
BASELINE_BLOCKS = ("d_state", "stacking", "final_norm")  # FinetuneConfig fields set on a baseline's encoder


@dataclass
class FinetuneResult:
    run: str
    prefix: str
    lr: float
    seeds: list[Trained]
    metric: str = "auc"
    inputs: dict = field(default_factory=dict)  # run input name -> the value trained with (e.g. r_conf)
    search: dict | None = None  # a run input searched on validation (--rconf auto): candidates, scores, choice


def resolve_missing(cfg: FinetuneConfig, run: rundir.Run) -> FinetuneConfig:
    """``cfg`` with ``missing`` resolved against the run (None: the mode of its ``pretrain/``). A model
    reading missing values otherwise carries its mode in its stage name; a fusion model's encoders then
    come from the run's second pretraining, ``pretrain-<missing>/``, which must exist."""
    pretrained = run_missing(run)
    if cfg.fusion != NO_FUSION and pretrained is None:
        return cfg  # the missing pretrain stage is reported by the caller
    mode = pretrained or PretrainConfig().missing
    chosen = cfg.missing or mode
    if cfg.fusion != NO_FUSION and chosen != mode:
        rundir.require_stage(run, names.pretrain_stage(chosen), second_pretrain_command(run, chosen))
    return replace(cfg, missing=chosen, missing_in_name=chosen != mode)


def _model_builder(cfg: FinetuneConfig, run: rundir.Run, schema, inputs: dict,
                   missing_features: list[int] | None = None) -> tuple[Callable, dict]:
    """A function building a fresh model (pretrained weights reloaded each call) and the encoders it uses
    (``missing_features``: the features a baseline's token encoder reads as missing)."""
    if cfg.fusion == NO_FUSION:
        pcfg = PretrainConfig()
        if run.is_complete(names.PRETRAIN):
            _, pcfg = load_pretrained(run)
        pcfg = replace(pcfg, missing=cfg.missing or pcfg.missing, corruption="swap")
        if cfg.tabular_encoder is not None:
            pooling = pcfg.ft_mamba_pooling if cfg.tabular_encoder == pcfg.tabular_encoder else None
            same = cfg.tabular_encoder == pcfg.tabular_encoder  # another encoder starts from its own defaults
            pcfg = replace(pcfg, tabular_encoder=cfg.tabular_encoder, tabular_dim=cfg.tabular_dim,
                           ft_mamba_pooling=pooling, d_state=pcfg.d_state if same else None,
                           expand=pcfg.expand if same else None, stacking=pcfg.stacking if same else None,
                           final_norm=pcfg.final_norm if same else None)
        if cfg.image_arch is not None:
            pcfg = replace(pcfg, image_arch=cfg.image_arch)
        accepted = options_of(TABULAR_ENCODERS[pcfg.tabular_encoder]) if pcfg.tabular_encoder in TABULAR_ENCODERS else {}
        pcfg = replace(pcfg, **{name: getattr(cfg, name) for name in BASELINE_BLOCKS
                                if getattr(cfg, name) is not None and BLOCK_OPTIONS[name][0] in accepted})
        pcfg.validate()

        def build_supervised():
            if cfg.modality == "image":
                enc = image_encoder(pcfg.image_arch, schema)
            else:
                enc = build_tabular_encoder(pcfg.tabular_encoder, n_cont_features=schema.n_cont,
                                            cat_cardinalities=schema.cardinalities,
                                            **tabular_kwargs(pcfg, missing_features))
            return UnimodalClassifier(enc, n_classes=kind_of(schema).head_size(schema), modality=cfg.modality,
                                      strategy="trainable")

        return build_supervised, {"tabular_encoder": pcfg.tabular_encoder, "image_arch": pcfg.image_arch,
                                  "missing": pcfg.missing}

    pretrained, pcfg = load_pretrained(run, cfg.missing)
    spec, state = model_config(pretrained), pretrained.state_dict()
    settings = {"d_out": cfg.d_out} if cfg.d_out is not None else {}
    if cfg.amf_normaliser is not None and "normaliser" in options_of(FUSIONS[cfg.fusion]):
        settings["normaliser"] = cfg.amf_normaliser

    def build_multimodal():
        pm = from_checkpoint({**spec, "state_dict": state})
        img, tab = pm.image_encoder, pm.tabular_encoder
        fusion = build_fusion(cfg.fusion, d_img=img.d_out, d_tab=tab.d_out, n_classes=kind_of(schema).head_size(schema),
                              **inputs, **settings)
        return ImageTabularClassifier(img, tab, fusion, strategy=cfg.strategy)

    return build_multimodal, {"tabular_encoder": pcfg.tabular_encoder, "image_arch": pcfg.image_arch,
                              "missing": availability.missing_mode(pretrained.tabular_encoder)}


def resolve_inputs(cfg: FinetuneConfig, run: rundir.Run) -> dict:
    """The run inputs ``cfg``'s fusion declares, found in the run (or given by the user), each checked."""
    values = {}
    for inp in run_inputs.declared(cfg.fusion):
        values[inp.name] = inp.resolve(cfg, run)
        inp.check(values[inp.name], run_inputs.fusion_d_out(cfg))
    return values


def choose_on_validation(train: Callable[[float, Path, bool, object], Trained], *, candidates, search_dir: Path,
                         lr: float | None, lrs: tuple[float, ...], rt, resume: bool, metric, sub_folder) -> tuple:
    """Train every candidate value of a run input once (first seed) and keep the best VALIDATION metric
    (test is never read).

    ``train(lr, out_dir, resume, value)``. Without a given ``lr`` the learning rate is searched at the
    first candidate (the measured value) and reused for the others, so the search costs
    ``len(lrs) + len(candidates) - 1`` trainings. Ties go to the earlier candidate (closest to the
    measured value). Returns the record (candidates with their validation scores, the choice), the lr
    and the chosen training.
    """
    trained: dict[float, Trained] = {}
    for c in candidates:
        sub = search_dir / sub_folder(c.value)
        chosen_lr, t, _ = select_lr(lambda lr_, d, res, v=c.value: train(lr_, d, res, v), search_dir=sub,
                                    lrs=(lr,) if lr is not None else lrs, rt=rt, resume=resume, metric=metric)
        lr = chosen_lr
        trained[c.value] = t
        c.record["val"] = t.best_val
    finite = [i for i, c in enumerate(candidates) if math.isfinite(c.record["val"])]
    if not finite:
        raise UserError(f"{search_dir}: no candidate gave a finite validation metric; check that the validation "
                        "split can score the model")
    best = candidates[max(finite, key=lambda i: (metric.rank(candidates[i].record["val"]), -i))]
    record = {"split": "val", "candidates": [c.record for c in candidates], "chosen": best.value,
              **({"chosen_multiplier": best.record["multiplier"]} if "multiplier" in best.record else {}),
              "lr": lr, "rule": "best validation metric of the first seed; ties -> closest to the measured value"}
    if rt.is_main:
        write_json(search_dir / "selection.json", record)
    return record, float(lr), trained[best.value]


@dataclass
class FinetuneJob:
    """One fine-tuning combination ready to train: what :func:`_train_seeds` needs, typed."""

    cfg: FinetuneConfig
    opts: RunOptions
    run: rundir.Run
    rt: object  # amfmedit.train.runtime.Runtime
    dataset: object  # the (masked) PreparedDataset
    data: DeviceData
    recipe: Recipe
    inputs: dict  # run input name -> value (measured, given, or the centre of a search)
    searched: object | None  # the run input searched on validation (``--rconf auto``), else None
    build: Callable[[dict], tuple[Callable, dict]]  # inputs -> (model factory, encoder names)
    mask: dict | None  # masked features record (incomplete-data stages)
    progress: ProgressFactory
    modality_dropout: float = 0.0  # resolved (availability.modality_dropout)

    @property
    def use_image(self) -> bool:
        return self.cfg.modality != "tabular"

    @property
    def use_tabular(self) -> bool:
        return self.cfg.modality != "image"

    @property
    def metric(self):
        return kind_of(self.dataset.schema).headline

    def seed_data(self, seed: int) -> tuple[DeviceData, dict | None]:
        """The training rows of ``seed``: all of them, or its nested stratified label fraction."""
        if self.cfg.train_fraction >= 1:
            return self.data, None
        all_train = self.data.rows("train")
        rows = train_subset(self.dataset.labels, all_train, self.cfg.train_fraction, seed)
        return self.data.with_train_rows(rows), subset_record(self.dataset.labels, rows, self.cfg.train_fraction,
                                                               seed, len(all_train))


def finetune(
    cfg: FinetuneConfig, opts: RunOptions, *, progress: ProgressFactory = no_progress, data=None
) -> FinetuneResult:
    """Train ``cfg``'s model once per seed in the run (``opts.run`` or the latest).

    Finished seed folders are refused without ``force`` (replaced with it); with ``resume``
    they are kept and unfinished ones continue. ``data`` may pass an already loaded
    ``(dataset, DeviceData)`` to share between calls.
    """
    cfg.validate()
    rt = runtime_for(opts)
    run = rundir.open_run(opts.runs_dir, opts.run)
    cfg = replace(cfg, mask_features=tuple(resolve_mask(run, cfg.mask_features, cfg.mask_top_k,
                                                        data_dir=opts.data_dir)), mask_top_k=None)
    if cfg.fusion != NO_FUSION:
        rundir.require_stage(run, names.PRETRAIN, f"amfmedit pretrain --data {run.data}")
    cfg = resolve_missing(cfg, run)
    inputs = resolve_inputs(cfg, run)
    searched = next((inp for inp in run_inputs.declared(cfg.fusion) if inp.searches(cfg)), None)
    if data is None:
        ds = load_dataset(run, opts)
        check_selectable(ds)
        dd = DeviceData(ds, device=rt.device, residency=opts.images_in, with_images=cfg.modality != "tabular")
    else:
        ds, dd = data
    # the features a baseline's token encoder reads, from the prepared mask: masked features (Table 4)
    # stay constants, as for the pretrained encoders
    missing_features = ds.missing_features("train")
    mask = mask_record(ds, cfg.mask_features) if cfg.mask_features else None
    if cfg.mask_features:  # train, validation and test rows all see the constants
        ds, dd = masked_data(ds, dd, cfg.mask_features)
    schema = ds.schema
    recipe = cfg.recipe.resolved(kind_of(schema), schema)
    if cfg.aux_off:  # Table 6: the switched-off losses weigh 0 in eq. 14
        recipe = replace(recipe, aux_weights={**recipe.aux_weights, **{n: 0.0 for n in cfg.aux_off}})
    builders: dict = {}

    def build(values: dict) -> tuple[Callable, dict]:
        key = tuple(sorted(values.items()))
        if key not in builders:
            builders[key] = _model_builder(cfg, run, schema, values, missing_features)
        return builders[key]

    dropout = 0.0 if cfg.fusion == NO_FUSION else \
        availability.modality_dropout(cfg.modality_dropout, ds, dd.rows("train"))
    cfg = replace(cfg, modality_dropout=dropout)
    job = FinetuneJob(cfg, opts, run, rt, ds, dd, recipe, inputs, searched, build, mask, progress, dropout)
    # One writer per combination (its search and every seed), from before the clobber check to the end.
    with rundir.stage_lock(run, names.lr_search_stage(cfg.prefix, cfg.mask_features), rt=rt):
        return _train_seeds(job)


def _train_seeds(job: FinetuneJob) -> FinetuneResult:
    """:func:`finetune`'s training, with the combination's lock held."""
    cfg, opts, run, rt, recipe = job.cfg, job.opts, job.run, job.rt, job.recipe
    # Refuse to clobber before training anything.
    for seed in cfg.seeds:
        path = run.stage(cfg.stage(seed))
        if path.is_dir() and not opts.resume and not opts.force:
            state = "finished" if (path / rundir.MARKER).is_file() else "unfinished"
            raise UserError(f"{path} is {state}; pass --force to replace it" +
                            ("" if state == "finished" else " or --resume to continue it"))
    if rt.is_main:
        run.record_command(cfg.prefix, opts.argv)
    inputs = dict(job.inputs)
    encoders = job.build(inputs)[1]
    stage_extra = {"data": run.data, **encoders, **({"mask": job.mask} if job.mask else {})}
    search_record: dict | None = None
    searched = job.searched

    def write_config(out_dir: Path, lr: float, seed: int, values: dict, subset: dict | None) -> None:
        if rt.is_main:
            extra = {**stage_extra, **values, "lr": lr, "seed": seed, "train_subset": subset,
                     **({searched.record_key: search_record} if searched else {})}
            resolved = replace(cfg, recipe=recipe, seeds=(seed,))
            for inp in run_inputs.declared(cfg.fusion):  # config.toml repeats the values trained with
                resolved = inp.with_value(resolved, values[inp.name])
            write_stage_config(out_dir, resolved, rt, extra,
                               toml_extra={"lr": lr})  # config.toml repeats the chosen learning rate

    def train(lr: float, seed: int, out_dir: Path, resume: bool, values: dict | None = None) -> Trained:
        values = inputs if values is None else values
        seed_dd, subset = job.seed_data(seed)
        write_config(out_dir, lr, seed, values, subset)
        tried = f" {searched.label}={values[searched.name]:g}" if searched else ""
        return train_one(
            job.build(values)[0], dataset=job.dataset, data=seed_dd, recipe=recipe, lr=lr, seed=seed,
            use_image=job.use_image, use_tabular=job.use_tabular, out_dir=out_dir, rt=rt, resume=resume,
            progress=job.progress, log=opts.log, title=f"{cfg.prefix} seed={seed} lr={lr:g}{tried}",
            extra_config={"stage": cfg.prefix, "fusion": cfg.fusion, "strategy": cfg.strategy,
                          "modality": cfg.modality, "train_fraction": cfg.train_fraction, "missing": cfg.missing,
                          "modality_dropout": job.modality_dropout, **values},
            modality_dropout=job.modality_dropout,
        )

    first = cfg.seeds[0]
    results: list[Trained] = []
    lr = recipe.lr
    first_dir = run.stage(cfg.stage(first))
    resumed_first = (first_dir / rundir.MARKER).is_file() and opts.resume
    if searched is not None:
        search = run.stage(searched.search_stage(cfg.prefix, cfg.mask_features))
        if resumed_first:
            rec = read_json(first_dir / rundir.CONFIG_FILE)
            lr, search_record = float(rec["lr"]), rec.get(searched.record_key)
            inputs[searched.name] = float(rec[searched.name])
        else:
            if rt.is_main and search.exists() and (opts.force or not opts.resume):
                rundir.remove_tree(search)
            rt.barrier()
            measured = inputs[searched.name]
            candidates = searched.candidates(cfg, measured, run_inputs.fusion_d_out(cfg))
            search_record, lr, trained = choose_on_validation(
                lambda lr_, d, res, v: train(lr_, first, d, res, {**inputs, searched.name: v}),
                candidates=candidates, search_dir=search, lr=lr, lrs=recipe.lrs, rt=rt, resume=opts.resume,
                metric=job.metric, sub_folder=searched.sub_folder)
            search_record = searched.search_record(cfg, measured, search_record)
            inputs[searched.name] = search_record["chosen"]
            if rt.is_main:
                write_json(search / "selection.json", search_record)
                if first_dir.exists():
                    rundir.remove_tree(first_dir)
                os.replace(trained.out_dir, first_dir)
            write_config(first_dir, lr, first, inputs, job.seed_data(first)[1])  # now with the choice recorded
            finish_stage(run, search, {f"chosen_{searched.name}": inputs[searched.name], "lr": lr}, rt=rt)
            results.append(replace(trained, out_dir=first_dir))
    if lr is None:
        search = run.stage(names.lr_search_stage(cfg.prefix, cfg.mask_features))
        if resumed_first:
            lr = float(read_json(first_dir / rundir.CONFIG_FILE)["lr"])
        else:
            if rt.is_main and search.exists() and (opts.force or not opts.resume):
                rundir.remove_tree(search)
            rt.barrier()
            lr, trained, _ = select_lr(lambda lr_, d, res: train(lr_, first, d, res), search_dir=search,
                                       lrs=recipe.lrs, rt=rt, resume=opts.resume, metric=job.metric)
            # The winning search run IS the first seed's run: move it instead of training it again.
            if rt.is_main:
                if first_dir.exists():
                    rundir.remove_tree(first_dir)
                os.replace(trained.out_dir, first_dir)
            finish_stage(run, search, {"chosen_lr": lr}, rt=rt)
            results.append(replace(trained, out_dir=first_dir))
    for seed in cfg.seeds:
        if results and seed == first:
            continue
        stage = cfg.stage(seed)
        path = run.stage(stage)
        if opts.resume and (path / rundir.MARKER).is_file():
            rec = read_json(path / rundir.MARKER)
            results.append(Trained(path, float(rec["lr"]), seed, float(rec["best_val"]), int(rec["best_epoch"]),
                                   int(rec["epochs_run"])))
            continue
        out = rundir.begin_stage(run, stage, force=opts.force, resume=opts.resume and path.is_dir(), rt=rt)
        results.append(train(lr, seed, out, opts.resume and (out / "last.pt").is_file()))
        finish_stage(run, out, {"seed": seed, "lr": lr, "best_val": results[-1].best_val,
                                "best_epoch": results[-1].best_epoch, "epochs_run": results[-1].epochs_run}, rt=rt)
    results.sort(key=lambda t: list(cfg.seeds).index(t.seed))
    return FinetuneResult(run.name, cfg.prefix, float(lr), results, job.metric.key, inputs, search_record)


def experiment_configs(base: FinetuneConfig, *, rconfs=(), fractions=(), encoders=(),
                       ablate: bool = False) -> list[FinetuneConfig]:
    """``base`` once per R_conf value x label fraction x tabular encoder x loss-ablation row.

    ``rconfs`` (numbers and/or ``"auto"``) reach fusions with run input ``r_conf``
    (:mod:`amfmedit.stages.run_inputs`); with more than one value every numeric member carries its
    value in its stage name. ``encoders``
    reach supervised tabular baselines (several: the encoder is in the name, Table 1).
    ``ablate`` adds, for a fusion with auxiliary losses, every combination of them switched
    off (Table 6; the row with all on is the ordinary stage). ``fractions`` train on label
    fractions. Empty lists keep ``base``'s value, so ``experiment_configs(base) == [base]``.
    """
    base.validate()  # an unknown fusion or missing modality is reported before anything is expanded
    swept = [base]
    for inp in run_inputs.declared(base.fusion):  # R_conf sweeps (Table 5) and --rconf auto
        swept = [member for cfg in swept for member in inp.sweep(cfg, rconfs)]
    tabular_baseline = base.fusion == NO_FUSION and base.modality == "tabular"
    enc = list(dict.fromkeys(encoders)) if (encoders and tabular_baseline) else [base.tabular_encoder]
    if encoders and base.fusion == NO_FUSION and not tabular_baseline:
        enc = [None if len(encoders) > 1 else encoders[0]]  # an image baseline has no tabular encoder
    losses = list(FUSIONS[base.fusion].aux_weights) if (ablate and base.fusion != NO_FUSION) else []
    offs = [tuple(n for i, n in enumerate(losses) if mask >> i & 1) for mask in range(2 ** len(losses))]
    fr = list(dict.fromkeys(float(f) for f in fractions)) if fractions else [base.train_fraction]
    return [replace(member, tabular_encoder=e, encoder_in_name=len(enc) > 1, aux_off=off, train_fraction=f)
            for f in fr for e in enc for member in swept for off in (offs or [base.aux_off])]


def finetune_many(
    configs: list[FinetuneConfig], opts: RunOptions, *, progress: ProgressFactory = no_progress, data: str | None = None
) -> list[FinetuneResult]:
    """Several fusion x strategy combinations in one run, sharing the loaded dataset.

    Every configuration is checked (and AMF's R_conf found) before anything trains.
    ``data`` starts a new run for supervised baselines when the user has no run yet.
    """
    if not configs:
        raise UserError("nothing to fine-tune: give --fusion and --strategy")
    for cfg in configs:
        cfg.validate()
    rt = runtime_for(opts)
    if data is not None:
        if any(c.fusion != NO_FUSION for c in configs):
            raise UserError(f"--data {data}: only supervised baselines (--fusion none) start a run; fusion models "
                            f"need a pretrained run: `amfmedit pretrain --data {data}`")
        opts = replace(opts, run=_baseline_run(data, opts, rt, configs))
    run = rundir.open_run(opts.runs_dir, opts.run)
    configs = [resolve_missing(replace(c, mask_features=tuple(resolve_mask(run, c.mask_features, c.mask_top_k,
                                                                           data_dir=opts.data_dir)),
                                       mask_top_k=None), run) for c in configs]
    for cfg in configs:
        if cfg.fusion != NO_FUSION:
            rundir.require_stage(run, names.PRETRAIN, f"amfmedit pretrain --data {run.data}")
        resolve_inputs(cfg, run)
    if opts.resume and all(run.is_complete(c.stage(seed)) for c in configs for seed in c.seeds):
        raise UserError(f"nothing to resume: every stage of this command in run {run.name} is finished; "
                        "pass --force to replace them")
    opts = replace(opts, run=str(run.root))
    ds = load_dataset(run, opts)
    check_selectable(ds)  # a validation split that cannot select a model fails before any folder exists
    dd = DeviceData(ds, device=rt.device, residency=opts.images_in,
                    with_images=any(c.modality != "tabular" for c in configs))
    return [finetune(cfg, opts, progress=progress, data=(ds, dd)) for cfg in configs]


def _baseline_run(data: str, opts: RunOptions, rt, configs: list[FinetuneConfig]) -> str:
    ds = load_prepared(data, opts.data_dir)  # unknown --data: lists what exists
    check_selectable(ds)  # the inputs a new run would be refused for, checked before it exists
    if opts.run is not None and (runs_dir(opts.runs_dir) / opts.run / rundir.RUN_FILE).is_file():
        run = rundir.open_run(opts.runs_dir, opts.run)
        if Path(run.data).name != ds.root.name:
            raise UserError(f"--run {opts.run} holds data {run.data!r}, not {data!r}; choose another run name")
        return run.name
    for cfg in configs:
        check_new_run_mask(ds.schema, cfg.mask_features, cfg.mask_top_k)
    name = opts.run or (rundir.new_run_name(opts.runs_dir, str(data), "supervised") if rt.is_main else None)
    name = rt.broadcast_object(name)
    if rt.is_main:
        rundir.create_run(opts.runs_dir, name, data=str(data), data_dir=opts.data_dir, environment=environment())
    rt.barrier()
    return name


def metric_name(results: list[FinetuneResult]) -> str:
    return results[0].metric if results else "auc"
