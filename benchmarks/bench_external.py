"""What ``evaluate --external`` adds to ``evaluate``: both timed on the same run, interleaved, medians.

Target of issue 21: the external cohort adds at most 20 % to ``evaluate``. The run is the demo's
shape at a smaller scale (synthetic OL3I, 800 patients, 32 x 32 slices, 32 features, prevalence 0.2):
a ResNet-18 + FT-Mamba pretrained for one epoch, concatenation and AMF fine-tuned (frozen and
trainable, one epoch, seed 2022) and the logistic and GBDT baselines (seeds 2022, 2023). The
external cohort is a second synthetic site prepared ``--like`` it (age +8 years, prevalence 0.3,
HU x 1.15) with as many rows as the internal test split (``--external-rows``). Both commands run
in this process through the library (no start-up time in either), after one warm-up call,
``evaluate`` then ``evaluate --external``, ``--repeats`` times; the medians of the process's CPU time
(all threads; what the work costs, whatever else the machine runs) and of the wall time are printed
with their ratios, and the part of the added time spent scoring the external rows with each classifier
(``External.score``: the run's models on as many rows as the test split, the floor of what
``--external`` costs) apart from the rest (its statistics, the shift table, the files).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_external.py [--repeats 3] [--external-rows 0] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def setup(work: Path, external_rows: int) -> tuple[str, int]:
    from typer.testing import CliRunner

    from amfmedit.cli import app

    def cli(*args):
        res = CliRunner().invoke(app, list(args))
        if res.exit_code != 0:
            raise SystemExit(res.output)

    cli("prepare", "--data", "synthetic-ol3i", "--patients", "800", "--image-size", "32", "--features", "32",
        "--prevalence", "0.2", "--seed", "2022", "--quiet")
    cli("pretrain", "--data", "synthetic-ol3i", "--run", "bench", "--tabular-encoder", "ft_mamba", "--recipe", "cpu",
        "--epochs", "1", "--quiet")
    cli("finetune", "--fusion", "concat", "--fusion", "amf", "--strategy", "frozen", "--strategy", "trainable",
        "--seeds", "2022", "--recipe", "cpu", "--epochs", "1", "--lr", "0.001", "--rconf", "1.0", "--quiet")
    cli("baseline", "--model", "logistic", "--model", "gbdt", "--seeds", "2022,2023", "--quiet")
    from amfmedit.data import load_prepared

    n_test = int((load_prepared("synthetic-ol3i").split == "test").sum())
    rows = external_rows or n_test
    cli("prepare", "--data", "synthetic-ol3i", "--like", "synthetic-ol3i", "--name", "site-b", "--patients", str(rows),
        "--prevalence", "0.3", "--age-shift", "8", "--hu-scale", "1.15", "--seed", "99", "--quiet")
    return "bench", rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--external-rows", type=int, default=0, help="rows of the external cohort (0: the test split's)")
    ap.add_argument("--work", type=Path, default=None, help="keep the set-up here and reuse it")
    args = ap.parse_args()
    from amfmedit.stages.common import RunOptions
    from amfmedit.stages.evaluate import EvaluateConfig, evaluate

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        os.environ["AMFMEDIT_DATA"], os.environ["AMFMEDIT_RUNS"] = str(work / "data"), str(work / "runs")
        if (work / "data" / "site-b" / "COMPLETE").is_file():
            from amfmedit.data import load_prepared

            run, rows = "bench", len(load_prepared("site-b"))
        else:
            run, rows = setup(work, args.external_rows)
        from amfmedit.stages import external as ext_mod

        scoring = [0.0]  # CPU seconds inside External.score, accumulated
        plain_score = ext_mod.External.score

        def timed_score(self, *a, **k):
            cpu = time.process_time()
            try:
                return plain_score(self, *a, **k)
            finally:
                scoring[0] += time.process_time() - cpu

        ext_mod.External.score = timed_score
        opts = RunOptions(run=run, argv=["amfmedit", "evaluate"])
        evaluate(EvaluateConfig(external="site-b"), opts)  # warm-up: imports and first-call costs of both paths
        times = {"evaluate": ([], []), "evaluate --external": ([], [])}
        scored = []
        for _ in range(args.repeats):
            for name, cfg in (("evaluate", EvaluateConfig()), ("evaluate --external", EvaluateConfig(external="site-b"))):
                scoring[0] = 0.0
                wall, cpu = time.perf_counter(), time.process_time()
                evaluate(cfg, opts)
                if cfg.external:
                    scored.append(scoring[0])
                times[name][0].append(time.perf_counter() - wall)
                times[name][1].append(time.process_time() - cpu)
    print(f"run: 4 neural classifiers (1 seed) and 2 baselines (2 seeds); internal test split scored; external "
          f"cohort {rows} rows; {args.repeats} interleaved repeats after a warm-up")
    for name, (wall, cpu) in times.items():
        print(f"{name:<20} CPU median {statistics.median(cpu):6.2f} s ({', '.join(f'{x:.2f}' for x in cpu)}); "
              f"wall median {statistics.median(wall):6.2f} s ({', '.join(f'{x:.2f}' for x in wall)})")
    (a_wall, a_cpu), (b_wall, b_cpu) = ([statistics.median(x) for x in v] for v in times.values())
    print(f"--external adds {100 * (b_cpu - a_cpu) / a_cpu:.1f} % CPU time, {100 * (b_wall - a_wall) / a_wall:.1f} % "
          "wall time (target: at most 20 %; CPU time is the figure a shared machine does not blur)")
    floor = statistics.median(scored)
    print(f"  of which scoring the {rows} external rows with every classifier: CPU median {floor:.2f} s "
          f"({100 * floor / a_cpu:.1f} % of evaluate; the run's models on as many rows as the test split); the rest "
          f"(statistics, shift table, files): {b_cpu - a_cpu - floor:.2f} s ({100 * (b_cpu - a_cpu - floor) / a_cpu:.1f} %)")


if __name__ == "__main__":
    main()
