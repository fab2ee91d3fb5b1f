"""The Mamba block (Gu & Dao 2023), parameter-compatible with ``mamba_ssm.Mamba``.

Same parameter names, shapes and initialisation as ``mamba_ssm.modules.mamba_simple.Mamba``
(``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``, ``D``, ``out_proj``), so one
checkpoint loads on machines with and without mamba-ssm. On CUDA tensors, with mamba-ssm
importable, the block calls its fused kernels (``mamba_inner_fn`` when causal-conv1d is also
importable, as ``Mamba`` does; otherwise ``selective_scan_fn``); everywhere else it runs the
pure-PyTorch scan of :mod:`amfmedit.models.scan`. :func:`kernel_status` says which and why.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from amfmedit.models import native_scan
from amfmedit.models.scan import (
    SCAN_IMPLS,
    TRACEABLE_IMPLS,
    default_scan_impl,
    mamba_inner_native,
    selective_scan_time_major,
)

log = logging.getLogger(__name__)

#: The fused selective-scan kernel is compiled for d_state up to this value.
KERNEL_MAX_D_STATE = 256

#: every path a block can be forced onto (``MambaBlock.impl``, :func:`set_scan_impl`)
IMPLS = ("fused", *SCAN_IMPLS, *TRACEABLE_IMPLS)

_KERNELS: dict[str, Any] | None = None  # filled once by _load_kernels()
_LOGGED_PATHS: set[str] = set()


def _load_kernels() -> dict[str, Any]:
    """Import mamba-ssm's fused ops once. Never raises: a failure is recorded as the reason.

    ``import mamba_ssm.<anything>`` runs ``mamba_ssm/__init__.py``, which imports triton,
    transformers and huggingface_hub without guards; any exception there (not only
    ImportError: a CUDA/ABI mismatch raises OSError or RuntimeError) means "no kernels".
    """
    global _KERNELS
    if _KERNELS is not None:
        return _KERNELS
    found: dict[str, Any] = {"selective_scan_fn": None, "mamba_inner_fn": None, "causal_conv1d_fn": None}
    if os.environ.get("AMFMEDIT_MAMBA_KERNELS", "1").strip().lower() in ("0", "false", "no", "off"):
        found["reason"] = "disabled by AMFMEDIT_MAMBA_KERNELS=0"
        _KERNELS = found
        return found
    try:
        from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn, selective_scan_fn

        found["selective_scan_fn"], found["mamba_inner_fn"] = selective_scan_fn, mamba_inner_fn
        import mamba_ssm

        found["version"] = getattr(mamba_ssm, "__version__", "unknown")
    except Exception as exc:  # noqa: BLE001 - see docstring
        found["reason"] = f"mamba_ssm not importable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    else:
        try:
            from causal_conv1d import causal_conv1d_fn

            found["causal_conv1d_fn"] = causal_conv1d_fn
        except Exception as exc:  # noqa: BLE001
            found["conv_reason"] = f"causal_conv1d not importable ({type(exc).__name__})"
    _KERNELS = found
    return found


def kernels_available() -> bool:
    """True when mamba-ssm's fused selective scan can be imported (it still needs CUDA tensors)."""
    return _load_kernels()["selective_scan_fn"] is not None


def kernel_status() -> tuple[str, str]:
    """(path, reason): which selective scan FT-Mamba runs on this machine's default device.

    path is ``"fused"`` (mamba-ssm kernels) or ``"pytorch-<impl>"`` (our scan, impl
    ``sequential`` or ``chunked``). ``amfmedit info`` and ``environment.json`` report it.
    """
    k = _load_kernels()
    cuda = torch.cuda.is_available()
    if k["selective_scan_fn"] is not None and cuda:
        conv = "causal_conv1d fused" if k["causal_conv1d_fn"] is not None else k.get("conv_reason", "")
        return "fused", f"mamba_ssm {k.get('version')} kernels on CUDA tensors ({conv})"
    impl = default_scan_impl("cuda" if cuda else "cpu")
    native = ""
    if not cuda:
        native = f"; native CPU scan: {native_scan.status()}"
    if k["selective_scan_fn"] is None:
        return f"pytorch-{impl}", k["reason"] + native
    return f"pytorch-{impl}", f"mamba_ssm {k.get('version')} is importable but CUDA is not available" + native


def _log_path_once(path: str, detail: str) -> None:
    if path not in _LOGGED_PATHS:
        _LOGGED_PATHS.add(path)
        log.info("Mamba selective scan: %s (%s)", path, detail)


