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
from amfmedit.stages import availability, evalpatterns, evalstats, experiments, missing_sweep, names, sanity
from amfmedit.stages.classify import best_model
from amfmedit.stages.common import RunOptions, load_dataset, masked_data, runtime_for
from amfmedit.stages.configs import EvaluateConfig
from amfmedit.stages.kinds import kind_of
from amfmedit.stages.lifecycle import require_no_writer, staged
from amfmedit.stages.tables import incomplete_markdown, model_title, stage_markdown, table2_markdown
from amfmedit.stats import bootstrap, compare
from amfmedit.stats.threshold import parse_threshold
from amfmedit.train import rundir
from amfmedit.train.inputs import DeviceData
from amfmedit.train.tasks import SupervisedTask

STAGE = names.EVALUATE
RESULTS_FILE = names.RESULTS_FILE
OPERATING_FILE = "operating_points.json"  # evaluate/: per stage the threshold and temperature predict applies
COMPARISONS_MD, COMPARISONS_CSV = "comparisons.md", "comparisons.csv"
SPLITS = ("val", "test")


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


def _sanity_warnings(kind, per_group, titles, outputs, val_outputs, split: str) -> list[str]:
    """Models that learned nothing: constant predictions, or no better than chance on validation
    (the kind's interval of its headline metric reaches its chance level)."""
    out = []
    for key, rows in per_group.items():
        title = titles[key]
        test_p = np.mean([outputs[r["stage"]][1] for r in rows], axis=0)
        out += sanity.constant_warnings(test_p, title, split)
        val_p = np.mean([val_outputs[r["stage"]][1] for r in rows], axis=0)
        y_val = val_outputs[rows[0]["stage"]][2]
        score = kind.probe_score(val_p, y_val, seed=0)
        if score.low is not None and score.chance is not None and not score.informative:
            label = kind.headline.label
            out.append(f"{title}: no better than chance on the validation split ({label} {score.value:.3f}, 95% CI "
                       f"{score.low:.3f}-{score.high:.3f} covers {score.chance:.3g}); its test figures rank noise")
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
        elif key == "missing":
            parts.append(availability.MODE_WORDS.get(value, str(value)))
        elif key == "encoder":
            continue  # the encoder is already in the title
    return f" ({'; '.join(parts)})" if parts else ""


#: the names generators give a headline metric in provenance.json's oracle record
ORACLE_METRICS = {"accuracy": "acc"}


def oracle_auc(dataset, split: str, metric: str = "auc") -> float | None:
    """The true-risk value of the headline ``metric`` on a synthetic cohort's split (``provenance.json``),
    else None (a real cohort, or an oracle of another metric)."""
    try:
        synthetic = dataset.provenance.get("synthetic")
    except (OSError, ValueError):
        return None
    if not synthetic:
        return None
    oracle = synthetic.get("oracle")
    if isinstance(oracle, dict):
        if ORACLE_METRICS.get(oracle.get("metric"), oracle.get("metric", metric)) != metric:
            return None
        value = oracle.get(split)
        if isinstance(value, dict):
            value = value.get(metric)
        return float(value) if value is not None else None
    return float(oracle) if oracle is not None else None


