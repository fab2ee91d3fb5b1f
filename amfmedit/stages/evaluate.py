"""``evaluate``: test metrics of every finished classifier in a run, and the reports.

For each ``finetune-*`` / ``supervised-*`` folder: its best-validation checkpoint scored on
the validation and test splits. Across seeds: mean ± standard deviation in the layout of the
paper's Table 2, with the oracle AUC of a synthetic cohort beside it. Beside it
(:mod:`amfmedit.stages.evalstats`, on :mod:`amfmedit.stats`): every test metric of the
seed-averaged prediction with its 95% interval (DeLong for AUC, stratified bootstrap
otherwise), the operating point chosen on validation (``--threshold``) and applied to test,
calibration before / after temperature scaling fitted on validation, all paired comparisons
(``comparisons.md`` / ``.csv``), figures (ROC, PR, reliability, decision curve) and
``operating_points.json``: per stage the threshold and temperature ``predict`` applies.
Writes ``<run>/evaluate/`` (built aside and renamed into place when complete); a bad
``--threshold`` stops before anything is written.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from amfmedit.errors import UserError
from amfmedit.io import atomic_path, read_json, write_json, write_text
from amfmedit.stages import evalstats, experiments, names, sanity
from amfmedit.stats.delong import delong_auc
from amfmedit.stages.classify import best_model
from amfmedit.stages.common import RunOptions, load_dataset, masked_data, runtime_for
from amfmedit.stages.configs import EvaluateConfig
from amfmedit.stages.lifecycle import staged
from amfmedit.stages.tables import incomplete_markdown, model_title, plot_roc, stage_markdown, table2_markdown
from amfmedit.stats import bootstrap, calibration, compare
from amfmedit.stats.threshold import parse_threshold
from amfmedit.train import rundir
from amfmedit.train.inputs import DeviceData
from amfmedit.train.metrics import classification_metrics, headline_metric
from amfmedit.train.tasks import ClassificationTask

STAGE = names.EVALUATE
RESULTS_FILE = names.RESULTS_FILE
OPERATING_FILE = "operating_points.json"  # evaluate/: per stage the threshold and temperature predict applies
COMPARISONS_MD, COMPARISONS_CSV = "comparisons.md", "comparisons.csv"
SPLITS = ("val", "test")
METRICS_KEYS = ("auc", "auprc", "acc", "balanced_acc", "ece")
AT_THRESHOLD = ("sensitivity", "specificity", "ppv", "npv")


@dataclass
class EvaluateResult:
    run: str
    stage_dir: Path
    metric: str
    groups: list[dict]
    stages: list[dict]
    oracle: float | None
    markdown: str  # results.md
    terminal: str = ""  # the tables a terminal of 80 columns shows whole
    warnings: list[str] = field(default_factory=list)


def _group_key(info: dict, cfg: dict) -> tuple:
    # the variant (an R_conf sweep member, ablation row, label fraction, ...) keeps sweep members apart
    return (info["fusion"], info["strategy"], info["modality"], cfg.get("tabular_encoder"), info.get("mask"),
            names.variant_of(info))


def group_title(fusion: str, strategy: str, modality: str | None, encoder: str | None,
                mask_features: list[str] | None = None) -> str:
    """The paper's name of a group of seeds, with the masked features of incomplete-data stages."""
    title = model_title(fusion, strategy, modality, encoder)
    return f"{title} (masked: {', '.join(mask_features)})" if mask_features else title


def _sanity_warnings(per_group, titles, outputs, val_outputs, split: str, metric: str) -> list[str]:
    """Models that learned nothing: constant predictions, or no better than chance on validation."""
    out = []
    for key, rows in per_group.items():
        title = titles[key]
        test_p = np.mean([outputs[r["stage"]][1] for r in rows], axis=0)
        out += sanity.constant_warnings(test_p, title, split)
        val_p = np.mean([val_outputs[r["stage"]][1] for r in rows], axis=0)
        y_val = val_outputs[rows[0]["stage"]][2]
        if metric == "auc" and len(np.unique(y_val)) == 2:
            iv = delong_auc(y_val, val_p[:, 1])
            if iv.low <= 0.5:
                out.append(f"{title}: no better than chance on the validation split (AUC {iv.auc:.3f}, 95% CI "
                           f"{iv.low:.3f}-{iv.high:.3f} covers 0.5); its test figures rank noise")
    return out


