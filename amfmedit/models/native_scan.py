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
Mamba block's elementwise work is three compiled passes instead of ~40 PyTorch ops.

Built at first use with the system C compiler (``cc``; plain C, no PyTorch headers, so the
build takes well under a second), cached under ``$AMFMEDIT_CACHE`` (default
``~/.cache/amfmedit``)/kernels keyed by a hash of the source, the flags and the CPU, and
called through ctypes on the tensors' memory (ctypes releases the GIL, so batch slices run
in parallel Python threads). When there is no compiler, the build fails, or
``AMFMEDIT_NATIVE_SCAN=0``, :func:`load` returns None and the scan falls back to the
pure-PyTorch sequential path; :func:`status` says why.

Decays are ``exp2(dt * A * log2(e))`` computed by an inline range-reduced polynomial
(degree 7, relative error ~2e-7, i.e. float32 round-off) so the compiler can vectorise the
channel loop (multiply-adds contracted to FMAs); arguments below -127 give exactly 0.
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

/* 2^x for float32, vectorisable: x = k + f, k = round(x), f in [-0.5, 0.5]; 2^f by its
   Taylor polynomial of exp(f ln 2) to degree 7 (error < 6e-9); 2^k by the exponent bits. */
static inline float exp2_poly(float x) {
    /* Clamped to [-127, 127]: k = -127 gives exponent bits 0, i.e. exactly 0 (below 2^-126
       the true value is below float32's normal range anyway). */
    float xc = x < -127.0f ? -127.0f : (x > 127.0f ? 127.0f : x);
    float r = (xc + 12582912.0f) - 12582912.0f; /* round to nearest integer */
    float f = xc - r;
    float p = 1.5252733804059841e-05f;
    p = p * f + 1.5403530393381608e-04f;
    p = p * f + 1.3333558146428443e-03f;
    p = p * f + 9.6181291076284772e-03f;
    p = p * f + 5.5504108664821580e-02f;
    p = p * f + 2.4022650695910071e-01f;
    p = p * f + 6.9314718055994531e-01f;
    p = p * f + 1.0f;
    int32_t k = (int32_t)r;
    union { int32_t i; float f; } s;
    s.i = (k + 127) << 23;
    return p * s.f;
}

/* Forward over batch rows [b0, b1). Time-major inputs: u, dt (L, Bt, D); Bm, Cm (L, Bt, N);
   A2 = A^T log2(e) (N, D). Writes y (L, Bt, D) and, if ck != NULL, the state before steps
   0, seg, 2 seg, ... to ck (Bt, nck, N, D). */
static inline float sigmoid_poly(float z) { return 1.0f / (1.0f + exp2_poly(-1.4426950408889634f * z)); }


/* Channels are processed in blocks of VW (one AVX-512 register): a block's dt, dt*u and
   running sums stay in registers across the N states. */
