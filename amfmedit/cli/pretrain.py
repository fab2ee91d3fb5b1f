"""``amfmedit pretrain``: contrastive image-tabular pretraining (§3.4, Appendix A.2)."""


from typing import Annotated, Optional

import typer

from amfmedit.cli.common import command, console, warn
from amfmedit.cli.options import derived_option, field_option, given, run_options
from amfmedit.cli.train_common import batch_size_option, epochs_option, is_main_process, lr_option, progress_bars
from amfmedit.models.specs import ARCHS, IMAGE_WEIGHTS_HELP, TABULAR_ENCODER_SPECS, settings_of
from amfmedit.stages.configs import READOUT_OPTION, STACKINGS, PretrainConfig, RunOptions
from amfmedit.stages.kinds import PREDICTION_KINDS
from amfmedit.stages.names import PRETRAIN

P = PretrainConfig
ENCODERS = TABULAR_ENCODER_SPECS
WIDTHS = ", ".join(f"{k} {settings_of(c)[c.width_argument]}" for k, c in ENCODERS.items())
STACKING_NAMES = {v: k for k, v in STACKINGS.items()}


def _block_default(argument: str, show=str) -> str:
    return ", ".join(f"{k} {show(settings_of(c)[argument])}" for k, c in ENCODERS.items() if argument in settings_of(c))


def _width(spec) -> int:
    return settings_of(spec)[spec.width_argument]


@command("pretrain")
@run_options("run", "runs_dir", "data_dir", "device", "compile", "images_in", "resume", "force", "quiet", "log",
             configs=(PretrainConfig,))
