"""Survival statistics with intervals on OL3I's sizes: 2,000 bootstrap resamples of a 1,600-row test split,
3 horizons (1, 2, 5 years), IPCW and the Breslow baseline from a 5,227-row training split.

Target of issue 22: the survival metrics of a model (Harrell's and Uno's C, AUC and Brier score at
each horizon, integrated Brier score; points and 2,000 replicates) in <= 30 s on 2 cores. Timed,
interleaved, medians of ``--repeats``:

- ``one model``: :func:`amfmedit.stats.survival.point_metrics` and
  :class:`amfmedit.stats.survival.Resampler` replicates, the intervals;
- ``evaluate``: everything ``evaluate`` computes for survival models, 6 models x 5 seeds
  (:func:`amfmedit.stages.kinds.survstats.compute`: per-seed Breslow baselines and metrics,
  intervals, calibration by decile, risk groups and log-rank, all 15 paired comparisons), no figures;
- beside it, the binary path's intervals for the same 6 x 5 models on 1,600 rows
  (:func:`amfmedit.stats.summary.summarise_run`, as ``benchmarks/bench_stats.py``);
- the naive baseline: each resample's rows indexed and scikit-survival called on them, timed on
  ``--baseline-resamples`` resamples and extrapolated linearly to 2,000.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_survival_stats.py [--repeats 3] [--baseline-resamples 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

N_TRAIN, N_VAL, N_TEST, N_MODELS, N_SEEDS = 5227, 1303, 1600, 6, 5
HORIZONS = [1.0, 2.0, 5.0]
N_BOOT = 2000


def cohort(n, rng, eta=None):
    """Weibull PH times with loss to follow-up (0.1 / year) and 3-8 years of follow-up, as the synthetic cohort."""
    eta = rng.normal(size=n) if eta is None else eta
    t = (-np.log(rng.random(n)) / np.exp(-3.4 + eta)) ** (1 / 1.2)
    c = np.minimum(rng.exponential(10.0, n), rng.uniform(3, 8, n))
    return eta, np.round(np.minimum(t, c), 4), (t <= c).astype(float)


def synthetic(seed: int = 0):
    from amfmedit.stages.evalstats import ModelPredictions

    rng = np.random.default_rng(seed)
    splits = {s: cohort(n, rng) for s, n in (("fit", N_TRAIN), ("val", N_VAL), ("test", N_TEST))}
    preds = {}
    for m in range(N_MODELS):
        def risk(s):
            eta = splits[s][0]
            return (eta[None, :] * (0.5 + 0.05 * m) + rng.normal(size=(N_SEEDS, len(eta))))[..., None]
        preds[f"model {m}"] = ModelPredictions(risk("val"), risk("test"), risk("fit"))
    y = {s: np.column_stack(v[1:]) for s, v in splits.items()}
    return y, preds


def one_model(y, preds) -> dict:
    from amfmedit.stats import bootstrap
    from amfmedit.stats import survival as sv

    pr = next(iter(preds.values()))
    fit, test = pr.fit[0, :, 0], pr.test[0, :, 0]
    train = sv.surv(y["fit"][:, 0], y["fit"][:, 1] == 1)
    t, e = y["test"][:, 0], y["test"][:, 1] == 1
    baseline = sv.breslow(fit, y["fit"][:, 0], y["fit"][:, 1])
    W = bootstrap.stratified_counts(e.astype(int), N_BOOT, 0)
    res = sv.Resampler(t, e, W, train=train, horizons=HORIZONS)
    point = sv.point_metrics(train, t, e, test, HORIZONS, baseline, grid=res.grid)
    return bootstrap.intervals_from(point, res.replicates(test, baseline))


def evaluate_path(y, preds):
    from amfmedit.stages.kinds import survstats

    stats = survstats.compute(y["fit"], y["val"], y["test"], preds, HORIZONS, time_unit="years")
    return stats.markdown()


def binary_path(seed: int = 0):
    from amfmedit.stats.summary import summarise_run

    rng = np.random.default_rng(seed)
    yb = (rng.random(N_TEST) < 0.05).astype(int)
    test = {f"model {m}": 1 / (1 + np.exp(-(rng.normal(size=(N_SEEDS, N_TEST)) + yb - 2))) for m in range(N_MODELS)}
    return lambda: summarise_run(yb, test, n_boot=N_BOOT)


def naive(y, preds, n_resamples: int) -> float:
    """Seconds per resample of the straightforward way: index the rows, call scikit-survival."""
    from amfmedit.stats import bootstrap
    from amfmedit.stats import survival as sv

    pr = next(iter(preds.values()))
    fit, test = pr.fit[0, :, 0], pr.test[0, :, 0]
    train = sv.surv(y["fit"][:, 0], y["fit"][:, 1] == 1)
    t, e = y["test"][:, 0], y["test"][:, 1] == 1
    baseline = sv.breslow(fit, y["fit"][:, 0], y["fit"][:, 1])
    W = bootstrap.stratified_counts(e.astype(int), n_resamples, 1)
    W[:, [np.argmin(t), np.argmax(t)]] = np.maximum(W[:, [np.argmin(t), np.argmax(t)]], 1)  # keep the range
    grid = sv.ibs_grid(t, HORIZONS)
    start = time.perf_counter()
    for b in range(n_resamples):
        rows = np.repeat(np.arange(len(t)), W[b].astype(int))
        sv.point_metrics(train, t[rows], e[rows], test[rows], HORIZONS, baseline, grid=grid)
    return (time.perf_counter() - start) / n_resamples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-resamples", type=int, default=20)
    args = ap.parse_args()
    y, preds = synthetic()
    binary = binary_path()
    one_model(y, preds)  # warm-up: imports and first calls
    times = {"one model": [], "evaluate (6 models x 5 seeds)": [], "binary intervals (6 x 5)": []}
    for _ in range(args.repeats):  # interleaved
        for name, fn in (("one model", lambda: one_model(y, preds)),
                         ("evaluate (6 models x 5 seeds)", lambda: evaluate_path(y, preds)),
                         ("binary intervals (6 x 5)", binary)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    per_resample = naive(y, preds, args.baseline_resamples)
    events = int(y["test"][:, 1].sum())
    print(f"survival statistics: {N_TEST} test rows ({events} events), {N_TRAIN} training rows, horizons "
          f"{HORIZONS}, {N_BOOT} resamples; {os.cpu_count()} CPUs, torch threads n/a; medians of {args.repeats}")
    for name, values in times.items():
        print(f"  {name:<32} {statistics.median(values):7.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})")
    naive_s = per_resample * N_BOOT
    one = statistics.median(times["one model"])
    print(f"  naive, one model (scikit-survival per resample, {args.baseline_resamples} timed)  "
          f"{naive_s:7.1f} s  = {naive_s / one:.0f}x the vectorised replicates")
    print(f"  target: one model <= 30 s -> {'met' if one <= 30 else 'MISSED'}; survival evaluate / binary intervals "
          f"= {statistics.median(times['evaluate (6 models x 5 seeds)']) / statistics.median(times['binary intervals (6 x 5)']):.1f}x")


if __name__ == "__main__":
    main()