#define VW 16

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
void amf_scan_fwd(int64_t L, int64_t Bt, int64_t D, int64_t N, int64_t b0, int64_t b1, int64_t seg, int64_t zs,
                  const float *restrict u, const float *restrict dt, const float *restrict A2,
                  const float *restrict Bm, const float *restrict Cm, float *restrict y,
                  float *restrict ck, const float *restrict Dp, const float *restrict z,
                  float *restrict yv) {
    const int64_t ND = N * D, nck = (L + seg - 1) / seg;
    float *h = (float *)malloc(sizeof(float) * (ND + 2 * D));
    float *yr = h + ND, *dtu = yr + D;
    for (int64_t b = b0; b < b1; ++b) {
        memset(h, 0, sizeof(float) * ND);
        for (int64_t t = 0; t < L; ++t) {
            if (ck && t % seg == 0) memcpy(ck + (b * nck + t / seg) * ND, h, sizeof(float) * ND);
            const int64_t row = t * Bt + b;
            const float *dtr = dt + row * D, *ur = u + row * D;
            const float *Br = Bm + row * N, *Cr = Cm + row * N;
            int64_t d0 = 0;
            for (; d0 + VW <= D; d0 += VW) fwd_block(VW, d0, N, D, dtr, ur, A2, Br, Cr, h, yr);
            if (d0 < D) fwd_block(D - d0, d0, N, D, dtr, ur, A2, Br, Cr, h, yr);
            if (z) {
                const float *zr = z + row * zs;
                float *out = y + row * D;
                for (int64_t d = 0; d < D; ++d) {
                    float v = yr[d] + Dp[d] * ur[d];
                    if (yv) yv[row * D + d] = v;
                    out[d] = v * zr[d] * sigmoid_poly(zr[d]);
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
   dB, dC (L, Bt, N) for these rows and adds sum_{b,t} g a h_{t-1} dt into W (N, D) (dA^T). */
/* With z != NULL, dy is the gradient of the gated output: the epilogue's backward runs first
   (dz into dz, dL/dDp added into WD (D,), dL/dy = dy silu(z)). */
void amf_scan_bwd(int64_t L, int64_t Bt, int64_t D, int64_t N, int64_t b0, int64_t b1, int64_t seg, int64_t zs,
                  const float *restrict u, const float *restrict dt, const float *restrict At,
                  const float *restrict A2, const float *restrict Bm, const float *restrict Cm,
                  const float *restrict dy, const float *restrict ck, float *restrict du,
                  float *restrict ddt, float *restrict dB, float *restrict dC, float *restrict W,
                  const float *restrict Dp, const float *restrict z, const float *restrict yv,
                  float *restrict dz, float *restrict WD) {
    const int64_t ND = N * D, nck = (L + seg - 1) / seg;
    float *H = (float *)malloc(sizeof(float) * ((2 * seg + 2) * ND + 5 * D + 2 * N * VW));
    float *As = H + (seg + 1) * ND, *carry = As + seg * ND, *ddtu = carry + ND, *dta = ddtu + D,
          *dtu = dta + D, *gy = dtu + D, *dus = gy + D, *scp = dus + D, *sbp = scp + N * VW;
    for (int64_t b = b0; b < b1; ++b) {
        memset(carry, 0, sizeof(float) * ND);
        for (int64_t k = nck - 1; k >= 0; --k) {
            const int64_t s0 = k * seg, T = (L - s0) < seg ? (L - s0) : seg;
            memcpy(H, ck + (b * nck + k) * ND, sizeof(float) * ND);
            for (int64_t i = 0; i < T; ++i) { /* recompute this segment's decays and states */
                const int64_t row = (s0 + i) * Bt + b;
                const float *dtr = dt + row * D, *ur = u + row * D, *Br = Bm + row * N;
                for (int64_t n = 0; n < N; ++n) {
                    const float bn = Br[n];
                    const float *an = A2 + n * D, *hp = H + i * ND + n * D;
                    float *ai = As + i * ND + n * D, *hi = H + (i + 1) * ND + n * D;
                    for (int64_t d = 0; d < D; ++d) {
                        float a = exp2_poly(dtr[d] * an[d]);
                        ai[d] = a;
                        hi[d] = a * hp[d] + bn * dtr[d] * ur[d];
                    }
                }
            }
            for (int64_t i = T - 1; i >= 0; --i) {
                const int64_t row = (s0 + i) * Bt + b;
                const float *dtr = dt + row * D, *ur = u + row * D, *dyr = dy + row * D;
                const float *Br = Bm + row * N, *Cr = Cm + row * N;
                if (z) { /* out = v silu(z), v = y + Dp u */
                    const float *zr = z + row * zs, *vr = yv + row * D;
                    float *dzr = dz + row * D;
                    for (int64_t d = 0; d < D; ++d) {
                        float sg = sigmoid_poly(zr[d]);
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
                const float *hc0 = H + (i + 1) * ND, *hp0 = H + i * ND, *ai0 = As + i * ND;
                int64_t d0 = 0;
                for (; d0 + VW <= D; d0 += VW)
                    bwd_block(VW, d0, N, D, dtr, ur, dyr, Br, Cr, hc0, hp0, ai0, At, carry, W, scp, sbp, ddtu, dta);
                if (d0 < D)
                    bwd_block(D - d0, d0, N, D, dtr, ur, dyr, Br, Cr, hc0, hp0, ai0, At, carry, W, scp, sbp, ddtu, dta);
                for (int64_t n = 0; n < N; ++n) {
                    float sc = 0.0f, sb = 0.0f;
                    for (int64_t j = 0; j < VW; ++j) { sc += scp[n * VW + j]; sb += sbp[n * VW + j]; }
                    dC[row * N + n] = sc; /* sum_d h_t dy: dL/dC_t */
                    dB[row * N + n] = sb; /* sum_d g_t dt u: dL/dB_t */
                }
                float *dur = du + row * D, *ddtr = ddt + row * D;
                for (int64_t d = 0; d < D; ++d) {
                    dur[d] = ddtu[d] * dtr[d] + dus[d];
                    ddtr[d] = dta[d] + ddtu[d] * ur[d];
                }
            }
        }
    }
    free(H);
}

/* Depthwise causal convolution + SiLU, time-major: x rows (t, b) of C channels, row stride xs;
   u[t, b, :] = silu(bias + sum_k wT[k, :] x[t - K + 1 + k, b, :]) (zero before t = 0). */
void amf_conv_fwd(int64_t L, int64_t Bt, int64_t C, int64_t K, int64_t b0, int64_t b1, int64_t xs,
                  const float *restrict x, const float *restrict wT, const float *restrict bias,
                  float *restrict u) {
    for (int64_t b = b0; b < b1; ++b)
        for (int64_t t = 0; t < L; ++t) {
            float *ur = u + (t * Bt + b) * C;
            for (int64_t d = 0; d < C; ++d) ur[d] = bias ? bias[d] : 0.0f;
            for (int64_t k = 0; k < K; ++k) {
                int64_t s = t - K + 1 + k;
                if (s < 0) continue;
                const float *xr = x + (s * Bt + b) * xs, *wk = wT + k * C;
                for (int64_t d = 0; d < C; ++d) ur[d] += wk[d] * xr[d];
            }
            for (int64_t d = 0; d < C; ++d) ur[d] = ur[d] * sigmoid_poly(ur[d]);
        }
}

/* Its backward: dx (L, Bt, C) contiguous, written whole for these rows; dwT (K, C) and
   dbias (C) accumulated (one buffer per thread). */
void amf_conv_bwd(int64_t L, int64_t Bt, int64_t C, int64_t K, int64_t b0, int64_t b1, int64_t xs,
                  const float *restrict x, const float *restrict wT, const float *restrict bias,
                  const float *restrict du, float *restrict dx, float *restrict dwT, float *restrict dbias) {
    float *c = (float *)malloc(sizeof(float) * C);
    for (int64_t b = b0; b < b1; ++b) {
        for (int64_t t = 0; t < L; ++t) memset(dx + (t * Bt + b) * C, 0, sizeof(float) * C);
        for (int64_t t = 0; t < L; ++t) {
            for (int64_t d = 0; d < C; ++d) c[d] = bias ? bias[d] : 0.0f;
            for (int64_t k = 0; k < K; ++k) {
                int64_t s = t - K + 1 + k;
                if (s < 0) continue;
                const float *xr = x + (s * Bt + b) * xs, *wk = wT + k * C;
                for (int64_t d = 0; d < C; ++d) c[d] += wk[d] * xr[d];
            }
            const float *dur = du + (t * Bt + b) * C;
            for (int64_t d = 0; d < C; ++d) {
                float sg = sigmoid_poly(c[d]);
                c[d] = dur[d] * sg * (1.0f + c[d] * (1.0f - sg)); /* dL/d(pre-activation) */
                dbias[d] += c[d];
            }
            for (int64_t k = 0; k < K; ++k) {
                int64_t s = t - K + 1 + k;
                if (s < 0) continue;
                const float *xr = x + (s * Bt + b) * xs, *wk = wT + k * C;
                float *dxr = dx + (s * Bt + b) * C, *dwk = dwT + k * C;
                for (int64_t d = 0; d < C; ++d) {
                    dxr[d] += wk[d] * c[d];
                    dwk[d] += c[d] * xr[d];
                }
            }
        }
    }
    free(c);
}
"""

_FLAGS = ["-O3", "-march=native", "-ffp-contract=fast", "-fPIC", "-shared", "-std=gnu99"]
_LIB: ctypes.CDLL | None = None
_REASON = "not loaded yet"
_TRIED = False
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


def _build(cc: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="amfmedit-kernel-") as tmp:
        src = Path(tmp) / "scan.c"
        src.write_text(_SOURCE)
        out = Path(tmp) / "scan.so"
        proc = subprocess.run([cc, *_FLAGS, str(src), "-o", str(out), "-lm"], capture_output=True, text=True,
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


def load() -> ctypes.CDLL | None:
    """The compiled scan library, building it once if needed; None when it cannot be had."""
    global _LIB, _REASON, _TRIED
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
        key = hashlib.sha256("\0".join([_SOURCE, *_FLAGS, cc, _cpu_key()]).encode()).hexdigest()[:16]
        target = _cache_dir() / f"amfmedit_scan_{key}.so"
        try:
            if not target.is_file():
                _build(cc, target)
            lib = ctypes.CDLL(str(target))
        except Exception as exc:  # noqa: BLE001 - any failure means "use the PyTorch scan"
            _REASON = f"build or load failed ({type(exc).__name__}: {exc})"
            log.info("native CPU scan unavailable: %s; using the PyTorch scan", _REASON)
            return None
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        lib.amf_scan_fwd.argtypes = [i64] * 8 + [ptr] * 10
        lib.amf_scan_fwd.restype = None
        lib.amf_scan_bwd.argtypes = [i64] * 8 + [ptr] * 18
        lib.amf_scan_bwd.restype = None
        lib.amf_conv_fwd.argtypes = [i64] * 7 + [ptr] * 4
        lib.amf_conv_fwd.restype = None
        lib.amf_conv_bwd.argtypes = [i64] * 7 + [ptr] * 7
        lib.amf_conv_bwd.restype = None
        _LIB, _REASON = lib, f"compiled with {cc} ({target})"
        return lib


def available() -> bool:
    return load() is not None


def status() -> str:
    """Why the native scan is or is not in use (after :func:`load`)."""
    load()
    return _REASON


def _reset_for_tests() -> None:
    global _LIB, _REASON, _TRIED
    _LIB, _REASON, _TRIED = None, "not loaded yet", False
