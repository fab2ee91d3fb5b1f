"""``amfmedit evaluate``: test metrics, predictions, ROC curves and the Table-2 style report."""


from rich.markdown import Markdown

from amfmedit.cli.common import command, console
from amfmedit.cli.options import field_option, given, run_options
from amfmedit.stages.common import RunOptions
from amfmedit.stages.evaluate import RESULTS_FILE, EvaluateConfig
from amfmedit.stages.evaluate import evaluate as run_evaluate

E = EvaluateConfig


@command("evaluate")
@run_options("run", "runs_dir", "data_dir", "device", "images_in")
def evaluate(
    opts: RunOptions,
    split: field_option(E, "split", str, "--split", help="Split to score: test or val.") = None,
    batch_size: field_option(E, "batch_size", int, "--batch-size", min=1, help="Samples per forward pass.") = None,
) -> None:
    """Score every finished finetune/supervised stage of the run and write <run>/evaluate/ (recomputed each time)."""
    res = run_evaluate(given(EvaluateConfig(), split=split, batch_size=batch_size), opts)
    console.print(Markdown(res.markdown))
    console.print(f"report: {res.stage_dir / RESULTS_FILE}; predictions and ROC curves beside it", highlight=False)
