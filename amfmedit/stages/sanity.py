"""Checks a stage runs on itself, against what a model that learned nothing would show.

Each check returns plain-words warnings (a list of str; empty when all is well). The stage
prints nothing: it records them in its ``COMPLETE`` marker under ``"warnings"`` and returns
them; the CLI prints them and the run report shows them (:func:`stage_warnings`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from amfmedit.errors import UserError
from amfmedit.io import read_json
from amfmedit.stages import names
from amfmedit.train import rundir

#: pretraining has learned when its best validation ITC loss is below this share of chance
ITC_LEARNED_BELOW = 0.95


def itc_chance(n_val: int, eval_batch_size: int) -> float:
    """The validation ITC loss (eq. 11) of embeddings that carry no information.

    With all cosine similarities equal, each row's softmax over its chunk of b rows gives the
    positive pair 1/b, so the loss is log(b); validation averages over chunks of
    ``eval_batch_size`` rows (the last, smaller one included when it has at least 2 rows),
    weighted by their sizes.
    """
    sizes = [eval_batch_size] * (n_val // eval_batch_size)
    if n_val % eval_batch_size >= 2:
        sizes.append(n_val % eval_batch_size)
    if not sizes:
        return math.nan
    return float(sum(s * math.log(s) for s in sizes) / sum(sizes))


def pretrain_warnings(history: Sequence[dict], *, epochs: int, warmup_epochs: int, chance: float) -> list[str]:
    """Warm-up that never ends; a validation ITC loss not clearly below chance."""
    out = []
    if warmup_epochs >= epochs:
        out.append(f"--warmup-epochs {warmup_epochs} >= --epochs {epochs}: the learning rate never left its linear "
                   "warm-up (it stayed below its set value for the whole run); use fewer warm-up epochs")
    losses = [h["val_loss"] for h in history if isinstance(h.get("val_loss"), (int, float)) and math.isfinite(h["val_loss"])]
    if losses and math.isfinite(chance) and min(losses) > ITC_LEARNED_BELOW * chance:
        out.append(f"pretraining learned nothing measurable: the best validation ITC loss {min(losses):.3f} is not "
                   f"clearly below chance log(batch) = {chance:.3f} (a model that learned something goes below "
                   f"{ITC_LEARNED_BELOW * chance:.3f}); train longer, raise the learning rate, or check the data")
    return out


def constant_warnings(probs: np.ndarray, name: str, split: str, tol: float = 1e-6) -> list[str]:
    """A classifier whose predicted probabilities do not vary (beyond float round-off): it ignores its inputs.

    Only numerically constant outputs count: a model whose probabilities span a narrow range
    can still rank patients well (a frozen cross-attention model on the demo varied by 6e-4 and
    had a test AUC of 0.75); the validation-AUC check speaks for those."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) < 2:
        return []
    spread = float(np.max(probs.max(axis=0) - probs.min(axis=0)))
    if spread < tol:
        return [f"{name}: predictions on the {split} split are constant (probabilities vary by {spread:.2g} at most); "
                "the model ignores its inputs"]
    return []


def cam_warnings(cams: np.ndarray, what: str) -> list[str]:
    """All-zero Grad-CAM maps: no evidence toward the class was found in those images."""
    cams = np.asarray(cams)
    if not len(cams):
        return []
    zero = int((cams.reshape(len(cams), -1).max(axis=1) <= 0).sum())
    if zero == len(cams):
        return [f"every Grad-CAM map of the {what} is all zero: the image encoder gives no evidence toward the class "
                "(a frozen or untrained image branch, or a model that ignores the image)"]
    if zero:
        return [f"{zero} of {len(cams)} Grad-CAM maps of the {what} are all zero"]
    return []


def stage_warnings(run: rundir.Run) -> dict[str, list[str]]:
    """``stage folder -> warnings`` recorded in the ``COMPLETE`` markers of a run (explain folders included)."""
    out: dict[str, list[str]] = {}
    folders = [p for p in sorted(run.root.iterdir()) if p.is_dir()]
    explain = names.explain_dir(run)
    if explain.is_dir():
        folders += [p for p in sorted(explain.iterdir()) if p.is_dir()]
    for p in folders:
        marker = p / rundir.MARKER
        if not marker.is_file():
            continue
        try:
            rec = read_json(marker)
        except (ValueError, OSError):
            continue
        found = [str(w) for w in (rec.get("warnings") or []) if w]
        if found:
            out[str(p.relative_to(run.root))] = found
    return out


def inherited_warnings(run: rundir.Run, stage: str, what: str) -> list[str]:
    """The warnings a finished ``stage`` recorded (its ``COMPLETE`` marker), each named for the stage
    that builds on it: ``"<what> (<stage>/): <warning>"``; [] when it has none or has not run."""
    marker = run.stage(stage) / rundir.MARKER
    if not marker.is_file():
        return []
    try:
        found = read_json(marker).get("warnings") or []
    except (UserError, ValueError, OSError):
        return []
    return [f"{what} ({stage}/): {w}" for w in found]
