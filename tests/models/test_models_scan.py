"""The pure-PyTorch selective scan against a plain sequential oracle (values and gradients)."""

from __future__ import annotations

import platform
import warnings

import pytest
import torch
import torch.nn.functional as F

from amfmedit.models import native_scan, scan
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

# The compiled CPU scan needs a C compiler; where there is none it is skipped here and the
# fallback (test_native_scan_falls_back_without_a_compiler) is what users get.
native = pytest.param("native", marks=pytest.mark.skipif(not native_scan.available(),
                                                         reason=f"native scan: {native_scan.status()}"))
# the forward-only plain-tensor forms for export (amfmedit.models.export) record their own autograd graph,
# so the same values-and-gradients check applies to them
IMPLS = ["sequential", "chunked", native, *scan.TRACEABLE_IMPLS]


@pytest.mark.parametrize("impl", IMPLS)
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
    # materialised: at L = 1 the traceable forms never touch A (the first state is dt u B alone); its gradient is 0
    grads = torch.autograd.grad(out, ins, grad_out.float(), materialize_grads=True)

    assert out.dtype == torch.float32 and out.shape == ref_out.shape
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-5, atol=1e-5 * ref_out.abs().max().item())
    for name, g, rg in zip(NAMES, grads, ref_grads):
        scale = rg.abs().max().item() + 1e-12
        torch.testing.assert_close(g.double(), rg, rtol=1e-4, atol=2e-5 * scale, msg=f"grad of {name}")


@pytest.mark.parametrize("impl", IMPLS)
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


@pytest.mark.skipif(not native_scan.available(), reason="no C compiler")
@pytest.mark.parametrize("gated", [True, False], ids=["fused-epilogue", "bare-scan"])
def test_native_scan_equals_the_sequential_oracle_at_the_ft_mamba_shape_across_threads(monkeypatch, gated):
    # FT-Mamba's shapes (d_inner 128, d_state 16, 424 tokens), the batch split over threads,
    # and A requiring no gradient (IG freezes the weights): values and every input gradient
    # equal the pure-PyTorch sequential scan to float32 round-off.
    g = torch.Generator().manual_seed(3)
    L, Bt, D, N = 424, 3, 128, 16
    u, z = torch.randn(L, Bt, D, generator=g), torch.randn(L, Bt, D, generator=g)
    delta = torch.randn(L, Bt, D, generator=g) - 2.0
    Bm, Cm = torch.randn(L, Bt, N, generator=g), torch.randn(L, Bt, N, generator=g)
    A = -torch.arange(1, N + 1.0).repeat(D, 1) * torch.rand(D, 1, generator=g).add(0.5)
    Dp, bias = torch.randn(D, generator=g), torch.randn(D, generator=g) * 0.1
    w = torch.randn(L, Bt, D, generator=g)
    monkeypatch.setattr(scan, "_MIN_NATIVE_WORK_PER_THREAD", 1)
    results = {}
    for impl in ("sequential", "native"):
        ins = [t.clone().requires_grad_() for t in (u, delta, Bm, Cm, z)]
        if gated:  # z a strided chunk, as the block passes it
            zz = torch.cat([torch.zeros_like(ins[4]), ins[4]], dim=-1)[..., D:]
            out = scan.selective_scan_time_major(ins[0], ins[1], A, ins[2], ins[3], Dp, zz, bias,
                                                 delta_softplus=True, impl=impl)
        else:
            out = scan.selective_scan_time_major(ins[0], ins[1], A, ins[2], ins[3], None, None, bias,
                                                 delta_softplus=True, impl=impl)
        used = ins if gated else ins[:4]
        results[impl] = [out, *torch.autograd.grad((out * w).sum(), used)]
    for name, a, b in zip(["out", "u", "delta", "B", "C", "z"], results["sequential"], results["native"]):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * a.abs().max().item(), msg=name)


