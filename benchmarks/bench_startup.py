"""How long ``amfmedit`` takes to answer a help screen or a usage error, beside ``import torch``.

Target of issue 19: ``amfmedit --help``, ``amfmedit finetune --help`` and a usage error each
within 0.5 s on an idle 2-core machine. Each command is a fresh process, as a user runs it; the
commands run ``--repeats`` times, interleaved with the baseline ``python -c 'import torch'``
so that a change of load hits both alike. Printed: the median wall-clock and CPU seconds
(user + system) of each, and the ratio to the baseline's median. The load average before and
after says how idle the machine was.

``--packages`` also times, for every package of :data:`amfmedit.deferred.DEFERRED`, the import
of the module amfmedit first uses from it (``PIL.Image``, ``matplotlib.pyplot``, ...: what a
module-level import would add to every help screen), with the bare interpreter subtracted.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_startup.py [--repeats 7] [--packages]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [  # (label, arguments, the exit status it must end with)
    ("amfmedit --help", ["--help"], 0),
    ("amfmedit finetune --help", ["finetune", "--help"], 0),
    ("amfmedit pretrain --help", ["pretrain", "--help"], 0),
    ("amfmedit evaluate --help", ["evaluate", "--help"], 0),
    ("amfmedit finetune --no-such-option (usage error)", ["finetune", "--no-such-option"], 2),
]
BASELINE = "python -c 'import torch'"
# the module amfmedit imports from a package, where it is not the package itself
PROBES = {"sklearn": "sklearn.metrics", "scipy": "scipy.stats", "pyarrow": "pyarrow.parquet",
          "matplotlib": "matplotlib.pyplot", "captum": "captum.attr", "PIL": "PIL.Image"}
TARGET_S = 0.5


def amfmedit_command() -> list[str]:
    """The console script beside this interpreter (what a user types), else ``python -m amfmedit``."""
    script = Path(sys.executable).with_name("amfmedit")
    if script.is_file():
        return [str(script)]
    found = shutil.which("amfmedit")
    return [found] if found else [sys.executable, "-m", "amfmedit"]


def run_once(argv: list[str], status: int, env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run; a wrong exit status stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != status:
        sys.exit(f"{' '.join(argv)}: exit status {done.returncode}, expected {status}\n{done.stderr.decode()[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--packages", action="store_true", help="also time the import of every deferred package")
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    cli = amfmedit_command()
    cases = [(BASELINE, [sys.executable, "-c", "import torch"], 0)]
    cases += [(label, cli + argv, status) for label, argv, status in COMMANDS]
    for _, argv, status in cases:  # warm the file cache and the bytecode once, untimed
        run_once(argv, status, env)
    load_before = os.getloadavg()
    times = {label: [] for label, _, _ in cases}
    for _ in range(args.repeats):
        for label, argv, status in cases:
            times[label].append(run_once(argv, status, env))
    load_after = os.getloadavg()

    base = statistics.median(w for w, _ in times[BASELINE])
    print(f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"{args.repeats} runs each, interleaved; command: {' '.join(Path(c).name for c in cli)}")
    print(f"{'command':50} {'wall s':>7} {'CPU s':>7} {'/ torch':>8}  within {TARGET_S} s")
    for label, samples in times.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        verdict = "" if label == BASELINE else ("yes" if wall <= TARGET_S else "NO")
        print(f"{label:50} {wall:7.3f} {cpu:7.3f} {wall / base:8.2f}  {verdict}")

    if args.packages:
        from amfmedit.deferred import DEFERRED

        bare = statistics.median(run_once([sys.executable, "-c", "pass"], 0, env)[0] for _ in range(args.repeats))
        print(f"\nimport cost of each deferred package (median of {args.repeats}, bare interpreter {bare:.3f} s "
              "subtracted; '-' not installed)")
        for name in DEFERRED:
            module = PROBES.get(name, name)
            probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, env=env)
            if probe.returncode != 0:
                print(f"  {module:20} -")
                continue
            cost = statistics.median(run_once([sys.executable, "-c", f"import {module}"], 0, env)[0]
                                     for _ in range(args.repeats))
            print(f"  {module:20} {max(cost - bare, 0.0):6.3f} s")


if __name__ == "__main__":
    main()
