"""A fused CPU selective scan: the whole per-step update of every channel in one compiled loop.

Why: on a CPU the pure-PyTorch sequential scan (:mod:`amfmedit.models.scan`) issues ~8 ops
per time step on the (Bt, N, D) state, each a separate pass over memory with its own dispatch
cost; at 423 features those elementwise ops, not the matrix products, are most of FT-Mamba's
time. Here one C loop per batch row walks time and does the decay, the state update and the
readout ``y_t = <C_t, h_t>`` while the row's (N, D) state stays in L1, and the backward does
the segment recomputation and the adjoint recurrence of ``scan.py`` the same way. The
mathematics, the checkpoint segments and the returned gradients are those of
``_SequentialScan``. The block's epilogue ``(y + D u) silu(z)`` runs in the same loop, and
``amf_conv_fwd``/``amf_conv_bwd`` fuse the causal depthwise convolution with its SiLU, so a
Mamba block's elementwise work is three compiled passes instead of ~40 PyTorch ops;
``amf_softplus_*`` and ``amf_dtsp_*`` (``dt_proj`` + bias + softplus, its rank-``R`` product
being far too skinny for a GEMM) complete what ``scan._NativeMambaInner`` needs to run
everything between ``in_proj`` and ``out_proj`` as one autograd Function.

Built at first use with the system C compiler (``cc``; plain C, no PyTorch headers, so the
build takes well under a second), cached under ``$AMFMEDIT_CACHE`` (default
``~/.cache/amfmedit``)/kernels keyed by a hash of the source, the flags and the CPU, and
called through ctypes on the tensors' memory. Batch rows are split in parts: with
``-fopenmp`` (tried first where PyTorch itself runs on GNU libgomp, whose already loaded copy
the library then shares) the parts run on PyTorch's own OpenMP threads; otherwise (or with
``AMFMEDIT_NATIVE_OPENMP=0``) one after another. (An earlier split over Python threads lost to
PyTorch's OpenMP workers, which spin for a while after each parallel op and take the second
core: at 2 threads it ran the scan no faster than 1 thread, forward 5.4 vs 4.8 ms, backward
11.7 vs 10.8 ms at 33 x 128 tokens, d_inner 128, d_state 16; the OpenMP parts are 1.5x faster.)
When there is no compiler, the build fails, or ``AMFMEDIT_NATIVE_SCAN=0``, :func:`load` returns
None and the scan falls back to the pure-PyTorch sequential path; :func:`status` says why.

Decays are ``exp2(dt * A * log2(e))`` computed by an inline range-reduced polynomial
(degree 6, relative error ~1e-7, i.e. float32 round-off) so the compiler can vectorise the
channel loop (multiply-adds contracted to FMAs); arguments below -127 give exactly 0. Where
the compiler targets AVX-512 (F and DQ) the hot loops are written with intrinsics instead
(x - floor(x) by ``vreduceps``, 2^k by ``vscalefps``, running sums in registers): 1.3x the
forward and 1.3-1.4x the backward of the auto-vectorised loops (``gcc -O3 -march=native``,
Zen 4) with results equal to round-off.

Memory: the kernels walk one batch row's time steps, whose rows in the time-major tensors lie
Bt rows apart (64-128 KiB at batch 128), too far for the hardware prefetchers; the scan
prefetches the next step's rows a channel block's lines at a time. With the data in L2 (batch
4) the forward took 4.0 ns and the backward 9.2 ns per 16-channel state vector; at batch 128
without the prefetch, 7.2 and 17-18 ns; with it, 4.4-4.9 and ~13.5 ns (C harness, Zen 4).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define EXP2_C6 1.5461444854736328e-04f
#define EXP2_C5 1.3400427997112274e-03f
#define EXP2_C4 9.6180569380521774e-03f
#define EXP2_C3 5.5503271520137787e-02f
#define EXP2_C2 2.4022650718688965e-01f
#define EXP2_C1 6.9314718246459961e-01f

/* 2^x for float32, vectorisable: x = k + f, k = round(x), f in [-0.5, 0.5]; 2^f by a degree-6
   polynomial (Chebyshev interpolant; relative error 2.5e-9, 1.1e-7 after float32 Horner
   round-off, the same as degree 7's 9e-8); 2^k by the exponent bits. */
static inline float exp2_poly(float x) {
    /* Clamped to [-127, 127]: k = -127 gives exponent bits 0, i.e. exactly 0 (below 2^-126
       the true value is below float32's normal range anyway). */
    float xc = x < -127.0f ? -127.0f : (x > 127.0f ? 127.0f : x);
    float r = (xc + 12582912.0f) - 12582912.0f; /* round to nearest integer */
    float f = xc - r;
    float p = EXP2_C6;
    p = p * f + EXP2_C5;
    p = p * f + EXP2_C4;
    p = p * f + EXP2_C3;
    p = p * f + EXP2_C2;
    p = p * f + EXP2_C1;
    p = p * f + 1.0f;
    int32_t k = (int32_t)r;
    union { int32_t i; float f; } s;
    s.i = (k + 127) << 23;
    return p * s.f;
}

/* Forward over batch rows [b0, b1). Time-major inputs: u, dt (L, Bt, D); Bm, Cm (L, Bt, N) with
   rows bs floats apart (bs = N, or x_proj's output read in place); A2 = A^T log2(e) (N, D).
   Writes y (L, Bt, D) and, if ck != NULL, the state before steps 0, seg, 2 seg, ... to ck
   (Bt, nck, N, D). */
static inline float sigmoid_poly(float z) { return 1.0f / (1.0f + exp2_poly(-1.4426950408889634f * z)); }


/* Channels are processed in blocks of VW (one AVX-512 register): a block's dt, dt*u and
   running sums stay in registers across the N states. */
#define VW 16
/* The intrinsics paths need AVX-512 F (and DQ for vreduceps). */
#if defined(__AVX512F__) && defined(__AVX512DQ__)
#define AMF_AVX512 1
#else
#define AMF_AVX512 0
#endif

/* Prefetch the cache lines of [p, p + n floats) for reading (w = 0) or writing (w = 1). The scan
   walks one batch row's time steps, whose rows lie Bt rows (128 KiB at batch 128) apart: the
   hardware prefetchers do not follow such strides across pages, so the next step's rows are
   fetched by hand while this step computes (~1 us per step at d_inner 128, d_state 16). */
#define AMF_PREFETCH(p, n, w)                                                                          \
    do {                                                                                                 \
        const char *pf_ = (const char *)(p);                                                             \
        for (int64_t o_ = 0; o_ < (int64_t)sizeof(float) * (n); o_ += 64) __builtin_prefetch(pf_ + o_, w, 3); \
    } while (0)

/* Prefetch the adjoint's rows of time-major row `row`: with N > 0 its N-wide rows (C, dB, dC);
   with w > 0 channels [d0, d0 + w) of its D-wide rows (dy, yv, du, ddt) and of z, dz (row
   stride zs) when there is a gate. The N-wide rows are bs floats apart. */
static inline void amf_prefetch_adjoint_row(int64_t row, int64_t D, int64_t N, int64_t bs, int64_t zs, int64_t d0,
        int64_t w,
        const float *dy, const float *Cm, const float *z, const float *yv, const float *du, const float *ddt,
        const float *dB, const float *dC, const float *dz) {
    if (N > 0) {
        AMF_PREFETCH(Cm + row * bs, N, 0);
        AMF_PREFETCH(dB + row * bs, N, 1);
        AMF_PREFETCH(dC + row * bs, N, 1);
    }
    if (w > 0) {
        AMF_PREFETCH(dy + row * D + d0, w, 0);
        AMF_PREFETCH(du + row * D + d0, w, 1);
        AMF_PREFETCH(ddt + row * D + d0, w, 1);
        if (z) {
            AMF_PREFETCH(z + row * zs + d0, w, 0);
            AMF_PREFETCH(yv + row * D + d0, w, 0);
            AMF_PREFETCH(dz + row * zs + d0, w, 1);
        }
    }
}

static inline __attribute__((always_inline)) void fwd_block(
        const int64_t w, int64_t d0, int64_t N, int64_t D, const float *restrict dtr, const float *restrict ur,
        const float *restrict A2, const float *restrict Br, const float *restrict Cr, float *restrict h,
        float *restrict yr) {
    float dtv[VW], dtuv[VW], acc[VW];
    for (int64_t j = 0; j < w; ++j) { dtv[j] = dtr[d0 + j]; dtuv[j] = dtv[j] * ur[d0 + j]; acc[j] = 0.0f; }
    for (int64_t n = 0; n < N; ++n) {
        const float bn = Br[n], cn = Cr[n];
        float *restrict hn = h + n * D + d0;
        const float *restrict an = A2 + n * D + d0;
        for (int64_t j = 0; j < w; ++j) {
            float hv = exp2_poly(dtv[j] * an[j]) * hn[j] + bn * dtuv[j];
            hn[j] = hv;
            acc[j] += cn * hv;
        }
    }
    for (int64_t j = 0; j < w; ++j) yr[d0 + j] = acc[j];
}

#if AMF_AVX512
#include <immintrin.h>
/* The hot loops on 16 lanes with explicit registers (the auto-vectorised loops keep their
   running sums on the stack and spend 4 ops on 2^k). 2^x = 2^f 2^floor(x) with f = x - floor(x)
   in [0, 1) by vreduceps and 2^floor(x) by vscalefps (which floors its exponent operand itself),
   2^f by a degree-6 polynomial on [0, 1] (Chebyshev interpolant, 2.6e-9; 8.3e-8 after float32
   Horner, the same as the scalar path's 8.1e-8): 9 ops where round + subtract + clamp took 11.
   Below 2^-126 the result is 0 (no denormals; those lanes, -inf too, are masked whatever the
   polynomial gave); +inf gives inf (the reduction of an infinity is 0) and NaN passes through
   (the NLT_UQ compare keeps NaN lanes). */
#define EXP2V_C6 2.1877505059819669e-04f
#define EXP2V_C5 1.2387821916490793e-03f
#define EXP2V_C4 9.6845803782343864e-03f
#define EXP2V_C3 5.5480428040027618e-02f
#define EXP2V_C2 2.4023050069808960e-01f
#define EXP2V_C1 6.9314694404602051e-01f
static inline __m512 exp2_v(__m512 x) {
    const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);
    const __m512 f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(EXP2V_C6), f, _mm512_set1_ps(EXP2V_C5));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2V_C4));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2V_C3));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2V_C2));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(EXP2V_C1));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, x);
}

/* The 16 lane sums of 16 consecutive vectors p[0..15] (VW floats each) as one vector, by a
   transpose-and-add tree (45 shuffles and adds instead of 16 horizontal reductions). */
static inline __m512 hsum16_v(const float *restrict p) {
    __m512 w[8], x[4];
    for (int k = 0; k < 8; ++k) {
        const __m512 a = _mm512_loadu_ps(p + (2 * k) * VW), b = _mm512_loadu_ps(p + (2 * k + 1) * VW);
        w[k] = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    }
    for (int k = 0; k < 4; ++k)
        x[k] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * k], w[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(w[2 * k], w[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 y0 = _mm512_add_ps(_mm512_shuffle_f32x4(x[0], x[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(x[0], x[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 y1 = _mm512_add_ps(_mm512_shuffle_f32x4(x[2], x[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(x[2], x[3], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(y0, y1, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(y0, y1, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* fwd_block for a full block of 16 channels; two running sums halve the readout's chain. */
static inline __attribute__((always_inline)) void fwd_block_v(
        int64_t d0, int64_t N, int64_t D, const float *restrict dtr, const float *restrict ur,
        const float *restrict A2, const float *restrict Br, const float *restrict Cr, float *restrict h,
        float *restrict yr) {
    const __m512 dtv = _mm512_loadu_ps(dtr + d0);
    const __m512 dtuv = _mm512_mul_ps(dtv, _mm512_loadu_ps(ur + d0));
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t n = 0;
    for (; n + 2 <= N; n += 2) {
        float *h0 = h + n * D + d0, *h1 = h0 + D;
        const __m512 a0 = exp2_v(_mm512_mul_ps(dtv, _mm512_loadu_ps(A2 + n * D + d0)));
        const __m512 a1 = exp2_v(_mm512_mul_ps(dtv, _mm512_loadu_ps(A2 + (n + 1) * D + d0)));
        const __m512 v0 = _mm512_fmadd_ps(a0, _mm512_loadu_ps(h0), _mm512_mul_ps(_mm512_set1_ps(Br[n]), dtuv));
        const __m512 v1 = _mm512_fmadd_ps(a1, _mm512_loadu_ps(h1), _mm512_mul_ps(_mm512_set1_ps(Br[n + 1]), dtuv));
        _mm512_storeu_ps(h0, v0);
        _mm512_storeu_ps(h1, v1);
        acc0 = _mm512_fmadd_ps(_mm512_set1_ps(Cr[n]), v0, acc0);
        acc1 = _mm512_fmadd_ps(_mm512_set1_ps(Cr[n + 1]), v1, acc1);
    }
    if (n < N) {
        float *h0 = h + n * D + d0;
        const __m512 a0 = exp2_v(_mm512_mul_ps(dtv, _mm512_loadu_ps(A2 + n * D + d0)));
        const __m512 v0 = _mm512_fmadd_ps(a0, _mm512_loadu_ps(h0), _mm512_mul_ps(_mm512_set1_ps(Br[n]), dtuv));
        _mm512_storeu_ps(h0, v0);
        acc0 = _mm512_fmadd_ps(_mm512_set1_ps(Cr[n]), v0, acc0);
    }
    _mm512_storeu_ps(yr + d0, _mm512_add_ps(acc0, acc1));
}

/* bwd_block for a full block of 16 channels, the block's sums in registers. */
static inline __attribute__((always_inline)) void bwd_block_v(
        int64_t d0, int64_t N, int64_t D, const float *restrict dtr, const float *restrict ur,
        const float *restrict dyr, const float *restrict Br, const float *restrict Cr,
        const float *restrict hc0, const float *restrict hp0, const float *restrict ai0,
        const float *restrict At, float *restrict carry, float *restrict W, float *restrict sc,
        float *restrict sb, float *restrict ddtu, float *restrict dta) {
    const __m512 dtv = _mm512_loadu_ps(dtr + d0), dyv = _mm512_loadu_ps(dyr + d0);
    const __m512 dtuv = _mm512_mul_ps(dtv, _mm512_loadu_ps(ur + d0));
    __m512 acc_u = _mm512_setzero_ps(), acc_a = _mm512_setzero_ps();
    for (int64_t n = 0; n < N; ++n) {
        const int64_t o = n * D + d0;
        const __m512 g = _mm512_fmadd_ps(_mm512_set1_ps(Cr[n]), dyv, _mm512_loadu_ps(carry + o));
        _mm512_storeu_ps(sc + n * VW, _mm512_fmadd_ps(_mm512_loadu_ps(hc0 + o), dyv, _mm512_loadu_ps(sc + n * VW)));
        _mm512_storeu_ps(sb + n * VW, _mm512_fmadd_ps(g, dtuv, _mm512_loadu_ps(sb + n * VW)));
        acc_u = _mm512_fmadd_ps(g, _mm512_set1_ps(Br[n]), acc_u);
        const __m512 c = _mm512_mul_ps(g, _mm512_loadu_ps(ai0 + o));
        _mm512_storeu_ps(carry + o, c);
        const __m512 gah = _mm512_mul_ps(c, _mm512_loadu_ps(hp0 + o));
        acc_a = _mm512_fmadd_ps(gah, _mm512_loadu_ps(At + o), acc_a);
        if (W) _mm512_storeu_ps(W + o, _mm512_fmadd_ps(gah, dtv, _mm512_loadu_ps(W + o)));
    }
    _mm512_storeu_ps(ddtu + d0, acc_u);
    _mm512_storeu_ps(dta + d0, acc_a);
}
/* bwd_block_v for two adjacent blocks (32 channels): each state's partial sums sc, sb are
   read and written once for both, and the two blocks' chains interleave. */
static inline __attribute__((always_inline)) void bwd_block_v2(
        int64_t d0, int64_t N, int64_t D, const float *restrict dtr, const float *restrict ur,
        const float *restrict dyr, const float *restrict Br, const float *restrict Cr,
        const float *restrict hc0, const float *restrict hp0, const float *restrict ai0,
        const float *restrict At, float *restrict carry, float *restrict W, float *restrict sc,
        float *restrict sb, float *restrict ddtu, float *restrict dta) {
    const int64_t d1 = d0 + VW;
    const __m512 dtv0 = _mm512_loadu_ps(dtr + d0), dyv0 = _mm512_loadu_ps(dyr + d0);
    const __m512 dtv1 = _mm512_loadu_ps(dtr + d1), dyv1 = _mm512_loadu_ps(dyr + d1);
    const __m512 dtuv0 = _mm512_mul_ps(dtv0, _mm512_loadu_ps(ur + d0));
    const __m512 dtuv1 = _mm512_mul_ps(dtv1, _mm512_loadu_ps(ur + d1));
    __m512 acc_u0 = _mm512_setzero_ps(), acc_a0 = _mm512_setzero_ps();
    __m512 acc_u1 = _mm512_setzero_ps(), acc_a1 = _mm512_setzero_ps();
    for (int64_t n = 0; n < N; ++n) {
        const int64_t o0 = n * D + d0, o1 = o0 + VW;
        const __m512 cn = _mm512_set1_ps(Cr[n]), bn = _mm512_set1_ps(Br[n]);
        const __m512 g0 = _mm512_fmadd_ps(cn, dyv0, _mm512_loadu_ps(carry + o0));
        const __m512 g1 = _mm512_fmadd_ps(cn, dyv1, _mm512_loadu_ps(carry + o1));
        __m512 scv = _mm512_fmadd_ps(_mm512_loadu_ps(hc0 + o0), dyv0, _mm512_loadu_ps(sc + n * VW));
        _mm512_storeu_ps(sc + n * VW, _mm512_fmadd_ps(_mm512_loadu_ps(hc0 + o1), dyv1, scv));
        __m512 sbv = _mm512_fmadd_ps(g0, dtuv0, _mm512_loadu_ps(sb + n * VW));
        _mm512_storeu_ps(sb + n * VW, _mm512_fmadd_ps(g1, dtuv1, sbv));
        acc_u0 = _mm512_fmadd_ps(g0, bn, acc_u0);
        acc_u1 = _mm512_fmadd_ps(g1, bn, acc_u1);
        const __m512 c0 = _mm512_mul_ps(g0, _mm512_loadu_ps(ai0 + o0));
        const __m512 c1 = _mm512_mul_ps(g1, _mm512_loadu_ps(ai0 + o1));
        _mm512_storeu_ps(carry + o0, c0);
        _mm512_storeu_ps(carry + o1, c1);
        const __m512 gah0 = _mm512_mul_ps(c0, _mm512_loadu_ps(hp0 + o0));
        const __m512 gah1 = _mm512_mul_ps(c1, _mm512_loadu_ps(hp0 + o1));
        acc_a0 = _mm512_fmadd_ps(gah0, _mm512_loadu_ps(At + o0), acc_a0);
        acc_a1 = _mm512_fmadd_ps(gah1, _mm512_loadu_ps(At + o1), acc_a1);
        if (W) {
            _mm512_storeu_ps(W + o0, _mm512_fmadd_ps(gah0, dtv0, _mm512_loadu_ps(W + o0)));
            _mm512_storeu_ps(W + o1, _mm512_fmadd_ps(gah1, dtv1, _mm512_loadu_ps(W + o1)));
        }
    }
    _mm512_storeu_ps(ddtu + d0, acc_u0);
    _mm512_storeu_ps(ddtu + d1, acc_u1);
    _mm512_storeu_ps(dta + d0, acc_a0);
    _mm512_storeu_ps(dta + d1, acc_a1);
}
#endif

/* log(1 + e) for e in [0, 1] as 2 atanh(t), t = e / (2 + e) in [0, 1/3]: the odd series to t^15
   (truncation < 1e-9; no cancellation for small e, where log1p(e) ~ e). */
static inline float log1p_unit(float e) {
    const float t = e / (2.0f + e), s = t * t;
    float p = 1.0f / 15.0f;
    p = p * s + 1.0f / 13.0f;
    p = p * s + 1.0f / 11.0f;
    p = p * s + 1.0f / 9.0f;
    p = p * s + 1.0f / 7.0f;
    p = p * s + 1.0f / 5.0f;
    p = p * s + 1.0f / 3.0f;
    p = p * s + 1.0f;
    return 2.0f * t * p;
}

/* softplus(v) = max(v, 0) + log1p(exp(-|v|)), PyTorch's F.softplus (beta 1) without its
   threshold (above 20 the two differ by < 2e-9). */
static inline float softplus_one(float v) {
    const float a0 = v < 0.0f ? -v : v;
    const float av = a0 > 200.0f ? 200.0f : a0; /* e^-200 is 0 in float32; a NaN passes */
    /* e^-|v| = 2^(x + err): err, the rounding of x = -|v| log2(e), restored to first order
       (else the relative error grows as 6e-8 |x|: 1e-6 at v = -10) */
    const float x2 = -1.4426950216293335f * av;
    const float err = fmaf(-av, 1.4426950216293335f, -x2) - av * 1.925963033500011e-08f;
    return (v > 0.0f ? v : 0.0f) + log1p_unit(exp2_poly(x2) * (1.0f + 0.6931471805599453f * err));
}

#if AMF_AVX512
/* 16 lanes of log1p_unit, the division by 2 + e in [2, 3] as a 14-bit reciprocal and one Newton
   step (relative error ~2^-28 before rounding). */
static inline __m512 log1p_unit_v(__m512 e) {
    const __m512 den = _mm512_add_ps(_mm512_set1_ps(2.0f), e);
    __m512 r = _mm512_rcp14_ps(den);
    r = _mm512_mul_ps(r, _mm512_fnmadd_ps(den, r, _mm512_set1_ps(2.0f)));
    const __m512 t = _mm512_mul_ps(e, r), s = _mm512_mul_ps(t, t);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 15.0f), s, _mm512_set1_ps(1.0f / 13.0f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.0f / 11.0f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.0f / 9.0f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.0f / 7.0f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.0f / 5.0f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.0f / 3.0f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.0f));
    return _mm512_mul_ps(_mm512_add_ps(t, t), p);
}

/* 16 lanes of softplus_one: the same steps (min(200, |v|) keeps a NaN: min returns its second
   operand when one is NaN; max(v, 0) returns 0 for a NaN v, and the NaN log term carries it). */
static inline __m512 softplus_v(__m512 v) {
    const __m512 av = _mm512_min_ps(_mm512_set1_ps(200.0f), _mm512_abs_ps(v));
    const __m512 x2 = _mm512_mul_ps(av, _mm512_set1_ps(-1.4426950216293335f));
    __m512 err = _mm512_fnmsub_ps(av, _mm512_set1_ps(1.4426950216293335f), x2); /* -av log2e - x2, exactly */
    err = _mm512_fnmadd_ps(av, _mm512_set1_ps(1.925963033500011e-08f), err);
    const __m512 e = _mm512_mul_ps(exp2_v(x2), _mm512_fmadd_ps(_mm512_set1_ps(0.6931471805599453f), err,
                                                                _mm512_set1_ps(1.0f)));
    return _mm512_add_ps(_mm512_max_ps(v, _mm512_setzero_ps()), log1p_unit_v(e));
}
#endif

/* out[i] = sigmoid(x[i]) and out[i] = softplus(x[i]) for n values (out may be x), run on a row
   before the pass that uses them. softplus_row is 0.52x the time of the auto-vectorised
   softplus_one loop in dt_proj + softplus; for the sigmoid the two are within noise of each
   other (the scan epilogues use sigmoid_row, the conv and dt_proj backward the inline form). */
static inline void sigmoid_row(const float *x, float *out, int64_t n) {
    int64_t i = 0;
#if AMF_AVX512
    for (; i + VW <= n; i += VW) {
        const __m512 e = exp2_v(_mm512_mul_ps(_mm512_loadu_ps(x + i), _mm512_set1_ps(-1.4426950408889634f)));
        _mm512_storeu_ps(out + i, _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e)));
    }
#endif
    for (; i < n; ++i) out[i] = sigmoid_poly(x[i]);
}

static inline void softplus_row(const float *x, float *out, int64_t n) {
    int64_t i = 0;
#if AMF_AVX512
    for (; i + VW <= n; i += VW) _mm512_storeu_ps(out + i, softplus_v(_mm512_loadu_ps(x + i)));
#endif
    for (; i < n; ++i) out[i] = softplus_one(x[i]);
}

/* One channel block of the adjoint step: g = carry + C dy; carry <- g a; sums over the
   block's channels of h dy and g dt u go to per-state partials sc, sb (N, VW). */
static inline __attribute__((always_inline)) void bwd_block(
        const int64_t w, int64_t d0, int64_t N, int64_t D, const float *restrict dtr, const float *restrict ur,
        const float *restrict dyr, const float *restrict Br, const float *restrict Cr,
        const float *restrict hc0, const float *restrict hp0, const float *restrict ai0,
        const float *restrict At, float *restrict carry, float *restrict W, float *restrict sc,
        float *restrict sb, float *restrict ddtu, float *restrict dta) {
    float dtv[VW], dtuv[VW], dyv[VW], acc_u[VW], acc_a[VW];
    for (int64_t j = 0; j < w; ++j) {
        dtv[j] = dtr[d0 + j]; dtuv[j] = dtv[j] * ur[d0 + j]; dyv[j] = dyr[d0 + j];
        acc_u[j] = 0.0f; acc_a[j] = 0.0f;
    }
    for (int64_t n = 0; n < N; ++n) {
        const float bn = Br[n], cn = Cr[n];
        const int64_t o = n * D + d0;
        const float *restrict hc = hc0 + o, *restrict hp = hp0 + o, *restrict ai = ai0 + o, *restrict atn = At + o;
        float *restrict cr = carry + o, *restrict scn = sc + n * VW, *restrict sbn = sb + n * VW;
        if (W) {
            float *restrict wn = W + o;
            for (int64_t j = 0; j < w; ++j) {
                float g = cr[j] + cn * dyv[j];
                scn[j] += hc[j] * dyv[j];
                sbn[j] += g * dtuv[j];
                acc_u[j] += g * bn;
                float c = g * ai[j];
                cr[j] = c;
                float gah = c * hp[j];
                acc_a[j] += gah * atn[j];
                wn[j] += gah * dtv[j];
            }
        } else {
            for (int64_t j = 0; j < w; ++j) {
                float g = cr[j] + cn * dyv[j];
                scn[j] += hc[j] * dyv[j];
                sbn[j] += g * dtuv[j];
                acc_u[j] += g * bn;
                float c = g * ai[j];
                cr[j] = c;
                acc_a[j] += c * hp[j] * atn[j];
            }
        }
    }
    for (int64_t j = 0; j < w; ++j) { ddtu[d0 + j] = acc_u[j]; dta[d0 + j] = acc_a[j]; }
}

/* Epilogue (when z != NULL): v = y + Dp u is kept in yv (L, Bt, D) if yv != NULL, and the
   output is v silu(z); without z the output is y itself. z's rows (t, b) are zs floats apart
   (a chunk of in_proj's output is read in place). */
static void amf_scan_fwd_rows(int64_t L, int64_t Bt, int64_t D, int64_t N, int64_t b0, int64_t b1, int64_t seg,
                  int64_t zs, int64_t bs,
                  const float *restrict u, const float *restrict dt, const float *restrict A2,
                  const float *restrict Bm, const float *restrict Cm, float *restrict y,
                  float *restrict ck, const float *restrict Dp, const float *restrict z,
                  float *restrict yv) {
    const int64_t ND = N * D, nck = (L + seg - 1) / seg;
    float *h = (float *)malloc(sizeof(float) * (ND + 2 * D));
    float *yr = h + ND, *sgz = yr + D; /* sigmoid(z) of a row */
    for (int64_t b = b0; b < b1; ++b) {
        memset(h, 0, sizeof(float) * ND);
        for (int64_t t = 0; t < L; ++t) {
            if (ck && t % seg == 0) memcpy(ck + (b * nck + t / seg) * ND, h, sizeof(float) * ND);
            const int64_t row = t * Bt + b;
            /* the next step's rows, a channel block's lines at a time (prefetching whole rows at the
               top of the step was 15 % slower) */
            const int64_t nx = t + 1 < L ? row + Bt : row;
            AMF_PREFETCH(Bm + nx * bs, N, 0);
            AMF_PREFETCH(Cm + nx * bs, N, 0);
            const float *dtr = dt + row * D, *ur = u + row * D;
            const float *Br = Bm + row * bs, *Cr = Cm + row * bs;
            for (int64_t d0 = 0; d0 < D; d0 += VW) {
                const int64_t w = D - d0 < VW ? D - d0 : VW;
                AMF_PREFETCH(u + nx * D + d0, w, 0);
                AMF_PREFETCH(dt + nx * D + d0, w, 0);
                AMF_PREFETCH(y + nx * D + d0, w, 1);
                if (z) AMF_PREFETCH(z + nx * zs + d0, w, 0);
                if (yv) AMF_PREFETCH(yv + nx * D + d0, w, 1);
#if AMF_AVX512
                if (w == VW) fwd_block_v(d0, N, D, dtr, ur, A2, Br, Cr, h, yr);
                else
#endif
                    fwd_block(w, d0, N, D, dtr, ur, A2, Br, Cr, h, yr);
            }
            if (z) {
                const float *zr = z + row * zs;
                float *out = y + row * D;
                sigmoid_row(zr, sgz, D);
                for (int64_t d = 0; d < D; ++d) {
                    float v = yr[d] + Dp[d] * ur[d];
                    if (yv) yv[row * D + d] = v;
                    out[d] = v * zr[d] * sgz[d];
                }
            } else {
                memcpy(y + row * D, yr, sizeof(float) * D);
            }
        }
    }
    free(h);
}

/* Backward over batch rows [b0, b1): recomputes one segment of states from its checkpoint,
   then runs the adjoint g_t = C_t dy_t + a_{t+1} g_{t+1} backwards. Writes du, ddt (L, Bt, D),
   dB, dC (L, Bt, N; rows bs floats apart) for these rows and adds sum_{b,t} g a h_{t-1} dt into W (N, D) (dA^T). */
/* With z != NULL, dy is the gradient of the gated output: the epilogue's backward runs first
   (dz into dz, dL/dDp added into WD (D,), dL/dy = dy silu(z)). */
static void amf_scan_bwd_rows(int64_t L, int64_t Bt, int64_t D, int64_t N, int64_t b0, int64_t b1, int64_t seg,
                  int64_t zs, int64_t bs,
                  const float *restrict u, const float *restrict dt, const float *restrict At,
                  const float *restrict A2, const float *restrict Bm, const float *restrict Cm,
                  const float *restrict dy, const float *restrict ck, float *restrict du,
                  float *restrict ddt, float *restrict dB, float *restrict dC, float *restrict W,
                  const float *restrict Dp, const float *restrict z, const float *restrict yv,
                  float *restrict dz, float *restrict WD) {
    const int64_t ND = N * D, nck = (L + seg - 1) / seg;
    /* Slots of ND floats placed 64 B off multiples of 4 KiB from one another (NS = ND + 16), and
       the dA^T sums kept here too: the adjoint's loads from one slot never 4K-alias its stores
       to another (a false dependency that delays the loads). */
    const int64_t NS = ND + 16;
    float *H = (float *)malloc(sizeof(float) * ((2 * seg + 3) * NS + 5 * D + 2 * N * VW + 128));
    float *As = H + (seg + 1) * NS + 32, *Wl = As + seg * NS + 32, *carry = Wl + NS + 32, *ddtu = carry + ND,
          *dta = ddtu + D,
          *sgz = dta + D, *gy = sgz + D, *dus = gy + D, *scp = dus + D, *sbp = scp + N * VW;
    float *Wacc = W ? Wl : NULL;
    if (W) memset(Wl, 0, sizeof(float) * ND);
    for (int64_t b = b0; b < b1; ++b) {
        memset(carry, 0, sizeof(float) * ND);
        for (int64_t k = nck - 1; k >= 0; --k) {
            const int64_t s0 = k * seg, T = (L - s0) < seg ? (L - s0) : seg;
            memcpy(H, ck + (b * nck + k) * ND, sizeof(float) * ND);
            for (int64_t i = 0; i < T; ++i) { /* recompute this segment's decays and states */
                const int64_t row = (s0 + i) * Bt + b;
                const float *dtr = dt + row * D, *ur = u + row * D, *Br = Bm + row * bs;
                const float *hp0 = H + i * NS;
                /* next: the recompute's next row, or at the segment's end the adjoint's first row
                   when it is the sequence's last (the adjoint prefetches the rows before it) */
                const int nxr = i + 1 < T, nxa = !nxr && s0 + T == L;
                if (nxr) AMF_PREFETCH(Bm + (row + Bt) * bs, N, 0);
                if (nxa) amf_prefetch_adjoint_row(row, D, N, bs, zs, 0, D, dy, Cm, z, yv, du, ddt, dB, dC, dz);
                float *ai0 = As + i * NS, *hi0 = H + (i + 1) * NS;
                int64_t d0 = 0;
#if AMF_AVX512
                for (; d0 + VW <= D; d0 += VW) { /* a channel block: its dt and dt u loaded once */
                    if (nxr) {
                        AMF_PREFETCH(dt + (row + Bt) * D + d0, VW, 0);
                        AMF_PREFETCH(u + (row + Bt) * D + d0, VW, 0);
                    }
                    const __m512 dtv = _mm512_loadu_ps(dtr + d0);
                    const __m512 dtuv = _mm512_mul_ps(dtv, _mm512_loadu_ps(ur + d0));
                    for (int64_t n = 0; n < N; ++n) {
                        const int64_t o = n * D + d0;
                        const __m512 a = exp2_v(_mm512_mul_ps(dtv, _mm512_loadu_ps(A2 + o)));
                        _mm512_storeu_ps(ai0 + o, a);
                        _mm512_storeu_ps(hi0 + o, _mm512_fmadd_ps(a, _mm512_loadu_ps(hp0 + o),
                                                                  _mm512_mul_ps(_mm512_set1_ps(Br[n]), dtuv)));
                    }
                }
#endif
                if (nxr && d0 < D) {
                    AMF_PREFETCH(dt + (row + Bt) * D + d0, D - d0, 0);
                    AMF_PREFETCH(u + (row + Bt) * D + d0, D - d0, 0);
                }
                for (int64_t n = 0; n < N; ++n) {
                    const float bn = Br[n];
                    const float *an = A2 + n * D, *hp = hp0 + n * D;
                    float *ai = ai0 + n * D, *hi = hi0 + n * D;
                    for (int64_t d = d0; d < D; ++d) {
                        float a = exp2_poly(dtr[d] * an[d]);
                        ai[d] = a;
                        hi[d] = a * hp[d] + bn * dtr[d] * ur[d];
                    }
                }
            }
            for (int64_t i = T - 1; i >= 0; --i) {
                const int64_t row = (s0 + i) * Bt + b;
                const float *dtr = dt + row * D, *ur = u + row * D, *dyr = dy + row * D;
                const float *Br = Bm + row * bs, *Cr = Cm + row * bs;
                /* the previous time step's rows, a block's lines at a time (its dt, u, B are in
                   cache from the recompute) */
                const int pf = s0 + i > 0;
                const int64_t pv = row - Bt;
                if (pf) amf_prefetch_adjoint_row(pv, D, N, bs, zs, 0, 0, dy, Cm, z, yv, du, ddt, dB, dC, dz);
                if (z) { /* out = v silu(z), v = y + Dp u */
                    const float *zr = z + row * zs, *vr = yv + row * D;
                    float *dzr = dz + row * zs; /* dz has z's row stride */
                    sigmoid_row(zr, sgz, D);
                    for (int64_t d = 0; d < D; ++d) {
                        const float sg = sgz[d];
                        float g = dyr[d] * zr[d] * sg; /* dL/dv */
                        dzr[d] = dyr[d] * vr[d] * sg * (1.0f + zr[d] * (1.0f - sg));
                        gy[d] = g;
                        dus[d] = g * Dp[d];
                        WD[d] += g * ur[d];
                    }
                    dyr = gy;
                } else {
                    for (int64_t d = 0; d < D; ++d) dus[d] = 0.0f;
                }
                memset(scp, 0, sizeof(float) * 2 * N * VW);
                const float *hc0 = H + (i + 1) * NS, *hp0 = H + i * NS, *ai0 = As + i * NS;
                int64_t d0 = 0;
#if AMF_AVX512
                for (; d0 + 2 * VW <= D; d0 += 2 * VW) {
                    if (pf) amf_prefetch_adjoint_row(pv, D, 0, bs, zs, d0, 2 * VW, dy, Cm, z, yv, du, ddt, dB, dC, dz);
                    bwd_block_v2(d0, N, D, dtr, ur, dyr, Br, Cr, hc0, hp0, ai0, At, carry, Wacc, scp, sbp, ddtu, dta);
                }
#endif
                for (; d0 + VW <= D; d0 += VW) {
                    if (pf) amf_prefetch_adjoint_row(pv, D, 0, bs, zs, d0, VW, dy, Cm, z, yv, du, ddt, dB, dC, dz);
#if AMF_AVX512
                    bwd_block_v(d0, N, D, dtr, ur, dyr, Br, Cr, hc0, hp0, ai0, At, carry, Wacc, scp, sbp, ddtu, dta);
#else
                    bwd_block(VW, d0, N, D, dtr, ur, dyr, Br, Cr, hc0, hp0, ai0, At, carry, Wacc, scp, sbp, ddtu, dta);
#endif
                }
                if (d0 < D) {
                    if (pf) amf_prefetch_adjoint_row(pv, D, 0, bs, zs, d0, D - d0, dy, Cm, z, yv, du, ddt, dB, dC, dz);
                    bwd_block(D - d0, d0, N, D, dtr, ur, dyr, Br, Cr, hc0, hp0, ai0, At, carry, Wacc, scp, sbp, ddtu,
                              dta);
                }
                int64_t n0 = 0;
#if AMF_AVX512
                for (; n0 + 16 <= N; n0 += 16) {
                    _mm512_storeu_ps(dC + row * bs + n0, hsum16_v(scp + n0 * VW));
                    _mm512_storeu_ps(dB + row * bs + n0, hsum16_v(sbp + n0 * VW));
                }
#endif
                for (int64_t n = n0; n < N; ++n) {
#if AMF_AVX512
                    const float sc = _mm512_reduce_add_ps(_mm512_loadu_ps(scp + n * VW));
                    const float sb = _mm512_reduce_add_ps(_mm512_loadu_ps(sbp + n * VW));
#else
                    float sc = 0.0f, sb = 0.0f;
                    for (int64_t j = 0; j < VW; ++j) { sc += scp[n * VW + j]; sb += sbp[n * VW + j]; }
#endif
                    dC[row * bs + n] = sc; /* sum_d h_t dy: dL/dC_t */
                    dB[row * bs + n] = sb; /* sum_d g_t dt u: dL/dB_t */
                }
                float *dur = du + row * D, *ddtr = ddt + row * D;
                for (int64_t d = 0; d < D; ++d) {
                    dur[d] = ddtu[d] * dtr[d] + dus[d];
                    ddtr[d] = dta[d] + ddtu[d] * ur[d];
                }
            }
        }
    }
    if (W)
        for (int64_t i = 0; i < ND; ++i) W[i] += Wl[i];
    free(H);
}

/* Depthwise causal convolution + SiLU, time-major: x rows (t, b) of C channels, row stride xs;
   u[t, b, :] = silu(bias + sum_k wT[k, :] x[t - K + 1 + k, b, :]) (zero before t = 0). With
   ds != NULL (training) the SiLU's derivative at each pre-activation is kept there (L, Bt, C)
   for the backward. Time is the outer loop and the part's batch rows the inner one, so every
   tensor is read and written as one contiguous stream per time step (the batch-outer order hopped
   Bt rows, 128 KiB at batch 128, between steps: no hardware prefetch across those pages, and
   the stores to the output rows, each a write-allocate miss, took 2/3 of the pass; batch-outer
   with software prefetch measured 1.15-1.33x this order's time). */
static void amf_conv_fwd_rows(int64_t L, int64_t Bt, int64_t C, int64_t K, int64_t b0, int64_t b1, int64_t xs,
                  const float *restrict x, const float *restrict wT, const float *restrict bias,
                  float *restrict u, float *restrict ds) {
    for (int64_t t = 0; t < L; ++t)
        for (int64_t b = b0; b < b1; ++b) {
            float *restrict ur = u + (t * Bt + b) * C;
            const int64_t k0 = K - 1 - t > 0 ? K - 1 - t : 0; /* taps before t = 0 read zeros */
            for (int64_t d = 0; d < C; ++d) ur[d] = bias ? bias[d] : 0.0f;
            for (int64_t k = k0; k < K; ++k) {
                const float *restrict xr = x + ((t - K + 1 + k) * Bt + b) * xs, *restrict wk = wT + k * C;
                for (int64_t d = 0; d < C; ++d) ur[d] += wk[d] * xr[d];
            }
            if (ds) { /* silu'(c) = sg (1 + c (1 - sg)), kept for the backward */
                float *restrict dsr = ds + (t * Bt + b) * C;
                for (int64_t d = 0; d < C; ++d) {
                    const float c = ur[d], sg = sigmoid_poly(c);
                    dsr[d] = sg * (1.0f + c * (1.0f - sg));
                    ur[d] = c * sg;
                }
            } else {
                for (int64_t d = 0; d < C; ++d) ur[d] = ur[d] * sigmoid_poly(ur[d]);
            }
        }
}

/* Its backward from ds, the forward's SiLU derivatives, in gather form: with c = du ds (dL/d
   pre-activation), dx[s] = sum_k wT[k] c[s + K - 1 - k] is written once per row (no zero fill,
   no read-modify-write of rows touched K times); dx has x's row stride xs; dwT (K, C) and dbias
   (C) accumulated (one buffer per part). One batch row's time steps at a time, so the rows a
   step reads again at the next K - 1 steps stay in L1, the rows ahead prefetched by hand (they
   lie Bt rows apart, past what the hardware prefetchers follow): 0.83x the time of the
   time-outer order at batch 128 (whose reuse distance, K steps x all the part's rows, overflows
   L2: it took 6x its batch-32 time for 4x the rows), 0.90x at batch 32. */
static void amf_conv_bwd_rows(int64_t L, int64_t Bt, int64_t C, int64_t K, int64_t b0, int64_t b1, int64_t xs,
                  const float *restrict x, const float *restrict wT, const float *restrict bias,
                  const float *restrict du, float *restrict dx, float *restrict dwT, float *restrict dbias,
                  const float *restrict ds) {
    (void)bias;
    for (int64_t b = b0; b < b1; ++b) {
        for (int64_t t = 0; t < K - 1 && t < L; ++t) { /* the first rows ahead */
            AMF_PREFETCH(du + (t * Bt + b) * C, C, 0);
            AMF_PREFETCH(ds + (t * Bt + b) * C, C, 0);
        }
        for (int64_t t = 0; t < L; ++t) {
            const int64_t row = t * Bt + b;
            if (t + K - 1 < L) {
                AMF_PREFETCH(du + (row + (K - 1) * Bt) * C, C, 0);
                AMF_PREFETCH(ds + (row + (K - 1) * Bt) * C, C, 0);
            }
            if (t + 1 < L) {
                AMF_PREFETCH(x + (row + Bt) * xs, C, 0);
                AMF_PREFETCH(dx + (row + Bt) * xs, C, 1);
            }
            const float *restrict dur = du + row * C, *restrict dsr = ds + row * C;
            float *restrict dxr = dx + row * xs;
            const int64_t k0 = K - 1 - t > 0 ? K - 1 - t : 0;
            const int64_t j1 = L - t < K ? L - t : K; /* taps j = 0 .. j1 - 1 read rows t + j < L */
            for (int64_t d = 0; d < C; ++d) {
                const float c = dur[d] * dsr[d];
                dbias[d] += c;
                dxr[d] = wT[(K - 1) * C + d] * c;
            }
            for (int64_t k = k0; k < K; ++k) {
                const float *restrict xr = x + (row - (K - 1 - k) * Bt) * xs;
                float *restrict dwk = dwT + k * C;
                for (int64_t d = 0; d < C; ++d) dwk[d] += dur[d] * dsr[d] * xr[d];
            }
            for (int64_t j = 1; j < j1; ++j) {
                const int64_t r = row + j * Bt;
                const float *restrict dun = du + r * C, *restrict dsn = ds + r * C, *restrict wk = wT + (K - 1 - j) * C;
                for (int64_t d = 0; d < C; ++d) dxr[d] += wk[d] * (dun[d] * dsn[d]);
            }
        }
    }
}
/* The *_rows functions do batch rows [b0, b1). The entry points below take the batch rows in nth
   contiguous parts, run by OpenMP threads
   when the library is built with -fopenmp (it then shares the already loaded libgomp of
   PyTorch, so the threads are PyTorch's own intra-op threads, not a second pool competing with
   them), one after another otherwise. Part p accumulates its dA^T, dDp, dweight and dbias into
   its own slice p of W (nth, N, D), WD (nth, D), dwT (nth, K, C) and dbias (nth, C). */
#define AMF_PART(p, n, Bt) ((p) * (Bt) / (n))

void amf_scan_fwd(int64_t L, int64_t Bt, int64_t D, int64_t N, int64_t nth, int64_t seg, int64_t zs, int64_t bs,
                  const float *restrict u, const float *restrict dt, const float *restrict A2,
                  const float *restrict Bm, const float *restrict Cm, float *restrict y,
                  float *restrict ck, const float *restrict Dp, const float *restrict z,
                  float *restrict yv) {
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t p = 0; p < nth; ++p)
        amf_scan_fwd_rows(L, Bt, D, N, AMF_PART(p, nth, Bt), AMF_PART(p + 1, nth, Bt), seg, zs, bs, u, dt, A2, Bm, Cm,
                          y, ck, Dp, z, yv);
}

void amf_scan_bwd(int64_t L, int64_t Bt, int64_t D, int64_t N, int64_t nth, int64_t seg, int64_t zs, int64_t bs,
                  const float *restrict u, const float *restrict dt, const float *restrict At,
                  const float *restrict A2, const float *restrict Bm, const float *restrict Cm,
                  const float *restrict dy, const float *restrict ck, float *restrict du,
                  float *restrict ddt, float *restrict dB, float *restrict dC, float *restrict W,
                  const float *restrict Dp, const float *restrict z, const float *restrict yv,
                  float *restrict dz, float *restrict WD) {
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t p = 0; p < nth; ++p)
        amf_scan_bwd_rows(L, Bt, D, N, AMF_PART(p, nth, Bt), AMF_PART(p + 1, nth, Bt), seg, zs, bs, u, dt, At, A2, Bm,
                          Cm, dy, ck, du, ddt, dB, dC, W ? W + p * N * D : W, Dp, z, yv, dz, WD ? WD + p * D : WD);
}

void amf_conv_fwd(int64_t L, int64_t Bt, int64_t C, int64_t K, int64_t nth, int64_t xs,
                  const float *restrict x, const float *restrict wT, const float *restrict bias,
                  float *restrict u, float *restrict ds) {
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t p = 0; p < nth; ++p)
        amf_conv_fwd_rows(L, Bt, C, K, AMF_PART(p, nth, Bt), AMF_PART(p + 1, nth, Bt), xs, x, wT, bias, u, ds);
}

void amf_conv_bwd(int64_t L, int64_t Bt, int64_t C, int64_t K, int64_t nth, int64_t xs,
                  const float *restrict x, const float *restrict wT, const float *restrict bias,
                  const float *restrict du, float *restrict dx, float *restrict dwT, float *restrict dbias,
                  const float *restrict ds) {
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t p = 0; p < nth; ++p)
        amf_conv_bwd_rows(L, Bt, C, K, AMF_PART(p, nth, Bt), AMF_PART(p + 1, nth, Bt), xs, x, wT, bias, du, dx,
                          dwT + p * K * C, dbias + p * C, ds);
}

static void amf_softplus_fwd_rows(int64_t C, int64_t r0, int64_t r1, const float *restrict x,
                           const float *restrict bias, float *restrict out) {
    for (int64_t r = r0; r < r1; ++r) {
        const float *restrict xr = x + r * C;
        float *restrict o = out + r * C;
        for (int64_t d = 0; d < C; ++d) o[d] = xr[d] + (bias ? bias[d] : 0.0f);
        softplus_row(o, o, C);
    }
}

/* Its backward: gx = g sigmoid(x + bias). */
static void amf_softplus_bwd_rows(int64_t C, int64_t r0, int64_t r1, const float *restrict x,
                           const float *restrict bias, const float *restrict g, float *restrict gx) {
    for (int64_t r = r0; r < r1; ++r) {
        const float *restrict xr = x + r * C, *restrict gr = g + r * C;
        float *restrict o = gx + r * C;
        for (int64_t d = 0; d < C; ++d) o[d] = xr[d] + (bias ? bias[d] : 0.0f);
        sigmoid_row(o, o, C);
        for (int64_t d = 0; d < C; ++d) o[d] *= gr[d];
    }
}

void amf_softplus_fwd(int64_t rows, int64_t C, int64_t nth, const float *restrict x, const float *restrict bias,
                      float *restrict out) {
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t p = 0; p < nth; ++p)
        amf_softplus_fwd_rows(C, AMF_PART(p, nth, rows), AMF_PART(p + 1, nth, rows), x, bias, out);
}

void amf_softplus_bwd(int64_t rows, int64_t C, int64_t nth, const float *restrict x, const float *restrict bias,
                      const float *restrict g, float *restrict gx) {
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t p = 0; p < nth; ++p)
        amf_softplus_bwd_rows(C, AMF_PART(p, nth, rows), AMF_PART(p + 1, nth, rows), x, bias, g, gx);
}

/* dt = softplus(bias + lo W^T) for rows [r0, r1): lo (rows, R) with row stride ls (the dt_rank
   columns of x_proj's output, read in place), WT = W^T (R, C). Mamba's dt_proj and its
   softplus in one pass. */
static void amf_dtsp_fwd_rows(int64_t C, int64_t R, int64_t r0, int64_t r1, int64_t ls, const float *restrict lo,
                       const float *restrict WT, const float *restrict bias, float *restrict out) {
    for (int64_t r = r0; r < r1; ++r) {
        const float *restrict lr = lo + r * ls;
        float *restrict o = out + r * C;
        for (int64_t d = 0; d < C; ++d) o[d] = bias ? bias[d] : 0.0f;
        for (int64_t k = 0; k < R; ++k) {
            const float a = lr[k], *restrict wk = WT + k * C;
            for (int64_t d = 0; d < C; ++d) o[d] += a * wk[d];
        }
        softplus_row(o, o, C);
    }
}

/* Its backward: gv = g sigmoid(v) with v recomputed; dlo (rows, R) at row stride dls,
   dWT (R, C) and dbias (C) accumulated (one buffer per part). */
static void amf_dtsp_bwd_rows(int64_t C, int64_t R, int64_t r0, int64_t r1, int64_t ls, int64_t dls,
                       const float *restrict lo, const float *restrict WT, const float *restrict bias,
                       const float *restrict g, float *restrict dlo, float *restrict dWT, float *restrict dbias) {
    float *gv = (float *)malloc(sizeof(float) * C);
    for (int64_t r = r0; r < r1; ++r) {
        const float *restrict lr = lo + r * ls, *restrict gr = g + r * C;
        for (int64_t d = 0; d < C; ++d) gv[d] = bias ? bias[d] : 0.0f;
        for (int64_t k = 0; k < R; ++k) {
            const float a = lr[k], *restrict wk = WT + k * C;
            for (int64_t d = 0; d < C; ++d) gv[d] += a * wk[d];
        }
        for (int64_t d = 0; d < C; ++d) {
            gv[d] = gr[d] * sigmoid_poly(gv[d]);
            if (dbias) dbias[d] += gv[d];
        }
        for (int64_t k = 0; k < R; ++k) {
            const float a = lr[k], *restrict wk = WT + k * C;
            float *restrict dwk = dWT + k * C;
            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
            for (int64_t d = 0; d < C; ++d) {
                acc += gv[d] * wk[d];
                dwk[d] += gv[d] * a;
            }
            dlo[r * dls + k] = acc;
        }
    }
    free(gv);
}

void amf_dtsp_fwd(int64_t rows, int64_t C, int64_t R, int64_t nth, int64_t ls, const float *restrict lo,
                  const float *restrict WT, const float *restrict bias, float *restrict out) {
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t p = 0; p < nth; ++p)
        amf_dtsp_fwd_rows(C, R, AMF_PART(p, nth, rows), AMF_PART(p + 1, nth, rows), ls, lo, WT, bias, out);
}

void amf_dtsp_bwd(int64_t rows, int64_t C, int64_t R, int64_t nth, int64_t ls, int64_t dls,
                  const float *restrict lo, const float *restrict WT, const float *restrict bias,
                  const float *restrict g, float *restrict dlo, float *restrict dWT, float *restrict dbias) {
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t p = 0; p < nth; ++p)
        amf_dtsp_bwd_rows(C, R, AMF_PART(p, nth, rows), AMF_PART(p + 1, nth, rows), ls, dls, lo, WT, bias, g, dlo,
                          dWT + p * R * C, dbias ? dbias + p * C : dbias);
}

/* 1 when built with OpenMP (the parts run in parallel), else 0. */
int amf_openmp(void) {
#if defined(_OPENMP)
    return 1;
#else
    return 0;
#endif
}
"""

