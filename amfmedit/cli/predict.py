"""``amfmedit predict``: probabilities for new patients through the saved schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from amfmedit.cli.common import DataDir, Device, Force, RunName, RunsDir, command, console


@command("predict")
def predict(
    table: Annotated[Path, typer.Option("--table", help="CSV or Parquet of new patients (raw values, as before prepare).")],
    stage: Annotated[Optional[str], typer.Option("--stage", help="Classifier folder, e.g. finetune-amf-trainable-seed2022 \\[default: best on validation].")] = None,
    image_column: Annotated[Optional[str], typer.Option("--image-column", help="Column of image paths (relative to the table) \\[default: the schema's].")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output CSV \\[default: <run>/predict/<table>.csv].")] = None,
    run: RunName = None,
    runs_dir: RunsDir = None,
    data_dir: DataDir = None,
    device: Device = "auto",
    force: Force = False,
) -> None:
    """Score new patients with a trained classifier; writes one probability per class."""
    from amfmedit.stages.common import RunOptions
    from amfmedit.stages.predict import PredictConfig
    from amfmedit.stages.predict import predict as run_predict

    opts = RunOptions(runs_dir=runs_dir, run=run, data_dir=data_dir, device=device, force=force)
    res = run_predict(PredictConfig(table=str(table), stage=stage, image_column=image_column,
                                    out=str(out) if out else None), opts)
    console.print(f"{res.n} patients scored with {res.stage} of run {res.run} -> {res.out}")