def variant_text(variant: tuple) -> str:
    """How an experiment's group differs from the ordinary one, for its title ("" for an ordinary group)."""
    parts = []
    for key, value in zip(names.VARIANT_KEYS, variant):
        if value in (None, (), ""):
            continue
        if key == "off":
            parts.append("without " + ", ".join(value))
        elif key == "fraction":
            parts.append(f"{100 * float(value):g}% of training labels")
        elif key == "rconf":
            parts.append(f"R_conf {value:g}" if isinstance(value, float) else f"R_conf {value}")
        elif key == "encoder":
            continue  # the encoder is already in the title
    return f" ({'; '.join(parts)})" if parts else ""


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
    parse_threshold(cfg.threshold)  # a bad spec stops before any work
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
    outputs, val_outputs = {}, {}
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
            val_outputs[name] = task.predict(model, "val", rt) if cfg.split != "val" else (rows, probs, labels)
        m = classification_metrics(probs, labels)
        row = {"stage": name, **info, "mask_features": names.stage_mask(stage_dir), "r_conf": scfg.get("r_conf"),
               "tabular_encoder": scfg.get("tabular_encoder"), "lr": scfg.get("lr"),
               "best_epoch": int(ckpt["epoch"]), "val_" + metric: float(ckpt["metric"]),
               **{k: m[k] for k in METRICS_KEYS}, "n": m["n"]}
        stages.append(row)
        per_group[_group_key(info, scfg)].append(row)
        outputs[name] = (rows, probs, labels)

    groups, titles = [], {}
    for key, rows in per_group.items():
        fusion, strategy, modality, encoder, mask, variant = key
        vals = [r[metric] for r in rows]
        finite = [v for v in vals if math.isfinite(v)]
        title = group_title(fusion, strategy, modality, encoder, rows[0]["mask_features"] if mask else None)
        title += variant_text(variant)
        while title in titles.values():  # two groups the paper would name alike
            title += " (2)"
        titles[key] = title
        groups.append({
            "kind": "supervised" if fusion == names.NO_FUSION else "fusion",
            "fusion": fusion, "strategy": strategy, "modality": modality, "encoder": encoder,
            "mask": mask, "mask_features": rows[0]["mask_features"], "r_conf": rows[0]["r_conf"],
            "seeds": [r["seed"] for r in rows], "values": vals,
            "mean": float(np.mean(finite)) if finite else math.nan,
            "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0 if finite else math.nan,
            "variant": dict(zip(names.VARIANT_KEYS, variant)), "stages": [r["stage"] for r in rows],
        })

    # intervals, operating points, calibration, comparisons: all on the seed-averaged predictions
    first = stage_list[0]
    y_test, y_val = outputs[first][2], val_outputs[first][2]
    preds = {titles[key]: evalstats.ModelPredictions(np.stack([val_outputs[r["stage"]][1] for r in rows]),
                                                     np.stack([outputs[r["stage"]][1] for r in rows]))
             for key, rows in per_group.items()}
    stats = evalstats.compute(y_val, y_test, preds, cfg.threshold, cfg.split, class_names=schema.class_names)
    stats.warnings.extend(_sanity_warnings(per_group, titles, outputs, val_outputs, cfg.split, metric))
    for key, rows, g in zip(per_group, per_group.values(), groups):
        g.update(stats.model_record(titles[key]))
        for i, r in enumerate(rows):
            _stage_extras(r, outputs[r["stage"]], stats, titles[key], i)
    operating = _operating_points(cfg, stats, per_group, titles, schema)
    oracle = oracle_auc(ds, cfg.split) if metric == "auc" else None
    md = _markdown(run, cfg.split, metric, groups, stages, oracle, stats)
    term = _terminal(run, cfg.split, metric, groups, stages, oracle, stats)

    if not rt.is_main:
        return EvaluateResult(run.name, final, metric, groups, stages, oracle, md, term, stats.warnings)
    with staged(run, final, force=True) as stage_out:  # derived from finished stages: always recomputed
        tmp = stage_out.folder
        figures = evalstats.write_figures(tmp, y_test, stats)
        md += experiments.write(run, tmp, groups, metric=metric)  # Tables 1, 5, 6 and learning curves, when run
        write_text(tmp / RESULTS_FILE, md + _figures_markdown(figures))
        table = stats.summary.comparisons
        if table is not None:
            write_text(tmp / COMPARISONS_MD, compare.render_markdown(table, title=f"Paired comparisons, run {run.name}"))
            write_text(tmp / COMPARISONS_CSV, compare.render_csv(table))
        else:
            write_text(tmp / COMPARISONS_MD, f"# Paired comparisons, run {run.name}\n\nOne classifier in this run: "
                       "nothing to compare.\n")
            write_text(tmp / COMPARISONS_CSV, ",".join(compare.CSV_COLUMNS) + "\n")
        write_json(tmp / OPERATING_FILE, operating)
        write_json(tmp / names.EVAL_METRICS_FILE, {
            "split": cfg.split, "metric": metric, "oracle_auc": oracle, "groups": groups, "stages": stages,
            "threshold_spec": cfg.threshold, "threshold_chosen_on": "val", "warnings": stats.warnings,
            "skipped": list(stats.summary.skipped), "comparisons": table.to_dict() if table else None,
            "figures": figures, "n_boot": bootstrap.DEFAULT_N_BOOT})
        _write_predictions(tmp / "predictions", ds, schema, outputs, operating)
        _write_predictions(tmp / "predictions" / "val", ds, schema, val_outputs, operating)
        if schema.n_classes == 2:
            _write_rocs(tmp / "roc", outputs, per_group, titles, cfg.split)
        stage_out.summary = {"metric": metric, "stages": len(stages), "warnings": list(stats.warnings)}
        run.record_command(STAGE, opts.argv)
    return EvaluateResult(run.name, final, metric, groups, stages, oracle, md, term, stats.warnings)


