"""One writer per prepared dataset: a second prepare of the same name is refused at once."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest
from data_raw import ol3i_spec, write_ol3i

from amfmedit.stages.prepare import prepare
from amfmedit.errors import UserError
from amfmedit.io import exclusive_lock


def _hold_dataset(data_dir: str, ready) -> None:
    with exclusive_lock(Path(data_dir) / "ol3i", "x"):
        ready.set()
        time.sleep(120)  # until killed


def test_prepare_refuses_while_another_process_prepares_the_same_dataset(tmp_path):
    data = tmp_path / "data"
    write_ol3i(tmp_path / "raw")
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_dataset, args=(str(data), ready))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(UserError, match=rf"^ol3i: another amfmedit process \(pid {holder.pid}\) is preparing "
                                            rf"this dataset in {data}; wait for it to finish$"):
            prepare(ol3i_spec(), raw=tmp_path / "raw", data_dir=data)
        assert sorted(p.name for p in data.iterdir()) == [".locks"]  # nothing of its own written
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock
        holder.join(10)
    assert prepare(ol3i_spec(), raw=tmp_path / "raw", data_dir=data).path == data / "ol3i"
    assert sorted(p.name for p in data.iterdir()) == ["ol3i"]


def test_data_dir_naming_a_file_is_one_line(tmp_path):
    write_ol3i(tmp_path / "raw")
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(UserError, match=rf"^--data-dir {tmp_path / 'data'}: is a file, not a folder; pass a folder"):
        prepare(ol3i_spec(), raw=tmp_path / "raw", data_dir=tmp_path / "data")
    assert (tmp_path / "data").read_text() == "not a folder"
