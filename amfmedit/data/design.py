"""Design matrices of a prepared table for scikit-learn models (the tabular baselines).

Two encodings of the same prepared rows, one per kind of estimator:

- ``"linear"``: the prepared values (continuous features z-scored with train-split statistics,
  categorical features as integer codes, 0 = missing or unseen), with the continuous cells that
  were missing before imputation set back to NaN: the model's own pipeline imputes them (the
  training rows' median, which is the prepared imputation) and adds a missing indicator per
  feature missing in the training rows, and one-hot encodes the codes (code 0 its own column);
- ``"trees"``: continuous values with the cells that were missing before imputation set back
  to NaN and categorical codes shifted to ``0 .. K-1`` with missing as NaN, so that
  gradient-boosted trees learn where missing values go (scikit-learn's
  ``HistGradientBoosting*``: native missing values and categorical splits). A categorical
  feature with more categories than a tree's bins is passed as an ordinal code.

Extra numeric columns (e.g. a reduced image embedding) are appended after the features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ENCODINGS = ("linear", "trees")
MAX_TREE_CATEGORIES = 255  # HistGradientBoosting's bins for one categorical feature


@dataclass
class Design:
    """Rows x columns of one encoding: ``X`` (N, F) float64, a name and a categorical flag per column."""

    X: np.ndarray
    names: list[str]
    categorical: np.ndarray  # (F,) bool
    cardinalities: list[int] = field(default_factory=list)  # (F,) categories of a categorical column (0 otherwise)

    def with_columns(self, values: np.ndarray, names: list[str]) -> "Design":
        """This design with numeric columns ``values`` (N, k) appended."""
        k = values.shape[1]
        return Design(np.concatenate([self.X, np.asarray(values, np.float64)], axis=1), self.names + list(names),
                      np.concatenate([self.categorical, np.zeros(k, bool)]), self.cardinalities + [0] * k)


def table_design(dataset, rows: np.ndarray, encoding: str) -> Design:
    """The prepared table's rows ``rows`` in ``encoding`` (one of :data:`ENCODINGS`).

    ``dataset``: a :class:`~amfmedit.data.prepared.PreparedDataset` (``x_cont``, ``x_cat``,
    ``missing`` and ``schema``).
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    schema = dataset.schema
    rows = np.asarray(rows, dtype=np.int64)
    n_cont = schema.n_cont
    cont = np.asarray(dataset.x_cont[rows], dtype=np.float64)
    codes = np.asarray(dataset.x_cat[rows], dtype=np.int64)
    cards = list(schema.cardinalities)
    names = list(schema.feature_names)
    missing = np.asarray(dataset.missing[rows], bool)
    cont = np.where(missing[:, :n_cont], np.nan, cont)
    if encoding == "linear":
        X = np.concatenate([cont, codes.astype(np.float64)], axis=1)
        flags = np.array([False] * n_cont + [True] * len(cards), bool)
        return Design(X, names, flags, [0] * n_cont + cards)
    cat = np.where(codes == 0, np.nan, codes - 1.0)  # code 0 (missing or unseen) is a missing value to the trees
    native = [c - 1 <= MAX_TREE_CATEGORIES for c in cards]
    flags = np.array([False] * n_cont + native, bool)
    return Design(np.concatenate([cont, cat], axis=1), names, flags,
                  [0] * n_cont + [c - 1 if ok else 0 for c, ok in zip(cards, native)])
