"""MambaBlock: mamba_ssm.Mamba's parameter table and initialisation, kernel detection, errors."""

from __future__ import annotations

import logging
import math
import sys

import pytest
import torch
import torch.nn.functional as F

from amfmedit.models import mamba, native_scan, scan
from amfmedit.models.mamba import MambaBlock, kernel_status, set_scan_impl
from amfmedit.models.scan import TRACEABLE_IMPLS


def mamba_ssm_state_dict_table(d_model, d_state=16, d_conv=4, expand=2):
    """The state dict of ``mamba_ssm.Mamba(d_model, d_state, d_conv, expand)`` (bias=False,
    conv_bias=True, dt_rank="auto"), written out from mamba_ssm/modules/mamba_simple.py:
    in_proj = Linear(d_model, 2*d_inner, bias=False); conv1d = Conv1d(d_inner, d_inner, d_conv,
    groups=d_inner, bias=True); x_proj = Linear(d_inner, dt_rank + 2*d_state, bias=False);
    dt_proj = Linear(dt_rank, d_inner); A_log (d_inner, d_state); D (d_inner,);
    out_proj = Linear(d_inner, d_model, bias=False); d_inner = expand*d_model,
    dt_rank = ceil(d_model/16)."""
    d_inner = expand * d_model
    dt_rank = math.ceil(d_model / 16)
    return {
        "A_log": (d_inner, d_state),
        "D": (d_inner,),
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, d_conv),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 2 * d_state, d_inner),
        "dt_proj.weight": (d_inner, dt_rank),
        "dt_proj.bias": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }


@pytest.mark.parametrize("d_model,d_state", [(64, 16), (64, 128), (24, 8)])
def test_state_dict_keys_and_shapes_equal_mamba_ssm(d_model, d_state):
    block = MambaBlock(d_model=d_model, d_state=d_state)
    got = {k: tuple(v.shape) for k, v in block.state_dict().items()}
    assert got == mamba_ssm_state_dict_table(d_model, d_state)
    # Same order as mamba_ssm too (A_log and D are the module's own parameters, listed first).
    assert list(got) == list(mamba_ssm_state_dict_table(d_model, d_state))


def test_initialisation_follows_mamba_ssm():
    torch.manual_seed(0)
    block = MambaBlock(d_model=64, d_state=16, dt_min=0.001, dt_max=0.1)
    torch.testing.assert_close(block.A_log.data, torch.log(torch.arange(1, 17.0)).repeat(128, 1))
    assert torch.equal(block.D.data, torch.ones(128))
    assert block.A_log._no_weight_decay is True and block.D._no_weight_decay is True
    assert block.A_log.dtype == torch.float32
    dt = F.softplus(block.dt_proj.bias.data)  # the bias is the inverse softplus of dt
    assert dt.min() >= 0.001 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    # Log-uniform: the median of log(dt) is near the middle of [log 0.001, log 0.1].
    assert abs(dt.log().median().item() - math.log(0.01)) < 0.6
    bound = 4**-0.5  # dt_rank = ceil(64/16) = 4
    assert block.dt_proj.weight.abs().max() <= bound


def test_d_state_above_kernel_limit_is_refused_with_kernels():
    with pytest.raises(ValueError, match=r"d_state must be at most 256.*d_state=300"):
        MambaBlock(d_model=16, d_state=300)
    block = MambaBlock(d_model=16, d_state=300, use_kernels=False)  # the pure scan has no limit
    assert block(torch.randn(1, 5, 16)).shape == (1, 5, 16)


@pytest.mark.parametrize("kwargs,match", [
    (dict(d_model=0), "d_model"), (dict(d_model=8, dt_min=0.2, dt_max=0.1), "dt_min"),
    (dict(d_model=8, dt_rank=0), "dt_rank"), (dict(d_model=8, dt_init="zeros"), "dt_init"),
])
def test_block_constructor_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MambaBlock(**kwargs)


