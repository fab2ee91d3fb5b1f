"""The run directory: one experiment, one folder per stage, completion markers.

```
<runs-dir>/<run>/
  run.json            data, created, the command lines that touched the run   (written first)
  environment.json    versions, device, Mamba path                             (written first)
  pretrain/           config.json, environment.json, metrics.jsonl, last.pt, best.pt, COMPLETE
  rconf/              rconf.json, one probe folder per modality, COMPLETE
  finetune-<fusion>-<strategy>-seed<N>/, supervised-<modality>-seed<N>/
  evaluate/           results.md, metrics.json, predictions/, roc/, COMPLETE
```

A stage folder without ``COMPLETE`` is unfinished: ``--resume`` continues it, ``--force``
starts it over. A finished stage is never replaced without ``--force``. Commands that
follow another default to the most recent run (``run.json`` ``created``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from amfmedit.errors import UserError, close_matches
from amfmedit.io import LOCKS_DIR, exclusive_lock, lock_file_for, lock_holder, pid_alive, read_json, write_json, write_text
from amfmedit.paths import runs_dir as _runs_dir

RUN_FILE = "run.json"
ENV_FILE = "environment.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
MARKER = "COMPLETE"

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Run:
    """One experiment folder."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def info(self) -> dict:
        return read_json(self.root / RUN_FILE)

    @property
    def data(self) -> str:
        return self.info["data"]

    @property
    def data_dir(self) -> str | None:
        return self.info.get("data_dir")

    def stage(self, name: str) -> Path:
        return self.root / name

    def is_complete(self, name: str) -> bool:
        return (self.root / name / MARKER).is_file()

    def complete_stages(self, prefix: str = "") -> list[str]:
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and p.name.startswith(prefix) and (p / MARKER).is_file()
        )

    def record_command(self, stage: str, argv: list[str] | None = None) -> None:
        """Append the command line to ``run.json`` (what was run, in order)."""
        info = self.info
        argv = list(sys.argv if argv is None else argv)
        if argv:
            argv[0] = Path(argv[0]).name
        info.setdefault("commands", []).append({"time": _now(), "stage": stage, "argv": shlex.join(argv)})
        write_json(self.root / RUN_FILE, info)


def list_runs(runs_dir: str | Path | None = None) -> list[Run]:
    """Runs under the root, oldest first."""
    root = _runs_dir(runs_dir)
    if not root.is_dir():
        return []
    runs = []
    for p in root.iterdir():
        if (p / RUN_FILE).is_file():
            try:
                created = read_json(p / RUN_FILE).get("created", "")
            except (UserError, AttributeError):  # a damaged run.json: not listed (opening it by name says why)
                continue
            runs.append((created, p.name, Run(p)))
    return [r for _, _, r in sorted(runs, key=lambda t: (t[0], t[1]))]


def new_run_name(runs_dir: str | Path | None, data: str, tag: str | None = None) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = "-".join(x for x in (Path(str(data)).name, tag, stamp) if x)
    root = _runs_dir(runs_dir)
    name, i = base, 2
    while (root / name).exists():
        name, i = f"{base}-{i}", i + 1
    return name


def create_run(runs_dir: str | Path | None, name: str, *, data: str, data_dir: str | None, environment: dict) -> Run:
    """Create ``<runs-dir>/<name>/`` with ``run.json`` and ``environment.json`` written first."""
    if not _NAME_OK.match(name):
        raise UserError(f"--run {name!r}: a run name uses letters, digits, '.', '_', '+' and '-' only")
    root = _runs_dir(runs_dir) / name
    if (root / RUN_FILE).exists():
        return Run(root)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / RUN_FILE, {"name": name, "data": str(data), "data_dir": data_dir, "created": _now(), "commands": []})
    write_json(root / ENV_FILE, environment)
    return Run(root)


def open_run(runs_dir: str | Path | None = None, name: str | None = None) -> Run:
    """The run called ``name`` (a name under the root, or a folder path), else the most recent one."""
    root = _runs_dir(runs_dir)
    if name is not None:
        p = Path(name)
        for cand in (p, root / name):
            if (cand / RUN_FILE).is_file():
                return Run(cand)
        names = [r.name for r in list_runs(root)]
        hint = close_matches(str(name), names)
        listing = ", ".join(names[-8:]) if names else "none"
        raise UserError(
            f"--run {name}: no such run in {root}/ (runs there: {listing})"
            + (f"; did you mean {hint}?" if hint else "; pass --runs-dir if it lives elsewhere")
        )
    runs = list_runs(root)
    if not runs:
        raise UserError(f"no run in {root}/; start one with `amfmedit pretrain --data NAME` (or pass --runs-dir / --run)")
    return runs[-1]