class MambaBlock(nn.Module):
    """Mamba mixer (Gu & Dao 2023, Fig. 3): in_proj -> causal conv -> selective SSM -> gate -> out_proj.

    Input and output (B, L, d_model). Parameters and initialisation follow
    ``mamba_ssm.Mamba`` exactly; ``A_log`` and ``D`` carry ``_no_weight_decay = True`` so an
    optimizer can exclude them from weight decay.

    ``impl`` (attribute, not part of the checkpoint): ``None`` = fused kernels on CUDA when
    available, else the pure scan's default for the device (on a CPU the compiled ``"native"``
    scan when a C compiler is there); ``"fused"``, ``"sequential"``, ``"chunked"`` or ``"native"`` force a path (used by benchmarks to time the variants);
    ``"traceable-sequential"`` / ``"traceable-chunked"`` run the scan as plain tensor operations,
    forward only, for ``torch.export`` and ONNX.
    """

    kind = "mamba_block"

    def __init__(
        self,
        *,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_kernels: bool = True,
    ) -> None:
        if d_model <= 0:
            raise ValueError(f"d_model must be positive, however: {d_model=}")
        if d_state <= 0:
            raise ValueError(f"d_state must be positive, however: {d_state=}")
        if use_kernels and d_state > KERNEL_MAX_D_STATE:
            raise ValueError(
                f"d_state must be at most {KERNEL_MAX_D_STATE} (the fused kernel's limit) when "
                f"use_kernels=True, however: {d_state=}; pass use_kernels=False for the pure-PyTorch scan"
            )
        if d_conv <= 0 or expand <= 0:
            raise ValueError(f"d_conv and expand must be positive, however: {d_conv=}, {expand=}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, however: {dt_min=}, {dt_max=}")
        if dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init must be 'random' or 'constant', however: {dt_init=}")
        if dt_rank != "auto" and (not isinstance(dt_rank, int) or dt_rank <= 0):
            raise ValueError(f"dt_rank must be 'auto' or a positive int, however: {dt_rank=}")
        super().__init__()
        self.config = dict(
            d_model=d_model, d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank,
            dt_min=dt_min, dt_max=dt_max, dt_init=dt_init, dt_scale=dt_scale,
            dt_init_floor=dt_init_floor, conv_bias=conv_bias, bias=bias, use_kernels=use_kernels,
        )
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.use_kernels = use_kernels
        self.impl: str | None = None

        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
            padding=d_conv - 1, bias=conv_bias,
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)

        # dt_proj.weight keeps the variance of dt at initialisation.
        dt_init_std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        # dt bias such that softplus(bias) is log-uniform in [dt_min, dt_max] (floored):
        # the bias is the inverse softplus of the sampled dt.
        dt = torch.exp(
            torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True

        # S4D-real initialisation A = -(1..N) per channel, stored as its log, kept in fp32.
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner))  # the skip connection, fp32
        self.D._no_weight_decay = True

        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    # ------------------------------------------------------------------------------------
    def _choose_path(self, hidden: Tensor) -> str:
        impl = self.impl
        if impl is not None and impl not in IMPLS:
            raise ValueError(f"impl must be None or one of {IMPLS}, however: {impl=}")
        fused_ok = hidden.is_cuda and self.use_kernels and kernels_available()
        if impl == "fused":
            if not fused_ok:
                raise RuntimeError(f"impl='fused' needs CUDA tensors and mamba_ssm: {kernel_status()[1]}")
            return "fused"
        if impl is None:
            return "fused" if fused_ok else default_scan_impl(hidden.device)
        return impl

    def forward(self, hidden: Tensor, *, time_major: bool = False, pool: str | None = None) -> Tensor:
        """hidden: (B, L, d_model) -> (B, L, d_model); with ``time_major`` (L, B, d_model) both ways.

        ``pool="mean"`` or ``"last"`` returns the output pooled over the sequence instead,
        (B, d_model): its mean over time or its last step. On the pure path the pooling comes
        before ``out_proj``, which is linear, so the value is the same while ``out_proj`` (and
        its backward) runs on B rows instead of B x L.
        """
        if pool not in (None, "mean", "last"):
            raise ValueError(f"pool must be None, 'mean' or 'last', however: {pool=}")
        path = self._choose_path(hidden)
        self._log_path(path, hidden)
        if path == "fused":
            out = self._forward_fused(hidden.transpose(0, 1) if time_major else hidden)
            if pool is not None:
                return out[:, -1] if pool == "last" else out.mean(dim=1)
            return out.transpose(0, 1) if time_major else out
        out = self._forward_pure(hidden if time_major else hidden.transpose(0, 1), path, pool)
        return out if time_major or pool is not None else out.transpose(0, 1)

    def _log_path(self, path: str, hidden: Tensor) -> None:
        if path == "fused":
            _log_path_once("fused", kernel_status()[1])
            return
        k = _load_kernels()
        why = (
            f"impl={self.impl!r}" if self.impl is not None
            else "use_kernels=False" if not self.use_kernels
            else k.get("reason", "") if k["selective_scan_fn"] is None
            else "CPU tensors"
        )
        _log_path_once(f"pytorch-{path}", f"{hidden.device.type}; {why}")

    def _forward_fused(self, hidden: Tensor) -> Tensor:
        """mamba_ssm.Mamba.forward's own computation (B, L, d) -> (B, L, d), on its kernels."""
        k = _load_kernels()
        seqlen = hidden.shape[1]
        A = -torch.exp(self.A_log.float())
        xz = self.in_proj(hidden).transpose(1, 2)  # (B, 2*d_inner, L)
        if k["causal_conv1d_fn"] is not None:
            return k["mamba_inner_fn"](
                xz.contiguous(), self.conv1d.weight, self.conv1d.bias, self.x_proj.weight,
                self.dt_proj.weight, self.out_proj.weight, self.out_proj.bias, A, None, None,
                self.D.float(), delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
            )
        x, z = xz.chunk(2, dim=1)
        x = F.silu(self.conv1d(x)[..., :seqlen])
        x_dbl = self.x_proj(x.transpose(1, 2))
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight).transpose(1, 2)
        y = k["selective_scan_fn"](
            x.contiguous(), dt.contiguous(), A, B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(),
            self.D.float(), z=z.contiguous(), delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
        )
        return self.out_proj(y.transpose(1, 2))

    def _causal_conv(self, x: Tensor) -> Tensor:
        """Depthwise causal convolution in time-major layout: (L, B, d_inner) -> same.

        Equal to ``conv1d(x, padding=d_conv-1)[..., :L]``: out_t = bias + sum_k w_k x_{t-K+1+k}.
        """
        L, K = x.shape[0], self.d_conv
        w = self.conv1d.weight[:, 0, :]  # (d_inner, K)
        xp = F.pad(x, (0, 0, 0, 0, K - 1, 0))
        out = xp[K - 1 :] * w[:, K - 1]
        if self.conv1d.bias is not None:
            out = out + self.conv1d.bias
        for k in range(K - 1):
            out = torch.addcmul(out, xp[k : k + L], w[:, k])
        return out

    def _forward_pure(self, hidden: Tensor, impl: str, pool: str | None = None) -> Tensor:
        """The same computation with our scan, time-major throughout: (L, B, d) -> (L, B, d), or
        (B, d) pooled over time before ``out_proj`` when ``pool`` is given."""
        A = -torch.exp(self.A_log.float())  # (d_inner, d_state)
        xz = self.in_proj(hidden)
        if impl == "native" and xz.dtype == torch.float32 and xz.device.type == "cpu":
            # conv, x_proj, dt_proj, softplus, scan and epilogue in one compiled Function
            y = mamba_inner_native(xz, self.conv1d.weight[:, 0, :], self.conv1d.bias, self.x_proj.weight,
                                   self.dt_proj.weight, self.dt_proj.bias, A, self.D)
        else:
            x, z = xz.chunk(2, dim=-1)  # (L, B, d_inner) each
            x = F.silu(self._causal_conv(x))
            dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
            dt = F.linear(dt, self.dt_proj.weight)  # the bias is added inside the scan (fp32)
            y = selective_scan_time_major(
                x, dt, A, B, C, self.D, z=z, delta_bias=self.dt_proj.bias, delta_softplus=True, impl=impl
            )
        if pool is not None:
            y = y[-1] if pool == "last" else y.mean(dim=0)
        return self.out_proj(y)


def set_scan_impl(module: nn.Module, impl: str | None) -> int:
    """Force the path of every :class:`MambaBlock` inside ``module``; returns how many."""
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"impl must be None or one of {IMPLS}, however: {impl=}")
    n = 0
    for m in module.modules():
        if isinstance(m, MambaBlock):
            m.impl = impl
            n += 1
    return n
