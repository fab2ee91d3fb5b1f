"""First-use cost of the compiled CPU kernels: the build from an empty cache, and a cached load.

    python benchmarks/bench_kernel_build.py [--repeats 5]

Each round builds the library as ``native_scan.load()`` does on a fresh machine (its sources
compiled in parallel, one compiler process per file, then linked) into an empty cache, and, as
the baseline in the same round, the same sources and flags in one compiler process; rounds
alternate the two. Printed: wall time and the compilers' CPU time (medians), their ratio, and
the time ``load()`` takes when the library is already cached.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amfmedit.models import native_scan  # noqa: E402


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(fn) -> tuple[float, float]:
    c0, t0 = _children_cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, _children_cpu() - c0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    cc = native_scan._compiler()
    if cc is None:
        sys.exit("no C compiler on PATH: nothing to build")
    extra = native_scan._openmp_flags()[0]
    flags = [*native_scan._FLAGS, *extra]
    sources = [str(native_scan.CSRC / s) for s in native_scan.SOURCES]
    times: dict[str, list[tuple[float, float]]] = {"load() from an empty cache": [], "one compiler process": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            os.environ["AMFMEDIT_CACHE"] = d
            native_scan._reset_for_tests()
            times["load() from an empty cache"].append(_timed(native_scan.load))
            assert native_scan.available(), native_scan.status()
            out = str(Path(d) / "serial.so")
            times["one compiler process"].append(_timed(lambda: subprocess.run(
                [cc, *flags, "-shared", *sources, "-o", out, "-lm"], check=True)))
    with tempfile.TemporaryDirectory() as d:
        os.environ["AMFMEDIT_CACHE"] = d
        native_scan._reset_for_tests()
        native_scan.load()  # builds
        native_scan._reset_for_tests()
        warm = _timed(native_scan.load)[0]
    print(f"{cc} {' '.join(flags)}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'build':<28}{'median wall s':>14}{'median CPU s':>14}")
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    for name, (w, c) in med.items():
        print(f"{name:<28}{w:>14.2f}{c:>14.2f}")
    base, ours = med["one compiler process"], med["load() from an empty cache"]
    print(f"wall ratio load() / one process: {ours[0] / base[0]:.2f}x")
    print(f"load() with the library cached: {warm * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
