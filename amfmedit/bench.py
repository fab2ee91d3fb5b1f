"""Efficiency figures behind ``amfmedit bench``: Table 3 and FT-Mamba vs FT-Transformer.

What is measured, and how:

- **Fusion modules (Table 3).** "The module" is the fusion module alone, as in the paper: it
  is fed the encoder outputs it consumes -- z_img (1, 2048) and z_tab (1, 64) for AMF, and
  the ResNet-50 last feature map (1, 2048, H/32, W/32) plus the tabular token for
  cross-attention -- and ends in its classifier (2 classes). Parameters are counted exactly.
  MACs = FLOPs / 2 from ``torch.utils.flop_counter.FlopCounterMode`` with attention run by
  the math backend (so attention matmuls are counted on every device); ``macs_linear_g``
  counts the Linear layers only, the convention of module-hook counters such as ptflops,
  which Table 3 appears to use. Latency: batch 1, eval mode, no grad, median of ``repeats``
  calls after ``warmup`` calls (CUDA: synchronised per call).
  Table 3's cross-attention FLOPs (3.67 / 3.17 GMac) are reproduced when the query holds the
  424 OL3I tabular tokens (TIP feeds every tabular token), not one; both rows are reported.
- **Tabular encoders.** FT-Mamba vs FT-Transformer (2 blocks, d 64) forward + backward of a
  random batch at the OL3I shape (batch 128, 423 continuous features + [CLS] = 424 tokens),
  in training mode. Times: the two models' steps interleaved in one process, median of
  ``repeats`` each (interleaving keeps a busy machine from favouring one). Peak memory on
  CUDA: ``torch.cuda.max_memory_allocated`` during one step above what was allocated before
  it. On CPU: each model runs in a fresh Python subprocess that takes a small warm-up step,
  resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), reads its resident set,
  takes one full step and reads the peak resident set (``VmHWM``); the difference is the
  step's peak memory. (tracemalloc does not see torch's allocator.)
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from amfmedit.env import environment
from amfmedit.models import AMFFusion, CrossAttentionFusion, FTMambaEncoder, FTTransformerEncoder, set_scan_impl
from amfmedit.models.mamba import MambaBlock

OL3I_FEATURES = 423
IMAGE_SIZES = {"OL3I": 512, "DVM": 128}
PAPER_TABLE3 = {  # params M, then per dataset (GMac, latency ms on an RTX 4090)
    "cross_attention": {"params_m": 9.49, "OL3I": (3.67, 1.54), "DVM": (3.17, 1.21)},
    "amf": {"params_m": 8.53, "OL3I": (0.0085, 0.12), "DVM": (0.0085, 0.12)},
}


@dataclass
class FusionRow:
    module: str
    dataset: str
    image_size: int
    tabular_tokens: int
    params_m: float
    macs_g: float
    macs_linear_g: float
    latency_ms: float
    paper_params_m: float | None = None
    paper_macs_g: float | None = None
    paper_latency_ms: float | None = None


@dataclass
class TabularRow:
    model: str
    scan_impl: str | None
    params_m: float
    time_ms: float
    times_ms: list[float] = field(default_factory=list)
    peak_mem_mb: float | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, *, repeats: int, warmup: int) -> tuple[float, list[float]]:
    """Median wall time of ``fn()`` in ms over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), times


