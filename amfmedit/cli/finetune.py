"""``amfmedit finetune``: fusion classifiers (frozen / trainable) and the supervised baselines."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer
from rich.table import Table

from amfmedit.cli.common import DataDir, Device, Force, Quiet, RunName, RunsDir, command, console
from amfmedit.cli.train_common import (
    BatchSize,
    Compile,
    Epochs,
    LossWeights,
    Lr,
    MaskFeatures,
    MaskTopK,
    Patience,
    Residency,
    SamplerWeights,
    Resume,
    floats,
    ints,
    is_main_process,
    progress_bars,
)


@command("finetune")
def finetune(
    fusion: Annotated[List[str], typer.Option("--fusion", help="concat, cross_attention, amf, or none (a supervised baseline with --modality); repeat to run several.")] = ["amf"],  # noqa: B006
    strategy: Annotated[List[str], typer.Option("--strategy", help="frozen or trainable pretrained encoders; repeat to run both.")] = ["trainable"],  # noqa: B006
    modality: Annotated[Optional[str], typer.Option("--modality", help="With --fusion none: image (ResNet alone) or tabular (tabular encoder alone), trained from scratch.")] = None,
    rconf: Annotated[Optional[float], typer.Option("--rconf", help="R_conf for AMF \\[default: from `amfmedit rconf`].")] = None,
    seeds: Annotated[str, typer.Option("--seeds", help="Seeds, e.g. 2022-2026 or 2022,2023.")] = "2022-2026",
    lr: Lr = None,
    lrs: Annotated[str, typer.Option("--lrs", help="Learning rates searched on validation with the first seed when --lr is not given.")] = "0.01,0.001,0.0001",
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="Adam weight decay (the paper: 0; cross-attention searched 1e-1..1e-4).")] = 0.0,
    optimizer: Annotated[str, typer.Option("--optimizer", help="adam (the paper) or adamw (decoupled weight decay).")] = "adam",
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    patience: Patience = 10,
    min_delta: Annotated[float, typer.Option("--min-delta", help="Smallest validation improvement that counts.")] = 2e-4,
    sampler_weights: SamplerWeights = None,
    loss_weights: LossWeights = None,
    lambda_leakage: Annotated[float, typer.Option("--lambda-leakage", help="λ1 (eq. 14).")] = 5.0,
    lambda_density: Annotated[float, typer.Option("--lambda-density", help="λ2 (eq. 14).")] = 5.0,
    d_out: Annotated[int, typer.Option("--d-out", min=2, help="AMF's D_out.")] = 2048,
    augment_rate: Annotated[Optional[float], typer.Option("--augment-rate", help="Image augmentation probability \\[default: 0.95 multimodal, 0.8 image only].")] = None,
    tabular_encoder: Annotated[Optional[str], typer.Option("--tabular-encoder", help="Baseline's tabular encoder \\[default: the run's pretrain encoder].")] = None,
    tabular_dim: Annotated[Optional[int], typer.Option("--tabular-dim", help="Baseline's D_tab \\[default: the encoder's].")] = None,
    image_arch: Annotated[Optional[str], typer.Option("--image-arch", help="Baseline's image encoder \\[default: the run's].")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Supervised baselines only: start a new run on this prepared dataset.")] = None,
    mask_features: MaskFeatures = None,
    mask_top_k: MaskTopK = None,
    run: RunName = None,
    runs_dir: RunsDir = None,
    data_dir: DataDir = None,
    device: Device = "auto",
    compile: Compile = False,
    images_in: Residency = "auto",
    resume: Resume = False,
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Fine-tune on the run's pretrained encoders (or train a baseline), once per seed."""
    from amfmedit.stages.classify import Recipe
    from amfmedit.stages.common import RunOptions
    from amfmedit.stages.finetune import FinetuneConfig, finetune_many, metric_name

    d = Recipe()
    recipe = Recipe(
        epochs=epochs or d.epochs, batch_size=batch_size or d.batch_size, lr=lr, lrs=floats(lrs, "--lrs"),
        weight_decay=weight_decay, optimizer=optimizer, patience=patience, min_delta=min_delta,
        sampler_weights=floats(sampler_weights, "--sampler-weights"), loss_weights=floats(loss_weights, "--loss-weights"),
        lambda_leakage=lambda_leakage, lambda_density=lambda_density, augment_rate=augment_rate,
    )
    configs = [
        FinetuneConfig(fusion=f, strategy=s, modality=modality if f == "none" else None, rconf=rconf, d_out=d_out,
                       seeds=ints(seeds, "--seeds"), recipe=recipe, tabular_encoder=tabular_encoder,
                       tabular_dim=tabular_dim, image_arch=image_arch, mask_features=tuple(mask_features or ()),
                       mask_top_k=mask_top_k)
        for f in dict.fromkeys(fusion) for s in dict.fromkeys(strategy)
        if not (f == "none" and s == "frozen" and len(strategy) > 1)  # baselines are trained, not frozen
    ]
    opts = RunOptions(runs_dir=runs_dir, run=run, data_dir=data_dir, device=device, compile=compile,
                      images_in=images_in, resume=resume, force=force)
    main = is_main_process()
    with progress_bars(enabled=main and not quiet) as bars:
        results = finetune_many(configs, opts, progress=bars, data=data)
    if not main:
        return
    metric = metric_name(results)
    table = Table(title=f"Fine-tuning in run {results[0].run} (best validation {metric})")
    for col in ("stage", "lr", "seeds", f"val {metric}"):
        table.add_column(col)
    for r in results:
        vals = ", ".join(f"{t.best_val:.4f}" for t in r.seeds)
        table.add_row(r.prefix, f"{r.lr:g}", ",".join(str(t.seed) for t in r.seeds), vals)
    console.print(table)
    console.print("next: [bold]amfmedit evaluate[/]")
