"""How every stage ends: its ``COMPLETE`` marker, then the run report refreshed; and how a command
that trains stages is recorded in ``run.json`` while it runs (:func:`recorded`).

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
def staged(run: rundir.Run, final: str | Path, *, force: bool = False, refresh: bool = True) -> Iterator[StagedFolder]:
    """Build a stage aside, then mark it complete, rename it into place and refresh the report.

    Nothing appears at ``final`` unless the block finishes; a finished folder there is replaced
    only with ``force`` (:func:`amfmedit.io.staging_dir`), and only by the one process that holds
    the stage's lock (:func:`amfmedit.train.rundir.stage_lock`). ``refresh=False`` leaves the
    report to a stage written next in the same command (one refresh for both).
    """
    name = str(Path(final).resolve().relative_to(run.root.resolve()))
    with rundir.stage_lock(run, name):
        with staging_dir(final, force=force) as tmp:
            stage = StagedFolder(Path(tmp))
            yield stage
            rundir.mark_complete(stage.folder, stage.summary)
        if refresh:
            _finish(run)



@contextlib.contextmanager
def recorded(run: rundir.Run, stage: str, argv: list[str] | None = None, *, rt=None) -> Iterator[None]:
    """Record a command in ``run.json`` for as long as it runs, and refresh the report when it ends.

    ``running`` while the block runs (the report marks it so), then ``finished``; ``refused`` when
    it ends in a :class:`UserError` (bad input, a finished stage, settings that differ from an
    interrupted run: the report leaves it out), ``stopped`` when it is interrupted or fails
    otherwise. Only rank 0 records (``rt``: a :class:`amfmedit.train.runtime.Runtime`, None in one process).
    """
    if rt is not None and not rt.is_main:
        yield
        return
    key = run.record_command(stage, argv, state="running")
    try:
        yield
    except UserError:
        run.set_command_state(key, "refused")
        raise
    except BaseException:
        run.set_command_state(key, "stopped")
        _finish(run)
        raise
    run.set_command_state(key, "finished")
    _finish(run)


def note_command(run: rundir.Run, stage: str, argv: list[str] | None = None) -> None:
    """Record a finished command that wrote into the run outside a stage folder (``predict``), and
    refresh the report that lists it."""
    run.record_command(stage, argv)
    _finish(run)
