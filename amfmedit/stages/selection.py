"""Which trained model of a run is "the model": one rule for ``predict``, ``explain`` (IG and
Grad-CAM) and ``export``.

The rule: among the run's finished classifiers trained on the complete table (no masked
features) that read the input the command needs, the image-tabular models first (a
single-modality baseline that edges them out on validation would otherwise score
image-tabular patients without one of their inputs), then the best validation value of the
prediction kind's headline metric (the value that chose the model's epoch), ties to the
lexically last stage name. ``--stage NAME`` overrides it everywhere. :class:`Choice` carries
the sentence the terminal prints, so the user always sees which model answered and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from amfmedit.data import Schema
from amfmedit.data.schema import SCHEMA_FILE
from amfmedit.data.prepared import dataset_path
from amfmedit.errors import UserError, close_matches
from amfmedit.io import read_json
from amfmedit.stages import names
from amfmedit.stages.kinds import kind_of
from amfmedit.train import rundir

#: what each purpose needs of a model: the input it must read (None: any)
NEEDS = {"predict": None, "export": None, "ig": "tabular", "gradcam": "image"}
_INPUT_WORDS = {"tabular": "a tabular input", "image": "an image input"}
#: the command that trains a model each purpose can use
_MAKE = {"ig": "`amfmedit finetune --fusion amf` (or the paper's supervised tabular model: `amfmedit finetune "
               "--fusion none --modality tabular`)",
         "gradcam": "`amfmedit finetune --fusion amf` (or the paper's Fig. 6 setting: `amfmedit finetune --fusion "
                    "concat --strategy frozen`)"}
_METHODS = {"ig": "Integrated Gradients", "gradcam": "Grad-CAM"}


@dataclass(frozen=True)
class Choice:
    """The chosen stage and how it was chosen."""

    stage: str
    info: dict  # names.parse_stage record
    rule: str  # one sentence for the terminal and the report

    def __str__(self) -> str:
        return self.stage


def _reads(info: dict, needs: str | None) -> bool:
    return needs is None or info["modality"] in (None, needs)


def validation_value(run: rundir.Run, stage: str) -> float:
    """The headline validation metric that chose the stage's best epoch (NaN when not recorded)."""
    v = read_json(run.stage(stage) / rundir.MARKER).get("best_val")
    return float(v) if v is not None else math.nan


def run_metric(run: rundir.Run, data_dir=None):
    """The headline metric of the prediction kind of ``run``'s dataset."""
    schema = Schema.load(dataset_path(run.data, data_dir or run.data_dir) / SCHEMA_FILE)
    return kind_of(schema).headline


def choose_model(run: rundir.Run, purpose: str, stage: str | None = None, *, metric=None, data_dir=None) -> Choice:
    """The model ``purpose`` (a key of :data:`NEEDS`) uses: ``stage`` when given (checked), else the rule.

    ``metric``: the prediction kind's headline (:class:`amfmedit.stages.kinds.Metric`; says whether
    higher is better); None: read from the run's dataset (``data_dir`` overrides where it lives).
    """
    needs = NEEDS[purpose]
    stages = names.classifier_stages(run)
    if stage is not None:
        if stage not in stages:
            finished = list(stages)
            hint = close_matches(stage, finished)
            listing = ", ".join(finished) if finished else "none"
            raise UserError(f"--stage {stage}: not a finished classifier of run {run.name} (finished: {listing})"
                            + (f"; did you mean {hint}?" if hint else ""))
        if not _reads(stages[stage], needs):
            raise UserError(f"--stage {stage}: this model has no {needs} input to explain with {_METHODS[purpose]}; "
                            f"pick a stage with {_INPUT_WORDS[needs]}")
        return Choice(stage, stages[stage], f"{stage} (given with --stage)")
    usable = {n: i for n, i in stages.items() if i["mask"] is None and _reads(i, needs)}
    if not usable:
        if needs is None:
            raise UserError(f"run {run.name} has no finished classifier; run `amfmedit finetune --fusion amf` first")
        raise UserError(f"run {run.name} has no trained model with {_INPUT_WORDS[needs]} to explain; run "
                        f"{_MAKE[purpose]} first")
    metric = metric if metric is not None else run_metric(run, data_dir)
    fused = {n: i for n, i in usable.items() if i["fusion"] != names.NO_FUSION}
    pool = fused or usable

    def rank(n: str) -> tuple:
        v = validation_value(run, n)
        if not math.isfinite(v):
            return (-math.inf, n)
        return (metric.rank(v), n)

    best = max(pool, key=rank)
    value = validation_value(run, best)
    label = metric.label
    among = f"{len(pool)} {'image-tabular models' if fused else 'models'}"
    rule = (f"{best}: the best validation {label} ({value:.4f}) among {among} of run {run.name}; "
            "--stage NAME chooses another")
    return Choice(best, usable[best], rule)