def _stage_extras(row: dict, output, stats: evalstats.Statistics, title: str, i: int) -> None:
    """One stage's operating point, temperature and metrics at them (its own seed's, not the average's)."""
    _, probs, labels = output
    fit = stats.temperatures[title][i]
    cal = calibration.apply_temperature(calibration.logits_from_probs(probs), fit.temperature, fit.bias)
    row["temperature"], row["calibration_bias"] = fit.temperature, fit.bias
    row["ece_calibrated"] = calibration.ece(labels, cal if not stats.binary else cal[:, 1])
    row["brier"] = calibration.brier(labels, probs if not stats.binary else probs[:, 1])
    row["brier_calibrated"] = calibration.brier(labels, cal if not stats.binary else cal[:, 1])
    thr = stats.seed_thresholds[title][i]
    row["threshold_name"] = thr.name if thr else evalstats.ARGMAX
    row["threshold"] = thr.value if thr else None
    if thr is not None:
        point = bootstrap.point_estimates(labels, probs[:, 1], thr.value)
        row.update({k: point[k] for k in AT_THRESHOLD})


def calibrated_threshold(value: float, temperature: float, bias: float = 0.0) -> float:
    """A binary cut on the probabilities as trained, on the recalibrated scale.

    For two logits, p1 = sigmoid(z1 - z0); after recalibration, sigmoid((z1 - z0) / T + b) =
    sigmoid(logit(p1) / T + b), a monotone map, so the same rows fall on each side of the cut.
    """
    return float(calibration.apply_temperature(calibration.logits_from_probs(np.array([value])), temperature,
                                               bias)[0])


def _operating_points(cfg, stats, per_group, titles, schema) -> dict:
    out = {}
    for key, rows in per_group.items():
        for i, r in enumerate(rows):
            thr = stats.seed_thresholds[titles[key]][i]
            fit = stats.temperatures[titles[key]][i]
            temp, bias = fit.temperature, fit.bias
            out[r["stage"]] = {
                "title": titles[key], "seed": r["seed"],
                "threshold_name": thr.name if thr else evalstats.ARGMAX,
                "threshold": thr.value if thr else None,
                "threshold_calibrated": calibrated_threshold(thr.value, temp, bias) if thr else None,
                "rule": thr.rule if thr else "the most probable class",
                "val_sensitivity": thr.val_sensitivity if thr else None,
                "val_specificity": thr.val_specificity if thr else None,
                "temperature": temp, "bias": bias, "best_epoch": r["best_epoch"],
            }
    return {"threshold_spec": cfg.threshold, "chosen_on": "val",
            "positive_class": schema.class_names[1] if schema.n_classes == 2 else None,
            "note": "a row is positive when its probability of the positive class is >= threshold (probabilities "
                    "as trained) or >= threshold_calibrated (after dividing the logits by temperature and adding bias to "
                    "the positive class's log-odds)",
            "stages": out}


def _markdown(run, split, metric, groups, stages, oracle, stats) -> str:
    title = "AUC" if metric == "auc" else "top-1 accuracy"  # spelled out in the sentence; the tables abbreviate
    where = evalstats.split_word(split)
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
    parts.append(f"\n## {where.capitalize()} metrics with 95% intervals\n\n"
                 "Each metric of the seed-averaged prediction (mean probability over seeds) with its 95% interval: "
                 "DeLong for AUC, a stratified bootstrap of the rows (2,000 resamples, seeded) otherwise; "
                 "\"over seeds\" is the paper's mean ± SD of the per-seed values. Threshold: the cut chosen on the "
                 f"validation split by `--threshold {stats.spec}` and applied unchanged here.\n\n")
    parts.append(evalstats.models_markdown(stats))
    if stats.warnings:
        parts.append("\n" + "".join(f"- Warning: {w}\n" for w in stats.warnings))
    if stats.binary:
        parts.append("\n## Operating points (chosen on the validation split)\n\n" + evalstats.operating_markdown(stats))
    parts.append("\n## Calibration\n\nBrier score and ECE of the seed-averaged prediction before and after "
                 "temperature scaling (one temperature per seed, fitted on the validation split; `predict` applies "
                 "it by default).\n\n" + evalstats.calibration_markdown(stats))
    table = stats.summary.comparisons
    if table is not None:
        label = compare.LABELS[table.headline]
        parts.append(f"\n## Paired comparisons ({label})\n\n" + evalstats.headline_comparisons_markdown(stats)
                     + f"\nEvery metric: [{COMPARISONS_MD}]({COMPARISONS_MD}), [{COMPARISONS_CSV}]({COMPARISONS_CSV}).\n")
    parts.append("\n## Per stage\n\n")
    keys = ["seed", "lr", "best_epoch", f"val_{metric}", *METRICS_KEYS]
    if stats.binary:
        keys += ["threshold", "sensitivity", "specificity"]
    parts.append(stage_markdown(stages, keys + ["temperature", "ece_calibrated"]))
    return "".join(parts)


