"""Each paper equation against a hand computation (eq. 6-14)."""

from __future__ import annotations

import math

import pytest
import torch

from amfmedit.models import AMFFusion, amf_split, losses
from amfmedit.models.fusion import amf_fuse, amf_masks


@pytest.mark.parametrize("r_conf,expected", [(1.00, (1024, 1024)), (0.97, (1009, 1039)), (0.95, (998, 1050)),
                                             (0.10, (187, 1861)), (0.90, (971, 1077))])
def test_eq6_split_of_d_out(r_conf, expected):
    assert amf_split(2048, r_conf) == expected


@pytest.mark.parametrize("kwargs,match", [
    (dict(d_out=2048, r_conf=0.0), r"r_conf must be a positive finite number, however: r_conf=0.0"),
    (dict(d_out=2048, r_conf=-0.5), r"r_conf=-0.5"),
    (dict(d_out=1, r_conf=1.0), r"d_out must be at least 2, however: d_out=1"),
    (dict(d_out=4, r_conf=10.0), r"leaves a modality with no dimensions"),
])
def test_eq6_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        amf_split(**kwargs)
    with pytest.raises(ValueError, match=match):
        AMFFusion(d_img=8, d_tab=4, n_classes=2, **kwargs)


def test_eq7_masks_and_eq8_fused_vector():
    m_img, m_tab = amf_masks(5, 2)
    assert m_img.tolist() == [1, 1, 0, 0, 0] and m_tab.tolist() == [0, 0, 1, 1, 1]
    z_img = torch.tensor([[1.0, 2, 3, 4, 5]])
    z_tab = torch.tensor([[10.0, 20, 30, 40, 50]])
    assert amf_fuse(z_img, z_tab, m_img, m_tab).tolist() == [[1, 2, 30, 40, 50]]


def test_eq9_leakage_and_eq10_density_by_hand():
    # D_out 5, L_img 2, L_tab 3.
    m_img, m_tab = amf_masks(5, 2)
    z_img = torch.tensor([[1.0, -2, 3, -4, 5], [0.0, 0, 0, 0, 6]])
    z_tab = torch.tensor([[-10.0, 20, 1, 1, 1], [2.0, 0, -3, 3, 0]])
    # leakage: discarded image part (3 elements) / 3, discarded tabular part (2 elements) / 2
    leak = [(3 + 4 + 5) / 3 + (10 + 20) / 2, 6 / 3 + 2 / 2]
    assert losses.leakage_loss(z_img, z_tab, m_img, m_tab).item() == pytest.approx(sum(leak) / (2 * 2))
    # density: retained image part (2 elements) / 2 vs retained tabular part (3 elements) / 3
    dens = [abs((1 + 2) / 2 - (1 + 1 + 1) / 3), abs(0 / 2 - (3 + 3 + 0) / 3)]
    assert losses.density_loss(z_img, z_tab, m_img, m_tab).item() == pytest.approx(sum(dens) / 2)


def test_amf_module_aux_losses_use_its_masks_and_lengths():
    torch.manual_seed(0)
    amf = AMFFusion(d_img=6, d_tab=3, n_classes=2, r_conf=0.5, d_out=6)  # L_tab = 4, L_img = 2
    assert (amf.l_img, amf.l_tab) == (2, 4)
    assert "m_img" not in amf.state_dict()  # masks are rebuilt from config, follow .to()
    z_img, z_tab = torch.randn(3, 6), torch.randn(3, 3)
    out = amf(z_img, z_tab)
    zi, zt = amf.psi_img(z_img), amf.psi_tab(z_tab)
    leak = (zi[:, 2:].abs().sum(1) / 4 + zt[:, :2].abs().sum(1) / 2).mean() / 2
    dens = (zi[:, :2].abs().sum(1) / 2 - zt[:, 2:].abs().sum(1) / 4).abs().mean()
    torch.testing.assert_close(out.aux["leakage"], leak)
    torch.testing.assert_close(out.aux["density"], dens)
    torch.testing.assert_close(out.logits, amf.head(torch.cat([zi[:, :2], zt[:, 2:]], dim=1)))
    with torch.no_grad():  # inference: the training-only losses are skipped unless asked for
        assert amf(z_img, z_tab).aux == {}
        torch.testing.assert_close(amf(z_img, z_tab, with_aux=True).aux["density"], dens)


def test_eq11_itc_loss_by_hand():
    p_img = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p_tab = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    s = 1 / math.sqrt(2)
    cos = [[1.0, s], [0.0, s]]  # cos[j][k] = cos(img_j, tab_k)
    tau = 0.1

    def direction(rows):
        return -sum(rows[j][j] / tau - math.log(sum(math.exp(c / tau) for c in rows[j])) for j in range(2)) / 2

    expected = (direction(cos) + direction([list(r) for r in zip(*cos)])) / 2
    assert losses.itc_loss(p_img, p_tab, temperature=0.1).item() == pytest.approx(expected, rel=1e-5)
    # A proper softmax over all k keeps it positive, unlike eq. 11's printed k != j normaliser.
    assert losses.itc_loss(p_img, p_img).item() > 0
    with pytest.raises(ValueError, match="temperature"):
        losses.itc_loss(p_img, p_tab, temperature=0.0)


def test_eq12_weighted_ce_by_hand_and_sign():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    target = torch.tensor([0, 1, 1])
    p1 = torch.softmax(logits, 1)[:, 1].tolist()
    alpha0, alpha1 = losses.OL3I_CLASS_WEIGHTS
    # -1/N sum ( a1 y log p + a0 (1-y) log(1-p) ): both terms are penalties (eq. 12, sign fixed)
    expected = -(alpha0 * math.log(1 - p1[0]) + alpha1 * math.log(p1[1]) + alpha1 * math.log(p1[2])) / 3
    got = losses.weighted_ce_loss(logits, target, losses.OL3I_CLASS_WEIGHTS)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert got.item() > 0
    with pytest.raises(ValueError, match="one weight per class"):
        losses.weighted_ce_loss(logits, target, [1.0, 1.0, 1.0])


def test_eq13_ce_by_hand():
    logits = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    target = torch.tensor([2, 0])
    lse0 = math.log(1 + math.e + math.e**2)
    expected = ((lse0 - 2.0) + math.log(3)) / 2
    assert losses.ce_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_eq14_totals():
    from amfmedit.models import AMFFusion

    cls = torch.tensor(0.5)
    aux = {"leakage": torch.tensor(0.1), "density": torch.tensor(0.02)}
    assert AMFFusion.aux_weights == {"leakage": 5.0, "density": 5.0}  # Appendix A.3: λ1 = λ2 = 5
    assert losses.finetune_loss(cls, aux, AMFFusion.aux_weights).item() == pytest.approx(0.5 + 5 * 0.1 + 5 * 0.02)
    assert losses.finetune_loss(cls, aux, {"leakage": 0, "density": 1}).item() == pytest.approx(0.52)
    assert losses.finetune_loss(cls, {}, {}).item() == pytest.approx(0.5)
    # any named auxiliary loss counts with its weight; one without a weight is an error
    assert losses.finetune_loss(cls, {"kl": torch.tensor(1.0)}, {"kl": 0.5}).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="needs a weight"):
        losses.finetune_loss(cls, {"kl": torch.tensor(1.0)}, AMFFusion.aux_weights)
