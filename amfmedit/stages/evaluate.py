"""``evaluate``: test metrics of every finished classifier in a run, and the reports.

For each ``finetune-*`` / ``supervised-*`` folder: its best-validation checkpoint scored on
the test split (AUC for binary tasks, top-1 accuracy for multiclass; also AUPRC, balanced
accuracy and the expected calibration error), the predictions as CSV and ROC curves as
PNG. Across seeds: mean ± standard deviation in the layout of the paper's Table 2, with the
oracle AUC of a synthetic cohort beside it. Writes ``<run>/evaluate/`` (built aside and
renamed into place when complete).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from amfmedit.errors import UserError
from amfmedit.io import atomic_path, read_json, write_json, write_text
from amfmedit.stages import experiments, names
from amfmedit.stages.classify import best_model
from amfmedit.stages.common import RunOptions, load_dataset, masked_data, runtime_for
from amfmedit.stages.lifecycle import staged
from amfmedit.stages.tables import incomplete_markdown, plot_roc, stage_markdown, table2_markdown
from amfmedit.train import rundir
from amfmedit.train.inputs import DeviceData
from amfmedit.train.metrics import classification_metrics, headline_metric
from amfmedit.train.tasks import ClassificationTask

STAGE = names.EVALUATE
RESULTS_FILE = names.RESULTS_FILE
SPLITS = ("val", "test")
METRICS_KEYS = ("auc", "auprc", "acc", "balanced_acc", "ece")


@dataclass
class EvaluateConfig:
    split: str = "test"
    batch_size: int = 128


@dataclass
class EvaluateResult:
    run: str
    stage_dir: Path
    metric: str
    groups: list[dict]
    stages: list[dict]
    oracle: float | None
    markdown: str


def _group_key(info: dict, cfg: dict) -> tuple:
    # the variant (an R_conf sweep member, ablation row, label fraction, ...) keeps sweep members apart
    return (info["fusion"], info["strategy"], info["modality"], cfg.get("tabular_encoder"), info.get("mask"),
            names.variant_of(info))


def oracle_auc(dataset, split: str) -> float | None:
    """The true-risk AUC of a synthetic cohort's split (``provenance.json``), else None."""
    try:
        synthetic = dataset.provenance.get("synthetic")
    except (OSError, ValueError):
        return None
    if not synthetic:
        return None
    oracle = synthetic.get("oracle")
    if isinstance(oracle, dict):
        value = oracle.get(split)
        if isinstance(value, dict):
            value = value.get("auc")
        return float(value) if value is not None else None
    return float(oracle) if oracle is not None else None


