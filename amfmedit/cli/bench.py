"""``amfmedit bench``: Table 3 (fusion module cost) and FT-Mamba vs FT-Transformer, on this device."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from amfmedit.cli.common import command, console
from amfmedit.cli.options import Device
from amfmedit.env import choose_device
from amfmedit.errors import UserError
from amfmedit.io import write_json
from amfmedit.stages.configs import RunOptions


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@command("bench")
def bench(
    out: Annotated[Path, typer.Option("--out", help="Where to write the JSON results.")] = Path("bench.json"),
    device: Device = None,
    only: Annotated[
        Optional[str], typer.Option("--only", help="Run one part: fusion (Table 3) or tabular (FT-Mamba vs FT-Transformer).")
    ] = None,
    repeats: Annotated[Optional[int], typer.Option("--repeats", min=1, help="Timed calls per figure [100 fusion, 5 tabular].")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads [torch's default].")] = None,
    small: Annotated[bool, typer.Option("--small", help="Tiny shapes: checks the machinery in seconds (figures mean nothing).")] = False,
) -> None:
    """Parameters, MACs and batch-1 latency of the fusion modules (Table 3); FT-Mamba vs FT-Transformer time and memory."""
    import torch

    from amfmedit.bench import run_bench

    if only not in (None, "fusion", "tabular"):
        raise UserError(f"--only {only!r}: choose fusion or tabular")
    if threads:
        torch.set_num_threads(threads)
    dev = choose_device(device or RunOptions().device)
    console.print(f"device {dev}, {torch.get_num_threads()} CPU threads{' (small shapes)' if small else ''}")
    result = run_bench(dev, fusion=only in (None, "fusion"), tabular=only in (None, "tabular"), small=small,
                       repeats=repeats, tabular_repeats=repeats)
    write_json(out, result)

    if "fusion" in result:
        t = Table(title="Fusion modules, batch 1 (Table 3)")
        for col in ("module", "data", "tab tokens", "params M", "GMac", "GMac lin", "ms"):
            t.add_column(col, justify="left" if col in ("module", "data") else "right", no_wrap=True)
        for r in result["fusion"]:
            t.add_row(r["module"].replace("cross_attention", "cross-attn"), f"{r['dataset']} {r['image_size']}",
                      str(r["tabular_tokens"]), f"{r['params_m']:.3f}", f"{r['macs_g']:.4f}", f"{r['macs_linear_g']:.4f}",
                      f"{r['latency_ms']:.3f}")
        console.print(t)
        console.print("paper (RTX 4090): cross-attention 9.49 M, 3.67 / 3.17 GMac, 1.54 / 1.21 ms (OL3I / DVM); "
                      "AMF 8.53 M, 0.0085 GMac, 0.12 ms. GMac lin = Linear layers only (the paper's counting).")
        for ds, ratio in sorted(result["fusion_latency_ratio"].items()):
            console.print(f"{ds}: cross-attention / AMF latency = {ratio:.1f}x (paper: {1.54 / 0.12 if ds == 'OL3I' else 1.21 / 0.12:.1f}x)")
    if "tabular" in result:
        shape = result["tabular_shape"]
        t = Table(title=f"Tabular encoders, forward + backward, batch {shape['batch']}, {shape['tokens']} tokens")
        for col in ("model", "scan", "params M", "median ms", "peak MiB"):
            t.add_column(col, justify="left" if col in ("model", "scan") else "right")
        for r in result["tabular"]:
            t.add_row(r["model"], r["scan_impl"] or "-", f"{r['params_m']:.3f}", f"{r['time_ms']:.1f}", _fmt(r["peak_mem_mb"], ".0f"))
        console.print(t)
        for impl, ratio in result["tabular_ratio"].items():
            mem = ratio["memory_ratio"]
            console.print(f"FT-Mamba ({impl}) / FT-Transformer: time {ratio['time_ratio']:.2f}x"
                          + (f", peak memory {mem:.2f}x" if mem is not None else ""))
    load = result.get("load_average_after")
    if load and load[0] > torch.get_num_threads() + 0.5:
        console.print(f"[yellow]note:[/] load average {load[0]:.1f} on this machine: other processes competed for the CPU")
    console.print(f"wrote {out}")