def _without_a_compiler(monkeypatch, tmp_path):
    """This process as on a machine without cc: PATH holds no compiler, CC unset, empty cache."""
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("AMFMEDIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AMFMEDIT_SCAN", raising=False)
    monkeypatch.delenv("AMFMEDIT_NATIVE_SCAN", raising=False)
    native_scan._reset_for_tests()


def test_native_scan_falls_back_without_a_compiler_with_one_notice(monkeypatch, tmp_path):
    # A fresh machine without cc: one one-line notice (why, the cost, the remedies), then the
    # pure-PyTorch sequential scan as the CPU default, with the oracle's values and gradients;
    # forcing "native" says why it cannot run.
    _without_a_compiler(monkeypatch, tmp_path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert scan.default_scan_impl("cpu") == "sequential"
            ref_in = [t.requires_grad_() for t in make_inputs(13, -1.0)]
            ins = [t.detach().float().requires_grad_() for t in ref_in]
            out = selective_scan(*ins[:6], z=ins[6], delta_bias=ins[7], delta_softplus=True)
            assert not native_scan.available() and native_scan.load() is None
        notices = [str(w.message) for w in caught if issubclass(w.category, native_scan.NativeKernelWarning)]
        assert len(notices) == 1, notices
        assert "\n" not in notices[0]
        for part in ("no C compiler", f"{native_scan.FALLBACK_SLOWDOWN} slower", "gcc", "AMFMEDIT_NATIVE_SCAN=0"):
            assert part in notices[0], part
        assert "no C compiler" in native_scan.status()
        ref_out = oracle(*ref_in)
        grad_out = torch.randn_like(ref_out)
        ref_grads = torch.autograd.grad(ref_out, ref_in, grad_out)
        grads = torch.autograd.grad(out, ins, grad_out.float())
        torch.testing.assert_close(out.double(), ref_out, rtol=1e-5, atol=1e-5 * ref_out.abs().max().item())
        for name, g, rg in zip(NAMES, grads, ref_grads):
            torch.testing.assert_close(g.double(), rg, rtol=1e-4, atol=2e-5 * rg.abs().max().item(), msg=name)
        with pytest.raises(RuntimeError, match="no C compiler"):
            selective_scan(*[t.detach() for t in ins[:6]], impl="native")
        assert not list((tmp_path / "cache").glob("**/*.so"))
    finally:
        native_scan._reset_for_tests()


def test_native_scan_disabled_by_the_user_builds_nothing_and_says_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("AMFMEDIT_NATIVE_SCAN", "0")
    monkeypatch.setenv("AMFMEDIT_CACHE", str(tmp_path))
    native_scan._reset_for_tests()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", native_scan.NativeKernelWarning)
            assert native_scan.load() is None
        assert native_scan.status() == "disabled by AMFMEDIT_NATIVE_SCAN=0"
        assert not list(tmp_path.glob("**/*.so"))
    finally:
        native_scan._reset_for_tests()


def test_native_scan_is_rebuilt_into_a_fresh_cache(monkeypatch, tmp_path):
    # CI machines start with an empty cache: the library is compiled there and loads.
    if native_scan._compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("AMFMEDIT_CACHE", str(tmp_path))
    monkeypatch.delenv("AMFMEDIT_NATIVE_SCAN", raising=False)
    native_scan._reset_for_tests()
    try:
        assert native_scan.available(), native_scan.status()
        assert list((tmp_path / "kernels").glob("amfmedit_scan_*.so"))
    finally:
        native_scan._reset_for_tests()


def test_scan_impl_choice_and_errors(monkeypatch):
    monkeypatch.delenv("AMFMEDIT_SCAN", raising=False)
    assert scan.default_scan_impl("cpu") == ("native" if native_scan.available() else "sequential")
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


@pytest.mark.skipif(not native_scan.available(), reason="no C compiler")
@pytest.mark.parametrize("openmp", ["1", "0"], ids=["openmp-threads", "parts-in-turn"])
@pytest.mark.parametrize("d,n", [(35, 5), (16, 16)], ids=["blocks-and-tail-odd-N", "one-full-block"])
@pytest.mark.parametrize("isa", ["native", "no-avx512"])
def test_native_scan_vector_blocks_and_tails_match_the_oracle_on_both_thread_backends(
        openmp, d, n, isa, monkeypatch, tmp_path):
    # d = 35: two 16-channel vector blocks and a 3-channel scalar tail; n = 5: the forward's
    # two-states-at-a-time loop and its remainder; the batch split in 3 parts, each with its
    # own dA / dD accumulator; short segments. Every gradient, A's included, against the
    # float64 oracle, with the library built with OpenMP (PyTorch's threads) and without it
    # (the parts one after another), from an empty cache; isa="no-avx512": the portable C loops
    # that CPUs without AVX-512 run instead of the intrinsics.
    if isa == "no-avx512":
        if platform.machine() not in ("x86_64", "AMD64"):
            pytest.skip("-mno-avx512f is an x86 flag")
        monkeypatch.setattr(native_scan, "_FLAGS", [*native_scan._FLAGS, "-mno-avx512f"])
    monkeypatch.setenv("AMFMEDIT_CACHE", str(tmp_path))
    monkeypatch.setenv("AMFMEDIT_NATIVE_OPENMP", openmp)
    monkeypatch.delenv("AMFMEDIT_NATIVE_SCAN", raising=False)
    monkeypatch.setattr(scan, "_SEQUENTIAL_SEGMENT", 7)
    monkeypatch.setattr(scan, "_MIN_NATIVE_WORK_PER_THREAD", 1)
    native_scan._reset_for_tests()
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert native_scan.available(), native_scan.status()
        assert native_scan.openmp() == (openmp == "1" and native_scan._torch_uses_libgomp())
        ref_in = [t.requires_grad_() for t in make_inputs(40, -1.0, seed=5, batch=4, d=d, n=n)]
        ref_out = oracle(*ref_in)
        grad_out = torch.randn_like(ref_out)
        ref_grads = torch.autograd.grad(ref_out, ref_in, grad_out)
        ins = [t.detach().float().requires_grad_() for t in ref_in]
        out = selective_scan(*ins[:6], z=ins[6], delta_bias=ins[7], delta_softplus=True, impl="native")
        grads = torch.autograd.grad(out, ins, grad_out.float())
    finally:
        torch.set_num_threads(threads)
        native_scan._reset_for_tests()
    torch.testing.assert_close(out.double(), ref_out, rtol=1e-5, atol=1e-5 * ref_out.abs().max().item())
    for name, g, rg in zip(NAMES, grads, ref_grads):
        scale = rg.abs().max().item() + 1e-12
        torch.testing.assert_close(g.double(), rg, rtol=1e-4, atol=2e-5 * scale, msg=f"grad of {name}")


@pytest.mark.skipif(not native_scan.available(), reason="no C compiler")
def test_native_softplus_equals_torch_softplus_with_its_gradients():
    # dt = softplus(delta + bias) in one compiled pass: float32 round-off against the float64
    # softplus over the whole useful range, inf / -inf / nan as PyTorch gives them, and the
    # gradients (sigmoid) of x and of the bias.
    v = torch.linspace(-80, 100, 100_001).double()  # float32 inputs, float64 reference
    out = scan._NativeSoftplus.apply(v.float(), None).double()
    assert ((out - F.softplus(v)).abs() / F.softplus(v)).max() < 5e-7
    special = torch.tensor([float("inf"), -float("inf"), float("nan"), 0.0, -1e30, 1e30])
    got = scan._NativeSoftplus.apply(special, None)
    torch.testing.assert_close(got, F.softplus(special), equal_nan=True, atol=1e-30, rtol=0)
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(7, 5, 35, generator=g) * 4).requires_grad_()
    bias = torch.randn(35, generator=g).requires_grad_()
    w = torch.randn(7, 5, 35, generator=g)
    grads = torch.autograd.grad((scan._NativeSoftplus.apply(x, bias) * w).sum(), [x, bias])
    ref = torch.autograd.grad((F.softplus(x + bias) * w).sum(), [x, bias])
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
