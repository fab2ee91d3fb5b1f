"""``amfmedit pretrain``: contrastive image-tabular pretraining (§3.4, Appendix A.2)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from amfmedit.cli.common import DataDir, Device, Force, Quiet, RunName, RunsDir, command, console
from amfmedit.cli.train_common import (
    BatchSize,
    Compile,
    Epochs,
    Lr,
    Residency,
    Resume,
    Seed,
    is_main_process,
    progress_bars,
)


@command("pretrain")
def pretrain(
    data: Annotated[Optional[str], typer.Option("--data", help="Prepared dataset name (see `amfmedit prepare`).")] = None,
    tabular_encoder: Annotated[str, typer.Option("--tabular-encoder", help="mlp, resnet, ft_transformer or ft_mamba.")] = "ft_mamba",
    tabular_dim: Annotated[Optional[int], typer.Option("--tabular-dim", help="D_tab, the tabular encoder's width \\[default: 64 FT-*, 256 MLP/ResNet].")] = None,
    ft_mamba_pooling: Annotated[Optional[str], typer.Option("--ft-mamba-pooling", help="FT-Mamba readout: avg (the reference code) or cls (\\[CLS] last, the paper's text) \\[default: avg].")] = None,
    image_arch: Annotated[str, typer.Option("--image-arch", help="resnet50 (the paper) or resnet18 (quick experiments).")] = "resnet50",
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="Weight decay (not on biases, norms, A_log, D).")] = 1e-4,
    optimizer: Annotated[str, typer.Option("--optimizer", help="adam (the paper) or adamw (decoupled weight decay).")] = "adam",
    warmup_epochs: Annotated[int, typer.Option("--warmup-epochs", min=0, help="Linear warm-up epochs before cosine decay.")] = 10,
    temperature: Annotated[float, typer.Option("--temperature", help="ITC temperature τ (eq. 11).")] = 0.1,
    projection_dim: Annotated[int, typer.Option("--projection-dim", min=1, help="Projection head output size.")] = 128,
    augment_rate: Annotated[float, typer.Option("--augment-rate", help="Probability that an image is augmented.")] = 0.95,
    corruption_rate: Annotated[float, typer.Option("--corruption-rate", help="Fraction of tabular features replaced.")] = 0.3,
    probe_every: Annotated[int, typer.Option("--probe-every", min=0, help="Online linear-probe metric every N epochs (0: off).")] = 0,
    seed: Seed = 2022,
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
    """Pretrain ResNet + a tabular encoder with the ITC loss; starts a new run (or --run NAME)."""
    from amfmedit.stages.common import RunOptions
    from amfmedit.stages.pretrain import PretrainConfig
    from amfmedit.stages.pretrain import pretrain as run_pretrain

    defaults = PretrainConfig()
    cfg = PretrainConfig(
        tabular_encoder=tabular_encoder, tabular_dim=tabular_dim, ft_mamba_pooling=ft_mamba_pooling,
        image_arch=image_arch,
        epochs=epochs or defaults.epochs, batch_size=batch_size or defaults.batch_size, lr=lr,
        weight_decay=weight_decay, optimizer=optimizer, warmup_epochs=warmup_epochs, temperature=temperature,
        projection_dim=projection_dim, augment_rate=augment_rate, corruption_rate=corruption_rate,
        probe_every=probe_every, seed=seed,
    )
    opts = RunOptions(runs_dir=runs_dir, run=run, data_dir=data_dir, device=device, compile=compile,
                      images_in=images_in, resume=resume, force=force)
    main = is_main_process()
    with progress_bars(enabled=main and not quiet) as bars:
        res = run_pretrain(data, cfg, opts, progress=bars)
    if main:
        console.print(f"pretrain finished: run [bold]{res.run}[/] ({res.epochs_run} epochs, best val ITC loss "
                      f"{res.best_val_loss:.4f} at epoch {res.best_epoch}) -> {res.stage_dir}")
        console.print("next: [bold]amfmedit rconf[/], then [bold]amfmedit finetune --fusion amf[/]")
