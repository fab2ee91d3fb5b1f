"""``explain --method permutation``: feature importance of a scikit-learn baseline.

Permutation importance (Breiman 2001; scikit-learn's ``permutation_importance``) on the validation
split: each input column shuffled ``repeats`` times, the importance being the mean drop of the
prediction kind's headline metric (AUC, or top-1 accuracy) from the unshuffled one. Defined for any
fitted model, unlike Integrated Gradients, so the baselines get an importance that reads beside the
neural models' IG ranking (the same ``importance.csv`` columns and top-10 table). A late-fusion
model's image principal components are columns like any other.

Writes ``<run>/explain/permutation-<stage>/`` (importance.csv, top10.md, summary.json), built aside
and renamed into place.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from amfmedit.errors import UserError
from amfmedit.explain.ig import IMPORTANCE_FILE, SUMMARY_FILE, TOP_FILE, top_markdown
from amfmedit.io import atomic_path, write_json, write_text
from amfmedit.stages import names
from amfmedit.stages.baseline import BaselineScorer, design_for
from amfmedit.stages.baseline_models import BASELINES
from amfmedit.stages.common import RunOptions, load_dataset, runtime_for
from amfmedit.stages.configs import PermutationConfig
from amfmedit.stages.kinds import kind_of
from amfmedit.stages.lifecycle import staged
from amfmedit.stages.selection import choose_model
from amfmedit.stages.stored import open_stored
from amfmedit.train import rundir



@dataclass
class PermutationReport:
    run: str
    stage: str
    folder: Path
    model: str
    table: object  # pandas DataFrame, most important first
    summary: dict = field(default_factory=dict)


def _synthetic(dataset) -> dict:
    try:
        return dataset.provenance.get("synthetic") or {}
    except (OSError, ValueError):
        return {}


def explain_permutation(cfg: PermutationConfig, opts: RunOptions, *, stage: str | None = None) -> PermutationReport:
    """Permutation importance of ``stage`` (default: the baseline with the best validation metric)."""
    import pandas as pd
    from sklearn.inspection import permutation_importance

    cfg.validate()
    rt = runtime_for(opts)
    run = rundir.open_run(opts.runs_dir, opts.run)
    choice = choose_model(run, "permutation", stage, data_dir=opts.data_dir)
    stored = open_stored(run.stage(choice.stage))
    payload = stored.load()
    model = BASELINES[payload["model"]]
    ds = load_dataset(run, opts)
    kind = kind_of(ds.schema)
    estimators = kind.tabular_baselines(ds.schema)
    rows = ds.indices(cfg.split)
    reduced = BaselineScorer(run, ds, device=rt.device).reduced(stored, payload, rows) if model.uses_image else None
    design = design_for(model, ds, rows, reduced)
    y = kind.targets(ds)[rows]
    metric = kind.headline

    def score(estimator, X, targets) -> float:  # larger is better, as scikit-learn's scorers
        return metric.rank(kind.validation_metrics(estimators.outputs(estimator, X), targets)[metric.key])

    start = time.perf_counter()
    base = score(payload["estimator"], design.X, y)
    res = permutation_importance(payload["estimator"], design.X, y, scoring=score, n_repeats=cfg.repeats,
                                 random_state=cfg.seed, n_jobs=1)
    features = {f.name: f for f in ds.schema.features}
    informative = set(_synthetic(ds).get("informative_features") or [])
    mean = res.importances_mean
    positive = np.clip(mean, 0.0, None)
    pct = 100.0 * positive / positive.sum() if positive.sum() > 0 else np.zeros_like(mean)
    order = np.argsort(-mean, kind="stable")
    rank = np.empty(len(mean), np.int64)
    rank[order] = np.arange(1, len(mean) + 1)
    table = pd.DataFrame([{
        "name": n, "kind": features[n].kind if n in features else "image embedding",
        "group": (features[n].group or "Other") if n in features else "Image embedding",
        "description": (features[n].description or "") if n in features else "principal component of the frozen "
                                                                              "image embedding",
        "importance_pct": float(pct[j]), "rank": int(rank[j]), "importance": float(mean[j]),
        "importance_sd": float(res.importances_std[j]),
        **({"informative": n in informative} if informative else {}),
    } for j, n in enumerate(design.names)]).sort_values("rank").reset_index(drop=True)
    top = top_markdown(table, cfg.top_k)
    summary = {"stage": choice.stage, "model_choice": choice.rule, "model": model.title, "method":
               "permutation importance (scikit-learn), mean drop of the validation metric over repeats",
               "metric": metric.key, "split": cfg.split, "n_samples": int(len(rows)), "baseline_value": float(
                   kind.validation_metrics(estimators.outputs(payload["estimator"], design.X), y)[metric.key]),
               "config": asdict(cfg), "seconds": time.perf_counter() - start, "top": table["name"].head(
                   cfg.top_k).tolist(), "warnings": []}
    if informative:
        k = len(informative)
        summary["synthetic"] = {"n_informative": k, f"informative_in_top{cfg.top_k}": int(
            table.head(cfg.top_k)["informative"].sum()), f"informative_in_top{k}": int(table.head(k)["informative"].sum())}
    if not np.isfinite(base):
        summary["warnings"].append(f"the {metric.label} on the {cfg.split} split is undefined; the importances are NaN")
    final = names.permutation_folder(run, choice.stage)
    with staged(run, final, force=opts.force) as out:
        with atomic_path(out.folder / IMPORTANCE_FILE) as tmp:
            table.to_csv(tmp, index=False)
        write_text(out.folder / TOP_FILE, f"# Permutation importance: {model.title} ({choice.stage})\n\n{top}")
        write_json(out.folder / SUMMARY_FILE, summary)
        out.summary = {"stage": choice.stage, "top": summary["top"][:3]}
    return PermutationReport(run.name, choice.stage, final, model.title, table, summary)
