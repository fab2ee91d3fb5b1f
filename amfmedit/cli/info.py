"""``amfmedit info``: versions, device, the active Mamba path and the compiled CPU kernels' status."""

from __future__ import annotations

from rich.table import Table

from amfmedit.cli.common import command, console
from amfmedit.env import environment, native_kernels


@command("info")
def info() -> None:
    """Print versions, the compute device, which Mamba path would run, and the compiled CPU kernels' status."""
    env = environment()
    table = Table(show_header=False, box=None)
    for key in ("amfmedit", "python", "torch", "torchvision", "cuda", "device", "cpu_threads",
                "captum", "pytorch_grad_cam", "mamba_ssm", "causal_conv1d"):
        table.add_row(key, str(env.get(key)))
    table.add_row("mamba path", f"{env['mamba_path']} ({env['mamba_path_reason']})")
    table.add_row("native CPU kernels", native_kernels())
    console.print(table)
