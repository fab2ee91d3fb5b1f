"""``amfmedit report``: (re)write ``<run>/report.md``, the page a person reads top to bottom."""

from __future__ import annotations

from amfmedit.cli.common import RunName, RunsDir, command, console


@command("report")
def report(run: RunName = None, runs_dir: RunsDir = None) -> None:
    """Write <run>/report.md: data, pretraining curves, R_conf, results table, IG top-10, CAM examples."""
    from amfmedit.explain.report import write_report
    from amfmedit.train import rundir

    path = write_report(rundir.open_run(runs_dir, run))
    console.print(f"report: {path}")
