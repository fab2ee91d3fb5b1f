"""The tabular baselines a reviewer asks for first: a family whose members say what they read.

``BASELINES`` is the registry (``amfmedit baseline --model NAME``). A member names its design
encoding (:data:`amfmedit.data.design.ENCODINGS`; the prediction kind supplies the scikit-learn
estimator for it, :meth:`amfmedit.stages.kinds.PredictionKind.tabular_baselines`) and whether it
also reads the image, as a reduced embedding of the run's frozen pretrained encoder (PCA fitted on
the training rows only): late fusion of the image with the table in the same tree model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BaselineModel:
    """One tabular baseline."""

    name: str
    title: str  # the model's row title in evaluate's tables
    encoding: str  # "linear" | "trees": the estimator the prediction kind builds for it
    uses_image: bool = False  # the frozen encoder's embedding, reduced by PCA, beside the table

    @property
    def inputs(self) -> str:
        return "table + image embedding" if self.uses_image else "table"


BASELINES: dict[str, BaselineModel] = {
    "logistic": BaselineModel("logistic", "Logistic regression (table)", "linear"),
    "gbdt": BaselineModel("gbdt", "Gradient-boosted trees (table)", "trees"),
    "late-fusion": BaselineModel("late-fusion", "Late fusion: gradient-boosted trees (table + image embedding)", "trees",
                                 uses_image=True),
}
