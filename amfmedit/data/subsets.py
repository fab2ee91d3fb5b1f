"""Label fractions: stratified, nested subsets of the training rows (learning curves).

``train_subset(labels, rows, fraction, seed)`` keeps, of every class present in ``rows``,
``max(1, round(fraction * n_class))`` rows (never more than the class has): the class
proportions of the full training split are kept and every class keeps at least one row, so a
1 % subset of a rare-positive cohort still has positives. The rows of each class are taken
in one random order fixed by ``seed`` alone, and a smaller fraction takes a prefix of that
order, so subsets are nested (the 1 % rows lie inside the 10 % rows) and the same for every
stage trained with the same seed.
"""

from __future__ import annotations

import hashlib

import numpy as np

_STREAM = 0x5B5E7  # keeps the subset's random order independent of every other use of the seed


def class_counts(labels: np.ndarray, rows: np.ndarray, fraction: float) -> dict[int, int]:
    """Rows kept per class: ``max(1, round(fraction * n_class))``, at most ``n_class``."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction {fraction}: must lie in (0, 1]")
    classes, counts = np.unique(np.asarray(labels)[np.asarray(rows, dtype=np.int64)], return_counts=True)
    return {int(c): int(min(n, max(1, round(fraction * n)))) for c, n in zip(classes, counts)}


def train_subset(labels: np.ndarray, rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The sorted rows of ``rows`` kept at ``fraction`` under ``seed`` (all of them at 1).

    Args:
        labels: (N,) integer class of every dataset row.
        rows: the training rows (indices into ``labels``).
        fraction: in (0, 1].
        seed: fixes the order in which each class's rows are taken.
    """
    rows = np.asarray(rows, dtype=np.int64)
    keep = class_counts(labels, rows, fraction)
    if fraction == 1:
        return np.sort(rows)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _STREAM]))
    ordered = np.sort(rows)  # the order of ``rows`` given must not matter
    y = np.asarray(labels)[ordered]
    out = []
    for c in sorted(keep):
        members = ordered[y == c]
        out.append(members[rng.permutation(len(members))[: keep[c]]])
    return np.sort(np.concatenate(out))


def subset_record(labels: np.ndarray, rows: np.ndarray, fraction: float, seed: int, of: int) -> dict:
    """What a stage's config records about its training subset."""
    y = np.asarray(labels)[rows]
    classes, counts = np.unique(y, return_counts=True)
    return {"fraction": float(fraction), "seed": int(seed), "rows": int(len(rows)), "of": int(of),
            "per_class": {str(int(c)): int(n) for c, n in zip(classes, counts)},
            "sha1": hashlib.sha1(np.ascontiguousarray(np.sort(rows), dtype=np.int64).tobytes()).hexdigest()[:12]}
