"""Survival metrics (amfmedit.stats.survival) against slow, obviously correct implementations written
here from the definitions, and their bootstrap replicates against scikit-survival on the explicitly
resampled rows. A patient censored before a horizon is never counted as event-free (a negative)."""

from __future__ import annotations

import numpy as np
import pytest

from amfmedit.stats import bootstrap
from amfmedit.stats import survival as sv


def _cohort(n, rng, censor_scale=2.0):
    x = rng.normal(size=n)
    t_event = rng.exponential(np.exp(-x))
    t_cens = rng.exponential(censor_scale, size=n)
    return x, np.minimum(t_event, t_cens), t_event <= t_cens


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(4)
    x_tr, t_tr, e_tr = _cohort(400, rng)
    x, t, e = _cohort(250, rng)
    risk = x + 0.5 * rng.normal(size=len(x))  # a noisy risk score
    horizons = np.round(np.quantile(t[e], [0.3, 0.6]), 3)
    return dict(train=sv.surv(t_tr, e_tr), t_tr=t_tr, e_tr=e_tr, x_tr=x_tr, t=t, e=e, risk=risk, horizons=horizons,
                baseline=sv.breslow(x_tr, t_tr, e_tr))


# ------------------------------------------------------------------------ slow references


def _censoring_km(t_tr, e_tr):
    """G(u): Kaplan-Meier of the censoring times (events leave the risk set first at a tied time)."""
    times = np.unique(t_tr[~e_tr])
    g, values = 1.0, []
    for u in times:
        at_risk = np.sum(t_tr >= u) - np.sum((t_tr == u) & e_tr)
        g *= 1.0 - np.sum((t_tr == u) & ~e_tr) / at_risk
        values.append(g)

    def G(s):
        k = np.searchsorted(times, s, side="right") - 1
        return 1.0 if k < 0 else values[k]

    return G


def _harrell(t, e, r):
    num = den = 0.0
    for i in range(len(t)):
        if not e[i]:
            continue
        for j in range(len(t)):
            if t[j] > t[i] or (t[j] == t[i] and not e[j]):
                den += 1
                num += 1.0 if r[i] > r[j] else 0.5 if r[i] == r[j] else 0.0
    return num / den


def _uno(t, e, r, G, tau):
    num = den = 0.0
    for i in range(len(t)):
        if not e[i] or t[i] >= tau:
            continue
        w = G(t[i]) ** -2
        for j in range(len(t)):
            if t[j] > t[i]:
                den += w
                num += w * (1.0 if r[i] > r[j] else 0.5 if r[i] == r[j] else 0.0)
    return num / den


def _auc(t, e, r, G, h):
    cases = [i for i in range(len(t)) if e[i] and t[i] <= h]
    controls = [j for j in range(len(t)) if t[j] > h]  # still event-free at h; censored before h: neither
    num = sum(G(t[i]) ** -1 * (1.0 if r[i] > r[j] else 0.5 if r[i] == r[j] else 0.0) for i in cases for j in controls)
    return num / (sum(G(t[i]) ** -1 for i in cases) * len(controls))


def _brier(t, e, s, G, h):
    total = 0.0
    for i in range(len(t)):
        if e[i] and t[i] <= h:
            total += s[i] ** 2 / G(t[i])
        elif t[i] > h:
            total += (1 - s[i]) ** 2 / G(h)
    return total / len(t)


def _breslow(x, t, e):
    """H0(u) = sum over event times v <= u of d_v / sum_{j: t_j >= v} exp(x_j)."""
    times = np.unique(t[e])
    steps = [np.sum(e & (t == v)) / np.sum(np.exp(x[t >= v])) for v in times]
    return times, np.cumsum(steps)


# ------------------------------------------------------------------------ points


def test_breslow_baseline_matches_the_definition(data):
    times, cumhaz = _breslow(data["x_tr"], data["t_tr"], data["e_tr"])
    b = data["baseline"]
    np.testing.assert_allclose(b.at(times), cumhaz, rtol=1e-10)  # at each event time
    np.testing.assert_allclose(b.at((times[:-1] + times[1:]) / 2), cumhaz[:-1], rtol=1e-10)  # flat in between
    assert b.at([times[0] / 2])[0] == 0.0 and b.at([times[-1] + 5])[0] == pytest.approx(cumhaz[-1])


def test_point_metrics_match_slow_references(data):
    d = data
    G = _censoring_km(d["t_tr"], d["e_tr"])
    got = sv.point_metrics(d["train"], d["t"], d["e"], d["risk"], d["horizons"], d["baseline"])
    assert got["c_index"] == pytest.approx(_harrell(d["t"], d["e"], d["risk"]), rel=1e-12)
    assert got["c_uno"] == pytest.approx(_uno(d["t"], d["e"], d["risk"], G, d["horizons"][-1]), rel=1e-9)
    s = d["baseline"].survival(d["risk"], d["horizons"])
    for k, h in enumerate(d["horizons"]):
        assert got[f"auc@{h:g}"] == pytest.approx(_auc(d["t"], d["e"], d["risk"], G, h), rel=1e-9)
        assert got[f"brier@{h:g}"] == pytest.approx(_brier(d["t"], d["e"], s[:, k], G, h), rel=1e-9)
    grid = sv.ibs_grid(d["t"], d["horizons"])
    sg = d["baseline"].survival(d["risk"], grid)
    ibs = np.trapezoid([_brier(d["t"], d["e"], sg[:, k], G, u) for k, u in enumerate(grid)], grid) / (grid[-1] - grid[0])
    assert got["ibs"] == pytest.approx(ibs, rel=1e-9)


