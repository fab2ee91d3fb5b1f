/* The selective scan, forward and backward: one loop per batch row over time, the row's
   (N, D) state in L1, with the block's epilogue (y + Dp u) silu(z) fused (amf_kernels.h). */
#include "amf_common.h"
#include "amf_kernels.h"

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

/* Forward over batch rows [b0, b1). Time-major inputs: u, dt (L, Bt, D); Bm, Cm (L, Bt, N) with
   rows bs floats apart (bs = N, or x_proj's output read in place); A2 = A^T log2(e) (N, D).
   Writes y (L, Bt, D) and, if ck != NULL, the state before steps 0, seg, 2 seg, ... to ck
   (Bt, nck, N, D). Epilogue (when z != NULL): v = y + Dp u is kept in yv (L, Bt, D) if
   yv != NULL, and the output is v silu(z); without z the output is y itself. z's rows (t, b)
   are zs floats apart (a chunk of in_proj's output is read in place). */
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

void amf_scan_fwd(const amf_scan_params *p) {
    const int64_t nth = p->nth, Bt = p->Bt;
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t k = 0; k < nth; ++k)
        amf_scan_fwd_rows(p->L, Bt, p->D, p->N, AMF_PART(k, nth, Bt), AMF_PART(k + 1, nth, Bt), p->seg, p->zs, p->bs,
                          p->u, p->dt, p->A2, p->Bm, p->Cm, p->y, p->ck, p->Dp, p->z, p->yv);
}

void amf_scan_bwd(const amf_scan_params *p) {
    const int64_t nth = p->nth, Bt = p->Bt, ND = p->N * p->D;
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t k = 0; k < nth; ++k)
        amf_scan_bwd_rows(p->L, Bt, p->D, p->N, AMF_PART(k, nth, Bt), AMF_PART(k + 1, nth, Bt), p->seg, p->zs, p->bs,
                          p->u, p->dt, p->At, p->A2, p->Bm, p->Cm, p->dy, p->ck, p->du, p->ddt, p->dB, p->dC,
                          p->W ? p->W + k * ND : NULL, p->Dp, p->z, p->yv, p->dz, p->WD ? p->WD + k * p->D : NULL);
}
