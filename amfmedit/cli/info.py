"""``amfmedit info``: versions, device and the active Mamba path."""

from __future__ import annotations

from rich.table import Table

from amfmedit.cli.common import command, console
from amfmedit.env import environment


@command("info")
def info() -> None:
    """Print versions, the compute device, and which Mamba path would run."""
    env = environment()
    table = Table(show_header=False, box=None)
    for key in ("amfmedit", "python", "torch", "torchvision", "cuda", "device", "cpu_threads",
                "captum", "pytorch_grad_cam", "mamba_ssm", "causal_conv1d"):
        table.add_row(key, str(env.get(key)))
    table.add_row("mamba path", f"{env['mamba_path']} ({env['mamba_path_reason']})")
    console.print(table)
