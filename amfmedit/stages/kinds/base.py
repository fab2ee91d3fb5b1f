"""The contract of a prediction kind: what a model's head predicts and how it is trained, chosen,
judged and explained.

A kind is one class (a subclass of :class:`PredictionKind`) and one line in
:data:`amfmedit.stages.kinds.PREDICTION_KINDS`. Everything that differs between kinds is asked
of the kind; no caller compares a kind's name. Arrays it is handed:

- ``targets``: a prepared dataset's outcome of the rows, as :meth:`PredictionKind.targets`
  reads it (class indices (N,) for classification; (N, 2) time and event for survival; (N,)
  values for regression);
- ``outputs``: what a model's head outputs after :meth:`PredictionKind.predictions`
  (class probabilities (N, C) for classification, the risk score or the predicted value (N, 1)
  otherwise), the array every metric and file is computed from.

``evaluate`` hands a kind's :meth:`PredictionKind.statistics` every model's outputs and uses only
the :class:`KindStatistics` interface of what it returns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from amfmedit.data.targets import ClassTarget
from amfmedit.errors import UserError
from amfmedit.models.specs import FOCAL_GAMMA


@dataclass(frozen=True)
class Metric:
    """A metric as tables and terminals show it."""

    key: str  # the key in metric dicts ("auc")
    label: str  # short, for table headers ("AUC")
    title: str  # in sentences ("AUC", "top-1 accuracy")
    higher_is_better: bool = True
    percent: bool = True  # tables show it x 100 (AUC, C-index); False: in its own unit (RMSE)

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
class PairedScore:
    """The headline metric of one model minus another's on the same rows, with its 95 % interval."""

    diff: float
    low: float
    high: float
    method: str  # "paired DeLong", "paired bootstrap"
    level: float = 0.95

    @property
    def apart(self) -> bool:
        """The interval excludes 0: the two models can be told apart on these rows."""
        return bool(self.low > 0 or self.high < 0)

    def to_dict(self) -> dict:
        return {**asdict(self), "apart": self.apart}


@dataclass(frozen=True)
class Weights:
    """A kind's per-group training weights: class-balanced sampling (Appendix A.3) and the loss's
    per-class weights (eq. 12). Empty tuples: plain shuffling and the unweighted loss."""

    sampler: tuple[float, ...] = ()
    loss: tuple[float, ...] = ()


@dataclass(frozen=True)
class LossChoice:
    """``--loss``: the training loss chosen (None: the kind's own, :meth:`PredictionKind.loss`) and
    the settings of the alternatives (``focal_gamma``: γ of the focal loss)."""

    name: str | None = None
    focal_gamma: float = FOCAL_GAMMA


class KindStatistics:
    """What ``evaluate`` asks of a kind's evaluation (:meth:`PredictionKind.statistics`), whatever the kind.

    ``name`` is a model's display name (one group of seeds), ``i`` a seed's position in it;
    ``preds`` / ``targets`` as the kind's ``outputs`` / ``targets``.
    """

    warnings: list[str]
    summary: Any  # .comparisons (amfmedit.stats.compare.ComparisonTable or None), .skipped (metric names)

    def model_record(self, name: str) -> dict:
        """``metrics.json``'s record of one model (intervals, ...)."""
        raise NotImplementedError

    def stage_record(self, name: str, i: int, preds: np.ndarray, targets: np.ndarray) -> dict:
        """Metrics of seed ``i``'s model beyond the kind's validation metrics."""
        raise NotImplementedError

    def operating_record(self, name: str, i: int) -> dict:
        """What ``predict`` applies with seed ``i``'s model (``operating_points.json``)."""
        raise NotImplementedError

    def operating_header(self, class_names) -> dict:
        raise NotImplementedError

    def prediction_columns(self, name: str, i: int, preds: np.ndarray, class_names) -> dict[str, np.ndarray]:
        """Columns of a predictions file beside ``id`` and :meth:`target_columns`."""
        raise NotImplementedError

    def target_columns(self, targets: np.ndarray) -> dict[str, np.ndarray]:
        """The observed outcome's columns in a predictions file."""
        return {"label": np.asarray(targets)}

    def stage_keys(self) -> list[str]:
        """Extra per-stage columns of ``results.md``."""
        return []

    def stage_columns(self) -> list[str]:
        """Headers of the per-stage terminal table's last columns, filled by :meth:`stage_cell`."""
        raise NotImplementedError

    def stage_cell(self, row: dict) -> str:
        """The cells (joined by `` | ``) of :meth:`stage_columns` for one stage's row."""
        raise NotImplementedError

    def markdown(self) -> str:
        """``results.md``'s sections after Table 2."""
        raise NotImplementedError

    def terminal(self) -> str:
        """The terminal's section after Table 2 (80 columns)."""
        raise NotImplementedError

    def write_figures(self, folder, y_test, seed_outputs: dict) -> dict[str, str]:
        """Figures into ``folder``; returns figure key -> path relative to it."""
        raise NotImplementedError

    def figures_markdown(self, figures: dict[str, str]) -> str:
        """``results.md``'s links to the figures."""
        if not figures:
            return ""
        return "\n## Figures\n\n" + ", ".join(f"[{k}]({v})" for k, v in figures.items()) + ".\n"


