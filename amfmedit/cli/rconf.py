"""``amfmedit rconf``: the modality confidence ratio from frozen unimodal probes (Appendix A.4)."""


import warnings

from rich.table import Table

from amfmedit.cli.common import command, console, warn
from amfmedit.cli.options import field_option, given, run_options
from amfmedit.cli.train_common import (
    LossWeights,
    Lrs,
    MaskFeatures,
    MaskTopK,
    Patience,
    SamplerWeights,
    batch_size_option,
    epochs_option,
    is_main_process,
    lr_option,
    progress_bars,
    recipe_from,
)
from amfmedit.stages.classify import Recipe
from amfmedit.stages.common import RunOptions
from amfmedit.stages.rconf import RconfConfig, TestSplitWarning
from amfmedit.stages.rconf import rconf as run_rconf

R = RconfConfig


@command("rconf")
@run_options("run", "runs_dir", "data_dir", "device", "compile", "images_in", "resume", "force", "quiet")
def rconf(
    opts: RunOptions,
    quiet: bool,
    split: field_option(R, "split", str, "--split", help="Split on which both probes are measured: val or test (the paper's choice).") = None,
    lr: lr_option("searched over --lrs on validation") = None,
    lrs: Lrs = None,
    epochs: epochs_option(Recipe) = None,
    batch_size: batch_size_option(Recipe) = None,
    patience: Patience = None,
    sampler_weights: SamplerWeights = None,
    loss_weights: LossWeights = None,
    d_out: field_option(R, "d_out", int, "--d-out", min=2, help="AMF's D_out for the reported L_img / L_tab.") = None,
    seed: field_option(R, "seed", int, "--seed", help="Random seed of both probes.") = None,
    mask_features: MaskFeatures = None,
    mask_top_k: MaskTopK = None,
) -> None:
    """Train image-only and tabular-only probes on the frozen encoders; R_conf = metric_img / metric_tab."""
    recipe = recipe_from(lrs=lrs, sampler_weights=sampler_weights, loss_weights=loss_weights, epochs=epochs,
                         batch_size=batch_size, lr=lr, patience=patience)
    cfg = given(RconfConfig(recipe=recipe), split=split, seed=seed, d_out=d_out,
                mask_features=tuple(mask_features) if mask_features else None, mask_top_k=mask_top_k)
    main = is_main_process()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TestSplitWarning)
        with progress_bars(enabled=main and not quiet) as bars:
            res = run_rconf(cfg, opts, progress=bars)
    if not main:
        return
    for w in caught:
        if issubclass(w.category, TestSplitWarning):
            warn([w.message])
    rec = res.record
    table = Table(title=f"R_conf of run {res.run} ({rec['metric'].upper()} on the {rec['split']} split)")
    for col in ("probe", rec["metric"], "lr", "best epoch"):
        table.add_column(col)
    for m in ("image", "tabular"):
        table.add_row(m, f"{rec[m]['metric']:.4f}", f"{rec[m]['lr']:g}", str(rec[m]["best_epoch"]))
    console.print(table)
    console.print(f"R_conf = {rec['r_conf']:.4f}; for D_out {rec['d_out']}: L_img {rec['L_img']}, L_tab {rec['L_tab']} "
                  f"-> {res.stage_dir / 'rconf.json'}", highlight=False)
