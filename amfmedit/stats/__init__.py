"""Uncertainty, paired comparisons, operating points and calibration for test-split results.

A leaf package: it imports numpy, scipy, scikit-learn, scikit-survival, matplotlib and ``amfmedit.errors`` /
``amfmedit.io`` only, takes plain arrays keyed by display name, and knows nothing of runs.

- :mod:`~amfmedit.stats.delong`: DeLong AUC variance / interval and the paired DeLong test
  (Sun & Xu 2014 midrank algorithm).
- :mod:`~amfmedit.stats.weighted`: every metric for many bootstrap resamples at once.
- :mod:`~amfmedit.stats.bootstrap`: stratified bootstrap intervals, paired differences.
- :mod:`~amfmedit.stats.proportions`: Clopper-Pearson intervals of sensitivity, specificity,
  PPV, NPV and top-1 accuracy.
- :mod:`~amfmedit.stats.threshold`: ``--threshold`` specs, chosen on validation.
- :mod:`~amfmedit.stats.calibration`: Brier, ECE, reliability data, temperature scaling.
- :mod:`~amfmedit.stats.decision`: net benefit (decision curve analysis).
- :mod:`~amfmedit.stats.compare`: all pairs, Holm, too-small flag, comparisons.md / .csv.
- :mod:`~amfmedit.stats.splits`: warnings for one-class or few-event splits.
- :mod:`~amfmedit.stats.summary`: one call per run (spread over seeds and over patients).
- :mod:`~amfmedit.stats.plots`: ROC, PR, reliability and decision-curve figures.
- :mod:`~amfmedit.stats.survival`: C-indices, time-dependent AUC, Brier scores, Breslow baseline,
  calibration and Kaplan-Meier by risk group, with every bootstrap resample at once.
- :mod:`~amfmedit.stats.regression`: RMSE, MAE, R², calibration slope, with replicates.
- :mod:`~amfmedit.stats.outcome_plots`: Kaplan-Meier, survival calibration, predicted vs observed.
"""