def evaluate(cfg: EvaluateConfig, opts: RunOptions) -> EvaluateResult:
    """Score every finished classifier of the run on ``cfg.split`` and write the reports."""
    if cfg.split not in SPLITS:
        raise UserError(f"--split {cfg.split}: use val or test")
    parse_threshold(cfg.threshold)  # a bad spec stops before any work
    sweep = missing_sweep.Sweep(tuple(cfg.missingness_sweep), tuple(cfg.image_drop))
    sweep.validate()
    rt = runtime_for(opts)
    run = rundir.open_run(opts.runs_dir, opts.run)
    require_no_writer(run, "amfmedit evaluate")  # a stage still training would be left out silently
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
    kind = kind_of(schema)
    metric = kind.headline.key
    data = DeviceData(ds, device=rt.device, residency=opts.images_in)
    sweeper = missing_sweep.SweepScorer(sweep, ds, data, cfg.split) if sweep.active else None
    stages, per_group = [], defaultdict(list)
    outputs, val_outputs, fit_outputs = {}, {}, {}
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
        task = SupervisedTask(model=model, loss=None, data=stage_data, use_image=info["modality"] != "tabular",
                              augment=None, kind=kind, channels_last=rt.channels_last,
                              eval_batch_size=cfg.batch_size)
        with torch.no_grad(), rt.autocast():
            rows, preds, targets = task.predict(model, cfg.split, rt)
            val_outputs[name] = task.predict(model, "val", rt) if cfg.split != "val" else (rows, preds, targets)
            if sweeper is not None and not info["mask"]:  # Table 4's masked models keep their own table
                sweeper.score(name, model, modality=info["modality"], kind=kind, rt=rt, batch_size=cfg.batch_size)
            if kind.fit_split is not None:  # what the kind fits on (survival: the baseline hazard, on train)
                fit_outputs[name] = task.predict(model, kind.fit_split, rt)
        m = kind.validation_metrics(preds, targets)
        m.pop("loss", None)
        row = {"stage": name, **info, "mask_features": names.stage_mask(stage_dir), "r_conf": scfg.get("r_conf"),
               "tabular_encoder": scfg.get("tabular_encoder"), "lr": scfg.get("lr"),
               "best_epoch": int(ckpt["epoch"]), "val_metric": float(ckpt["metric"]), **m, "n": len(targets)}
        stages.append(row)
        per_group[_group_key(info, scfg)].append(row)
        outputs[name] = (rows, preds, targets)
    metric_keys = list(m)

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
    y_fit = fit_outputs[first][2] if fit_outputs else None
    preds = {titles[key]: evalstats.ModelPredictions(
        np.stack([val_outputs[r["stage"]][1] for r in rows]), np.stack([outputs[r["stage"]][1] for r in rows]),
        np.stack([fit_outputs[r["stage"]][1] for r in rows]) if fit_outputs else None)
        for key, rows in per_group.items()}
    stats = kind.statistics(y_val, y_test, preds, spec=cfg.threshold, split=cfg.split, schema=schema, y_fit=y_fit,
                            horizons=cfg.horizons)
    stats.warnings.extend(_sanity_warnings(kind, per_group, titles, outputs, val_outputs, cfg.split))
    patterns = evalpatterns.by_pattern(kind, ds, outputs[first][0], y_val, y_test, preds, spec=cfg.threshold,
                                       split=cfg.split, schema=schema)
    swept = None if sweeper is None else sweeper.result(
        kind, {titles[k]: [r["stage"] for r in rows] for k, rows in per_group.items()}, y_test,
        missing_sweep.unimodal_titles(per_group, titles))
    operating = {}
    for key, rows, g in zip(per_group, per_group.values(), groups):
        g.update(stats.model_record(titles[key]))
        for i, r in enumerate(rows):
            _, p, y = outputs[r["stage"]]
            r.update(stats.stage_record(titles[key], i, p, y))
            operating[r["stage"]] = {"title": titles[key], "seed": r["seed"], **stats.operating_record(titles[key], i),
                                     "best_epoch": r["best_epoch"]}
    operating = {**stats.operating_header(schema.class_names), "stages": operating}
    oracle = oracle_auc(ds, cfg.split, metric)
    md = _markdown(run, cfg.split, kind, groups, stages, oracle, stats, metric_keys)
    md += evalpatterns.markdown(kind, patterns, stats, cfg.split)
    term = _terminal(run, cfg.split, kind, groups, stages, oracle, stats)
    term += evalpatterns.terminal(kind, patterns, stats)

    if not rt.is_main:
        return EvaluateResult(run.name, final, metric, groups, stages, oracle, md, term, stats.warnings)
    with staged(run, final, force=True) as stage_out:  # derived from finished stages: always recomputed
        tmp = stage_out.folder
        seed_outputs = {_figure_stem(rows[0]["stage"]): (titles[key], [(f"seed {r['seed']}", outputs[r["stage"]][1])
                                                                         for r in rows])
                        for key, rows in per_group.items()}
        figures = stats.write_figures(tmp, y_test, seed_outputs)
        md += experiments.write(run, tmp, groups, metric=metric)  # Tables 1, 5, 6 and learning curves, when run
        if swept is not None:
            figure = missing_sweep.plot(swept, tmp / missing_sweep.FIGURE)
            md += missing_sweep.markdown(swept, missing_sweep.FIGURE if figure else None)
            if figure:
                figures["missingness_sweep"] = missing_sweep.FIGURE
        evalpatterns.write(tmp, patterns, run.name)
        write_text(tmp / RESULTS_FILE, md + stats.figures_markdown(figures))
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
            "figures": figures, "n_boot": bootstrap.DEFAULT_N_BOOT,
            "patterns": evalpatterns.record(patterns, list(preds)),
            "missingness_sweep": swept.to_dict() if swept is not None else None})
        titled = {r["stage"]: titles[key] for key, rows in per_group.items() for r in rows}
        seed_index = {r["stage"]: i for rows in per_group.values() for i, r in enumerate(rows)}
        for folder, outs in ((tmp / "predictions", outputs), (tmp / "predictions" / "val", val_outputs)):
            _write_predictions(folder, ds, schema, outs, stats, titled, seed_index)
        stage_out.summary = {"metric": metric, "stages": len(stages), "warnings": list(stats.warnings)}
        run.record_command(STAGE, opts.argv)
    return EvaluateResult(run.name, final, metric, groups, stages, oracle, md, term, stats.warnings)


