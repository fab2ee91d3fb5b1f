"""A full disk under the write helpers of ``amfmedit.io``: a DiskFullError naming the file
("disk full while writing FILE; free space and rerun"), the partial file removed and the
previous one kept; the same for a lock, and a last-resort line in the CLI for any other write."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import typer

from amfmedit.cli.common import guarded
from amfmedit.errors import UserError
from amfmedit.io import (
    DiskFullError,
    exclusive_lock,
    is_disk_full,
    save_npy,
    staging_dir,
    torch_load,
    torch_save,
    write_json,
)


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_an_atomic_write_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "run" / "config.json"
    write_json(path, {"epochs": 1})
    real = Path.write_bytes

    def half_then_full(self, data):
        real(self, data[: len(data) // 2])
        _enospc()

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    with pytest.raises(DiskFullError) as err:
        write_json(path, {"epochs": 2})
    assert str(err.value) == f"disk full while writing {path}; free space and rerun"
    assert isinstance(err.value, UserError) and err.value.path == path
    monkeypatch.undo()
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json"]  # no temporary file
    assert path.read_text() == '{\n  "epochs": 1\n}\n'


def test_torch_save_reports_the_full_disk_not_unexpected_pos(tmp_path, monkeypatch):
    """What torch.save raises when its file object's write fails (measured on a full tmpfs)."""
    path = tmp_path / "last.pt"

    def torch_style(obj, f, *a, **k):
        try:
            f.write(b"PK\x03\x04")
            f.flush()
            _enospc()
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", torch_style)
    with pytest.raises(DiskFullError, match=rf"^disk full while writing {path}; free space and rerun$"):
        torch_save({"w": torch.ones(2)}, path)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    torch_save({"w": torch.ones(2)}, path)  # through a file object, read back as before
    assert torch_load(path)["w"].sum() == 2


def test_the_error_chain_is_followed():
    try:
        try:
            _enospc()
        except OSError:
            raise RuntimeError("unexpected pos")
    except RuntimeError as exc:
        assert is_disk_full(exc)
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(RuntimeError("unexpected pos"))


def test_a_staged_folder_names_the_file_under_its_final_name(tmp_path):
    final = tmp_path / "data" / "cohort"
    with pytest.raises(DiskFullError) as err:
        with staging_dir(final) as tmp:
            (tmp / "a.txt").write_text("ok")
            with open(tmp / "images.npy", "wb"):
                raise DiskFullError(tmp / "images.npy")
    assert err.value.path == final / "images.npy"
    assert list((tmp_path / "data").iterdir()) == []  # the partial folder is gone


def test_a_lock_that_cannot_be_written_is_removed(tmp_path, monkeypatch):
    target = tmp_path / "run" / "pretrain"
    target.parent.mkdir()
    monkeypatch.setattr(os, "pwrite", _enospc)
    with pytest.raises(DiskFullError, match=r"disk full while writing .*/run/\.locks/pretrain\.lock; free space"):
        with exclusive_lock(target, "busy"):
            pass
    assert list(target.parent.iterdir()) == []  # neither the lock file nor the .locks folder


def test_save_npy_writes_what_np_save_writes(tmp_path):
    for array in (np.random.default_rng(0).random((7, 5)) > 0.5, np.zeros((0, 3), bool),
                  np.arange(12, dtype=np.int64).reshape(3, 4), np.ones((2, 3), np.float32)):
        save_npy(tmp_path / "a.npy", array)
        np.save(tmp_path / "b.npy", array)
        assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()


def test_save_npy_reports_a_full_disk_where_numpy_reports_a_short_write(tmp_path, monkeypatch):
    """numpy's own writer says "N requested and M written" (no errno) on a full disk."""
    import amfmedit.io as amf_io

    class FullFile:
        def __init__(self, path, mode):
            self._fh = open(path, mode)

        def write(self, data):
            if len(data) > 100:
                _enospc()
            return self._fh.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    monkeypatch.setattr(amf_io, "open", FullFile, raising=False)
    with pytest.raises(OSError) as err:
        save_npy(tmp_path / "m.npy", np.ones((64, 64), bool))
    assert is_disk_full(err.value)


def test_the_cli_turns_any_other_full_disk_into_one_line(capsys):
    def command():
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/r/pretrain/tensorboard/events.out")

    with pytest.raises(typer.Exit) as exit_:
        guarded(command)()
    assert exit_.value.exit_code == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: disk full while writing /runs/r/pretrain/tensorboard/events.out; free space and rerun")
