"""Atomic file output, and reading back what the tool wrote, with one-line errors.

A crash, a full disk or Ctrl-C leaves either the previous file or the new one, never half of
one. Folders are built under a temporary sibling name and renamed into place at the end.

Temporary names carry the writing process's id (``.NAME.pid<PID>.<random><suffix>``), so a
later writer can tell the leftovers of a killed process (``kill -9``, power loss) from the
work of a live one: :func:`remove_stale` deletes those whose owner is gone: :func:`atomic_path` calls it for the
temporary files in its folder and :func:`staging_dir` for its own target's folders.

Files the tool wrote are read back through :func:`read_json` and :func:`torch_load`: a
damaged or truncated file is a :class:`~amfmedit.errors.UserError` naming the file, what is
wrong and what to do, never a decoder traceback.

A full disk (``ENOSPC``, or a quota: ``EDQUOT``) anywhere under a write is a
:class:`DiskFullError` naming the file: :func:`atomic_path` and :func:`staging_dir` translate
it (their partial file or folder removed), :func:`disk_full_as_error` does it for other writes.
Libraries that write from C (torch.save, HDF5) are handed Python file objects, so the OS error
reaches Python instead of turning into a decoder message or a crash.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pickle
import pickletools
import re
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from amfmedit.errors import UserError

#: what to do about a damaged file in a run folder (the stage that wrote it can redo it)
RERUN_HINT = "re-run the stage that wrote it with --force"


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_HINT = "free space and rerun"


class DiskFullError(UserError):
    """The disk (or quota) filled up while writing ``path``; the partial file is gone."""

    def __init__(self, path: str | os.PathLike, hint: str = DISK_FULL_HINT, *, note: str = "") -> None:
        self.path, self.hint, self.note = Path(path), hint, note
        super().__init__(f"disk full while writing {path}{note}; {hint}")

    def moved(self, old_root: Path, new_root: Path) -> "DiskFullError":
        """The same error with ``path`` under ``new_root`` where it lay under ``old_root`` (a staging folder)."""
        try:
            rel = self.path.relative_to(old_root)
        except ValueError:
            return self
        return DiskFullError(new_root / rel, self.hint, note=self.note)


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it was raised from or during is an OSError ENOSPC / EDQUOT.

    torch.save reports a failed write of a Python file object as a RuntimeError raised while
    handling the OSError, so the chain is followed, not only ``exc``.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def written_file(exc: BaseException | None) -> str | None:
    """The file named by an OSError in ``exc``'s chain (its ``filename``), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.filename:
            return str(exc.filename)
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def disk_full_as_error(path: str | os.PathLike, hint: str = DISK_FULL_HINT) -> Iterator[None]:
    """A full disk inside the block becomes ``DiskFullError(path)``; a DiskFullError already raised
    (naming its own file) passes unchanged."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise DiskFullError(path, hint) from exc
        raise


def pid_alive(pid: int) -> bool:
    """Whether a process with this id is running (``os.kill(pid, 0)``; another user's counts as alive;
    a zombie, killed but not yet reaped by its parent, counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc (not Linux), or the process just went
        return True


def temp_prefix(name: str) -> str:
    """Prefix of this process's temporary siblings of ``name``: ``.NAME.pid<PID>.``."""
    return f".{name}.pid{os.getpid()}."


_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.pid(?P<pid>\d+)\.[^/]*$")


def temp_owner(path: str | os.PathLike) -> tuple[str, int] | None:
    """``(target name, owner pid)`` of a temporary name made by :func:`temp_prefix`; None otherwise."""
    m = _TEMP_RE.match(Path(path).name)
    return (m["name"], int(m["pid"])) if m else None


def remove_stale(folder: str | os.PathLike, name: str | None = None,
                 suffixes: tuple[str, ...] = (".tmp", ".partial", ".raw")) -> list[Path]:
    """Remove the temporary files and folders in ``folder`` whose owner process is gone.

    Only names made by :func:`temp_prefix` ending in one of ``suffixes`` are considered (for the
    target ``name`` only, when given); one whose owner is alive, or this process, is never
    touched. Returns what was removed. Names without an owner id (older versions) are left.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        owner = temp_owner(p)
        if owner is None or not p.name.endswith(suffixes) or (name is not None and owner[0] != name):
            continue
        if owner[1] == os.getpid() or pid_alive(owner[1]):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p)
    return removed


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    # temporary files of killed writers in this folder (a checkpoint cut short by kill -9)
    remove_stale(path.parent, None, (".tmp",))
    fd, name = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Any exception removes the temporary file and leaves the previous ``path`` untouched; a
    full disk is raised as :class:`DiskFullError` naming ``path``.
    """
    path = Path(path)
    with disk_full_as_error(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_sibling(path, path.suffix)
        try:
            yield tmp
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any):

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_npy(path, array: np.ndarray) -> None:
    """``np.save`` of a numeric array, written through Python's file object (the same bytes).

    numpy writes a real file with C ``fwrite`` and reports a full disk as a short write with no
    errno ("N requested and M written"); Python's write raises OSError ENOSPC, which
    :func:`disk_full_as_error` recognises.
    """
    array = np.ascontiguousarray(array)
    if array.dtype.hasobject:
        raise ValueError("save_npy writes numeric arrays only")
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, np.lib.format.header_data_from_array_1_0(array))
        fh.write(memoryview(array.reshape(-1)).cast("B"))


