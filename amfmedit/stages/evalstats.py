"""What ``evaluate`` reports beyond the Table-2 layout, computed from arrays alone.

Input: for each classifier (display name, e.g. "AMF module + FT-Mamba, trainable") its
probabilities on the validation and test splits, one array per training seed. Output
(:class:`Statistics`):

- the operating point chosen on **validation** (``--threshold``, :mod:`amfmedit.stats.threshold`),
  per seed (what ``predict`` applies with that seed's classifier) and for the seed-averaged
  prediction (what the tables report), applied unchanged to test;
- a temperature per seed, fitted on validation (:func:`amfmedit.stats.calibration.fit_temperature`);
  the calibrated seed-averaged prediction is the mean of the seeds' calibrated probabilities;
- every test metric with its 95% interval, the spread over seeds and all paired comparisons
  (:func:`amfmedit.stats.summary.summarise_run`), Brier and ECE before and after calibration;
- warnings for degenerate splits (:mod:`amfmedit.stats.splits`).

Knows nothing of models or run folders, so the benchmark times it on synthetic inputs.
Figures and markdown come from the same object (:func:`write_figures`, ``*_markdown``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from amfmedit.errors import UserError
from amfmedit.stats import bootstrap, calibration, compare, plots, splits, weighted
from amfmedit.stats.summary import RunSummary, render_models_markdown, summarise_run
from amfmedit.stats.threshold import Threshold, choose_threshold, parse_threshold

ARGMAX = "argmax"  # the operating point of a multiclass classifier: the most probable class
SPLIT_WORDS = {"val": "validation", "test": "test"}


@dataclass
class ModelPredictions:
    """One classifier's probabilities, seeds first: ``val`` (S, N_val, C), ``test`` (S, N, C)."""

    val: np.ndarray
    test: np.ndarray


@dataclass
class Statistics:
    binary: bool
    split: str  # the scored split: "test" (or "val")
    spec: str  # the --threshold spec
    summary: RunSummary
    thresholds: dict[str, Threshold | None]  # seed-averaged prediction (None: multiclass)
    seed_thresholds: dict[str, list[Threshold | None]]
    temperatures: dict[str, list[calibration.TemperatureFit]]
    averaged: dict[str, np.ndarray]  # seed-averaged test probabilities: (N,) class 1, or (N, C)
    calibrated: dict[str, np.ndarray]  # the same after temperature scaling
    calibration: dict[str, dict[str, dict[str, bootstrap.Interval]]]  # name -> before/after -> brier/ece
    counts: dict[str, dict[str, int]]  # name -> tp/fp/tn/fn at the threshold (binary)
    warnings: list[str] = field(default_factory=list)

    def model_record(self, name: str) -> dict:
        """The JSON record of one classifier (``metrics.json``'s group entries)."""
        m = self.summary.models[name]
        thr = self.thresholds[name]
        return {
            "title": name,
            "seed_mean": m.seed_mean, "seed_std": m.seed_std,
            "intervals": {k: v.to_dict() for k, v in m.intervals.items()},
            "threshold": thr.to_dict() if thr else {"name": ARGMAX, "value": None},
            "counts": self.counts.get(name),
            "calibration": {
                "method": "temperature scaling fitted on the validation split (Guo et al. 2017)",
                "temperatures": [t.temperature for t in self.temperatures[name]],
                "biases": [t.bias for t in self.temperatures[name]],
                "val_nll_before": [t.nll_before for t in self.temperatures[name]],
                "val_nll_after": [t.nll_after for t in self.temperatures[name]],
                **{when: {k: v.to_dict() for k, v in ivs.items()} for when, ivs in self.calibration[name].items()},
            },
        }


def split_word(split: str) -> str:
    return SPLIT_WORDS.get(split, split)


def _calibration_intervals(y, p, W, level: float) -> dict[str, bootstrap.Interval]:
    """Brier and ECE of ``p`` ((N,) class 1 or (N, C)) with intervals from the resamples ``W``."""
    y = np.asarray(y)
    if p.ndim == 1:
        pos = y.astype(bool)
        sq = (p - pos) ** 2
        conf, correct = weighted.binary_top_label(p, pos)
    else:
        sq = ((p - np.eye(p.shape[1])[y]) ** 2).sum(axis=1)
        conf, correct = p.max(axis=1), p.argmax(axis=1) == y
    ones = np.ones((1, len(y)))
    point = {"brier": float(sq.mean()), "ece": float(weighted.ece(conf, correct, ones)[0])}
    reps = {"brier": (W @ sq) / W.sum(axis=1), "ece": weighted.ece(conf, correct, W)}
    return bootstrap.intervals_from(point, reps, level)


def _choose(spec: str, y_val, p_val, name: str) -> Threshold:
    try:
        return choose_threshold(spec, y_val, p_val)
    except UserError as exc:
        raise UserError(f"{exc} (classifier {name})") from None


