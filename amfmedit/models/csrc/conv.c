/* The Mamba block's depthwise causal convolution + SiLU, forward and backward (amf_kernels.h). */
#include "amf_common.h"
#include "amf_kernels.h"

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

void amf_conv_fwd(const amf_conv_params *p) {
    const int64_t nth = p->nth, Bt = p->Bt;
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t k = 0; k < nth; ++k)
        amf_conv_fwd_rows(p->L, Bt, p->C, p->K, AMF_PART(k, nth, Bt), AMF_PART(k + 1, nth, Bt), p->xs, p->x, p->wT,
                          p->bias, p->u, p->ds);
}

void amf_conv_bwd(const amf_conv_params *p) {
    const int64_t nth = p->nth, Bt = p->Bt, C = p->C, K = p->K;
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t k = 0; k < nth; ++k)
        amf_conv_bwd_rows(p->L, Bt, C, K, AMF_PART(k, nth, Bt), AMF_PART(k + 1, nth, Bt), p->xs, p->x, p->wT, p->bias,
                          p->du, p->dx, p->dwT + k * K * C, p->dbias + k * C, p->ds);
}
