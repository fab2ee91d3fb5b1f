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
from amfmedit.stages.kinds.base import KindStatistics
from amfmedit.stats import bootstrap, calibration, compare, plots, splits, weighted
from amfmedit.stats.summary import RunSummary, render_models_markdown, summarise_run
from amfmedit.stats.threshold import Threshold, choose_threshold, parse_threshold

ARGMAX = "argmax"  # the operating point of a multiclass classifier: the most probable class
AT_THRESHOLD = ("sensitivity", "specificity", "ppv", "npv")
SPLIT_WORDS = {"val": "validation", "test": "test"}


@dataclass
class ModelPredictions:
    """One model's outputs, seeds first: ``val`` (S, N_val, K), ``test`` (S, N, K) and, for a kind with a
    ``fit_split``, ``fit`` (S, N_fit, K) (survival: the training split, for the baseline hazard)."""

    val: np.ndarray
    test: np.ndarray
    fit: np.ndarray | None = None


@dataclass
class Statistics(KindStatistics):
    """A classification kind's evaluation (see the module docstring); ``evaluate`` asks it for its
    records, report sections, figures and prediction columns without knowing the kind."""

    thresholded: bool  # an operating point is chosen on validation (binary classification)
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

    # ------------------------------------------------------------------ one seed's classifier

    def _recalibrated(self, name: str, i: int, probs: np.ndarray) -> np.ndarray:
        fit = self.temperatures[name][i]
        return calibration.apply_temperature(calibration.logits_from_probs(probs), fit.temperature, fit.bias)

    def _positive(self, p: np.ndarray) -> np.ndarray:
        """The scored column: the positive class's probability (thresholded) or all classes."""
        return p[:, 1] if self.thresholded else p

    def stage_record(self, name: str, i: int, probs: np.ndarray, labels: np.ndarray) -> dict:
        """Seed ``i`` of model ``name``: its operating point, recalibration and metrics at them (its own
        seed's, not the seed average's)."""
        fit = self.temperatures[name][i]
        cal = self._recalibrated(name, i, probs)
        thr = self.seed_thresholds[name][i]
        row = {"temperature": fit.temperature, "calibration_bias": fit.bias,
               "ece_calibrated": calibration.ece(labels, self._positive(cal)),
               "brier": calibration.brier(labels, self._positive(probs)),
               "brier_calibrated": calibration.brier(labels, self._positive(cal)),
               "threshold_name": thr.name if thr else ARGMAX, "threshold": thr.value if thr else None}
        if thr is not None:
            point = bootstrap.point_estimates(labels, probs[:, 1], thr.value)
            row.update({k: point[k] for k in AT_THRESHOLD})
        return row

    def operating_record(self, name: str, i: int) -> dict:
        """What ``predict`` applies with seed ``i``'s classifier (``operating_points.json``)."""
        thr = self.seed_thresholds[name][i]
        fit = self.temperatures[name][i]
        return {
            "threshold_name": thr.name if thr else ARGMAX,
            "threshold": thr.value if thr else None,
            "threshold_calibrated": calibrated_threshold(thr.value, fit.temperature, fit.bias) if thr else None,
            "rule": thr.rule if thr else "the most probable class",
            "val_sensitivity": thr.val_sensitivity if thr else None,
            "val_specificity": thr.val_specificity if thr else None,
            "temperature": fit.temperature, "bias": fit.bias,
        }

    def operating_header(self, class_names) -> dict:
        return {"threshold_spec": self.spec, "chosen_on": "val",
                "positive_class": class_names[1] if self.thresholded else None,
                "note": "a row is positive when its probability of the positive class is >= threshold (probabilities "
                        "as trained) or >= threshold_calibrated (after dividing the logits by temperature and adding "
                        "bias to the positive class's log-odds)"}

    def prediction_columns(self, name: str, i: int, probs: np.ndarray, class_names) -> dict[str, np.ndarray]:
        """Columns of a predictions file: each class's probability and the decision at the operating point."""
        cols = {f"prob_{c}": probs[:, k] for k, c in enumerate(class_names)}
        thr = self.seed_thresholds[name][i]
        cols["decision"] = (probs[:, 1] >= thr.value).astype(int) if thr is not None else probs.argmax(axis=1)
        cols["threshold_name"] = np.full(len(probs), thr.name if thr else ARGMAX, dtype=object)
        return cols

    def stage_keys(self) -> list[str]:
        """Extra per-stage columns of ``results.md``."""
        return (["threshold", "sensitivity", "specificity"] if self.thresholded else []) + \
            ["temperature", "ece_calibrated"]

    # ----------------------------------------------------------------------------- reports

    def markdown(self) -> str:
        """``results.md``'s sections after Table 2: intervals, operating points, calibration, comparisons."""
        where = split_word(self.split)
        parts = [f"\n## {where.capitalize()} metrics with 95% intervals\n\n"
                 "Each metric of the seed-averaged prediction (mean probability over seeds) with its 95% interval: "
                 "DeLong for AUC, a stratified bootstrap of the rows (2,000 resamples, seeded) otherwise; "
                 "\"over seeds\" is the paper's mean ± SD of the per-seed values. Threshold: the cut chosen on the "
                 f"validation split by `--threshold {self.spec}` and applied unchanged here.\n\n",
                 models_markdown(self)]
        if self.warnings:
            parts.append("\n" + "".join(f"- Warning: {w}\n" for w in self.warnings))
        if self.thresholded:
            parts.append("\n## Operating points (chosen on the validation split)\n\n" + operating_markdown(self))
        parts.append("\n## Calibration\n\nBrier score and ECE of the seed-averaged prediction before and after "
                     "temperature scaling (one temperature per seed, fitted on the validation split; `predict` "
                     "applies it by default).\n\n" + calibration_markdown(self))
        table = self.summary.comparisons
        if table is not None:
            label = compare.LABELS[table.headline]
            parts.append(f"\n## Paired comparisons ({label})\n\n" + headline_comparisons_markdown(self)
                         + "\nEvery metric: [comparisons.md](comparisons.md), [comparisons.csv](comparisons.csv).\n")
        return "".join(parts)

    def terminal(self) -> str:
        """The terminal's section: the headline with its interval and the operating point, 80 columns."""
        where = split_word(self.split)
        cut = f"; threshold chosen on validation ({self.spec})" if self.thresholded else ""
        parts = [f"\n## {where.capitalize()} split, seed-averaged, 95% intervals{cut}\n\n", terminal_markdown(self)]
        table = self.summary.comparisons
        if table is not None and table.note:
            parts.append(f"\n**{table.note}**\n")
        return "".join(parts)

    def stage_columns(self) -> list[str]:
        return ["Threshold", "T"]

    def stage_cell(self, row: dict) -> str:
        """The per-stage terminal table's operating-point and temperature cells."""
        thr = row.get("threshold")
        return ("argmax" if thr is None else f"{thr:.3f}") + f" | {row['temperature']:.2f}"

    def figures_markdown(self, figures: dict[str, str]) -> str:
        if not figures:
            return ""
        words = {"roc": "ROC curves", "pr": "precision-recall curves", "decision": "decision curve"}
        links = [f"[{words[k]}]({v})" for k, v in figures.items() if k in words]
        rel = [f"[{k.split(':', 1)[1]}]({v})" for k, v in figures.items() if k.startswith("reliability:")]
        return ("\n## Figures\n\n" + ", ".join(links) + ".\n" +
                ("\nReliability diagrams: " + ", ".join(rel) + ".\n" if rel else ""))

    def write_figures(self, folder: Path, y_test, seed_outputs: dict[str, tuple[str, list]]) -> dict:
        """The figures of :func:`write_figures` and one ROC figure per model with each seed's curve
        (``seed_outputs``: file stem -> (model name, [(seed label, test probabilities)]); ``roc/<stem>.png``)."""
        figures = write_figures(folder, y_test, self)
        if self.thresholded:
            write_seed_rocs(folder / "roc", y_test, seed_outputs, self.split)
        return figures