def compute(y_val, y_test, preds: dict[str, ModelPredictions], spec: str, split: str = "test",
            class_names=None, n_boot: int = bootstrap.DEFAULT_N_BOOT, seed: int = 0,
            level: float = 0.95) -> Statistics:
    """Operating points, temperatures, intervals and comparisons for every classifier.

    Raises:
        UserError: a bad ``spec``, or one the validation split cannot meet (nothing is written
            by the caller before this returns).
    """
    parse_threshold(spec)
    y_val, y_test = np.asarray(y_val).astype(np.int64), np.asarray(y_test).astype(np.int64)
    n_classes = next(iter(preds.values())).test.shape[2]
    binary = n_classes == 2
    warnings: list[str] = []
    if binary:
        values, counts = np.unique(y_val, return_counts=True)
        if len(values) == 2 and counts.min() < splits.MIN_EVENTS:
            warnings.append(f"validation split: only {counts.min()} rows of its rarer class (fewer than "
                            f"{splits.MIN_EVENTS}); the operating point ({spec}) and the temperature fitted there "
                            "are uncertain")
    thresholds, seed_thresholds, temps, averaged, calibrated, cal_per_seed = {}, {}, {}, {}, {}, {}
    for name, pr in preds.items():
        val, test = np.asarray(pr.val, dtype=np.float64), np.asarray(pr.test, dtype=np.float64)
        fits = [calibration.fit_temperature(calibration.logits_from_probs(v), y_val) for v in val]
        cal = np.stack([calibration.apply_temperature(calibration.logits_from_probs(t), f.temperature, f.bias)
                        for t, f in zip(test, fits)])
        temps[name] = fits
        warnings += calibration.bound_warnings(name, fits, hint="e.g. shifted up by a class-balanced sampler; "
                                               "--sampler-weights none trains calibrated ones")
        if binary:
            seed_thresholds[name] = [_choose(spec, y_val, v[:, 1], name) for v in val]
            thresholds[name] = _choose(spec, y_val, val.mean(axis=0)[:, 1], name)
            averaged[name], calibrated[name] = test.mean(axis=0)[:, 1], cal.mean(axis=0)[:, 1]
        else:
            seed_thresholds[name] = [None] * len(val)
            thresholds[name] = None
            averaged[name], calibrated[name] = test.mean(axis=0), cal.mean(axis=0)
        cal_per_seed[name] = cal

    summary = summarise_run(y_test, {k: np.asarray(v.test, dtype=np.float64) for k, v in preds.items()},
                            thresholds={k: t.value for k, t in thresholds.items() if t is not None},
                            seed_thresholds={k: [t.value for t in ts] for k, ts in seed_thresholds.items()
                                             if None not in ts},
                            split=split_word(split), n_boot=n_boot, seed=seed, level=level,
                            class_names=None if binary else class_names)
    warnings = summary.warnings + warnings  # the scored split's first
    W = bootstrap.stratified_counts(y_test, n_boot, seed)
    cal_ivs, counts = {}, {}
    for name in preds:
        before = _calibration_intervals(y_test, averaged[name], W, level)
        after = _calibration_intervals(y_test, calibrated[name], W, level)
        cal_ivs[name] = {"before": before, "after": after}
        if binary:
            pred, pos = averaged[name] >= thresholds[name].value, y_test.astype(bool)
            counts[name] = {"tp": int((pred & pos).sum()), "fp": int((pred & ~pos).sum()),
                            "tn": int((~pred & ~pos).sum()), "fn": int((~pred & pos).sum())}
    return Statistics(binary, split, spec, summary, thresholds, seed_thresholds, temps, averaged, calibrated,
                      cal_ivs, counts, warnings)


# ---------------------------------------------------------------------------------------------- figures


