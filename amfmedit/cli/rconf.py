"""``amfmedit rconf``: the modality confidence ratio from frozen unimodal probes (Appendix A.4)."""


import warnings

from rich.table import Table

from amfmedit.cli.common import command, console, warn
from amfmedit.cli.finetune import number_list
from amfmedit.cli.options import field_option, given, run_options
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
    is_main_process,
    lr_option,
    progress_bars,
    recipe_from,
)
from amfmedit.errors import UserError
from amfmedit.stages.configs import RconfConfig, Recipe, RunOptions

R = RconfConfig


@command("rconf")
@run_options("run", "runs_dir", "data_dir", "device", "compile", "images_in", "resume", "force", "quiet", "log",
             configs=(RconfConfig, Recipe))
def rconf(
    opts: RunOptions,
    quiet: bool,
    split: field_option(R, "split", str, "--split", help="Split on which both probes are measured: val or test (the paper's choice).") = None,
    lr: lr_option("searched over --lrs on validation") = None,
    lrs: Lrs = None,
    epochs: epochs_option(Recipe) = None,
    batch_size: batch_size_option(Recipe) = None,
    patience: Patience = None,
    val_every: ValEvery = None,
    sampler_weights: SamplerWeights = None,
    loss_weights: LossWeights = None,
    loss: LossName = None,
    focal_gamma: FocalGamma = None,
    d_out: field_option(R, "d_out", int, "--d-out", min=2, help="AMF's D_out for the reported L_img / L_tab.") = None,
    seed: field_option(R, "seed", int, "--seed", help="Random seed of both probes.") = None,
    mask_features: MaskFeatures = None,
    mask_top_k: MaskTopK = None,
    missing: field_option(R, "missing", str, "--missing", help="Probe the encoders pretrained with this --missing mode: the run's own, or its second pretraining (pretrain --run RUN --missing MODE; writes rconf-<mode>/).", shown="the run's") = None,
    train_fraction: field_option(R, "train_fraction", str, "--train-fraction", help="Train the probes on this stratified fraction of the training rows (seed --seed); a list runs one rconf-frac<f> stage each.") = None,
) -> None:
    """Train image-only and tabular-only probes on the frozen encoders; R_conf = metric_img / metric_tab."""
    from amfmedit.stages.rconf import ChanceProbeWarning, TestSplitWarning
    from amfmedit.stages.rconf import rconf as run_rconf

    recipe = recipe_from(lrs=lrs, sampler_weights=sampler_weights, loss_weights=loss_weights, loss=loss,
                         focal_gamma=focal_gamma, val_every=val_every, epochs=epochs,
                         batch_size=batch_size, lr=lr, patience=patience)
    fractions = number_list(train_fraction, "--train-fraction")
    if any(not 0 < f <= 1 for f in fractions):
        raise UserError(f"--train-fraction {train_fraction}: fractions of the training rows lie in (0, 1]")
    base = given(RconfConfig(recipe=recipe), split=split, seed=seed, d_out=d_out, missing=missing,
                 mask_features=tuple(mask_features) if mask_features else None, mask_top_k=mask_top_k)
    main = is_main_process()
    for fraction in fractions or [base.train_fraction]:
        cfg = given(base, train_fraction=fraction)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TestSplitWarning)
            warnings.simplefilter("always", ChanceProbeWarning)
            with progress_bars(enabled=main and not quiet) as bars:
                res = run_rconf(cfg, opts, progress=bars)
        if not main:
            continue
        for w in caught:
            if issubclass(w.category, (TestSplitWarning, ChanceProbeWarning)):
                warn([w.message])
        _print(res)


def _print(res) -> None:
    rec = res.record
    table = Table(title=f"R_conf of run {res.run} ({rec['metric'].upper()} on the {rec['split']} split"
                        + (f", {rec['train_fraction']:g} of the training labels" if rec["train_fraction"] < 1 else "") + ")")
    for col in ("probe", rec["metric"], "95% CI", "chance", "lr", "best epoch"):
        table.add_column(col)
    for m in ("image", "tabular"):
        iv = rec[m]["interval"]
        ci = f"{iv['low']:.4f}-{iv['high']:.4f} ({iv['method']})" if iv["low"] is not None else "-"
        chance = f"{iv['chance']:.3g}" + ("" if iv["informative"] else " [yellow](not beaten)[/]") if iv["chance"] is not None else "-"
        table.add_row(m, f"{rec[m]['metric']:.4f}", ci, chance, f"{rec[m]['lr']:g}", str(rec[m]["best_epoch"]))
    console.print(table)
    console.print(f"R_conf = {rec['r_conf']:.4f}; for D_out {rec['d_out']}: L_img {rec['L_img']}, L_tab {rec['L_tab']} "
                  f"-> {res.stage_dir / 'rconf.json'}", highlight=False)