def write_json(path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n")


def read_json(path, *, hint: str = RERUN_HINT) -> Any:
    """Parse a JSON file the tool wrote; a missing, truncated or garbled one is a UserError.

    The message names the file, what is wrong (with the line and column of a syntax error)
    and ``hint`` (what to do; by default re-running the stage that wrote it with --force).
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found; {hint}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a JSON file; {hint}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: damaged file (not UTF-8 text at byte {exc.start}); {hint}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        what = "empty file" if not text.strip() else f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise UserError(f"{path}: damaged file, {what}; {hint}") from None


def torch_save(obj: Any, path) -> None:
    """``torch.save`` to a temporary file, fsync, rename: the previous checkpoint survives failures.

    torch writes through a Python file object: given a path, its C++ writer reports a full disk as
    ``RuntimeError: ... unexpected pos``, while a file object's OSError stays in the exception chain
    (:func:`is_disk_full`), so a full disk is a :class:`DiskFullError` naming ``path``.
    """
    import torch

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, whole (never cut mid-word)."""
    for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines():  # no terminal colour codes
        if line.strip():
            return line.strip()
    return type(exc).__name__


def torch_load(path, map_location="cpu", *, hint: str = RERUN_HINT) -> Any:
    """Load a checkpoint as data only (``weights_only=True``): a checkpoint is never code.

    A missing, truncated or corrupt file is a UserError naming the file, torch's reason (its
    first line, whole) and ``hint``. A file that holds pickled objects other than tensors and
    plain data (a pickle payload, in a torch archive or a bare pickle) is refused as unsafe,
    without torch's advice to load it with ``weights_only=False``.
    """

    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; {hint}")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of bare pickles: not one line
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower() and ("GLOBAL" in str(exc) or _pickle_runs_code(path)):
            raise UserError(f"{path}: refused as unsafe: it holds pickled objects other than tensors and plain "
                            f"data, which could run code when loaded (a checkpoint is read as data only); {hint}"
                            ) from None
        raise _unreadable(path, exc, hint) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            KeyError, IndexError, TypeError, AttributeError) as exc:
        raise _unreadable(path, exc, hint) from exc


# pickle opcodes that import or call (pickletools names); a weights-only load never needs them here
_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"}


def _pickle_runs_code(path: Path) -> bool:
    """Whether ``path`` is a bare pickle whose opcodes import or call something (read, never run)."""

    try:
        with open(path, "rb") as fh:
            return any(op.name in _CODE_OPCODES for op, _, _ in pickletools.genops(fh))
    except Exception:  # noqa: BLE001 - not a parseable pickle: damaged, not unsafe
        return False


