"""A continuous outcome (a risk score, a lab value, a length of stay): one predicted value per patient.

The head outputs the outcome standardised with the training split's mean and SD (kept in
``schema.target``), trained with the mean squared error (:func:`amfmedit.models.losses.regression_loss`);
:meth:`RegressionKind.predictions` maps it back to the outcome's unit, so every stored prediction,
metric and file is in that unit. Chosen on the validation RMSE (lower is better); judged by RMSE,
MAE, R² and the calibration slope and intercept with bootstrap intervals, and a predicted-vs-observed
figure (:mod:`amfmedit.stats.regression`).

R_conf (Appendix A.4, eq. 3) for a lower-is-better metric: R_conf = RMSE_tab / RMSE_img, so that, as
with the paper's AUC_img / AUC_tab, R_conf > 1 means the image probe is the better one and AMF gives
the image the larger share of D_out (eq. 6). Chance for a probe: the RMSE of predicting the training
mean for every row; a probe is informative when its interval's upper end lies below that.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from amfmedit.data.targets import NumericTarget
from amfmedit.errors import UserError
from amfmedit.stages.kinds.base import KindStatistics, Metric, PredictionKind, ProbeScore, Weights
from amfmedit.stats import bootstrap
from amfmedit.stats import regression as rg

if TYPE_CHECKING:  # annotations only; the classes load with their heavy modules
    from amfmedit.explain.gradcam import CamCases
    from amfmedit.stats import compare

PROBE_LEVEL = 0.95
LABELS = {"rmse": "RMSE", "mae": "MAE", "r2": "R²", "calibration_slope": "calibration slope",
          "calibration_intercept": "calibration intercept"}
COMPARED = ("rmse", "mae", "r2")  # the calibration slope's better value is 1, not an end: reported, not ranked
LOWER = ("rmse", "mae")
MIN_ROWS = 10  # fewer scored rows: no comparison between models is read as one


class RegressionKind(PredictionKind):
    """A continuous outcome, predicted in its own unit."""

    name = "regression"
    title = "regression (a continuous outcome)"
    target = NumericTarget()
    headline = Metric("rmse", "RMSE", "RMSE", higher_is_better=False, percent=False)
    pretrain_lr = 3e-4  # Appendix A.2's rate for OL3I-like cohorts

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean, self.std = float(mean), float(std)

    @classmethod
    def for_schema(cls, schema) -> "RegressionKind":
        t = schema.target
        return cls(t.get("mean", 0.0), t.get("std", 1.0) or 1.0)

    def check(self, schema, where: str) -> None:
        if schema.target.get("coding") != "numeric":
            raise UserError(f"{where}: a regression task needs a numeric outcome; prepare the dataset again with "
                            "task = \"regression\"")

    def head_size(self, schema) -> int:
        return 1

    def targets(self, dataset) -> np.ndarray:
        return np.asarray(dataset.targets["target"], dtype=np.float64)

    def check_weights(self, weights: Weights, schema) -> None:
        for option, w in (("--sampler-weights", weights.sampler), ("--loss-weights", weights.loss)):
            if w:
                raise UserError(f"{option} {','.join(map(str, w))}: a regression task has no classes to weigh; leave "
                                "the option out")

    def loss(self, weights: Weights) -> Callable:
        """Mean squared error of the standardised outcome."""
        from amfmedit.models import losses

        return lambda output, y: losses.regression_loss(output[:, 0], (y - self.mean) / self.std)

    def predictions(self, output):
        return output.float()[:, :1] * self.std + self.mean

    def validation_metrics(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        pred = np.asarray(outputs, dtype=np.float64)[:, 0]
        y = np.asarray(targets, dtype=np.float64)
        m = rg.point_metrics(y, pred)
        loss = float(np.mean(((pred - y) / self.std) ** 2)) if len(y) else math.nan
        return {"rmse": m["rmse"], "mae": m["mae"], "r2": m["r2"], "loss": loss}

    def selectable(self, targets: np.ndarray) -> str | None:
        if len(targets) < 2:
            return "holds fewer than two rows"
        return None

    def chance(self, targets: np.ndarray) -> float:
        """The RMSE of predicting the training mean for every row."""
        y = np.asarray(targets, dtype=np.float64)
        return float(np.sqrt(np.mean((y - self.mean) ** 2)))

    def probe_score(self, outputs: np.ndarray, targets: np.ndarray, seed: int) -> ProbeScore:
        """The probe's RMSE with a bootstrap interval; chance: the RMSE of the training mean."""
        y = np.asarray(targets, dtype=np.float64)
        pred = np.asarray(outputs, dtype=np.float64)[:, 0]
        value = rg.point_metrics(y, pred)["rmse"]
        if len(y) < 2:
            return ProbeScore(value, None, None, None, None, False, PROBE_LEVEL)
        W = bootstrap.stratified_counts(np.zeros(len(y), int), bootstrap.DEFAULT_N_BOOT, seed)
        iv = bootstrap.intervals_from({"rmse": value}, {"rmse": rg.replicates(y, pred, W)["rmse"]}, PROBE_LEVEL)["rmse"]
        chance = self.chance(y)
        return ProbeScore(value, iv.low, iv.high, "bootstrap", chance, bool(iv.high < chance), PROBE_LEVEL)

    def ratio(self, image: float, tabular: float) -> float:
        """R_conf = RMSE_tab / RMSE_img: > 1 when the image probe errs less (see the module docstring)."""
        return tabular / image

    # ---------------------------------------------------------------------------- explaining

    def explain_target(self, schema, requested: str | int | None) -> int:
        if requested not in (None, "value", 0, "0"):
            raise UserError(f"--target {requested}: a regression model has one output, the predicted value; leave "
                            "--target out")
        return 0

    def explain_output(self, requested: str) -> str:
        return "logit"  # the standardised prediction itself

    def explain_description(self, schema, requested) -> dict:
        self.explain_target(schema, requested)
        return {"target": {"index": 0, "name": "predicted value"},
                "target_rule": "the prediction in SDs of the outcome (standardised with the training split's mean and SD)"}

    def cam_target(self, schema, requested) -> int:
        return self.explain_target(schema, requested)

    def cam_target_name(self, schema, target: int) -> str:
        return "higher values"

    def cam_cases(self, dataset, n: int, target: int, *, split: str, seed: int) -> CamCases:
        """The ``n`` highest and ``n`` lowest observed outcomes of ``split``."""
        if n < 1:
            raise UserError(f"--cases {n}: must be at least 1")
        rows = dataset.indices(split)
        if 2 * n > len(rows):
            raise UserError(f"--cases {n}: the {split} split of {dataset.name} has {len(rows)} rows; use --cases "
                            f"{len(rows) // 2} or fewer")
        order = rows[np.argsort(dataset.targets["target"][rows], kind="stable")]
        from amfmedit.explain.gradcam import CamCases

        return CamCases(order[::-1][:n], order[:n], names=("highest", "lowest"))

    def case_title(self, dataset, row: int, value: float) -> str:
        return (f"{dataset.ids[row]} (observed {dataset.targets['target'][row]:.3g}) "
                f"pred {value * self.std + self.mean:.3g}")

    # ---------------------------------------------------------------------------- evaluation

    def statistics(self, y_val, y_test, preds: dict, *, spec: str, split: str, schema, y_fit=None, horizons=None,
                   **kw):
        return compute(y_test, preds, split=split, unit=schema.target.get("source") or "", **kw)

    def summary_columns(self, schema) -> list[str]:
        return ["mean", "SD"]

    def summary_cells(self, counts: dict) -> list[str]:
        o = counts.get("outcome") or {}
        return [f"{o.get('mean', math.nan):.3g}", f"{o.get('sd', math.nan):.3g}"]

    def predict_columns(self, raw: np.ndarray, op: dict | None, schema, *, calibration: str,
                        horizons: str | None = None) -> tuple[dict, str | None, list[str]]:
        notes = ["no evaluation record; the prediction needs none"] if op is None else []
        if horizons:
            notes.append(f"--horizons {horizons}: a regression model has no time horizons; ignored")
        return {f"predicted_{schema.target.get('source') or 'value'}": np.asarray(raw, dtype=np.float64)[:, 0]}, \
            None, notes