def count_macs(fn: Callable[[], object]) -> tuple[float, float]:
    """(all MACs, Linear-layer MACs) of ``fn()`` in G: FlopCounterMode FLOPs / 2."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    per_op = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    linear = per_op.get("aten.addmm", 0) + per_op.get("aten.mm", 0)
    return counter.get_total_flops() / 2e9, linear / 2e9


def fusion_table(
    device: torch.device | str = "cpu",
    *,
    image_sizes: dict[str, int] | None = None,
    d_img: int = 2048,
    d_tab: int = 64,
    n_classes: int = 2,
    r_conf: float = 0.95,
    d_out: int = 2048,
    tabular_tokens: int = OL3I_FEATURES + 1,
    repeats: int = 100,
    warmup: int = 10,
    cross_attention_kw: dict | None = None,
) -> list[FusionRow]:
    """Table 3: parameters, MACs and batch-1 latency of the cross-attention and AMF modules.

    ``cross_attention_kw``: extra constructor arguments (e.g. a smaller d_model for smoke runs).
    """

    device = torch.device(device)
    image_sizes = image_sizes or IMAGE_SIZES
    torch.manual_seed(0)
    modules = {
        "cross_attention": CrossAttentionFusion(d_img=d_img, d_tab=d_tab, n_classes=n_classes, **(cross_attention_kw or {})),
        "amf": AMFFusion(d_img=d_img, d_tab=d_tab, n_classes=n_classes, r_conf=r_conf, d_out=d_out),
    }
    rows = []
    for name, module in modules.items():
        module = module.to(device).eval()
        params = sum(p.numel() for p in module.parameters()) / 1e6
        token_counts = [1, tabular_tokens] if name == "cross_attention" else [1]
        for dataset, size in image_sizes.items():
            side = max(1, size // 32)  # ResNet-50's last stage has stride 32
            z_img = torch.randn(1, d_img, device=device)
            fmap = torch.randn(1, d_img, side, side, device=device)
            for tokens in token_counts:
                z_tab = torch.randn(1, d_tab, device=device) if tokens == 1 else torch.randn(1, tokens, d_tab, device=device)

                def call(module=module, z_tab=z_tab, fmap=fmap, z_img=z_img):
                    return module(z_img, z_tab, fmap if module.needs_feature_map else None)

                macs, macs_linear = count_macs(call)
                with torch.no_grad():
                    latency, _ = median_ms(call, device, repeats=repeats, warmup=warmup)
                paper = PAPER_TABLE3[name]
                match_paper = tokens == (tabular_tokens if name == "cross_attention" else 1)
                rows.append(FusionRow(
                    module=name, dataset=dataset, image_size=size, tabular_tokens=tokens,
                    params_m=params, macs_g=macs, macs_linear_g=macs_linear, latency_ms=latency,
                    paper_params_m=paper["params_m"],
                    paper_macs_g=paper[dataset][0] if match_paper and dataset in paper else None,
                    paper_latency_ms=paper[dataset][1] if dataset in paper else None,
                ))
    return rows


# ----------------------------------------------------------------------------------------------
# FT-Mamba vs FT-Transformer
# ----------------------------------------------------------------------------------------------


def build_tabular(model: str, n_features: int, d_state: int = 16, seed: int = 0):

    torch.manual_seed(seed)
    if model == "ft_transformer":
        return FTTransformerEncoder(n_cont_features=n_features, cat_cardinalities=[])
    if model == "ft_mamba":
        return FTMambaEncoder(n_cont_features=n_features, cat_cardinalities=[], d_state=d_state)
    raise ValueError(f"model must be ft_transformer or ft_mamba, however: {model=}")


def _train_step(model, x_cont, x_cat, weight) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        (model(x_cont, x_cat) * weight).sum().backward()

    return step


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _cpu_peak_worker(model: str, batch: int, n_features: int, d_state: int, impl: str | None, threads: int) -> None:
    """Subprocess body: one training step's peak RSS growth, printed as JSON on stdout."""

    torch.set_num_threads(threads)
    m = build_tabular(model, n_features, d_state).train()
    if impl:
        set_scan_impl(m, impl)
    weight = torch.randn(m.d_out)
    # A small warm-up step first: thread pools, allocator arenas and the gradient buffers
    # are set up once per process, not per step, and must not count as the step's memory.
    _train_step(m, torch.randn(2, n_features), torch.zeros(2, 0, dtype=torch.long), weight)()
    x_cont, x_cat = torch.randn(batch, n_features), torch.zeros(batch, 0, dtype=torch.long)
    step = _train_step(m, x_cont, x_cat, weight)
    # The peak-RSS mark covers the whole process life (importing torch included), so it is
    # reset right before the step; without /proc/self/clear_refs fall back to ru_maxrss.
    exact = _reset_peak_rss()
    before = _proc_status_kib("VmRSS")
    step()
    peak = _proc_status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mem_mb": (peak - before) / 1024, "exact": exact}))


def cpu_peak_memory_mb(model: str, batch: int, n_features: int, d_state: int = 16, impl: str | None = None) -> float:
    """Peak resident-memory growth (MiB) of one CPU training step, in a fresh subprocess."""
    args = json.dumps([model, batch, n_features, d_state, impl, torch.get_num_threads()])
    code = f"import json, amfmedit.bench as b; b._cpu_peak_worker(*json.loads({args!r}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker for {model} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["peak_mem_mb"])


