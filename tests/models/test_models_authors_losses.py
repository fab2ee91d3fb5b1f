"""The authors' objective where it differs from ours (issue 24): their focal loss and their swapped
AMF normalisers, each against a hand computation on fixed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from amfmedit.errors import UserError
from amfmedit.models import losses
from amfmedit.stages.kinds import BinaryKind, LossChoice, MulticlassKind, Weights

LOGITS = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 3.0]])
TARGET = torch.tensor([0, 1, 1, 0])


def _hand_focal(alpha, gamma):
    """-1/N sum α_y (1 - p_y)^γ log p_y, written out with math on the numbers above."""
    total = 0.0
    for (a, b), y in zip(LOGITS.tolist(), TARGET.tolist()):
        p = math.exp((a, b)[y]) / (math.exp(a) + math.exp(b))
        total += -alpha[y] * (1 - p) ** gamma * math.log(p)
    return total / len(TARGET)


def _authors_focal(logits, target, gamma, alpha):
    """The authors' FocalLoss.forward as their models/Evaluator.py computes it (mean reduction)."""
    logpt = torch.log_softmax(logits, dim=-1)
    pt = logpt.exp().gather(-1, target.unsqueeze(-1)).squeeze(-1)
    logpt = logpt.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return (-((1 - pt) ** gamma) * logpt * torch.tensor(alpha).gather(0, target)).mean()


def test_focal_loss_matches_a_hand_computation_and_the_authors_form():
    got = losses.focal_loss(LOGITS, TARGET, 1.0, (0.1, 2.0))
    assert float(got) == pytest.approx(_hand_focal((0.1, 2.0), 1.0), rel=1e-6)
    assert float(got) == pytest.approx(float(_authors_focal(LOGITS, TARGET, 1.0, (0.1, 2.0))), rel=1e-6)
    # γ = 0 is eq. 12, and the authors' γ = 1 is not: the old NOTE's "same quantity" was wrong
    eq12 = losses.weighted_ce_loss(LOGITS, TARGET, (0.1, 2.0))
    assert float(losses.focal_loss(LOGITS, TARGET, 0.0, (0.1, 2.0))) == pytest.approx(float(eq12), rel=1e-6)
    assert abs(float(got) - float(eq12)) > 0.1 * float(eq12)
    assert losses.FOCAL_GAMMA == 1.0  # the authors' default, which their OL3I configuration keeps
    assert float(losses.focal_loss(LOGITS, TARGET, 2.0)) == pytest.approx(_hand_focal((1.0, 1.0), 2.0), rel=1e-6)
    with pytest.raises(ValueError, match="gamma"):
        losses.focal_loss(LOGITS, TARGET, -1.0)


def test_the_kind_builds_the_loss_that_loss_names():
    w = Weights(sampler=(0.5, 5.0), loss=(0.1, 2.0))
    focal = BinaryKind().training_loss(w, LossChoice("focal", 1.0))
    assert float(focal(LOGITS, TARGET)) == pytest.approx(_hand_focal((0.1, 2.0), 1.0), rel=1e-6)
    for choice in (LossChoice(), LossChoice("ce")):  # the kind's own: eq. 12 with weights
        ce = BinaryKind().training_loss(w, choice)
        assert float(ce(LOGITS, TARGET)) == pytest.approx(float(losses.weighted_ce_loss(LOGITS, TARGET, (0.1, 2.0))))
    plain = MulticlassKind().training_loss(Weights(), LossChoice("focal", 2.0))  # no α: every class weighs 1
    assert float(plain(LOGITS, TARGET)) == pytest.approx(_hand_focal((1.0, 1.0), 2.0), rel=1e-6)
    with pytest.raises(UserError, match="--loss hinge: not a loss of binary classification"):
        BinaryKind().check_loss(LossChoice("hinge"))


def test_the_authors_normalisers_are_swapped_at_rconf_095():
    from amfmedit.models.fusion import amf_masks, amf_split

    assert amf_split(2048, 0.95) == (998, 1050)
    # z' with one constant per part: image 1 (kept) / 3 (discarded), tabular 2 (discarded) / 0.5 (kept)
    z_img = torch.cat([torch.full((3, 998), 1.0), torch.full((3, 1050), 3.0)], dim=1)
    z_tab = torch.cat([torch.full((3, 998), 2.0), torch.full((3, 1050), 0.5)], dim=1)
    m_img, m_tab = amf_masks(2048, 998)
    # eq. 9: each discarded part's l1 norm over its own length (ours) or the other one's (theirs)
    assert float(losses.leakage_loss(z_img, z_tab, m_img, m_tab)) == pytest.approx((3 + 2) / 2)
    theirs = (3 * 1050 / 998 + 2 * 998 / 1050) / 2
    assert float(losses.leakage_loss(z_img, z_tab, m_img, m_tab, "authors")) == pytest.approx(theirs, rel=1e-6)
    # eq. 10: the retained parts' densities
    assert float(losses.density_loss(z_img, z_tab, m_img, m_tab)) == pytest.approx(0.5)
    theirs = abs(1 * 998 / 1050 - 0.5 * 1050 / 998)
    assert float(losses.density_loss(z_img, z_tab, m_img, m_tab, "authors")) == pytest.approx(theirs, rel=1e-6)
    with pytest.raises(ValueError, match="normaliser"):
        losses.density_loss(z_img, z_tab, m_img, m_tab, "swapped")


def test_amf_takes_the_normaliser_as_a_setting_and_old_checkpoints_load_with_ours():
    from amfmedit.models import AMFFusion, build_model, from_checkpoint, model_config

    torch.manual_seed(0)
    amf = AMFFusion(d_img=8, d_tab=4, n_classes=2, r_conf=0.95, d_out=41, normaliser="authors")
    z_img, z_tab = torch.randn(5, 8), torch.randn(5, 4)
    out = amf(z_img, z_tab)
    zi, zt = amf.psi_img(z_img), amf.psi_tab(z_tab)
    leak, dens = out.aux["leakage"].item(), out.aux["density"].item()
    assert leak == pytest.approx(losses.leakage_loss(zi, zt, amf.m_img, amf.m_tab, "authors").item())
    assert dens == pytest.approx(losses.density_loss(zi, zt, amf.m_img, amf.m_tab, "authors").item())
    assert dens != pytest.approx(losses.density_loss(zi, zt, amf.m_img, amf.m_tab).item())
    again = from_checkpoint({**model_config(amf), "state_dict": amf.state_dict()})
    assert again.normaliser == "authors"
    old = {k: v for k, v in amf.config.items() if k != "normaliser"}  # a checkpoint written before the setting
    assert build_model("amf", old).normaliser == "paper"
