"""A classification run's statistics on other rows: subgroups of the scored split and external cohorts.

Both reuse what ``evaluate`` chose on the internal validation split (:class:`~amfmedit.stages.evalstats.
Statistics`): each model's operating point and each seed's temperature are applied unchanged, and every
metric comes with the interval ``evaluate`` gives it (:func:`amfmedit.stats.summary.summarise_run`:
DeLong for AUC, Clopper-Pearson for proportions, stratified bootstrap otherwise).

- **Subgroups** (:func:`subgroup_statistics`): every metric per subgroup, the difference against the
  rest of the split (unpaired DeLong for AUC, independent bootstraps otherwise,
  :mod:`amfmedit.stats.groups`) with Holm-adjusted p-values over one variable's subgroups, and a
  flag where the rarer class has fewer than 10 rows (too small to read).
- **External** (:func:`external_statistics`): internal test and external side by side; for binary
  risks calibration-in-the-large and calibration slope (:func:`amfmedit.stats.calibration.
  logistic_calibration`) of the probabilities as ``predict`` gives them (temperature-scaled on the
  internal validation split), and optionally a logistic recalibration fitted on a named external
  subset and scored on the other external rows, reported apart.
"""

from __future__ import annotations

import math
import warnings as _warnings
from dataclasses import dataclass, field

import numpy as np

from amfmedit.errors import UserError
from amfmedit.stats import bootstrap, calibration, compare, splits
from amfmedit.stats.delong import UndefinedVarianceWarning
from amfmedit.stats.groups import auc_difference, bootstrap_differences
from amfmedit.stats.summary import summarise_run

SMALL = splits.MIN_EVENTS  # rarer class below this: a subgroup too small to read


def _intervals(stats, name: str, y, preds: np.ndarray, split: str, n_boot: int) -> tuple[dict, list[str]]:
    """Every metric of model ``name``'s seed-averaged ``preds`` (S, N, K) on labels ``y``, at its operating point."""
    thr = stats.thresholds.get(name)
    seed_thr = stats.seed_thresholds.get(name)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", UndefinedVarianceWarning)
        s = summarise_run(np.asarray(y), {name: preds}, thresholds={name: thr.value} if thr else None, split=split,
                          n_boot=n_boot, seed_thresholds={name: [t.value for t in seed_thr]} if thr else None)
    return s.models[name].intervals, s.warnings


def _scored(stats, preds: np.ndarray) -> np.ndarray:
    """The seed-averaged prediction the tables score: the positive class's probability, or all classes."""
    mean = np.asarray(preds, np.float64).mean(axis=0)
    return mean[:, 1] if stats.thresholded else mean


def _recalibrated(stats, name: str, preds: np.ndarray) -> np.ndarray:
    """Seed-averaged probabilities after each seed's temperature (fitted on internal validation), as predict."""
    cal = [calibration.apply_temperature(calibration.logits_from_probs(p), f.temperature, f.bias)
           for p, f in zip(np.asarray(preds, np.float64), stats.temperatures[name])]
    mean = np.mean(cal, axis=0)
    return mean[:, 1] if stats.thresholded else mean


def _iv(iv) -> dict | None:
    return iv.to_dict() if iv is not None else None


def _cell(iv: dict | None, digits: int = 3) -> str:
    if not iv or iv.get("estimate") is None or not math.isfinite(iv["estimate"]):
        return "n/a"
    if not (math.isfinite(iv.get("low", math.nan)) and math.isfinite(iv.get("high", math.nan))):
        return f"{iv['estimate']:.{digits}f}"
    return f"{iv['estimate']:.{digits}f} ({iv['low']:.{digits}f}\u2013{iv['high']:.{digits}f})"


# ---------------------------------------------------------------------------------------------- subgroups


