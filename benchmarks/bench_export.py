"""Rows per second of an exported classifier: PyTorch eager against ONNX Runtime, side by side.

    python benchmarks/bench_export.py                          # the demo's AMF + FT-Mamba shape
    python benchmarks/bench_export.py --fusion concat --tabular-encoder ft_transformer
    python benchmarks/bench_export.py --fusion none            # FT-Mamba alone (the scan's share)
    python benchmarks/bench_export.py --features 424 --image-arch resnet50 --image-size 224 --batches 1,16
    python benchmarks/bench_export.py --model EXPORT_DIR       # a folder written by `amfmedit export`

Without ``--model`` the classifier is built at the demo's shape (``make demo``: ResNet-18 on
1 x 32 x 32 CT slices, FT-Mamba of width 64 and d_state 16 on 32 features, 30 continuous and 2
categorical, reading the missing mask as ``--missing token`` does, AMF with D_out 2048, 2 classes;
a tenth of the values marked missing, every row with an image) with random weights (speed does not depend on
them) and exported once per scan form (``traceable-sequential``, ``traceable-chunked``).

Each variant runs in a process of its own (PyTorch's OpenMP threads and ONNX Runtime's pool
both spin-wait after a call; in one process each slows the other down by up to 50x on two
cores), one at a time: each round times every variant once at every batch size, in turn
(interleaved, so a busy machine slows them alike), and the figures are medians over rounds.
PyTorch runs the model as ``predict`` does (``train.tasks.infer``: eager, float32, the default
scan: the compiled CPU kernel when a compiler is there); ONNX Runtime runs the CPU provider with as many intra-op
threads as PyTorch has. Prints rows per second, the ratio to PyTorch (> 1: the exported model
is faster) and the largest probability difference between the two.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amfmedit.io import torch_load, torch_save  # noqa: E402
from amfmedit.models import (  # noqa: E402
    FUSIONS, ImageTabularClassifier, UnimodalClassifier, build_fusion, build_image_encoder, build_tabular_encoder,
    from_checkpoint, to_checkpoint,
)
from amfmedit.models.export import ExportedClassifier, export_onnx  # noqa: E402
from amfmedit.models.scan import TRACEABLE_IMPLS  # noqa: E402
from amfmedit.stages.exported import OnnxPredictor, TorchPredictor  # noqa: E402
from amfmedit.stages.kinds import get_kind  # noqa: E402
from amfmedit.train.inputs import Batch  # noqa: E402

BASE = "pytorch eager"


def demo_model(args) -> torch.nn.Module:
    """A classifier of the chosen shape with random weights."""
    torch.manual_seed(0)
    n_cat = min(2, args.features - 1)
    width = {} if args.tabular_encoder == "mlp" else {"d_block": 64}
    tab = build_tabular_encoder(args.tabular_encoder, n_cont_features=args.features - n_cat,
                                cat_cardinalities=[3] * n_cat, missing="token", **width)  # the default --missing
    if args.fusion == "none":
        return UnimodalClassifier(tab, n_classes=2, modality="tabular").eval()
    img = build_image_encoder(args.image_arch, in_channels=1)
    run_inputs = {"r_conf": 1.0} if "r_conf" in FUSIONS[args.fusion].run_inputs else {}
    fusion = build_fusion(args.fusion, d_img=img.d_out, d_tab=tab.d_out, n_classes=2, **run_inputs)
    return ImageTabularClassifier(img, tab, fusion).eval()


def inputs_for(specs: dict, batch: int, seed: int = 0) -> dict:
    """Random arrays for the export's inputs (``{name: shape without the batch}``), the same for every seed."""
    rng = np.random.default_rng(seed)
    make = {"image": lambda s: rng.integers(0, 256, s, dtype=np.uint8),
            "x_cont": lambda s: rng.standard_normal(s).astype(np.float32),
            "x_cat": lambda s: rng.integers(0, 3, s).astype(np.int64),
            "missing": lambda s: rng.random(s) < 0.1,  # a tenth of the values missing
            "image_present": lambda s: np.ones(s, bool), "table_present": lambda s: np.ones(s, bool)}
    return {k: make[k]((batch, *shape)) for k, shape in specs.items()}


def as_batch(arrays: dict) -> Batch:
    """The arrays as the one batch ``predict`` would hand a runner (CPU tensors, no labels)."""
    t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    n = len(next(iter(arrays.values())))
    return Batch(rows=np.arange(n), image=t.get("image"), x_cont=t.get("x_cont"), x_cat=t.get("x_cat"), label=None,
                 missing=t["missing"], image_present=t["image_present"], table_present=t["table_present"])


def rows_per_second(runner, batch: Batch) -> float:
    n = len(batch)
    reps, t0 = 0, time.perf_counter()
    while True:  # at least 0.3 s of calls, so a batch-1 call (~1 ms) is timed many times over
        runner.predictions([batch])
        reps += 1
        elapsed = time.perf_counter() - t0
        if elapsed > 0.3 and reps >= 3:
            return reps * n / elapsed


