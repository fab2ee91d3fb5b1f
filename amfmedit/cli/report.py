"""``amfmedit report``: (re)write ``<run>/report.md``, the page a person reads top to bottom."""

from __future__ import annotations

from amfmedit.cli.common import command, console
from amfmedit.cli.options import run_options
from amfmedit.stages.configs import RunOptions
from amfmedit.train import rundir


@command("report")
@run_options("run", "runs_dir")
def report(opts: RunOptions) -> None:
    """Write <run>/report.md: data, pretraining curves, R_conf, results table, IG top-10, CAM examples."""
    from amfmedit.stages.report import write_report

    path = write_report(rundir.open_run(opts.runs_dir, opts.run))
    console.print(f"report: {path}", highlight=False, markup=False)