@dataclass
class SubgroupReport:
    """Per variable, subgroup and model: counts, every metric with its interval, the difference against the rest."""

    rows: list[dict] = field(default_factory=list)
    headline: str = "auc"
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"headline": self.headline, "rows": self.rows, "warnings": self.warnings, "small_below": SMALL}

    def csv_rows(self) -> list[dict]:
        """One row per (variable, subgroup, model, metric)."""
        out = []
        for r in self.rows:
            for metric, iv in r["metrics"].items():
                d = r["vs_rest"].get(metric) or {}
                out.append({"variable": r["variable"], "subgroup": r["subgroup"], "model": r["model"], "n": r["n"],
                            "events": r["events"], "too_small": r["too_small"], "metric": metric,
                            "estimate": iv["estimate"], "low": iv["low"], "high": iv["high"],
                            "diff_vs_rest": d.get("diff"), "diff_low": d.get("low"), "diff_high": d.get("high"),
                            "p": d.get("p"), "p_holm": d.get("p_holm"), "method": d.get("method")})
        return out

    def markdown(self) -> str:
        head = self.headline
        label = compare.LABELS.get(head, head)
        extra = ["sensitivity", "specificity", "brier"] if head == "auc" else ["balanced_acc", "brier"]
        lines = [f"| Variable | Subgroup | n (events) | Model | {label} (95% CI) | \u0394 vs rest (95% CI) | p (Holm) | "
                 + " | ".join(compare.LABELS.get(m, m) for m in extra) + " |",
                 "|---|---|--:|---|--:|--:|--:|" + "--:|" * len(extra)]
        for r in self.rows:
            d = r["vs_rest"].get(head) or {}
            delta = (f"{d['diff']:+.3f} ({d['low']:+.3f}\u2013{d['high']:+.3f})"
                     if d and all(math.isfinite(d.get(k, math.nan)) for k in ("diff", "low", "high")) else "n/a")
            p = f"{d['p_holm']:.3f}" if d and math.isfinite(d.get("p_holm", math.nan)) else "n/a"
            flag = " \u26a0 too small to read" if r["too_small"] else ""
            lines.append(f"| {r['variable']} | {r['subgroup']}{flag} | {r['n']} ({r['events']}) | {r['model']} | "
                         f"{_cell(r['metrics'].get(head))} | {delta} | {p} | "
                         + " | ".join(_cell(r["metrics"].get(m)) for m in extra) + " |")
        note = (f"\nA subgroup whose rarer class has fewer than {SMALL} rows is marked \u26a0: its intervals are wide "
                "and its difference from the rest cannot be read. \u0394 vs rest: the subgroup's metric minus the "
                "other rows' (unpaired DeLong for AUC, independent stratified bootstraps otherwise); p-values "
                "Holm-adjusted over one variable's subgroups. Every metric: [subgroups.csv](subgroups.csv).\n")
        return "\n".join(lines) + "\n" + note


def subgroup_statistics(stats, y, preds: dict[str, np.ndarray], variables: dict[str, np.ndarray], *,
                        headline: str, n_boot: int = bootstrap.DEFAULT_N_BOOT) -> SubgroupReport:
    """``variables``: name -> (N,) subgroup label of each scored row (None: left out of that variable)."""
    y = np.asarray(y)
    report = SubgroupReport(headline=headline)
    for var, labels in variables.items():
        levels = [lv for lv in dict.fromkeys(labels.tolist()) if lv is not None]
        start = len(report.rows)
        for level in levels:
            inside = np.array([lv == level for lv in labels.tolist()])
            rest = ~inside & np.array([lv is not None for lv in labels.tolist()])
            yg = y[inside]
            if stats.thresholded:  # events: the positive class; too small: fewer than SMALL rows of either class
                counts = np.bincount(yg.astype(np.int64), minlength=2)
                events, small = int(counts[1]), int(counts[:2].min()) < SMALL
            else:
                events, small = int(len(yg)), len(yg) < SMALL
            for name, p in preds.items():
                ivs, _ = _intervals(stats, name, yg, p[:, inside], f"subgroup {var} = {level}", n_boot)
                row = {"variable": var, "subgroup": str(level), "model": name, "n": int(inside.sum()), "events": events,
                       "too_small": bool(small), "metrics": {k: v.to_dict() for k, v in ivs.items()}, "vs_rest": {}}
                if rest.any():
                    a, b = _scored(stats, p[:, inside]), _scored(stats, p[:, rest])
                    thr = stats.thresholds[name].value if stats.thresholds.get(name) else 0.5
                    diffs = bootstrap_differences(yg, a, y[rest], b, thr, n_boot=n_boot)
                    if stats.thresholded:
                        diffs["auc"] = auc_difference(yg, a, y[rest], b)
                    row["vs_rest"] = {k: d.to_dict() for k, d in diffs.items() if k in row["metrics"]}
                report.rows.append(row)
        block = report.rows[start:]
        for name in preds:  # Holm over one variable's subgroups, per model and metric
            mine = [r for r in block if r["model"] == name]
            for metric in {m for r in mine for m in r["vs_rest"]}:
                ps = [r["vs_rest"][metric]["p"] if metric in r["vs_rest"] else math.nan for r in mine]
                for r, ph in zip(mine, compare.holm(ps)):
                    if metric in r["vs_rest"]:
                        r["vs_rest"][metric]["p_holm"] = float(ph)
    small = sorted({f"{r['variable']} = {r['subgroup']}" for r in report.rows if r["too_small"]})
    if small:
        report.warnings.append(f"subgroups too small to read (fewer than {SMALL} rows of a class): {', '.join(small)}")
    return report


