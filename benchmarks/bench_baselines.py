"""The three tabular baselines with their validation search on a full-size synthetic OL3I table.

Target of issue 21: ``amfmedit baseline --model logistic --model gbdt --model late-fusion`` on an
8,139 x 423 table in at most 2 minutes on 2 CPU cores. Timed: the command itself, in this process
(no start-up), with its default seeds (five, as the neural models; the hyper-parameters searched on
validation with the first) and late fusion's 16 principal components. Its per-model lines (search,
each seed's fit) are printed as the command prints them.

Set-up, not timed: ``prepare --data synthetic-ol3i`` at OL3I's size (8,139 patients, 423 features,
OL3I's 5,227 / 1,303 / 1,609 split, prevalence 0.04) with 32 x 32 slices, and a one-epoch
``pretrain`` (ResNet-18 + an MLP, ``--recipe cpu``) whose frozen image encoder late fusion embeds
every row with (the encoder's cost depends on the image size; at 512 x 512 on a GPU it is the
pretraining machine's). ``--work DIR`` keeps the set-up for the next call.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_baselines.py [--work DIR] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

BUDGET_S = 120.0


def _cli(*args) -> str:
    from typer.testing import CliRunner

    from amfmedit.cli import app

    res = CliRunner().invoke(app, list(args))
    if res.exit_code != 0:
        raise SystemExit(res.output)
    return res.output


def setup(work: Path) -> None:
    os.environ["AMFMEDIT_DATA"], os.environ["AMFMEDIT_RUNS"] = str(work / "data"), str(work / "runs")
    if not (work / "data" / "synthetic-ol3i" / "COMPLETE").is_file():
        t = time.perf_counter()
        _cli("prepare", "--data", "synthetic-ol3i", "--image-size", "32", "--quiet", "--force")
        print(f"set-up: prepare 8,139 x 423 in {time.perf_counter() - t:.0f} s")
    if not (work / "runs" / "bench" / "pretrain" / "COMPLETE").is_file():
        t = time.perf_counter()
        _cli("pretrain", "--data", "synthetic-ol3i", "--run", "bench", "--tabular-encoder", "mlp", "--recipe", "cpu",
             "--epochs", "1", "--quiet", "--force")
        print(f"set-up: pretrain one epoch in {time.perf_counter() - t:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="keep the prepared table and the run here")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--setup-only", action="store_true", help="prepare the table and the run, time nothing")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        setup(work)
        if args.setup_only:
            return
        times, out = [], ""
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = _cli("baseline", "--run", "bench", "--model", "logistic", "--model", "gbdt", "--model",
                       "late-fusion", "--force")
            times.append(time.perf_counter() - t)
    print("\n".join(line for line in out.splitlines() if line.startswith("baseline-") or "embedding" in line))
    med = statistics.median(times)
    print(f"amfmedit baseline (3 models x 5 seeds, search on validation) on 8,139 x 423: median {med:.1f} s over "
          f"{len(times)} ({', '.join(f'{x:.1f}' for x in times)}); budget {BUDGET_S:.0f} s: "
          f"{'within' if med <= BUDGET_S else 'OVER'} ({med / BUDGET_S:.2f} of it)")


if __name__ == "__main__":
    main()