def _unreadable(path: Path, exc: BaseException, hint: str) -> UserError:
    size = path.stat().st_size
    reason = _first_line(exc)
    if "weights only load failed" in reason.lower():  # torch's advice first; its finding follows the marker
        tail = str(exc).split("WeightsUnpickler error:", 1)[-1]
        reason = next((x.strip() for x in tail.splitlines() if x.strip()), "not a weights file")
    what = "empty file" if size == 0 else f"damaged or truncated ({size:,} bytes): {reason}"
    return UserError(f"{path}: not a readable checkpoint ({what}); {hint}")


@contextlib.contextmanager
def staging_dir(final: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary sibling name; rename it to ``final`` on success.

    On any exception the partial folder is removed and ``final`` is left as it was. With
    ``force`` an existing ``final`` is replaced only once the new one is complete. A full disk
    is a :class:`DiskFullError` naming the file under ``final`` (not under the temporary name),
    or ``final`` itself when the file is not known.
    """
    final = Path(final)
    with disk_full_as_error(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(final.parent, final.name, (".partial",))
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), suffix=".partial", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            if not force:
                raise FileExistsError(final)
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except DiskFullError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        moved = exc.moved(tmp, final)
        if moved is exc:
            raise
        raise moved from exc
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, Exception) and is_disk_full(exc):
            raise DiskFullError(written_file(exc) or tmp).moved(tmp, final) from exc
        raise


# ---------------------------------------------------------------------------------------------
# one writer at a time

LOCKS_DIR = ".locks"
_held: dict[str, int] = {}  # lock file -> nesting depth in this process


def lock_file_for(target: str | os.PathLike) -> Path:
    """Where the lock of ``target`` (a stage folder, a prepared dataset) lives:
    ``<parent>/.locks/<name>.lock``, outside the folder, so it survives the folder being
    replaced (``--force``) or removed."""
    target = Path(target)
    return target.parent / LOCKS_DIR / f"{target.name}.lock"


def lock_holder(target: str | os.PathLike) -> int | None:
    """The pid recorded by the last holder of ``target``'s lock (it may have finished since)."""
    try:
        text = lock_file_for(target).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike, busy: str) -> Iterator[Path]:
    """Hold an OS file lock (``flock``) on ``target`` for the duration of the block.

    The kernel releases the lock when the holder exits in any way (``kill -9`` included), so a
    lock is never stale. When another process holds it, a UserError is raised at once with
    ``busy`` formatted with ``pid`` (the holder's, read from the lock file; ``?`` if unknown).
    The same process may nest the lock. The lock file holds the holder's pid and is removed
    (with an empty ``.locks`` folder) on release, so a run or data dir is left as it was; a
    process that opened the file just before it was removed sees that and tries again.
    """

    path = lock_file_for(target)
    key = str(path.absolute())
    if _held.get(key):
        _held[key] += 1
        try:
            yield path
        finally:
            _held[key] -= 1
        return
    with disk_full_as_error(path):  # even the lock cannot be written on a full disk
        fd = _take_lock(path, target, busy)
    try:
        _held[key] = 1
        try:
            os.ftruncate(fd, 0)
            with disk_full_as_error(path):
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            yield path
        finally:
            del _held[key]
            with contextlib.suppress(OSError):
                path.unlink()  # while still holding the lock
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only when empty
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _take_lock(path: Path, target, busy: str) -> int:
    """Open and ``flock`` the lock file ``path``; the descriptor, or a UserError when it is held."""
    for _ in range(50):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # the folder was removed by a holder releasing the lock
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = lock_holder(target)
            raise UserError(busy.format(pid=pid if pid is not None else "?")) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # locked a file its last holder had just removed: take the current one
    else:  # pragma: no cover - 50 releases in a row between open and flock
        raise UserError(busy.format(pid="?"))
    return fd
