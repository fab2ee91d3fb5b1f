"""DeLong variance and paired test: a hand computation and pROC's published values."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from amfmedit.stats.delong import UndefinedVarianceWarning, delong_auc, delong_covariance, delong_paired, placements

# Tiny case: positives score a = (0.9, 0.6, 0.4), negatives (0.5, 0.4); model b on the same
# rows scores positives (0.8, 0.3, 0.7), negatives (0.2, 0.6).
Y = np.array([1, 1, 1, 0, 0])
A = np.array([0.9, 0.6, 0.4, 0.5, 0.4])
B = np.array([0.8, 0.3, 0.7, 0.2, 0.6])


def test_placements_by_hand():
    auc, v10, v01 = placements(Y, np.stack([A, B]))
    # V10 = share of negatives below each positive (tie = 1/2); V01 = share of positives above each negative.
    # a: 0.9 -> 2/2, 0.6 -> 2/2, 0.4 -> (0 + 1/2)/2;   negatives 0.5 -> 2/3, 0.4 -> (2 + 1/2)/3
    # b: 0.8 -> 2/2, 0.3 -> 1/2, 0.7 -> 2/2;            negatives 0.2 -> 3/3, 0.6 -> 2/3
    np.testing.assert_allclose(v10, [[1, 1, 0.25], [1, 0.5, 1]])
    np.testing.assert_allclose(v01, [[2 / 3, 5 / 6], [1, 2 / 3]])
    np.testing.assert_allclose(auc, [0.75, 5 / 6])


def test_variance_and_paired_test_by_hand():
    # S10 = cov of V10 (ddof 1): var_a = .1875, var_b = 1/12, cov = -.0625
    # S01 = cov of V01 (ddof 1): var_a = 1/72, var_b = 1/18, cov = -1/36
    # S = S10 / 3 + S01 / 2
    var_a, var_b, cov_ab = 0.1875 / 3 + (1 / 72) / 2, (1 / 12) / 3 + (1 / 18) / 2, -0.0625 / 3 + (-1 / 36) / 2
    assert var_a == pytest.approx(5 / 72) and var_b == pytest.approx(1 / 18) and cov_ab == pytest.approx(-5 / 144)
    _, cov = delong_covariance(Y, np.stack([A, B]))
    np.testing.assert_allclose(cov, [[var_a, cov_ab], [cov_ab, var_b]])

    one = delong_auc(Y, A)
    assert one.auc == pytest.approx(0.75) and one.var == pytest.approx(5 / 72)
    half = 1.959963984540054 * math.sqrt(5 / 72)
    assert one.low == pytest.approx(max(0.0, 0.75 - half)) and one.high == 1.0  # clipped to [0, 1]

    t = delong_paired(Y, A, B)
    var_d = 5 / 72 + 1 / 18 - 2 * (-5 / 144)  # = 7/36
    assert t.diff == pytest.approx(0.75 - 5 / 6)
    assert t.var == pytest.approx(7 / 36)
    assert t.z == pytest.approx((-1 / 12) / math.sqrt(var_d))
    assert t.p == pytest.approx(2 * stats.norm.sf(abs(t.z)))


def test_placement_auc_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(int)
    s = np.round(rng.normal(size=300) + y, 1)  # many ties
    auc, _, _ = placements(y, s)
    assert auc[0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert delong_auc(y, s).auc == roc_auc_score(y, s)


@pytest.fixture(scope="module")
def asah():
    with open(Path(__file__).parent / "data" / "asah.csv") as fh:
        rows = list(csv.DictReader(fh))
    y = np.array([r["outcome"] == "Poor" for r in rows], dtype=int)
    return y, {k: np.array([float(r[k]) for r in rows]) for k in ("wfns", "s100b", "ndka")}


def test_matches_proc_on_asah(asah):
    """Values asserted by pROC's test suite (tests/testthat/test-{auc,var,ci.auc,roc.test}.R)."""
    y, s = asah
    assert (y.sum(), len(y) - y.sum()) == (41, 72)
    assert delong_auc(y, s["wfns"]).auc == pytest.approx(0.823678861788618, abs=1e-12)
    assert delong_auc(y, s["wfns"]).var == pytest.approx(0.00146991470882363, rel=1e-10)
    assert delong_auc(y, s["ndka"]).var == pytest.approx(0.0031908105493913, rel=1e-10)
    assert delong_auc(y, s["s100b"]).var == pytest.approx(0.00266868245717244, rel=1e-10)
    ci = delong_auc(y, s["ndka"])  # pROC ci.auc(r.ndka)
    np.testing.assert_allclose([ci.low, ci.auc, ci.high], [0.501244999271703, 0.611957994579946, 0.722670989888189],
                               rtol=1e-10)
    expected = {  # roc.test(r.a, r.b): Z, p, conf.int of AUC(a) - AUC(b)
        ("wfns", "s100b"): (2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478),
        ("wfns", "ndka"): (2.79777591868904, 0.00514557970691098, 0.0634011709339876, 0.3600405634833566),
        ("ndka", "s100b"): (-1.39077002573558, 0.164295175223054, -0.2876917446341914, 0.0488706064228094),
    }
    for (a, b), (z, p, lo, hi) in expected.items():
        t = delong_paired(y, s[a], s[b])
        np.testing.assert_allclose([t.z, t.p, t.low, t.high], [z, p, lo, hi], rtol=1e-10)
        back = delong_paired(y, s[b], s[a])
        assert back.z == pytest.approx(-z) and back.p == pytest.approx(p)