_FLAGS = ["-O3", "-march=native", "-ffp-contract=fast", "-fopenmp-simd", "-fPIC", "-shared", "-std=gnu99"]
#: Entry points: (int64 arguments, pointer arguments), in that order.
_SIGNATURES = {
    "amf_scan_fwd": (8, 10), "amf_scan_bwd": (8, 18), "amf_conv_fwd": (6, 5), "amf_conv_bwd": (6, 8),
    "amf_softplus_fwd": (3, 3), "amf_softplus_bwd": (3, 4), "amf_dtsp_fwd": (5, 4), "amf_dtsp_bwd": (6, 7),
}
_LIB: ctypes.CDLL | None = None
_REASON = "not loaded yet"
_TRIED = False
_OPENMP = False
_LOCK = threading.Lock()


def _cpu_key() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            lines = [ln for ln in fh if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = []
    return platform.machine() + "".join(lines)


def _cache_dir() -> Path:
    root = os.environ.get("AMFMEDIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "amfmedit")
    return Path(root) / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _build(cc: str, target: Path, extra: list[str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="amfmedit-kernel-") as tmp:
        src = Path(tmp) / "scan.c"
        src.write_text(_SOURCE)
        out = Path(tmp) / "scan.so"
        proc = subprocess.run([cc, *_FLAGS, *extra, str(src), "-o", str(out), "-lm"], capture_output=True, text=True,
                              timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
        # Temporary name in the cache folder, then rename: a concurrent process sees either
        # no library or a whole one.
        fd, part = tempfile.mkstemp(prefix=".scan-", suffix=".so.tmp", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(out, part)
            os.replace(part, target)
        finally:
            Path(part).unlink(missing_ok=True)


def _openmp_flags() -> list[list[str]]:
    """Builds to try, best first. With OpenMP the library's threads are PyTorch's: it needs the
    OpenMP runtime PyTorch itself loaded (GNU libgomp, whose soname the loader then reuses);
    under another runtime (LLVM's libomp, Intel's) or ``AMFMEDIT_NATIVE_OPENMP=0`` the plain
    build is used and the batch parts run one after another."""
    if os.environ.get("AMFMEDIT_NATIVE_OPENMP", "1").strip().lower() in ("0", "false", "no", "off"):
        return [[]]
    return [["-fopenmp"], []] if _torch_uses_libgomp() else [[]]


def _torch_uses_libgomp() -> bool:
    try:
        with open("/proc/self/maps") as fh:
            return any("libgomp" in line for line in fh)
    except OSError:
        return False


def load() -> ctypes.CDLL | None:
    """The compiled scan library, building it once if needed; None when it cannot be had."""
    global _LIB, _REASON, _TRIED, _OPENMP
    if _TRIED:
        return _LIB
    with _LOCK:
        if _TRIED:
            return _LIB
        _TRIED = True
        if os.environ.get("AMFMEDIT_NATIVE_SCAN", "1").strip().lower() in ("0", "false", "no", "off"):
            _REASON = "disabled by AMFMEDIT_NATIVE_SCAN=0"
            return None
        cc = _compiler()
        if cc is None:
            _REASON = "no C compiler (cc, gcc or clang) on PATH"
            return None
        lib, failure = None, None
        for extra in _openmp_flags():
            key = hashlib.sha256("\0".join([_SOURCE, *_FLAGS, *extra, cc, _cpu_key()]).encode()).hexdigest()[:16]
            target = _cache_dir() / f"amfmedit_scan_{key}.so"
            try:
                if not target.is_file():
                    _build(cc, target, extra)
                lib = ctypes.CDLL(str(target))
                break
            except Exception as exc:  # noqa: BLE001 - any failure means "try the next build"
                failure = exc
        if lib is None:
            _REASON = f"build or load failed ({type(failure).__name__}: {failure})"
            log.info("native CPU scan unavailable: %s; using the PyTorch scan", _REASON)
            return None
        for name, (ints, ptrs) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = [ctypes.c_int64] * ints + [ctypes.c_void_p] * ptrs, None
        lib.amf_openmp.argtypes, lib.amf_openmp.restype = [], ctypes.c_int
        _OPENMP = bool(lib.amf_openmp())
        threads = "on OpenMP (PyTorch's threads)" if _OPENMP else "one after another (built without OpenMP)"
        _LIB, _REASON = lib, f"compiled with {cc} ({target}); batch parts {threads}"
        return lib


def openmp() -> bool:
    """True when the loaded library runs its batch parts on OpenMP threads itself."""
    load()
    return _OPENMP


def available() -> bool:
    return load() is not None


def status() -> str:
    """Why the native scan is or is not in use (after :func:`load`)."""
    load()
    return _REASON


def _reset_for_tests() -> None:
    global _LIB, _REASON, _TRIED, _OPENMP
    _LIB, _REASON, _TRIED, _OPENMP = None, "not loaded yet", False, False
