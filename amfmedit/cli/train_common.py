"""Shared pieces of the training commands (pretrain, rconf, finetune): options and the progress bar.

The engine reports through a callback; this module turns those reports into one Rich
progress bar per training run (epoch, loss, validation metric, samples/s) on rank 0.
"""

from __future__ import annotations

import contextlib
import math
from typing import Annotated, Iterator, List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from amfmedit.cli.common import console

Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted stage exactly where its last epoch ended.")]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the model (faster on GPUs after a warm-up).")]
Epochs = Annotated[Optional[int], typer.Option("--epochs", min=1, help="Maximum number of epochs.")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", min=2, help="Samples per batch (per process under torchrun).")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.")]
Residency = Annotated[
    str,
    typer.Option("--images-in", help="Where images live while training: auto, device, host or stream (from disk)."),
]
Lr = Annotated[Optional[float], typer.Option("--lr", help="Learning rate \\[default: the paper's choice for the stage].")]
Patience = Annotated[int, typer.Option("--patience", min=1, help="Early stopping patience (epochs).")]
SamplerWeights = Annotated[Optional[str], typer.Option("--sampler-weights", help="Per-class sampling weights, or none for plain shuffling \\[default binary: 0.5,5].")]
LossWeights = Annotated[Optional[str], typer.Option("--loss-weights", help="Per-class CE weights α, or none for plain CE \\[default binary: 0.1,2].")]
MaskFeatures = Annotated[Optional[List[str]], typer.Option("--mask-features", help="Incomplete tabular data (§4.2.4): replace these features by their training mean (categorical: training mode) at train and test time; repeat or comma-separate.")]
MaskTopK = Annotated[Optional[int], typer.Option("--mask-top-k", help="Mask the K most important features of the run's IG report (`amfmedit explain --method ig`).")]


def floats(text: str | None, option: str) -> tuple[float, ...] | None:
    """``"0.5,5"`` -> (0.5, 5.0); ``"none"`` -> () (switched off); a bad number is a one-line error."""
    from amfmedit.errors import UserError

    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(float(x) for x in text.replace(" ", "").split(",") if x != "")
    except ValueError:
        raise UserError(f"{option} {text!r}: expected numbers separated by commas, e.g. 0.5,5") from None


def ints(text: str | None, option: str) -> tuple[int, ...] | None:
    from amfmedit.errors import UserError

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
        if self.task is None:
            self.task = self.progress.add_task(self.title, total=p.steps, info="")
        if p.done and p.metrics and self.monitor:
            self.last_metric = p.metrics.get(self.monitor)
        info = f"epoch {p.epoch}/{p.epochs}  loss {_fmt(p.loss)}"
        if self.monitor:
            info += f"  {self.monitor} {_fmt(self.last_metric)}"
        if p.samples_per_s:
            info += f"  {p.samples_per_s:,.0f} samples/s"
        self.progress.update(self.task, completed=p.step, total=p.steps, info=info)
        if p.done and p.epoch < p.epochs:
            self.progress.reset(self.task, total=p.steps, info=info)


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
        console=console,
        transient=False,
    ) as prog:
        yield lambda title, monitor=None: ProgressBar(prog, title, monitor)


def is_main_process() -> bool:
    """Rank 0 under torchrun (only it prints)."""
    import os

    return os.environ.get("RANK", "0") in ("", "0")