def test_harrell_with_tied_times_and_risks():
    t = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 4.0])
    e = np.array([1, 0, 1, 1, 0, 1], bool)
    r = np.array([0.5, 0.5, 0.2, 0.9, 0.2, 0.1])
    assert sv.harrell_c(t, e, r) == pytest.approx(_harrell(t, e, r), rel=1e-12)
    W = np.ones((1, len(t)))
    assert sv.Resampler(t, e, W).replicates(r, None, ("c_index",))["c_index"][0] == pytest.approx(_harrell(t, e, r))


# ------------------------------------------------------------------------ replicates


def test_replicates_equal_scikit_survival_on_the_resampled_rows(data):
    d = data
    W = bootstrap.stratified_counts(d["e"].astype(int), 4, seed=11)
    # scikit-survival scores only times inside the resample's follow-up: keep its first and last rows in
    W[:, [np.argmin(d["t"]), np.argmax(d["t"])]] = np.maximum(W[:, [np.argmin(d["t"]), np.argmax(d["t"])]], 1)
    res = sv.Resampler(d["t"], d["e"], W, train=d["train"], horizons=d["horizons"])
    reps = res.replicates(d["risk"], d["baseline"])
    assert set(reps) == set(sv.metric_keys(d["horizons"]))
    for b in range(len(W)):
        rows = np.repeat(np.arange(len(d["t"])), W[b].astype(int))
        want = sv.point_metrics(d["train"], d["t"][rows], d["e"][rows], d["risk"][rows], d["horizons"], d["baseline"],
                                grid=res.grid)
        for k, v in want.items():
            assert reps[k][b] == pytest.approx(v, rel=2e-5), k  # float32 sums


def test_all_ones_weights_give_the_point_estimates(data):
    d = data
    res = sv.Resampler(d["t"], d["e"], np.ones((1, len(d["t"]))), train=d["train"], horizons=d["horizons"])
    reps = res.replicates(d["risk"], d["baseline"])
    point = sv.point_metrics(d["train"], d["t"], d["e"], d["risk"], d["horizons"], d["baseline"])
    for k, v in point.items():
        assert reps[k][0] == pytest.approx(v, rel=2e-5), k


# ------------------------------------------------------------------------ censoring is not a negative


def test_a_patient_censored_before_the_horizon_never_counts_as_a_negative(data):
    d = data
    h = float(d["horizons"][0])
    early = np.flatnonzero(~d["e"] & (d["t"] < h))
    assert len(early), "the cohort needs patients censored before the first horizon"
    i = early[0]
    ref = sv.point_metrics(d["train"], d["t"], d["e"], d["risk"], [h], d["baseline"])
    for value in (-50.0, 50.0):  # ranked below every case or above every one: neither moves AUC(h) or Brier(h)
        r = d["risk"].copy()
        r[i] = value
        got = sv.point_metrics(d["train"], d["t"], d["e"], r, [h], d["baseline"])
        assert got[f"auc@{h:g}"] == pytest.approx(ref[f"auc@{h:g}"], rel=1e-12)
        assert got[f"brier@{h:g}"] == pytest.approx(ref[f"brier@{h:g}"], abs=1e-15)
    # whereas a patient still event-free at h is a control: moving it moves AUC(h)
    j = np.flatnonzero(d["t"] > h)[0]
    r = d["risk"].copy()
    r[j] = 50.0
    assert sv.point_metrics(d["train"], d["t"], d["e"], r, [h], d["baseline"])[f"auc@{h:g}"] < ref[f"auc@{h:g}"]
    # a binary label "event by h" would count patient i as a negative; the calibration's Kaplan-Meier does not:
    # a group whose members were all censored before h has no observed value at h
    assert np.isnan(sv.km_at(d["t"][early], d["e"][early], h)[0])
    # and with one more patient followed past h, the censored ones only leave the risk set
    s, _, _ = sv.km_at(np.r_[d["t"][early], h + 1.0], np.r_[d["e"][early], False], h)
    assert s == 1.0


def test_log_rank_and_groups():
    rng = np.random.default_rng(2)
    x = np.repeat([0.0, 1.5], 100)
    t = rng.exponential(np.exp(-x))
    e = np.ones(200, bool)
    cuts = sv.group_cuts(x + rng.normal(0, 0.01, 200), 2)
    groups = sv.risk_groups(x, cuts)
    assert set(groups) == {0, 1}
    chi, p, df = sv.logrank(t, e, groups)
    assert df == 1 and p < 1e-6 and chi > 20
    assert np.isnan(sv.logrank(t, e, np.zeros(200, int))[1])
