"""``prepare``: a raw (or synthetic) cohort -> a prepared dataset, its outcome coded for the spec's
prediction kind (:mod:`amfmedit.stages.kinds`); the work is :func:`amfmedit.data.prepare.prepare`'s."""

from __future__ import annotations

from amfmedit.data.prepare import PrepareResult
from amfmedit.data.prepare import prepare as prepare_data
from amfmedit.data.spec import DataSpec
from amfmedit.stages.kinds import get_kind


def prepare(spec: DataSpec, **kwargs) -> PrepareResult:
    """Prepare ``spec``'s cohort (keyword arguments as :func:`amfmedit.data.prepare.prepare`).

    The spec's ``task`` names the prediction kind; an unknown one is refused before anything is read.
    """
    kind = get_kind(spec.task, f"{spec.path or spec.name}: task")
    return prepare_data(spec, target=kind.target, **kwargs)