def _figure_stem(stage: str) -> str:
    """``roc/<stem>.png``: the stage name without its seed (and with its masked-features tag)."""
    base, tag = names.split_mask_suffix(stage)
    return base.rsplit("-seed", 1)[0] + (f"-{tag}" if tag else "")


def _markdown(run, split, kind, groups, stages, oracle, stats, metric_keys) -> str:
    metric = kind.headline.key
    parts = [
        f"# Results of run {run.name}\n\n",
        f"Data: `{run.data}`. Metric: {kind.headline.title} on the {split} split, mean ± standard deviation over "
        f"seeds{' (%)' if kind.headline.percent else ''}.\n\n",
        table2_markdown([g for g in experiments.ordinary(groups) if not g.get("mask")], metric=metric, oracle=oracle),
    ]
    masked = incomplete_markdown(groups, metric=metric)
    if masked:
        parts.append("\n## Incomplete tabular data\n\nMasked features replaced by training constants at train and "
                     "test time; drop = complete − masked (points), against the same fusion and strategy on complete "
                     "data in this run.\n\n" + masked)
    if oracle is not None:
        parts.append(f"\nOracle {kind.headline.label} (the generator's true risk on the {split} split): {oracle:.4f}\n")
    parts.append(stats.markdown())
    parts.append("\n## Per stage\n\n")
    keys = ["seed", "lr", "best_epoch", "val_metric", *metric_keys, *stats.stage_keys()]
    parts.append(stage_markdown(stages, keys, {"val_metric": f"val_{metric}"}))
    return "".join(parts)


def _terminal(run, split, kind, groups, stages, oracle, stats) -> str:
    """What the CLI prints: Table 2, the intervals at the operating point, per stage by model and seed."""
    metric, label = kind.headline.key, kind.headline.label
    parts = [f"# Results of run {run.name}\n",
             f"{kind.headline.title} on the {split} split, mean ± SD over seeds"
             f"{' (%)' if kind.headline.percent else ''}.\n",
             table2_markdown([g for g in experiments.ordinary(groups) if not g.get("mask")], metric=metric,
                             oracle=oracle)]
    if oracle is not None:
        parts.append(f"\nOracle {label} ({split} split): {oracle:.4f}\n")
    masked = incomplete_markdown(groups, metric=metric)
    if masked:  # Table 4: each masked model's drop against its complete-data counterpart
        parts.append("\n## Incomplete tabular data (drop = complete − masked, points)\n\n" + masked)
    parts.append(stats.terminal())
    extra = stats.stage_columns()
    lines = [f"| Model | Seed | Epoch | Val {label} | Test {label} | " + " | ".join(extra) + " |",
             "|---|--:|--:|--:|--:|" + "--:|" * len(extra)]
    for g in groups:
        for r in (s for s in stages if s["seed"] in g["seeds"] and _same_group(s, g)):
            lines.append(f"| {g['title']} | {r['seed']} | {r['best_epoch']} | {_f(r['val_metric'])} | "
                         f"{_f(r[metric])} | {stats.stage_cell(r)} |")
    parts.append("\n## Per stage\n\n" + "\n".join(lines) + "\n")
    return "".join(parts)


def _same_group(stage: dict, group: dict) -> bool:
    return stage["stage"] in group.get("stages", ())


def _f(v) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4f}"


def _write_predictions(folder: Path, ds, schema, outputs, stats, titled: dict, seed_index: dict) -> None:
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    for name, (rows, preds, targets) in outputs.items():
        df = pd.DataFrame({"id": ds.ids[rows], **stats.target_columns(targets)})
        for col, values in stats.prediction_columns(titled[name], seed_index[name], preds, schema.class_names).items():
            df[col] = values
        df["inputs"] = evalpatterns.pattern_of(ds, rows)  # the availability pattern: which inputs the row had
        with atomic_path(folder / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False)