def calibrated_threshold(value: float, temperature: float, bias: float = 0.0) -> float:
    """A binary cut on the probabilities as trained, on the recalibrated scale.

    For two logits, p1 = sigmoid(z1 - z0); after recalibration, sigmoid((z1 - z0) / T + b) =
    sigmoid(logit(p1) / T + b), a monotone map, so the same rows fall on each side of the cut.
    """
    return float(calibration.apply_temperature(calibration.logits_from_probs(np.array([value])), temperature,
                                               bias)[0])


def write_seed_rocs(folder: Path, y, seed_outputs: dict[str, tuple[str, list]], split: str) -> None:
    """One ROC figure per model overlaying its seeds (both classes needed)."""
    y = np.asarray(y).astype(int)
    if len(np.unique(y)) < 2:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for stem, (name, seeds) in seed_outputs.items():
        plots.roc_figure(y, {label: p[:, 1] for label, p in seeds}, folder / f"{stem}.png",
                         title=f"{name}: each seed ({split})")


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
            level: float = 0.95, *, thresholded: bool) -> Statistics:
    """Operating points, temperatures, intervals and comparisons for every classifier.

    Raises:
        UserError: a bad ``spec``, or one the validation split cannot meet (nothing is written
            by the caller before this returns).
    """
    parse_threshold(spec)
    y_val, y_test = np.asarray(y_val).astype(np.int64), np.asarray(y_test).astype(np.int64)
    binary = thresholded  # the kind's: an operating point on the positive class's probability
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
    if not stats.thresholded:
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
    if not stats.thresholded:
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
    head = "auc" if stats.thresholded else "acc"
    label = "AUC" if stats.thresholded else "Top-1 acc."
    if stats.thresholded:
        lines = [f"| Model | {label} (95% CI) | Threshold | Sens. | Spec. |", "|---|--:|--:|--:|--:|"]
    else:
        lines = [f"| Model | {label} (95% CI) | Macro AUC | Brier |", "|---|--:|--:|--:|"]
    for name, m in stats.summary.models.items():
        iv = m.intervals
        cell = _iv(iv[head], 2) if head in iv else "n/a"
        if stats.thresholded:
            t = stats.thresholds[name]
            sens = _iv(iv["sensitivity"], 2) if "sensitivity" in iv else "n/a"
            spec = _iv(iv["specificity"], 2) if "specificity" in iv else "n/a"
            lines.append(f"| {short.get(name, name)} | {cell} | {t.value:.3f} {t.name} | {sens} | {spec} |")
        else:
            mac = _iv(iv["macro_auc"], 2) if "macro_auc" in iv else "n/a"
            lines.append(f"| {short.get(name, name)} | {cell} | {mac} | {_iv(iv['brier'], 2)} |")
    return "\n".join(lines) + "\n"