# ---------------------------------------------------------------------------------------------- external cohorts


@dataclass
class ExternalReport:
    """Internal test vs external cohort per model, calibration and the optional recalibration apart."""

    name: str
    headline: str
    n: int
    class_counts: dict[str, int]
    models: dict[str, dict] = field(default_factory=dict)
    recalibration: dict | None = None  # subset, rows fitted, rows scored, per model before/after
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "headline": self.headline, "n": self.n, "class_counts": self.class_counts,
                "models": self.models, "recalibration": self.recalibration, "warnings": self.warnings}

    def markdown(self) -> str:
        head = self.headline
        label = compare.LABELS.get(head, head)
        binary = any(m.get("calibration") for m in self.models.values())
        out = [f"| Model | Internal {label} | External {label} | Internal sens. / spec. | External sens. / spec. | "
               "Internal Brier | External Brier |", "|---|--:|--:|--:|--:|--:|--:|"]
        for name, m in self.models.items():
            i, e = m["internal"], m["external"]
            ss = [f"{_cell(d.get('sensitivity'), 2)} / {_cell(d.get('specificity'), 2)}" if "sensitivity" in d
                  else "n/a" for d in (i, e)]
            out.append(f"| {name} | {_cell(i.get(head))} | {_cell(e.get(head))} | {ss[0]} | {ss[1]} | "
                       f"{_cell(i.get('brier'))} | {_cell(e.get('brier'))} |")
        text = "\n".join(out) + "\n"
        if binary:
            rows = ["| Model | Internal CITL | External CITL | Internal slope | External slope |", "|---|--:|--:|--:|--:|"]
            for name, m in self.models.items():
                ci, ce = m["calibration"]["internal"], m["calibration"]["external"]
                rows.append(f"| {name} | {_pair(ci, 'citl')} | {_pair(ce, 'citl')} | {_pair(ci, 'slope')} | "
                            f"{_pair(ce, 'slope')} |")
            text += ("\n### Calibration\n\nCalibration-in-the-large (CITL, 0 = right on average, > 0 = risks too "
                     "low) and calibration slope (1 = right spread, < 1 = too extreme) of the risks `predict` gives "
                     "(temperature-scaled on the internal validation split), with 95% Wald intervals.\n\n"
                     + "\n".join(rows) + "\n")
        rec = self.recalibration
        if rec:
            rows = [f"| Model | Brier before | Brier after | CITL before | CITL after | Slope before | Slope after |",
                    "|---|--:|--:|--:|--:|--:|--:|"]
            for name, r in rec["models"].items():
                rows.append(f"| {name} | {_cell(r['before']['brier'])} | {_cell(r['after']['brier'])} | "
                            f"{_pair(r['before']['calibration'], 'citl')} | {_pair(r['after']['calibration'], 'citl')} | "
                            f"{_pair(r['before']['calibration'], 'slope')} | "
                            f"{_pair(r['after']['calibration'], 'slope')} |")
            text += (f"\n### After recalibration on the external subset `{rec['subset']}` (reported apart)\n\n"
                     f"A logistic recalibration (intercept and slope on the logit) fitted on the {rec['fitted_rows']} "
                     f"external rows of split `{rec['subset']}` and scored on the other {rec['scored_rows']} external "
                     "rows; \"before\" is the same rows with the frozen pipeline. Discrimination is unchanged by a "
                     "monotone recalibration.\n\n" + "\n".join(rows) + "\n")
        return text


