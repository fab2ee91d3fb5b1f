"""Operating points: a threshold chosen on the validation split and applied unchanged to test.

A row is called positive when its probability of class 1 is ``>= value``. The ``--threshold``
spec says how ``value`` is chosen on validation:

- ``youden`` (default): maximise Youden's J = sensitivity + specificity - 1 (Youden 1950,
  Cancer 3:32-35) over the validation ROC curve; among equal J the highest threshold. J is
  compared exactly, as the integer ``TP * n_neg - FP * n_pos``: two cuts with the same J in
  fractions get the same number, whatever ``tpr - fpr`` rounds to.
- ``sensitivity:0.9``: the highest threshold whose validation sensitivity is >= 0.9 (so the
  most specific one that meets the target).
- ``specificity:0.95``: the lowest threshold whose validation specificity is >= 0.95 (so the
  most sensitive one that meets the target).
- a number in (0, 1), e.g. ``0.3``: used as it is.

Candidates are the distinct validation scores (scikit-learn's ``roc_curve`` with
``drop_intermediate=False``). A target met only by calling every validation row positive, or
none, is refused: such a cut says nothing about the patients.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from amfmedit.errors import UserError
from amfmedit.stats import bootstrap, proportions, weighted

OPTION = "--threshold"
_HINT = "use youden, sensitivity:0.9, specificity:0.95 or a number in (0, 1)"


@dataclass(frozen=True)
class Threshold:
    """A chosen operating point and what it achieved on validation."""

    name: str  # canonical spec, e.g. "youden", "sensitivity:0.9", "0.3"
    value: float  # positive when p >= value
    rule: str  # how it was chosen, in words
    target: float | None
    val_sensitivity: float
    val_specificity: float
    val_n_pos: int
    val_n_neg: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ConfusionAt:
    """Counts and rates at one threshold; rates carry Clopper-Pearson intervals (:mod:`amfmedit.stats.proportions`)."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: bootstrap.Interval
    specificity: bootstrap.Interval
    ppv: bootstrap.Interval
    npv: bootstrap.Interval

    def to_dict(self) -> dict:
        return asdict(self)


def parse_threshold(spec: str) -> tuple[str, float | None]:
    """``spec`` -> (kind, target); kind is 'youden', 'sensitivity', 'specificity' or 'fixed'.

    Raises:
        UserError: one line naming ``--threshold`` and the value.
    """
    text = str(spec).strip().lower()
    if text == "youden":
        return "youden", None
    if ":" in text:
        kind, _, raw = text.partition(":")
        if kind not in ("sensitivity", "specificity"):
            raise UserError(f"{OPTION} {spec!r}: unknown target {kind!r}; {_HINT}")
        try:
            target = float(raw)
        except ValueError:
            raise UserError(f"{OPTION} {spec!r}: {raw!r} is not a number; {_HINT}") from None
        if not 0.0 < target <= 1.0:
            raise UserError(f"{OPTION} {spec!r}: a {kind} target must be in (0, 1]; e.g. {kind}:0.9")
        return kind, target
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{OPTION} {spec!r}: not a threshold; {_HINT}") from None
    if not 0.0 < value < 1.0:
        raise UserError(f"{OPTION} {spec!r}: a fixed threshold must be in (0, 1); {_HINT}")
    return "fixed", value


def _sens_spec(y: np.ndarray, p: np.ndarray, value: float) -> tuple[float, float]:
    pred = p >= value
    return float(pred[y].mean()), float((~pred[~y]).mean())


def choose_threshold(spec: str, y_val, p_val) -> Threshold:
    """Choose the operating point named by ``spec`` on validation labels / probabilities.

    Args:
        spec: see the module docstring.
        y_val: (N,) 0/1 validation labels; p_val: (N,) validation probability of class 1.

    Raises:
        UserError: bad spec, a validation split with one class, or a target that validation
            cannot meet with a threshold that separates anyone.
    """
    from sklearn.metrics import roc_curve

    kind, target = parse_threshold(spec)
    y = np.asarray(y_val).astype(bool)
    p = np.asarray(p_val, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"validation labels {y.shape} and probabilities {p.shape} must be the same (N,)")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    name = f"{kind}:{target:g}" if kind in ("sensitivity", "specificity") else kind
    if kind == "fixed":
        sens, spec_ = _sens_spec(y, p, target) if n_pos and n_neg else (float("nan"), float("nan"))
        return Threshold(f"{target:g}", float(target), "fixed by the user", None, sens, spec_, n_pos, n_neg)
    if n_pos == 0 or n_neg == 0:
        raise UserError(f"{OPTION} {spec}: the validation split has {n_pos} positive and {n_neg} negative rows; "
                        "a threshold needs both classes there (use a number, e.g. --threshold 0.5)")
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    fpr, tpr, thr = fpr[1:], tpr[1:], thr[1:]  # drop scikit-learn's +inf "nobody positive" point
    eps = 1e-12
    if kind == "youden":
        # J * n_pos * n_neg = TP * n_neg - FP * n_pos, in integers: equal J compare equal, so the first
        # maximum is the highest threshold (tpr - fpr in floats breaks such ties by rounding noise).
        tp, fp = np.rint(tpr * n_pos).astype(np.int64), np.rint(fpr * n_neg).astype(np.int64)
        i = int(np.argmax(tp * n_neg - fp * n_pos))
        rule = "maximum of Youden's J (sensitivity + specificity - 1) on validation"
    elif kind == "sensitivity":
        i = int(np.flatnonzero(tpr >= target - eps)[0])  # tpr rises as thr falls; reaches 1 at the end
        rule = f"highest threshold with validation sensitivity >= {target:g}"
    else:
        ok = np.flatnonzero(1.0 - fpr >= target - eps)
        if len(ok) == 0:
            raise UserError(f"{OPTION} {spec}: no threshold reaches specificity {target:g} on validation "
                            f"({n_neg} negatives) without calling nobody positive; choose a lower target")
        i = int(ok[-1])
        rule = f"lowest threshold with validation specificity >= {target:g}"
    value = float(thr[i])
    sens, spec_ = _sens_spec(y, p, value)
    if spec_ == 0.0 and kind != "youden":
        raise UserError(f"{OPTION} {spec}: met on validation only by calling every row positive "
                        f"(specificity 0); choose a lower target")
    if sens == 0.0 and kind != "youden":
        raise UserError(f"{OPTION} {spec}: met on validation only by calling no row positive "
                        f"(sensitivity 0); choose a lower target")
    return Threshold(name, value, rule, target, sens, spec_, n_pos, n_neg)


def confusion_at(y, p, threshold: float, level: float = 0.95) -> ConfusionAt:
    """TP/FP/TN/FN and sensitivity, specificity, PPV, NPV (Clopper-Pearson intervals) at ``threshold``.

    Args:
        y: (N,) 0/1 labels; p: (N,) probability of class 1; threshold: positive when p >= it.
    """
    pos = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    c = weighted.confusion(p, pos, np.ones((1, len(p))), threshold)
    ivs = proportions.exact_intervals(pos.astype(np.int64), p, threshold, level)
    return ConfusionAt(float(threshold), *(int(c[k][0]) for k in ("tp", "fp", "tn", "fn")),
                       ivs["sensitivity"], ivs["specificity"], ivs["ppv"], ivs["npv"])
