"""Shared pieces of the training commands (pretrain, rconf, finetune): options and progress.

The engine reports through a callback; this module turns those reports, on rank 0, into one
Rich progress bar per training run on a terminal (epoch, loss, validation metric, samples/s,
then ``elapsed<remaining`` time; on a narrow terminal the numbers take a line of their own, so
none is cut), or into one plain line per finished epoch when the output is a file or a pipe.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Annotated, Iterator, List, Optional

import typer
from rich.console import Console, ConsoleOptions, RenderResult
from rich.padding import Padding
from rich.progress import Progress, TimeElapsedColumn, TimeRemainingColumn
from rich.progress_bar import ProgressBar as BarRenderable
from rich.table import Table
from rich.text import Text

from amfmedit.cli.common import console
from amfmedit.cli.options import derived_option, field_option, given
from amfmedit.errors import UserError
from amfmedit.models.specs import OL3I_CLASS_WEIGHTS
from amfmedit.stages.configs import Recipe
from amfmedit.stages.kinds.classification import BINARY_SAMPLER_WEIGHTS


def epochs_option(cls: type):
    return field_option(cls, "epochs", int, "--epochs", min=1, help="Maximum number of epochs.")


def batch_size_option(cls: type):
    return field_option(cls, "batch_size", int, "--batch-size", min=2,
                        help="Samples per batch (per process under torchrun).")


def lr_option(shown: str, source: tuple = ()):
    return derived_option(float, "--lr", help="Learning rate.", shown=shown, source=source)


Lrs = field_option(Recipe, "lrs", str, "--lrs",
                   help="Learning rates searched on validation with the first seed when --lr is not given.")
Patience = field_option(Recipe, "patience", int, "--patience", min=1, help="Early stopping patience (epochs).")
SamplerWeights = derived_option(
    str, "--sampler-weights", help="Per-class sampling weights, or none for plain shuffling.",
    shown=f"binary tasks {','.join(f'{w:g}' for w in BINARY_SAMPLER_WEIGHTS)}, else none",
    source=(("amfmedit.stages.kinds.classification", "BINARY_SAMPLER_WEIGHTS"),))
LossWeights = derived_option(
    str, "--loss-weights", help="Per-class CE weights α (eq. 12), or none for plain CE.",
    shown=f"binary tasks {','.join(f'{w:g}' for w in OL3I_CLASS_WEIGHTS)}, else none",
    source=(("amfmedit.models.specs", "OL3I_CLASS_WEIGHTS"),))
LossName = field_option(
    Recipe, "loss", str, "--loss",
    help="Training loss: ce (cross-entropy, eq. 12/13) or focal (Lin et al. 2017, --loss-weights as α; "
         "the authors' OL3I loss).", shown="the task's own (classification: ce)")
FocalGamma = field_option(Recipe, "focal_gamma", float, "--focal-gamma", min=0,
                          help="γ of --loss focal (0: eq. 12).")
ValEvery = field_option(Recipe, "val_every", int, "--val-every", min=0,
                       help="Validate after every N-th training batch (the authors' code: 5), 0 once per epoch; "
                            "the best of all validations is kept, early stopping looks at each epoch's last.")
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


def _numbers(p, monitor: str | None, metric) -> str:
    """The figures of one progress report: ``epoch 3/500  loss 0.6931  val_auc 0.8123  1,234 samples/s``."""
    text = f"epoch {p.epoch}/{p.epochs}  loss {_fmt(p.loss)}"
    if monitor:
        text += f"  {monitor} {_fmt(metric)}"
    if p.samples_per_s:
        text += f"  {p.samples_per_s:,.0f} samples/s"
    return text


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
        self.progress.update(self.task, completed=(p.epoch - 1) * p.steps + p.step, total=total,
                             info=_numbers(p, self.monitor, self.last_metric))


class EpochLines:
    """A ``progress`` callable for output that is not a terminal: one plain line per finished epoch
    (a bar redrawn in place means nothing in a log file, and Rich would print it only at the end)."""

    def __init__(self, console: Console, title: str, monitor: str | None) -> None:
        self.console = console
        self.title = title
        self.monitor = monitor
        self.started = self.first_epoch = None

    def __call__(self, p) -> None:
        if self.started is None:  # a resumed training starts at a later epoch
            self.started, self.first_epoch = time.monotonic(), p.epoch
        if not p.done:
            return
        elapsed = time.monotonic() - self.started
        metric = (p.metrics or {}).get(self.monitor) if self.monitor else None
        # at most this much is left: early stopping may end the training sooner
        left = elapsed / (p.epoch - self.first_epoch + 1) * (p.epochs - p.epoch)
        self.console.print(f"{self.title}  {_numbers(p, self.monitor, metric)}  elapsed {_clock(elapsed)}"
                           f"  left <= {_clock(left)}", markup=False, highlight=False, soft_wrap=True)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


_MIN_BAR = 10  # the narrowest bar worth drawing, in columns


class _Bars:
    """Every task of a :class:`Progress` as its title, a bar, ``done/total``, its numbers (the
    ``info`` field) and ``elapsed<remaining`` time: on one line when the width allows; else the
    numbers on a line of their own (and a title too long to share a line with the bar on its
    own line), wrapped, never cut."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.elapsed, self.remaining = TimeElapsedColumn(), TimeRemainingColumn()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        for task in self.progress.tasks:
            count = f"{int(task.completed)}/{int(task.total)}" if task.total is not None else f"{int(task.completed)}"
            times = Text.assemble(self.elapsed.render(task), "<", self.remaining.render(task))
            numbers = Text(task.fields.get("info", ""))
            title = Text(task.description)
            bar = BarRenderable(total=task.total, completed=task.completed, pulse=not task.started)
            beside_bar = len(count) + len(times) + _MIN_BAR + 2
            if len(title) + beside_bar + len(numbers) + 2 <= width:
                yield _row(title, bar, count, numbers, times)
                continue
            if len(title) + 1 + beside_bar <= width:
                yield _row(title, bar, count, times)
            else:
                yield Text(task.description, overflow="fold")
                yield _row(bar, count, times)
            yield Padding(numbers, (0, 0, 0, 2))


def _row(*cells) -> Table:
    grid = Table.grid(padding=(0, 1), expand=True)
    for cell in cells:
        if isinstance(cell, BarRenderable):
            grid.add_column(ratio=1, min_width=_MIN_BAR)
        else:
            grid.add_column(no_wrap=True)
    grid.add_row(*cells)
    return grid


class _NarrowSafeProgress(Progress):
    def get_renderables(self):
        yield _Bars(self)


@contextlib.contextmanager
def progress_bars(enabled: bool = True) -> Iterator[callable]:
    """Yields ``make(title, monitor) -> callback`` (or ``None`` callbacks when disabled): Rich bars on
    a terminal, one line per epoch otherwise (:class:`EpochLines`)."""
    if not enabled:
        yield lambda title, monitor=None: None
        return
    if not (console.is_terminal or console.is_jupyter):
        yield lambda title, monitor=None: EpochLines(console, title, monitor)
        return
    with _NarrowSafeProgress(console=console, transient=False) as prog:
        yield lambda title, monitor=None: ProgressBar(prog, title, monitor)


def is_main_process() -> bool:
    """Rank 0 under torchrun (only it prints)."""
    return os.environ.get("RANK", "0") in ("", "0")
