"""Calibration: Brier/ECE consistent with the project, reliability data, temperature scaling."""

import numpy as np
import pytest
from scipy import special
from sklearn.metrics import brier_score_loss, roc_auc_score

from amfmedit.stats import calibration as cal
from amfmedit.train.metrics import expected_calibration_error


def _calibrated_logits(n, k, seed):
    """Labels drawn from softmax(z): a model whose probabilities are calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, k))
    p = special.softmax(z, axis=1)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z, y


def test_brier_and_ece_match_sklearn_and_project():
    z, y = _calibrated_logits(400, 3, 0)
    p = special.softmax(z, axis=1)
    assert cal.brier(y, p) == pytest.approx(brier_score_loss(y, p))
    assert cal.ece(y, p) == pytest.approx(expected_calibration_error(p, y))
    yb = (y == 0).astype(int)
    pb = p[:, 0]
    assert cal.brier(yb, pb) == pytest.approx(brier_score_loss(yb, pb))
    assert cal.ece(yb, pb) == pytest.approx(expected_calibration_error(np.stack([1 - pb, pb], 1), yb))


def test_reliability_bins_by_hand():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.02, 0.05, 0.5, 0.55, 0.99])  # 15 bins of width 1/15: bins 0, 0, 7, 8, 14
    r = cal.reliability(y, p)
    assert r.counts.sum() == 5 and r.counts[0] == 2 and r.counts[7] == 1 and r.counts[8] == 1 and r.counts[14] == 1
    assert r.mean_predicted[0] == pytest.approx(0.035) and r.observed[0] == pytest.approx(0.5)
    assert r.observed[8] == 0 and np.isnan(r.observed[3])
    assert r.kind == "positive class" and len(r.edges) == 16
    assert cal.reliability(y, np.stack([1 - p, p], 1)).counts.tolist() == r.counts.tolist()


@pytest.mark.parametrize("shape", ["single", "two", "multi"])
def test_temperature_fixes_overconfidence_and_keeps_auc(shape):
    k = 4 if shape == "multi" else 2
    z, y = _calibrated_logits(3000, k, 1)
    if shape == "single":
        z = z[:, 1] - z[:, 0]  # one logit per row: sigmoid(z) = softmax of the pair
    over = 3.0 * z  # deliberately over-confident
    fit = cal.fit_temperature(over[:1500], y[:1500])  # validation half only
    assert fit.nll_after < fit.nll_before - 0.05
    assert 2.4 < fit.temperature < 3.8  # recovers roughly the factor 3 that was put in
    before = cal.apply_temperature(over[1500:], 1.0)
    after = cal.apply_temperature(over[1500:], fit.temperature)
    yt = y[1500:]
    # Held-out rows: calibration improves; binary AUC and the arg-max do not move.
    assert cal.nll(over[1500:], yt, fit.temperature) < cal.nll(over[1500:], yt)
    if shape == "multi":
        # Multiclass: the arg-max (top-1 accuracy, the paper's DVM metric) is kept; one-vs-rest
        # AUCs of softmax(z / T) may move a little, since T changes how rows rank within a class.
        assert np.array_equal(after.argmax(1), before.argmax(1))
        assert cal.ece(yt, after) < cal.ece(yt, before)
    else:
        pa = after if after.ndim == 1 else after[:, 1]
        pb = before if before.ndim == 1 else before[:, 1]
        assert roc_auc_score(yt, pa) == pytest.approx(roc_auc_score(yt, pb))
        assert cal.ece(yt, pa) < cal.ece(yt, pb)


def test_calibrated_model_keeps_temperature_near_one_and_probs_round_trip():
    z, y = _calibrated_logits(3000, 3, 2)
    assert cal.fit_temperature(z, y).temperature == pytest.approx(1.0, abs=0.15)
    p = special.softmax(z, axis=1)
    np.testing.assert_allclose(cal.apply_temperature(cal.logits_from_probs(p), 1.0), p, atol=1e-9)
    pb = p[:, 1]
    np.testing.assert_allclose(cal.apply_temperature(cal.logits_from_probs(pb), 1.0), pb, atol=1e-9)


def test_binary_recalibration_undoes_a_sampler_shift_that_one_temperature_cannot():
    """A class-balanced sampler (x0.5 / x5) adds about log(10) to every log-odds: a temperature alone
    can only flatten such probabilities toward 0.5; the bias of Platt's recalibration removes the shift."""
    rng = np.random.default_rng(0)
    n = 4000
    true_logit = rng.normal(-1.4, 1.5, n)  # ~25% positives
    y = (rng.random(n) < special.expit(true_logit)).astype(int)
    shifted = true_logit + np.log(10.0)  # what the sampler-trained model outputs
    z = np.stack([np.zeros(n), shifted], axis=1)
    t_only = cal.fit_temperature(z, y, with_bias=False)
    both = cal.fit_temperature(z, y)
    assert both.bias == pytest.approx(-np.log(10.0), abs=0.15) and both.temperature == pytest.approx(1.0, abs=0.1)
    assert both.nll_after < t_only.nll_after - 0.05  # the temperature alone leaves most of the error
    p = cal.apply_temperature(z, both.temperature, both.bias)[:, 1]
    assert abs(p.mean() - y.mean()) < 0.02  # calibrated to the prevalence
    assert roc_auc_score(y, p) == pytest.approx(roc_auc_score(y, shifted))  # the ranking is untouched
    with pytest.raises(ValueError, match="binary models only"):
        cal.fit_temperature(rng.normal(size=(10, 3)), rng.integers(0, 3, 10), with_bias=True)


def test_parameters_at_the_end_of_their_range_are_named():
    """A shift of the log-odds beyond the bias's +-20 leaves the bias at its bound (the temperature inside
    its range); logits 50x too sharp leave the temperature at 20. Each is said in one line."""
    rng = np.random.default_rng(0)
    n = 600
    true_logit = rng.normal(-1.4, 1.5, n)
    y = (rng.random(n) < special.expit(true_logit)).astype(int)
    shifted = cal.fit_temperature(true_logit + 24.0, y)
    assert shifted.bias == -cal.BIAS_BOUND and cal.T_BOUNDS[0] < shifted.temperature < cal.T_BOUNDS[1]
    assert cal.at_bound(shifted) == ("bias",)
    (line,) = cal.bound_warnings("AMF", [cal.fit_temperature(true_logit, y), shifted], hint="a sampler")
    assert line.startswith("AMF: the recalibration bias fitted on validation reached the end of its range (-20 ")
    assert "(a sampler)" in line and "\n" not in line

    sharp = cal.fit_temperature(50.0 * true_logit, y, with_bias=False)
    assert sharp.temperature == pytest.approx(cal.T_BOUNDS[1]) and cal.at_bound(sharp) == ("temperature",)
    (line,) = cal.bound_warnings("AMF", [sharp])
    assert "temperature fitted on validation reached the end of its range (20;" in line
    assert cal.bound_warnings("AMF", [cal.fit_temperature(true_logit, y)]) == []