def tabular_table(
    device: torch.device | str = "cpu",
    *,
    batch: int = 128,
    n_features: int = OL3I_FEATURES,
    d_state: int = 16,
    repeats: int = 5,
    warmup: int = 1,
    scan_impls: list[str | None] | None = None,
    memory: bool = True,
) -> list[TabularRow]:
    """FT-Transformer and FT-Mamba (per scan implementation) forward + backward time and memory.

    ``scan_impls``: FT-Mamba variants to time; None -> [None] (the default path on this
    device). Steps of all models are interleaved, ``repeats`` rounds after ``warmup`` rounds.
    """

    device = torch.device(device)
    scan_impls = scan_impls or [None]
    x_cont = torch.randn(batch, n_features, device=device)
    x_cat = torch.zeros(batch, 0, dtype=torch.long, device=device)
    models: list[tuple[str, str | None, torch.nn.Module]] = [("ft_transformer", None, build_tabular("ft_transformer", n_features))]
    for impl in scan_impls:
        m = build_tabular("ft_mamba", n_features, d_state)
        set_scan_impl(m, impl)
        models.append(("ft_mamba", impl, m))
    steps, rows = [], []
    for name, impl, m in models:
        m.to(device).train()
        steps.append(_train_step(m, x_cont, x_cat, torch.randn(m.d_out, device=device)))
        rows.append(TabularRow(model=name, scan_impl=impl, params_m=sum(p.numel() for p in m.parameters()) / 1e6, time_ms=0.0))
    for _ in range(warmup):
        for step in steps:
            step()
    _sync(device)
    for _ in range(repeats):
        for row, step in zip(rows, steps):
            t0 = time.perf_counter()
            step()
            _sync(device)
            row.times_ms.append((time.perf_counter() - t0) * 1e3)
    for row, (name, impl, m) in zip(rows, models):
        row.time_ms = statistics.median(row.times_ms)
        if row.scan_impl is None and name == "ft_mamba":

            block = next(b for b in m.modules() if isinstance(b, MambaBlock))
            row.scan_impl = block._choose_path(x_cont)
        if not memory:
            continue
        if device.type == "cuda":
            step = _train_step(m, x_cont, x_cat, torch.randn(m.d_out, device=device))
            step()  # grads allocated, so the measured step is a steady-state one
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            step()
            torch.cuda.synchronize(device)
            row.peak_mem_mb = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        else:
            row.peak_mem_mb = cpu_peak_memory_mb(name, batch, n_features, d_state, impl if name == "ft_mamba" else None)
    return rows


def tabular_ratios(rows: list[TabularRow]) -> dict[str, dict[str, float | None]]:
    """FT-Mamba / FT-Transformer time and memory ratios, per FT-Mamba scan implementation."""
    base = next(r for r in rows if r.model == "ft_transformer")
    out = {}
    for r in rows:
        if r.model != "ft_mamba":
            continue
        out[str(r.scan_impl)] = {
            "time_ratio": r.time_ms / base.time_ms,
            "memory_ratio": (r.peak_mem_mb / base.peak_mem_mb) if r.peak_mem_mb and base.peak_mem_mb else None,
        }
    return out


def run_bench(
    device: torch.device | str = "cpu",
    *,
    fusion: bool = True,
    tabular: bool = True,
    small: bool = False,
    repeats: int | None = None,
    tabular_repeats: int | None = None,
) -> dict:
    """Everything ``amfmedit bench`` reports, as one JSON-able dict.

    ``small``: tiny shapes (a smoke run that proves the machinery works, not a measurement).
    """

    device = torch.device(device)
    result: dict = {"environment": environment(), "device": str(device), "small": small,
                    "threads": torch.get_num_threads(), "load_average_before": list(os.getloadavg()),
                    "method": __doc__.split("What is measured, and how:")[1].strip()}
    if fusion:
        kw = dict(image_sizes={"OL3I": 128, "DVM": 64}, d_img=64, d_tab=16, d_out=64, tabular_tokens=9,
                  repeats=repeats or 3, warmup=1, cross_attention_kw=dict(d_model=32, n_heads=4)) if small else dict(
                  image_sizes=IMAGE_SIZES, repeats=repeats or 100, warmup=10)
        result["fusion"] = [asdict(r) for r in fusion_table(device, **kw)]
        lat = {(r["module"], r["dataset"], r["tabular_tokens"]): r["latency_ms"] for r in result["fusion"]}
        result["fusion_latency_ratio"] = {
            ds: lat[("cross_attention", ds, 1)] / lat[("amf", ds, 1)] for ds in {r["dataset"] for r in result["fusion"]}
        }
    if tabular:
        kw = dict(batch=4, n_features=12, repeats=tabular_repeats or 2, warmup=1) if small else dict(
            repeats=tabular_repeats or 5, warmup=1)
        rows = tabular_table(device, **kw)
        result["tabular"] = [asdict(r) for r in rows]
        result["tabular_shape"] = {"batch": kw.get("batch", 128), "tokens": kw.get("n_features", OL3I_FEATURES) + 1}
        result["tabular_ratio"] = tabular_ratios(rows)
    # Timings on a shared machine are only as good as its idleness: record how busy it was.
    result["load_average_after"] = list(os.getloadavg())
    return result
