"""Intervals and paired comparisons for a run of 6 classifiers x 5 seeds on a 1,600-row test split.

Target of issue 10: under 10 s on 2 CPU cores. Timed, as ``evaluate`` will call it:

- per model: the operating point chosen on a 1,600-row validation split (Youden), every
  metric per seed (5 seeds), the seed-averaged prediction's DeLong AUC interval, Clopper-Pearson
  intervals for sensitivity, specificity, PPV, NPV and stratified bootstrap intervals (2,000
  resamples, also feeding the paired comparisons) for AUPRC, balanced accuracy, Brier, ECE
  (``amfmedit.stats.summary.summarise_run``);
- all 15 pairs: paired DeLong test for AUC, paired bootstrap for six other metrics, Holm
  adjustment, ``comparisons.md`` and ``comparisons.csv`` rendered.

Synthetic predictions (OL3I-like prevalence, 5%); the cost does not depend on their values.

Also timed: the whole reporting path of ``amfmedit evaluate`` on the same inputs
(:mod:`amfmedit.stages.evalstats`: thresholds per seed and per model, temperature scaling per
seed, the intervals and comparisons above, calibration intervals, results tables, and the
figures: ROC, PR, decision curve, six reliability diagrams), without scoring the models.

Baseline, measured in the same run: the straightforward implementation - for each resample,
index the rows and call scikit-learn (``roc_auc_score``, ``average_precision_score``,
``balanced_accuracy_score``, ``recall_score`` x 2, ``precision_score`` x 2,
``brier_score_loss``) plus the project's ECE. Timed on ``--baseline-resamples`` resamples of
one model and extrapolated linearly to 6 models x 2,000 resamples; that assumes the pairs
reuse those replicates (the cheapest naive design), so the true naive cost is higher.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_stats.py [--repeats 3] [--baseline-resamples 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

N_MODELS, N_SEEDS, N_ROWS, PREVALENCE = 6, 5, 1600, 0.05
NAMES = ["AMF + FT-Mamba, trainable", "AMF + FT-Mamba, frozen", "Concatenation + FT-Mamba, trainable",
         "Cross-attention + FT-Mamba, trainable", "ResNet-50 (image only)", "FT-Mamba (tabular only)"]


def synthetic(seed: int = 0):
    rng = np.random.default_rng(seed)
    y_val, y = ((rng.random(N_ROWS) < PREVALENCE).astype(int) for _ in range(2))
    shared_val, shared = rng.normal(size=N_ROWS), rng.normal(size=N_ROWS)

    def probs(labels, shared_part, strength):
        z = 0.6 * shared_part + rng.normal(size=(N_SEEDS, N_ROWS)) + strength * labels - 2.0
        return 1.0 / (1.0 + np.exp(-z))

    val = {n: probs(y_val, shared_val, 0.8 + 0.1 * i) for i, n in enumerate(NAMES)}
    test = {n: probs(y, shared, 0.8 + 0.1 * i) for i, n in enumerate(NAMES)}
    return y_val, val, y, test


def ours(y_val, val, y, test, n_boot: int):
    from amfmedit.stats import compare
    from amfmedit.stats.summary import summarise_run
    from amfmedit.stats.threshold import choose_threshold

    thresholds = {n: choose_threshold("youden", y_val, p.mean(axis=0)).value for n, p in val.items()}
    run = summarise_run(y, test, thresholds, n_boot=n_boot)
    md, csv_text = compare.render_markdown(run.comparisons), compare.render_csv(run.comparisons)
    return run, md, csv_text


def reporting_path(y_val, val, y, test, folder) -> tuple[float, float]:
    """Seconds for evaluate's statistics and tables, and for its figures (no model scoring)."""
    from amfmedit.stages import evalstats
    from amfmedit.stats import compare

    def two(p):
        return np.stack([1.0 - p, p], axis=2)

    preds = {n: evalstats.ModelPredictions(two(val[n]), two(test[n])) for n in NAMES}
    t = time.perf_counter()
    stats = evalstats.compute(y_val, y, preds, "youden", thresholded=True)
    for render in (evalstats.models_markdown, evalstats.operating_markdown, evalstats.calibration_markdown,
                   evalstats.headline_comparisons_markdown):
        render(stats)
    compare.render_markdown(stats.summary.comparisons), compare.render_csv(stats.summary.comparisons)
    mid = time.perf_counter()
    evalstats.write_figures(folder, y, stats)
    return mid - t, time.perf_counter() - mid