# ------------------------------------------------------------------------------------------------- statistics


@dataclass
class Summary:
    comparisons: compare.ComparisonTable | None
    skipped: tuple[str, ...] = ()


@dataclass
class RegressionStatistics(KindStatistics):
    split: str
    unit: str
    y: np.ndarray
    averaged: dict[str, np.ndarray]  # seed-averaged predictions of the scored split
    intervals: dict[str, dict[str, bootstrap.Interval]]
    seed_values: dict[str, list[dict[str, float]]]
    summary: Summary
    warnings: list[str] = field(default_factory=list)

    def model_record(self, name: str) -> dict:
        seeds = self.seed_values[name]
        out = {"title": name, "intervals": {k: v.to_dict() for k, v in self.intervals[name].items()}}
        out["seed_mean"] = {k: float(np.mean([s[k] for s in seeds])) for k in rg.METRICS}
        out["seed_std"] = {k: float(np.std([s[k] for s in seeds], ddof=1)) if len(seeds) > 1 else 0.0
                           for k in rg.METRICS}
        return out

    def stage_record(self, name: str, i: int, preds: np.ndarray, targets: np.ndarray) -> dict:
        v = self.seed_values[name][i]
        return {"calibration_slope": v["calibration_slope"], "calibration_intercept": v["calibration_intercept"]}

    def operating_record(self, name: str, i: int) -> dict:
        return {}

    def operating_header(self, class_names) -> dict:
        return {"note": "a regression model's prediction needs no operating point or recalibration"}

    def prediction_columns(self, name: str, i: int, preds: np.ndarray, class_names) -> dict[str, np.ndarray]:
        return {"predicted": np.asarray(preds, dtype=np.float64)[:, 0]}

    def target_columns(self, targets: np.ndarray) -> dict[str, np.ndarray]:
        return {"observed": np.asarray(targets, dtype=np.float64)}

    def stage_keys(self) -> list[str]:
        return ["calibration_slope"]

    def stage_columns(self) -> list[str]:
        return ["R²", "Cal. slope"]

    def stage_cell(self, row: dict) -> str:
        return f"{_f(row.get('r2'))} | {_f(row.get('calibration_slope'))}"

    def markdown(self) -> str:
        where = _split_word(self.split)
        parts = [f"\n## {where.capitalize()} metrics with 95% intervals\n\n",
                 f"Each metric of the seed-averaged prediction (mean over seeds) on {len(self.y)} {where} rows, with "
                 "a 95% percentile interval from 2,000 bootstrap resamples of the rows; calibration slope and "
                 "intercept from least squares of the observed on the predicted values (1 and 0 when calibrated).\n\n",
                 self._table()]
        if self.warnings:
            parts.append("\n" + "".join(f"- Warning: {w}\n" for w in self.warnings))
        table = self.summary.comparisons
        if table is not None:
            rows = [r for r in table.rows if r.metric == table.headline]
            parts.append("\n## Paired comparisons (RMSE)\n\n" + (f"**{table.note}**\n\n" if table.note else "")
                         + "| A | B | A - B (95% CI) | p (Holm) | verdict |\n|---|---|---|--:|---|\n"
                         + "".join(f"| {r.a} | {r.b} | {r.diff:+.3g} ({r.low:+.3g} to {r.high:+.3g}) | "
                                   f"{_p(r.p_holm)} | {r.verdict} |\n" for r in rows)
                         + "\nEvery metric: [comparisons.md](comparisons.md), [comparisons.csv](comparisons.csv).\n")
        return "".join(parts)

    def _table(self) -> str:
        head = ["Model", "RMSE over seeds"] + [LABELS[k] for k in rg.METRICS]
        lines = ["| " + " | ".join(head) + " |", "|---|" + "--:|" * (len(head) - 1)]
        for name, ivs in self.intervals.items():
            vals = [s["rmse"] for s in self.seed_values[name]]
            sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            lines.append(f"| {name} | {np.mean(vals):.3g} ± {sd:.2g} (n={len(vals)}) | "
                         + " | ".join(ivs[k].text(3) for k in rg.METRICS) + " |")
        return "\n".join(lines) + "\n"

    def terminal(self) -> str:
        where = _split_word(self.split)
        lines = [f"\n## {where.capitalize()} split, seed-averaged, 95% intervals\n\n",
                 "| Model | RMSE (95% CI) | R² | Cal. slope |\n|---|--:|--:|--:|\n"]
        for name, ivs in self.intervals.items():
            lines.append(f"| {name} | {ivs['rmse'].text(3)} | {ivs['r2'].text(2)} | "
                         f"{ivs['calibration_slope'].text(2)} |\n")
        table = self.summary.comparisons
        if table is not None and table.note:
            lines.append(f"\n**{table.note}**\n")
        return "".join(lines)

    def write_figures(self, folder: Path, y_test, seed_outputs: dict) -> dict[str, str]:
        from amfmedit.stats.outcome_plots import predicted_observed_figure

        predicted_observed_figure(self.y, self.averaged, folder / "predicted_vs_observed.png",
                                  title=f"Predicted vs observed, {_split_word(self.split)} split (seed-averaged)",
                                  unit=self.unit)
        return {"predicted-vs-observed": "predicted_vs_observed.png"}

    def figures_markdown(self, figures: dict[str, str]) -> str:
        if not figures:
            return ""
        return "\n## Figures\n\n" + ", ".join(f"[{k.replace('-', ' ')}]({v})" for k, v in figures.items()) + ".\n"


