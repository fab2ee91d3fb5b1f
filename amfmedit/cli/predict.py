"""``amfmedit predict``: probabilities for new patients through the saved schema."""


from pathlib import Path
from typing import Annotated, Optional

import typer

from amfmedit.cli.common import command, console
from amfmedit.cli.options import field_option, run_options
from amfmedit.stages.common import RunOptions
from amfmedit.stages.predict import PredictConfig
from amfmedit.stages.predict import predict as run_predict


@command("predict")
@run_options("run", "runs_dir", "data_dir", "device", "force")
def predict(
    opts: RunOptions,
    table: Annotated[Path, typer.Option("--table", help="CSV or Parquet of new patients (raw values, as before prepare).")],
    stage: Annotated[Optional[str], typer.Option("--stage", help="Classifier folder, e.g. finetune-amf-trainable-seed2022 \\[default: the best multimodal one on validation].")] = None,
    image_column: Annotated[Optional[str], typer.Option("--image-column", help="Column of image paths (relative to the table) \\[default: the schema's].")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output CSV \\[default: <run>/predict/<table>.csv].")] = None,
    batch_size: field_option(PredictConfig, "batch_size", int, "--batch-size", min=1, help="Patients per forward pass.") = None,
) -> None:
    """Score new patients with a trained classifier; writes one probability per class."""
    cfg = PredictConfig(table=str(table), stage=stage, image_column=image_column, out=str(out) if out else None)
    if batch_size is not None:
        cfg.batch_size = batch_size
    res = run_predict(cfg, opts)
    console.print(f"{res.n} patients scored with {res.stage} of run {res.run} -> {res.out}", highlight=False,
                  markup=False)
