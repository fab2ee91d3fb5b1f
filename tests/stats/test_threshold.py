"""Operating points chosen on validation: targets met, bad specs refused in one line."""

from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from amfmedit.errors import UserError
from amfmedit.stats.threshold import choose_threshold, confusion_at, parse_threshold


def _val(n=500, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y - 1)))
    return y, p


def _sens_spec(y, p, t):
    pred = p >= t
    return pred[y == 1].mean(), (~pred[y == 0]).mean()


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 1.0])
def test_sensitivity_target_met_with_the_highest_such_threshold(target):
    y, p = _val()
    t = choose_threshold(f"sensitivity:{target}", y, p)
    sens, spec = _sens_spec(y, p, t.value)
    assert sens >= target and t.val_sensitivity == sens and t.val_specificity == spec
    higher = np.unique(p)[np.unique(p) > t.value]
    if len(higher):
        assert _sens_spec(y, p, higher[0])[0] < target  # the next cut up misses the target
    assert t.name == f"sensitivity:{target:g}"


@pytest.mark.parametrize("target", [0.8, 0.95, 0.99])
def test_specificity_target_met_with_the_lowest_such_threshold(target):
    y, p = _val(seed=1)
    t = choose_threshold(f"specificity:{target}", y, p)
    assert _sens_spec(y, p, t.value)[1] >= target
    lower = np.unique(p)[np.unique(p) < t.value]
    assert _sens_spec(y, p, lower[-1])[1] < target


def test_youden_maximises_j_over_all_cuts():
    y, p = _val(seed=2)
    t = choose_threshold("youden", y, p)
    best = max(sum(_sens_spec(y, p, c)) - 1 for c in np.unique(p))
    assert t.val_sensitivity + t.val_specificity - 1 == pytest.approx(best)
    assert choose_threshold(" YOUDEN ", y, p).value == t.value


def test_youden_tie_goes_to_the_highest_threshold_by_hand():
    # Descending: pos .9, pos .8, neg .7, pos .6, neg .5, neg .4 (3 and 3). J at .8 = 2/3 - 0 and at
    # .6 = 1 - 1/3: equal, but in floats 0.6666666666666666 < 0.6666666666666667.
    y = np.array([1, 1, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    t = choose_threshold("youden", y, p)
    assert t.value == 0.8 and (t.val_sensitivity, t.val_specificity) == (2 / 3, 1.0)


def _exact_youden(y, p) -> tuple[float, int]:
    """The highest cut among those with the largest J, and how many cuts share that J (exact fractions)."""
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    j = {}
    for cut in np.unique(p):
        called = p >= cut
        j[cut] = Fraction(int(called[y == 1].sum()), n_pos) - Fraction(int(called[y == 0].sum()), n_neg)
    best = max(j.values())
    tied = [cut for cut, v in j.items() if v == best]
    return max(tied), len(tied)


def test_youden_ties_on_validation_sized_sets_follow_the_documented_rule():
    """Class sizes with common factors (20 positives, 40-100 negatives) tie J often; each tie must go to
    the highest cut, as the docstring promises, whatever ``tpr - fpr`` rounds to."""
    n_tied = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        n_pos, n_neg = 20, 20 * int(rng.integers(2, 6))
        y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
        p = 1 / (1 + np.exp(-(rng.normal(size=len(y)) + 0.8 * y)))
        want, n_best = _exact_youden(y, p)
        n_tied += n_best > 1
        assert choose_threshold("youden", y, p).value == want, seed
    assert n_tied >= 5  # the loop exercises ties


def test_fixed_number_used_as_given():
    y, p = _val()
    t = choose_threshold("0.3", y, p)
    assert (t.name, t.value, t.target) == ("0.3", 0.3, None)


@pytest.mark.parametrize("spec", ["sensitivity:1.5", "specificity:0", "sens:0.9", "sensitivity:high", "1.2", "0",
                                  "maybe", ""])
def test_bad_specs_are_one_line_errors_naming_option_and_value(spec):
    with pytest.raises(UserError) as e:
        parse_threshold(spec)
    msg = str(e.value)
    assert "--threshold" in msg and repr(spec) in msg and "\n" not in msg


def test_unreachable_targets_are_refused():
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.9, 0.8, 0.1, 0.7, 0.05, 0.3])  # the top-scored row is negative, the lowest positive
    with pytest.raises(UserError, match=r"--threshold specificity:1\b.*no threshold reaches"):
        choose_threshold("specificity:1", y, p)
    with pytest.raises(UserError, match="every row positive"):
        choose_threshold("sensitivity:1", y, p)  # only the cut at 0.05 catches every positive
    with pytest.raises(UserError, match="validation split has 3 positive and 0 negative"):
        choose_threshold("youden", np.ones(3, int), np.array([0.2, 0.5, 0.9]))


def test_confusion_at_counts_and_intervals():
    y, p = _val(seed=3)
    c = confusion_at(y, p, 0.4)
    tn, fp, fn, tp = confusion_matrix(y, (p >= 0.4).astype(int)).ravel()
    assert (c.tp, c.fp, c.tn, c.fn) == (tp, fp, tn, fn)
    assert c.sensitivity.estimate == pytest.approx(tp / (tp + fn))
    assert c.npv.estimate == pytest.approx(tn / (tn + fn))
    for iv in (c.sensitivity, c.specificity, c.ppv, c.npv):
        assert iv.low <= iv.estimate <= iv.high and iv.high - iv.low > 0
