"""``amfmedit finetune``: fusion classifiers (frozen / trainable) and the supervised baselines."""

import math
from typing import Annotated, List, Optional

import typer
from rich.table import Table

from amfmedit.cli.common import command, console
from amfmedit.cli.options import derived_option, field_option, run_options
from amfmedit.cli.train_common import (
    FocalGamma,
    LossName,
    LossWeights,
    Lrs,
    MaskFeatures,
    MaskTopK,
    Patience,
    SamplerWeights,
    ValEvery,
    batch_size_option,
    epochs_option,
    ints,
    is_main_process,
    lr_option,
    progress_bars,
    recipe_from,
)
from amfmedit.errors import UserError
from amfmedit.models.specs import FUSION_SPECS, STRATEGIES, TABULAR_ENCODER_SPECS, settings_of
from amfmedit.stages.configs import AUGMENT_RATE_IMAGE_ONLY, AUGMENT_RATE_MULTIMODAL, FinetuneConfig, Recipe, RunOptions
from amfmedit.stages.names import AUTO, NO_FUSION
from amfmedit.stages.availability import MODALITY_DROPOUT

F = FinetuneConfig
D_OUTS = ", ".join(f"{k} {settings_of(c)['d_out']}" for k, c in FUSION_SPECS.items() if "d_out" in settings_of(c))
NORMALISERS_SHOWN = ", ".join(f"{k} {settings_of(c)['normaliser']}" for k, c in FUSION_SPECS.items()
                              if "normaliser" in settings_of(c))


def number_list(text: str | None, option: str, *, words: tuple[str, ...] = ()) -> list:
    """``"0.5,0.8"``, a range ``"0.5:1.5:0.25"`` (both ends included) or a mix -> numbers; ``words``
    (e.g. ``auto``) pass through as they are. A bad item is a one-line error."""
    if text is None:
        return []
    out: list = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if part in words:
            out.append(part)
            continue
        try:
            if ":" in part:
                lo, hi, step = (float(x) for x in part.split(":"))
                if not step > 0 or hi < lo:
                    raise ValueError
                n = int(math.floor((hi - lo) / step + 1e-9))
                out.extend(round(lo + i * step, 6) for i in range(n + 1))
            else:
                out.append(float(part))
        except ValueError:
            extra = f" or {'/'.join(words)}" if words else ""
            raise UserError(f"{option} {part!r}: expected numbers separated by commas, a range LOW:HIGH:STEP "
                            f"(e.g. 0.5:1.5:0.25){extra}") from None
    return list(dict.fromkeys(out))


def _aux_losses(fusions: dict) -> dict[str, tuple[str, float]]:
    """Auxiliary-loss name -> (fusion, declared λ), over ``fusions`` (specs, or the classes registered now)."""
    return {name: (k, w) for k, c in fusions.items() for name, w in c.aux_weights.items()}


def _aux_option(name: str, flag: str, symbol: str):
    fusion, weight = _aux_losses(FUSION_SPECS)[name]
    return derived_option(float, flag, help=f"{symbol}: weight of {fusion}'s {name} loss in eq. 14.",
                          shown=f"{weight:g}", source=((FUSION_SPECS[fusion], f"aux_weights.{name}"),))


def _aux_weights(pairs: list[str] | None, **named: float | None) -> dict[str, float]:
    """``--aux-weight NAME=VALUE`` pairs and the named λ options -> the recipe's overrides."""
    from amfmedit.models import FUSIONS

    out = {k: v for k, v in named.items() if v is not None}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise UserError(f"--aux-weight {pair!r}: expected NAME=VALUE, e.g. leakage=5") from None
    known = _aux_losses(FUSIONS)
    unknown = sorted(set(out) - set(known))
    if unknown:
        raise UserError(f"--aux-weight {unknown[0]}: no registered fusion has an auxiliary loss of that name "
                        f"(they have: {', '.join(known) or 'none'})")
    return out


@command("finetune")
@run_options("run", "runs_dir", "data_dir", "device", "compile", "images_in", "resume", "force", "quiet", "log",
             configs=(FinetuneConfig, Recipe))