def test_identical_scores_give_no_difference(asah):
    y, s = asah
    t = delong_paired(y, s["wfns"], s["wfns"])
    assert (t.z, t.p, t.diff) == (0.0, 1.0, 0.0)


def test_interval_covers_true_auc_at_nominal_rate():
    """Binormal scores with separation d have AUC = Phi(d / sqrt 2); 95% intervals should cover it ~95%."""
    rng = np.random.default_rng(2026)
    d, m, n, reps = 1.0, 60, 90, 300
    true_auc = stats.norm.cdf(d / math.sqrt(2))
    y = np.r_[np.ones(m, int), np.zeros(n, int)]
    hits = 0
    for _ in range(reps):
        s = np.r_[rng.normal(d, 1, m), rng.normal(0, 1, n)]
        ci = delong_auc(y, s)
        hits += ci.low <= true_auc <= ci.high
    assert abs(hits / reps - 0.95) < 0.035, hits / reps


def test_one_positive_gives_no_interval_and_a_warning():
    """pROC's ci.auc returns NA with one case (or one control): the sample variance of a single
    placement value has no degrees of freedom. A zero there would give a falsely narrow interval."""
    y = np.r_[1, np.zeros(30, int)]
    a = np.linspace(0.0, 1.0, 31)[::-1]  # the positive scores highest: AUC 1
    b = np.r_[0.5, np.linspace(0.0, 1.0, 30)]
    with pytest.warns(UndefinedVarianceWarning, match="1 positive and 30 negative rows"):
        one = delong_auc(y, a)
    assert one.auc == 1.0 and (one.n_pos, one.n_neg) == (1, 30)
    assert math.isnan(one.var) and math.isnan(one.low) and math.isnan(one.high)
    with pytest.warns(UndefinedVarianceWarning):
        t = delong_paired(y, a, b)
    assert t.diff == pytest.approx(1.0 - roc_auc_score(y, b))
    assert all(math.isnan(v) for v in (t.var, t.low, t.high, t.z, t.p))
    with pytest.warns(UndefinedVarianceWarning, match="30 positive and 1 negative"):
        assert math.isnan(delong_auc(1 - y, b).low)
    _, cov = delong_covariance(y, np.stack([a, b]))
    assert cov.shape == (2, 2) and np.isnan(cov).all()


def test_two_of_each_class_is_defined(recwarn):
    y = np.array([1, 1, 0, 0])
    ci = delong_auc(y, np.array([0.9, 0.4, 0.5, 0.1]))
    assert ci.auc == 0.75 and np.isfinite([ci.var, ci.low, ci.high]).all()
    assert not [w for w in recwarn if issubclass(w.category, UndefinedVarianceWarning)]
