"""``prepare``: a raw (or synthetic) cohort -> a prepared dataset, its outcome coded for the spec's
prediction kind (:mod:`amfmedit.stages.kinds`); the work is :func:`amfmedit.data.prepare.prepare`'s."""

from __future__ import annotations

from amfmedit.data.prepare import PrepareResult
from amfmedit.data.prepare import prepare as prepare_data
from amfmedit.data.spec import DataSpec
from amfmedit.errors import UserError, close_matches
from amfmedit.stages.kinds import PREDICTION_KINDS, PredictionKind, get_kind


def prepare(spec: DataSpec, **kwargs) -> PrepareResult:
    """Prepare ``spec``'s cohort (keyword arguments as :func:`amfmedit.data.prepare.prepare`).

    The spec's ``task`` names the prediction kind; an unknown one is refused before anything is read.
    """
    return prepare_data(spec, target=spec_kind(spec).target, **kwargs)


def spec_kind(spec: DataSpec) -> PredictionKind:
    """The prediction kind a spec's ``task`` names; one line naming the key and the known kinds otherwise."""
    if spec.task not in PREDICTION_KINDS:
        hint = close_matches(str(spec.task), list(PREDICTION_KINDS))
        raise UserError(f"{spec.path or spec.name}: key 'task' must be one of {', '.join(PREDICTION_KINDS)}, got "
                        f"{spec.task!r}" + (f"; did you mean {hint}?" if hint else ""))
    return get_kind(spec.task)