def test_block_runs_both_pure_paths_identically_and_logs_once(caplog, monkeypatch):
    monkeypatch.setattr(mamba, "_LOGGED_PATHS", set())
    torch.manual_seed(0)
    block = MambaBlock(d_model=16, d_state=4)
    block.impl = "sequential"
    x = torch.randn(2, 11, 16)
    with caplog.at_level(logging.INFO, logger="amfmedit.models.mamba"):
        y_seq = block(x)
        block(x)
    assert [r.getMessage() for r in caplog.records].count(
        "Mamba selective scan: pytorch-sequential (cpu; impl='sequential')"
    ) == 1
    assert set_scan_impl(block, "chunked") == 1
    torch.testing.assert_close(block(x), y_seq, rtol=1e-5, atol=1e-6)
    set_scan_impl(block, "fused")
    with pytest.raises(RuntimeError, match="fused"):
        block(x)
    with pytest.raises(ValueError, match="impl"):
        set_scan_impl(block, "cuda")


def test_kernel_status_without_mamba_ssm_reports_the_reason(monkeypatch):
    monkeypatch.setattr(mamba, "_KERNELS", None)
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # import mamba_ssm -> ImportError
    path, reason = kernel_status()
    assert path.startswith("pytorch-")
    assert "mamba_ssm not importable" in reason


def test_a_broken_mamba_ssm_install_falls_back_instead_of_crashing(monkeypatch, tmp_path):
    # mamba_ssm/__init__ imports triton/transformers unguarded; a broken install can raise
    # anything (here OSError, as a CUDA library mismatch does). That must mean "no kernels".
    pkg = tmp_path / "mamba_ssm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise OSError('libcudart.so.13: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "mamba_ssm" or m.startswith("mamba_ssm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(mamba, "_KERNELS", None)
    path, reason = kernel_status()
    assert path.startswith("pytorch-")
    assert "OSError" in reason and "libcudart" in reason
    assert MambaBlock(d_model=8)(torch.randn(1, 3, 8)).shape == (1, 3, 8)


def test_kernels_can_be_disabled_by_environment(monkeypatch):
    monkeypatch.setattr(mamba, "_KERNELS", None)
    monkeypatch.setenv("AMFMEDIT_MAMBA_KERNELS", "0")
    assert kernel_status()[1].startswith("disabled by AMFMEDIT_MAMBA_KERNELS=0")


def test_info_reports_the_mamba_path():
    from amfmedit.env import mamba_path

    path, reason = mamba_path()
    assert path in ("fused", "pytorch-sequential", "pytorch-chunked", "pytorch-native") and reason


