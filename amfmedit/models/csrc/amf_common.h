/* What the kernel files share: the vectorisable exp2 / sigmoid / softplus, the channel block
   width, the prefetch macro and the batch split. Internal to the library (static inline). */
#ifndef AMF_COMMON_H
#define AMF_COMMON_H

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

/* The *_rows functions do batch rows [b0, b1). The entry points take the batch rows in nth
   contiguous parts, run by OpenMP threads when the library is built with -fopenmp (it then
   shares the already loaded libgomp of PyTorch, so the threads are PyTorch's own intra-op
   threads, not a second pool competing with them), one after another otherwise. Part p
   accumulates its weight gradients into its own slice p of the (nth, ...) buffers. */
#define AMF_PART(p, n, Bt) ((p) * (Bt) / (n))

#endif
