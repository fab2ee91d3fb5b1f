"""Selective scan (Mamba's S6 recurrence) in pure PyTorch, fast on CPU and usable on GPU.

The recurrence, per batch row b, channel d and state n (Gu & Dao 2023, Alg. 2)::

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t          (state, (Bt, N, D) here)
    y_t = <C_t, h_t> + D * u_t ;  out_t = y_t * silu(z_t)

``selective_scan`` has the signature and semantics of ``mamba_ssm``'s ``selective_scan_fn``
(real A, input-dependent B and C of shape (B, N, L), ``delta_bias`` and ``delta_softplus``);
``selective_scan_time_major`` takes every sequence (L, Bt, .), the layout the scan works in.

Why hand-written autograd functions: letting autograd record a Python loop over time saves
one state per step and, when the loop slices a precomputed (Bt, D, L, N) tensor, allocates a
full-size gradient per step (168 s for one OL3I-shaped block on two cores). Here the forward
keeps only its inputs and the state every few steps; the backward recomputes one short
segment of states at a time and runs the adjoint recurrence backwards in time::

    g_t = C_t * dy_t + exp(dt_{t+1} A) * g_{t+1}              (dL/dh_t)

every input gradient being a contraction of g_t, h_t or h_{t-1} with that step's inputs.
The (L, Bt, N, D) tensors are never materialised for the whole sequence.

Two implementations (``impl``), the same mathematics:

- ``"sequential"`` (the CPU reference): one time step at a time, a handful of ops on the
  (Bt, N, D) state, which stays in cache, with the decays computed on the fly (exp2 of
  dt*A*log2(e), cheaper than exp on CPUs). On a CPU each op costs far more than Python's
  dispatch, and memory traffic, not the op count, is the limit. The batch is split over
  Python threads, each running single-threaded ops.
- ``"chunked"`` (default on CUDA): a two-level scan over a segment materialised as
  (T, Bt, N, D): M chunks of K ~ sqrt(T) steps are scanned at once from a zero state (K
  steps), the chunk-end states are chained (M steps), and every position is corrected with
  the cumulative decay from its chunk start -- a product of factors in (0, 1], i.e. exp of
  non-positive numbers only, so it cannot overflow for any dt. ~2 sqrt(T) launches instead
  of T: on a GPU a per-token loop of small kernels is bound by launch latency.

- ``"native"`` (default on CPU when a C compiler is there): the sequential scan with each
  batch row's loop over time compiled (:mod:`amfmedit.models.native_scan`), the whole
  per-step update of the (N, D) state in one pass while it sits in L1. Same checkpoints,
  recomputation and gradients; without a compiler the default falls back to ``"sequential"``,
  which stays the reference the others are tested against.

``AMFMEDIT_SCAN`` (``auto`` | ``sequential`` | ``chunked`` | ``native``) overrides the choice.

For export (ONNX, :mod:`amfmedit.models.export`) the same recurrence is also written forward-only
as plain out-of-place tensor operations (``TRACEABLE_IMPLS``): no autograd Function, thread pool,
in-place write or compiled kernel, so ``torch.export`` records it whole, every loop unrolled into
the graph (the sequence length of a tabular model is fixed by its features).
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from amfmedit.models import native_scan

SCAN_IMPLS = ("sequential", "chunked", "native")
#: forward-only scans of plain tensor operations, for torch.export / ONNX (see the module docstring)
TRACEABLE_IMPLS = ("traceable-sequential", "traceable-chunked")

# Segment lengths. "sequential" keeps a checkpoint of the (Bt, N, D) state every `seg` steps
# and its backward holds 2 * seg states: ~16 keeps them in a CPU's last-level cache. "chunked"
# materialises (seg, Bt, N, D) work tensors: longer segments mean fewer launches on a GPU
# (memory is plentiful there), shorter ones bound host memory on a CPU.
_SEQUENTIAL_SEGMENT = 16
_CHUNKED_SEGMENT_ELEMENTS = {"cuda": 1 << 27, "cpu": 1 << 23}


def default_scan_impl(device: torch.device | str) -> str:
    """The scan implementation used on ``device``: ``AMFMEDIT_SCAN`` if set, else by device."""
    env = os.environ.get("AMFMEDIT_SCAN", "auto").strip().lower()
    if env in SCAN_IMPLS:
        return env
    if env not in ("", "auto"):
        raise ValueError(f"AMFMEDIT_SCAN must be auto, sequential, chunked or native, however: {env=}")
    if torch.device(device).type == "cuda":
        return "chunked"

    return "native" if native_scan.available() else "sequential"


def _segment_length(impl: str, n_state: int, device: torch.device, length: int) -> int:
    if impl in ("sequential", "native"):
        return max(1, min(length, _SEQUENTIAL_SEGMENT))
    budget = _CHUNKED_SEGMENT_ELEMENTS["cuda" if device.type == "cuda" else "cpu"]
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
# Work tensors. States are laid out (..., N, D) so the innermost dimension is the channel
# dimension D (contiguous, vectorisable); decays use exp2 with A pre-scaled by log2(e) (exp2
# is the cheaper of the two on CPUs, and exp(dt*A) == exp2(dt*A*log2(e))).
# --------------------------------------------------------------------------------------------

_LOG2E = 1.4426950408889634


def _decays(dt: Tensor, A2: Tensor, Tp: int) -> Tensor:
    """exp(dt_t * A) for a segment, padded with ones to Tp + 1 steps: (Tp+1, Bt, N, D).

    dt (T, Bt, D); A2 = A^T * log2(e), (N, D). The ones are the identity decay: padding
    passes a state (forward) or an adjoint carry (reverse) through unchanged, so the chunked
    scan can use equal-length chunks.
    """
    T, Bt, D = dt.shape
    a = torch.empty(Tp + 1, Bt, A2.shape[0], D, dtype=dt.dtype, device=dt.device)
    a[T:].fill_(1.0)
    torch.mul(dt.unsqueeze(2), A2, out=a[:T])
    a[:T].exp2_()
    return a


def _inputs(dtu: Tensor, Bm: Tensor, Tp: int) -> Tensor:
    """dt_t * u_t * B_t for a segment, zero-padded to Tp: (Tp, Bt, N, D)."""
    T, Bt, D = dtu.shape
    x = torch.empty(Tp, Bt, Bm.shape[-1], D, dtype=dtu.dtype, device=dtu.device)
    torch.mul(Bm.unsqueeze(-1), dtu.unsqueeze(2), out=x[:T])
    if Tp > T:
        x[T:].zero_()
    return x


def _contract_n(v: Tensor, h: Tensor) -> Tensor:
    """sum_n v[..., n] * h[..., n, d] -> (..., D), one batched (1 x N) @ (N x D) matmul."""
    lead, (N, D) = h.shape[:-2], h.shape[-2:]
    return torch.bmm(v.reshape(-1, 1, N), h.reshape(-1, N, D)).view(*lead, D)


def _check_scan_inputs(u: Tensor, dt: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor):
    return (u.contiguous(), dt.contiguous(), Bm.contiguous(), Cm.contiguous(),
            A.t().contiguous(), (A * _LOG2E).t().contiguous())


def _sequential_forward_part(dt, dtu, Bm, Cm, A2, y, ckpts, seg) -> None:
    """Forward loop over time for a slice of the batch; writes y and the state checkpoints."""
    L, Bt, D = dt.shape
    h = dt.new_zeros(Bt, A2.shape[0], D)
    a = torch.empty_like(h)
    dt_s, dtu_s = dt.unsqueeze(2).unbind(0), dtu.unsqueeze(2).unbind(0)  # (Bt, 1, D)
    B_s, C_s = Bm.unsqueeze(-1).unbind(0), Cm.unsqueeze(2).unbind(0)  # (Bt, N, 1), (Bt, 1, N)
    y_s = y.unsqueeze(2).unbind(0)  # (Bt, 1, D) views into y
    for t in range(L):
        if t % seg == 0:
            ckpts[t // seg].copy_(h)
        torch.mul(dt_s[t], A2, out=a)
        a.exp2_()
        h.mul_(a).addcmul_(B_s[t], dtu_s[t])
        torch.bmm(C_s[t], h, out=y_s[t])


def _sequential_backward_part(dt, dtu, Bm, Cm, At, A2, dy, ckpts, seg, d_dtu, ddt, dB, dC) -> Tensor:
    """Backward loop for a slice of the batch: writes the per-step gradients, returns dA^T."""
    L, Bt, D = dt.shape
    N = At.shape[0]
    W = dt.new_zeros(Bt, N, D)  # sum_t gah_t * dt_t; dA^T is its sum over the batch
    H = dt.new_empty(seg + 1, Bt, N, D)  # states h_{s0-1} .. h_{s1-1} of one segment
    Aseg = dt.new_empty(seg, Bt, N, D)  # decays of one segment
    carry = dt.new_zeros(Bt, N, D)  # a_{t+1} * g_{t+1}
    g, gah, prod = torch.empty_like(carry), torch.empty_like(carry), torch.empty_like(carry)
    dt_s, dtu_s, dy_s = dt.unsqueeze(2).unbind(0), dtu.unsqueeze(2).unbind(0), dy.unsqueeze(2).unbind(0)
    B_col, B_row, C_col = Bm.unsqueeze(-1).unbind(0), Bm.unsqueeze(2).unbind(0), Cm.unsqueeze(-1).unbind(0)
    d_dtu_s = d_dtu.unsqueeze(2).unbind(0)
    for k in range((L + seg - 1) // seg - 1, -1, -1):
        s0 = k * seg
        T = min(seg, L - s0)
        H[0].copy_(ckpts[k])
        for i in range(T):  # recompute this segment's decays and states
            t = s0 + i
            torch.mul(dt_s[t], A2, out=Aseg[i])
            Aseg[i].exp2_()
            torch.mul(Aseg[i], H[i], out=H[i + 1]).addcmul_(B_col[t], dtu_s[t])
        for i in range(T - 1, -1, -1):
            t = s0 + i
            torch.addcmul(carry, C_col[t], dy_s[t], out=g)  # g_t = dL/dh_t
            # Contractions as multiply + sum into preallocated buffers (linalg.vecdot would
            # allocate its product on every call).
            torch.sum(torch.mul(H[i + 1], dy_s[t], out=prod), dim=-1, out=dC[t])  # sum_d h dy
            torch.bmm(B_row[t], g, out=d_dtu_s[t])  # sum_n g B
            torch.sum(torch.mul(g, dtu_s[t], out=prod), dim=-1, out=dB[t])  # sum_d g dt u
            torch.mul(g, Aseg[i], out=carry)
            torch.mul(carry, H[i], out=gah)  # dL/d(dt_t A) = g_t a_t h_{t-1}
            torch.sum(torch.mul(gah, At, out=prod), dim=1, out=ddt[t])  # sum_n gah A
            W.addcmul_(gah, dt_s[t])
    return W.sum(0)


# Batch rows are independent, so the sequential scan runs one slice of the batch per Python
# thread, each thread's ops single-threaded. Per-op intra-op threading is the wrong grain for
# ~0.1 ms ops: every op pays a fork/join, and on a shared machine one descheduled thread stalls
# every op (measured 6x slower than one thread under load; the split is not).
_MIN_STATE_PER_THREAD = 1 << 15
_POOL: dict[int, Any] = {}
_POOL_LOCK = threading.Lock()  # the intra-op thread count is process-wide: one split at a time


def _batch_parts(Bt: int, n_state_per_row: int, device: torch.device | None = None) -> list[tuple[int, int]]:
    """Batch slices for the threads; one slice on CUDA (kernels queue on one stream anyway)."""
    if device is not None and device.type != "cpu":
        return [(0, Bt)]
    n = max(1, min(torch.get_num_threads(), Bt, (Bt * n_state_per_row) // _MIN_STATE_PER_THREAD))
    bounds = [round(i * Bt / n) for i in range(n + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _run_parts(fn, parts: list[tuple[int, int]]) -> list:
    """fn(b0, b1) for each batch slice: in this thread if one, else in a thread pool."""
    if len(parts) == 1:
        return [fn(*parts[0])]

    def work(b0, b1):
        with torch.no_grad():  # grad mode is per thread; the Function's body needs none
            return fn(b0, b1)

    with _POOL_LOCK:
        pool = _POOL.get(len(parts))
        if pool is None:
            pool = _POOL[len(parts)] = ThreadPoolExecutor(len(parts), thread_name_prefix="amfmedit-scan")
        n_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return [f.result() for f in [pool.submit(work, b0, b1) for b0, b1 in parts]]
        finally:
            torch.set_num_threads(n_threads)


class _SequentialScan(torch.autograd.Function):
    """y_t = <C_t, h_t>, h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t, one time step at a time.

    Time-major float32: u, dt (L, Bt, D); A (D, N); Bm, Cm (L, Bt, N) -> y (L, Bt, D).
    Every step's work is a handful of ops on the (Bt, N, D) state, which stays in cache.
    The forward keeps the state every ``seg`` steps; the backward recomputes one segment of
    states and decays at a time and walks it backwards with the adjoint.
    """

    @staticmethod
    def forward(ctx, u, dt, A, Bm, Cm, seg):
        u, dt, Bm, Cm, At, A2 = _check_scan_inputs(u, dt, A, Bm, Cm)
        L, Bt, D = u.shape
        N = A.shape[1]
        dtu = dt * u
        y = torch.empty_like(u)
        ckpts = u.new_empty((L + seg - 1) // seg, Bt, N, D)
        parts = _batch_parts(Bt, N * D, u.device)
        _run_parts(lambda b0, b1: _sequential_forward_part(
            dt[:, b0:b1], dtu[:, b0:b1], Bm[:, b0:b1], Cm[:, b0:b1], A2, y[:, b0:b1], ckpts[:, b0:b1], seg), parts)
        ctx.save_for_backward(u, dt, A, Bm, Cm, ckpts)
        ctx.seg = seg
        return y

    @staticmethod
    def backward(ctx, dy):
        u, dt, A, Bm, Cm, ckpts = ctx.saved_tensors
        seg = ctx.seg
        _, _, _, _, At, A2 = _check_scan_inputs(u, dt, A, Bm, Cm)
        L, Bt, D = u.shape
        dy = dy.contiguous()
        dtu = dt * u
        d_dtu, ddt = torch.empty_like(u), torch.empty_like(u)
        dB, dC = torch.empty_like(Bm), torch.empty_like(Cm)
        parts = _batch_parts(Bt, A.shape[1] * D, u.device)
        dAt = sum(_run_parts(lambda b0, b1: _sequential_backward_part(
            dt[:, b0:b1], dtu[:, b0:b1], Bm[:, b0:b1], Cm[:, b0:b1], At, A2, dy[:, b0:b1], ckpts[:, b0:b1], seg,
            d_dtu[:, b0:b1], ddt[:, b0:b1], dB[:, b0:b1], dC[:, b0:b1]), parts))
        du = d_dtu * dt
        ddt += d_dtu * u
        return du, ddt, dAt.t(), dB, dC, None


class _ChunkedScan(torch.autograd.Function):
    """The same scan as :class:`_SequentialScan`, each segment by the two-level chunked scan.

    Segments are large (up to ~2^27 state elements on CUDA) and their work tensors are
    materialised, (T, Bt, N, D); this trades memory traffic for far fewer kernel launches.
    """

    @staticmethod
    def forward(ctx, u, dt, A, Bm, Cm, seg):
        u, dt, Bm, Cm, At, A2 = _check_scan_inputs(u, dt, A, Bm, Cm)
        L, Bt, D = u.shape
        N = A.shape[1]
        dtu = dt * u
        y = torch.empty_like(u)
        starts = list(range(0, L, seg))
        h0s = u.new_empty(len(starts), Bt, N, D)
        h = None
        for k, s0 in enumerate(starts):
            s1 = min(s0 + seg, L)
            T = s1 - s0
            Tp, chunk = _chunk_plan(T, "chunked")
            h0s[k] = 0 if h is None else h
            a = _decays(dt[s0:s1], A2, Tp)
            x = _inputs(dtu[s0:s1], Bm[s0:s1], Tp)
            _scan_forward_(a, x, h, chunk)
            y[s0:s1] = _contract_n(Cm[s0:s1], x[:T])
            h = x[T - 1]
        ctx.save_for_backward(u, dt, A, Bm, Cm, h0s)
        ctx.seg = seg
        return y

    @staticmethod
    def backward(ctx, dy):
        u, dt, A, Bm, Cm, h0s = ctx.saved_tensors
        seg = ctx.seg
        _, _, _, _, At, A2 = _check_scan_inputs(u, dt, A, Bm, Cm)
        L, Bt, D = u.shape
        dy = dy.contiguous()
        dtu = dt * u
        d_dtu, ddt = torch.empty_like(u), torch.empty_like(u)
        dB, dC = torch.empty_like(Bm), torch.empty_like(Cm)
        dAt = torch.zeros_like(At)
        carry = None  # a_{s1} * g_{s1}: the adjoint entering from the next segment
        starts = list(range(0, L, seg))
        for k in range(len(starts) - 1, -1, -1):
            s0 = starts[k]
            s1 = min(s0 + seg, L)
            T = s1 - s0
            Tp, chunk = _chunk_plan(T, "chunked")
            h0 = h0s[k] if k > 0 else None
            a = _decays(dt[s0:s1], A2, Tp)
            h = _inputs(dtu[s0:s1], Bm[s0:s1], Tp)
            _scan_forward_(a, h, h0, chunk)  # recompute the states of this segment
            dC[s0:s1] = torch.linalg.vecdot(h[:T], dy[s0:s1].unsqueeze(2))
            g = torch.empty_like(h)
            g[T:].zero_()
            torch.mul(Cm[s0:s1].unsqueeze(-1), dy[s0:s1].unsqueeze(2), out=g[:T])
            _scan_reverse_(a, g, carry, chunk)
            g = g[:T]
            carry = a[0] * g[0]
            gah = g * a[:T]  # dL/d(dt_t A) = g_t a_t h_{t-1}
            gah[1:].mul_(h[: T - 1])
            if h0 is not None:
                gah[0].mul_(h0)
            else:
                gah[0].zero_()
            ddt[s0:s1] = torch.linalg.vecdot(gah, At, dim=-2)
            dAt += (gah * dt[s0:s1].unsqueeze(2)).sum((0, 1))
            d_dtu[s0:s1] = _contract_n(Bm[s0:s1], g)
            dB[s0:s1] = torch.linalg.vecdot(g, dtu[s0:s1].unsqueeze(2))
        du = d_dtu * dt
        ddt += d_dtu * u
        return du, ddt, dAt.t(), dB, dC, None


def _native_threads(L: int, Bt: int, work_per_row: int) -> int:
    """Parts the compiled kernels split the batch rows into: one per intra-op thread when there
    is enough work (they run on PyTorch's OpenMP threads, or one after another in a build
    without OpenMP; each part has its own weight-gradient accumulator)."""
    return max(1, min(torch.get_num_threads(), Bt, (L * Bt * work_per_row) // _MIN_NATIVE_WORK_PER_THREAD))


_MIN_NATIVE_WORK_PER_THREAD = 1 << 18  # state-element updates (~0.1 ms) worth a thread hand-off


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _NativeScan(torch.autograd.Function):
    """The scan of :class:`_SequentialScan` with each batch row's loop over time compiled
    (:mod:`amfmedit.models.native_scan`): the same checkpoints, recomputation and gradients.

    With ``z`` the block's epilogue ``(y + Dp u) silu(z)`` is fused into the same loop
    (forward and backward), saving several full passes over (L, Bt, D) tensors.
    """

    @staticmethod
    def forward(ctx, u, dt, A, Bm, Cm, Dp, z, seg):

        lib = native_scan.load()
        u, dt, Bm, Cm, At, A2 = _check_scan_inputs(u, dt, A, Bm, Cm)
        L, Bt, D = u.shape
        N = A.shape[1]
        y = torch.empty_like(u)
        need_grad = any(ctx.needs_input_grad[:7])
        ckpts = u.new_empty(Bt, (L + seg - 1) // seg, N, D) if need_grad else None
        gated = z is not None
        zs = D
        if gated:
            if z.stride(2) != 1 or z.stride(0) != Bt * z.stride(1):
                z = z.contiguous()
            zs = z.stride(1)  # a chunk of in_proj's output is read in place
            Dp = (Dp if Dp is not None else u.new_zeros(D)).contiguous()
        yv = torch.empty_like(u) if gated and need_grad else None
        lib.amf_scan_fwd(native_scan.ScanParams(
            L=L, Bt=Bt, D=D, N=N, nth=_native_threads(L, Bt, N * D), seg=seg, zs=zs, bs=N, u=_ptr(u), dt=_ptr(dt),
            A2=_ptr(A2), Bm=_ptr(Bm), Cm=_ptr(Cm), Dp=_ptr(Dp if gated else None), z=_ptr(z), y=_ptr(y),
            ck=_ptr(ckpts), yv=_ptr(yv)))
        if need_grad:
            ctx.save_for_backward(u, dt, A, Bm, Cm, ckpts, Dp if gated else None, z, yv)
        ctx.seg, ctx.gated, ctx.zs = seg, gated, zs
        return y

    @staticmethod
    def backward(ctx, dy):

        lib = native_scan.load()
        u, dt, A, Bm, Cm, ckpts, Dp, z, yv = ctx.saved_tensors
        _, _, _, _, At, A2 = _check_scan_inputs(u, dt, A, Bm, Cm)
        L, Bt, D = u.shape
        N = A.shape[1]
        dy = dy.contiguous()
        du, ddt = torch.empty_like(u), torch.empty_like(u)
        dB, dC = torch.empty_like(Bm), torch.empty_like(Cm)
        nth = _native_threads(L, Bt, N * D)
        Ws = torch.zeros(nth, N, D)
        gated = ctx.gated
        # dz is written with z's row stride (zs): when z is a chunk of in_proj's output, a slice
        # of a buffer laid out like it
        dz = u.new_empty(L, Bt, ctx.zs)[..., :D] if gated else None
        WDs = torch.zeros(nth, D) if gated else None
        need_dA = ctx.needs_input_grad[2]  # frozen weights (IG): no dA accumulation at all
        lib.amf_scan_bwd(native_scan.ScanParams(
            L=L, Bt=Bt, D=D, N=N, nth=nth, seg=ctx.seg, zs=ctx.zs, bs=N, u=_ptr(u), dt=_ptr(dt), At=_ptr(At),
            A2=_ptr(A2), Bm=_ptr(Bm), Cm=_ptr(Cm), Dp=_ptr(Dp), z=_ptr(z), ck=_ptr(ckpts), yv=_ptr(yv), dy=_ptr(dy),
            du=_ptr(du), ddt=_ptr(ddt), dB=_ptr(dB), dC=_ptr(dC), dz=_ptr(dz), W=_ptr(Ws) if need_dA else None,
            WD=_ptr(WDs)))
        dD = WDs.sum(0) if gated and ctx.needs_input_grad[5] else None
        return du, ddt, Ws.sum(0).t() if need_dA else None, dB, dC, dD, dz, None


class _NativeSoftplus(torch.autograd.Function):
    """softplus(x + bias) in one compiled pass (forward and backward); x (..., C) float32 on the
    CPU, bias (C,) or None. PyTorch's CPU softplus takes ~1.6 ns per element, as long as the
    scan's forward for a block at d_state 16 spends on eight state elements."""

    @staticmethod
    def forward(ctx, x, bias):
        lib = native_scan.load()
        x = x.contiguous()
        C = x.shape[-1]
        rows = x.numel() // max(C, 1)
        b = bias.contiguous() if bias is not None else None
        out = torch.empty_like(x)
        lib.amf_softplus_fwd(native_scan.SoftplusParams(
            rows=rows, C=C, nth=_native_threads(1, rows, C), x=_ptr(x), bias=_ptr(b), out=_ptr(out)))
        ctx.save_for_backward(x, b)
        return out

    @staticmethod
    def backward(ctx, g):
        lib = native_scan.load()
        x, b = ctx.saved_tensors
        g = g.contiguous()
        C = x.shape[-1]
        rows = x.numel() // max(C, 1)
        gx = torch.empty_like(x)
        lib.amf_softplus_bwd(native_scan.SoftplusParams(
            rows=rows, C=C, nth=_native_threads(1, rows, C), x=_ptr(x), bias=_ptr(b), g=_ptr(g), gx=_ptr(gx)))
        db = gx.reshape(rows, C).sum(0) if b is not None and ctx.needs_input_grad[1] else None
        return gx, db


