"""Model efficiency on this machine: FT-Mamba vs FT-Transformer (the target) and Table 3.

    python benchmarks/bench_models.py                    # both parts, full shapes
    python benchmarks/bench_models.py --only tabular --threads 2 --repeats 5
    python benchmarks/bench_models.py --json out.json

Baseline named in the target: FT-Transformer (2 blocks, d 64, 8 heads) forward + backward at
the OL3I shape (batch 128, 423 features + [CLS]); FT-Mamba (2 blocks, d_model 64, d_state 16)
must be no slower, with peak memory within 2x. Both are measured in this run, interleaved
(see amfmedit/bench.py for the method). ``amfmedit bench`` runs the same measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amfmedit import bench  # noqa: E402
from amfmedit.models.mamba import kernel_status  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", choices=["tabular", "fusion"], default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None, help="timed rounds [5 tabular, 100 fusion]")
    p.add_argument("--impls", default=None, help="FT-Mamba scan paths to time, e.g. sequential,chunked [device default]")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    print(f"device {dev}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}, mamba path {kernel_status()}")
    out: dict = {"device": str(dev), "threads": torch.get_num_threads()}

    if args.only in (None, "tabular"):
        impls = args.impls.split(",") if args.impls else None
        rows = bench.tabular_table(dev, repeats=args.repeats or 5, warmup=1, scan_impls=impls)
        base = next(r for r in rows if r.model == "ft_transformer")
        print("\nFT-Mamba vs FT-Transformer, forward + backward, batch 128, 424 tokens")
        print(f"{'model':<16}{'scan':<12}{'median s':>10}{'runs s':>26}{'peak MiB':>10}{'time ratio':>12}{'mem ratio':>11}")
        for r in rows:
            runs = ", ".join(f"{t / 1e3:.2f}" for t in r.times_ms)
            mem_ratio = r.peak_mem_mb / base.peak_mem_mb if r.peak_mem_mb and base.peak_mem_mb else float("nan")
            print(f"{r.model:<16}{r.scan_impl or '-':<12}{r.time_ms / 1e3:>10.2f}{runs:>26}{r.peak_mem_mb or 0:>10.0f}"
                  f"{r.time_ms / base.time_ms:>11.2f}x{mem_ratio:>10.2f}x")
        out["tabular"] = [asdict(r) for r in rows]
        out["tabular_ratio"] = bench.tabular_ratios(rows)

    if args.only in (None, "fusion"):
        frows = bench.fusion_table(dev, repeats=args.repeats or 100, warmup=10)
        print("\nFusion modules at batch 1 (Table 3; MACs = FlopCounterMode FLOPs / 2)")
        print(f"{'module':<17}{'data':<6}{'tokens':>7}{'params M':>10}{'GMac':>9}{'GMac lin':>10}{'latency ms':>12}"
              f"{'paper M/GMac/ms':>20}")
        for r in frows:
            paper = f"{r.paper_params_m}/{r.paper_macs_g if r.paper_macs_g is not None else '-'}/{r.paper_latency_ms}"
            print(f"{r.module:<17}{r.dataset:<6}{r.tabular_tokens:>7}{r.params_m:>10.3f}{r.macs_g:>9.4f}"
                  f"{r.macs_linear_g:>10.4f}{r.latency_ms:>12.3f}{paper:>20}")
        for ds in ("OL3I", "DVM"):
            xa = next(r for r in frows if r.module == "cross_attention" and r.dataset == ds and r.tabular_tokens == 1)
            amf = next(r for r in frows if r.module == "amf" and r.dataset == ds)
            print(f"{ds}: cross-attention / AMF latency = {xa.latency_ms / amf.latency_ms:.1f}x")
        out["fusion"] = [asdict(r) for r in frows]
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} (timings on a busy machine are inflated)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