def require_stage(run: Run, stage: str, command: str) -> Path:
    """The folder of a finished ``stage``; a UserError naming the command that makes it otherwise."""
    path = run.stage(stage)
    if not (path / MARKER).is_file():
        state = "is unfinished" if path.is_dir() else "has no"
        what = f"{stage}/ {state}" if path.is_dir() else f"{state} {stage}/ stage"
        raise UserError(f"run {run.name} {what}; run `{command}` first")
    return path


def begin_stage(run: Run, stage: str, *, force: bool = False, resume: bool = False, rt=None) -> Path:
    """Prepare the folder of ``stage`` for writing, refusing to clobber finished or unfinished work.

    - absent: created (``resume`` is refused: there is nothing to continue);
    - finished (``COMPLETE``): replaced only with ``force``;
    - unfinished with a checkpoint: continued with ``resume``, restarted with ``force``;
    - unfinished without any checkpoint (stopped before its first epoch ended): restarted.

    ``rt`` (a :class:`amfmedit.train.runtime.Runtime`; None in one process): every rank decides
    from the folder as it was before rank 0 changes it, and all return once it is ready.
    """
    path = run.stage(stage)
    action = "create"
    if path.is_dir() and (path / MARKER).is_file():
        if not force:
            raise UserError(f"{path} is finished; pass --force to replace it" + (" (nothing to resume)" if resume else ""))
    elif path.is_dir():
        if resume:
            action = "keep"
        elif any(path.rglob("last.pt")) and not force:
            raise UserError(f"{path} holds an unfinished stage; continue it with --resume or start over with --force")
    elif resume:
        raise UserError(f"nothing to resume: {path} does not exist; run the command without --resume")
    if rt is not None:
        rt.barrier()
    if action == "create" and (rt is None or rt.is_main):
        remove_tree(path)  # a finished or unfinished folder being replaced; nothing when absent
        path.mkdir(parents=True, exist_ok=True)
    if rt is not None:
        rt.barrier()
    return path


@contextlib.contextmanager
def stage_lock(run: Run, stage: str, *, rt=None):
    """One writer per stage: hold ``<run>/.locks/<stage>.lock`` while the stage is written.

    Take it before :func:`begin_stage` (which may replace a finished folder with ``--force``)
    and hold it until :func:`mark_complete` has run. A second process on the same stage gets
    ``UserError("<stage>: another amfmedit process (pid N) is writing this stage; ...")`` at
    once and must touch nothing. An OS lock (``flock``): the kernel drops it when the holder
    dies, ``kill -9`` included. Under DDP (``rt`` given) rank 0 takes the lock and every rank
    raises the same error when it is busy (no rank is left waiting at a barrier). Yields the
    lock file's path.
    """
    busy = (f"{stage}: another amfmedit process (pid {{pid}}) is writing this stage of run {run.name}; "
            f"wait for it to finish")
    if rt is None or not rt.distributed:
        with exclusive_lock(run.stage(stage), busy) as lock:
            yield lock
        return
    with contextlib.ExitStack() as stack:
        error, lock = None, lock_file_for(run.stage(stage))
        if rt.is_main:
            try:
                stack.enter_context(exclusive_lock(run.stage(stage), busy))
            except UserError as exc:
                error = str(exc)
        error = rt.broadcast_object(error)
        if error is not None:
            raise UserError(error)
        yield lock


def busy_stages(run: Run) -> dict[str, int]:
    """Stages of ``run`` another live process is writing now: stage (lock) name -> its pid.

    Read from the lock files :func:`stage_lock` keeps in ``<run>/.locks/`` (a holder removes its
    file on release; the file of a holder killed with ``kill -9`` names a dead pid and is ignored).
    This process's own locks are left out.
    """
    folder = run.root / LOCKS_DIR
    out: dict[str, int] = {}
    if not folder.is_dir():
        return out
    for lock in sorted(folder.glob("*.lock")):
        name = lock.name.removesuffix(".lock")
        pid = lock_holder(run.stage(name))
        if pid is not None and pid != os.getpid() and pid_alive(pid):
            out[name] = pid
    return out


def mark_complete(path: str | Path, summary: dict | None = None) -> None:
    """Write the ``COMPLETE`` marker last (a short JSON summary, for people and scripts)."""
    write_text(Path(path) / MARKER, json.dumps({"finished": _now(), **(summary or {})}, default=str) + "\n")


def remove_tree(path: str | Path) -> None:
    """Remove a folder (renamed aside first, so a crash never leaves a half-deleted stage in place)."""
    path = Path(path)
    if not path.exists():
        return
    aside = path.with_name(f".{path.name}.deleting-{os.getpid()}")
    os.replace(path, aside)
    shutil.rmtree(aside, ignore_errors=True)
