"""``amfmedit finetune``: fusion classifiers (frozen / trainable) and the supervised baselines."""


from typing import Annotated, List, Optional

import typer
from rich.table import Table

from amfmedit.cli.common import command, console
from amfmedit.cli.options import derived_option, field_option, run_options
from amfmedit.cli.train_common import (
    LossWeights,
    Lrs,
    MaskFeatures,
    MaskTopK,
    Patience,
    SamplerWeights,
    batch_size_option,
    epochs_option,
    ints,
    is_main_process,
    lr_option,
    progress_bars,
    recipe_from,
)
from amfmedit.errors import UserError
from amfmedit.models import FUSIONS, STRATEGIES, TABULAR_ENCODERS, options_of
from amfmedit.stages.classify import Recipe
from amfmedit.stages.common import RunOptions
from amfmedit.stages.finetune import NO_FUSION, FinetuneConfig, finetune_many, metric_name

F = FinetuneConfig
D_OUTS = ", ".join(f"{k} {options_of(c)['d_out']}" for k, c in FUSIONS.items() if "d_out" in options_of(c))
def _aux_losses() -> dict[str, tuple[str, float]]:
    """Auxiliary-loss name -> (fusion, declared λ), over the fusions registered now."""
    return {name: (k, w) for k, c in FUSIONS.items() for name, w in c.aux_weights.items()}


def _aux_option(name: str, flag: str, symbol: str):
    fusion, weight = _aux_losses()[name]
    return derived_option(float, flag, help=f"{symbol}: weight of {fusion}'s {name} loss in eq. 14.",
                          shown=f"{weight:g}", source=(FUSIONS[fusion], f"aux_weights.{name}"))


def _aux_weights(pairs: list[str] | None, **named: float | None) -> dict[str, float]:
    """``--aux-weight NAME=VALUE`` pairs and the named λ options -> the recipe's overrides."""
    out = {k: v for k, v in named.items() if v is not None}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise UserError(f"--aux-weight {pair!r}: expected NAME=VALUE, e.g. leakage=5") from None
    known = _aux_losses()
    unknown = sorted(set(out) - set(known))
    if unknown:
        raise UserError(f"--aux-weight {unknown[0]}: no registered fusion has an auxiliary loss of that name "
                        f"(they have: {', '.join(known) or 'none'})")
    return out


@command("finetune")
@run_options("run", "runs_dir", "data_dir", "device", "compile", "images_in", "resume", "force", "quiet")
def finetune(
    opts: RunOptions,
    quiet: bool,
    fusion: field_option(F, "fusion", List[str], "--fusion", help=f"{', '.join(FUSIONS)}, or {NO_FUSION} (a supervised baseline with --modality); repeat to run several.") = None,
    strategy: field_option(F, "strategy", List[str], "--strategy", help=f"{' or '.join(STRATEGIES)} pretrained encoders; repeat to run both.") = None,
    modality: Annotated[Optional[str], typer.Option("--modality", help="With --fusion none: image (ResNet alone) or tabular (tabular encoder alone), trained from scratch.")] = None,
    rconf: derived_option(float, "--rconf", help="R_conf for fusions that need it (" + ", ".join(k for k, c in FUSIONS.items() if "r_conf" in c.run_inputs) + ").", shown="from `amfmedit rconf`", source=("run", "rconf")) = None,
    seeds: field_option(F, "seeds", str, "--seeds", help="Seeds, e.g. 2022-2026 or 2022,2023.") = None,
    lr: lr_option("searched over --lrs on validation with the first seed") = None,
    lrs: Lrs = None,
    weight_decay: field_option(Recipe, "weight_decay", float, "--weight-decay", help="Adam weight decay (the paper: 0; cross-attention searched 1e-1..1e-4).") = None,
    optimizer: field_option(Recipe, "optimizer", str, "--optimizer", help="adam (the paper) or adamw (decoupled weight decay).") = None,
    epochs: epochs_option(Recipe) = None,
    batch_size: batch_size_option(Recipe) = None,
    patience: Patience = None,
    min_delta: field_option(Recipe, "min_delta", float, "--min-delta", help="Smallest validation improvement that counts.") = None,
    sampler_weights: SamplerWeights = None,
    loss_weights: LossWeights = None,
    lambda_leakage: _aux_option("leakage", "--lambda-leakage", "λ1") = None,
    lambda_density: _aux_option("density", "--lambda-density", "λ2") = None,
    aux_weight: Annotated[Optional[List[str]], typer.Option("--aux-weight", help="Weight of any fusion's auxiliary loss, NAME=VALUE (eq. 14); repeat for several.")] = None,
    d_out: derived_option(int, "--d-out", min=2, help="D_out of fusions that have it.", shown=D_OUTS, source=(FUSIONS, "d_out")) = None,
    augment_rate: derived_option(float, "--augment-rate", help="Image augmentation probability.", shown="0.95 multimodal, 0.8 image only (the reference)", source=("amfmedit.stages.classify", "augment_for")) = None,
    tabular_encoder: Annotated[Optional[str], typer.Option("--tabular-encoder", help=f"Baseline's tabular encoder ({', '.join(TABULAR_ENCODERS)}) \\[default: the run's pretrain encoder].")] = None,
    tabular_dim: Annotated[Optional[int], typer.Option("--tabular-dim", help="Baseline's D_tab \\[default: the encoder's].")] = None,
    image_arch: Annotated[Optional[str], typer.Option("--image-arch", help="Baseline's image encoder \\[default: the run's].")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Supervised baselines only: start a new run on this prepared dataset.")] = None,
    mask_features: MaskFeatures = None,
    mask_top_k: MaskTopK = None,
) -> None:
    """Fine-tune on the run's pretrained encoders (or train a baseline), once per seed."""
    recipe = recipe_from(lrs=lrs, sampler_weights=sampler_weights, loss_weights=loss_weights, epochs=epochs,
                         batch_size=batch_size, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
                         patience=patience, min_delta=min_delta,
                         aux_weights=_aux_weights(aux_weight, leakage=lambda_leakage, density=lambda_density) or None,
                         augment_rate=augment_rate)
    fusions = list(dict.fromkeys(fusion or [F.fusion]))
    strategies = list(dict.fromkeys(strategy or [F.strategy]))
    configs = [
        FinetuneConfig(fusion=f, strategy=s, modality=modality if f == NO_FUSION else None, rconf=rconf, d_out=d_out,
                       seeds=ints(seeds, "--seeds") or F.seeds, recipe=recipe, tabular_encoder=tabular_encoder,
                       tabular_dim=tabular_dim, image_arch=image_arch, mask_features=tuple(mask_features or ()),
                       mask_top_k=mask_top_k)
        for f in fusions for s in strategies
        if not (f == NO_FUSION and s != F.strategy and len(strategies) > 1)  # baselines are trained, not frozen
    ]
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
    console.print("next: [bold]amfmedit evaluate[/]")
