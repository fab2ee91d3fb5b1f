"""``amfmedit baseline``: logistic regression, gradient-boosted trees and late fusion beside the neural models."""

from typing import Annotated, List, Optional

import typer
from rich.table import Table

from amfmedit.cli.common import command, console
from amfmedit.cli.options import field_option, given, run_options
from amfmedit.cli.train_common import ints
from amfmedit.stages.baseline_models import BASELINES
from amfmedit.stages.configs import BaselineConfig, RunOptions

B = BaselineConfig
_SHORT = {"learning_rate": "lr", "max_leaf_nodes": "leaves", "l2_regularization": "l2"}  # the table's 80 columns


@command("baseline")
@run_options("run", "runs_dir", "data_dir", "device", "force", "quiet")
def baseline(
    opts: RunOptions,
    quiet: bool,
    model: Annotated[Optional[List[str]], typer.Option(
        "--model", help=f"Baseline to fit, repeat for more: {', '.join(f'{k} ({v.title})' for k, v in BASELINES.items())} "
                        f"[default: all]")] = None,
    seeds: field_option(B, "seeds", str, "--seeds", help="Seeds, e.g. 2022-2026 or 2022,2023; hyper-parameters "
                                                          "are chosen on validation with the first.") = None,
    pca_components: field_option(B, "pca_components", int, "--pca-components", min=1,
                                 help="Late fusion: principal components of the frozen image embedding, fitted on "
                                      "the training rows.") = None,
    batch_size: field_option(B, "batch_size", int, "--batch-size", min=1,
                             help="Late fusion: images per pass of the frozen encoder.") = None,
) -> None:
    """Fit the tabular baselines in the run (one stage folder per model and seed), for `amfmedit evaluate`."""
    cfg = given(BaselineConfig(), models=tuple(model) if model else None, seeds=ints(seeds, "--seeds"),
                pca_components=pca_components, batch_size=batch_size)
    say = None if quiet else (lambda text: console.print(text, highlight=False, markup=False))
    from amfmedit.stages.baseline import baseline as run_baseline

    res = run_baseline(cfg, opts, progress=say)
    label = res.metric.upper()
    table = Table(title=f"Baselines of run {res.run} (chosen on the validation split)", title_justify="left")
    for col in ("stage", "hyper-parameters", "rounds", f"val {label}"):
        table.add_column(col, justify="right" if col in ("rounds", f"val {label}") else "left")
    for r in res.stages:
        params = " ".join(f"{_SHORT.get(k, k)}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                          for k, v in r["params"].items())
        table.add_row(r["stage"], params, str(r["iterations"]), f"{r[f'val_{res.metric}']:.4f}")
    console.print(table)
    console.print("next: `amfmedit evaluate` ranks them beside the neural models", highlight=False, markup=False)
