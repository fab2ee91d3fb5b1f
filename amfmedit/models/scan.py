"""Selective scan (Mamba's S6 recurrence) in pure PyTorch, fast on CPU and usable on GPU.

The recurrence, per batch row b, channel d and state n (Gu & Dao 2023, Alg. 2)::

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t          (state, (Bt, D, N))
    y_t = <C_t, h_t> + D * u_t ;  out_t = y_t * silu(z_t)

``selective_scan`` has the signature and semantics of ``mamba_ssm``'s ``selective_scan_fn``
(real A, input-dependent B and C of shape (B, N, L), ``delta_bias`` and ``delta_softplus``),
so a block can call either one.

Why a hand-written autograd function: letting autograd record a Python loop over time
allocates and saves one (Bt, D, N) tensor per step and, worse, a full-size gradient per step
when the loop slices a precomputed (Bt, D, L, N) tensor (168 s for one OL3I-shaped block on
two cores). Here the forward keeps only the inputs and the state at segment boundaries; the
backward recomputes one short time segment at a time (the work tensors stay in cache on a
CPU) and runs the adjoint recurrence backwards in time::

    g_t = C_t * dy_t + exp(dt_{t+1} A) * g_{t+1}              (dL/dh_t)

from which every input gradient is one batched reduction over the segment.

Two ways to run the linear recurrence inside a segment (``impl``):

- ``"sequential"``: one fused multiply-add per time step over the (Bt, D, N) state, in place.
  Fewest passes over memory; the default on CPU, where an op on a 1 MB state costs far more
  than Python's dispatch.
- ``"chunked"``: a two-level scan. The segment is split into M chunks of K ~ sqrt(T) steps;
  all chunks are scanned at once from a zero state (K steps), the chunk-end states are
  chained (M steps), and every position is corrected with the cumulative decay from its
  chunk start -- a product of factors in (0, 1], i.e. exp of non-positive numbers only, so it
  cannot overflow for any dt. ~2 sqrt(T) dispatches instead of T: the default on CUDA,
  where a per-token loop of small kernels is bound by launch latency.

``AMFMEDIT_SCAN`` (``auto`` | ``sequential`` | ``chunked``) overrides the choice.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor

SCAN_IMPLS = ("sequential", "chunked")

# Work tensors of one segment hold (T, Bt, D, N) floats. On a CPU a segment sized to stay in
# cache (~16 MB over the few live work tensors) is what makes the loop fast; on a GPU, bigger
# segments mean fewer launches and memory is plentiful.
_CPU_SEGMENT_ELEMENTS = 1 << 20
_CUDA_SEGMENT_ELEMENTS = 1 << 27


def default_scan_impl(device: torch.device | str) -> str:
    """The scan implementation used on ``device``: ``AMFMEDIT_SCAN`` if set, else by device."""
    env = os.environ.get("AMFMEDIT_SCAN", "auto").strip().lower()
    if env in SCAN_IMPLS:
        return env
    if env not in ("", "auto"):
        raise ValueError(f"AMFMEDIT_SCAN must be auto, sequential or chunked, however: {env=}")
    return "chunked" if torch.device(device).type == "cuda" else "sequential"


def _segment_length(n_state: int, device: torch.device, length: int) -> int:
    budget = _CUDA_SEGMENT_ELEMENTS if device.type == "cuda" else _CPU_SEGMENT_ELEMENTS
    return max(1, min(length, budget // max(n_state, 1)))


# --------------------------------------------------------------------------------------------
# The linear recurrences h_t = a_t h_{t-1} + x_t (forward) and g_t = x_t + a_{t+1} g_{t+1}
# (reverse), computed in place in ``x``. ``a`` has one more step than ``x``: a[T] is the decay
# that carries the state into the next segment (1 in padding), so the reverse recurrence reads
# the view a[1:].
# --------------------------------------------------------------------------------------------


def _scan_forward_(a: Tensor, x: Tensor, h0: Tensor | None, chunk: int) -> None:
    """x[t] <- a[t] * x[t-1] + x[t] with x[-1] = h0. a: (T+1, *S), x: (T, *S).

    ``chunk``: chunk length of the two-level scan (T must be a multiple); >= T: sequential.
    """
    T = x.shape[0]
    if chunk >= T:
        if h0 is not None:
            x[0].addcmul_(a[0], h0)
        for t in range(1, T):
            x[t].addcmul_(a[t], x[t - 1])
        return
    M = T // chunk
    av = a[:T].view(M, chunk, *x.shape[1:])
    xv = x.view(M, chunk, *x.shape[1:])
    for j in range(1, chunk):  # all chunks at once, each from a zero state
        xv[:, j].addcmul_(av[:, j], xv[:, j - 1])
    decay = torch.cumprod(av, dim=1)  # products of factors in (0, 1]: no overflow
    prev = h0
    for m in range(M):  # chain the chunk-end states
        if prev is not None:
            xv[m, chunk - 1].addcmul_(decay[m, chunk - 1], prev)
        prev = xv[m, chunk - 1]
    xv[1:, : chunk - 1].addcmul_(decay[1:, : chunk - 1], xv[:-1, chunk - 1 :])
    if h0 is not None:
        xv[0, : chunk - 1].addcmul_(decay[0, : chunk - 1], h0)


def _scan_reverse_(a: Tensor, x: Tensor, carry: Tensor | None, chunk: int) -> None:
    """x[t] <- x[t] + a[t+1] * x[t+1] with a[T] * x[T] = carry. a: (T+1, *S), x: (T, *S)."""
    T = x.shape[0]
    b = a[1:]  # b[t] = a[t+1]
    if chunk >= T:
        if carry is not None:
            x[T - 1].add_(carry)
        for t in range(T - 2, -1, -1):
            x[t].addcmul_(b[t], x[t + 1])
        return
    M = T // chunk
    bv = b.view(M, chunk, *x.shape[1:])
    xv = x.view(M, chunk, *x.shape[1:])
    for j in range(chunk - 2, -1, -1):
        xv[:, j].addcmul_(bv[:, j], xv[:, j + 1])
    # decay[m, j] = prod_{i >= j} b[m, i]: what the next chunk's first state is multiplied by.
    decay = torch.empty_like(bv)
    decay[:, chunk - 1] = bv[:, chunk - 1]
    for j in range(chunk - 2, -1, -1):
        torch.mul(bv[:, j], decay[:, j + 1], out=decay[:, j])
    # The last chunk's carry enters through b[T-1] (a[T], which is 1 by construction).
    prev = carry
    for m in range(M - 1, -1, -1):
        if prev is not None:
            xv[m, 0].addcmul_(decay[m, 0], prev)
        prev = xv[m, 0]
    xv[:-1, 1:].addcmul_(decay[:-1, 1:], xv[1:, :1])
    if carry is not None:
        xv[M - 1, 1:].addcmul_(decay[M - 1, 1:], carry)


def _chunk_plan(T: int, impl: str) -> tuple[int, int]:
    """(padded length, chunk length) for a segment of T steps; chunk >= length: sequential."""
    if impl != "chunked" or T <= 3:
        return T, T
    chunk = math.isqrt(T - 1) + 1  # ~sqrt(T): K local steps + M chaining steps is minimal
    return math.ceil(T / chunk) * chunk, chunk


# --------------------------------------------------------------------------------------------
# One segment's work tensors.
# --------------------------------------------------------------------------------------------


def _decays(dt: Tensor, A: Tensor, Tp: int) -> Tensor:
    """exp(dt_t * A) for the segment, padded with ones to Tp + 1 steps: (Tp+1, Bt, D, N).

    The ones are the identity decay: padding passes a state (forward) or an adjoint carry
    (reverse) through unchanged, so the chunked scan can use equal-length chunks.
    """
    T, Bt, D = dt.shape
    a = torch.ones(Tp + 1, Bt, D, A.shape[1], dtype=dt.dtype, device=dt.device)
    torch.mul(dt.unsqueeze(-1), A, out=a[:T])
    a[:T].exp_()
    return a


def _inputs(dtu: Tensor, Bm: Tensor, Tp: int) -> Tensor:
    """dt_t * u_t * B_t for the segment, zero-padded to Tp: (Tp, Bt, D, N)."""
    T, Bt, D = dtu.shape
    x = torch.empty(Tp, Bt, D, Bm.shape[-1], dtype=dtu.dtype, device=dtu.device)
    torch.mul(dtu.unsqueeze(-1), Bm.unsqueeze(-2), out=x[:T])
    if Tp > T:
        x[T:].zero_()
    return x


def _bmm_contract(h: Tensor, v: Tensor) -> Tensor:
    """sum_n h[t, b, d, n] * v[t, b, n] -> (T, Bt, D) as one batched matmul."""
    T, Bt, D, N = h.shape
    return torch.bmm(h.reshape(T * Bt, D, N), v.reshape(T * Bt, N, 1)).view(T, Bt, D)


def _bmm_contract_state(h: Tensor, w: Tensor) -> Tensor:
    """sum_d h[t, b, d, n] * w[t, b, d] -> (T, Bt, N)."""
    T, Bt, D, N = h.shape
    return torch.bmm(w.reshape(T * Bt, 1, D), h.reshape(T * Bt, D, N)).view(T, Bt, N)


class _SelectiveScanCore(torch.autograd.Function):
    """y_t = <C_t, h_t> with h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t. Time-major float32.

    u, dt: (L, Bt, D); A: (D, N); Bm, Cm: (L, Bt, N) -> y: (L, Bt, D).
    """

    @staticmethod
    def forward(ctx, u, dt, A, Bm, Cm, impl):
        L, Bt, D = u.shape
        N = A.shape[1]
        seg = _segment_length(Bt * D * N, u.device, L)
        dtu = dt * u
        y = torch.empty_like(u)
        starts = list(range(0, L, seg))
        h0s = torch.empty(len(starts), Bt, D, N, dtype=u.dtype, device=u.device)
        h = None
        for k, s0 in enumerate(starts):
            s1 = min(s0 + seg, L)
            T = s1 - s0
            Tp, chunk = _chunk_plan(T, impl)
            h0s[k] = 0 if h is None else h
            a = _decays(dt[s0:s1], A, Tp)
            x = _inputs(dtu[s0:s1], Bm[s0:s1], Tp)
            _scan_forward_(a, x, h, chunk)
            y[s0:s1] = _bmm_contract(x[:T], Cm[s0:s1])
            h = x[T - 1]
        ctx.save_for_backward(u, dt, A, Bm, Cm, h0s)
        ctx.seg, ctx.impl = seg, impl
        return y

    @staticmethod
    def backward(ctx, dy):
        u, dt, A, Bm, Cm, h0s = ctx.saved_tensors
        seg, impl = ctx.seg, ctx.impl
        L, Bt, D = u.shape
        dy = dy.contiguous()
        dtu = dt * u
        d_dtu = torch.empty_like(u)
        ddt = torch.empty_like(u)
        dB = torch.empty_like(Bm)
        dC = torch.empty_like(Cm)
        dA = torch.zeros_like(A)
        carry = None  # exp(dt_{s1} A) * g_{s1}: the adjoint entering from the next segment
        starts = list(range(0, L, seg))
        for k in range(len(starts) - 1, -1, -1):
            s0 = starts[k]
            s1 = min(s0 + seg, L)
            T = s1 - s0
            Tp, chunk = _chunk_plan(T, impl)
            h0 = h0s[k] if k > 0 else None
            a = _decays(dt[s0:s1], A, Tp)
            h = _inputs(dtu[s0:s1], Bm[s0:s1], Tp)
            _scan_forward_(a, h, h0, chunk)  # recompute the states of this segment
            dC[s0:s1] = _bmm_contract_state(h[:T], dy[s0:s1])
            g = torch.zeros_like(h)
            torch.mul(dy[s0:s1].unsqueeze(-1), Cm[s0:s1].unsqueeze(-2), out=g[:T])
            _scan_reverse_(a, g, carry, chunk)
            g = g[:T]
            carry = a[0] * g[0]
            # dL/d(dt_t A) = g_t * a_t * h_{t-1}
            gah = g * a[:T]
            gah[1:].mul_(h[: T - 1])
            if h0 is not None:
                gah[0].mul_(h0)
            else:
                gah[0].zero_()
            ddt[s0:s1] = (gah * A).sum(-1)
            dA += (gah * dt[s0:s1].unsqueeze(-1)).sum((0, 1))
            d_dtu[s0:s1] = _bmm_contract(g, Bm[s0:s1])
            dB[s0:s1] = _bmm_contract_state(g, dtu[s0:s1])
        du = d_dtu * dt
        ddt += d_dtu * u
        return du, ddt, dA, dB, dC, None


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    *,
    impl: str | None = None,
) -> Tensor:
    """Pure-PyTorch ``selective_scan_fn``: same arguments, same result, any device.

    Shapes: u, delta, z (Bt, D, L); A (D, N); B, C (Bt, N, L); D, delta_bias (D,).
    Returns (Bt, D, L) in u's dtype; the recurrence runs in float32.
    ``impl``: ``"sequential"`` or ``"chunked"``; None picks :func:`default_scan_impl`.
    """
    impl = impl or default_scan_impl(u.device)
    if impl not in SCAN_IMPLS:
        raise ValueError(f"impl must be one of {SCAN_IMPLS}, however: {impl=}")
    if A.is_complex():
        raise ValueError("complex A is not supported by the pure-PyTorch selective scan")
    if B.dim() != 3 or C.dim() != 3:
        raise ValueError(f"B and C must be input-dependent (Bt, N, L), however: {B.shape=}, {C.shape=}")
    dtype_in = u.dtype
    with torch.autocast(u.device.type, enabled=False):
        uf = u.float()
        dt = delta.float()
        if delta_bias is not None:
            dt = dt + delta_bias.float()[:, None]
        if delta_softplus:
            dt = F.softplus(dt)
        y = _SelectiveScanCore.apply(
            uf.permute(2, 0, 1),
            dt.permute(2, 0, 1),
            A.float(),
            B.float().permute(2, 0, 1),
            C.float().permute(2, 0, 1),
            impl,
        ).permute(1, 2, 0)
        if D is not None:
            y = y + uf * D.float()[:, None]
        if z is not None:
            y = y * F.silu(z.float())
    return y.to(dtype_in)
