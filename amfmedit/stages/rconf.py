"""``rconf``: the modality confidence ratio R_conf from unimodal probes (Appendix A.4, eq. 3).

An image-only and a tabular-only classifier are built on the FROZEN pretrained encoders
(a linear head each) and trained with the fine-tuning recipe; R_conf = metric_img /
metric_tab. The paper measured both on the test split; by default we measure on the
validation split, because R_conf sets AMF's architecture (eq. 6) and choosing it on test
data leaks the test set into model selection. ``split="test"`` reproduces the paper.
Writes ``<run>/rconf/`` with ``rconf.json`` (both metrics, split, ratio, L_img / L_tab).

Each probe's metric comes with a 95 % interval (DeLong for a binary AUC, a stratified bootstrap
for accuracy); a probe whose interval reaches chance (AUC 0.5, or the majority-class accuracy)
(or entirely below it) is no better than a coin on this split and the ratio built on it is noise: the stage warns
(:class:`ChanceProbeWarning`) and records it. ``train_fraction`` < 1 trains the probes on
the label fraction of :mod:`amfmedit.data.subsets` (``rconf-frac<f>/``), for fine-tuning on
the same fraction.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from amfmedit.data.masking import mask_features, mask_record
from amfmedit.data.subsets import subset_record, train_subset
from amfmedit.errors import UserError
from amfmedit.io import write_json
from amfmedit.models import UnimodalClassifier, amf_split, from_checkpoint, model_config
from amfmedit.stages import names
from amfmedit.stages.availability import check_complete_splits, missing_mode
from amfmedit.stages.classify import check_selectable, best_model, select_lr, train_one
from amfmedit.stages.common import (
    ProgressFactory,
    RunOptions,
    load_dataset,
    no_progress,
    resolve_mask,
    runtime_for,
    write_stage_config,
)
from amfmedit.stages.configs import RconfConfig, Recipe
from amfmedit.stages.kinds import kind_of
from amfmedit.stages.lifecycle import finish_stage
from amfmedit.stages.pretrain import load_pretrained, missing_tag
from amfmedit.train import rundir
from amfmedit.train.inputs import DeviceData
from amfmedit.train.tasks import SupervisedTask

RCONF_FILE = names.RCONF_FILE
read_rconf = names.read_rconf  # its home is names (run_inputs reads it without the stage modules)


class TestSplitWarning(UserWarning):
    """R_conf measured on the test split (as the paper did)."""


class ChanceProbeWarning(UserWarning):
    """A probe's metric interval covers chance: R_conf built on it is noise."""


@dataclass
class RconfResult:
    run: str
    stage_dir: Path
    record: dict


def rconf(cfg: RconfConfig, opts: RunOptions, *, progress: ProgressFactory = no_progress) -> RconfResult:
    """Train both probes on the run's frozen pretrained encoders and write ``rconf.json``."""
    cfg.validate()
    if cfg.split == "test":
        warnings.warn(
            "R_conf on the test split (as in the paper) selects AMF's architecture with test data; "
            "test metrics of AMF models built on it are optimistic",
            TestSplitWarning,
            stacklevel=2,
        )
    rt = runtime_for(opts)
    run = rundir.open_run(opts.runs_dir, opts.run)
    masked = resolve_mask(run, cfg.mask_features, cfg.mask_top_k, data_dir=opts.data_dir)
    cfg = replace(cfg, mask_features=tuple(masked), mask_top_k=None)
    pretrained, pcfg = load_pretrained(run, cfg.missing)  # no pretrain stage -> says which command to run
    ds = load_dataset(run, opts)
    extra = {"data": run.data}
    if masked:  # the probes train and are measured on the masked table
        extra["mask"] = mask_record(ds, masked)
        ds = mask_features(ds, masked)
    schema = ds.schema
    recipe = cfg.recipe.resolved(kind_of(schema), schema)
    stage_name = names.rconf_stage(masked, cfg.train_fraction, missing_tag(run, cfg.missing))
    check_complete_splits(ds, ("train", "val", cfg.split))
    check_selectable(ds, rows=ds.indices("val")[ds.complete[ds.indices("val")]])  # before any folder
    job = ProbeJob(cfg, opts, run, rt, ds, recipe, stage_name, extra, model_config(pretrained),
                   pretrained.state_dict(), pcfg.tabular_encoder, progress,
                   missing=missing_mode(pretrained.tabular_encoder))
    with rundir.stage_lock(run, stage_name, rt=rt):  # one writer of this stage, until it is complete
        return _probes(job)


@dataclass
class ProbeJob:
    """The R_conf probes of one run, ready to train: what :func:`_probes` needs, typed."""

    cfg: RconfConfig
    opts: RunOptions
    run: rundir.Run
    rt: object  # amfmedit.train.runtime.Runtime
    dataset: object  # the (masked) PreparedDataset
    recipe: Recipe
    stage_name: str
    extra: dict  # config.json's extra records (data, mask)
    pretrain_spec: dict  # the pretrained model's {"kind", "config"}
    pretrain_state: dict  # ... and its weights
    pretrain_tabular_encoder: str
    progress: ProgressFactory
    missing: str = "impute"  # how the pretrained tabular encoder reads missing values