def _pair(c: dict | None, key: str) -> str:
    if not c or not math.isfinite(c.get(key, math.nan)):
        return "n/a"
    lo, hi = c.get(f"{key}_low", math.nan), c.get(f"{key}_high", math.nan)
    return f"{c[key]:.2f} ({lo:.2f}\u2013{hi:.2f})" if math.isfinite(lo) and math.isfinite(hi) else f"{c[key]:.2f}"


def external_statistics(stats, y_internal, y, preds: dict[str, np.ndarray], *, name: str, headline: str, class_names,
                        recalibrate: np.ndarray | None = None, subset: str | None = None,
                        n_boot: int = bootstrap.DEFAULT_N_BOOT) -> ExternalReport:
    """``preds``: model -> (S, N, K) on the external rows ``y`` (N,); ``recalibrate``: (N,) bool, the named
    subset a logistic recalibration is fitted on (binary risks only)."""
    y = np.asarray(y)
    counts = np.bincount(y.astype(np.int64), minlength=len(class_names))
    report = ExternalReport(name, headline, int(len(y)), {str(c): int(n) for c, n in zip(class_names, counts)})
    report.warnings += splits.split_warnings(y, f"external cohort {name}", len(class_names), class_names)
    if recalibrate is not None and not stats.thresholded:
        raise UserError("--recalibrate-on: a logistic recalibration applies to binary risks; this run's models predict "
                        "several classes")
    for model, p in preds.items():
        ivs, _ = _intervals(stats, model, y, p, f"external cohort {name}", n_boot)
        rec = {"internal": {k: v.to_dict() for k, v in stats.summary.models[model].intervals.items()},
               "external": {k: v.to_dict() for k, v in ivs.items()}, "calibration": None}
        if stats.thresholded:
            cal_ext = _recalibrated(stats, model, p)
            rec["calibration"] = {"internal": calibration.logistic_calibration(y_internal, stats.calibrated[model])
                                  .to_dict(),
                                  "external": calibration.logistic_calibration(y, cal_ext).to_dict(),
                                  "probabilities": "temperature-scaled on the internal validation split, as predict"}
        report.models[model] = rec
    if recalibrate is not None:
        report.recalibration = _recalibration(stats, y, preds, np.asarray(recalibrate, bool), subset, n_boot)
    return report


def _recalibration(stats, y, preds, fit_rows: np.ndarray, subset: str, n_boot: int) -> dict:
    scored = ~fit_rows
    if len(np.unique(y[fit_rows])) < 2 or len(np.unique(y[scored])) < 2:
        raise UserError(f"--recalibrate-on {subset}: needs both classes among the {int(fit_rows.sum())} rows it fits "
                        f"and the {int(scored.sum())} rows it is scored on; choose another external split")
    out = {"subset": subset, "fitted_rows": int(fit_rows.sum()), "scored_rows": int(scored.sum()),
           "method": "logistic recalibration sigmoid(a + b logit p), unpenalised, fitted on the subset", "models": {}}
    for model, p in preds.items():
        cal = _recalibrated(stats, model, p)
        a, b = calibration.fit_logistic_recalibration(y[fit_rows], cal[fit_rows])
        after = calibration.apply_logistic_recalibration(cal[scored], a, b)

        def summary(q):
            ivs = bootstrap.bootstrap_metrics(y[scored], q, n_boot=n_boot)
            return {"brier": ivs["brier"].to_dict(), "ece": ivs["ece"].to_dict(),
                    "calibration": calibration.logistic_calibration(y[scored], q).to_dict()}

        out["models"][model] = {"intercept": a, "slope": b, "before": summary(cal[scored]), "after": summary(after)}
    return out
