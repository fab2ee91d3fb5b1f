"""GPU checks: our Mamba block on mamba-ssm's kernels == our pure-PyTorch scan == mamba_ssm.Mamba.

Skipped without CUDA (and, where noted, without an importable mamba-ssm). Run on a GPU
machine with ``python -m pytest tests/models/test_models_gpu.py -m gpu -v``.
"""

from __future__ import annotations

import pytest
import torch

from amfmedit.models import FTMambaEncoder, MambaBlock, set_scan_impl
from amfmedit.models.mamba import kernel_status, kernels_available
from amfmedit.models.scan import selective_scan

pytestmark = pytest.mark.gpu

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
needs_kernels = pytest.mark.skipif(
    not (torch.cuda.is_available() and kernels_available()), reason=f"needs CUDA and mamba-ssm ({kernel_status()[1]})"
)


def assert_close(a, b, what, rtol=1e-4):
    scale = b.abs().max().item() + 1e-12
    torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * scale, msg=lambda m: f"{what}: {m}")


def run_block(block, x, impl):
    set_scan_impl(block, impl)
    x = x.detach().clone().requires_grad_()
    block.zero_grad(set_to_none=True)
    y = block(x)
    y.backward(torch.linspace(-1, 1, y.numel(), device=y.device).view_as(y))
    grads = {n: p.grad.detach().clone() for n, p in block.named_parameters()}
    return y.detach(), x.grad.detach(), grads


@needs_kernels
@pytest.mark.parametrize("d_state", [16, 128])
def test_block_matches_mamba_ssm_and_our_pure_scans(d_state):
    from mamba_ssm import Mamba

    torch.manual_seed(0)
    dev = torch.device("cuda")
    ref = Mamba(d_model=64, d_state=d_state).to(dev)
    ours = MambaBlock(d_model=64, d_state=d_state).to(dev)
    ours.load_state_dict(ref.state_dict(), strict=True)  # the same checkpoint loads both ways
    x = torch.randn(8, 424, 64, device=dev)

    xr = x.clone().requires_grad_()
    yr = ref(xr)
    yr.backward(torch.linspace(-1, 1, yr.numel(), device=dev).view_as(yr))
    ref_grads = {n: p.grad for n, p in ref.named_parameters()}

    for impl in ("fused", "chunked", "sequential"):
        y, gx, grads = run_block(ours, x, impl)
        assert_close(y, yr.detach(), f"{impl} output")
        assert_close(gx, xr.grad, f"{impl} input grad")
        for name, g in grads.items():
            assert_close(g, ref_grads[name], f"{impl} grad of {name}", rtol=2e-4)


@needs_kernels
def test_pure_scan_matches_selective_scan_fn_values_and_gradients():
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    torch.manual_seed(0)
    dev = torch.device("cuda")
    b, d, n, L = 4, 32, 16, 424
    ins = [torch.randn(b, d, L, device=dev), torch.randn(b, d, L, device=dev) * 0.5, -torch.rand(d, n, device=dev) * 8,
           torch.randn(b, n, L, device=dev), torch.randn(b, n, L, device=dev), torch.randn(d, device=dev),
           torch.randn(b, d, L, device=dev), torch.randn(d, device=dev) - 2]

    def run(fn, **kw):
        xs = [t.clone().requires_grad_() for t in ins]
        y = fn(*xs[:6], z=xs[6], delta_bias=xs[7], delta_softplus=True, **kw)
        y.backward(torch.cos(torch.arange(y.numel(), device=dev, dtype=torch.float32)).view_as(y))
        return y.detach(), [t.grad for t in xs]

    y_ref, g_ref = run(selective_scan_fn)
    for impl in ("chunked", "sequential"):
        y, g = run(selective_scan, impl=impl)
        assert_close(y, y_ref, f"{impl} output")
        for name, a, r in zip(["u", "delta", "A", "B", "C", "D", "z", "delta_bias"], g, g_ref):
            assert_close(a, r, f"{impl} grad of {name}", rtol=2e-4)


@needs_cuda
def test_pure_scan_on_cuda_equals_cpu():
    torch.manual_seed(0)
    block = MambaBlock(d_model=32, d_state=16, use_kernels=False)
    x = torch.randn(4, 97, 32)
    y_cpu, gx_cpu, g_cpu = run_block(block, x, "sequential")
    block.cuda()
    for impl in ("chunked", "sequential"):
        y, gx, g = run_block(block, x.cuda(), impl)
        assert_close(y.cpu(), y_cpu, f"{impl} output")
        assert_close(gx.cpu(), gx_cpu, f"{impl} input grad")
        for name in g:
            assert_close(g[name].cpu(), g_cpu[name], f"{impl} grad of {name}", rtol=2e-4)


@needs_cuda
def test_ft_mamba_trains_under_bf16_autocast_on_cuda():
    torch.manual_seed(0)
    enc = FTMambaEncoder(n_cont_features=423, cat_cardinalities=[5, 3]).cuda()
    x_cont = torch.randn(16, 423, device="cuda")
    x_cat = torch.randint(0, 3, (16, 2), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        z = enc(x_cont, x_cat)
    z.float().square().mean().backward()
    assert z.shape == (16, 64) and torch.isfinite(z.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


@needs_kernels
def test_kernel_status_reports_the_fused_path():
    path, reason = kernel_status()
    assert path == "fused" and "mamba_ssm" in reason