class _NativeMambaInner(torch.autograd.Function):
    """Everything of a Mamba block between ``in_proj`` and ``out_proj``, on the CPU, compiled:
    causal conv + SiLU, ``x_proj``, ``dt_proj`` + bias + softplus, the selective scan and its
    epilogue ``(y + D u) silu(z)``. Time-major float32: xz (L, Bt, 2 C) -> (L, Bt, C).

    The same arithmetic as the separate ops (the block's pure path: causal conv + SiLU,
    ``F.linear``, softplus, :class:`_NativeScan`), with the gradient of ``xz`` written into one
    buffer by the conv's and the scan's backward passes (no ``cat`` of its two halves) and the
    rank-``R`` ``dt_proj`` (a (L Bt, R) @ (R, C) product, far too skinny for a GEMM to run
    well) folded into the softplus pass, forward and backward.
    """

    @staticmethod
    def forward(ctx, xz, conv_w, conv_b, xproj_w, dtproj_w, dt_bias, A, Dp, seg):
        lib = native_scan.load()
        L, Bt, C2 = xz.shape
        C, K = C2 // 2, conv_w.shape[1]
        R, N = dtproj_w.shape[1], A.shape[1]
        S = R + 2 * N
        xz = xz.contiguous()
        wT = conv_w.t().contiguous()
        cb = conv_b.contiguous() if conv_b is not None else None
        # causal conv + SiLU of the x half, read in place (row stride 2 C)
        need_grad = any(ctx.needs_input_grad[:8])
        u = xz.new_empty(L, Bt, C)
        ds = xz.new_empty(L, Bt, C) if need_grad else None  # silu' of the conv, for the backward
        lib.amf_conv_fwd(native_scan.ConvParams(
            L=L, Bt=Bt, C=C, K=K, nth=_native_threads(L, Bt, C * 8), xs=C2, x=_ptr(xz), wT=_ptr(wT), bias=_ptr(cb),
            u=_ptr(u), ds=_ptr(ds)))
        xdbl = torch.mm(u.view(-1, C), xproj_w.t())  # (L Bt, R + 2 N): dt_low | B | C
        # dt = softplus(dt_bias + dt_low dt_proj^T), dt_low read in place (row stride S)
        WT = dtproj_w.t().contiguous()
        bias = dt_bias.contiguous() if dt_bias is not None else None
        dt = xz.new_empty(L, Bt, C)
        lib.amf_dtsp_fwd(native_scan.DtspParams(
            rows=L * Bt, C=C, R=R, nth=_native_threads(1, L * Bt, C * 8), ls=S, lo=_ptr(xdbl), WT=_ptr(WT),
            bias=_ptr(bias), out=_ptr(dt)))
        # the scan with its epilogue; z read in place from the z half (row stride 2 C)
        At, A2 = A.t().contiguous(), (A * _LOG2E).t().contiguous()
        Dc = Dp.contiguous()
        y = xz.new_empty(L, Bt, C)
        ckpts = xz.new_empty(Bt, (L + seg - 1) // seg, N, C) if need_grad else None
        yv = xz.new_empty(L, Bt, C) if need_grad else None
        z = xz[..., C:]
        # B and C read in place from x_proj's output (row stride S)
        lib.amf_scan_fwd(native_scan.ScanParams(
            L=L, Bt=Bt, D=C, N=N, nth=_native_threads(L, Bt, N * C), seg=seg, zs=C2, bs=S, u=_ptr(u), dt=_ptr(dt),
            A2=_ptr(A2), Bm=_ptr(xdbl[:, R:]), Cm=_ptr(xdbl[:, R + N:]), Dp=_ptr(Dc), z=_ptr(z), y=_ptr(y),
            ck=_ptr(ckpts), yv=_ptr(yv)))
        if need_grad:
            ctx.save_for_backward(xz, wT, cb, xproj_w, WT, bias, At, A2, Dc, u, xdbl, dt, ckpts, yv, ds)
        ctx.seg = seg
        return y

    @staticmethod
    def backward(ctx, dy):
        lib = native_scan.load()
        xz, wT, cb, xproj_w, WT, bias, At, A2, Dc, u, xdbl, dt, ckpts, yv, ds = ctx.saved_tensors
        L, Bt, C2 = xz.shape
        C, K = C2 // 2, wT.shape[0]
        R, N = WT.shape[0], At.shape[0]
        S = R + 2 * N
        dy = dy.contiguous()
        dxz = xz.new_empty(L, Bt, C2)
        # the scan: du, ddt; dB, dC straight into x_proj's output gradient dxdbl (row stride S), dz
        # into the z half of dxz. (Running dt_proj + softplus's backward inside the scan's row loop
        # instead, with no ddt tensor, measured 1.05x slower at batch 128 x 32 features.)
        du, ddt = torch.empty_like(u), torch.empty_like(u)
        dxdbl = u.new_empty(L * Bt, S)
        sth = _native_threads(L, Bt, N * C)
        need_dA = ctx.needs_input_grad[6]
        Ws = u.new_zeros(sth, N, C) if need_dA else None
        WDs = u.new_zeros(sth, C)
        z, dz = xz[..., C:], dxz[..., C:]
        lib.amf_scan_bwd(native_scan.ScanParams(
            L=L, Bt=Bt, D=C, N=N, nth=sth, seg=ctx.seg, zs=C2, bs=S, u=_ptr(u), dt=_ptr(dt), At=_ptr(At),
            A2=_ptr(A2), Bm=_ptr(xdbl[:, R:]), Cm=_ptr(xdbl[:, R + N:]), Dp=_ptr(Dc), z=_ptr(z), ck=_ptr(ckpts),
            yv=_ptr(yv), dy=_ptr(dy), du=_ptr(du), ddt=_ptr(ddt), dB=_ptr(dxdbl[:, R:]), dC=_ptr(dxdbl[:, R + N:]),
            dz=_ptr(dz), W=_ptr(Ws), WD=_ptr(WDs)))
        # dt_proj + softplus: d dt_low into the first R columns of dxdbl
        rth = _native_threads(1, L * Bt, C * 8)
        dWTs = u.new_zeros(rth, R, C)
        dbs = u.new_zeros(rth, C) if bias is not None else None
        lib.amf_dtsp_bwd(native_scan.DtspParams(
            rows=L * Bt, C=C, R=R, nth=rth, ls=S, dls=S, lo=_ptr(xdbl), WT=_ptr(WT), bias=_ptr(bias), g=_ptr(ddt),
            dlo=_ptr(dxdbl), dWT=_ptr(dWTs), dbias=_ptr(dbs)))
        dxproj_w = dxdbl.t().mm(u.view(-1, C)) if ctx.needs_input_grad[3] else None
        du.view(-1, C).addmm_(dxdbl, xproj_w)  # + the x_proj path
        # the conv: dx straight into the x half of dxz
        cth = _native_threads(L, Bt, C * 8)
        dws, dcbs = u.new_zeros(cth, K, C), u.new_zeros(cth, C)
        lib.amf_conv_bwd(native_scan.ConvParams(
            L=L, Bt=Bt, C=C, K=K, nth=cth, xs=C2, x=_ptr(xz), wT=_ptr(wT), bias=_ptr(cb), ds=_ptr(ds), du=_ptr(du),
            dx=_ptr(dxz), dwT=_ptr(dws), dbias=_ptr(dcbs)))
        return (dxz, dws.sum(0).t(), dcbs.sum(0) if cb is not None else None, dxproj_w,
                dWTs.sum(0).t(), dbs.sum(0) if dbs is not None else None,
                Ws.sum(0).t() if need_dA else None, WDs.sum(0), None)


def mamba_inner_native(xz: Tensor, conv_weight: Tensor, conv_bias: Tensor | None, x_proj_weight: Tensor,
                       dt_proj_weight: Tensor, dt_proj_bias: Tensor | None, A: Tensor, D: Tensor) -> Tensor:
    """A Mamba block between ``in_proj`` and ``out_proj`` with the compiled CPU kernels.

    Time-major float32 CPU tensors: xz (L, Bt, 2 C) (``in_proj``'s output: x | z), conv_weight
    (C, K), x_proj_weight (R + 2 N, C), dt_proj_weight (C, R), A (C, N) (= -exp(A_log)), D (C,).
    Returns (L, Bt, C): ``(scan(silu(conv(x))) + D u) * silu(z)``.
    """
    if not native_scan.available():
        raise RuntimeError(f"the native CPU kernels are not available: {native_scan.status()}")
    seg = _segment_length("native", xz.shape[1] * A.shape[0] * A.shape[1], xz.device, xz.shape[0])
    return _NativeMambaInner.apply(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias,
                                   A, D, seg)


def _traceable_sequential(u: Tensor, dt: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor) -> Tensor:
    """y_t = <C_t, h_t>, h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t in plain out-of-place ops, forward only.

    Time-major float32: u, dt (L, Bt, D); A (D, N); Bm, Cm (L, Bt, N) -> y (L, Bt, D). One step
    at a time, as :class:`_SequentialScan`: each step's decays, input and read-out are computed
    from that step's (Bt, .) slices, so no (L, Bt, N, D) tensor exists and a step's work stays
    in cache (materialising the decays and states for the whole sequence measured 1.6x slower
    on ONNX Runtime at batch 64). A traced graph holds six small ops per step.
    """
    At = A.t()  # (N, D)
    dt_s, dtu_s = dt.unsqueeze(2).unbind(0), (dt * u).unsqueeze(2).unbind(0)  # (Bt, 1, D) each
    B_s, C_s = Bm.unsqueeze(-1).unbind(0), Cm.unsqueeze(2).unbind(0)  # (Bt, N, 1), (Bt, 1, N)
    h = B_s[0] * dtu_s[0]  # the state starts at zero: h_0 = dt_0 u_0 B_0
    ys = [torch.matmul(C_s[0], h)]
    for t in range(1, len(dt_s)):
        h = torch.exp(dt_s[t] * At) * h + B_s[t] * dtu_s[t]
        ys.append(torch.matmul(C_s[t], h))  # (Bt, 1, D)
    return torch.cat(ys, dim=1).transpose(0, 1)


def _traceable_chunked(u: Tensor, dt: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor) -> Tensor:
    """The scan of :func:`_traceable_sequential` as the two-level scan of :class:`_ChunkedScan`.

    Without in-place writes: K ~ sqrt(L) steps scan all M chunks at once from a zero state, M
    steps chain the chunk-end states, and every state is corrected by exp(cumsum of dt A) from
    its chunk's start (sums of non-positive numbers: no overflow). About 2 sqrt(L) steps in the
    graph instead of L, on materialised (L, Bt, N, D) tensors: fewer, larger ops.
    """
    L = u.shape[0]
    log_a = dt.unsqueeze(2) * A.t()  # (L, Bt, N, D), <= 0
    x = Bm.unsqueeze(-1) * (dt * u).unsqueeze(2)  # (L, Bt, N, D)
    Lp, K = _chunk_plan(L, "chunked")
    M = Lp // K
    if Lp > L:  # padding: decay 1 (log 0) and no input pass a state through unchanged
        log_a = F.pad(log_a, (0, 0, 0, 0, 0, 0, 0, Lp - L))
        x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, Lp - L))
    log_a = log_a.reshape(M, K, *log_a.shape[1:])
    x = x.reshape(M, K, *x.shape[1:])
    a_s, x_s = log_a.exp().unbind(1), x.unbind(1)  # K steps of (M, Bt, N, D)
    local = [x_s[0]]
    for j in range(1, K):  # every chunk at once, from a zero state
        local.append(a_s[j] * local[-1] + x_s[j])
    decay = log_a.cumsum(1).exp()  # (M, K, Bt, N, D): from the chunk's start to each step
    ends, end_decay = local[-1].unbind(0), decay[:, -1].unbind(0)
    carries = [ends[0]]  # the state at the end of each chunk
    for m in range(1, M):
        carries.append(end_decay[m] * carries[-1] + ends[m])
    before = torch.stack([torch.zeros_like(ends[0]), *carries[:-1]]).unsqueeze(1)  # (M, 1, Bt, N, D)
    H = (torch.stack(local, 1) + decay * before).reshape(Lp, *x.shape[2:])[:L]
    return (H * Cm.unsqueeze(-1)).sum(2)


