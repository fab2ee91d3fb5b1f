"""The Cox partial likelihood (losses.cox_partial_likelihood_loss) against a hand computation with tied
event times, and against scikit-survival's Cox model: its fitted coefficients are where our loss is flat."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from amfmedit.models.losses import cox_partial_likelihood_loss

# five patients: two events tied at t = 1, one censored at 2, an event and a censoring tied at 3
TIME = [1.0, 1.0, 2.0, 3.0, 3.0]
EVENT = [1, 1, 0, 1, 0]
RISK = [0.1, -0.2, 0.3, 0.5, -0.1]


def _hand(ties: str) -> float:
    e = [math.exp(r) for r in RISK]
    r1 = sum(e)  # risk set at t = 1: everyone
    s1 = e[0] + e[1]  # the two events tied at t = 1
    r3 = e[3] + e[4]  # risk set at t = 3: the two rows with t >= 3 (the censored one included)
    observed = RISK[0] + RISK[1] + RISK[3]
    if ties == "efron":  # the tied pair's second factor leaves half of the tied hazard out
        denominators = math.log(r1) + math.log(r1 - 0.5 * s1) + math.log(r3)
    else:
        denominators = 2 * math.log(r1) + math.log(r3)
    return -(observed - denominators) / 3  # per event


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_cox_loss_matches_a_hand_computation_with_ties(ties):
    got = cox_partial_likelihood_loss(torch.tensor(RISK), torch.tensor(TIME), torch.tensor(EVENT, dtype=torch.float32),
                                      ties=ties)
    assert got.item() == pytest.approx(_hand(ties), rel=1e-6)
    # rows in another order: the same loss
    perm = [3, 0, 4, 2, 1]
    again = cox_partial_likelihood_loss(torch.tensor(RISK)[perm], torch.tensor(TIME)[perm],
                                        torch.tensor(EVENT, dtype=torch.float32)[perm], ties=ties)
    assert again.item() == pytest.approx(got.item(), rel=1e-12)


def test_efron_and_breslow_agree_without_ties_and_shift_invariance():
    rng = np.random.default_rng(0)
    r, t, e = (torch.tensor(v) for v in (rng.normal(size=30), rng.permutation(30) + 1.0, (rng.random(30) < .6) * 1.0))
    a = cox_partial_likelihood_loss(r, t, e, "efron")
    assert a.item() == pytest.approx(cox_partial_likelihood_loss(r, t, e, "breslow").item(), rel=1e-12)
    # a partial likelihood ignores a constant added to every risk (the baseline hazard absorbs it)
    assert cox_partial_likelihood_loss(r + 7.0, t, e).item() == pytest.approx(a.item(), rel=1e-9)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_scikit_survival_cox_coefficients_are_our_loss_minimum(ties):
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    rng = np.random.default_rng(1)
    n = 80
    x = rng.normal(size=(n, 3))
    time = np.round(rng.exponential(np.exp(-x[:, 0])) * 4) / 4 + 0.25  # rounded: many tied times
    event = rng.random(n) < 0.7
    assert len(np.unique(time[event])) < event.sum()  # ties are there
    beta = CoxPHSurvivalAnalysis(ties=ties).fit(x, Surv.from_arrays(event, time)).coef_
    b = torch.tensor(beta, requires_grad=True)
    loss = cox_partial_likelihood_loss(torch.tensor(x) @ b, torch.tensor(time), torch.tensor(event * 1.0), ties)
    (grad,) = torch.autograd.grad(loss, b)
    assert grad.abs().max().item() < 1e-6
    # and it is a minimum: a step away raises the loss
    for d in np.eye(3) * 0.05:
        moved = cox_partial_likelihood_loss(torch.tensor(x) @ torch.tensor(beta + d), torch.tensor(time),
                                            torch.tensor(event * 1.0), ties)
        assert moved.item() > loss.item()


def test_a_batch_without_events_gives_zero_with_a_graph():
    r = torch.tensor([0.3, -1.0, 2.0], requires_grad=True)
    loss = cox_partial_likelihood_loss(r, torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(r.grad, torch.zeros(3))


def test_large_risks_do_not_overflow():
    r = torch.tensor([800.0, 799.0, 10.0])
    loss = cox_partial_likelihood_loss(r, torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 1.0, 0.0]))
    expected = -((800 - (800 + math.log(1 + math.exp(-1) + math.exp(-790)))) +
                 (799 - (799 + math.log(1 + math.exp(-789))))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_bad_arguments():
    with pytest.raises(ValueError, match="ties"):
        cox_partial_likelihood_loss(torch.zeros(2), torch.ones(2), torch.ones(2), ties="exact")
    with pytest.raises(ValueError, match="one value per row"):
        cox_partial_likelihood_loss(torch.zeros(2), torch.ones(3), torch.ones(2))
