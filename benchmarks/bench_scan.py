"""Selective-scan implementations at the FT-Mamba block shape: forward + backward, medians, ratios.

    python benchmarks/bench_scan.py                      # CPU: our pure-PyTorch scans + the compiled one
    python benchmarks/bench_scan.py --length 33 --batch 128 --threads 1   # a 32-feature table
    python benchmarks/bench_scan.py --device cuda        # + mamba-ssm's fused selective_scan_fn
    python benchmarks/bench_scan.py --naive              # + the naive autograd loop (minutes on CPU)

Shape: one block of FT-Mamba on an OL3I batch -- batch 128, 424 tokens, d_inner 128 (d_model
64, expand 2), d_state 16. Inputs and output gradient are random; the timed call is
selective_scan(u, delta, A, B, C, D, z, delta_bias, softplus) forward + backward.
The naive baseline is what tabular-Mamba code without kernels does: precompute
exp(delta*A) and delta*B*u as (B, D, L, N) tensors, slice them in a Python loop, let
autograd record it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from amfmedit.models import native_scan  # noqa: E402
from amfmedit.models.mamba import kernel_status, kernels_available  # noqa: E402
from amfmedit.models.scan import selective_scan, selective_scan_time_major  # noqa: E402


def naive_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True):
    dt = F.softplus(delta + delta_bias[:, None]) if delta_softplus else delta + delta_bias[:, None]
    dA = torch.exp(torch.einsum("bdl,dn->bdln", dt, A))
    dBu = torch.einsum("bdl,bnl,bdl->bdln", dt, B, u)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        h = dA[:, :, t] * h + dBu[:, :, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    return (torch.stack(ys, dim=2) + u * D[:, None]) * F.silu(z)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--length", type=int, default=424)
    p.add_argument("--d-inner", type=int, default=128)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--naive", action="store_true", help="also time the naive autograd loop")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    b, d, n, L = args.batch, args.d_inner, args.d_state, args.length
    ins = [torch.randn(b, d, L, device=dev), torch.randn(b, d, L, device=dev) * 0.5,
           -torch.arange(1, n + 1, device=dev, dtype=torch.float32).repeat(d, 1),
           torch.randn(b, n, L, device=dev), torch.randn(b, n, L, device=dev), torch.ones(d, device=dev),
           torch.randn(b, d, L, device=dev), torch.full((d,), -3.0, device=dev)]
    grad = torch.randn(b, d, L, device=dev)
    # the same inputs time-major, (L, B, .): the layout the Mamba block hands the scan
    tm = lambda t: t.permute(2, 0, 1).contiguous()  # noqa: E731
    ins_tm = [tm(ins[0]), tm(ins[1]), ins[2], tm(ins[3]), tm(ins[4]), ins[5], tm(ins[6]), ins[7]]
    grad_tm = tm(grad)

    variants = {"sequential": lambda *a, **k: selective_scan(*a, **k, impl="sequential"),
                "chunked": lambda *a, **k: selective_scan(*a, **k, impl="chunked")}
    if dev.type == "cpu" and native_scan.available():
        variants["native"] = lambda *a, **k: selective_scan(*a, **k, impl="native")
        # the compiled kernels without selective_scan's (B, D, L) <-> (L, B, D) copies
        variants["native-tm"] = lambda *a, **k: selective_scan_time_major(*a, **k, impl="native")
    if dev.type == "cuda" and kernels_available():
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        variants = {"fused": selective_scan_fn, **variants}
    if args.naive:
        variants["naive"] = naive_scan

    def step(fn):
        time_major = fn is variants.get("native-tm")
        xs = [t.detach().requires_grad_() for t in (ins_tm if time_major else ins)]
        y = fn(*xs[:6], z=xs[6], delta_bias=xs[7], delta_softplus=True)
        y.backward(grad_tm if time_major else grad)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    print(f"device {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"shape batch {b} x d_inner {d} x length {L} x d_state {n}; mamba path here: {kernel_status()}")
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.warmup):
        for fn in variants.values():
            step(fn)
    sync()
    for _ in range(args.repeats):  # interleaved, so a busy machine does not favour one variant
        for name, fn in variants.items():
            t0 = time.perf_counter()
            step(fn)
            sync()
            times[name].append((time.perf_counter() - t0) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = "fused" if "fused" in med else "sequential"
    print(f"{'scan':<12}{'median ms':>12}{'min ms':>10}{'vs ' + base:>14}")
    for name, m in med.items():
        print(f"{name:<12}{m:>12.2f}{min(times[name]):>10.2f}{m / med[base]:>13.2f}x")


if __name__ == "__main__":
    main()
