"""A kill -9 during a checkpoint write leaves a temporary sibling; the next write removes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import torch

from amfmedit.io import temp_owner
from amfmedit.train.checkpoint import load_checkpoint, save_checkpoint

WRITER = textwrap.dedent('''
    import sys, time
    from amfmedit.io import atomic_path
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"half a checkpoint" * 1000)
        print(tmp, flush=True)
        time.sleep(120)  # killed here, mid-write
''')


def _killed_mid_write(path) -> str:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        tmp = proc.stdout.readline().strip()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return tmp


def test_next_write_in_a_stage_folder_removes_temporaries_of_dead_writers_only(tmp_path):
    stage = tmp_path / "finetune-amf-frozen-seed2022"
    stage.mkdir()
    dead = _killed_mid_write(stage / "last.pt")
    assert os.path.exists(dead) and temp_owner(dead)[0] == "last.pt"
    # a live writer's temporary (the pid of this test's parent process) must survive
    live = stage / f".last.pt.pid{os.getppid()}.abc123.pt.tmp"
    live.write_bytes(b"being written")
    other = stage / f".best.pt.pid{temp_owner(dead)[1]}.zz.pt.tmp"  # the dead writer's best.pt, never rewritten
    other.write_bytes(b"x")
    kept = stage / ".best.pt.4a7.tmp"  # no owner pid in the name (not ours to judge): left alone
    kept.write_bytes(b"x")
    save_checkpoint(stage / "last.pt", {"epoch": 1, "w": torch.ones(3)})
    assert load_checkpoint(stage / "last.pt")["epoch"] == 1
    assert sorted(p.name for p in stage.iterdir()) == sorted(["last.pt", live.name, kept.name])
