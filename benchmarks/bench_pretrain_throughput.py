"""Pretraining throughput: our pipeline against a reference-style loop, in the same run.

What is timed is one pretraining step, augmentation included: ResNet-50 + FT-Mamba
(``ContrastiveModel``), ITC loss, Adam, at 512 x 512 by default.

- ``ours``: uint8 images resident on the device, gathered by index; per-sample random
  augmentation computed as one batch (one affine ``grid_sample`` + jitter) and tabular
  corruption on the device (the very ``ContrastiveTask.train_step`` that ``amfmedit
  pretrain`` runs); bf16 autocast and channels-last on CUDA; optionally ``torch.compile``.
- ``reference``: how the reference code feeds the model: a ``Dataset`` applying torchvision
  transforms per sample on the CPU (flip, rotation, colour jitter, random resized crop, with
  probability 0.95) and Python-level corruption, a ``DataLoader`` with worker processes and
  pinned memory, an fp32 model step.
- ``model-only``: our model step on one fixed, already augmented batch (no input pipeline): the
  ceiling the pipeline is measured against.

Prints samples/s (median over timing windows) per variant and the ratios to the reference.
Self-contained: synthetic in-memory data, nothing to prepare. ``--small`` runs tiny sizes on
the CPU (a check that the script works, not a measurement).

    python benchmarks/bench_pretrain_throughput.py                  # GPU, 512 x 512, batch 128
    python benchmarks/bench_pretrain_throughput.py --compile        # also the compiled variant
    python benchmarks/bench_pretrain_throughput.py --small          # CPU smoke run
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from types import SimpleNamespace

import numpy as np
import torch

from amfmedit.models import ContrastiveModel, ImageEncoder, build_tabular_encoder
from amfmedit.models.losses import itc_loss
from amfmedit.train.augment import preset
from amfmedit.train.corruption import TabularCorruptor
from amfmedit.train.inputs import DeviceData
from amfmedit.train.optim import build_optimizer
from amfmedit.train.runtime import setup_runtime
from amfmedit.train.tasks import ContrastiveTask


def synthetic(n: int, size: int, n_cont: int, seed: int = 0) -> SimpleNamespace:
    """An in-memory stand-in for a prepared dataset (every row in the train split)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    body = ((yy - size / 2) ** 2 / (0.38 * size) ** 2 + (xx - size / 2) ** 2 / (0.45 * size) ** 2) < 1
    images = np.where(body, 90, 0)[None, None].astype(np.uint8).repeat(n, 0)
    images = (images + rng.integers(0, 60, size=images.shape, dtype=np.uint8) * body).astype(np.uint8)
    labels = (rng.random(n) < 0.05).astype(np.int64)
    split = np.array(["train"] * n)
    return SimpleNamespace(
        images=images, x_cont=rng.normal(size=(n, n_cont)).astype(np.float32), x_cat=np.zeros((n, 0), np.int64),
        labels=labels, indices=lambda s: np.flatnonzero(split == s),
    )


def build_model(args, device):
    torch.manual_seed(0)
    image = ImageEncoder(arch=args.image_arch, in_channels=1)
    tab = build_tabular_encoder("ft_mamba", n_cont_features=args.features, cat_cardinalities=[])
    return ContrastiveModel(image, tab, d_proj=128).to(device)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, *, batch: int, warmup: int, windows: int, per_window: int, device) -> list[float]:
    """Samples/s of each timing window after ``warmup`` steps."""
    for _ in range(warmup):
        step()
    _sync(device)
    rates = []
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(per_window):
            step()
        _sync(device)
        rates.append(batch * per_window / (time.perf_counter() - t0))
    return rates


