"""``amfmedit evaluate``: test metrics, predictions, ROC curves and the Table-2 style report."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markdown import Markdown

from amfmedit.cli.common import DataDir, Device, Force, RunName, RunsDir, command, console
from amfmedit.cli.train_common import Residency


@command("evaluate")
def evaluate(
    split: Annotated[str, typer.Option("--split", help="Split to score: test (default) or val.")] = "test",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per forward pass.")] = 128,
    run: RunName = None,
    runs_dir: RunsDir = None,
    data_dir: DataDir = None,
    device: Device = "auto",
    images_in: Residency = "auto",
    force: Force = False,
) -> None:
    """Score every finished finetune/supervised stage of the run and write <run>/evaluate/."""
    from amfmedit.stages.common import RunOptions
    from amfmedit.stages.evaluate import RESULTS_FILE, EvaluateConfig
    from amfmedit.stages.evaluate import evaluate as run_evaluate

    opts = RunOptions(runs_dir=runs_dir, run=run, data_dir=data_dir, device=device, images_in=images_in, force=force)
    res = run_evaluate(EvaluateConfig(split=split, batch_size=batch_size), opts)
    console.print(Markdown(res.markdown))
    console.print(f"report: {res.stage_dir / RESULTS_FILE}; predictions and ROC curves beside it")
