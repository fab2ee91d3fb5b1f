"""Benchmark: prepare the full-size synthetic OL3I cohort end to end (generation + preparation).

Targets (issue 2): at most 2 minutes and 4 GB peak memory on a 2-core machine, for
8,139 patients x 512 x 512 with 423 features. Prints the wall time of each phase and the
total, the peak resident memory of the whole process tree (this process, the forkserver and
its rendering workers, sampled from /proc every 50 ms) and getrusage's per-process peaks.

The CPU time of the process tree divided by the cores is the wall time the run would take on
an otherwise idle machine (printed with the load average, since a busy machine stretches the
wall time).

Baseline measured in the same run: reading every slice of the generated ``l3_slices.h5``
with no processing (the I/O floor of the image phase); the image phase is reported as a
ratio of it.

    .venv/bin/python benchmarks/bench_prepare.py [--patients 8139] [--image-size 512]
        [--features 423] [--repeat 1] [--workdir /tmp]

It writes about 6.5 GB (4.3 GB of raw HU slices, 2.1 GB of uint8 images) under a temporary
folder in --workdir and deletes it afterwards.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
TICKS = os.sysconf("SC_CLK_TCK")


def _tree(root: int) -> dict[int, tuple[int, float]]:
    """{pid: (resident kB, CPU seconds so far)} of ``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/statm") as fh:
                rss = int(fh.read().split()[1]) * PAGE_KB
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        children.setdefault(int(fields[1]), []).append(int(entry))
        info[int(entry)] = (rss, (int(fields[11]) + int(fields[12])) / TICKS)
    out, stack = {}, [root]
    while stack:
        pid = stack.pop()
        if pid in info:
            out[pid] = info[pid]
        stack.extend(children.get(pid, []))
    return out


class TreeSampler(threading.Thread):
    """Peak resident memory of the process tree, and the CPU seconds each process used."""

    def __init__(self, interval: float = 0.05):
        super().__init__(daemon=True)
        self.interval, self.peak_kb, self.cpu = interval, 0, {}
        self._done = threading.Event()

    def run(self) -> None:
        pid = os.getpid()
        while not self._done.is_set():
            tree = _tree(pid)
            self.peak_kb = max(self.peak_kb, sum(rss for rss, _ in tree.values()))
            for p, (_, cpu) in tree.items():
                self.cpu[p] = max(self.cpu.get(p, 0.0), cpu)
            self._done.wait(self.interval)

    def stop(self) -> tuple[int, float]:
        self._done.set()
        self.join()
        return self.peak_kb, sum(self.cpu.values())


def run_once(workdir: Path, patients: int, image_size: int, features: int) -> dict:
    import h5py

    from amfmedit.data.prepare import apply_overrides

    from amfmedit.stages.prepare import prepare
    from amfmedit.data.spec import load_spec

    marks: list[tuple[str, float]] = []

    def progress(phase: str, done: int, total: int) -> None:
        if not marks or marks[-1][0] != phase:
            marks.append((phase, time.perf_counter()))

    spec = apply_overrides(load_spec("synthetic-ol3i"), image_size=image_size)
    cpu0 = time.process_time()
    sampler = TreeSampler()
    sampler.start()
    t0 = time.perf_counter()
    result = prepare(spec, raw=workdir / "raw", data_dir=workdir / "data", progress=progress,
                     synthetic=dict(patients=patients, features=features))
    t1 = time.perf_counter()
    peak_kb, cpu = sampler.stop()
    cpu = max(cpu - cpu0, 0.0)  # this process's CPU before the run (imports) is not part of it
    phases: dict[str, float] = {}
    bounds = [*marks, ("end", t1)]
    phases["start-up"] = bounds[0][1] - t0
    for (name, start), (_, stop) in zip(bounds, bounds[1:]):
        phases[name] = phases.get(name, 0.0) + stop - start

    tb = time.perf_counter()  # baseline: read every slice, nothing else
    with h5py.File(workdir / "raw" / "l3_slices.h5", "r") as f:
        for key in f:
            f[key][()]
    baseline = time.perf_counter() - tb
    sizes = {p.name: p.stat().st_size for p in result.path.iterdir()}
    oracle = result.provenance["synthetic"]["oracle"]
    return dict(total=t1 - t0, phases=phases, peak_kb=peak_kb, cpu=cpu, baseline=baseline, sizes=sizes,
                oracle=oracle, load=os.getloadavg()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=8139)
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--features", type=int, default=423)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    args = ap.parse_args()
    print(f"synthetic OL3I: {args.patients} patients x {args.image_size}^2, {args.features} features, "
          f"{os.cpu_count()} CPUs; {args.repeat} run(s)")
    runs = []
    for i in range(args.repeat):
        work = Path(tempfile.mkdtemp(prefix="bench-prepare-", dir=args.workdir))
        try:
            r = run_once(work, args.patients, args.image_size, args.features)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        runs.append(r)
        phases = "  ".join(f"{k} {v:.1f}s" for k, v in r["phases"].items())
        print(f"run {i + 1}: total {r['total']:.1f}s  ({phases})")
        print(f"       CPU time of the process tree {r['cpu']:.1f}s ({r['cpu'] / (os.cpu_count() or 1):.1f}s per core); "
              f"1-minute load average at the end {r['load']:.1f} (other processes compete for the cores)")
        print(f"       peak RSS of the process tree {r['peak_kb'] / 2**20:.2f} GiB; "
              f"images phase {r['phases'].get('images', 0):.1f}s vs baseline h5 read {r['baseline']:.1f}s "
              f"(ratio {r['phases'].get('images', 0) / r['baseline']:.2f})")
    usage_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    usage_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    totals = [r["total"] for r in runs]
    peaks = [r["peak_kb"] / 2**20 for r in runs]
    last = runs[-1]
    print(f"median total {statistics.median(totals):.1f}s (target <= 120 s, ratio {statistics.median(totals) / 120:.2f})")
    print(f"median peak memory {statistics.median(peaks):.2f} GiB (target <= 4 GiB, ratio "
          f"{statistics.median(peaks) / 4:.2f}); getrusage peaks: main {usage_self:.2f} GiB, "
          f"largest child {usage_children:.2f} GiB")
    print("prepared files: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sorted(last["sizes"].items())))
    o = last["oracle"]
    print(f"oracle AUC: train {o['train']:.3f} val {o['val']:.3f} test {o['test']:.3f} all {o['all']:.3f} "
          f"(tabular only {o['tabular_only']:.3f}, image only {o['image_only']:.3f})")


if __name__ == "__main__":
    main()
