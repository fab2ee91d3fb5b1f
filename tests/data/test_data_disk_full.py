"""`prepare` on a full disk: one line naming the file and what to do, exit 2, and nothing left
there (no staging folder, no generated raw files, no lock, no empty data folder) - on a real
small tmpfs where one can be mounted, and with the OS error simulated everywhere."""

from __future__ import annotations

import errno
import re

import pytest
from small_disk import amfmedit_argv, on_small_disk
from typer.testing import CliRunner

from amfmedit.cli import app

# 200 slices of 64 x 64: the raw HDF5 file is ~1.7 MB, the prepared images ~0.8 MB
PREPARE = ["prepare", "--data", "synthetic-ol3i", "--patients", "200", "--image-size", "64", "--features", "20",
           "--quiet"]


@pytest.mark.parametrize("size, where", [
    ("1m", r"MNT/data/\.synthetic-ol3i\.pid\d+\.\w+\.raw/l3_slices\.h5 \(the generated raw files, now removed\)"),
    ("2m", r"MNT/data/synthetic-ol3i/[\w.]+"),
])
def test_prepare_on_a_really_full_disk(tmp_path, size, where):
    """HDF5's own writer crashed the process here (a segmentation fault and ~25,000 lines of
    HDF5 errors, the staging folder and the lock left on the full disk)."""
    mnt = tmp_path / "small"
    run = on_small_disk(size, mnt, amfmedit_argv(*PREPARE, "--data-dir", mnt / "data"), cwd=tmp_path)
    assert run.rc == 2, run.output[-3000:]
    assert len(run.lines) == 1, run.output[-3000:]
    where = where.replace("MNT", re.escape(str(mnt)))
    assert re.fullmatch(rf"error: disk full while writing {where}; free space and rerun", run.lines[0]), run.lines[0]
    assert run.left == []


def _prepare(args) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 2, f"exit {res.exit_code}: {res.output}\n{res.exception!r}"
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


SMALL = ["prepare", "--data", "synthetic-ol3i", "--patients", "60", "--image-size", "16", "--features", "16",
         "--quiet"]


def test_full_disk_while_writing_the_prepared_table(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    real = pq.write_table

    def full(table, where, *a, **k):
        if str(where).endswith("tabular.parquet"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, *a, **k)

    monkeypatch.setattr(pq, "write_table", full)
    data = tmp_path / "data"
    line = _prepare([*SMALL, "--data-dir", data])
    assert line == f"error: disk full while writing {data}/synthetic-ol3i/tabular.parquet; free space and rerun"
    assert not data.exists()  # no dataset, no staging folder, no generated raw files, no lock, no data folder


@pytest.mark.parametrize("keep_raw", [False, True])
def test_full_disk_while_generating_the_raw_images(tmp_path, monkeypatch, keep_raw):
    import h5py

    real, calls = h5py.Group.create_dataset, {"n": 0}

    def full_after_ten(self, *a, **k):
        calls["n"] += 1
        if calls["n"] > 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr(h5py.Group, "create_dataset", full_after_ten)
    data, raw = tmp_path / "data", tmp_path / "kept-raw"
    line = _prepare([*SMALL, "--data-dir", data, *(["--raw", raw] if keep_raw else [])])
    if keep_raw:
        assert line == f"error: disk full while writing {raw}/l3_slices.h5; free space and rerun"
    else:
        assert re.fullmatch(rf"error: disk full while writing {re.escape(str(data))}/\.synthetic-ol3i\.pid\d+\.\w+"
                            r"\.raw/l3_slices\.h5 \(the generated raw files, now removed\); free space and rerun", line)
    assert not data.exists() and not raw.exists()
