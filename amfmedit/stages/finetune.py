"""``finetune``: the downstream classifier (§4.2.3) and the supervised baselines (Tables 1-2).

Multimodal: the pretrained encoders + a fusion module of the registry
(:data:`amfmedit.models.FUSIONS`: concatenation, cross-attention, AMF), strategy "frozen"
(encoder weights AND BatchNorm statistics fixed) or "trainable". A fusion declares the run
inputs it needs (AMF: ``r_conf``, from ``amfmedit rconf`` or given by the user) and its
settings (AMF: ``d_out``); nothing here branches on a fusion's name.
Supervised baselines (``fusion="none"``): the tabular encoder alone or ResNet-50 alone,
trained from scratch. Every combination runs once per seed (default 2022-2026); the
learning rate, unless given, is chosen from {1e-2, 1e-3, 1e-4} on validation with the first
seed. Writes ``finetune-<fusion>-<strategy>-seed<N>/`` or ``supervised-<modality>-seed<N>/``.

The paper's experiments (``docs/experiments.md``) are configurations of the same stage, each
with its part of the stage name (:func:`amfmedit.stages.names.variant_tag`): one member per
value of an R_conf sweep (Table 5), ``rconf="auto"`` (R_conf chosen on validation among
candidates around the measured ratio, :func:`rconf_candidates`), a label fraction of the
training rows (:mod:`amfmedit.data.subsets`; pretraining keeps every training row), the
auxiliary losses switched off (Table 6) and one tabular baseline per encoder (Table 1).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from amfmedit.data.masking import mask_record
from amfmedit.data.subsets import subset_record, train_subset
from amfmedit.env import environment
from amfmedit.errors import UserError
from amfmedit.io import read_json, write_json
from amfmedit.models import (
    FUSIONS,
    ImageEncoder,
    ImageTabularClassifier,
    UnimodalClassifier,
    amf_split,
    build_fusion,
    build_tabular_encoder,
    from_checkpoint,
    model_config,
    options_of,
)
from amfmedit.data import load_prepared
from amfmedit.paths import runs_dir
from amfmedit.stages import names
from amfmedit.stages.classify import Trained, check_selectable, select_lr, train_one
from amfmedit.stages.common import (
    ProgressFactory,
    RunOptions,
    load_dataset,
    masked_data,
    no_progress,
    resolve_mask,
    runtime_for,
    write_stage_config,
)
from amfmedit.stages.configs import FinetuneConfig
from amfmedit.stages.configs import check_split as _check_split
from amfmedit.stages.lifecycle import finish_stage
from amfmedit.stages.pretrain import PretrainConfig, load_pretrained, tabular_kwargs
from amfmedit.stages.rconf import read_rconf
from amfmedit.train import rundir
from amfmedit.train.inputs import DeviceData
from amfmedit.train.metrics import headline_metric

NO_FUSION = names.NO_FUSION
AUTO = names.AUTO


@dataclass
class FinetuneResult:
    run: str
    prefix: str
    lr: float
    seeds: list[Trained]
    r_conf: float | None = None
    metric: str = "auc"
    rconf_auto: dict | None = None  # --rconf auto: candidates, validation scores, choice


def _model_builder(cfg: FinetuneConfig, run: rundir.Run, schema, inputs: dict) -> tuple[Callable, dict]:
    """A function building a fresh model (pretrained weights reloaded each call) and the encoders it uses."""
    if cfg.fusion == NO_FUSION:
        pcfg = PretrainConfig()
        if run.is_complete(names.PRETRAIN):
            _, pcfg = load_pretrained(run)
        if cfg.tabular_encoder is not None:
            pooling = pcfg.ft_mamba_pooling if cfg.tabular_encoder == pcfg.tabular_encoder else None
            same = cfg.tabular_encoder == pcfg.tabular_encoder  # another encoder starts from its own defaults
            pcfg = replace(pcfg, tabular_encoder=cfg.tabular_encoder, tabular_dim=cfg.tabular_dim,
                           ft_mamba_pooling=pooling, d_state=pcfg.d_state if same else None,
                           expand=pcfg.expand if same else None, stacking=pcfg.stacking if same else None)
        if cfg.image_arch is not None:
            pcfg = replace(pcfg, image_arch=cfg.image_arch)
        pcfg.validate()

        def build_supervised():
            if cfg.modality == "image":
                enc = ImageEncoder(arch=pcfg.image_arch, in_channels=schema.image.channels)
            else:
                enc = build_tabular_encoder(pcfg.tabular_encoder, n_cont_features=schema.n_cont,
                                            cat_cardinalities=schema.cardinalities, **tabular_kwargs(pcfg))
            return UnimodalClassifier(enc, n_classes=schema.n_classes, modality=cfg.modality, strategy="trainable")

        return build_supervised, {"tabular_encoder": pcfg.tabular_encoder, "image_arch": pcfg.image_arch}

    pretrained, pcfg = load_pretrained(run)
    spec, state = model_config(pretrained), pretrained.state_dict()
    settings = {"d_out": cfg.d_out} if cfg.d_out is not None else {}

    def build_multimodal():
        pm = from_checkpoint({**spec, "state_dict": state})
        img, tab = pm.image_encoder, pm.tabular_encoder
        fusion = build_fusion(cfg.fusion, d_img=img.d_out, d_tab=tab.d_out, n_classes=schema.n_classes,
                              **inputs, **settings)
        return ImageTabularClassifier(img, tab, fusion, strategy=cfg.strategy)

    return build_multimodal, {"tabular_encoder": pcfg.tabular_encoder, "image_arch": pcfg.image_arch}


def resolve_rconf(cfg: FinetuneConfig, run: rundir.Run) -> float:
    """R_conf for a fusion that needs it: ``--rconf`` or the run's ``rconf`` stage (on the same masked
    table and label fraction); for ``--rconf auto`` the measured value the candidates centre on."""
    if cfg.rconf is not None and cfg.rconf != AUTO:
        return float(cfg.rconf)
    value = read_rconf(run, cfg.mask_features, cfg.train_fraction)
    if value is None:
        args = " ".join([*(f"--mask-features {n}" for n in cfg.mask_features),
                         *([f"--train-fraction {cfg.train_fraction:g}"] if cfg.train_fraction < 1 else [])])
        stage = names.rconf_stage(cfg.mask_features, cfg.train_fraction)
        raise UserError(
            f"--fusion {cfg.fusion}{' --rconf auto' if cfg.rconf == AUTO else ''} needs R_conf and run "
            f"{run.name} has no finished {stage}/ stage; run `amfmedit rconf{' ' + args if args else ''}` first"
            + ("" if cfg.rconf == AUTO else " or pass --rconf VALUE")
        )
    return value


def rconf_candidates(measured: float, multipliers, d_out: int | None) -> list[dict]:
    """``--rconf auto``'s candidates: ``measured x multiplier`` (4 decimals), the measured value first.

    Eq. 6 turns R_conf into integer dimensions (L_img, L_tab), so candidates with the same split
    are one architecture: only the one closest to the measured value is kept. Candidates that
    leave a modality no dimension are dropped.
    """
    order = sorted(multipliers, key=lambda m: (abs(math.log(m)), m))
    out, splits = [], set()
    for m in order:
        r = round(measured * m, 4)
        try:
            split = amf_split(d_out, r) if d_out is not None else (r,)
        except ValueError:
            continue
        if split in splits:
            continue
        splits.add(split)
        out.append({"multiplier": float(m), "r_conf": r, **({"L_img": split[0], "L_tab": split[1]} if d_out else {})})
    if not out:
        raise UserError(f"--rconf auto: no candidate around the measured R_conf {measured:.4g} gives each modality "
                        f"a dimension of D_out {d_out}; use a larger --d-out or pass --rconf VALUE")
    return out


def choose_rconf(train: Callable[[float, Path, bool, float], Trained], *, candidates: list[dict], search_dir: Path,
                 lr: float | None, lrs: tuple[float, ...], rt, resume: bool) -> tuple[dict, float, Trained]:
    """Train every candidate once (first seed) and keep the best VALIDATION metric (test is never read).

    ``train(lr, out_dir, resume, r_conf)``. Without a given ``lr`` the learning rate is searched
    at the first (measured) candidate and reused for the others, so the search costs
    ``len(lrs) + len(candidates) - 1`` trainings. Ties go to the candidate closest to the measured R_conf.
    Returns the record (candidates with their validation scores, the choice), the lr and the chosen training.
    """
    trained: dict[float, Trained] = {}
    for c in candidates:
        r = c["r_conf"]
        sub = search_dir / names.variant_tag(rconf=r).lstrip("-")
        chosen_lr, t, _ = select_lr(lambda lr_, d, res, r=r: train(lr_, d, res, r), search_dir=sub,
                                    lrs=(lr,) if lr is not None else lrs, rt=rt, resume=resume)
        lr = chosen_lr
        trained[r] = t
        c["val"] = t.best_val
    finite = [c for c in candidates if math.isfinite(c["val"])]
    if not finite:
        raise UserError(f"{search_dir}: no R_conf candidate gave a finite validation metric; check the validation "
                        "split has both classes")
    best = max(finite, key=lambda c: (c["val"], -abs(math.log(c["multiplier"]))))
    record = {"split": "val", "candidates": candidates, "chosen": best["r_conf"], "chosen_multiplier": best["multiplier"],
              "lr": lr, "rule": "best validation metric of the first seed; ties -> closest to the measured R_conf"}
    if rt.is_main:
        write_json(search_dir / "selection.json", record)
    return record, float(lr), trained[best["r_conf"]]


#: How a stage fills each run input a fusion may declare (``run_inputs``).
RUN_INPUTS: dict[str, Callable[[FinetuneConfig, rundir.Run], object]] = {"r_conf": resolve_rconf}


def resolve_inputs(cfg: FinetuneConfig, run: rundir.Run) -> dict:
    """The run inputs ``cfg``'s fusion declares, found in the run (or given by the user)."""
    if cfg.fusion == NO_FUSION:
        return {}
    declared = FUSIONS[cfg.fusion].run_inputs
    unknown = [n for n in declared if n not in RUN_INPUTS]
    if unknown:
        raise ValueError(f"fusion {cfg.fusion} declares run inputs no stage provides: {unknown}; "
                         f"add a resolver to amfmedit.stages.finetune.RUN_INPUTS")
    inputs = {n: RUN_INPUTS[n](cfg, run) for n in declared}
    if "r_conf" in inputs:
        _check_split(inputs["r_conf"], cfg.d_out or options_of(FUSIONS[cfg.fusion]).get("d_out"))
    return inputs


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
    inputs = resolve_inputs(cfg, run)
    r_conf = inputs.get("r_conf")
    auto = cfg.rconf == AUTO and "r_conf" in inputs
    if data is None:
        ds = load_dataset(run, opts)
        check_selectable(ds)
        dd = DeviceData(ds, device=rt.device, residency=opts.images_in, with_images=cfg.modality != "tabular")
    else:
        ds, dd = data
    mask = mask_record(ds, cfg.mask_features) if cfg.mask_features else None
    if cfg.mask_features:  # train, validation and test rows all see the constants
        ds, dd = masked_data(ds, dd, cfg.mask_features)
    schema = ds.schema
    recipe = cfg.recipe.resolved(schema.task, schema.n_classes)
    if cfg.aux_off:  # Table 6: the switched-off losses weigh 0 in eq. 14
        recipe = replace(recipe, aux_weights={**recipe.aux_weights, **{n: 0.0 for n in cfg.aux_off}})
    builders: dict = {}

    def builder(r: float | None):
        if r not in builders:
            builders[r] = _model_builder(cfg, run, schema, {**inputs, "r_conf": r} if "r_conf" in inputs else inputs)
        return builders[r]

    encoders = builder(r_conf)[1]
    use_image = cfg.modality != "tabular"
    use_tabular = cfg.modality != "image"
    all_train = dd.rows("train")

    def seed_data(seed: int) -> tuple[DeviceData, dict | None]:
        """The training rows of ``seed``: all of them, or its nested stratified label fraction."""
        if cfg.train_fraction >= 1:
            return dd, None
        rows = train_subset(ds.labels, all_train, cfg.train_fraction, seed)
        return dd.with_train_rows(rows), subset_record(ds.labels, rows, cfg.train_fraction, seed, len(all_train))

    # One writer per combination (its search and every seed), from before the clobber check to the end.
    lock = contextlib.ExitStack()
    lock.enter_context(rundir.stage_lock(run, names.lr_search_stage(cfg.prefix, cfg.mask_features), rt=rt))
    try:
        return _train_seeds(cfg, opts, run, rt, ds, recipe, inputs, r_conf, auto, builder, encoders, mask,
                            use_image, use_tabular, seed_data, progress)
    finally:
        lock.close()


