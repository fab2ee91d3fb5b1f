"""Run a command on a really full disk: a small tmpfs mounted in a private mount namespace
(``unshare --map-root-user --mount``), so no root and no cleanup are needed and the mount
vanishes with the command. Where the kernel or the sandbox refuses (CI runners often do), the
tests that use it skip; each has a simulated twin that always runs.

Imported as ``from small_disk import on_small_disk`` (tests/ is on pytest's path).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import amfmedit

# $1 size, $2 mount point, $3 output file; the rest is the command. Prints rc=N, then every path
# left on the small disk (relative to it), one a line.
_SCRIPT = r'''
size=$1 mnt=$2 out=$3; shift 3
mount -t tmpfs -o size="$size" tmpfs "$mnt" 2>/dev/null || { echo NO-TMPFS; exit 0; }
"$@" > "$out" 2>&1
echo "rc=$?"
cd "$mnt" && find . -mindepth 1 | sort
'''


@dataclass
class SmallDiskRun:
    rc: int
    output: str  # the command's stdout and stderr
    left: list[str]  # what is on the small disk afterwards (relative paths)

    @property
    def lines(self) -> list[str]:
        return [x for x in self.output.splitlines() if x.strip()]


def on_small_disk(size: str, mount: Path, argv: list[str], *, cwd: Path, env: dict | None = None,
                  timeout: float = 170) -> SmallDiskRun:
    """Run ``argv`` with a ``size`` tmpfs mounted on ``mount`` (an empty folder); skip the test
    where no such mount can be made."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare (a private mount namespace for a small tmpfs)")
    mount.mkdir(parents=True, exist_ok=True)
    out = cwd / f".small-disk-{os.getpid()}.out"
    root = str(Path(amfmedit.__file__).resolve().parents[1])  # this checkout's package first
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c", _SCRIPT, "sh", size, str(mount),
                           str(out), *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or proc.stdout.startswith("NO-TMPFS"):
        pytest.skip(f"no private tmpfs here (unshare/mount refused: {proc.stderr.strip()[:120] or 'NO-TMPFS'})")
    head, *left = proc.stdout.splitlines()
    output = out.read_text(errors="replace")
    out.unlink()
    return SmallDiskRun(int(head.removeprefix("rc=")), output, [x.removeprefix("./") for x in left])


def amfmedit_argv(*args) -> list[str]:
    """The console command as this interpreter runs it."""
    return [sys.executable, "-m", "amfmedit", *map(str, args)]
