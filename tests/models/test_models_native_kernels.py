"""The C side of the compiled CPU kernels: the sources compile warning-free, the params structs
and their ctypes mirrors agree field by field, and the sources ship with the package.
(Their values and gradients against the oracle: test_models_scan.py, test_models_mamba.py.)"""

from __future__ import annotations

import ctypes
import fnmatch
import platform
import sys
from pathlib import Path

import pytest

from amfmedit.models import native_scan

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

needs_cc = pytest.mark.skipif(native_scan._compiler() is None, reason="no C compiler")
needs_lib = pytest.mark.skipif(not native_scan.available(), reason=f"native kernels: {native_scan.status()}")


def test_the_library_is_built_from_every_c_file_and_header_in_csrc():
    # A file added to csrc/ but not to SOURCES / HEADERS would be left out of the build or the
    # cache key.
    assert sorted(p.name for p in native_scan.CSRC.glob("*.c")) == sorted(native_scan.SOURCES)
    assert sorted(p.name for p in native_scan.CSRC.glob("*.h")) == sorted(native_scan.HEADERS)


def test_the_kernel_sources_are_package_data():
    # A non-editable install carries csrc/ only where pyproject.toml lists it as package data.
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["amfmedit.models"]
    pkg = native_scan.CSRC.parent
    for f in native_scan.CSRC.iterdir():
        rel = f.relative_to(pkg).as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not matched by package-data {globs}"


VARIANTS = [pytest.param(["-fopenmp"], id="native-isa-openmp")]
if platform.machine() in ("x86_64", "AMD64"):  # the portable loops, as CPUs without AVX-512 build them
    VARIANTS.append(pytest.param(["-mno-avx512f"], id="no-avx512-serial"))


@needs_cc
@pytest.mark.parametrize("extra", VARIANTS)
def test_the_kernel_sources_compile_with_all_warnings_as_errors(extra, tmp_path):
    flags = [*native_scan._FLAGS, "-Wall", "-Wextra", "-Werror", *extra]
    objs = native_scan.compile_objects(native_scan._compiler(), flags, tmp_path)
    assert [o.name for o in objs] == [Path(s).with_suffix(".o").name for s in native_scan.SOURCES]
    assert all(o.stat().st_size > 0 for o in objs)


@needs_cc
def test_every_params_struct_matches_its_ctypes_mirror_field_by_field(tmp_path):
    # Built here, not through load(): load() refuses a library whose layout differs (and the
    # tests that need it would then skip), so this test must see the raw library.
    target = tmp_path / "amf_kernels.so"
    native_scan._build(native_scan._compiler(), target, [])
    lib = ctypes.CDLL(str(target))
    rows = ctypes.POINTER(native_scan._FieldLayout)()
    table: dict[str, list] = {}
    for i in range(lib.amf_layout(ctypes.byref(rows))):
        r = rows[i]
        table.setdefault(r.type.decode(), []).append((r.field and r.field.decode(), r.offset, r.size))
    assert sorted(table) == sorted(cls.c_name for cls in native_scan.PARAMS)
    for cls in native_scan.PARAMS:
        (whole, _, c_size), *c_fields = table[cls.c_name]
        assert whole is None, f"{cls.c_name}: the size row comes first"
        # the table lists every field of the C struct: their sizes tile it (int64 and pointers, no padding)
        assert sum(size for _, _, size in c_fields) == c_size, f"{cls.c_name}: layout.c misses a field"
        assert c_size == ctypes.sizeof(cls), cls.c_name
        mirror = [(name, getattr(cls, name).offset, getattr(cls, name).size) for name, _ in cls._fields_]
        assert c_fields == mirror, cls.c_name


@needs_lib
def test_each_entry_point_takes_only_its_own_params_struct():
    lib = native_scan.load()
    for name, cls in native_scan.ENTRY_POINTS.items():
        assert getattr(lib, name).argtypes == [ctypes.POINTER(cls)], name
    other = native_scan.ConvParams(L=1)
    with pytest.raises(ctypes.ArgumentError):
        lib.amf_scan_fwd(other)  # the wrong struct is refused before any C runs
    with pytest.raises(AttributeError):
        native_scan.ScanParams(L=1, Dq=0)  # a misspelt field name is no silent extra attribute
