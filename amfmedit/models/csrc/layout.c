/* What the library reports about itself: whether it runs its parts on OpenMP, and the layout
   of its params structs (checked against the ctypes mirrors in native_scan.py). */
#include <stddef.h>

#include "amf_kernels.h"

int amf_openmp(void) {
#if defined(_OPENMP)
    return 1;
#else
    return 0;
#endif
}

#define AMF_SIZE(T) {#T, NULL, 0, (int64_t)sizeof(T)}
#define AMF_FIELD(T, f) {#T, #f, (int64_t)offsetof(T, f), (int64_t)sizeof(((T *)0)->f)}

/* Every field of every struct in amf_kernels.h, in declaration order: a field missing here
   shows as a struct size that the listed fields do not add up to. */
static const amf_field_layout LAYOUT[] = {
    AMF_SIZE(amf_scan_params),
    AMF_FIELD(amf_scan_params, L),
    AMF_FIELD(amf_scan_params, Bt),
    AMF_FIELD(amf_scan_params, D),
    AMF_FIELD(amf_scan_params, N),
    AMF_FIELD(amf_scan_params, nth),
    AMF_FIELD(amf_scan_params, seg),
    AMF_FIELD(amf_scan_params, zs),
    AMF_FIELD(amf_scan_params, bs),
    AMF_FIELD(amf_scan_params, u),
    AMF_FIELD(amf_scan_params, dt),
    AMF_FIELD(amf_scan_params, At),
    AMF_FIELD(amf_scan_params, A2),
    AMF_FIELD(amf_scan_params, Bm),
    AMF_FIELD(amf_scan_params, Cm),
    AMF_FIELD(amf_scan_params, Dp),
    AMF_FIELD(amf_scan_params, z),
    AMF_FIELD(amf_scan_params, y),
    AMF_FIELD(amf_scan_params, ck),
    AMF_FIELD(amf_scan_params, yv),
    AMF_FIELD(amf_scan_params, dy),
    AMF_FIELD(amf_scan_params, du),
    AMF_FIELD(amf_scan_params, ddt),
    AMF_FIELD(amf_scan_params, dB),
    AMF_FIELD(amf_scan_params, dC),
    AMF_FIELD(amf_scan_params, dz),
    AMF_FIELD(amf_scan_params, W),
    AMF_FIELD(amf_scan_params, WD),

    AMF_SIZE(amf_conv_params),
    AMF_FIELD(amf_conv_params, L),
    AMF_FIELD(amf_conv_params, Bt),
    AMF_FIELD(amf_conv_params, C),
    AMF_FIELD(amf_conv_params, K),
    AMF_FIELD(amf_conv_params, nth),
    AMF_FIELD(amf_conv_params, xs),
    AMF_FIELD(amf_conv_params, x),
    AMF_FIELD(amf_conv_params, wT),
    AMF_FIELD(amf_conv_params, bias),
    AMF_FIELD(amf_conv_params, u),
    AMF_FIELD(amf_conv_params, ds),
    AMF_FIELD(amf_conv_params, du),
    AMF_FIELD(amf_conv_params, dx),
    AMF_FIELD(amf_conv_params, dwT),
    AMF_FIELD(amf_conv_params, dbias),

    AMF_SIZE(amf_softplus_params),
    AMF_FIELD(amf_softplus_params, rows),
    AMF_FIELD(amf_softplus_params, C),
    AMF_FIELD(amf_softplus_params, nth),
    AMF_FIELD(amf_softplus_params, x),
    AMF_FIELD(amf_softplus_params, bias),
    AMF_FIELD(amf_softplus_params, out),
    AMF_FIELD(amf_softplus_params, g),
    AMF_FIELD(amf_softplus_params, gx),

    AMF_SIZE(amf_dtsp_params),
    AMF_FIELD(amf_dtsp_params, rows),
    AMF_FIELD(amf_dtsp_params, C),
    AMF_FIELD(amf_dtsp_params, R),
    AMF_FIELD(amf_dtsp_params, nth),
    AMF_FIELD(amf_dtsp_params, ls),
    AMF_FIELD(amf_dtsp_params, dls),
    AMF_FIELD(amf_dtsp_params, lo),
    AMF_FIELD(amf_dtsp_params, WT),
    AMF_FIELD(amf_dtsp_params, bias),
    AMF_FIELD(amf_dtsp_params, out),
    AMF_FIELD(amf_dtsp_params, g),
    AMF_FIELD(amf_dtsp_params, dlo),
    AMF_FIELD(amf_dtsp_params, dWT),
    AMF_FIELD(amf_dtsp_params, dbias),
};

int64_t amf_layout(const amf_field_layout **rows) {
    *rows = LAYOUT;
    return (int64_t)(sizeof LAYOUT / sizeof LAYOUT[0]);
}