def evaluate(cfg: EvaluateConfig, opts: RunOptions) -> EvaluateResult:
    """Score every finished classifier of the run on ``cfg.split`` and write the reports."""
    if cfg.split not in SPLITS:
        raise UserError(f"--split {cfg.split}: use val or test")
    rt = runtime_for(opts)
    run = rundir.open_run(opts.runs_dir, opts.run)
    parsed = names.classifier_stages(run)  # masked stages included (incomplete tabular data, Table 4)
    stage_list = list(parsed)
    if not stage_list:
        raise UserError(
            f"run {run.name} has no finished finetune-* or supervised-* stage; run `amfmedit finetune --fusion amf` "
            "(or another fusion / a baseline) first"
        )
    final = run.stage(STAGE)
    ds = load_dataset(run, opts)
    schema = ds.schema
    metric = headline_metric(schema.task)
    data = DeviceData(ds, device=rt.device, residency=opts.images_in)
    stages, per_group = [], defaultdict(list)
    outputs = {}
    masked_sets = {}
    for name in stage_list:
        info = parsed[name]
        stage_dir = run.stage(name)
        scfg = read_json(stage_dir / rundir.CONFIG_FILE)
        stage_data = data
        if info["mask"]:  # tested on the same masked table it was trained on
            features = names.stage_mask(stage_dir)
            if tuple(features) not in masked_sets:
                masked_sets[tuple(features)] = masked_data(ds, data, features)[1]
            stage_data = masked_sets[tuple(features)]
        model, ckpt = best_model(stage_dir)
        model = model.to(rt.device).eval()
        if rt.channels_last:
            model = model.to(memory_format=torch.channels_last)
        uses_image = info["modality"] != "tabular"
        task = ClassificationTask(model=model, loss=None, data=stage_data, use_image=uses_image, augment=None,
                                  channels_last=rt.channels_last, eval_batch_size=cfg.batch_size, spec={},
                                  n_classes=schema.n_classes)
        with torch.no_grad(), rt.autocast():
            rows, probs, labels = task.predict(model, cfg.split, rt)
        m = classification_metrics(probs, labels)
        row = {"stage": name, **info, "mask_features": names.stage_mask(stage_dir), "r_conf": scfg.get("r_conf"),
               "tabular_encoder": scfg.get("tabular_encoder"), "lr": scfg.get("lr"),
               "best_epoch": int(ckpt["epoch"]), "val_" + metric: float(ckpt["metric"]),
               **{k: m[k] for k in METRICS_KEYS}, "n": m["n"]}
        stages.append(row)
        per_group[_group_key(info, scfg)].append(row)
        outputs[name] = (rows, probs, labels)

    groups = []
    for (fusion, strategy, modality, encoder, mask, variant), rows in per_group.items():
        vals = [r[metric] for r in rows]
        finite = [v for v in vals if math.isfinite(v)]
        groups.append({
            "kind": "supervised" if fusion == names.NO_FUSION else "fusion",
            "fusion": fusion, "strategy": strategy, "modality": modality, "encoder": encoder,
            "mask": mask, "mask_features": rows[0]["mask_features"], "r_conf": rows[0]["r_conf"],
            "seeds": [r["seed"] for r in rows], "values": vals,
            "mean": float(np.mean(finite)) if finite else math.nan,
            "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0 if finite else math.nan,
            "variant": dict(zip(names.VARIANT_KEYS, variant)), "stages": [r["stage"] for r in rows],
        })
    oracle = oracle_auc(ds, cfg.split) if metric == "auc" else None
    md = _markdown(run, cfg.split, metric, groups, stages, oracle)

    if not rt.is_main:
        return EvaluateResult(run.name, final, metric, groups, stages, oracle, md)
    with staged(run, final, force=True) as stage_out:  # derived from finished stages: always recomputed
        tmp = stage_out.folder
        md += experiments.write(run, tmp, groups, metric=metric)  # Tables 1, 5, 6 and learning curves, when run
        write_text(tmp / RESULTS_FILE, md)
        write_json(tmp / names.EVAL_METRICS_FILE, {"split": cfg.split, "metric": metric, "oracle_auc": oracle,
                                          "groups": groups, "stages": stages})
        _write_predictions(tmp / "predictions", ds, schema, outputs)
        if schema.n_classes == 2:
            _write_rocs(tmp / "roc", outputs, per_group, cfg.split)
        stage_out.summary = {"metric": metric, "stages": len(stages)}
        run.record_command(STAGE, opts.argv)
    return EvaluateResult(run.name, final, metric, groups, stages, oracle, md)


def _markdown(run, split, metric, groups, stages, oracle) -> str:
    title = "AUC" if metric == "auc" else "top-1 accuracy"  # spelled out in the sentence; the tables abbreviate
    parts = [
        f"# Results of run {run.name}\n",
        f"Data: `{run.data}`. Metric: {title} on the {split} split, mean ± standard deviation over seeds (%).\n",
        table2_markdown([g for g in experiments.ordinary(groups) if not g.get("mask")], metric=metric, oracle=oracle),
    ]
    masked = incomplete_markdown(groups, metric=metric)
    if masked:
        parts.append("\n## Incomplete tabular data\n\nMasked features replaced by training constants at train and "
                     "test time; drop = complete − masked (points), against the same fusion and strategy on complete "
                     "data in this run.\n\n" + masked)
    if oracle is not None:
        parts.append(f"\nOracle AUC (the generator's true risk on the {split} split): {oracle:.4f}\n")
    parts.append("\n## Per stage\n\n")
    parts.append(stage_markdown(stages, ["seed", "lr", "best_epoch", f"val_{metric}", *METRICS_KEYS]))
    return "".join(parts)


def _write_predictions(folder: Path, ds, schema, outputs) -> None:
    import pandas as pd  # pandas costs ~0.3 s of start-up; only this writer needs it

    folder.mkdir(parents=True, exist_ok=True)
    for name, (rows, probs, labels) in outputs.items():
        df = pd.DataFrame({"id": ds.ids[rows], "label": labels, "predicted": probs.argmax(axis=1)})
        for c, cname in enumerate(schema.class_names):
            df[f"prob_{cname}"] = probs[:, c]
        with atomic_path(folder / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False)


def _write_rocs(folder: Path, outputs, per_group, split: str) -> None:
    from sklearn.metrics import roc_curve  # scikit-learn costs ~0.5 s of start-up; only ROC plots need it here

    folder.mkdir(parents=True, exist_ok=True)
    for rows in per_group.values():
        curves = {}
        for r in rows:
            _, probs, labels = outputs[r["stage"]]
            if len(np.unique(labels)) < 2:
                continue
            fpr, tpr, _ = roc_curve(labels, probs[:, 1])
            curves[f"seed {r['seed']}"] = (fpr, tpr, r["auc"])
        if curves:
            base, tag = names.split_mask_suffix(rows[0]["stage"])
            prefix = base.rsplit("-seed", 1)[0] + (f"-{tag}" if tag else "")
            plot_roc(curves, folder / f"{prefix}.png", f"{prefix} ({split})")