def finetune(
    opts: RunOptions,
    quiet: bool,
    fusion: field_option(F, "fusion", List[str], "--fusion", help=f"{', '.join(FUSION_SPECS)}, or {NO_FUSION} (a supervised baseline with --modality); repeat to run several.") = None,
    strategy: field_option(F, "strategy", List[str], "--strategy", help=f"{' or '.join(STRATEGIES)} pretrained encoders; repeat to run both.") = None,
    modality: Annotated[Optional[str], typer.Option("--modality", help="With --fusion none: image (ResNet alone) or tabular (tabular encoder alone), trained from scratch.")] = None,
    rconf: derived_option(str, "--rconf", help="R_conf for fusions that need it (" + ", ".join(k for k, c in FUSION_SPECS.items() if "r_conf" in c.run_inputs) + f"): a value; a list 0.5,0.8,1.2 or range 0.5:1.5:0.25 (a sweep, Table 5: one stage each); or {AUTO} (chosen on validation around the measured R_conf).", shown="from `amfmedit rconf`", source=()) = None,
    rconf_multipliers: field_option(F, "rconf_multipliers", str, "--rconf-multipliers", help=f"--rconf {AUTO}: candidates = measured R_conf x these.") = None,
    train_fraction: field_option(F, "train_fraction", str, "--train-fraction", help="Train on this stratified fraction of the training rows (nested, fixed per seed); a list 0.01,0.1,0.5,1 runs a learning curve.") = None,
    ablate_losses: Annotated[bool, typer.Option("--ablate-losses", metavar="", help="Table 6: also train every combination of the fusion's auxiliary losses switched off (weight 0).")] = False,
    seeds: field_option(F, "seeds", str, "--seeds", help="Seeds, e.g. 2022-2026 or 2022,2023.") = None,
    lr: lr_option("searched over --lrs on validation with the first seed") = None,
    lrs: Lrs = None,
    weight_decay: field_option(Recipe, "weight_decay", float, "--weight-decay", help="Adam weight decay (the paper: 0; cross-attention searched 1e-1..1e-4).") = None,
    weight_decay_scope: field_option(Recipe, "weight_decay_scope", str, "--weight-decay-scope", help="What weight decay reaches: selective (not biases, norms, A_log, D) or all (the authors' Adam).") = None,
    optimizer: field_option(Recipe, "optimizer", str, "--optimizer", help="adam (the paper) or adamw (decoupled weight decay).") = None,
    epochs: epochs_option(Recipe) = None,
    batch_size: batch_size_option(Recipe) = None,
    patience: Patience = None,
    val_every: ValEvery = None,
    min_delta: field_option(Recipe, "min_delta", float, "--min-delta", help="Smallest validation improvement that counts.") = None,
    sampler_weights: SamplerWeights = None,
    loss_weights: LossWeights = None,
    loss: LossName = None,
    focal_gamma: FocalGamma = None,
    lambda_leakage: _aux_option("leakage", "--lambda-leakage", "λ1") = None,
    lambda_density: _aux_option("density", "--lambda-density", "λ2") = None,
    aux_weight: Annotated[Optional[List[str]], typer.Option("--aux-weight", help="Weight of any fusion's auxiliary loss, NAME=VALUE (eq. 14); repeat for several.")] = None,
    amf_normaliser: derived_option(str, "--amf-normaliser", help="Eq. 9/10 of fusions that have them: paper (each l1 norm over the length of what it sums) or authors (L_img and L_tab swapped, as the authors' code runs).", shown=NORMALISERS_SHOWN, source=((FUSION_SPECS, "settings.normaliser"),)) = None,
    d_out: derived_option(int, "--d-out", min=2, help="D_out of fusions that have it.", shown=D_OUTS, source=((FUSION_SPECS, "settings.d_out"),)) = None,
    augment_rate: derived_option(float, "--augment-rate", help="Image augmentation probability.", shown=f"{AUGMENT_RATE_MULTIMODAL:g} multimodal, {AUGMENT_RATE_IMAGE_ONLY:g} image only (the reference)", source=(("amfmedit.stages.configs", "AUGMENT_RATE_MULTIMODAL"), ("amfmedit.stages.configs", "AUGMENT_RATE_IMAGE_ONLY"))) = None,
    tabular_encoder: Annotated[Optional[str], typer.Option("--tabular-encoder", help=f"Baseline's tabular encoder ({', '.join(TABULAR_ENCODER_SPECS)}); a list mlp,resnet trains one baseline each (Table 1) [default: the run's pretrain encoder].")] = None,
    tabular_dim: Annotated[Optional[int], typer.Option("--tabular-dim", help="Baseline's D_tab [default: the encoder's].")] = None,
    image_arch: Annotated[Optional[str], typer.Option("--image-arch", help="Baseline's image encoder [default: the run's].")] = None,
    d_state: field_option(F, "d_state", int, "--d-state", min=1, help="Baseline's FT-Mamba state size (encoders that have it).", shown="the run's pretraining, else the encoder's") = None,
    stacking: field_option(F, "stacking", str, "--stacking", help="Baseline's FT-Mamba blocks: residual or bare (the authors' code).", shown="the run's pretraining, else the encoder's") = None,
    final_norm: field_option(F, "final_norm", str, "--final-norm", help="Baseline's FT-Mamba last norm: layernorm or mambular (the authors' code).", shown="the run's pretraining, else the encoder's") = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Supervised baselines only: start a new run on this prepared dataset.")] = None,
    mask_features: MaskFeatures = None,
    mask_top_k: MaskTopK = None,
    missing: field_option(F, "missing", str, "--missing", help="How the tabular encoder reads missing values (token or impute); another mode than the run's gets -<mode> in its stage name, and fusion models then need its encoders (pretrain --run RUN --missing MODE).", shown="the run's (pretrain --missing)") = None,
    modality_dropout: field_option(F, "modality_dropout", float, "--modality-dropout", help="Fusion models: probability that a complete training row loses its image or its table (ModDrop).", shown=f"{MODALITY_DROPOUT:g} when training rows lack a modality, else 0") = None,
) -> None:
    """Fine-tune on the run's pretrained encoders (or train a baseline), once per seed."""
    from amfmedit.models import FUSIONS
    from amfmedit.stages.finetune import experiment_configs, finetune_many, metric_name

    recipe = recipe_from(lrs=lrs, sampler_weights=sampler_weights, loss_weights=loss_weights, loss=loss,
                         focal_gamma=focal_gamma, val_every=val_every, epochs=epochs,
                         batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         weight_decay_scope=weight_decay_scope, optimizer=optimizer,
                         patience=patience, min_delta=min_delta,
                         aux_weights=_aux_weights(aux_weight, leakage=lambda_leakage, density=lambda_density) or None,
                         augment_rate=augment_rate)
    fusions = list(dict.fromkeys(fusion or [F.fusion]))
    strategies = list(dict.fromkeys(strategy or [F.strategy]))
    rconfs = number_list(rconf, "--rconf", words=(AUTO,))
    encoders = [e for e in (tabular_encoder or "").replace(" ", "").split(",") if e]
    multipliers = number_list(rconf_multipliers, "--rconf-multipliers")
    fractions = number_list(train_fraction, "--train-fraction")
    bases = [
        FinetuneConfig(fusion=f, strategy=s, modality=modality if f == NO_FUSION else None,
                       rconf=rconfs[0] if len(rconfs) == 1 else None, d_out=d_out, amf_normaliser=amf_normaliser,
                       seeds=ints(seeds, "--seeds") or F.seeds, recipe=recipe,
                       tabular_encoder=encoders[0] if len(encoders) == 1 else None,
                       tabular_dim=tabular_dim, image_arch=image_arch, d_state=d_state, stacking=stacking,
                       final_norm=final_norm, mask_features=tuple(mask_features or ()),
                       mask_top_k=mask_top_k, missing=missing,
                       modality_dropout=modality_dropout if f != NO_FUSION else None,
                       **({"rconf_multipliers": tuple(multipliers)} if multipliers else {}))
        for f in fusions for s in strategies
        if not (f == NO_FUSION and s != F.strategy and len(strategies) > 1)  # baselines are trained, not frozen
    ]
    for b in bases:  # unknown fusions, a missing --modality, ... before the experiment checks below
        b.validate()
    if len(rconfs) > 1 and not any(c.fusion != NO_FUSION and "r_conf" in FUSIONS[c.fusion].run_inputs for c in bases):
        raise UserError(f"--rconf {rconf}: a sweep needs a fusion that uses R_conf "
                        f"(--fusion {' or '.join(k for k, c in FUSIONS.items() if 'r_conf' in c.run_inputs)})")
    if len(encoders) > 1 and not any(c.modality == "tabular" for c in bases):
        raise UserError(f"--tabular-encoder {tabular_encoder}: several encoders are for the supervised tabular "
                        "baseline; add --fusion none --modality tabular")
    if ablate_losses and not any(c.fusion != NO_FUSION and FUSIONS[c.fusion].aux_weights for c in bases):
        raise UserError("--ablate-losses: none of the chosen fusions has auxiliary losses "
                        f"(fusions with them: {', '.join(k for k, c in FUSIONS.items() if c.aux_weights)})")
    configs = [c for b in bases for c in experiment_configs(
        b, rconfs=rconfs if len(rconfs) > 1 else (), fractions=fractions, encoders=encoders if len(encoders) > 1 else (),
        ablate=ablate_losses)]
    main = is_main_process()
    with progress_bars(enabled=main and not quiet) as bars:
        results = finetune_many(configs, opts, progress=bars, data=data)
    if not main:
        return
    metric = metric_name(results)
    table = Table(title=f"Fine-tuning in run {results[0].run} (best validation {metric})")
    for col in ("stage", "lr", "seeds", f"val {metric}"):
        table.add_column(col, overflow="fold")
    for r in results:
        vals = ", ".join(f"{t.best_val:.4f}" for t in r.seeds)
        table.add_row(r.prefix, f"{r.lr:g}", ",".join(str(t.seed) for t in r.seeds), vals)
    console.print(table)
    for r in results:
        if r.search:
            a = r.search
            tried = ", ".join(f"{c['r_conf']:g}: {c['val']:.4f}" for c in a["candidates"])
            console.print(f"{r.prefix}: R_conf {a['chosen']:g} chosen on validation (measured {a['measured']:.4g}; "
                          f"val {metric} {tried})", highlight=False)
    console.print("next: [bold]amfmedit evaluate[/]")
