"""How every stage ends: its ``COMPLETE`` marker, then the run report refreshed.

Two forms, one ending (:func:`_finish`), so that a notebook user who calls a stage function
gets the same ``report.md`` as the CLI:

- :func:`finish_stage` for stages trained in place (pretrain, rconf, finetune seeds);
- :func:`staged` for stages built aside and renamed into place (evaluate, explain).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from amfmedit.errors import UserError
from amfmedit.io import staging_dir
from amfmedit.stages import names
from amfmedit.stages.report import refresh_report
from amfmedit.train import rundir


def require_no_writer(run: rundir.Run, command: str) -> None:
    """Refuse a command that reads every finished stage of ``run`` while another process is still
    writing one of them (it would report a partial run without saying so)."""
    busy = rundir.busy_stages(run)
    if not busy:
        return
    name, pid = next(iter(busy.items()))
    shown = names.stage_family(name)
    more = f" (and {len(busy) - 1} more stage{'s' if len(busy) > 2 else ''})" if len(busy) > 1 else ""
    raise UserError(f"run {run.name}: another amfmedit process (pid {pid}) is still writing {shown}{more}; wait "
                    f"for it to finish, then run `{command}` again")


def _finish(run: rundir.Run) -> None:
    refresh_report(run.root)


def finish_stage(run: rundir.Run, folder: str | Path, summary: dict | None = None, *, rt=None) -> None:
    """Mark ``folder`` complete (on rank 0) and refresh ``<run>/report.md``; all ranks wait for it."""
    if rt is None or rt.is_main:
        rundir.mark_complete(folder, summary)
        _finish(run)
    if rt is not None:
        rt.barrier()


@dataclass
class StagedFolder:
    """The temporary folder of a stage being built; set ``summary`` for its ``COMPLETE`` marker."""

    folder: Path
    summary: dict = field(default_factory=dict)


@contextlib.contextmanager
def staged(run: rundir.Run, final: str | Path, *, force: bool = False) -> Iterator[StagedFolder]:
    """Build a stage aside, then mark it complete, rename it into place and refresh the report.

    Nothing appears at ``final`` unless the block finishes; a finished folder there is replaced
    only with ``force`` (:func:`amfmedit.io.staging_dir`), and only by the one process that holds
    the stage's lock (:func:`amfmedit.train.rundir.stage_lock`).
    """
    name = str(Path(final).resolve().relative_to(run.root.resolve()))
    with rundir.stage_lock(run, name):
        with staging_dir(final, force=force) as tmp:
            stage = StagedFolder(Path(tmp))
            yield stage
            rundir.mark_complete(stage.folder, stage.summary)
        _finish(run)
