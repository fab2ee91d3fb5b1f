/* The compiled CPU kernels of a Mamba block (amfmedit.models.native_scan builds them; the
   autograd Functions of amfmedit.models.scan call them through ctypes).

   Every entry point takes one params struct. native_scan.py mirrors each struct as a
   ctypes.Structure, and amf_layout() reports every field's offset and size so the test suite
   (and load()) can check that the two agree: change a struct here, in the ctypes mirror and in
   layout.c together.

   Conventions: tensors are float32, C-contiguous within a row, time-major: row (t, b) of an
   (L, Bt, .) tensor is row t * Bt + b, and a *s field is a row stride in floats (a chunk of a
   wider tensor is read or written in place). The batch rows are split into nth contiguous
   parts (OpenMP threads when built with -fopenmp, one after another otherwise); a weight
   gradient is accumulated per part into its own slice of an (nth, ...) buffer the caller sums.
   A pointer marked "or NULL" may be NULL; every other pointer a kernel reads or writes must be
   valid. Integers are int64_t and pointers 8 bytes wide, so the structs have no padding. */
#ifndef AMF_KERNELS_H
#define AMF_KERNELS_H

#include <stdint.h>

/* The selective scan h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t, y_t = <C_t, h_t>, with the
   block's epilogue out = (y + Dp u) silu(z) when z is given. The forward reads the inputs and
   writes y, ck and yv; the backward reads the inputs, ck, yv and dy and writes the gradients. */
typedef struct amf_scan_params {
    int64_t L, Bt, D, N; /* time steps, batch rows, channels, states */
    int64_t nth;         /* batch parts */
    int64_t seg;         /* time steps between checkpoints */
    int64_t zs;          /* row stride of z and dz */
    int64_t bs;          /* row stride of Bm, Cm, dB and dC */
    const float *u;      /* (L, Bt, D) */
    const float *dt;     /* (L, Bt, D), after softplus */
    const float *At;     /* A^T (N, D); backward */
    const float *A2;     /* A^T log2(e) (N, D) */
    const float *Bm;     /* (L, Bt, N) */
    const float *Cm;     /* (L, Bt, N) */
    const float *Dp;     /* (D,) skip weight; read when z is given */
    const float *z;      /* (L, Bt, D) gate, or NULL: no epilogue, the output is y itself */
    float *y;            /* (L, Bt, D) output; forward */
    float *ck;           /* (Bt, ceil(L / seg), N, D) states before steps 0, seg, 2 seg, ...:
                            written by the forward (or NULL: no backward will run), read by the
                            backward */
    float *yv;           /* (L, Bt, D) y + Dp u: written by a gated forward (or NULL), read by the
                            gated backward */
    const float *dy;     /* (L, Bt, D) gradient of the output; backward */
    float *du, *ddt;     /* (L, Bt, D); backward */
    float *dB, *dC;      /* (L, Bt, N); backward */
    float *dz;           /* (L, Bt, D); gated backward */
    float *W;            /* (nth, N, D) dL/dA^T per part (added to), or NULL: no dA */
    float *WD;           /* (nth, D) dL/dDp per part (added to); gated backward */
} amf_scan_params;

/* Depthwise causal convolution + SiLU: u[t] = silu(bias + sum_k wT[k] x[t - K + 1 + k]). */
typedef struct amf_conv_params {
    int64_t L, Bt, C, K; /* time steps, batch rows, channels, taps */
    int64_t nth;         /* batch parts */
    int64_t xs;          /* row stride of x and dx */
    const float *x;      /* (L, Bt, C) */
    const float *wT;     /* (K, C) */
    const float *bias;   /* (C,) or NULL */
    float *u;            /* (L, Bt, C) output; forward */
    float *ds;           /* (L, Bt, C) silu' of the pre-activation: written by the forward (or
                            NULL: no backward will run), read by the backward */
    const float *du;     /* (L, Bt, C) gradient of u; backward */
    float *dx;           /* (L, Bt, C), written; backward */
    float *dwT;          /* (nth, K, C) per part (added to); backward */
    float *dbias;        /* (nth, C) per part (added to); backward */
} amf_conv_params;

/* out = softplus(x + bias) over rows of C values. */
typedef struct amf_softplus_params {
    int64_t rows, C; /* rows of C contiguous values */
    int64_t nth;     /* row parts */
    const float *x;    /* (rows, C) */
    const float *bias; /* (C,) or NULL */
    float *out;        /* (rows, C); forward */
    const float *g;    /* (rows, C) gradient of out; backward */
    float *gx;         /* (rows, C) gradient of x; backward */
} amf_softplus_params;

/* Mamba's dt_proj with its bias and softplus: out = softplus(bias + lo WT). */
typedef struct amf_dtsp_params {
    int64_t rows, C, R; /* rows, channels, rank */
    int64_t nth;        /* row parts */
    int64_t ls;         /* row stride of lo */
    int64_t dls;        /* row stride of dlo */
    const float *lo;    /* (rows, R) */
    const float *WT;    /* (R, C) */
    const float *bias;  /* (C,) or NULL */
    float *out;         /* (rows, C); forward */
    const float *g;     /* (rows, C) gradient of out; backward */
    float *dlo;         /* (rows, R), written; backward */
    float *dWT;         /* (nth, R, C) per part (added to); backward */
    float *dbias;       /* (nth, C) per part (added to), or NULL; backward */
} amf_dtsp_params;

void amf_scan_fwd(const amf_scan_params *p);
void amf_scan_bwd(const amf_scan_params *p);
void amf_conv_fwd(const amf_conv_params *p);
void amf_conv_bwd(const amf_conv_params *p);
void amf_softplus_fwd(const amf_softplus_params *p);
void amf_softplus_bwd(const amf_softplus_params *p);
void amf_dtsp_fwd(const amf_dtsp_params *p);
void amf_dtsp_bwd(const amf_dtsp_params *p);

/* 1 when built with OpenMP (the parts run in parallel), else 0. */
int amf_openmp(void);

/* One row of the struct layout table: a field's offset and size in bytes, or (field NULL)
   the size of the whole struct. */
typedef struct amf_field_layout {
    const char *type;
    const char *field;
    int64_t offset;
    int64_t size;
} amf_field_layout;

/* The layout table of every params struct, in declaration order: *rows points at it; returns
   its length. */
int64_t amf_layout(const amf_field_layout **rows);

#endif
