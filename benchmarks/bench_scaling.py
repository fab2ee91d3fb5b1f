"""FT-Mamba vs FT-Transformer forward + backward across table widths, on this CPU.

    python benchmarks/bench_scaling.py                                   # the full grid
    python benchmarks/bench_scaling.py --features 13 32 64 --batches 32 --threads 2 --repeats 7
    python benchmarks/bench_scaling.py --memory                          # + peak memory (subprocesses)
    python benchmarks/bench_scaling.py --profile 423 --adam              # op counts, GFLOP/s; fused Adam

Both encoders as ``amfmedit`` builds them (d 64, 2 blocks; FT-Mamba d_state 16), one training
step each (zero_grad, forward, backward) on a random batch, in the same process. The two
models' steps alternate (interleaved rounds) so a busy machine slows both alike; each cell is
the median of ``--repeats`` rounds after one warm-up round. The baseline of every ratio is
FT-Transformer measured in the same rounds. The machine's fp32 GEMM rate (1024^3 and 2048^3
matmul) and the load average are printed with every table: figures taken with a load average
above the number of cores are not reliable.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amfmedit import bench  # noqa: E402
from amfmedit.models.mamba import kernel_status  # noqa: E402


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f}) on {os.cpu_count()} cores"


def gemm_peak(sizes=(1024, 2048), repeats: int = 5) -> dict[int, float]:
    """fp32 GFLOP/s of an n^3 matmul into a preallocated output (best of ``repeats``)."""
    out = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        torch.mm(a, b, out=c)
        best = min(_wall(lambda: torch.mm(a, b, out=c)) for _ in range(repeats))
        out[n] = 2 * n**3 / best / 1e9
    return out


CLOCK = time.perf_counter


def _wall(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _timed(fn) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def scaling(features, batches, repeats: int, memory: bool) -> list[dict]:
    rows = []
    for batch in batches:
        for n in features:
            models = {k: bench.build_tabular(k, n).train() for k in ("ft_mamba", "ft_transformer")}
            x_cont, x_cat = torch.randn(batch, n), torch.zeros(batch, 0, dtype=torch.long)
            steps = {k: bench._train_step(m, x_cont, x_cat, torch.randn(m.d_out)) for k, m in models.items()}
            for step in steps.values():
                step()  # warm-up round
            times = {k: [] for k in steps}
            for _ in range(repeats):
                for k, step in steps.items():
                    times[k].append(_timed(step))
            row = {"batch": batch, "features": n, "load": os.getloadavg()[0]}
            for k in steps:
                row[k] = statistics.median(times[k]) * 1e3
                row[k + "_runs"] = [t * 1e3 for t in times[k]]
                if memory:
                    row[k + "_mem"] = bench.cpu_peak_memory_mb(k, batch, n)
            row["ratio"] = row["ft_mamba"] / row["ft_transformer"]
            rows.append(row)
            mem = (f"{row['ft_mamba_mem']:>9.0f}{row['ft_transformer_mem']:>9.0f}"
                   f"{row['ft_mamba_mem'] / row['ft_transformer_mem']:>8.2f}x") if memory else ""
            print(f"{batch:>6}{n:>9}{row['ft_mamba']:>12.1f}{row['ft_transformer']:>12.1f}{row['ratio']:>9.2f}x"
                  f"{mem}{row['load']:>7.2f}", flush=True)
    return rows


def profile(n_features: int, batch: int) -> None:
    """Op-call counts and achieved GFLOP/s of one FT-Mamba training step (counted matmul FLOPs)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    from torch.utils.flop_counter import FlopCounterMode

    m = bench.build_tabular("ft_mamba", n_features).train()
    step = bench._train_step(m, torch.randn(batch, n_features), torch.zeros(batch, 0, dtype=torch.long),
                             torch.randn(m.d_out))
    step()
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    wall = statistics.median(_wall(step) for _ in range(3))
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.key_averages() if e.key.startswith(("aten::", "_Native", "_Sequential", "_Chunked"))]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    calls = sum(e.count for e in events if e.key.startswith("aten::"))
    print(f"\nFT-Mamba training step, batch {batch} x {n_features} features: {wall * 1e3:.1f} ms; counted matmul work "
          f"{flops / 1e9:.2f} GFLOP -> {flops / wall / 1e9:.1f} GFLOP/s; {calls} aten op calls "
          f"({calls / (batch * (n_features + 1)):.2f} per token); {load()}")
    print(f"{'op':<36}{'calls':>7}{'self ms':>10}{'share':>8}")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]:
        print(f"{e.key[:35]:<36}{e.count:>7}{e.self_cpu_time_total / 1e3:>10.2f}{e.self_cpu_time_total / total:>8.1%}")