def _softplus_elementary(x: Tensor) -> Tensor:
    """softplus(x) = max(x, 0) + log(1 + exp(-|x|)), in operators every runtime vectorises.

    ONNX Runtime's own Softplus kernel (what ``F.softplus`` exports to) took a fifth of an
    FT-Mamba graph's time; this form is exact for every x (no threshold; it never overflows).
    """
    return F.relu(x) + torch.log1p(torch.exp(-x.abs()))


def _selective_scan_traceable(u, delta, A, B, C, D, z, delta_bias, delta_softplus, impl: str) -> Tensor:
    """:func:`selective_scan_time_major` on a ``TRACEABLE_IMPLS`` scan (same arguments and shapes)."""
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()
    if delta_softplus:
        dt = _softplus_elementary(dt)
    uf = u.float()
    scan = _traceable_chunked if impl == "traceable-chunked" else _traceable_sequential
    y = scan(uf, dt, A.float(), B.float(), C.float())
    if D is not None:
        y = y + uf * D.float()
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(u.dtype)


def selective_scan_time_major(
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
    """:func:`selective_scan` with time as the leading dimension of every sequence input.

    Shapes: u, delta, z (L, Bt, D); A (D, N); B, C (L, Bt, N); D, delta_bias (D,).
    Returns (L, Bt, D). This is the layout the scan works in; a block that produces its
    tensors time-major (``MambaBlock``'s pure path) avoids every transpose, and elementwise
    ops never mix memory layouts (which is several times slower on a CPU). ``impl`` may also
    be one of ``TRACEABLE_IMPLS`` (forward only, for export).
    """
    if impl in TRACEABLE_IMPLS:
        if B.dim() != 3 or C.dim() != 3:
            raise ValueError(f"B and C must be input-dependent (L, Bt, N), however: {B.shape=}, {C.shape=}")
        return _selective_scan_traceable(u, delta, A, B, C, D, z, delta_bias, delta_softplus, impl)
    return _selective_scan_eager(u, delta, A, B, C, D, z, delta_bias, delta_softplus, impl=impl)


# torch.compile would unroll the time loops (hundreds of steps) or trip over the thread pool;
# the scan is already a hand-scheduled kernel sequence, so compiled models run it eagerly.
@torch.compiler.disable
def _selective_scan_eager(
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
    impl = impl or default_scan_impl(u.device)
    if impl not in SCAN_IMPLS:
        raise ValueError(f"impl must be one of {SCAN_IMPLS + TRACEABLE_IMPLS}, however: {impl=}")
    if A.is_complex():
        raise ValueError("complex A is not supported by the pure-PyTorch selective scan")
    if B.dim() != 3 or C.dim() != 3:
        raise ValueError(f"B and C must be input-dependent (L, Bt, N), however: {B.shape=}, {C.shape=}")
    dtype_in = u.dtype
    with torch.autocast(u.device.type, enabled=False):
        uf = u.float()
        dt = delta.float()
        if impl == "native" and delta_softplus and dt.device.type == "cpu" and native_scan.available():
            dt = _NativeSoftplus.apply(dt, None if delta_bias is None else delta_bias.float())
        else:
            if delta_bias is not None:
                dt = dt + delta_bias.float()
            if delta_softplus:
                dt = F.softplus(dt)
        if impl == "native" and u.device.type != "cpu":
            raise ValueError(f"impl='native' is the compiled CPU scan, however the tensors are on {u.device}")
        if impl == "native":

            if not native_scan.available():
                raise RuntimeError(f"impl='native' is not available: {native_scan.status()}")
        seg = _segment_length(impl, u.shape[1] * A.shape[0] * A.shape[1], u.device, u.shape[0])
        if impl == "native" and z is not None:  # the epilogue runs inside the compiled loop
            return _NativeScan.apply(uf, dt, A.float(), B.float(), C.float(), None if D is None else D.float(),
                                     z.float(), seg).to(dtype_in)
        if impl == "native":
            y = _NativeScan.apply(uf, dt, A.float(), B.float(), C.float(), None, None, seg)
        else:
            fn = _SequentialScan if impl == "sequential" else _ChunkedScan
            y = fn.apply(uf, dt, A.float(), B.float(), C.float(), seg)
        if D is not None:
            y = torch.addcmul(y, uf, D.float())
        if z is not None:
            y = y * F.silu(z.float())
    return y.to(dtype_in)


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
    if B.dim() != 3 or C.dim() != 3:
        raise ValueError(f"B and C must be input-dependent (Bt, N, L), however: {B.shape=}, {C.shape=}")
    tm = lambda t: None if t is None else t.permute(2, 0, 1).contiguous()  # noqa: E731
    y = selective_scan_time_major(
        tm(u), tm(delta), A, tm(B), tm(C), D, tm(z), delta_bias, delta_softplus, impl=impl
    )
    return y.permute(1, 2, 0)