def _train_seeds(cfg, opts, run, rt, ds, recipe, inputs, r_conf, auto, builder, encoders, mask, use_image,
                 use_tabular, seed_data, progress) -> FinetuneResult:
    """:func:`finetune`'s training, with the combination's lock held."""
    schema = ds.schema
    # Refuse to clobber before training anything.
    for seed in cfg.seeds:
        path = run.stage(cfg.stage(seed))
        if path.is_dir() and not opts.resume and not opts.force:
            state = "finished" if (path / rundir.MARKER).is_file() else "unfinished"
            raise UserError(f"{path} is {state}; pass --force to replace it" +
                            ("" if state == "finished" else " or --resume to continue it"))
    if rt.is_main:
        run.record_command(cfg.prefix, opts.argv)
    stage_extra = {"data": run.data, **inputs, **encoders, **({"mask": mask} if mask else {})}
    auto_record: dict | None = None

    def write_config(out_dir: Path, lr: float, seed: int, r: float | None, subset: dict | None) -> None:
        if rt.is_main:
            extra = {**stage_extra, **({"r_conf": r} if "r_conf" in inputs else {"r_conf": None}), "lr": lr,
                     "seed": seed, "train_subset": subset, **({"rconf_auto": auto_record} if auto else {})}
            write_stage_config(out_dir, replace(cfg, recipe=recipe, seeds=(seed,), rconf=r), rt, extra,
                               toml_extra={"lr": lr})  # config.toml repeats the chosen learning rate

    def train(lr: float, seed: int, out_dir: Path, resume: bool, r: float | None = None) -> Trained:
        r = r_conf if r is None else r
        seed_dd, subset = seed_data(seed)
        write_config(out_dir, lr, seed, r, subset)
        return train_one(
            builder(r)[0], dataset=ds, data=seed_dd, recipe=recipe, lr=lr, seed=seed, use_image=use_image,
            use_tabular=use_tabular, out_dir=out_dir, rt=rt, resume=resume, progress=progress, log=opts.log,
            title=f"{cfg.prefix} seed={seed} lr={lr:g}" + (f" R_conf={r:g}" if auto else ""),
            extra_config={"stage": cfg.prefix, "fusion": cfg.fusion, "strategy": cfg.strategy,
                          "modality": cfg.modality, "r_conf": r, "train_fraction": cfg.train_fraction},
        )

    first = cfg.seeds[0]
    results: list[Trained] = []
    lr = recipe.lr
    first_dir = run.stage(cfg.stage(first))
    resumed_first = (first_dir / rundir.MARKER).is_file() and opts.resume
    if auto:
        search = run.stage(names.rconf_search_stage(cfg.prefix, cfg.mask_features))
        if resumed_first:
            rec = read_json(first_dir / rundir.CONFIG_FILE)
            lr, r_conf, auto_record = float(rec["lr"]), float(rec["r_conf"]), rec.get("rconf_auto")
        else:
            if rt.is_main and search.exists() and (opts.force or not opts.resume):
                rundir.remove_tree(search)
            rt.barrier()
            d_out = cfg.d_out or options_of(FUSIONS[cfg.fusion]).get("d_out")
            candidates = rconf_candidates(r_conf, cfg.rconf_multipliers, d_out)
            auto_record, lr, trained = choose_rconf(
                lambda lr_, d, res, r: train(lr_, first, d, res, r), candidates=candidates, search_dir=search,
                lr=lr, lrs=recipe.lrs, rt=rt, resume=opts.resume)
            auto_record = {"measured": r_conf, "multipliers": list(cfg.rconf_multipliers), **auto_record}
            r_conf = auto_record["chosen"]
            if rt.is_main:
                write_json(search / "selection.json", auto_record)
                if first_dir.exists():
                    rundir.remove_tree(first_dir)
                os.replace(trained.out_dir, first_dir)
            write_config(first_dir, lr, first, r_conf, seed_data(first)[1])  # now with the choice recorded
            finish_stage(run, search, {"chosen_rconf": r_conf, "lr": lr}, rt=rt)
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
                                       lrs=recipe.lrs, rt=rt, resume=opts.resume)
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
        results.append(train(lr, seed, out, opts.resume and (out / "last.pt").is_file(), r_conf))
        finish_stage(run, out, {"seed": seed, "lr": lr, "best_val": results[-1].best_val,
                                "best_epoch": results[-1].best_epoch, "epochs_run": results[-1].epochs_run}, rt=rt)
    results.sort(key=lambda t: list(cfg.seeds).index(t.seed))
    return FinetuneResult(run.name, cfg.prefix, float(lr), results, r_conf, headline_metric(schema.task),
                          auto_record)


