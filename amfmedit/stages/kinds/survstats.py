"""What ``evaluate`` reports for survival models, from arrays alone (:class:`SurvivalStatistics`).

Input per model (display name): its risk scores on the training, validation and test splits,
one array per seed. Each seed's survival curves use the Breslow baseline hazard fitted on its
training-split risk scores; the seed-averaged model (mean risk score over seeds; a Cox risk is
defined up to a constant, which its own baseline absorbs) is what the interval tables report.

- every metric of :mod:`amfmedit.stats.survival` with a 95% percentile interval from 2,000
  resamples of the test rows stratified by event (the IPCW censoring estimate and the baseline
  stay the training split's), and the spread over seeds;
- calibration at each horizon: mean predicted P(event by t) against 1 - Kaplan-Meier by risk
  decile, with the observed value's interval;
- Kaplan-Meier curves of three risk groups whose cut points are the tertiles of the validation
  risk scores (chosen on validation, applied to test, as a classifier's threshold), with the
  log-rank test across them;
- paired comparisons of every pair of models (paired bootstrap on the same resamples, Holm).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from amfmedit.data.targets import median_follow_up
from amfmedit.errors import UserError
from amfmedit.stages.kinds.base import KindStatistics
from amfmedit.stats import bootstrap, compare, splits
from amfmedit.stats import survival as sv
from amfmedit.stats.outcome_plots import km_figure, survival_calibration_figure

GROUP_NAMES = ("low risk", "intermediate risk", "high risk")
LABELS = {"c_index": "Harrell's C", "c_uno": "Uno's C", "ibs": "integrated Brier score"}


def label(metric: str) -> str:
    if metric.startswith("auc@"):
        return f"AUC({metric[4:]})"
    if metric.startswith("brier@"):
        return f"Brier({metric[6:]})"
    return LABELS.get(metric, metric)


def lower_is_better(metric: str) -> bool:
    return metric == "ibs" or metric.startswith("brier@")


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"


@dataclass
class ModelStats:
    """One model (a group of seeds)."""

    baselines: list[sv.Baseline]  # per seed, fitted on its training-split risk scores
    cuts: list[list[float]]  # per seed, risk-group cut points from its validation risk scores
    averaged: np.ndarray  # (N,) seed-averaged test risk
    baseline: sv.Baseline  # of the seed-averaged risk
    group_cuts: list[float]
    intervals: dict[str, bootstrap.Interval]
    seed_values: list[dict[str, float]]
    calibration: list[sv.GroupCalibration]
    groups: np.ndarray  # (N,) risk group of each test row
    logrank: tuple[float, float, int]


@dataclass
class Summary:
    comparisons: compare.ComparisonTable | None
    skipped: tuple[str, ...] = ()


@dataclass
class SurvivalStatistics(KindStatistics):
    split: str
    horizons: list[float]
    time_unit: str
    time: np.ndarray  # the scored split's times and events
    event: np.ndarray
    models: dict[str, ModelStats]
    summary: Summary
    keys: list[str]
    warnings: list[str] = field(default_factory=list)

    # ---------------------------------------------------------------------------- records

    def model_record(self, name: str) -> dict:
        m = self.models[name]
        seeds = {k: [s[k] for s in m.seed_values] for k in self.keys}
        finite = {k: [v for v in vs if math.isfinite(v)] for k, vs in seeds.items()}
        return {
            "title": name, "horizons": self.horizons, "time_unit": self.time_unit,
            "seed_mean": {k: float(np.mean(v)) if v else math.nan for k, v in finite.items()},
            "seed_std": {k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for k, v in finite.items()},
            "intervals": {k: v.to_dict() for k, v in m.intervals.items()},
            "calibration": {f"{c.horizon:g}": {"predicted": c.predicted.tolist(), "observed": c.observed.tolist(),
                                               "low": c.low.tolist(), "high": c.high.tolist(),
                                               "counts": c.counts.tolist(), "mean_abs_error": c.mean_abs_error}
                            for c in m.calibration},
            "risk_groups": {"cuts": m.group_cuts, "chosen_on": "val", "names": list(GROUP_NAMES),
                            "rows": [int((m.groups == k).sum()) for k in range(len(GROUP_NAMES))],
                            "events": [int(self.event[m.groups == k].sum()) for k in range(len(GROUP_NAMES))],
                            "logrank": {"chi2": m.logrank[0], "p": m.logrank[1], "df": m.logrank[2]}},
        }

    def stage_record(self, name: str, i: int, preds: np.ndarray, targets: np.ndarray) -> dict:
        values = self.models[name].seed_values[i]
        return {k: v for k, v in values.items() if k != "c_index"}

    def operating_record(self, name: str, i: int) -> dict:
        m = self.models[name]
        return {"baseline": m.baselines[i].to_dict(), "horizons": self.horizons, "time_unit": self.time_unit,
                "risk_groups": {"cuts": m.cuts[i], "names": list(GROUP_NAMES)}}

    def operating_header(self, class_names) -> dict:
        return {"horizons": self.horizons, "time_unit": self.time_unit, "chosen_on": "train (baseline), val (groups)",
                "note": "S(t | x) = exp(-H0(t) exp(risk_score)), H0 the Breslow baseline cumulative hazard (a step "
                        "function at 'times') fitted on the training split's risk scores of that stage; risk groups "
                        "cut at the tertiles of its validation risk scores"}

    def prediction_columns(self, name: str, i: int, preds: np.ndarray, class_names) -> dict[str, np.ndarray]:
        m = self.models[name]
        risk = np.asarray(preds, dtype=np.float64)[:, 0]
        cols = {"risk_score": risk}
        s = m.baselines[i].survival(risk, self.horizons)
        for k, h in enumerate(self.horizons):
            cols[f"surv_{h:g}"] = s[:, k]
        cols["risk_group"] = np.array([GROUP_NAMES[g] for g in sv.risk_groups(risk, m.cuts[i])], dtype=object)
        return cols

    def target_columns(self, targets: np.ndarray) -> dict[str, np.ndarray]:
        t = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
        return {"time": t[:, 0], "event": t[:, 1].astype(int)}

    def stage_keys(self) -> list[str]:
        return ["c_uno", "ibs"]

    def stage_columns(self) -> list[str]:
        return ["Uno's C", "IBS"]

    def stage_cell(self, row: dict) -> str:
        return f"{_f(row.get('c_uno'))} | {_f(row.get('ibs'))}"

    # ---------------------------------------------------------------------------- reports

    def _follow_up(self) -> str:
        e = self.event.astype(bool)
        med = median_follow_up(self.time, e)  # the one definition, prepare's
        unit = f" {self.time_unit}" if self.time_unit else ""
        return (f"{len(e)} rows, {int(e.sum())} events, {int((~e).sum())} censored, median follow-up "
                f"{'n/a' if med is None else f'{med:.3g}'}{unit} (reverse Kaplan-Meier)")

    def markdown(self) -> str:
        where = split_word(self.split)
        unit = f" {self.time_unit}" if self.time_unit else ""
        hz = ", ".join(f"{h:g}" for h in self.horizons)
        aucs = [f"auc@{h:g}" for h in self.horizons]
        briers = [f"brier@{h:g}" for h in self.horizons]
        parts = [f"\n## {where.capitalize()} metrics with 95% intervals\n\n",
                 f"The {where} split: {self._follow_up()}. Horizons: {hz}{unit}. Each metric of the seed-averaged "
                 "risk score (mean over seeds) with a 95% percentile interval from 2,000 resamples of the rows "
                 "stratified by event (IPCW weights and the Breslow baseline from the training split); \"over "
                 f"seeds\" is the mean ± SD of the per-seed C-index. Uno's C is truncated at {self.horizons[-1]:g}"
                 f"{unit}; the time-dependent AUC is cumulative/dynamic (cases: events by t; controls: event-free "
                 "after t; patients censored before t are neither).\n\n",
                 self._table(["c_index", "c_uno", *aucs, "ibs"], seeds=True), "\n", self._table(briers)]
        if self.warnings:
            parts.append("\n" + "".join(f"- Warning: {w}\n" for w in self.warnings))
        parts.append("\n## Calibration at the horizons\n\nMean predicted P(event by t) against 1 - Kaplan-Meier by "
                     "risk decile of the seed-averaged model: the row-weighted mean |predicted - observed| (figures "
                     "with each decile and its interval under calibration/).\n\n")
        lines = ["| Model | " + " | ".join(f"t = {h:g}" for h in self.horizons) + " |",
                 "|---|" + "--:|" * len(self.horizons)]
        for name, m in self.models.items():
            lines.append(f"| {name} | " + " | ".join(f"{c.mean_abs_error:.3f}" for c in m.calibration) + " |")
        parts.append("\n".join(lines) + "\n")
        parts.append("\n## Kaplan-Meier curves by risk group\n\nGroups cut at the tertiles of the validation risk "
                     f"scores, applied to the {where} split; log-rank test across the groups.\n\n")
        lines = ["| Model | " + " | ".join(f"{g} (n / events)" for g in GROUP_NAMES) + " | log-rank chi2 | p |",
                 "|---|" + "--:|" * (len(GROUP_NAMES) + 2)]
        for name, m in self.models.items():
            cells = [f"{int((m.groups == k).sum())} / {int(self.event[m.groups == k].sum())}"
                     for k in range(len(GROUP_NAMES))]
            chi, p, _ = m.logrank
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {_f(chi, 1)} | {_p(p)} |")
        parts.append("\n".join(lines) + "\n")
        table = self.summary.comparisons
        if table is not None:
            rows = [r for r in table.rows if r.metric == table.headline]
            parts.append(f"\n## Paired comparisons ({table.label(table.headline)})\n\n"
                         + (f"**{table.note}**\n\n" if table.note else "")
                         + "| A | B | A - B (95% CI) | p (Holm) | verdict |\n|---|---|---|--:|---|\n"
                         + "".join(f"| {r.a} | {r.b} | {r.diff:+.3f} ({r.low:+.3f} to {r.high:+.3f}) | {_p(r.p_holm)} "
                                   f"| {r.verdict} |\n" for r in rows)
                         + "\nEvery metric: [comparisons.md](comparisons.md), [comparisons.csv](comparisons.csv).\n")
        return "".join(parts)

    def _table(self, keys: list[str], seeds: bool = False) -> str:
        head = ["Model"] + (["C-index over seeds"] if seeds else []) + [label(k) for k in keys]
        lines = ["| " + " | ".join(head) + " |", "|---|" + "--:|" * (len(head) - 1)]
        for name, m in self.models.items():
            cells = [name]
            if seeds:
                vals = [s["c_index"] for s in m.seed_values if math.isfinite(s["c_index"])]
                sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
                cells.append(f"{np.mean(vals):.3f} ± {sd:.3f} (n={len(m.seed_values)})" if vals else "n/a")
            cells += [m.intervals[k].text(3) if k in m.intervals else "n/a" for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def terminal(self) -> str:
        where = split_word(self.split)
        hz = ",".join(f"{h:g}" for h in self.horizons)
        lines = [f"\n## {where.capitalize()} split, seed-averaged, 95% intervals (horizons {hz}"
                 f"{' ' + self.time_unit if self.time_unit else ''})\n\n{self._follow_up()}.\n\n",
                 "| Model | C-index (95% CI) | Uno's C | IBS |\n|---|--:|--:|--:|\n"]
        for name, m in self.models.items():
            iv = m.intervals
            lines.append(f"| {name} | {iv['c_index'].text(3)} | {iv['c_uno'].text(2)} | {iv['ibs'].text(3)} |\n")
        table = self.summary.comparisons
        if table is not None and table.note:
            lines.append(f"\n**{table.note}**\n")
        return "".join(lines)

    def write_figures(self, folder: Path, y_test, seed_outputs: dict) -> dict[str, str]:
        out = {}
        used: set[str] = set()
        for name, m in self.models.items():
            stem = slug(name)
            while stem in used:
                stem += "-2"
            used.add(stem)
            km_figure(self.time, self.event, m.groups, list(GROUP_NAMES), folder / "km" / f"{stem}.png",
                      title=f"{name}: Kaplan-Meier by risk group ({split_word(self.split)})", logrank=m.logrank,
                      time_unit=self.time_unit)
            out[f"km:{name}"] = f"km/{stem}.png"
            survival_calibration_figure(m.calibration, folder / "calibration" / f"{stem}.png",
                                        title=f"{name}: calibration by risk decile ({split_word(self.split)})",
                                        time_unit=self.time_unit)
            out[f"calibration:{name}"] = f"calibration/{stem}.png"
        return out

    def figures_markdown(self, figures: dict[str, str]) -> str:
        km = [f"[{k.split(':', 1)[1]}]({v})" for k, v in figures.items() if k.startswith("km:")]
        cal = [f"[{k.split(':', 1)[1]}]({v})" for k, v in figures.items() if k.startswith("calibration:")]
        if not (km or cal):
            return ""
        return ("\n## Figures\n\nKaplan-Meier curves by risk group: " + ", ".join(km) + ".\n\n"
                "Calibration at the horizons: " + ", ".join(cal) + ".\n")


def split_word(split: str) -> str:
    return {"val": "validation", "test": "test"}.get(split, split)


def _f(v, digits: int = 3) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _p(p) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def compute(y_fit, y_val, y_test, preds: dict, horizons: list[float], *, split: str = "test", time_unit: str = "",
            n_boot: int = bootstrap.DEFAULT_N_BOOT, seed: int = 0, level: float = 0.95) -> SurvivalStatistics:
    """Every model's survival statistics (see the module docstring).

    ``y_*``: (N, 2) time and event of the training, validation and scored splits; ``preds``: name ->
    ``ModelPredictions`` with ``fit`` (training), ``val`` and ``test`` risk scores, (S, N, 1) each.
    """
    y_fit, y_val, y_test = (np.asarray(y, dtype=np.float64).reshape(-1, 2) for y in (y_fit, y_val, y_test))
    t, e = y_test[:, 0], y_test[:, 1] == 1
    train = sv.surv(y_fit[:, 0], y_fit[:, 1] == 1)
    warnings = []
    for what, y in (("validation", y_val), (split_word(split), y_test)):
        n_events = int((y[:, 1] == 1).sum())
        if n_events < splits.MIN_EVENTS:
            warnings.append(f"{what} split: only {n_events} events (fewer than {splits.MIN_EVENTS}); intervals will "
                            "be wide and differences between models are unlikely to be resolved")
    W = bootstrap.stratified_counts(e.astype(int), n_boot, seed)
    resampler = sv.Resampler(t, e, W, train=train, horizons=horizons)
    keys = sv.metric_keys(horizons)
    models, points, reps = {}, {}, {}
    try:
        for name, pr in preds.items():
            fit, val, test = (np.asarray(a, dtype=np.float64)[..., 0] for a in (pr.fit, pr.val, pr.test))
            baselines = [sv.breslow(f, y_fit[:, 0], y_fit[:, 1]) for f in fit]
            cuts = [sv.group_cuts(v, len(GROUP_NAMES)) for v in val]
            seed_values = [sv.point_metrics(train, t, e, r, horizons, b, grid=resampler.grid)
                           for r, b in zip(test, baselines)]
            averaged = test.mean(axis=0)
            baseline = sv.breslow(fit.mean(axis=0), y_fit[:, 0], y_fit[:, 1])
            points[name] = sv.point_metrics(train, t, e, averaged, horizons, baseline, grid=resampler.grid)
            reps[name] = resampler.replicates(averaged, baseline)
            group_cuts = sv.group_cuts(val.mean(axis=0), len(GROUP_NAMES))
            groups = sv.risk_groups(averaged, group_cuts)
            models[name] = ModelStats(
                baselines, cuts, averaged, baseline, group_cuts,
                bootstrap.intervals_from(points[name], reps[name], level), seed_values,
                sv.calibration_by_group(t, e, baseline.survival(averaged, horizons), horizons),
                groups, sv.logrank(t, e, groups))
    except ValueError as exc:  # scikit-survival's IPCW: e.g. a censoring curve that reaches 0 before a test time
        raise UserError(f"survival metrics on the {split_word(split)} split: {exc}; the training split's follow-up "
                        "must cover the scored split's (choose --horizons inside both)") from None
    table = None
    if len(preds) > 1:
        names = list(preds)
        compared = ["c_index", "c_uno", *(f"auc@{h:g}" for h in horizons), "ibs"]
        table = compare.compare_replicates(
            names, points, reps, compared, headline="c_index", n=len(t),
            counts={0: int((~e).sum()), 1: int(e.sum())}, few_events=int(e.sum()) < splits.MIN_EVENTS,
            labels={k: label(k) for k in compared}, lower_is_better=tuple(k for k in compared if lower_is_better(k)),
            count_names={0: "censored", 1: "events"}, level=level)
        table.warnings = list(warnings)
    return SurvivalStatistics(split, list(horizons), time_unit, t, e.astype(int), models, Summary(table), keys,
                              warnings)
