"""Label fractions (amfmedit.data.subsets): stratified, nested, at least one row per class, fixed per seed."""

from __future__ import annotations

import numpy as np
import pytest

from amfmedit.data.subsets import class_counts, subset_record, train_subset


@pytest.fixture
def cohort():
    rng = np.random.default_rng(0)
    labels = (rng.random(1000) < 0.04).astype(np.int64)  # OL3I-like: 4 % positives
    train = np.flatnonzero(rng.random(1000) < 0.65)
    return labels, train


def test_subsets_are_nested_across_fractions(cohort):
    labels, train = cohort
    subsets = {f: set(train_subset(labels, train, f, seed=2022).tolist()) for f in (0.01, 0.1, 0.5, 1.0)}
    assert subsets[0.01] < subsets[0.1] < subsets[0.5] < subsets[1.0] == set(train.tolist())


def test_subsets_keep_the_class_proportions_and_one_row_of_every_class(cohort):
    labels, train = cohort
    n_pos = int(labels[train].sum())
    for f in (0.001, 0.01, 0.1, 0.5):
        rows = train_subset(labels, train, f, seed=7)
        pos = int(labels[rows].sum())
        assert pos >= 1 and len(rows) - pos >= 1  # even 0.1 % keeps a positive
        assert pos == max(1, round(f * n_pos))  # stratified: the class's own share
        assert set(rows.tolist()) <= set(train.tolist())
    assert class_counts(labels, train, 0.001) == {0: 1, 1: 1}


def test_subsets_are_fixed_per_seed_and_differ_between_seeds(cohort):
    labels, train = cohort
    a = train_subset(labels, train, 0.1, seed=2022)
    np.testing.assert_array_equal(a, train_subset(labels, train[::-1], 0.1, seed=2022))  # order of rows given: irrelevant
    assert not np.array_equal(a, train_subset(labels, train, 0.1, seed=2023))
    rec = subset_record(labels, a, 0.1, 2022, len(train))
    assert rec["rows"] == len(a) and rec["of"] == len(train) and sum(rec["per_class"].values()) == len(a)


def test_a_fraction_outside_zero_one_is_refused(cohort):
    labels, train = cohort
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            train_subset(labels, train, bad, seed=1)
