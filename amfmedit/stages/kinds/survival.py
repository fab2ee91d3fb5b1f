"""Time to event with right censoring: a Cox model's risk score, trained with the partial likelihood.

The head outputs one number per patient, the log relative hazard ``r`` (higher = earlier event),
trained with the negative Cox partial likelihood with Efron's handling of tied event times
(:func:`amfmedit.models.losses.cox_partial_likelihood_loss`; DeepSurv-style, the risk set of a
batch). Chosen on Harrell's C-index (validation); judged by Harrell's and Uno's C, the
time-dependent AUC and Brier score at the horizons, the integrated Brier score, calibration by risk
group and Kaplan-Meier curves by risk group (:mod:`amfmedit.stages.kinds.survstats`). Survival
probabilities ``S(t | x) = exp(-H0(t) exp(r))`` use the Breslow baseline hazard ``H0`` fitted on the
training split's risk scores (evaluate stores it per stage; predict applies it).

R_conf (Appendix A.4, eq. 3) is C_img / C_tab, as for AUC: both are concordance probabilities
with chance 0.5, and higher is better.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import numpy as np

from amfmedit.data.targets import TimeEventTarget
from amfmedit.errors import UserError
from amfmedit.stages.kinds.base import Metric, PredictionKind, ProbeScore, Weights
from amfmedit.stats import bootstrap
from amfmedit.stats import survival as sv

if TYPE_CHECKING:  # annotations only; the classes load with their heavy modules
    from amfmedit.explain.gradcam import CamCases

PROBE_LEVEL = 0.95
COX_TIES = "efron"  # tied event times in the partial likelihood (losses.COX_TIES)
#: --horizons when the user gives none: the data spec's table.horizons, else these quantiles of the
#: training split's event times (rounded to two significant digits)
HORIZON_QUANTILES = (0.25, 0.5, 0.75)
HORIZONS_DEFAULT = ("the data spec's table.horizons, else the " + "/".join(f"{q:g}" for q in HORIZON_QUANTILES)
                    + " quantiles of the training split's event times")


def parse_horizons(text: str | None) -> list[float] | None:
    """``--horizons 1,2,5`` -> [1.0, 2.0, 5.0] (ascending, distinct); None when not given."""
    if text is None or str(text).strip() == "":
        return None
    try:
        values = sorted({float(x) for x in str(text).split(",") if x.strip()})
    except ValueError:
        raise UserError(f"--horizons {text}: give times separated by commas, e.g. --horizons 1,2,5") from None
    if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
        raise UserError(f"--horizons {text}: times must be positive numbers, e.g. --horizons 1,2,5")
    return values


def _two_digits(x: float) -> float:
    return float(f"{x:.2g}")


def resolve_horizons(requested: str | None, schema, fit_targets: np.ndarray, test_targets: np.ndarray) -> list[float]:
    """The horizons to evaluate: ``--horizons``, else :data:`HORIZONS_DEFAULT`; each must lie inside the
    scored split's follow-up (scikit-survival's IPCW estimators need ``min time <= h < max time``)."""
    given = parse_horizons(requested)
    spec = [float(h) for h in (schema.target.get("horizons") or [])]
    t_test = test_targets[:, 0]
    lo, hi = float(t_test.min()), float(t_test.max())
    unit = schema.target.get("time_unit") or "the time unit"
    if given is not None:
        outside = [h for h in given if not lo <= h < hi]
        if outside:
            raise UserError(f"--horizons {requested}: {outside[0]:g} lies outside the scored split's follow-up "
                            f"[{lo:.3g}, {hi:.3g}) ({unit}); choose horizons inside it")
        return given
    if spec:
        chosen = [h for h in spec if lo <= h < hi]
    else:
        events = fit_targets[fit_targets[:, 1] == 1, 0]
        chosen = sorted({_two_digits(q) for q in np.quantile(events, HORIZON_QUANTILES)} if len(events) else set())
        chosen = [h for h in chosen if lo <= h < hi]
    if not chosen:
        raise UserError(f"no horizon lies inside the scored split's follow-up [{lo:.3g}, {hi:.3g}) ({unit}); pass "
                        "--horizons with times inside it")
    return chosen


class SurvivalKind(PredictionKind):
    """Right-censored time to event (OL3I's 1-, 2-, 5-year outcomes as one time-to-event outcome)."""

    name = "survival"
    title = "time to event (survival)"
    target = TimeEventTarget()
    headline = Metric("c_index", "C-index", "Harrell's C-index")
    pretrain_lr = 3e-4  # Appendix A.2's rate for OL3I, the cohort this kind is for
    fit_split = "train"  # the Breslow baseline hazard is fitted on the training split's risk scores
    cam_output = "raw"

    def check(self, schema, where: str) -> None:
        if schema.target.get("coding") != "time-event":
            raise UserError(f"{where}: a survival task needs a time and an event column; prepare the dataset again "
                            "with table.time and table.event in its spec")

    def head_size(self, schema) -> int:
        return 1

    def targets(self, dataset) -> np.ndarray:
        """(N, 2) float64: time and event (1 = observed, 0 = censored)."""
        return np.column_stack([dataset.targets["time"], dataset.targets["event"]]).astype(np.float64)

    def check_weights(self, weights: Weights, schema) -> None:
        if weights.loss:
            raise UserError(f"--loss-weights {','.join(map(str, weights.loss))}: the Cox partial likelihood has no "
                            "class weights; leave the option out")
        if weights.sampler and (len(weights.sampler) != 2 or min(weights.sampler) < 0 or max(weights.sampler) <= 0):
            raise UserError(f"--sampler-weights {','.join(map(str, weights.sampler))}: a survival task samples by "
                            "event: give two weights (censored, event), >= 0 with one positive")

    def loss(self, weights: Weights) -> Callable:
        """The negative Cox partial likelihood of the batch (Efron ties)."""
        from amfmedit.models import losses

        return lambda output, y: losses.cox_partial_likelihood_loss(output[:, 0], y[:, 0], y[:, 1], ties=COX_TIES)

    def predictions(self, output):
        return output.float()[:, :1]

    def validation_metrics(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        import torch

        from amfmedit.models import losses

        targets = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
        risk = np.asarray(outputs, dtype=np.float64)[:, 0]
        loss = math.nan
        if len(risk) and (targets[:, 1] == 1).any():
            loss = float(losses.cox_partial_likelihood_loss(torch.from_numpy(risk), torch.from_numpy(targets[:, 0]),
                                                            torch.from_numpy(targets[:, 1]), ties=COX_TIES))
        return {"c_index": sv.harrell_c(targets[:, 0], targets[:, 1], risk), "loss": loss}

    def selectable(self, targets: np.ndarray) -> str | None:
        targets = np.asarray(targets).reshape(-1, 2)
        if len(targets) == 0:
            return "is empty"
        if not (targets[:, 1] == 1).any():
            return "has no event"
        return None

    def probe_score(self, outputs: np.ndarray, targets: np.ndarray, seed: int) -> ProbeScore:
        """Harrell's C with a bootstrap interval (resamples stratified by event); chance 0.5."""
        targets = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
        risk = np.asarray(outputs, dtype=np.float64)[:, 0]
        value = sv.harrell_c(targets[:, 0], targets[:, 1], risk)
        event = targets[:, 1] == 1
        if not math.isfinite(value) or event.sum() < 2:
            return ProbeScore(value, None, None, None, None, False, PROBE_LEVEL)
        W = bootstrap.stratified_counts(event.astype(int), bootstrap.DEFAULT_N_BOOT, seed)
        reps = sv.Resampler(targets[:, 0], event, W).replicates(risk, None, ("c_index",))
        iv = bootstrap.intervals_from({"c_index": value}, reps, PROBE_LEVEL)
        c = iv["c_index"]
        return ProbeScore(value, c.low, c.high, "bootstrap", 0.5, bool(c.low > 0.5), PROBE_LEVEL)

    def ratio(self, image: float, tabular: float) -> float:
        """R_conf = C_img / C_tab (higher is better, chance 0.5: as the paper's AUC ratio)."""
        return image / tabular

    # ---------------------------------------------------------------------------- explaining

    def explain_target(self, schema, requested: str | int | None) -> int:
        if requested not in (None, "risk", 0, "0"):
            raise UserError(f"--target {requested}: a survival model has one output, its risk score; leave --target "
                            "out (or pass --target risk)")
        return 0

    def explain_output(self, requested: str) -> str:
        return "logit"  # the risk score itself; a softmax of one output would be 1 everywhere

    def explain_description(self, schema, requested) -> dict:
        self.explain_target(schema, requested)
        return {"target": {"index": 0, "name": "risk score"},
                "target_rule": "the risk score (log relative hazard of the Cox model; higher = earlier event)"}

    def cam_target(self, schema, requested: str | int | None) -> int:
        return self.explain_target(schema, requested)

    def cam_target_name(self, schema, target: int) -> str:
        return "higher risk"

    def cam_cases(self, dataset, n: int, target: int, *, split: str, seed: int) -> CamCases:
        """The ``n`` earliest events and the ``n`` longest event-free follow-ups of ``split``.

        Chosen by the observed outcome, not by a model's predicted risk, so that maps of two models
        (``--compare``) show the same patients, as Fig. 6's positive / negative cases do.
        """
        from amfmedit.explain.gradcam import CamCases

        if n < 1:
            raise UserError(f"--cases {n}: must be at least 1")
        rows = dataset.indices(split)
        time, event = dataset.targets["time"][rows], dataset.targets["event"][rows] == 1
        events, free = rows[event], rows[~event]
        for what, have in (("events", events), ("censored (event-free) patients", free)):
            if n > len(have):
                raise UserError(f"--cases {n}: the {split} split of {dataset.name} has only {len(have)} {what}; use "
                                f"--cases {min(len(events), len(free))} or fewer")
        early = events[np.argsort(time[event], kind="stable")[:n]]
        late = free[np.argsort(-time[~event], kind="stable")[:n]]
        return CamCases(early, late, names=("earliest-events", "longest-event-free"))

    def case_title(self, dataset, row: int, value: float) -> str:
        t, e = dataset.targets["time"][row], dataset.targets["event"][row] == 1
        unit = dataset.schema.target.get("time_unit") or ""
        what = f"event at {t:.3g}{unit[:1]}" if e else f"censored at {t:.3g}{unit[:1]}"
        return f"{dataset.ids[row]} ({what}) risk {value:+.2f}"

    # ---------------------------------------------------------------------------- evaluation

    def statistics(self, y_val, y_test, preds: dict, *, spec: str, split: str, schema, y_fit=None,
                   horizons: str | None = None, **kw):
        if y_fit is None:
            raise ValueError("survival statistics need the training split's targets and predictions (fit_split)")
        from amfmedit.stages.kinds import survstats

        chosen = resolve_horizons(horizons, schema, np.asarray(y_fit), np.asarray(y_test))
        return survstats.compute(y_fit, y_val, y_test, preds, chosen, split=split,
                                 time_unit=schema.target.get("time_unit") or "", **kw)

    def summary_columns(self, schema) -> list[str]:
        return ["events", "censored", "median follow-up"]

    def summary_cells(self, counts: dict) -> list[str]:
        f = counts.get("follow_up") or {}
        med = f.get("median_follow_up")
        return [str(f.get("events", "-")), str(f.get("censored", "-")), "-" if med is None else f"{med:.3g}"]

    # ---------------------------------------------------------------------------- prediction

    def predict_columns(self, raw: np.ndarray, op: dict | None, schema, *, calibration: str,
                        horizons: str | None = None) -> tuple[dict, str | None, list[str]]:
        """The risk score, the survival probability at each horizon (Breslow baseline from the
        stage's evaluation) and the risk group (cut points chosen on validation)."""
        risk = np.asarray(raw, dtype=np.float64)[:, 0]
        cols: dict = {"risk_score": risk}
        warnings = []
        if op is None:
            warnings.append("writing the risk score only: survival probabilities need the baseline hazard evaluate "
                            "fits on the training split")
            return cols, None, warnings
        baseline = sv.Baseline.from_dict(op["baseline"])
        chosen = parse_horizons(horizons) or [float(h) for h in op["horizons"]]
        last = float(baseline.times[-1]) if len(baseline.times) else 0.0
        beyond = [h for h in chosen if h > last]
        if beyond:
            warnings.append(f"horizon {beyond[0]:g} lies beyond the training split's last event time ({last:.3g}): the "
                            "baseline hazard is flat there, so its survival probability is extrapolated")
        s = baseline.survival(risk, chosen)
        for k, h in enumerate(chosen):
            cols[f"surv_{h:g}"] = s[:, k]
        groups = op.get("risk_groups") or {}
        if groups.get("cuts") is not None:
            names = groups["names"]
            cols["risk_group"] = [names[g] for g in sv.risk_groups(risk, groups["cuts"])]
        return cols, None, warnings