def pretrain(
    opts: RunOptions,
    quiet: bool,
    data: Annotated[Optional[str], typer.Option("--data", help="Prepared dataset name (see `amfmedit prepare`).")] = None,
    tabular_encoder: field_option(P, "tabular_encoder", str, "--tabular-encoder", help=f"{', '.join(ENCODERS)}.") = None,
    tabular_dim: derived_option(int, "--tabular-dim", help="D_tab, the tabular encoder's width.", shown=WIDTHS, source=((ENCODERS, "", _width),)) = None,
    ft_mamba_pooling: derived_option(str, "--ft-mamba-pooling", help="FT-Mamba readout: avg (the reference code) or cls ([CLS] last, the paper's text).", shown=_block_default(READOUT_OPTION), source=((ENCODERS, f"settings.{READOUT_OPTION}"),)) = None,
    d_state: derived_option(int, "--d-state", help="FT-Mamba's SSM state size per channel (the authors' code: 128).", shown=_block_default("d_state"), source=((ENCODERS, "settings.d_state"),)) = None,
    expand: derived_option(int, "--expand", help="FT-Mamba's inner expansion of d_block.", shown=_block_default("expand"), source=((ENCODERS, "settings.expand"),)) = None,
    stacking: derived_option(str, "--stacking", help="FT-Mamba's blocks: residual (x + Mamba(LayerNorm(x)), as mamba_ssm stacks them) or bare (Mamba(x) after Mamba(x), the authors' code).", shown=_block_default("residual", STACKING_NAMES.get), source=((ENCODERS, "settings.residual", STACKING_NAMES.get),)) = None,
    final_norm: derived_option(str, "--final-norm", help="FT-Mamba's last norm: layernorm (torch's) or mambular ((x - mean) / (unbiased std + eps), the authors' code).", shown=_block_default("final_norm"), source=((ENCODERS, "settings.final_norm"),)) = None,
    image_arch: field_option(P, "image_arch", str, "--image-arch", help=f"{' or '.join(ARCHS)} (resnet50: the paper; smaller ones for quick experiments).") = None,
    image_weights: field_option(P, "image_weights", str, "--image-weights", help=IMAGE_WEIGHTS_HELP[0].upper() + IMAGE_WEIGHTS_HELP[1:] + ".", shown="none") = None,
    epochs: epochs_option(P) = None,
    batch_size: batch_size_option(P) = None,
    lr: lr_option(", ".join(f"{k.pretrain_lr:g} {n}" for n, k in PREDICTION_KINDS.items()) + " (Appendix A.2)",
                  ((PREDICTION_KINDS, "pretrain_lr"),)) = None,
    weight_decay: field_option(P, "weight_decay", float, "--weight-decay", help="Weight decay (see --weight-decay-scope).") = None,
    weight_decay_scope: field_option(P, "weight_decay_scope", str, "--weight-decay-scope", help="What weight decay reaches: selective (not biases, norms, A_log, D) or all (the authors' Adam).") = None,
    optimizer: field_option(P, "optimizer", str, "--optimizer", help="adam (the paper) or adamw (decoupled weight decay).") = None,
    warmup_epochs: field_option(P, "warmup_epochs", int, "--warmup-epochs", min=0, help="Linear warm-up epochs before cosine decay.") = None,
    schedule_unit: field_option(P, "schedule_unit", str, "--schedule-unit", help="The warm-up + cosine schedule advances every step (from one warm-up increment) or every epoch (from 0: the authors' code).") = None,
    temperature: field_option(P, "temperature", float, "--temperature", help="ITC temperature τ (eq. 11).") = None,
    projection_dim: field_option(P, "projection_dim", int, "--projection-dim", min=1, help="Projection head output size.") = None,
    augment_rate: field_option(P, "augment_rate", float, "--augment-rate", help="Probability that an image is augmented.") = None,
    corruption_rate: field_option(P, "corruption_rate", float, "--corruption-rate", help="Fraction of tabular features replaced.") = None,
    missing: field_option(P, "missing", str, "--missing", help="How the tabular encoder reads missing values: token (a learned missing embedding / indicator; reads the mask) or impute (the imputed value, the paper). Fine-tuned fusions and the R_conf probes inherit it; on a pretrained run, the other mode is a second pretraining (pretrain-<mode>/) for comparing the two.") = None,
    corruption: field_option(P, "corruption", str, "--corruption", help="Tabular corruption: swap (another training row's value, the paper) or missing (cells marked missing; --missing token only).") = None,
    probe_every: field_option(P, "probe_every", int, "--probe-every", min=0, help="Online linear-probe metric every N epochs (0: off).") = None,
    seed: field_option(P, "seed", int, "--seed", help="Random seed.") = None,
) -> None:
    """Pretrain ResNet + a tabular encoder with the ITC loss; starts a new run (or --run NAME)."""
    from amfmedit.stages.pretrain import pretrain as run_pretrain

    cfg = given(PretrainConfig(), tabular_encoder=tabular_encoder, tabular_dim=tabular_dim,
                ft_mamba_pooling=ft_mamba_pooling, d_state=d_state, expand=expand, stacking=stacking,
                final_norm=final_norm, image_arch=image_arch, image_weights=image_weights, epochs=epochs, batch_size=batch_size, lr=lr,
                weight_decay=weight_decay, weight_decay_scope=weight_decay_scope, optimizer=optimizer, warmup_epochs=warmup_epochs,
                schedule_unit=schedule_unit, temperature=temperature,
                projection_dim=projection_dim, augment_rate=augment_rate, corruption_rate=corruption_rate,
                missing=missing, corruption=corruption, probe_every=probe_every, seed=seed)
    main = is_main_process()
    with progress_bars(enabled=main and not quiet) as bars:
        res = run_pretrain(data, cfg, opts, progress=bars)
    if main:
        console.print(f"pretrain finished: run [bold]{res.run}[/] ({res.epochs_run} epochs, best val ITC loss "
                      f"{res.best_val_loss:.4f} at epoch {res.best_epoch}; chance {res.chance_loss:.4f}) "
                      f"-> {res.stage_dir}")
        warn(res.warnings)
        second = "" if res.stage_dir.name == PRETRAIN else f" --missing {cfg.missing}"  # pretrain-<missing>/
        console.print(f"next: [bold]amfmedit rconf{second}[/], then [bold]amfmedit finetune --fusion amf{second}[/]")
