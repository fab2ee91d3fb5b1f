"""``amfmedit study``: the paper's whole study on a prepared cohort, planned, timed, resumable, reported."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from amfmedit.cli.common import command, console, err_console
from amfmedit.cli.options import run_options
from amfmedit.errors import UserError
from amfmedit.stages.configs import RunOptions

_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: str | None) -> float | None:
    """``--budget``: ``90s``, ``20m``, ``1.5h`` or ``1h30m`` -> seconds."""
    if text is None:
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(h|min|m|s)", text.strip().lower())
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", text.strip().lower()):
        raise UserError(f"--budget {text}: give a duration such as 20m, 2h or 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise UserError(f"--budget {text}: must be longer than zero")
    return seconds


@command("study")
@run_options("runs_dir", "data_dir", "device", "images_in", "quiet")
def study(
    opts: RunOptions,
    data: Annotated[Optional[str], typer.Option("--data", help="Prepared dataset to study (a name in the data dir).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="A TOML file choosing what the study runs "
                                                                    "([study] keys: see docs/study.md).")] = None,
    budget: Annotated[Optional[str], typer.Option("--budget", help="Fit the study into this time (20m, 2h, 1h30m): "
                                                                   "shorter epochs, then optional arms dropped, then "
                                                                   "fewer seeds; the plan says which.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Study folder in the runs dir [default: "
                                                               "<data>-study].")] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", help="A preset for every stage (e.g. cpu).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", metavar="", help="Plan (with the pilot's timings) and stop.")] = False,
    quiet: bool = False,
) -> None:
    """Run the paper's study on a prepared cohort: pretraining, R_conf, every fusion, the baselines and
    experiments, evaluate, explain, one report (study/report.html). A second call resumes."""
    from amfmedit.stages.study import PLAN_FILE, run_study
    from amfmedit.stages.study_plan import load_study_config

    cfg = load_study_config(config, data=data, name=name, recipe=recipe, budget_s=parse_duration(budget))
    say = (lambda text: None) if quiet else (lambda text: err_console.print(text, markup=False, highlight=False))
    res = run_study(cfg, opts, line=say, dry_run=dry_run)
    plan = res.plan
    console.print(f"plan: {res.folder / PLAN_FILE} ({len(plan.steps)} steps, {plan.n_trainings()} training runs, "
                  f"estimated {plan.total_estimate() / 60:.1f} min)", markup=False, highlight=False)
    for note in plan.notes:
        console.print(f"  {note}", markup=False, highlight=False)
    if dry_run:
        return
    for step, why in res.failed.items():
        err_console.print(f"failed: {step}: {why}", markup=False, highlight=False)
    console.print(f"study finished in {res.seconds / 60:.1f} min: {len(res.done)} steps done, {len(res.failed)} "
                  f"failed, {len(res.skipped)} skipped; report: {res.html}", markup=False, highlight=False)
    if res.failed:
        raise typer.Exit(1)
