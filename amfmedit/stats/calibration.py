"""Calibration: Brier score, ECE, reliability-diagram data and post-hoc temperature scaling.

- Brier score (Brier 1950): binary ``mean_i (p_i - y_i)^2``; multiclass
  ``mean_i sum_k (p_ik - [y_i = k])^2`` (scikit-learn's ``brier_score_loss``).
- ECE: top-label expected calibration error over 15 equal-width confidence bins, the
  definition of ``amfmedit.train.metrics.expected_calibration_error`` (Guo et al. 2017, eq. 3).
- Reliability diagram: for binary predictions, the predicted probability of class 1 against
  the observed share of class 1 per bin (what a clinician reads as "of the patients given 30%,
  how many had the event"); for multiclass, top-label confidence against accuracy (the ECE's
  bins). Both use 15 equal-width bins on [0, 1].
- Temperature scaling (Guo et al. 2017, "On calibration of modern neural networks", ICML,
  sec. 4.2): ``softmax(z / T)``, one scalar ``T > 0`` fitted on validation only by minimising
  the negative log-likelihood over ``log T`` on a bounded interval. Dividing logits by a
  positive constant keeps the arg-max (top-1 accuracy) and, for binary models, the ranking
  of the rows, hence the AUC. Multiclass one-vs-rest AUCs can move slightly: the softmax
  of ``z / T`` may reorder rows within one class's column.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special

from amfmedit.stats import weighted

N_BINS = weighted.N_BINS
T_BOUNDS = (0.05, 20.0)
BIAS_BOUND = 20.0  # |b| of the binary recalibration, in log-odds


def brier(y, p) -> float:
    """Brier score; ``p`` (N,) probability of class 1 for 0/1 ``y``, or (N, K) for int ``y``."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if p.ndim == 1:
        return float(np.mean((p - y) ** 2))
    return float(np.mean(((p - np.eye(p.shape[1])[y]) ** 2).sum(axis=1)))