def _worker(conn, kind: str, path: str, specs: dict, batches: list[int], threads: int) -> None:
    """One variant in its own process: answers each batch size with (rows per second, probabilities)."""
    torch.set_num_threads(threads)
    binary = get_kind("binary")
    runner = TorchPredictor(from_checkpoint(torch_load(path)), binary) if kind == "torch" else \
        OnnxPredictor(path, binary, threads=threads)
    data = {b: as_batch(inputs_for(specs, b)) for b in batches}
    for b in batches:
        runner.predictions([data[b]])  # warm-up: first calls choose kernels and allocate
    conn.send(getattr(runner, "version", ""))
    while (b := conn.recv()) is not None:
        conn.send((rows_per_second(runner, data[b]), runner.predictions([data[b]])))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="an export folder (model.pt + model.onnx) instead of the demo shape")
    p.add_argument("--fusion", default="amf", help="concat, cross_attention, amf, or none (tabular baseline)")
    p.add_argument("--tabular-encoder", default="ft_mamba")
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--image-arch", default="resnet18")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batches", default="1,64")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="PyTorch and ONNX Runtime threads [default: PyTorch's]")
    args = p.parse_args(argv)
    threads = args.threads or torch.get_num_threads()
    batches = [int(b) for b in args.batches.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        if args.model is not None:
            manifest = json.loads((args.model / "export.json").read_text())
            specs = {s["name"]: tuple(s["shape"][1:]) for s in manifest["inputs"]}
            ort_name = f"onnxruntime ({manifest['model']['scan'] or 'no scan'})"
            variants = {BASE: ("torch", str(args.model / "model.pt")), ort_name: ("onnx", str(args.model / "model.onnx"))}
            shape = f"{manifest['title']} exported to {args.model}"
        else:
            model = demo_model(args)
            torch_save(to_checkpoint(model), Path(tmp) / "model.pt")
            variants = {BASE: ("torch", str(Path(tmp) / "model.pt"))}
            specs = None
            for scan in TRACEABLE_IMPLS:
                cfg = model.tabular_encoder.config if hasattr(model, "tabular_encoder") else model.encoder.config
                n_cat = len(cfg["cat_cardinalities"])
                example = {"image": (1, args.image_size, args.image_size), "x_cont": (cfg["n_cont_features"],),
                           "x_cat": (n_cat,), "missing": (cfg["n_cont_features"] + n_cat,), "image_present": (),
                           "table_present": ()}
                specs = {k: example[k] for k in ExportedClassifier(model).input_names}
                t0 = time.perf_counter()
                info = export_onnx(model, inputs_for(specs, 2), Path(tmp) / f"{scan}.onnx", scan=scan)
                print(f"exported ({scan}) in {time.perf_counter() - t0:.1f} s, opset {info['opset']}")
                name = f"onnxruntime {scan}" if info["scan"] else "onnxruntime"
                variants[name] = ("onnx", str(Path(tmp) / f"{scan}.onnx"))
                if not info["scan"]:
                    break  # no Mamba block: one graph
            shape = (f"{args.fusion} + {args.tabular_encoder}, {args.features} features"
                     + (f", {args.image_arch} {args.image_size} px" if "image" in model.inputs else ""))
        ctx = mp.get_context("spawn")
        workers, versions = {}, {}
        for name, (kind, path) in variants.items():
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(theirs, kind, path, specs, batches, threads), daemon=True)
            proc.start()
            workers[name] = (proc, mine)
            versions[name] = mine.recv()
        times = {(k, b): [] for k in variants for b in batches}
        probs = {}
        for _ in range(args.rounds):
            for b in batches:
                for name, (_, conn) in workers.items():
                    conn.send(b)
                    rate, probs[(name, b)] = conn.recv()
                    times[(name, b)].append(rate)
                    time.sleep(0.2)  # the pool that just ran stops spinning before the next one starts
        for proc, conn in workers.values():
            conn.send(None)
            proc.join()

    ort_version = next(v for k, v in versions.items() if k != BASE)
    print(f"{shape}; {threads} threads; torch {torch.__version__}, onnxruntime {ort_version}; "
          f"median of {args.rounds} interleaved rounds, each variant in its own process")
    print(f"{'variant':<36}" + "".join(f"{f'batch {b} rows/s':>18}{'ratio':>8}" for b in batches))
    for name in variants:
        cells = ""
        for b in batches:
            v, base = statistics.median(times[(name, b)]), statistics.median(times[(BASE, b)])
            cells += f"{v:>18.1f}{v / base:>8.2f}"
        print(f"{name:<36}{cells}")
    for name in variants:
        if name != BASE:
            delta = max(float(np.abs(probs[(name, b)] - probs[(BASE, b)]).max()) for b in batches)
            print(f"max |delta probability| {name} vs {BASE}: {delta:.2e}")


if __name__ == "__main__":
    main()
