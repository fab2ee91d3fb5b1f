"""kill -9 of `prepare`: no worker process outlives it, and the next prepare leaves no stale folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from amfmedit.data.prepare import apply_overrides
    from amfmedit.stages.prepare import prepare
    from amfmedit.data.spec import load_spec

    def progress(phase, done, total):
        if phase == "images" and 0 < done < total:  # mid-way through the image conversion
            Path(sys.argv[2]).write_text("converting")
            time.sleep(120)  # until killed

    if __name__ == "__main__":
        spec = apply_overrides(load_spec("synthetic-ol3i"), image_size=16)
        prepare(spec, data_dir=sys.argv[1], synthetic=dict(patients=120, seed=3, features=16, prevalence=0.3),
                workers=2, progress=progress)
''')


def _descendants(root: int) -> set[int]:
    """Pids of every live process below ``root`` (from /proc)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_bytes()
            except OSError:
                continue
            parent[int(d.name)] = int(stat.rsplit(b")", 1)[1].split()[1])
    out, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - out
        out |= frontier
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"  # a zombie has exited


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_kill_9_leaves_no_worker_and_the_next_prepare_no_stale_folder(tmp_path):
    from amfmedit.data.prepare import apply_overrides
    from amfmedit.stages.prepare import prepare
    from amfmedit.data.spec import load_spec

    data, marker, script = tmp_path / "data", tmp_path / "converting", tmp_path / "run_prepare.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(data), str(marker)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "prepare never reached the image conversion"
            time.sleep(0.05)
        children = _descendants(proc.pid)
        assert len(children) >= 2  # the forkserver and its workers
        stale = sorted(p.name for p in data.iterdir() if p.name.startswith("."))
        assert any(n.endswith(".partial") for n in stale) and any(n.endswith(".raw") for n in stale), stale
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in children if _alive(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    assert not (data / "synthetic-ol3i").exists()  # a killed prepare is never taken for a finished one
    spec = apply_overrides(load_spec("synthetic-ol3i"), image_size=16)
    prepare(spec, data_dir=data, synthetic=dict(patients=60, seed=3, features=16, prevalence=0.3), workers=1)
    assert sorted(p.name for p in data.iterdir()) == ["synthetic-ol3i"]  # the dead run's folders are gone