def mamba_reference_forward(block, hidden):
    """mamba_ssm.Mamba.forward's slow path (mamba_simple.py), with selective_scan_ref's loop."""
    L = hidden.shape[1]
    xz = (hidden @ block.in_proj.weight.T).transpose(1, 2)  # (B, 2*d_inner, L)
    x, z = xz.chunk(2, dim=1)
    x = F.silu(F.conv1d(x, block.conv1d.weight, block.conv1d.bias, padding=block.d_conv - 1,
                        groups=block.d_inner)[..., :L])
    x_dbl = x.transpose(1, 2) @ block.x_proj.weight.T
    dt, B, C = torch.split(x_dbl, [block.dt_rank, block.d_state, block.d_state], dim=-1)
    dt = F.softplus(dt @ block.dt_proj.weight.T + block.dt_proj.bias).transpose(1, 2)  # (B, d_inner, L)
    A = -torch.exp(block.A_log)
    h = x.new_zeros(x.shape[0], block.d_inner, block.d_state)
    ys = []
    for t in range(L):
        h = torch.exp(dt[:, :, t, None] * A) * h + (dt[:, :, t] * x[:, :, t])[..., None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = (torch.stack(ys, dim=-1) + x * block.D[:, None]) * F.silu(z)
    return y.transpose(1, 2) @ block.out_proj.weight.T


@pytest.mark.parametrize("impl", ["sequential", "chunked", pytest.param("native", marks=pytest.mark.skipif(
    not native_scan.available(), reason="native scan unavailable (no C compiler)")), *TRACEABLE_IMPLS])
@pytest.mark.parametrize("parts", [1, 3], ids=["one-part", "batch-split"])
@pytest.mark.parametrize("L", [37, 2], ids=["L37", "shorter-than-the-conv"])
def test_block_pure_path_equals_the_mamba_reference_computation(impl, parts, L, monkeypatch):
    # parts=3: the batch split over threads (the native conv and scan accumulate their weight
    # gradients per part).
    if parts > 1:
        monkeypatch.setattr(scan, "_MIN_NATIVE_WORK_PER_THREAD", 1)
        monkeypatch.setattr(scan, "_MIN_STATE_PER_THREAD", 1)
    torch.manual_seed(0)
    block = MambaBlock(d_model=16, d_state=8, d_conv=4)
    set_scan_impl(block, impl)
    x = torch.randn(3, L, 16, requires_grad=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(parts)
    try:
        y = block(x)
        w = torch.randn_like(y)
        grads = torch.autograd.grad((y * w).sum(), [x, *block.parameters()])
    finally:
        torch.set_num_threads(threads)
    x_ref = x.detach().clone().requires_grad_()
    y_ref = mamba_reference_forward(block, x_ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    ref_grads = torch.autograd.grad((y_ref * w).sum(), [x_ref, *block.parameters()])
    for (name, _), g, rg in zip([("input", None), *block.named_parameters()], grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-4, atol=1e-5 * (rg.abs().max().item() + 1e-9), msg=name)
    # time_major=True is the same computation on (L, B, d)
    torch.testing.assert_close(block(x.detach().transpose(0, 1), time_major=True).transpose(0, 1), y.detach())


def test_ft_mamba_batch_slices_on_cpu_equal_the_whole_batch(monkeypatch):
    # Wide CPU batches run through the blocks in slices of rows; outputs and every gradient
    # must be those of the whole batch at once.
    from amfmedit.models import FTMambaEncoder

    torch.manual_seed(0)
    enc = FTMambaEncoder(n_cont_features=6, cat_cardinalities=[3], d_block=8, n_blocks=2)
    x_cont, x_cat = torch.randn(5, 6), torch.randint(0, 3, (5, 1))
    w = torch.randn(5, 8)

    def run(tokens_per_slice):
        monkeypatch.setattr(FTMambaEncoder, "CPU_TOKENS_PER_SLICE", tokens_per_slice)
        enc.zero_grad()
        out = enc(x_cont, x_cat)
        (out * w).sum().backward()
        return out.detach(), [p.grad.clone() for p in enc.parameters()]

    whole, g_whole = run(10**9)
    sliced, g_sliced = run(2 * 8)  # 8 tokens per row -> slices of 2 rows: 2 + 2 + 1
    torch.testing.assert_close(sliced, whole, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_sliced, g_whole):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not native_scan.available(), reason="native scan unavailable (no C compiler)")
def test_block_native_path_built_without_openmp_equals_the_mamba_reference(monkeypatch, tmp_path):
    # The library built without OpenMP runs the batch parts one after another: the same values
    # and gradients (built afresh into an empty cache).
    monkeypatch.setenv("AMFMEDIT_CACHE", str(tmp_path))
    monkeypatch.setenv("AMFMEDIT_NATIVE_OPENMP", "0")
    monkeypatch.delenv("AMFMEDIT_NATIVE_SCAN", raising=False)
    native_scan._reset_for_tests()
    try:
        assert native_scan.available() and not native_scan.openmp(), native_scan.status()
        for L in (37, 2):
            test_block_pure_path_equals_the_mamba_reference_computation("native", 3, L, monkeypatch)
    finally:
        native_scan._reset_for_tests()