def adam(repeats: int = 7) -> None:
    """torch.optim.Adam fused=True vs foreach=True on the CPU, interleaved, for two model sizes."""
    from amfmedit.models import build_tabular_encoder

    sizes = {
        "FT-Mamba 423 features": build_tabular_encoder("ft_mamba", n_cont_features=423, cat_cardinalities=[]),
        "28 M parameters (6 x 2048^2 + 20 x 512^2)": torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(2048, 2048)) for _ in range(6)]
            + [torch.nn.Parameter(torch.randn(512, 512)) for _ in range(20)]),
    }
    print(f"\nAdam step on the CPU (median of {repeats}, interleaved); {load()}")
    for name, module in sizes.items():
        opts = {}
        for kind in ("foreach", "fused"):
            params = [torch.nn.Parameter(p.detach().clone()) for p in module.parameters()]
            for p in params:
                p.grad = torch.randn_like(p)
            opts[kind] = torch.optim.Adam(params, lr=1e-3, **{kind: True})
            opts[kind].step()
        times = {k: [] for k in opts}
        for _ in range(repeats):
            for k, o in opts.items():
                times[k].append(_timed(o.step))
        f, fe = statistics.median(times["fused"]) * 1e3, statistics.median(times["foreach"]) * 1e3
        print(f"  {name}: fused {f:.2f} ms, foreach {fe:.2f} ms (fused / foreach {f / fe:.2f}x)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", type=int, nargs="+", default=[13, 32, 64, 128, 424, 1024, 2048])
    p.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--memory", action="store_true", help="peak memory per step (a subprocess per cell; slow)")
    p.add_argument("--profile", type=int, default=None, metavar="FEATURES", help="profile one FT-Mamba step")
    p.add_argument("--profile-batch", type=int, default=32)
    p.add_argument("--adam", action="store_true", help="time fused vs foreach Adam")
    p.add_argument("--no-table", action="store_true", help="skip the scaling table")
    p.add_argument("--no-mallopt", action="store_true",
                   help="leave glibc's mmap threshold alone (training runs raise it: amfmedit.train.cpu_alloc)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: this process's CPU time (all threads summed); at 1 thread it is less "
                        "disturbed by other processes on a shared machine than wall time")
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if not args.no_mallopt:
        from amfmedit.train.cpu_alloc import tune_cpu_allocator

        print(f"glibc mmap/trim thresholds raised: {tune_cpu_allocator()}")
    print(f"torch {torch.__version__}; mamba path {kernel_status()}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = gemm_peak()
        print(f"\n{threads} thread(s): GEMM " + ", ".join(f"{n}^3 {g:.0f} GFLOP/s" for n, g in peak.items())
              + f"; {load()}")
        if not args.no_table:
            print(f"forward + backward, median {args.clock}-clock ms of {args.repeats} interleaved rounds; "
                  "ratio = FT-Mamba / FT-Transformer")
            head = f"{'batch':>6}{'features':>9}{'FT-Mamba':>12}{'FT-Transf':>12}{'ratio':>10}"
            head += f"{'M MiB':>9}{'T MiB':>9}{'mem':>9}" if args.memory else ""
            print(head + f"{'load':>7}")
            scaling(args.features, args.batches, args.repeats, args.memory)
        if args.profile:
            profile(args.profile, args.profile_batch)
    if args.adam:
        adam()
    print(f"\n{load()} at the end")


if __name__ == "__main__":
    main()
