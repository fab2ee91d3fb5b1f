"""``amfmedit rconf``: the modality confidence ratio from frozen unimodal probes (Appendix A.4)."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer
from rich.table import Table

from amfmedit.cli.common import DataDir, Device, Force, Quiet, RunName, RunsDir, command, console, err_console
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
    Seed,
    floats,
    is_main_process,
    progress_bars,
)


@command("rconf")
def rconf(
    split: Annotated[str, typer.Option("--split", help="Split on which both probes are measured: val (default) or test (the paper's choice).")] = "val",
    lr: Lr = None,
    lrs: Annotated[str, typer.Option("--lrs", help="Learning rates searched on validation when --lr is not given.")] = "0.01,0.001,0.0001",
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    patience: Patience = 10,
    sampler_weights: SamplerWeights = None,
    loss_weights: LossWeights = None,
    d_out: Annotated[int, typer.Option("--d-out", min=2, help="AMF's D_out for the reported L_img / L_tab.")] = 2048,
    seed: Seed = 2022,
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
    """Train image-only and tabular-only probes on the frozen encoders; R_conf = metric_img / metric_tab."""
    from amfmedit.stages.classify import Recipe
    from amfmedit.stages.common import RunOptions
    from amfmedit.stages.rconf import RconfConfig, TestSplitWarning
    from amfmedit.stages.rconf import rconf as run_rconf

    d = Recipe()
    recipe = Recipe(epochs=epochs or d.epochs, batch_size=batch_size or d.batch_size, lr=lr, lrs=floats(lrs, "--lrs"),
                    patience=patience, sampler_weights=floats(sampler_weights, "--sampler-weights"),
                    loss_weights=floats(loss_weights, "--loss-weights"))
    cfg = RconfConfig(split=split, seed=seed, d_out=d_out, recipe=recipe, mask_features=tuple(mask_features or ()),
                      mask_top_k=mask_top_k)
    opts = RunOptions(runs_dir=runs_dir, run=run, data_dir=data_dir, device=device, compile=compile,
                      images_in=images_in, resume=resume, force=force)
    main = is_main_process()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TestSplitWarning)
        with progress_bars(enabled=main and not quiet) as bars:
            res = run_rconf(cfg, opts, progress=bars)
    if not main:
        return
    for w in caught:
        if issubclass(w.category, TestSplitWarning):
            err_console.print(f"[yellow]warning:[/] {w.message}")
    rec = res.record
    table = Table(title=f"R_conf of run {res.run} ({rec['metric'].upper()} on the {rec['split']} split)")
    for col in ("probe", rec["metric"], "lr", "best epoch"):
        table.add_column(col)
    for m in ("image", "tabular"):
        table.add_row(m, f"{rec[m]['metric']:.4f}", f"{rec[m]['lr']:g}", str(rec[m]["best_epoch"]))
    console.print(table)
    console.print(f"R_conf = {rec['r_conf']:.4f}; for D_out {rec['d_out']}: L_img {rec['L_img']}, L_tab {rec['L_tab']} "
                  f"-> {res.stage_dir / 'rconf.json'}")