def ece(y, p, n_bins: int = N_BINS) -> float:
    """Top-label ECE; ``p`` (N,) probability of class 1 (read as ``[1 - p, p]``) or (N, K)."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return math.nan
    ones = np.ones((1, len(y)))
    if p.ndim == 1:
        conf, correct = weighted.binary_top_label(p, y.astype(bool))
    else:
        conf, correct = p.max(axis=1), p.argmax(axis=1) == y
    return float(weighted.ece(conf, correct, ones, n_bins)[0])


@dataclass(frozen=True)
class Reliability:
    """Reliability-diagram data, per bin (n_bins,): mean predicted, observed frequency, count."""

    edges: np.ndarray  # (n_bins + 1,)
    mean_predicted: np.ndarray  # NaN in empty bins
    observed: np.ndarray  # NaN in empty bins
    counts: np.ndarray  # int
    kind: str  # "positive class" or "top label"

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}


def reliability(y, p, n_bins: int = N_BINS) -> Reliability:
    """Reliability-diagram data.

    Args:
        y: (N,) labels; p: (N,) or (N, 2) binary probabilities (class-1 probability binned),
            or (N, K > 2) multiclass (top-label confidence binned, accuracy observed).
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if p.ndim == 2 and p.shape[1] == 2:
        p = p[:, 1]
    if p.ndim == 1:
        x, hit, kind = p, (y == 1).astype(np.float64), "positive class"
    else:
        x, hit, kind = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64), "top label"
    bins = np.minimum((x * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(bins, weights=x, minlength=n_bins) / counts
        observed = np.bincount(bins, weights=hit, minlength=n_bins) / counts
    return Reliability(np.linspace(0.0, 1.0, n_bins + 1), mean_pred, observed, counts, kind)


def _as_logits(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim not in (1, 2):
        raise ValueError(f"logits must be (N,) or (N, K), got shape {z.shape}")
    return z


def _scaled(z: np.ndarray, temperature: float, bias: float) -> np.ndarray:
    """``z / T``, with ``bias`` added to the positive class's logit of a binary model ((N,) or (N, 2))."""
    z = z / temperature
    if bias:
        if z.ndim == 1:
            z = z + bias
        elif z.shape[1] == 2:
            z = z.copy()
            z[:, 1] += bias
        else:
            raise ValueError("a bias applies to binary models only")
    return z


def nll(logits, y, temperature: float = 1.0, bias: float = 0.0) -> float:
    """Mean negative log-likelihood of ``y`` under ``logits / temperature`` (+ ``bias`` for binary models).

    ``logits``: (N,) one logit per row (class 1 vs 0, sigmoid) or (N, K) (softmax; K = 2 is
    a binary model stored as two logits).
    """
    z = _scaled(_as_logits(logits), temperature, bias)
    y = np.asarray(y, dtype=np.int64)
    if z.ndim == 1:
        return float(-np.mean(np.where(y == 1, special.log_expit(z), special.log_expit(-z))))
    return float(-np.mean(special.log_softmax(z, axis=1)[np.arange(len(y)), y]))


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature (and, for binary models, a bias) and the validation NLL before and after."""

    temperature: float
    nll_before: float
    nll_after: float
    n: int
    bias: float = 0.0  # added to the positive class's log-odds after dividing by the temperature

    def to_dict(self) -> dict:
        return asdict(self)


def fit_temperature(logits, y, bounds: tuple[float, float] = T_BOUNDS, *,
                    with_bias: bool | None = None) -> TemperatureFit:
    """Fit ``T`` on validation ``logits`` (N,) or (N, K) and labels ``y`` (N,) by minimising NLL over log T.

    ``with_bias`` (default: for binary models) also fits a bias ``b`` on the positive class's
    log-odds, ``sigmoid((z1 - z0) / T + b)``: Platt's logistic recalibration. One temperature can
    only sharpen or flatten probabilities; a class-balanced sampler (Appendix A.3: ×0.5 / ×5)
    shifts every log-odds by about log(10), which only a bias undoes. Both are monotone, so AUC
    and the ranking are unchanged.
    """
    z = _as_logits(logits)
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        raise ValueError("temperature scaling needs validation rows")
    binary = z.ndim == 1 or z.shape[1] == 2
    with_bias = binary if with_bias is None else with_bias
    if with_bias and not binary:
        raise ValueError("a bias applies to binary models only")
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    res = optimize.minimize_scalar(lambda log_t: nll(z, y, math.exp(log_t)), method="bounded",
                                   bounds=(lo, hi), options={"xatol": 1e-6})
    before = nll(z, y, 1.0)
    t, after, b = math.exp(res.x), float(res.fun), 0.0
    if with_bias and len(np.unique(y)) == 2:
        both = optimize.minimize(lambda v: nll(z, y, math.exp(v[0]), v[1]), x0=np.array([res.x, 0.0]),
                                 method="L-BFGS-B", bounds=[(lo, hi), (-BIAS_BOUND, BIAS_BOUND)])
        if float(both.fun) < after:
            t, b, after = math.exp(both.x[0]), float(both.x[1]), float(both.fun)
    if after > before:  # the bounded search missed T = 1 by its tolerance: keep the logits as they are
        t, b, after = 1.0, 0.0, before
    return TemperatureFit(t, before, after, len(y), b)


def at_bound(fit: TemperatureFit, bounds: tuple[float, float] = T_BOUNDS) -> tuple[str, ...]:
    """Which of ``"temperature"``, ``"bias"`` ended at the edge of its search range (within 0.1%).

    A parameter at its bound is not a minimum of the validation NLL, only the best the range
    allowed: the calibrated probabilities are then less trustworthy than the fit suggests.
    """
    out = []
    if min(abs(math.log(fit.temperature / b)) for b in bounds) < 1e-3:
        out.append("temperature")
    if abs(fit.bias) >= BIAS_BOUND * (1.0 - 1e-3):
        out.append("bias")
    return tuple(out)


def bound_warnings(name: str, fits, bounds: tuple[float, float] = T_BOUNDS, hint: str = "") -> list[str]:
    """One line per parameter that reached its bound in any of ``fits`` (a model's seeds), naming ``name``.

    ``hint``: the likely cause and remedy, in the caller's words (e.g. a class-balanced sampler).
    """
    fits = list(fits)
    extra = f" ({hint})" if hint else ""
    out = []
    temps = [f.temperature for f in fits if "temperature" in at_bound(f, bounds)]
    if temps:
        out.append(f"{name}: the temperature fitted on validation reached the end of its range ({temps[0]:.3g}; "
                   f"searched {bounds[0]:g}-{bounds[1]:g}): its probabilities are off in a way one temperature cannot "
                   f"fix{extra}; read calibrated risks with care")
    biases = [f.bias for f in fits if "bias" in at_bound(f, bounds)]
    if biases:
        out.append(f"{name}: the recalibration bias fitted on validation reached the end of its range "
                   f"({biases[0]:+.3g} log-odds; searched -{BIAS_BOUND:g} to +{BIAS_BOUND:g}): its probabilities are "
                   f"shifted further than the recalibration can undo{extra}; read calibrated risks with care")
    return out


def apply_temperature(logits, temperature: float, bias: float = 0.0) -> np.ndarray:
    """Calibrated probabilities: (N,) ``sigmoid(z / T + b)`` for one logit, (N, K) ``softmax(z / T)``
    (a binary model's bias ``b`` added to its positive class's logit)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = _scaled(_as_logits(logits), temperature, bias)
    return special.expit(z) if z.ndim == 1 else special.softmax(z, axis=1)


def logits_from_probs(probs, eps: float = 1e-12) -> np.ndarray:
    """Logits that reproduce stored probabilities: ``logit(p)`` for (N,), ``log p`` for (N, K).

    For prediction files that keep probabilities only; ``softmax(log p) = p``.
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    return special.logit(p) if p.ndim == 1 else np.log(p)
