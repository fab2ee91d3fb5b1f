"""``amfmedit info`` and the console script's one-line notices, in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_info_without_a_compiler_shows_the_kernel_status_and_one_notice_line(tmp_path):
    # A machine without cc (PATH holds none, CC unset, empty cache): the console script prints the
    # fallback notice once, as one line, and `info` names the reason in its own row.
    (tmp_path / "bin").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "AMFMEDIT_NATIVE_SCAN", "AMFMEDIT_SCAN")}
    env.update(PATH=str(tmp_path / "bin"), AMFMEDIT_CACHE=str(tmp_path / "cache"), COLUMNS="200",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "amfmedit", "info"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("warning: native CPU kernels unavailable: no C compiler"), lines[0]
    assert "AMFMEDIT_NATIVE_SCAN=0" in lines[0]
    row = next(ln for ln in proc.stdout.splitlines() if "native CPU kernels" in ln)
    assert "no C compiler" in row
