"""``amfmedit export``: one fine-tuned classifier as a self-contained folder (ONNX, preprocessing, card, hashes)."""


from pathlib import Path
from typing import Annotated, Optional

import typer

from amfmedit.cli.common import command, console, warn
from amfmedit.cli.options import field_option, given, run_options
from amfmedit.stages.configs import ExportConfig, RunOptions

X = ExportConfig


@command("export")
@run_options("run", "runs_dir", "data_dir", "force")
def export(
    opts: RunOptions,
    out: Annotated[Path, typer.Option("--out", help="Folder to write (refused if it exists, unless --force replaces an earlier export).")],
    stage: Annotated[Optional[str], typer.Option("--stage", help="Classifier folder, e.g. finetune-amf-trainable-seed2022 [default: the run's model, as predict chooses it].")] = None,
    batch_size: field_option(X, "batch_size", int, "--batch-size", min=1, help="Rows per forward pass of the ONNX-vs-PyTorch check on the test split.") = None,
) -> None:
    """Write a classifier with its preprocessing, operating point and model card to a folder that `predict --model` runs without the run."""
    from amfmedit.stages.export import export as run_export

    res = run_export(given(ExportConfig(out=str(out), stage=stage), batch_size=batch_size), opts)
    warn(res.warnings)
    console.print(f"model: {res.model_choice}", highlight=False, markup=False)
    console.print(f"{res.stage} of run {res.run} exported to {res.out} (ONNX Runtime vs PyTorch on {res.rows} test rows: "
                  f"max |delta probability| {res.parity:.1e}); score new patients with `amfmedit predict --model "
                  f"{res.out} --table new.csv`", highlight=False, markup=False)