class BaselineEstimators:
    """The scikit-learn estimators a kind's tabular baselines are made of (``amfmedit baseline``).

    One estimator per design encoding (:data:`amfmedit.data.design.ENCODINGS`: ``linear`` for a
    regularised linear model on the prepared values, ``trees`` for gradient-boosted trees with
    native missing values); a kind without one for an encoding leaves it out of ``encodings``.
    """

    encodings: tuple[str, ...] = ()

    def describe(self, encoding: str) -> str:
        """The estimator in words, with what is searched, for reports."""
        raise NotImplementedError

    def grid(self, encoding: str) -> tuple[dict, ...]:
        """The hyper-parameters tried on the validation split, in order (ties go to the earlier)."""
        raise NotImplementedError

    def build(self, encoding: str, params: dict, seed: int, design) -> Any:
        """An unfitted estimator for ``design`` (:class:`amfmedit.data.design.Design`: its categorical columns)."""
        raise NotImplementedError

    def fit(self, estimator, encoding: str, X, y, X_val, y_val) -> Any:
        """Fit on the training rows; the validation rows may stop the fit early (never train it)."""
        raise NotImplementedError

    def outputs(self, estimator, X) -> np.ndarray:
        """What the kind's metrics take (class probabilities (N, C) for classification)."""
        raise NotImplementedError

    def iterations(self, estimator) -> int:
        """Boosting rounds or solver iterations the fit ran (the baselines' "epoch" in reports)."""
        raise NotImplementedError

    def seeded(self, encoding: str) -> bool:
        """Whether the seed changes the fitted estimator (False: every seed fits the same model, so one fit
        serves them all)."""
        return True


