"""``amfmedit predict``: probabilities and decisions for new patients through the saved schema."""


from pathlib import Path
from typing import Annotated, Optional

import typer

from amfmedit.cli.common import command, console, warn
from amfmedit.cli.options import field_option, given, run_options
from amfmedit.stages.configs import PredictConfig, RunOptions

P = PredictConfig


@command("predict")
@run_options("run", "runs_dir", "data_dir", "device", "force")
def predict(
    opts: RunOptions,
    table: Annotated[Path, typer.Option("--table", help="CSV or Parquet of new patients (raw values, as before prepare).")],
    stage: Annotated[Optional[str], typer.Option("--stage", help="Classifier folder, e.g. finetune-amf-trainable-seed2022 [default: the best multimodal one on validation].")] = None,
    image_column: Annotated[Optional[str], typer.Option("--image-column", help="Column of image paths (relative to the table) [default: the schema's].")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output CSV [default: <run>/predict/<table>.csv].")] = None,
    batch_size: field_option(P, "batch_size", int, "--batch-size", min=1, help="Patients per forward pass.") = None,
    calibration: field_option(P, "calibration", str, "--calibration",
                              help="Probabilities temperature-scaled as fitted on validation by evaluate "
                                   "(temperature) or as trained (none).") = None,
    horizons: field_option(P, "horizons", str, "--horizons", shown="the horizons evaluate used",
                           help="Survival: times of the survival probabilities written, e.g. 1,2,5.") = None,
    skip_bad_rows: Annotated[bool, typer.Option("--skip-bad-rows", metavar="", help="Score the rows that can be scored and list the others (id, what is wrong) in <out>.skipped.csv; without it one bad row stops the whole table, naming every bad row.")] = False,
    model: Annotated[Optional[Path], typer.Option("--model", help="A folder written by `amfmedit export`: score with it alone, no run needed (its files are checked against their hashes first); the output defaults to <table>.predictions.csv beside the table.")] = None,
    runtime: field_option(P, "runtime", str, "--runtime",
                          help="With --model: auto (PyTorch: the faster on the CPUs measured, docs/export.md), pytorch or onnxruntime.") = None,
) -> None:
    """Score new patients with a trained classifier; writes probabilities and the decision at the threshold evaluate chose."""
    from amfmedit.stages.predict import predict as run_predict

    cfg = PredictConfig(table=str(table), stage=stage, image_column=image_column, out=str(out) if out else None,
                        model=str(model) if model else None)
    res = run_predict(given(cfg, batch_size=batch_size, calibration=calibration, skip_bad_rows=skip_bad_rows or None,
                            horizons=horizons, runtime=runtime), opts)
    warn(res.warnings)
    how = f"decisions at the {res.threshold_name} threshold" if res.threshold_name else \
        ("no decisions" if "decision" in res.columns else ", ".join(res.columns))
    console.print(f"model: {res.model_choice}", highlight=False, markup=False)
    source = f"the export {res.run}" if model else f"run {res.run}"
    console.print(f"{res.n} patients scored with {res.stage} of {source} ({how}) -> {res.out}", highlight=False,
                  markup=False)