def experiment_configs(base: FinetuneConfig, *, rconfs=(), fractions=(), encoders=(),
                       ablate: bool = False) -> list[FinetuneConfig]:
    """``base`` once per R_conf value x label fraction x tabular encoder x loss-ablation row.

    ``rconfs`` (numbers and/or ``"auto"``) reach fusions with run input ``r_conf``; with more
    than one value every numeric member carries its value in its stage name. ``encoders``
    reach supervised tabular baselines (several: the encoder is in the name, Table 1).
    ``ablate`` adds, for a fusion with auxiliary losses, every combination of them switched
    off (Table 6; the row with all on is the ordinary stage). ``fractions`` train on label
    fractions. Empty lists keep ``base``'s value, so ``experiment_configs(base) == [base]``.
    """
    base.validate()  # an unknown fusion or missing modality is reported before anything is expanded
    uses_rconf = base.fusion != NO_FUSION and "r_conf" in FUSIONS[base.fusion].run_inputs
    rc = list(dict.fromkeys(rconfs)) if (rconfs and uses_rconf) else [base.rconf]
    tabular_baseline = base.fusion == NO_FUSION and base.modality == "tabular"
    enc = list(dict.fromkeys(encoders)) if (encoders and tabular_baseline) else [base.tabular_encoder]
    if encoders and base.fusion == NO_FUSION and not tabular_baseline:
        enc = [None if len(encoders) > 1 else encoders[0]]  # an image baseline has no tabular encoder
    losses = list(FUSIONS[base.fusion].aux_weights) if (ablate and base.fusion != NO_FUSION) else []
    offs = [tuple(n for i, n in enumerate(losses) if mask >> i & 1) for mask in range(2 ** len(losses))]
    fr = list(dict.fromkeys(float(f) for f in fractions)) if fractions else [base.train_fraction]
    return [replace(base, rconf=r, rconf_in_name=len(rc) > 1 and r != AUTO, tabular_encoder=e,
                    encoder_in_name=len(enc) > 1, aux_off=off, train_fraction=f)
            for f in fr for e in enc for r in rc for off in (offs or [base.aux_off])]


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
        opts = replace(opts, run=_baseline_run(data, opts, rt))
    run = rundir.open_run(opts.runs_dir, opts.run)
    configs = [replace(c, mask_features=tuple(resolve_mask(run, c.mask_features, c.mask_top_k, data_dir=opts.data_dir)),
                       mask_top_k=None) for c in configs]
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


def _baseline_run(data: str, opts: RunOptions, rt) -> str:
    ds = load_prepared(data, opts.data_dir)  # unknown --data: lists what exists
    if opts.run is not None and (runs_dir(opts.runs_dir) / opts.run / rundir.RUN_FILE).is_file():
        run = rundir.open_run(opts.runs_dir, opts.run)
        if Path(run.data).name != ds.root.name:
            raise UserError(f"--run {opts.run} holds data {run.data!r}, not {data!r}; choose another run name")
        return run.name
    name = opts.run or (rundir.new_run_name(opts.runs_dir, str(data), "supervised") if rt.is_main else None)
    name = rt.broadcast_object(name)
    if rt.is_main:
        rundir.create_run(opts.runs_dir, name, data=str(data), data_dir=opts.data_dir, environment=environment())
    rt.barrier()
    return name


def metric_name(results: list[FinetuneResult]) -> str:
    return results[0].metric if results else "auc"
