"""The classification kinds' tabular baselines: scikit-learn estimators of class probabilities.

- ``linear``: L2-regularised logistic regression (multinomial for more than two classes) on the
  prepared values; inside the pipeline missing continuous values are imputed with the training
  rows' median and flagged by an indicator column per feature missing in the training rows, and
  categorical codes are one-hot encoded; ``C`` searched on the validation split.
- ``trees``: ``HistGradientBoostingClassifier`` with native missing values and categorical
  splits; learning rate, leaves and L2 penalty searched on the validation split, and the number
  of boosting rounds chosen by early stopping on the validation loss (scikit-learn's ``X_val``).

No class weights: the probabilities stay those of the cohort's prevalence (the ranking metrics
do not depend on it, and evaluate's recalibration has nothing to undo).
"""

from __future__ import annotations

import numpy as np

from amfmedit.stages.kinds.base import BaselineEstimators

LINEAR_C = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
TREE_GRID = tuple({"learning_rate": lr, "max_leaf_nodes": leaves, "l2_regularization": l2}
                  for lr in (0.05, 0.1) for leaves in (15, 31) for l2 in (0.0, 1.0))
# held fixed: rounds are stopped on validation; half the features per split make seeds differ as they do
# for the neural models (each seed its own trees)
TREE_FIXED = dict(max_iter=500, early_stopping=True, n_iter_no_change=20, scoring="loss", min_samples_leaf=20,
                  max_features=0.5)
LINEAR_MAX_ITER = 5000


class ClassifierBaselines(BaselineEstimators):
    """Class probabilities (N, ``n_classes``) from scikit-learn classifiers."""

    encodings = ("linear", "trees")

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes

    def describe(self, encoding: str) -> str:
        if encoding == "linear":
            return (f"logistic regression with an L2 penalty (lbfgs), missing values imputed with the training median "
                    f"and flagged by indicator columns, categorical codes one-hot encoded; C searched over "
                    f"{', '.join(f'{c:g}' for c in LINEAR_C)} on the validation split")
        return ("scikit-learn HistGradientBoostingClassifier (native missing values and categorical splits, "
                f"{TREE_FIXED['max_features']:g} of the features per split, at least {TREE_FIXED['min_samples_leaf']} "
                "rows per leaf); learning rate 0.05 / 0.1, 15 / 31 leaves and L2 0 / 1 searched on the validation "
                f"split; boosting rounds (at most {TREE_FIXED['max_iter']}) stopped after "
                f"{TREE_FIXED['n_iter_no_change']} without a lower validation loss")

    def grid(self, encoding: str) -> tuple[dict, ...]:
        return tuple({"C": c} for c in LINEAR_C) if encoding == "linear" else TREE_GRID

    def build(self, encoding: str, params: dict, seed: int, design):
        from sklearn.compose import ColumnTransformer
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder

        if encoding == "linear":
            cat = np.flatnonzero(design.categorical)
            num = np.flatnonzero(~np.asarray(design.categorical))
            categories = [list(range(design.cardinalities[j])) for j in cat]
            # the median of the training rows' z-scored values is the prepared imputation; the indicators let the
            # model learn what a missing value says (as the neural encoders' token mode)
            impute = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
            encode = ColumnTransformer([("impute", impute, num),
                                        ("onehot", OneHotEncoder(categories=categories, handle_unknown="ignore",
                                                                 sparse_output=False), cat)])
            model = LogisticRegression(C=float(params["C"]), max_iter=LINEAR_MAX_ITER, random_state=seed)
            return Pipeline([("encode", encode), ("model", model)])
        return HistGradientBoostingClassifier(**TREE_FIXED, **params, categorical_features=np.asarray(design.categorical),
                                              random_state=seed)

    def fit(self, estimator, encoding: str, X, y, X_val, y_val):
        if encoding == "trees":
            return estimator.fit(X, y, X_val=X_val, y_val=y_val)
        return estimator.fit(X, y)

    def outputs(self, estimator, X) -> np.ndarray:
        """(N, n_classes) probabilities; a class absent from the training rows gets probability 0."""
        proba = estimator.predict_proba(X)
        out = np.zeros((len(X), self.n_classes))
        out[:, np.asarray(estimator.classes_, dtype=np.int64)] = proba
        return out

    def seeded(self, encoding: str) -> bool:
        # lbfgs is deterministic (LogisticRegression reads random_state only for sag, saga and liblinear): every seed
        # is the same model; the trees draw their features per split from the seed
        return encoding == "trees"

    def iterations(self, estimator) -> int:
        fitted = estimator[-1] if hasattr(estimator, "steps") else estimator
        n = fitted.n_iter_
        return int(np.max(n)) if np.ndim(n) else int(n)
