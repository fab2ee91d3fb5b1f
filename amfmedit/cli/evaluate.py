"""``amfmedit evaluate``: test metrics with intervals, operating points, calibration, comparisons, figures."""


from rich.markdown import Markdown
from rich.markup import escape

from amfmedit.cli.common import command, console, err_console
from amfmedit.cli.finetune import number_list
from amfmedit.cli.options import field_option, given, run_options
from amfmedit.stages.configs import EvaluateConfig, RunOptions
from amfmedit.stages.kinds.survival import HORIZONS_DEFAULT as HORIZONS_SHOWN

E = EvaluateConfig


@command("evaluate")
@run_options("run", "runs_dir", "data_dir", "device", "images_in")
def evaluate(
    opts: RunOptions,
    split: field_option(E, "split", str, "--split", help="Split to score: test or val.") = None,
    batch_size: field_option(E, "batch_size", int, "--batch-size", min=1, help="Samples per forward pass.") = None,
    threshold: field_option(E, "threshold", str, "--threshold",
                            help="Operating point, chosen on the validation split and applied to the scored one: "
                                 "youden, sensitivity:0.9, specificity:0.95 or a number in (0, 1).") = None,
    missingness_sweep: field_option(E, "missingness_sweep", str, "--missingness-sweep",
                                    help="Also score every model with this share of each test row's features "
                                         "removed at random (MCAR), e.g. 0,0.1,0.3,0.5 or 0:0.5:0.1; a table and "
                                         "a figure in results.md.") = None,
    image_drop: field_option(E, "image_drop", str, "--image-drop",
                             help="Also score every model with the image removed for this share of the test "
                                  "patients who have one, e.g. 0,0.2,0.5.") = None,
    horizons: field_option(E, "horizons", str, "--horizons", shown=HORIZONS_SHOWN,
                           help="Survival: times (in the time column's unit) of the time-dependent AUC, Brier score, "
                                "calibration and survival probabilities, e.g. 1,2,5.") = None,
) -> None:
    """Score every finished finetune/supervised stage of the run and write <run>/evaluate/ (recomputed each time)."""
    from amfmedit.stages.evaluate import COMPARISONS_MD, OPERATING_FILE, RESULTS_FILE
    from amfmedit.stages.evaluate import evaluate as run_evaluate

    sweep = {k: tuple(number_list(v, option)) for k, v, option in
             (("missingness_sweep", missingness_sweep, "--missingness-sweep"),
              ("image_drop", image_drop, "--image-drop")) if v is not None}
    res = run_evaluate(given(EvaluateConfig(), split=split, batch_size=batch_size, threshold=threshold,
                                horizons=horizons, **sweep),
                       opts)
    console.print(Markdown(res.terminal))
    for w in res.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    console.print(f"written to {res.stage_dir}: {RESULTS_FILE} (full tables), {COMPARISONS_MD} (every pair, every "
                  f"metric), {OPERATING_FILE} (thresholds and temperatures for predict), figures, predictions/",
                  highlight=False, markup=False)