def slug(name: str) -> str:
    """A file name for a display name: "AMF module + FT-Mamba, trainable" -> "amf-module-ft-mamba-trainable"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"


def write_figures(folder: Path, y_test, stats: Statistics) -> dict[str, str]:
    """ROC, PR and decision-curve figures overlaying the models, one reliability diagram per model.

    Binary tasks only (``{}`` otherwise). ROC and PR need both classes in the scored split and
    are left out otherwise (the split's warning says so). Returns figure -> path relative to
    ``folder``.
    """
    if not stats.binary:
        return {}
    y = np.asarray(y_test).astype(int)
    where = f"{split_word(stats.split)} split"
    out = {}
    both = len(np.unique(y)) == 2
    ops = {k: t.value for k, t in stats.thresholds.items() if t is not None}
    if both:
        ivs = {k: m.intervals for k, m in stats.summary.models.items()}
        plots.roc_figure(y, stats.averaged, folder / "roc.png", title=f"ROC curves, {where} (seed-averaged)",
                         auc_ci={k: (v["auc"].estimate, v["auc"].low, v["auc"].high) for k, v in ivs.items()},
                         operating_points=ops)
        out["roc"] = "roc.png"
        plots.pr_figure(y, stats.averaged, folder / "pr.png", title=f"Precision-recall curves, {where} (seed-averaged)",
                        ap_ci={k: (v["auprc"].estimate, v["auprc"].low, v["auprc"].high) for k, v in ivs.items()},
                        operating_points=ops)
        out["pr"] = "pr.png"
    plots.decision_figure(y, stats.calibrated, folder / "decision.png",
                          title=f"Decision curve, {where} (temperature-scaled risks)")
    out["decision"] = "decision.png"
    (folder / "reliability").mkdir(parents=True, exist_ok=True)
    used = set()
    for name in stats.averaged:
        stem = slug(name)
        while stem in used:
            stem += "-2"
        used.add(stem)
        fits = stats.temperatures[name]
        temps = ", ".join(f"{t.temperature:.2f}" for t in fits)
        biases = ", ".join(f"{t.bias:+.2f}" for t in fits)
        label = f"recalibrated (T = {temps}, b = {biases})" if any(t.bias for t in fits) else \
            f"temperature-scaled (T = {temps})"
        plots.reliability_figure(y, {"as trained": stats.averaged[name], label: stats.calibrated[name]},
                                 folder / "reliability" / f"{stem}.png", title=f"{name}: reliability, {where}")
        out[f"reliability:{name}"] = f"reliability/{stem}.png"
    return out


# ---------------------------------------------------------------------------------------------- tables


def _iv(d: bootstrap.Interval, digits: int = 3) -> str:
    return d.text(digits)


def models_markdown(stats: Statistics) -> str:
    """Every metric of the seed-averaged prediction with its 95% interval (one row per model)."""
    names = {k: t.name for k, t in stats.thresholds.items() if t is not None}
    return render_models_markdown(stats.summary, threshold_names=names)


def operating_markdown(stats: Statistics) -> str:
    """Operating points: how each was chosen, what it gave on validation, the test counts at it."""
    if not stats.binary:
        return ""
    lines = ["| Model | Threshold | Chosen by | Val. sens. | Val. spec. | Test TP / FP / TN / FN |",
             "|---|--:|---|--:|--:|--:|"]
    for name, t in stats.thresholds.items():
        c = stats.counts[name]
        lines.append(f"| {name} | {t.value:.3f} ({t.name}) | {t.rule} | {t.val_sensitivity:.3f} | "
                     f"{t.val_specificity:.3f} | {c['tp']} / {c['fp']} / {c['tn']} / {c['fn']} |")
    return "\n".join(lines) + "\n"


def calibration_markdown(stats: Statistics) -> str:
    """Brier and ECE with intervals, before and after temperature scaling."""
    lines = ["| Model | Temperature (per seed) | Brier before | Brier after | ECE before | ECE after |",
             "|---|--:|--:|--:|--:|--:|"]
    for name, c in stats.calibration.items():
        temps = ", ".join(f"{t.temperature:.2f}" for t in stats.temperatures[name])
        lines.append(f"| {name} | {temps} | {_iv(c['before']['brier'])} | {_iv(c['after']['brier'])} | "
                     f"{_iv(c['before']['ece'])} | {_iv(c['after']['ece'])} |")
    return "\n".join(lines) + "\n"


def headline_comparisons_markdown(stats: Statistics) -> str:
    """The headline metric's paired comparisons (AUC, or top-1 accuracy), as in ``comparisons.md``."""
    table = stats.summary.comparisons
    if table is None:
        return ""
    rows = [r for r in table.rows if r.metric == table.headline]
    text = compare.render_markdown(dataclasses.replace(table, rows=rows, warnings=[]), title="x")
    body = text.split("\n", 2)[2].lstrip("\n")  # the title line is the caller's
    return body.replace("\n## ", "\n### ")


def terminal_markdown(stats: Statistics, short: dict[str, str] | None = None) -> str:
    """The few columns a terminal of 80 columns shows whole: headline with interval, operating point."""
    short = short or {}
    head = "auc" if stats.binary else "acc"
    label = "AUC" if stats.binary else "Top-1 acc."
    if stats.binary:
        lines = [f"| Model | {label} (95% CI) | Threshold | Sens. | Spec. |", "|---|--:|--:|--:|--:|"]
    else:
        lines = [f"| Model | {label} (95% CI) | Macro AUC | Brier |", "|---|--:|--:|--:|"]
    for name, m in stats.summary.models.items():
        iv = m.intervals
        cell = _iv(iv[head], 2) if head in iv else "n/a"
        if stats.binary:
            t = stats.thresholds[name]
            sens = _iv(iv["sensitivity"], 2) if "sensitivity" in iv else "n/a"
            spec = _iv(iv["specificity"], 2) if "specificity" in iv else "n/a"
            lines.append(f"| {short.get(name, name)} | {cell} | {t.value:.3f} {t.name} | {sens} | {spec} |")
        else:
            mac = _iv(iv["macro_auc"], 2) if "macro_auc" in iv else "n/a"
            lines.append(f"| {short.get(name, name)} | {cell} | {mac} | {_iv(iv['brier'], 2)} |")
    return "\n".join(lines) + "\n"
