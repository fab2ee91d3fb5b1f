"""Shared pieces of the training commands (pretrain, rconf, finetune): options and the progress bar.

The engine reports through a callback; this module turns those reports into one Rich
progress bar per training run (epoch, loss, validation metric, samples/s) on rank 0.
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Annotated, Iterator, List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from amfmedit.cli.common import console
from amfmedit.cli.options import derived_option, field_option, given
from amfmedit.errors import UserError
from amfmedit.models.losses import OL3I_CLASS_WEIGHTS
from amfmedit.stages.classify import Recipe
from amfmedit.stages.kinds.classification import BINARY_SAMPLER_WEIGHTS

def epochs_option(cls: type):
    return field_option(cls, "epochs", int, "--epochs", min=1, help="Maximum number of epochs.")


def batch_size_option(cls: type):
    return field_option(cls, "batch_size", int, "--batch-size", min=2,
                        help="Samples per batch (per process under torchrun).")


def lr_option(shown: str):
    return derived_option(float, "--lr", help="Learning rate.", shown=shown, source=("lr",))


Lrs = field_option(Recipe, "lrs", str, "--lrs",
                   help="Learning rates searched on validation with the first seed when --lr is not given.")
Patience = field_option(Recipe, "patience", int, "--patience", min=1, help="Early stopping patience (epochs).")
SamplerWeights = derived_option(
    str, "--sampler-weights", help="Per-class sampling weights, or none for plain shuffling.",
    shown=f"binary tasks {','.join(f'{w:g}' for w in BINARY_SAMPLER_WEIGHTS)}, else none",
    source=("amfmedit.stages.kinds.classification", "BINARY_SAMPLER_WEIGHTS"))
LossWeights = derived_option(
    str, "--loss-weights", help="Per-class CE weights α (eq. 12), or none for plain CE.",
    shown=f"binary tasks {','.join(f'{w:g}' for w in OL3I_CLASS_WEIGHTS)}, else none",
    source=("amfmedit.models.losses", "OL3I_CLASS_WEIGHTS"))
MaskFeatures = Annotated[Optional[List[str]], typer.Option("--mask-features", help="Incomplete tabular data (§4.2.4): replace these features by their training mean (categorical: training mode) at train and test time; repeat or comma-separate.")]
MaskTopK = Annotated[Optional[int], typer.Option("--mask-top-k", help="Mask the K most important features of the run's IG report (`amfmedit explain --method ig`).")]


def recipe_from(base: Recipe | None = None, *, lrs: str | None = None, sampler_weights: str | None = None,
                loss_weights: str | None = None, **typed) -> Recipe:
    """The recipe with what the user typed (None: not given) applied; text lists parsed here."""
    return given(base or Recipe(), lrs=floats(lrs, "--lrs"), sampler_weights=floats(sampler_weights, "--sampler-weights"),
                 loss_weights=floats(loss_weights, "--loss-weights"), **typed)


def floats(text: str | None, option: str) -> tuple[float, ...] | None:
    """``"0.5,5"`` -> (0.5, 5.0); ``"none"`` -> () (switched off); a bad number is a one-line error."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(float(x) for x in text.replace(" ", "").split(",") if x != "")
    except ValueError:
        raise UserError(f"{option} {text!r}: expected numbers separated by commas, e.g. 0.5,5") from None


def ints(text: str | None, option: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    out = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part[1:]:  # a range like 2022-2026
            lo, hi = part.split("-", 1)
            try:
                out.extend(range(int(lo), int(hi) + 1))
            except ValueError:
                raise UserError(f"{option} {text!r}: expected integers or ranges, e.g. 2022-2026 or 1,2,3") from None
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise UserError(f"{option} {text!r}: expected integers or ranges, e.g. 2022-2026 or 1,2,3") from None
    return tuple(out)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"


class ProgressBar:
    """A callable for :func:`amfmedit.train.fit`'s ``progress`` that draws a Rich bar."""

    def __init__(self, progress: Progress, title: str, monitor: str | None) -> None:
        self.progress = progress
        self.title = title
        self.monitor = monitor
        self.task = None
        self.last_metric = None

    def __call__(self, p) -> None:
        # One bar for the whole training (epochs x steps), so elapsed and remaining time are the
        # stage's, not the epoch's; it stops short when early stopping ends the training.
        total = p.epochs * p.steps
        if self.task is None:
            self.task = self.progress.add_task(self.title, total=total, info="")
        if p.done and p.metrics and self.monitor:
            self.last_metric = p.metrics.get(self.monitor)
        info = f"epoch {p.epoch}/{p.epochs}  loss {_fmt(p.loss)}"
        if self.monitor:
            info += f"  {self.monitor} {_fmt(self.last_metric)}"
        if p.samples_per_s:
            info += f"  {p.samples_per_s:,.0f} samples/s"
        self.progress.update(self.task, completed=(p.epoch - 1) * p.steps + p.step, total=total, info=info)


@contextlib.contextmanager
def progress_bars(enabled: bool = True) -> Iterator[callable]:
    """Yields ``make(title, monitor) -> callback`` (or ``None`` callbacks when disabled)."""
    if not enabled:
        yield lambda title, monitor=None: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as prog:
        yield lambda title, monitor=None: ProgressBar(prog, title, monitor)


def is_main_process() -> bool:
    """Rank 0 under torchrun (only it prints)."""
    return os.environ.get("RANK", "0") in ("", "0")