def _figures_markdown(figures: dict[str, str]) -> str:
    if not figures:
        return ""
    words = {"roc": "ROC curves", "pr": "precision-recall curves", "decision": "decision curve"}
    links = [f"[{words[k]}]({v})" for k, v in figures.items() if k in words]
    rel = [f"[{k.split(':', 1)[1]}]({v})" for k, v in figures.items() if k.startswith("reliability:")]
    return ("\n## Figures\n\n" + ", ".join(links) + ".\n" +
            ("\nReliability diagrams: " + ", ".join(rel) + ".\n" if rel else ""))


def _terminal(run, split, metric, groups, stages, oracle, stats) -> str:
    """What the CLI prints: Table 2, the intervals at the operating point, per stage by model and seed."""
    title = "AUC" if metric == "auc" else "top-1 accuracy"
    where = evalstats.split_word(split)
    parts = [f"# Results of run {run.name}\n",
             f"{title} on the {split} split, mean ± SD over seeds (%).\n",
             table2_markdown([g for g in experiments.ordinary(groups) if not g.get("mask")], metric=metric,
                             oracle=oracle)]
    if oracle is not None:
        parts.append(f"\nOracle AUC ({split} split): {oracle:.4f}\n")
    masked = incomplete_markdown(groups, metric=metric)
    if masked:  # Table 4: each masked model's drop against its complete-data counterpart
        parts.append("\n## Incomplete tabular data (drop = complete − masked, points)\n\n" + masked)
    cut = f"; threshold chosen on validation ({stats.spec})" if stats.binary else ""
    parts.append(f"\n## {where.capitalize()} split, seed-averaged, 95% intervals{cut}\n\n")
    parts.append(evalstats.terminal_markdown(stats))
    table = stats.summary.comparisons
    if table is not None and table.note:
        parts.append(f"\n**{table.note}**\n")
    label = "AUC" if metric == "auc" else "ACC"
    lines = [f"| Model | Seed | Epoch | Val {label} | Test {label} | Threshold | T |", "|---|--:|--:|--:|--:|--:|--:|"]
    for g in groups:
        for r in (s for s in stages if s["seed"] in g["seeds"] and _same_group(s, g)):
            thr = r["threshold"]
            lines.append(f"| {g['title']} | {r['seed']} | {r['best_epoch']} | {_f(r[f'val_{metric}'])} | "
                         f"{_f(r[metric])} | {'argmax' if thr is None else f'{thr:.3f}'} | {r['temperature']:.2f} |")
    parts.append("\n## Per stage\n\n" + "\n".join(lines) + "\n")
    return "".join(parts)


def _same_group(stage: dict, group: dict) -> bool:
    return stage["stage"] in group.get("stages", ())


def _f(v) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4f}"


def _write_predictions(folder: Path, ds, schema, outputs, operating: dict) -> None:
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    for name, (rows, probs, labels) in outputs.items():
        op = operating["stages"][name]
        df = pd.DataFrame({"id": ds.ids[rows], "label": labels})
        for c, cname in enumerate(schema.class_names):
            df[f"prob_{cname}"] = probs[:, c]
        if op["threshold"] is not None:
            df["decision"] = (probs[:, 1] >= op["threshold"]).astype(int)
        else:
            df["decision"] = probs.argmax(axis=1)
        df["threshold_name"] = op["threshold_name"]
        with atomic_path(folder / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False)


def _write_rocs(folder: Path, outputs, per_group, titles, split: str) -> None:
    from sklearn.metrics import roc_curve

    folder.mkdir(parents=True, exist_ok=True)
    for key, rows in per_group.items():
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
            plot_roc(curves, folder / f"{prefix}.png", f"{titles[key]}: each seed ({split})")