def _split_word(split: str) -> str:
    return {"val": "validation", "test": "test"}.get(split, split)


def _f(v) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _p(p) -> str:
    return "n/a" if p is None or not math.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"


def compute(y_test, preds: dict, *, split: str = "test", unit: str = "", n_boot: int = bootstrap.DEFAULT_N_BOOT,
            seed: int = 0, level: float = 0.95) -> RegressionStatistics:
    """Intervals (plain bootstrap of the rows), spread over seeds and paired comparisons of every model."""
    y = np.asarray(y_test, dtype=np.float64)
    W = bootstrap.stratified_counts(np.zeros(len(y), int), n_boot, seed)  # one stratum: a plain bootstrap
    averaged, intervals, seeds, points, reps = {}, {}, {}, {}, {}
    for name, pr in preds.items():
        test = np.asarray(pr.test, dtype=np.float64)[..., 0]
        seeds[name] = [rg.point_metrics(y, p) for p in test]
        averaged[name] = test.mean(axis=0)
        points[name] = rg.point_metrics(y, averaged[name])
        reps[name] = rg.replicates(y, averaged[name], W)
        intervals[name] = bootstrap.intervals_from(points[name], reps[name], level)
    warnings = []
    if len(y) < MIN_ROWS:
        warnings.append(f"{_split_word(split)} split: only {len(y)} rows (fewer than {MIN_ROWS}); intervals will be "
                        "wide and differences between models are unlikely to be resolved")
    table = None
    if len(preds) > 1:
        from amfmedit.stats import compare

        table = compare.compare_replicates(list(preds), points, reps, COMPARED, headline="rmse", n=len(y),
                                           counts={0: len(y)}, few_events=len(y) < MIN_ROWS,
                                           labels={k: LABELS[k] for k in COMPARED}, lower_is_better=LOWER,
                                           count_names={0: "rows"}, level=level,
                                           max_width=compare.MAX_DIFF_WIDTH * float(np.std(y)))
        table.warnings = list(warnings)
    return RegressionStatistics(split, unit, y, averaged, intervals, seeds, Summary(table), warnings)
