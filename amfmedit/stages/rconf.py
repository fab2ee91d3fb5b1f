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

import contextlib
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch

import numpy as np

from amfmedit.data.masking import mask_features, mask_record
from amfmedit.data.subsets import subset_record, train_subset
from amfmedit.errors import UserError
from amfmedit.io import read_json, write_json
from amfmedit.models import UnimodalClassifier, amf_split, from_checkpoint, model_config
from amfmedit.stages import names
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
from amfmedit.stages.configs import RconfConfig
from amfmedit.stages.lifecycle import finish_stage
from amfmedit.stages.pretrain import load_pretrained
from amfmedit.train import rundir
from amfmedit.train.inputs import DeviceData
from amfmedit.train.metrics import classification_metrics, headline_metric
from amfmedit.train.tasks import ClassificationTask
from amfmedit.stats.bootstrap import bootstrap_metrics
from amfmedit.stats.delong import delong_auc

RCONF_FILE = names.RCONF_FILE


class TestSplitWarning(UserWarning):
    """R_conf measured on the test split (as the paper did)."""


class ChanceProbeWarning(UserWarning):
    """A probe's metric interval covers chance: R_conf built on it is noise."""


INTERVAL_LEVEL = 0.95


def probe_interval(metric: str, probs: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    """The probe's metric with its 95 % interval and the chance level it must beat.

    Binary AUC: DeLong (``amfmedit.stats.delong``), chance 0.5. Accuracy: stratified bootstrap
    (``amfmedit.stats.bootstrap``), chance = the majority class's share of the split (at least 1/K).
    ``informative`` is False when the interval reaches chance.
    """
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return {"low": None, "high": None, "level": INTERVAL_LEVEL, "method": None, "chance": None,
                "informative": False}
    if metric == "auc":
        ci = delong_auc(labels, probs[:, 1], level=INTERVAL_LEVEL)
        low, high, method, chance = ci.low, ci.high, "DeLong", 0.5
    else:
        iv = bootstrap_metrics(labels, probs, seed=seed, level=INTERVAL_LEVEL)[metric]
        low, high, method = iv.low, iv.high, "bootstrap"
        chance = float(max(np.bincount(labels).max() / len(labels), 1.0 / probs.shape[1]))
    return {"low": float(low), "high": float(high), "level": INTERVAL_LEVEL, "method": method, "chance": chance,
            "informative": bool(low > chance)}


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
    pretrained, pcfg = load_pretrained(run)  # no pretrain stage -> says which command to run
    pretrain_spec = model_config(pretrained)
    pretrain_state = pretrained.state_dict()
    ds = load_dataset(run, opts)
    extra = {"data": run.data}
    if masked:  # the probes train and are measured on the masked table
        extra["mask"] = mask_record(ds, masked)
        ds = mask_features(ds, masked)
    schema = ds.schema
    recipe = cfg.recipe.resolved(schema.task, schema.n_classes)
    stage_name = names.rconf_stage(masked, cfg.train_fraction)
    check_selectable(ds)  # before any folder: the probes' learning rate and epoch are chosen on validation
    lock = contextlib.ExitStack()  # one writer of this stage, until it is complete
    lock.enter_context(rundir.stage_lock(run, stage_name, rt=rt))
    try:
        return _probes(cfg, opts, run, rt, ds, recipe, stage_name, extra, pretrain_spec, pretrain_state, pcfg,
                       progress)
    finally:
        lock.close()


def _probes(cfg, opts, run, rt, ds, recipe, stage_name, extra, pretrain_spec, pretrain_state, pcfg,
            progress) -> RconfResult:
    """:func:`rconf`'s training, with the stage's lock held."""
    schema = ds.schema
    masked = list(cfg.mask_features)
    stage_dir = rundir.begin_stage(run, stage_name, force=opts.force, resume=opts.resume, rt=rt)
    data = DeviceData(ds, device=rt.device, residency=opts.images_in)
    if cfg.train_fraction < 1:  # the probes see only the labelled fraction; val / test untouched
        all_train = data.rows("train")
        rows = train_subset(ds.labels, all_train, cfg.train_fraction, cfg.seed)
        data = data.with_train_rows(rows)
        extra["train_subset"] = subset_record(ds.labels, rows, cfg.train_fraction, cfg.seed, len(all_train))
    if rt.is_main:
        write_stage_config(stage_dir, replace(cfg, recipe=recipe), rt, extra)
        run.record_command(stage_name, opts.argv)
    metric = headline_metric(schema.task)

    def encoders():
        model = from_checkpoint({**pretrain_spec, "state_dict": pretrain_state})
        return model.image_encoder, model.tabular_encoder

    record: dict = {"metric": metric, "split": cfg.split, "seed": cfg.seed, "pretrain_tabular_encoder": pcfg.tabular_encoder,
                    "mask_features": list(masked), "train_fraction": cfg.train_fraction, "warnings": []}
    for modality in ("image", "tabular"):

        def build(modality=modality):
            img, tab = encoders()
            enc = img if modality == "image" else tab
            return UnimodalClassifier(enc, n_classes=schema.n_classes, modality=modality, strategy="frozen")

        def train(lr, out_dir, resume, modality=modality, build=build):
            return train_one(
                build, dataset=ds, data=data, recipe=recipe, lr=lr, seed=cfg.seed,
                use_image=modality == "image", use_tabular=modality == "tabular", out_dir=out_dir, rt=rt,
                resume=resume, progress=progress, log=opts.log, title=f"rconf {modality} lr={lr:g}",
                extra_config={"stage": "rconf", "modality": modality},
            )

        lrs = (recipe.lr,) if recipe.lr is not None else recipe.lrs
        lr, trained, selection = select_lr(train, search_dir=stage_dir / modality, lrs=lrs, rt=rt, resume=opts.resume)
        model, _ = best_model(trained.out_dir)
        model = model.to(rt.device).eval()
        task = ClassificationTask(model=model, loss=None, data=data, use_image=modality == "image", augment=None,
                                  channels_last=rt.channels_last, eval_batch_size=recipe.batch_size, spec={},
                                  n_classes=schema.n_classes)
        with torch.no_grad(), rt.autocast():
            _, probs, labels = task.predict(model, cfg.split, rt)
        value = classification_metrics(probs, labels)[metric]
        interval = probe_interval(metric, probs, labels, cfg.seed)
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
    r = m_img / m_tab
    l_img, l_tab = amf_split(cfg.d_out, r)
    record.update({"r_conf": r, "d_out": cfg.d_out, "L_img": l_img, "L_tab": l_tab})
    if rt.is_main:
        write_json(stage_dir / RCONF_FILE, record)
    for text in record["warnings"]:
        warnings.warn(text, ChanceProbeWarning, stacklevel=2)
    finish_stage(run, stage_dir, {"r_conf": r, "warnings": list(record["warnings"])}, rt=rt)
    return RconfResult(run.name, stage_dir, record)


def read_rconf(run: rundir.Run, mask_features=(), fraction: float = 1.0) -> float | None:
    """R_conf recorded by ``amfmedit rconf`` in this run (on data with ``mask_features`` masked and
    probes trained on ``fraction`` of the training labels), or None."""
    stage = names.rconf_stage(mask_features, fraction)
    path = run.stage(stage) / RCONF_FILE
    if not run.is_complete(stage) or not path.is_file():
        return None
    return float(read_json(path)["r_conf"])
