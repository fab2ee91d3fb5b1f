"""What the sample supports: a feature ranking by a model of the right family, to read an IG count against.

The synthetic cohorts' risk is linear in the logit, so an L2 logistic regression (scikit-learn) on
the same training rows is the right model family: how many informative features its top ``k``
holds is what the sample supports, whatever the explanation method. ``explain --method ig``
prints it beside IG's count on a synthetic cohort, and ``benchmarks/explain_targets.py`` uses the
same function.

A feature's weight is the sum over its design columns of ``|coefficient| x column sd``
(continuous features are one column; a categorical feature is one-hot, one column per code;
several classes sum over their coefficient rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

REFERENCE_C = 0.1  # L2 strength (scikit-learn's inverse C): shrinks the noise features' coefficients


@dataclass(frozen=True)
class ReferenceRanking:
    """Features ranked by a logistic regression on the rows given."""

    ranked: list[str]  # every feature, largest weight first
    weights: dict[str, float] = field(default_factory=dict)
    n_rows: int = 0
    model: str = f"L2 logistic regression (C={REFERENCE_C:g}), weight = sum |coefficient| x column sd"

    def top(self, k: int) -> list[str]:
        return self.ranked[:k]


def design(x_cont: np.ndarray, x_cat: np.ndarray, cardinalities) -> tuple[np.ndarray, np.ndarray]:
    """``(X (N, P) float64, owner (P,) feature index)``: continuous columns as they are, each
    categorical feature one-hot over its codes (0 = missing is a code of its own)."""
    cols, owner = [np.asarray(x_cont, dtype=np.float64)], list(range(x_cont.shape[1]))
    for j, card in enumerate(cardinalities):
        codes = np.asarray(x_cat[:, j], dtype=np.int64)
        cols.append(np.eye(int(card))[codes])
        owner += [x_cont.shape[1] + j] * int(card)
    return np.concatenate(cols, axis=1) if cols else np.zeros((len(x_cont), 0)), np.asarray(owner)


def logistic_reference(x_cont: np.ndarray, x_cat: np.ndarray, labels: np.ndarray, names: list[str],
                       cardinalities) -> ReferenceRanking:
    """Rank ``names`` (model input order: continuous, then categorical) by an L2 logistic regression
    of ``labels`` on the rows given (x_cont (N, n_cont), x_cat (N, n_cat) codes)."""
    from sklearn.linear_model import LogisticRegression

    x, owner = design(x_cont, x_cat, cardinalities)
    y = np.asarray(labels)
    model = LogisticRegression(C=REFERENCE_C, max_iter=5000).fit(x, y)
    per_column = np.abs(model.coef_).sum(axis=0) * x.std(axis=0)
    weight = np.bincount(owner, weights=per_column, minlength=len(names))
    order = np.argsort(-weight, kind="stable")
    return ReferenceRanking([names[i] for i in order], {names[i]: float(weight[i]) for i in order}, int(len(y)))
