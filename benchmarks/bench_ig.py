"""Integrated Gradients on FT-Mamba at OL3I size: wall time per sample and the extrapolated total.

Target of issue 5: IG over 5,000 samples x 423 features with 50 steps in <= 5 minutes on a
2-core CPU. The model is the paper's FT-Mamba (d_block 64, 2 blocks, d_state 16, default readout;
421 continuous + 2 categorical features) with random weights (timing does not depend on them),
attributed exactly as ``amfmedit explain --method ig`` does (captum, Gauss-Legendre steps,
interpolation steps of several samples batched, parameters frozen so the backward computes
input gradients only).

Measured on a few samples and extrapolated linearly (the work is the same for every sample).
Baseline, measured in the same run: captum used one sample at a time (internal batch = the
steps of one sample) with the parameters still requiring gradients, i.e. the straightforward
call. Prints the medians over ``--repeats`` and the ratio.

    .venv/bin/python benchmarks/bench_ig.py [--samples 16] [--steps 50] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def build(n_features: int, n_cat: int, d_block: int):
    from amfmedit.explain.targets import TabularScore
    from amfmedit.models import UnimodalClassifier, build_tabular_encoder

    torch.manual_seed(0)
    enc = build_tabular_encoder("ft_mamba", n_cont_features=n_features - n_cat, cat_cardinalities=[3] * n_cat,
                                d_block=d_block)
    model = UnimodalClassifier(enc, n_classes=2, modality="tabular").eval()
    return TabularScore(model, modality="tabular", output="prob").eval()


def data(n: int, n_features: int, n_cat: int):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, n_features - n_cat, generator=gen), torch.randint(0, 3, (n, n_cat), generator=gen)


def ours(scorer, x_cont, x_cat, baseline, steps: int, batch_size: int) -> float:
    from amfmedit.explain.ig import integrated_gradients
    from amfmedit.explain.targets import frozen_parameters

    t0 = time.perf_counter()
    with frozen_parameters(scorer.model):
        integrated_gradients(scorer, x_cont=x_cont, x_cat=x_cat, baseline=baseline,
                             targets=torch.ones(len(x_cont), dtype=torch.long), steps=steps, batch_size=batch_size)
    return time.perf_counter() - t0


def naive(scorer, x_cont, x_cat, baseline, steps: int) -> float:
    """captum one sample at a time, weights still requiring gradients."""
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(scorer)
    b_cont, b_cat = baseline
    t0 = time.perf_counter()
    for i in range(len(x_cont)):
        ec = scorer.encoder.embed_categorical(x_cat[i : i + 1]).detach()
        ig.attribute((x_cont[i : i + 1], ec), baselines=(b_cont[None], b_cat[None]), target=1, n_steps=steps,
                     internal_batch_size=steps, return_convergence_delta=True)
    return time.perf_counter() - t0


def flops_per_sample_step(scorer, x_cont, x_cat, baseline) -> float:
    """Counted matmul/conv FLOPs of one forward + input-gradient backward (elementwise scan ops excluded)."""
    from torch.utils.flop_counter import FlopCounterMode

    from amfmedit.explain.targets import frozen_parameters

    n = min(8, len(x_cont))
    xc = x_cont[:n].clone().requires_grad_(True)
    ec = scorer.encoder.embed_categorical(x_cat[:n]).detach().requires_grad_(True)
    with frozen_parameters(scorer.model), FlopCounterMode(display=False) as counter:
        out = scorer(xc, ec)[:, 1].sum()
        out.backward()  # parameters are frozen: gradients reach the inputs only
    return counter.get_total_flops() / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=16, help="samples measured (ours)")
    p.add_argument("--baseline-samples", type=int, default=4, help="samples measured (baseline)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--features", type=int, default=423)
    p.add_argument("--categorical", type=int, default=2)
    p.add_argument("--d-block", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=256, help="sample-steps per pass (explain's default)")
    p.add_argument("--target-samples", type=int, nargs="+", default=[5000, 500],
                   help="sample counts to extrapolate to (the issue's 5,000; a capped run)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    from amfmedit.explain.ig import tabular_baseline

    scorer = build(args.features, args.categorical, args.d_block)
    x_cont, x_cat = data(max(args.samples, args.baseline_samples, 64), args.features, args.categorical)
    baseline = tabular_baseline(scorer.encoder, x_cont, x_cat)
    print(f"FT-Mamba d_block={args.d_block}, 2 blocks, {args.features} features "
          f"({args.categorical} categorical), {args.steps} steps; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    flops = flops_per_sample_step(scorer, x_cont, x_cat, baseline)
    print(f"counted matmul/conv work per sample-step (forward + input-gradient backward): {flops / 1e6:.1f} MFLOP")

    ours(scorer, x_cont[:2], x_cat[:2], baseline, args.steps, args.batch_size)  # warm-up
    t_ours = [ours(scorer, x_cont[: args.samples], x_cat[: args.samples], baseline, args.steps, args.batch_size)
              for _ in range(args.repeats)]
    t_naive = [naive(scorer, x_cont[: args.baseline_samples], x_cat[: args.baseline_samples], baseline, args.steps)
               for _ in range(args.repeats)]
    per_ours = statistics.median(t_ours) / args.samples
    per_naive = statistics.median(t_naive) / args.baseline_samples
    rate = args.steps / per_ours
    print(f"ours  (batched steps of {max(1, args.batch_size // args.steps)} samples, frozen weights): "
          f"median {per_ours:.3f} s/sample over {args.samples} samples "
          f"(runs: {', '.join(f'{t:.1f}' for t in t_ours)} s); {rate:.0f} sample-steps/s, "
          f"{rate * flops / 1e9:.1f} GFLOP/s counted")
    print(f"baseline (captum one sample per call, weights requiring grad): median {per_naive:.3f} s/sample over "
          f"{args.baseline_samples} samples (runs: {', '.join(f'{t:.1f}' for t in t_naive)} s)")
    print(f"ratio baseline / ours: {per_naive / per_ours:.2f}x")
    for n in args.target_samples:
        total = per_ours * n
        print(f"extrapolated: {n} samples x {args.steps} steps = {total:.0f} s ({total / 60:.1f} min); "
              f"5-minute target {'met' if total <= 300 else 'NOT met'}")


if __name__ == "__main__":
    main()
