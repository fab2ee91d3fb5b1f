"""The prediction-kind family: binary and multiclass classification (the paper's two tasks), time to
event (survival) and a continuous outcome (regression).

A plain dict is the registry; a new kind is one class (:class:`PredictionKind`) and one line
here. A prepared dataset's ``schema.task`` names its kind.

Importing the family loads no deferred package (:mod:`amfmedit.deferred`): ``--help`` and the
stage configs read a kind's declarations (``pretrain_lr``, ``headline``, the default weights);
the methods that need torch or scipy import them where they run.
"""

from __future__ import annotations

from amfmedit.errors import UserError, close_matches
from amfmedit.stages.kinds.base import KindStatistics, LossChoice, Metric, PredictionKind, ProbeScore, Weights
from amfmedit.stages.kinds.classification import BinaryKind, ClassificationKind, MulticlassKind
from amfmedit.stages.kinds.regression import RegressionKind
from amfmedit.stages.kinds.survival import SurvivalKind

PREDICTION_KINDS: dict[str, type[PredictionKind]] = {
    "binary": BinaryKind,
    "multiclass": MulticlassKind,
    "survival": SurvivalKind,
    "regression": RegressionKind,
}


def get_kind(name: str, where: str = "task") -> PredictionKind:
    """The kind called ``name``; one line naming the known kinds otherwise."""
    cls = PREDICTION_KINDS.get(name)
    if cls is None:
        hint = close_matches(str(name), list(PREDICTION_KINDS))
        raise UserError(f"{where} {name!r}: not a prediction kind; use one of {', '.join(PREDICTION_KINDS)}"
                        + (f" (did you mean {hint}?)" if hint else ""))
    return cls()


def kind_of(schema) -> PredictionKind:
    """The kind of a prepared dataset (its ``schema.task``), with what it reads from the dataset
    (:meth:`PredictionKind.for_schema`: a regression outcome's scale)."""
    get_kind(schema.task, f"dataset {schema.name}: task")  # an unknown task: one line naming the known ones
    return PREDICTION_KINDS[schema.task].for_schema(schema)


__all__ = ["PREDICTION_KINDS", "PredictionKind", "ClassificationKind", "BinaryKind", "MulticlassKind", "SurvivalKind",
           "RegressionKind", "KindStatistics", "LossChoice", "Metric", "ProbeScore", "Weights", "get_kind", "kind_of"]
