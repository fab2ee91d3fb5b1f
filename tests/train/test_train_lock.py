"""One writer per stage (and per prepared dataset): an OS lock, refused at once, free after kill -9."""

from __future__ import annotations

import multiprocessing as mp
import time
import os
import signal
from pathlib import Path

import pytest

from amfmedit.errors import UserError
from amfmedit.io import exclusive_lock, lock_file_for
from amfmedit.train import rundir


def _hold_stage(runs: str, ready) -> None:
    run = rundir.Run(Path(runs) / "r1")
    with rundir.stage_lock(run, "finetune-amf-frozen-seed2022"):
        ready.set()
        time.sleep(120)  # until killed


def _run(tmp_path):
    (tmp_path / "r1").mkdir(parents=True, exist_ok=True)
    return rundir.Run(tmp_path / "r1")


def test_second_process_gets_the_holder_pid_and_the_lock_is_free_after_kill_9(tmp_path):
    run = _run(tmp_path)
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_stage, args=(str(tmp_path), ready))
    holder.start()
    try:
        assert ready.wait(60), "the holder never took the lock"
        assert lock_file_for(run.stage("finetune-amf-frozen-seed2022")) == tmp_path / "r1/.locks/finetune-amf-frozen-seed2022.lock"
        with pytest.raises(UserError, match=rf"^finetune-amf-frozen-seed2022: another amfmedit process "
                                            rf"\(pid {holder.pid}\) is writing this stage of run r1; "
                                            rf"wait for it to finish$"):
            with rundir.stage_lock(run, "finetune-amf-frozen-seed2022"):
                pytest.fail("two writers on one stage")
        with rundir.stage_lock(run, "pretrain"):  # another stage of the same run is not blocked
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        assert holder.exitcode == -signal.SIGKILL
        with rundir.stage_lock(run, "finetune-amf-frozen-seed2022") as path:  # the kernel released it
            assert path.read_text().strip() == str(os.getpid())
            with rundir.stage_lock(run, "finetune-amf-frozen-seed2022"):  # nesting in one process is fine
                pass
            assert path.exists()
    finally:
        if holder.is_alive():
            holder.kill()
        holder.join(10)
    assert not (tmp_path / "r1" / ".locks").exists()  # released: the run folder is as it was


def test_a_finished_holder_releases_and_leaves_nothing(tmp_path):
    target = tmp_path / "data" / "ol3i"
    with exclusive_lock(target, "{pid} busy"):
        assert (tmp_path / "data/.locks/ol3i.lock").is_file()
    assert list((tmp_path / "data").iterdir()) == []
    with pytest.raises(RuntimeError):
        with exclusive_lock(target, "{pid} busy"):
            raise RuntimeError("a failing writer")
    assert list((tmp_path / "data").iterdir()) == []
    with exclusive_lock(target, "{pid} busy"):  # and it can be taken again
        pass