def _probes(job: ProbeJob) -> RconfResult:
    """:func:`rconf`'s training, with the stage's lock held."""
    cfg, opts, run, rt, ds, recipe = job.cfg, job.opts, job.run, job.rt, job.dataset, job.recipe
    stage_name, extra, progress = job.stage_name, dict(job.extra), job.progress
    schema = ds.schema
    masked = list(cfg.mask_features)
    stage_dir = rundir.begin_stage(run, stage_name, force=opts.force, resume=opts.resume, rt=rt)
    # R_conf compares the two modalities on the same patients: both probes see the complete rows only
    data = DeviceData(ds, device=rt.device, residency=opts.images_in).with_complete_rows()
    if cfg.train_fraction < 1:  # the probes see only the labelled fraction; val / test untouched
        all_train = data.rows("train")
        rows = train_subset(ds.labels, all_train, cfg.train_fraction, cfg.seed)
        data = data.with_train_rows(rows)
        extra["train_subset"] = subset_record(ds.labels, rows, cfg.train_fraction, cfg.seed, len(all_train))
    if rt.is_main:
        write_stage_config(stage_dir, replace(cfg, recipe=recipe), rt, extra)
        run.record_command(stage_name, opts.argv)
    kind = kind_of(schema)
    metric = kind.headline.key

    def encoders():
        model = from_checkpoint({**job.pretrain_spec, "state_dict": job.pretrain_state})
        return model.image_encoder, model.tabular_encoder

    record: dict = {"metric": metric, "split": cfg.split, "seed": cfg.seed, "pretrain_tabular_encoder": job.pretrain_tabular_encoder,
                    "mask_features": list(masked), "train_fraction": cfg.train_fraction, "warnings": [],
                    "missing": job.missing, "rows": "complete (an image and a table)",
                    "complete_rows": {s: len(data.rows(s)) for s in ("train", "val", "test")}}
    for modality in ("image", "tabular"):

        def build(modality=modality):
            img, tab = encoders()
            enc = img if modality == "image" else tab
            return UnimodalClassifier(enc, n_classes=kind.head_size(schema), modality=modality, strategy="frozen")

        def train(lr, out_dir, resume, modality=modality, build=build):
            return train_one(
                build, dataset=ds, data=data, recipe=recipe, lr=lr, seed=cfg.seed,
                use_image=modality == "image", use_tabular=modality == "tabular", out_dir=out_dir, rt=rt,
                resume=resume, progress=progress, log=opts.log, title=f"rconf {modality} lr={lr:g}",
                extra_config={"stage": "rconf", "modality": modality},
            )

        lrs = (recipe.lr,) if recipe.lr is not None else recipe.lrs
        lr, trained, selection = select_lr(train, search_dir=stage_dir / modality, lrs=lrs, rt=rt, resume=opts.resume,
                                           metric=kind.headline)
        model, _ = best_model(trained.out_dir)
        model = model.to(rt.device).eval()
        task = SupervisedTask(model=model, loss=None, data=data, use_image=modality == "image", augment=None,
                              kind=kind, channels_last=rt.channels_last, eval_batch_size=recipe.batch_size)
        with torch.no_grad(), rt.autocast():
            _, outputs, targets = task.predict(model, cfg.split, rt)
        score = kind.probe_score(outputs, targets, cfg.seed)
        value, interval = score.value, score.to_dict()
        record[modality] = {"metric": value, "interval": interval, "val_best": trained.best_val, "lr": lr,
                            "best_epoch": trained.best_epoch,
                            "checkpoint": str(trained.out_dir.relative_to(run.root) / "best.pt"),
                            "lr_selection": selection["val"]}
        if not interval["informative"] and interval["low"] is not None:
            where = "lies below" if interval["high"] < interval["chance"] else "covers"
            text = (f"the {modality}-only probe's {metric.upper()} {value:.3f} (95% CI {interval['low']:.3f}-"
                    f"{interval['high']:.3f}, {interval['method']}) {where} chance ({interval['chance']:.3g}) on the "
                    f"{cfg.split} split: R_conf is noise; use a larger split, train the encoders longer or pass "
                    "--rconf to finetune")
            record["warnings"].append(text)
    m_img, m_tab = record["image"]["metric"], record["tabular"]["metric"]
    if not (m_tab > 0) or not (m_img > 0):
        raise UserError(
            f"{stage_dir}: R_conf is undefined (image {metric} {m_img}, tabular {metric} {m_tab} on the {cfg.split} "
            "split); the split needs both classes — use a larger cohort or pass --rconf to finetune"
        )
    r = kind.ratio(m_img, m_tab)
    l_img, l_tab = amf_split(cfg.d_out, r)
    record.update({"r_conf": r, "d_out": cfg.d_out, "L_img": l_img, "L_tab": l_tab})
    if rt.is_main:
        write_json(stage_dir / RCONF_FILE, record)
    for text in record["warnings"]:
        warnings.warn(text, ChanceProbeWarning, stacklevel=2)
    finish_stage(run, stage_dir, {"r_conf": r, "warnings": list(record["warnings"])}, rt=rt)
    return RconfResult(run.name, stage_dir, record)

