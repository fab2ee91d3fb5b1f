/* softplus(x + bias), and Mamba's dt_proj + bias + softplus, forward and backward, row by row
   (amf_kernels.h). */
#include "amf_common.h"
#include "amf_kernels.h"

/* out = softplus(x + bias) for rows [r0, r1). */
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

void amf_softplus_fwd(const amf_softplus_params *p) {
    const int64_t nth = p->nth, rows = p->rows;
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t k = 0; k < nth; ++k)
        amf_softplus_fwd_rows(p->C, AMF_PART(k, nth, rows), AMF_PART(k + 1, nth, rows), p->x, p->bias, p->out);
}

void amf_softplus_bwd(const amf_softplus_params *p) {
    const int64_t nth = p->nth, rows = p->rows;
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t k = 0; k < nth; ++k)
        amf_softplus_bwd_rows(p->C, AMF_PART(k, nth, rows), AMF_PART(k + 1, nth, rows), p->x, p->bias, p->g, p->gx);
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

void amf_dtsp_fwd(const amf_dtsp_params *p) {
    const int64_t nth = p->nth, rows = p->rows;
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t k = 0; k < nth; ++k)
        amf_dtsp_fwd_rows(p->C, p->R, AMF_PART(k, nth, rows), AMF_PART(k + 1, nth, rows), p->ls, p->lo, p->WT, p->bias,
                          p->out);
}

void amf_dtsp_bwd(const amf_dtsp_params *p) {
    const int64_t nth = p->nth, rows = p->rows, C = p->C, R = p->R;
#pragma omp parallel for num_threads(nth) schedule(static, 1)
    for (int64_t k = 0; k < nth; ++k)
        amf_dtsp_bwd_rows(C, R, AMF_PART(k, nth, rows), AMF_PART(k + 1, nth, rows), p->ls, p->dls, p->lo, p->WT,
                          p->bias, p->g, p->dlo, p->dWT + k * R * C, p->dbias ? p->dbias + k * C : NULL);
}
