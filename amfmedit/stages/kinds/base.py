"""The contract of a prediction kind: what a model's head predicts and how it is trained, chosen,
judged and explained.

A kind is one class (a subclass of :class:`PredictionKind`) and one line in
:data:`amfmedit.stages.kinds.PREDICTION_KINDS`. Everything that differs between kinds is asked
of the kind; no caller compares a kind's name. Arrays it is handed:

- ``targets``: a prepared dataset's outcome of the rows, as :meth:`PredictionKind.targets`
  reads it (class indices (N,) for classification);
- ``outputs``: what a model's head outputs after :meth:`PredictionKind.predictions`
  (class probabilities (N, C) for classification), the array every metric and file is computed from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from amfmedit.data.targets import ClassTarget


@dataclass(frozen=True)
class Metric:
    """A metric as tables and terminals show it."""

    key: str  # the key in metric dicts ("auc")
    label: str  # short, for table headers ("AUC")
    title: str  # in sentences ("AUC", "top-1 accuracy")
    higher_is_better: bool = True

    @property
    def mode(self) -> str:
        """The engine's early-stopping mode."""
        return "max" if self.higher_is_better else "min"

    def rank(self, value: float) -> float:
        """A sort key where larger is better, whichever way the metric points."""
        return value if self.higher_is_better else -value


@dataclass(frozen=True)
class ProbeScore:
    """A unimodal probe's metric (R_conf, Appendix A.4) with its 95 % interval and the chance level."""

    value: float
    low: float | None
    high: float | None
    method: str | None
    chance: float | None
    informative: bool
    level: float = 0.95

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("value")
        return d


@dataclass(frozen=True)
class Weights:
    """A kind's per-group training weights: class-balanced sampling (Appendix A.3) and the loss's
    per-class weights (eq. 12). Empty tuples: plain shuffling and the unweighted loss."""

    sampler: tuple[float, ...] = ()
    loss: tuple[float, ...] = ()


class PredictionKind:
    """One kind of prediction. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    title: ClassVar[str]  # in sentences ("binary classification")
    target: ClassVar[ClassTarget]  # how prepare codes the outcome (amfmedit.data.targets)
    headline: ClassVar[Metric]  # selects the learning rate and the best epoch; heads Table 2
    pretrain_lr: ClassVar[float]  # Appendix A.2's contrastive learning rate for this kind of cohort
    has_operating_point: ClassVar[bool] = False  # a decision threshold chosen on validation
    has_calibration: ClassVar[bool] = False  # probabilities recalibrated on validation

    # ------------------------------------------------------------------------------- data

    def check(self, schema, where: str) -> None:
        """Raise :class:`~amfmedit.errors.UserError` when a prepared dataset does not fit this kind."""

    def head_size(self, schema) -> int:
        """Width of the model's output (logits) for this dataset."""
        raise NotImplementedError

    def targets(self, dataset) -> np.ndarray:
        """The outcome of every row of a prepared dataset, as the metrics take it."""
        return np.asarray(dataset.labels)

    def target_names(self, schema) -> list[str] | None:
        """Names of the outcome's values where it has them (class names), else None."""
        return None

    # ----------------------------------------------------------------------------- training

    def default_weights(self, schema) -> Weights:
        return Weights()

    def check_weights(self, weights: Weights, schema) -> None:
        """User-given weights fit the kind (one per class, ...)."""

    def loss(self, weights: Weights) -> Callable:
        """``(output (B, K) float, targets (B, ...)) -> scalar``: the kind's training loss."""
        raise NotImplementedError

    def predictions(self, output):
        """The model's raw output (B, K) -> the stored predictions (a torch tensor)."""
        raise NotImplementedError

    def validation_metrics(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Metrics of one split (``loss`` and the headline among them), NaN where undefined."""
        raise NotImplementedError

    def selectable(self, targets: np.ndarray) -> str | None:
        """Why the headline metric is undefined on these validation targets (None: it is defined)."""
        return None

    # ------------------------------------------------------------------------------ R_conf

    def probe_score(self, outputs: np.ndarray, targets: np.ndarray, seed: int) -> ProbeScore:
        raise NotImplementedError

    def ratio(self, image: float, tabular: float) -> float:
        """R_conf (eq. 3) from the probes' headline metrics."""
        return image / tabular

    # ---------------------------------------------------------------------------- explaining

    def explain_target(self, schema, requested: str | int | None) -> int | None:
        """The output index Integrated Gradients attributes (None: each row's own class)."""
        raise NotImplementedError

    def explain_targets(self, schema, requested, targets: np.ndarray) -> np.ndarray:
        """(N,) output index per explained row."""
        fixed = self.explain_target(schema, requested)
        return np.full(len(targets), fixed, dtype=np.int64) if fixed is not None else np.asarray(targets, np.int64)

    def explain_description(self, schema, requested) -> dict[str, Any]:
        """How the explained output is described in reports."""
        fixed = self.explain_target(schema, requested)
        if fixed is None:
            return {"target": None, "target_rule": "each sample's own label"}
        return {"target": {"index": fixed, "name": str(schema.class_names[fixed])}, "target_rule": "fixed class"}

    # ---------------------------------------------------------------------------- evaluation

    def statistics(self, y_val, y_test, preds: dict, *, spec: str, split: str, schema, **kw):
        """Intervals, operating points, calibration and comparisons of every model (see evaluate)."""
        raise NotImplementedError

    def summary_columns(self, schema) -> list[str]:
        """Columns of ``prepare``'s per-split summary after the row count."""
        return []

    def summary_cells(self, counts: dict) -> list[str]:
        return []
