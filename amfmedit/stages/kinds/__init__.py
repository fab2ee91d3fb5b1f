"""The prediction-kind family: binary and multiclass classification (the paper's two tasks).

A plain dict is the registry; a new kind is one class (:class:`PredictionKind`) and one line
here. A prepared dataset's ``schema.task`` names its kind.
"""

from __future__ import annotations

from amfmedit.errors import UserError, close_matches
from amfmedit.stages.kinds.base import Metric, PredictionKind, ProbeScore, Weights
from amfmedit.stages.kinds.classification import BinaryKind, ClassificationKind, MulticlassKind

PREDICTION_KINDS: dict[str, type[PredictionKind]] = {
    "binary": BinaryKind,
    "multiclass": MulticlassKind,
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
    """The kind of a prepared dataset (its ``schema.task``)."""
    return get_kind(schema.task, f"dataset {schema.name}: task")


__all__ = ["PREDICTION_KINDS", "PredictionKind", "ClassificationKind", "BinaryKind", "MulticlassKind", "Metric",
           "ProbeScore", "Weights", "get_kind", "kind_of"]
