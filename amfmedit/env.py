"""What this process runs on: versions, device, and which Mamba path is active.

Written into every run directory (``environment.json``) and printed by ``amfmedit info``.
"""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version

from amfmedit import __version__
from amfmedit.errors import UserError
from amfmedit.models import native_scan


def choose_device(requested: str | None = None):
    """``--device`` resolved: 'auto' (default) means CUDA when present, else CPU.

    Asking for CUDA on a machine without it is a :class:`UserError`, not a silent fallback.
    """
    import torch

    req = (requested or "auto").lower()
    if req == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if req.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {requested}: CUDA is not available on this machine; use --device cpu or auto")
        return torch.device(req)
    if req == "cpu":
        return torch.device("cpu")
    raise UserError(f"--device {requested!r} is not a device: use auto, cpu, cuda or cuda:N")


def package_version(distribution: str) -> str | None:
    """The installed version of a distribution, read from its metadata (importing captum or
    grad-cam to ask would cost seconds in every command)."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def environment() -> dict:
    """A JSON-able description of the software and hardware in use."""
    import torch

    info = {
        "amfmedit": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": package_version("torchvision"),
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "captum": package_version("captum"),
        "pytorch_grad_cam": package_version("grad-cam"),
        "mamba_ssm": package_version("mamba-ssm"),
        "causal_conv1d": package_version("causal-conv1d"),
    }
    info["mamba_path"], info["mamba_path_reason"] = mamba_path()
    return info


def native_kernels() -> str:
    """Whether the compiled CPU kernels of the Mamba blocks are in use here, and why (built at the
    first call where a compiler is found; their fallback notice, if any, is raised then)."""
    return native_scan.status()


def mamba_path() -> tuple[str, str]:
    """Which selective-scan implementation FT-Mamba would use here, and why."""
    try:
        from amfmedit.models.mamba import kernel_status
    except ImportError as exc:  # models not importable: say so rather than guess
        return "unknown", f"amfmedit.models.mamba not importable: {exc}"
    return kernel_status()