def ours(args, rt, data, *, compile: bool):
    model = build_model(args, rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train = data.rows("train")
    idx = torch.as_tensor(train, device=rt.device)
    task = ContrastiveTask(
        model=model, loss=itc_loss, data=data, augment=preset("pretrain", 1),
        corruptor=TabularCorruptor(x_cont=data.x_cont.index_select(0, idx), x_cat=data.x_cat.index_select(0, idx)),
        channels_last=rt.channels_last, spec={},
    )
    opt = build_optimizer(model, lr=3e-4, weight_decay=1e-4)
    fwd = torch.compile(model) if compile else model
    gen = torch.Generator(device=rt.device).manual_seed(0)
    order = np.random.default_rng(0).permutation(len(train))
    state = {"i": 0}

    def step():
        s = state["i"] % (len(order) // args.batch_size)
        state["i"] += 1
        with rt.autocast():
            loss, _ = task.train_step(fwd, order[s * args.batch_size:(s + 1) * args.batch_size], gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def model_only(args, rt, data):
    """The same model step on one fixed, already augmented batch (no input pipeline)."""
    from amfmedit.train.augment import augment_batch

    model = build_model(args, rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, lr=3e-4, weight_decay=1e-4)
    batch = data.batch(data.rows("train")[: args.batch_size])
    gen = torch.Generator(device=rt.device).manual_seed(0)
    image = augment_batch(batch.image, preset("pretrain", 1), gen)
    if rt.channels_last:
        image = image.contiguous(memory_format=torch.channels_last)

    def step():
        with rt.autocast():
            loss = itc_loss(*model(image, batch.x_cont, batch.x_cat))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


class ReferenceDataset(torch.utils.data.Dataset):
    """Per-sample CPU augmentation as in the reference (torchvision transforms, p = 0.95)."""

    def __init__(self, raw, size: int, rate: float = 0.95, corruption: float = 0.3) -> None:
        from torchvision import transforms

        self.images = raw.images
        self.tab = raw.x_cont.tolist()
        self.marginals = raw.x_cont.T.tolist()
        self.rate, self.corruption = rate, corruption
        self.transform = transforms.Compose([
            transforms.RandomHorizontalFlip(),
            transforms.RandomRotation(10),
            transforms.ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5),
            transforms.RandomResizedCrop(size=size, scale=(0.2, 1), antialias=True),
        ])

    def __len__(self) -> int:
        return len(self.tab)

    def __getitem__(self, i: int):
        im = torch.from_numpy(self.images[i]).float() / 255.0
        if random.random() < self.rate:
            im = self.transform(im)
        row = list(self.tab[i])
        for j in random.sample(range(len(row)), int(len(row) * self.corruption)):
            row[j] = random.choice(self.marginals[j])
        return im, torch.tensor(row, dtype=torch.float32)


def reference(args, device, raw):
    model = build_model(args, device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(
        ReferenceDataset(raw, args.image_size), batch_size=args.batch_size, shuffle=True, drop_last=True,
        num_workers=args.workers, pin_memory=device.type == "cuda", persistent_workers=args.workers > 0,
    )
    it = {"it": iter(loader)}
    empty = torch.zeros(args.batch_size, 0, dtype=torch.long, device=device)

    def step():
        try:
            im, tab = next(it["it"])
        except StopIteration:
            it["it"] = iter(loader)
            im, tab = next(it["it"])
        im, tab = im.to(device, non_blocking=True), tab.to(device, non_blocking=True)
        loss = itc_loss(*model(im, tab, empty))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="tiny CPU-sized run (checks the script, not a measurement)")
    p.add_argument("--device", default="auto")
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--features", type=int, default=423)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--samples", type=int, default=2048, help="rows of the synthetic dataset")
    p.add_argument("--image-arch", default="resnet50")
    p.add_argument("--workers", type=int, default=16, help="DataLoader workers of the reference loop")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--windows", type=int, default=5)
    p.add_argument("--per-window", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time our pipeline under torch.compile")
    p.add_argument("--skip-reference", action="store_true")
    args = p.parse_args()
    if args.small:
        args.image_size, args.features, args.batch_size, args.samples = 32, 20, 16, 128
        args.workers, args.warmup, args.windows, args.per_window = 2, 1, 2, 1
        args.device = "cpu" if args.device == "auto" else args.device

    from amfmedit.env import environment

    rt = setup_runtime(args.device, compile=args.compile)
    env = environment()
    raw = synthetic(args.samples, args.image_size, args.features)
    data = DeviceData(raw, device=rt.device, residency="device" if rt.device.type == "cuda" else "host")
    print(f"device {env['device']} | torch {env['torch']} | mamba path {env['mamba_path']} | "
          f"{args.image_arch} + FT-Mamba, {args.image_size}x{args.image_size}, {args.features} features, "
          f"batch {args.batch_size}, bf16 {rt.bf16}, channels-last {rt.channels_last}")

    kw = dict(batch=args.batch_size, warmup=args.warmup, windows=args.windows, per_window=args.per_window,
              device=rt.device)
    results: dict[str, list[float]] = {}

    def measure(name: str, step, **extra) -> None:
        # Printed at once: a time limit that stops a later variant (compiling) keeps the earlier figures.
        results[name] = timed(step, **{**kw, **extra})
        print(f"{name}: {statistics.median(results[name]):.1f} samples/s (median of {len(results[name])} windows)",
              flush=True)

    measure("model-only (ours, eager)", model_only(args, rt, data))
    measure("ours, eager", ours(args, rt, data, compile=False))
    if not args.skip_reference:
        measure("reference (fp32, per-sample CPU transforms)", reference(args, rt.device, raw))
    if args.compile:  # last: its compile time on the device is unknown
        measure("ours, torch.compile", ours(args, rt, data, compile=True), warmup=kw["warmup"] + 3)

    ref = statistics.median(results.get("reference (fp32, per-sample CPU transforms)", [float("nan")]))
    print(f"{'variant':48s} {'samples/s (median)':>20s} {'min':>9s} {'max':>9s} {'x reference':>12s}")
    for name, rates in results.items():
        med = statistics.median(rates)
        print(f"{name:48s} {med:20.1f} {min(rates):9.1f} {max(rates):9.1f} {med / ref:12.2f}")
    print("goal on an H100/H200 at 512x512: >= 900 samples/s eager bf16, >= 1300 with --compile")


if __name__ == "__main__":
    main()
