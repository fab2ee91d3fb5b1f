"""AMF's auxiliary losses (eq. 9, 10) under bf16 autocast: fp32 arithmetic, whole-number divisors."""

from __future__ import annotations

import pytest
import torch

from amfmedit.models import AMFFusion, losses


def _by_hand(zi: torch.Tensor, zt: torch.Tensor, l_img: int, l_tab: int) -> tuple[float, float]:
    """Eq. 9 and 10 in float64 with the integer mask lengths (masks: image first L_img dims)."""
    zi, zt = zi.detach().double(), zt.detach().double()
    leak = ((zi[:, l_img:].abs().sum(1) / l_tab + zt[:, :l_img].abs().sum(1) / l_img) / 2).mean()
    dens = (zi[:, :l_img].abs().sum(1) / l_img - zt[:, l_img:].abs().sum(1) / l_tab).abs().mean()
    return float(leak), float(dens)


@pytest.mark.parametrize("r_conf, lengths", [(0.95, (998, 1050)), (0.10, (187, 1861))])
def test_aux_losses_under_cpu_bf16_autocast_equal_fp32_on_the_same_inputs(r_conf, lengths):
    torch.manual_seed(0)
    amf = AMFFusion(d_img=16, d_tab=8, n_classes=2, r_conf=r_conf, d_out=2048)
    assert (amf.l_img, amf.l_tab) == lengths
    z_img, z_tab = torch.randn(6, 16), torch.randn(6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = amf(z_img, z_tab)
        zi, zt = amf.psi_img(z_img), amf.psi_tab(z_tab)  # the bf16-rounded transitional features
    assert zi.dtype == torch.bfloat16  # autocast really ran the projections in bf16
    leak, dens = _by_hand(zi, zt, *lengths)
    for key, want in (("leakage", leak), ("density", dens)):
        got = out.aux[key]
        assert got.dtype == torch.float32, key
        assert float(got.detach()) == pytest.approx(want, rel=1e-6), key
    # what the divisors became before: the mask lengths summed in bf16 (1050 -> 1048, 1861 -> 1864)
    assert torch.ones(lengths[1], dtype=torch.bfloat16).sum().item() != lengths[1]


def test_loss_functions_upcast_low_precision_inputs():
    torch.manual_seed(1)
    zi, zt = torch.randn(4, 2048).bfloat16(), (3 * torch.randn(4, 2048)).bfloat16()  # densities far apart
    m_img = torch.zeros(2048, dtype=torch.bfloat16)
    m_img[:998] = 1
    m_tab = 1 - m_img
    leak, dens = _by_hand(zi, zt, 998, 1050)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert float(losses.leakage_loss(zi, zt, m_img, m_tab)) == pytest.approx(leak, rel=1e-6)
        assert float(losses.density_loss(zi, zt, m_img, m_tab)) == pytest.approx(dens, rel=1e-6)
