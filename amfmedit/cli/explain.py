"""``amfmedit explain``: Integrated Gradients (tabular) and Grad-CAM (image) reports of a trained model."""

from __future__ import annotations

import contextlib
from typing import Annotated, List, Optional

import typer
from rich.table import Table

from amfmedit.cli.common import DataDir, Device, Force, Quiet, RunName, RunsDir, command, console


@contextlib.contextmanager
def _sample_bar(enabled: bool):
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("integrated gradients"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as prog:
        task = prog.add_task("ig", total=None)
        yield lambda done, total: prog.update(task, completed=done, total=total)


@command("explain")
def explain(
    method: Annotated[str, typer.Option("--method", help="ig (Integrated Gradients on the tabular model) or gradcam (Grad-CAM on the image encoder).")] = "ig",
    stage: Annotated[Optional[str], typer.Option("--stage", help="Stage folder of the model to explain \\[default ig: supervised-tabular-seed*, else a fine-tuned model's tabular branch; gradcam: finetune-concat-frozen-seed*, else another fine-tuned model].")] = None,
    steps: Annotated[int, typer.Option("--steps", help="IG: interpolation steps.")] = 50,
    max_samples: Annotated[Optional[int], typer.Option("--max-samples", help="IG: at most this many samples (random, --seed) \\[default: all].")] = None,
    target: Annotated[Optional[str], typer.Option("--target", help="Class to explain (name or index) \\[default: the positive class; multiclass IG: each sample's label].")] = None,
    output: Annotated[str, typer.Option("--output", help="IG: attribute the target's probability (prob) or its logit.")] = "prob",
    top_k: Annotated[int, typer.Option("--top-k", help="IG: features in the top table and bar plot.")] = 10,
    cases: Annotated[int, typer.Option("--cases", help="Grad-CAM: positive and negative test cases to draw (each).")] = 4,
    compare: Annotated[Optional[List[str]], typer.Option("--compare", help="Grad-CAM: another run (RUN or RUN:STAGE) whose maps of the same patients go beside; repeat for more.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Samples explained \\[default: train for ig (as the paper), test for gradcam].")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="IG: sample-steps per pass \\[256]; Grad-CAM: images per pass \\[16].")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Which samples when capped (ig) / which cases are drawn (gradcam).")] = 0,
    run: RunName = None,
    runs_dir: RunsDir = None,
    data_dir: DataDir = None,
    device: Device = "auto",
    force: Force = False,
    quiet: Quiet = False,
) -> None:
    """Explain a trained model of the run: IG feature importance or Grad-CAM overlays, written to <run>/explain/."""
    from amfmedit.explain.report import refresh_report
    from amfmedit.explain.stage import check_method
    from amfmedit.stages.common import RunOptions

    check_method(method)
    opts = RunOptions(runs_dir=runs_dir, run=run, data_dir=data_dir, device=device, force=force)
    if method == "ig":
        from amfmedit.explain.ig import IGConfig
        from amfmedit.explain.stage import explain_ig

        cfg = IGConfig(steps=steps, max_samples=max_samples, split=split or "train", target=target, output=output,
                       batch_size=batch_size or 256, seed=seed, top_k=top_k)
        with _sample_bar(not quiet) as bar:
            rep = explain_ig(cfg, opts, stage=stage, progress=bar)
        _print_ig(rep, top_k)
        folder = rep.folder
    else:
        from amfmedit.explain.stage import CamConfig, explain_gradcam

        cfg = CamConfig(cases=cases, split=split or "test", target=target, seed=seed, batch_size=batch_size or 16,
                        compare=list(compare or []))
        rep = explain_gradcam(cfg, opts, stage=stage)
        _print_cam(rep)
        folder = rep.folder
    report = refresh_report(folder.parent.parent)
    console.print(f"written: {folder}" + (f"; run report: {report}" if report else ""))


def _print_ig(rep, k: int) -> None:
    s = rep.summary
    console.print(f"explained: {rep.model}")
    table = Table(title=f"Top {k} features by Integrated Gradients ({s['n_samples']} {s['split']} samples, "
                        f"{s['steps']} steps)")
    for col, kw in (("rank", {"justify": "right"}), ("feature", {}), ("description", {"max_width": 60}),
                    ("importance %", {"justify": "right"})):
        table.add_column(col, **kw)
    truth = "informative" in rep.table.columns
    if truth:
        table.add_column("informative")
    for _, r in rep.table.head(k).iterrows():
        cells = [str(r["rank"]), str(r["name"]), str(r["description"] or "—"), f"{r['importance_pct']:.2f}"]
        if truth:
            cells.append("yes" if r["informative"] else "no")
        table.add_row(*cells)
    console.print(table)
    c = s["completeness"]
    console.print(f"completeness: mean |sum(attr) - (f(x) - f(baseline))| = {c['mean_abs_delta']:.3g} "
                  f"(max {c['max_abs_delta']:.3g}; relative to mean |f(x) - f(baseline)| {c['relative']:.3g})")
    syn = s.get("synthetic")
    if syn:
        from amfmedit.explain.report import truth_sentence

        console.print(f"synthetic truth: {truth_sentence(syn, k)}")


def _print_cam(rep) -> None:
    s = rep.summary
    console.print(f"explained: {rep.model}")
    console.print(f"cases ({s['split']} split, class {s['target']['name']}): positive {', '.join(s['cases']['positive'])}; "
                  f"negative {', '.join(s['cases']['negative'])}")
    rows = [(rep.run, s)] + [(c["run"], c) for c in s.get("compare", [])]
    if "region" in s:
        table = Table(title=f"Grad-CAM mass inside the generator's signal region ({s['region']['positive']['region']})")
        for col in ("run", "cases", "CAM mass in region", "region area share", "ratio"):
            table.add_column(col, justify="right" if col != "run" else "left")
        for name, rec in rows:
            for part in ("positive", "negative"):
                r = rec["region"][part]
                table.add_row(name, part, f"{r['cam_mass_in_region']:.3f}", f"{r['region_area_share']:.3f}",
                              f"{r['enrichment']:.2f}")
        console.print(table)
