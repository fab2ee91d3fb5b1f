"""The pure-PyTorch selective scan against a plain sequential oracle (values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from amfmedit.models import scan
from amfmedit.models.scan import selective_scan


def oracle(u, delta, A, B, C, D, z, delta_bias):
    """mamba_ssm's selective_scan_ref, written out: one step at a time, autograd does the rest."""
    dt = F.softplus(delta + delta_bias[:, None])
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        h = torch.exp(dt[:, :, t, None] * A) * h + (dt[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    return (torch.stack(ys, dim=-1) + u * D[:, None]) * F.silu(z)


def make_inputs(L, dt_bias, seed=0, batch=2, d=3, n=4):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    A = -(torch.rand(d, n, generator=g, dtype=torch.float64) * n + 0.5)
    return [r(batch, d, L), r(batch, d, L) * 0.5, A, r(batch, n, L), r(batch, n, L), r(d), r(batch, d, L),
            torch.full((d,), dt_bias, dtype=torch.float64)]


NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]


@pytest.mark.parametrize("impl", ["sequential", "chunked"])
@pytest.mark.parametrize("L", [1, 13, 424])
@pytest.mark.parametrize("dt_bias", [-6.0, 3.0], ids=["tiny-dt", "large-dt"])
def test_scan_matches_oracle_values_and_every_gradient(impl, L, dt_bias, monkeypatch):
    # Small segments so that segment boundaries (state and adjoint carries) are exercised too.
    monkeypatch.setattr(scan, "_SEQUENTIAL_SEGMENT", 5)
    monkeypatch.setitem(scan._CHUNKED_SEGMENT_ELEMENTS, "cpu", 2 * 3 * 4 * 11)
    ref_in = [t.requires_grad_() for t in make_inputs(L, dt_bias)]
    ref_out = oracle(*ref_in)
    grad_out = torch.randn_like(ref_out)
    ref_grads = torch.autograd.grad(ref_out, ref_in, grad_out)

    ins = [t.detach().float().requires_grad_() for t in ref_in]
    out = selective_scan(*ins[:6], z=ins[6], delta_bias=ins[7], delta_softplus=True, impl=impl)
    grads = torch.autograd.grad(out, ins, grad_out.float())

    assert out.dtype == torch.float32 and out.shape == ref_out.shape
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-5, atol=1e-5 * ref_out.abs().max().item())
    for name, g, rg in zip(NAMES, grads, ref_grads):
        scale = rg.abs().max().item() + 1e-12
        torch.testing.assert_close(g.double(), rg, rtol=1e-4, atol=2e-5 * scale, msg=f"grad of {name}")


@pytest.mark.parametrize("impl", ["sequential", "chunked"])
def test_scan_stays_finite_on_long_sequences_with_large_dt(impl):
    # dt ~ softplus(8) ~ 8 with A down to -16: exp(dt*A) underflows to 0 at every step; a
    # formulation that divides by cumulative decays or takes exp of positive sums would overflow.
    L = 4096
    ins = [t.float().requires_grad_() for t in make_inputs(L, 8.0, batch=1, d=2, n=16)]
    out = selective_scan(*ins[:6], z=ins[6], delta_bias=ins[7], delta_softplus=True, impl=impl)
    out.square().sum().backward()
    assert torch.isfinite(out).all()
    for name, t in zip(NAMES, ins):
        assert torch.isfinite(t.grad).all(), name


def test_impls_agree_at_the_ft_mamba_shape_slice():
    # The two implementations are the same mathematics; they agree to float32 round-off.
    ins = [t.float() for t in make_inputs(424, -2.0, batch=2, d=8, n=16)]
    a = selective_scan(*ins[:6], z=ins[6], delta_bias=ins[7], delta_softplus=True, impl="sequential")
    b = selective_scan(*ins[:6], z=ins[6], delta_bias=ins[7], delta_softplus=True, impl="chunked")
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_scan_impl_choice_and_errors(monkeypatch):
    monkeypatch.delenv("AMFMEDIT_SCAN", raising=False)
    assert scan.default_scan_impl("cpu") == "sequential"
    assert scan.default_scan_impl("cuda") == "chunked"
    monkeypatch.setenv("AMFMEDIT_SCAN", "chunked")
    assert scan.default_scan_impl("cpu") == "chunked"
    monkeypatch.setenv("AMFMEDIT_SCAN", "parallel")
    with pytest.raises(ValueError, match="AMFMEDIT_SCAN"):
        scan.default_scan_impl("cpu")
    ins = [t.float() for t in make_inputs(5, 0.0)]
    with pytest.raises(ValueError, match="impl must be one of"):
        selective_scan(*ins[:6], impl="loop")


def test_sequential_scan_split_over_threads_equals_one_thread(monkeypatch):
    # The batch is split across Python threads (each single-threaded) when it is big enough;
    # results must not depend on the split, and the intra-op thread count must be restored.
    ins = [t.float().requires_grad_() for t in make_inputs(29, -1.0, batch=5, d=3, n=4)]
    grad_out = torch.randn(5, 3, 29)

    def run():
        out = selective_scan(*ins[:6], z=ins[6], delta_bias=ins[7], delta_softplus=True, impl="sequential")
        return [out, *torch.autograd.grad(out, ins, grad_out)]

    threads = torch.get_num_threads()
    monkeypatch.setattr(scan, "_MIN_STATE_PER_THREAD", 10**9)
    assert len(scan._batch_parts(5, 12)) == 1
    single = run()
    monkeypatch.setattr(scan, "_MIN_STATE_PER_THREAD", 1)
    torch.set_num_threads(3)
    try:
        assert scan._batch_parts(5, 12) == [(0, 2), (2, 3), (3, 5)]
        split = run()
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    for name, a, b in zip(["out", *NAMES], split, single):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)