class PredictionKind:
    """One kind of prediction. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    title: ClassVar[str]  # in sentences ("binary classification")
    target: ClassVar[ClassTarget]  # how prepare codes the outcome (amfmedit.data.targets: a coding)
    headline: ClassVar[Metric]  # selects the learning rate and the best epoch; heads Table 2
    pretrain_lr: ClassVar[float]  # Appendix A.2's contrastive learning rate for this kind of cohort
    has_operating_point: ClassVar[bool] = False  # a decision threshold chosen on validation
    has_calibration: ClassVar[bool] = False  # probabilities recalibrated on validation
    #: the losses ``--loss`` may name for this kind (name -> what it is); empty: its own loss only
    loss_choices: ClassVar[dict[str, str]] = {}
    # a split whose predictions evaluate also computes and hands to statistics (y_fit, preds' ``fit``):
    # survival fits the Breslow baseline hazard on the training split's risk scores
    fit_split: ClassVar[str | None] = None
    cam_output: ClassVar[str] = "prob"  # what Grad-CAM's case titles show: the target's probability or the raw output

    @classmethod
    def for_schema(cls, schema) -> "PredictionKind":
        """The kind of a prepared dataset (a kind whose model needs the dataset's facts, e.g. the
        scale of a regression outcome, reads them here)."""
        return cls()

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

    def check_loss(self, choice: LossChoice) -> None:
        """``--loss`` names a loss this kind has (one line naming them otherwise)."""
        if choice.name is not None and choice.name not in self.loss_choices:
            known = ", ".join(self.loss_choices) or "none: it trains with its own loss only"
            raise UserError(f"--loss {choice.name}: not a loss of {self.title} (losses: {known})")

    def training_loss(self, weights: Weights, choice: LossChoice) -> Callable:
        """The loss ``--loss`` chose; with none named the kind's own (:meth:`loss`). Kinds with
        ``loss_choices`` override this to build the others."""
        self.check_loss(choice)
        return self.loss(weights)

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

    def paired_difference(self, outputs_a: np.ndarray, outputs_b: np.ndarray, targets: np.ndarray, *,
                          seed: int = 0, n_boot: int = 500) -> PairedScore:
        """Headline metric of ``outputs_a`` minus ``outputs_b`` on the same rows, with a 95 % interval:
        a paired bootstrap of the rows (both models scored on each resample); kinds with an exact
        paired test override it."""
        key = self.headline.key
        targets = np.asarray(targets)

        def score(outputs, rows):
            return float(self.validation_metrics(outputs[rows], targets[rows])[key])

        every = np.arange(len(targets))
        diff = score(outputs_a, every) - score(outputs_b, every)
        rng = np.random.default_rng(seed)
        reps = []
        for _ in range(n_boot):
            rows = rng.integers(0, len(targets), len(targets))
            d = score(outputs_a, rows) - score(outputs_b, rows)
            if np.isfinite(d):
                reps.append(d)
        if len(reps) < n_boot // 2:
            return PairedScore(diff, -np.inf, np.inf, "paired bootstrap (undefined on most resamples)")
        low, high = np.quantile(reps, [0.025, 0.975])
        return PairedScore(diff, float(low), float(high), "paired bootstrap")

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

    def explain_output(self, requested: str) -> str:
        """What IG attributes: ``requested`` ("prob": the target's softmax probability, "logit": the raw
        output); a kind with one raw output (a risk score, a value) always attributes that."""
        return requested

    def cam_target_name(self, schema, target: int) -> str:
        """The output Grad-CAM draws evidence for ("1": a class; "higher risk")."""
        return str(schema.class_names[target])

    def case_title(self, dataset, row: int, value: float) -> str:
        """A Grad-CAM case's title: its id, outcome and the model's output (``value``)."""
        return f"{dataset.ids[row]} (label {dataset.schema.class_names[dataset.labels[row]]}) p={value:.2f}"

    def explain_description(self, schema, requested) -> dict[str, Any]:
        """How the explained output is described in reports."""
        fixed = self.explain_target(schema, requested)
        if fixed is None:
            return {"target": None, "target_rule": "each sample's own label"}
        return {"target": {"index": fixed, "name": str(schema.class_names[fixed])}, "target_rule": "fixed class"}

    # ----------------------------------------------------------------------------- baselines

    def tabular_baselines(self, schema) -> BaselineEstimators | None:
        """The scikit-learn estimators of this kind's tabular baselines; None: the kind has none yet."""
        return None

    # ---------------------------------------------------------------------------- evaluation

    def statistics(self, y_val, y_test, preds: dict, *, spec: str, split: str, schema, y_fit=None,
                   horizons: str | None = None, **kw) -> KindStatistics:
        """Intervals, operating points, calibration and comparisons of every model (see evaluate).

        ``preds``: display name -> ``ModelPredictions`` (``val``, ``test`` and, for a kind with a
        :attr:`fit_split`, ``fit``: (S, N, K) each); ``y_fit``: that split's targets; ``horizons``:
        ``--horizons`` (survival)."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------- prediction

    def predict_columns(self, raw: np.ndarray, op: dict | None, schema, *, calibration: str,
                        horizons: str | None = None) -> tuple[dict[str, Any], str | None, list[str]]:
        """``predict``'s columns for outputs ``raw`` (N, K) with the stage's ``operating_points.json``
        record ``op`` (None: not evaluated): (columns, the operating point's name or None, warnings)."""
        raise NotImplementedError

    def subgroup_statistics(self, stats, y, preds: dict, variables: dict, **kw):
        """Every metric per subgroup of the scored rows, with the difference against the rest (``evaluate
        --subgroup``); ``stats``: what :meth:`statistics` returned for the run."""
        raise UserError(f"--subgroup: subgroup statistics are not available for {self.title} yet")

    def external_statistics(self, stats, y_internal, y, preds: dict, **kw):
        """Internal test and an external cohort side by side (``evaluate --external``)."""
        raise UserError(f"--external: external validation is not available for {self.title} yet")

    def summary_columns(self, schema) -> list[str]:
        """Columns of ``prepare``'s per-split summary after the row count."""
        return []

    def summary_cells(self, counts: dict) -> list[str]:
        return []