def naive_per_resample(y, p, thr: float, n: int, seed: int = 0) -> float:
    """Seconds per resample of the straightforward sklearn loop (one model)."""
    from sklearn import metrics as M

    from amfmedit.train.metrics import expected_calibration_error

    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    t = time.perf_counter()
    for _ in range(n):
        rows = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        yy, pp = y[rows], p[rows]
        pred = (pp >= thr).astype(int)
        M.roc_auc_score(yy, pp)
        M.average_precision_score(yy, pp)
        M.balanced_accuracy_score(yy, pred)
        M.recall_score(yy, pred)
        M.recall_score(1 - yy, 1 - pred)
        M.precision_score(yy, pred, zero_division=np.nan)
        M.precision_score(1 - yy, 1 - pred, zero_division=np.nan)
        M.brier_score_loss(yy, pp)
        expected_calibration_error(np.stack([1 - pp, pp], axis=1), yy)
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--baseline-resamples", type=int, default=40)
    args = ap.parse_args()

    y_val, val, y, test = synthetic()
    ours(y_val[:200], {k: v[:, :200] for k, v in val.items()}, y[:200], {k: v[:, :200] for k, v in test.items()}, 50)  # warm imports
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        run, md, _ = ours(y_val, val, y, test, args.n_boot)
        times.append(time.perf_counter() - t)
    ours_s = statistics.median(times)

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        report_s = reporting_path(y_val, val, y, test, Path(folder))

    first = NAMES[0]
    per = naive_per_resample(y, test[first].mean(axis=0), run.models[first].threshold, args.baseline_resamples)
    naive_s = per * args.n_boot * N_MODELS

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"workload: {N_MODELS} classifiers x {N_SEEDS} seeds, {N_ROWS} test rows ({int(y.sum())} positive), "
          f"{args.n_boot} stratified resamples, {len(run.comparisons.rows)} comparison rows "
          f"({N_MODELS * (N_MODELS - 1) // 2} pairs)")
    print(f"cores available: {cores}; load average (1, 5, 15 min): {load}")
    print(f"amfmedit.stats (vectorised): median {ours_s:.2f} s over {args.repeats} runs "
          f"(all: {', '.join(f'{x:.2f}' for x in times)}); target < 10 s")
    print(f"evaluate's whole reporting path: {sum(report_s):.2f} s (one run) = {report_s[0]:.2f} s thresholds, "
          f"temperatures, intervals, comparisons and tables + {report_s[1]:.2f} s for 9 figures")
    print(f"baseline, naive per-resample scikit-learn loop: {per * 1e3:.2f} ms per resample per model, measured on "
          f"{args.baseline_resamples} resamples; extrapolated to {N_MODELS} models x {args.n_boot} = {naive_s:.1f} s "
          "(pairs reusing those replicates; excludes DeLong, thresholds and rendering)")
    print(f"ratio baseline / ours: {naive_s / ours_s:.1f}x")
    a = run.models[first]
    auc = a.intervals["auc"]
    print(f"example: {first}: AUC {auc.estimate:.3f} ({auc.low:.3f}-{auc.high:.3f}, DeLong), "
          f"seeds {a.seed_mean['auc']:.3f} +- {a.seed_std['auc']:.3f}; threshold {a.threshold:.3f} -> sensitivity "
          f"{a.intervals['sensitivity'].estimate:.2f} ({a.intervals['sensitivity'].low:.2f}-"
          f"{a.intervals['sensitivity'].high:.2f})")


if __name__ == "__main__":
    main()
