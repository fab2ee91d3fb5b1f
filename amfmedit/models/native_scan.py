"""The compiled CPU kernels of a Mamba block: building them, loading them, and their ctypes mirror.

What: C kernels (``csrc/``, shipped with the package) for everything of a Mamba block between
``in_proj`` and ``out_proj`` on a CPU, forward and backward: the selective scan with its
epilogue ``(y + D u) silu(z)`` (``scan.c``), the causal depthwise convolution with its SiLU
(``conv.c``), and ``dt_proj`` + bias + softplus (``pointwise.c``). ``scan._NativeScan``,
``scan._NativeSoftplus`` and ``scan._NativeMambaInner`` call them on the tensors' memory.

Why: on a CPU the pure-PyTorch sequential scan (:mod:`amfmedit.models.scan`) issues ~8 ops per
time step on the (Bt, N, D) state, each a separate pass over memory with its own dispatch cost;
at 423 features those elementwise ops, not the matrix products, are most of FT-Mamba's time.
Here one C loop per batch row walks time and does the decay, the state update and the readout
while the row's (N, D) state stays in L1, and the backward does the segment recomputation and
the adjoint recurrence of ``scan.py`` the same way. The mathematics, the checkpoint segments and
the returned gradients are those of ``_SequentialScan`` (the tests compare them). Decays are
``exp2(dt A log2(e))`` by an inline polynomial (float32 round-off) so the channel loops
vectorise; where the compiler targets AVX-512 (F and DQ) the hot loops use intrinsics.
Measured speeds and the alternatives they were weighed against: ``docs/performance.md``.

How: built at first use with the system C compiler (``$CC``, else ``cc``, ``gcc`` or
``clang``; plain C, no PyTorch headers; the files compile in parallel: 1.6-2.4 s wall and
2.4-2.6 s of compiler CPU on two cores, once), cached under ``$AMFMEDIT_CACHE`` (default ``~/.cache/amfmedit``)/kernels keyed by a
hash of the sources, the flags, the compiler and the CPU. Each entry point takes one params
struct (``csrc/amf_kernels.h``) mirrored here by a :class:`ctypes.Structure`; :func:`load`
checks the two layouts agree before it hands the library out. Batch rows are split in parts:
with ``-fopenmp`` (tried first where PyTorch itself runs on GNU libgomp, whose already loaded
copy the library then shares) the parts run on PyTorch's own OpenMP threads; otherwise (or with
``AMFMEDIT_NATIVE_OPENMP=0``) one after another.

Without a compiler, or when the build fails, :func:`load` returns None, the scan falls back to
the pure-PyTorch sequential path, and a :class:`NativeKernelWarning` says so once (one line:
why, the cost, the remedy); :func:`status` says why at any time (``amfmedit info`` shows it).
``AMFMEDIT_NATIVE_SCAN=0`` chooses the PyTorch path without building and without the notice.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CSRC = Path(__file__).with_name("csrc")
#: The library's translation units (compiled in parallel, then linked) and the headers they include.
SOURCES = ("scan.c", "conv.c", "pointwise.c", "layout.c")
HEADERS = ("amf_kernels.h", "amf_common.h")
_FLAGS = ["-O3", "-march=native", "-ffp-contract=fast", "-fopenmp-simd", "-fPIC", "-std=gnu99"]
#: FT-Mamba's forward + backward on the PyTorch scan against the compiled kernels, on a CPU
#: (docs/performance.md): the cost the fallback notice names.
FALLBACK_SLOWDOWN = "4x"

_I64, _PTR = ctypes.c_int64, ctypes.c_void_p


class _Params(ctypes.Structure):
    # No instance __dict__: a misspelt field name raises instead of being stored beside the struct.
    __slots__ = ()


def _fields(ints: str, pointers: str) -> list[tuple[str, type]]:
    return [(n, _I64) for n in ints.split()] + [(n, _PTR) for n in pointers.split()]


class ScanParams(_Params):
    """``amf_scan_params``: the selective scan (``amf_scan_fwd``, ``amf_scan_bwd``)."""

    __slots__ = ()
    c_name = "amf_scan_params"
    _fields_ = _fields("L Bt D N nth seg zs bs", "u dt At A2 Bm Cm Dp z y ck yv dy du ddt dB dC dz W WD")


class ConvParams(_Params):
    """``amf_conv_params``: causal depthwise conv + SiLU (``amf_conv_fwd``, ``amf_conv_bwd``)."""

    __slots__ = ()
    c_name = "amf_conv_params"
    _fields_ = _fields("L Bt C K nth xs", "x wT bias u ds du dx dwT dbias")


class SoftplusParams(_Params):
    """``amf_softplus_params``: softplus(x + bias) (``amf_softplus_fwd``, ``amf_softplus_bwd``)."""

    __slots__ = ()
    c_name = "amf_softplus_params"
    _fields_ = _fields("rows C nth", "x bias out g gx")


class DtspParams(_Params):
    """``amf_dtsp_params``: dt_proj + bias + softplus (``amf_dtsp_fwd``, ``amf_dtsp_bwd``)."""

    __slots__ = ()
    c_name = "amf_dtsp_params"
    _fields_ = _fields("rows C R nth ls dls", "lo WT bias out g dlo dWT dbias")


PARAMS = (ScanParams, ConvParams, SoftplusParams, DtspParams)
#: Entry point -> the params struct it takes (by pointer: ctypes rejects any other struct).
ENTRY_POINTS = {
    "amf_scan_fwd": ScanParams, "amf_scan_bwd": ScanParams, "amf_conv_fwd": ConvParams, "amf_conv_bwd": ConvParams,
    "amf_softplus_fwd": SoftplusParams, "amf_softplus_bwd": SoftplusParams,
    "amf_dtsp_fwd": DtspParams, "amf_dtsp_bwd": DtspParams,
}


class _FieldLayout(ctypes.Structure):
    _fields_ = [("type", ctypes.c_char_p), ("field", ctypes.c_char_p), ("offset", _I64), ("size", _I64)]


Layout = dict[str, list[tuple[str | None, int, int]]]  # struct -> [(field or None for the whole, offset, size)]


def c_layout(lib: ctypes.CDLL) -> Layout:
    """The params structs as the compiled library lays them out (``amf_layout``)."""
    fn = lib.amf_layout
    fn.argtypes, fn.restype = [ctypes.POINTER(ctypes.POINTER(_FieldLayout))], _I64
    rows = ctypes.POINTER(_FieldLayout)()
    out: Layout = {}
    for i in range(fn(ctypes.byref(rows))):
        r = rows[i]
        out.setdefault(r.type.decode(), []).append((r.field.decode() if r.field else None, r.offset, r.size))
    return out


def ctypes_layout() -> Layout:
    """The same table for the ctypes mirrors."""
    return {cls.c_name: [(None, 0, ctypes.sizeof(cls))]
            + [(name, getattr(cls, name).offset, getattr(cls, name).size) for name, _ in cls._fields_]
            for cls in PARAMS}


def _check_layout(lib: ctypes.CDLL) -> None:
    c, py = c_layout(lib), ctypes_layout()
    for name in sorted(set(c) | set(py)):
        in_c, in_py = c.get(name, []), py.get(name, [])
        if in_c != in_py:
            first = next(((a, b) for a, b in zip(in_c, in_py) if a != b), None)
            where = (f"(field, offset, size) {first[0]} in C, {first[1]} in ctypes" if first else
                     f"{len(in_c)} rows in C, {len(in_py)} in ctypes")
            raise RuntimeError(f"{name} and its ctypes mirror differ: {where}; amf_kernels.h, layout.c and "
                               "native_scan.py change together")


class NativeKernelWarning(UserWarning):
    """The compiled CPU kernels could not be had; the PyTorch scan runs instead."""


_LIB: ctypes.CDLL | None = None
_REASON = "not loaded yet"
_TRIED = False
_OPENMP = False
_LOCK = threading.Lock()


def _cpu_key() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            lines = [ln for ln in fh if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = []
    return platform.machine() + "".join(lines)


def _source_key() -> str:
    return "\0".join(f"{name}\0{(CSRC / name).read_text()}" for name in (*SOURCES, *HEADERS))


def _cache_dir() -> Path:
    root = os.environ.get("AMFMEDIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "amfmedit")
    return Path(root) / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise RuntimeError(f"{cmd[0]} failed: {lines[-1] if lines else f'exit status {proc.returncode}'}")


def compile_objects(cc: str, flags: list[str], out_dir: Path) -> list[Path]:
    """Compile every source file to an object in ``out_dir``, all at once (one compiler process
    each: the scan's file alone is about half the work); the objects, in :data:`SOURCES` order."""
    objs = [out_dir / f"{Path(name).stem}.o" for name in SOURCES]
    cmds = [[cc, *flags, "-c", str(CSRC / name), "-o", str(obj)] for name, obj in zip(SOURCES, objs)]
    with ThreadPoolExecutor(len(cmds)) as pool:
        for _ in pool.map(_run, cmds):  # re-raises the first failure
            pass
    return objs


def _build(cc: str, target: Path, extra: list[str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="amfmedit-kernel-") as tmp:
        flags = [*_FLAGS, *extra]
        objs = compile_objects(cc, flags, Path(tmp))
        out = Path(tmp) / "amf_kernels.so"
        _run([cc, *flags, "-shared", *map(str, objs), "-o", str(out), "-lm"])
        # Temporary name in the cache folder, then rename: a concurrent process sees either
        # no library or a whole one.
        fd, part = tempfile.mkstemp(prefix=".scan-", suffix=".so.tmp", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(out, part)
            os.replace(part, target)
        finally:
            Path(part).unlink(missing_ok=True)


def _openmp_flags() -> list[list[str]]:
    """Builds to try, best first. With OpenMP the library's threads are PyTorch's: it needs the
    OpenMP runtime PyTorch itself loaded (GNU libgomp, whose soname the loader then reuses);
    under another runtime (LLVM's libomp, Intel's) or ``AMFMEDIT_NATIVE_OPENMP=0`` the plain
    build is used and the batch parts run one after another."""
    if os.environ.get("AMFMEDIT_NATIVE_OPENMP", "1").strip().lower() in ("0", "false", "no", "off"):
        return [[]]
    return [["-fopenmp"], []] if _torch_uses_libgomp() else [[]]


def _torch_uses_libgomp() -> bool:
    try:
        with open("/proc/self/maps") as fh:
            return any("libgomp" in line for line in fh)
    except OSError:
        return False


def _fallback_notice(reason: str, remedy: str) -> None:
    """One line, once per process (load runs once): why, what it costs, what to do."""
    warnings.warn(f"native CPU kernels unavailable: {reason}; the Mamba blocks run the PyTorch scan instead, "
                  f"~{FALLBACK_SLOWDOWN} slower on a CPU. {remedy}, or set AMFMEDIT_NATIVE_SCAN=0 to choose the "
                  "PyTorch scan without this notice", NativeKernelWarning, stacklevel=2)


def load() -> ctypes.CDLL | None:
    """The compiled kernel library, building it once if needed; None when it cannot be had."""
    global _LIB, _REASON, _TRIED, _OPENMP
    if _TRIED:
        return _LIB
    with _LOCK:
        if _TRIED:
            return _LIB
        _TRIED = True
        if os.environ.get("AMFMEDIT_NATIVE_SCAN", "1").strip().lower() in ("0", "false", "no", "off"):
            _REASON = "disabled by AMFMEDIT_NATIVE_SCAN=0"
            return None
        cc = _compiler()
        if cc is None:
            _REASON = "no C compiler (cc, gcc or clang) on PATH"
            _fallback_notice(_REASON, "Install a C compiler (e.g. `apt install gcc`; $CC picks one)")
            return None
        lib, failure, sources = None, None, _source_key()
        for extra in _openmp_flags():
            key = hashlib.sha256("\0".join([sources, *_FLAGS, *extra, cc, _cpu_key()]).encode()).hexdigest()[:16]
            target = _cache_dir() / f"amfmedit_scan_{key}.so"
            try:
                if not target.is_file():
                    _build(cc, target, extra)
                lib = ctypes.CDLL(str(target))
                _check_layout(lib)
                break
            except Exception as exc:  # noqa: BLE001 - any failure means "try the next build"
                lib, failure = None, exc
        if lib is None:
            _REASON = " ".join(f"build or load failed ({type(failure).__name__}: {failure})".split())
            _fallback_notice(_REASON, "Check the C compiler ($CC picks another)")
            return None
        for name, params in ENTRY_POINTS.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = [ctypes.POINTER(params)], None
        lib.amf_openmp.argtypes, lib.amf_openmp.restype = [], ctypes.c_int
        _OPENMP = bool(lib.amf_openmp())
        threads = "on OpenMP (PyTorch's threads)" if _OPENMP else "one after another (built without OpenMP)"
        _LIB, _REASON = lib, f"compiled with {cc} ({target}); batch parts {threads}"
        return lib


def openmp() -> bool:
    """True when the loaded library runs its batch parts on OpenMP threads itself."""
    load()
    return _OPENMP


def available() -> bool:
    return load() is not None


def status() -> str:
    """Why the native kernels are or are not in use (after :func:`load`)."""
    load()
    return _REASON


def _reset_for_tests() -> None:
    global _LIB, _REASON, _TRIED, _OPENMP
    _LIB, _REASON, _TRIED, _OPENMP = None, "not loaded yet", False, False
