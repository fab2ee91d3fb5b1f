"""``amfmedit explain``: Integrated Gradients (tabular) and Grad-CAM (image) reports of a trained model."""


import contextlib
from typing import Annotated, List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from amfmedit.cli.common import command, console, warn
from amfmedit.cli.options import default_of, derived_option, field_option, given, run_options
from amfmedit.explain.configs import IGConfig
from amfmedit.stages.configs import METHODS, CamConfig, RunOptions


@contextlib.contextmanager
def _sample_bar(enabled: bool):
    if not enabled:
        yield None
        return
    with Progress(TextColumn("integrated gradients"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as prog:
        task = prog.add_task("ig", total=None)
        yield lambda done, total: prog.update(task, completed=done, total=total)


def _both(field: str) -> str:
    ig, cam = default_of(IGConfig, field), default_of(CamConfig, field)
    return str(ig) if ig == cam else f"ig {ig}, gradcam {cam}"


@command("explain")
@run_options("run", "runs_dir", "data_dir", "device", "force", "quiet")
def explain(
    opts: RunOptions,
    quiet: bool,
    method: Annotated[str, typer.Option("--method", help=f"{METHODS[0]} (Integrated Gradients on the tabular model) or {METHODS[1]} (Grad-CAM on the image encoder).")] = METHODS[0],
    stage: Annotated[Optional[str], typer.Option("--stage", help="Stage folder of the model to explain [default: the run's model, as predict: the image-tabular model with the best validation metric; the paper's settings: supervised-tabular-seed* for ig, finetune-concat-frozen-seed* for gradcam].")] = None,
    steps: field_option(IGConfig, "steps", int, "--steps", help="IG: interpolation steps.") = None,
    completeness: field_option(IGConfig, "completeness", float, "--completeness", help="IG: choose the fewest steps whose relative completeness error (how far the attributions' sum is from f(x) - f(baseline)) is within this, e.g. 0.01; overrides --steps.", shown="off") = None,
    max_samples: field_option(IGConfig, "max_samples", int, "--max-samples", help="IG: at most this many samples (random, --seed).", shown="all") = None,
    target: Annotated[Optional[str], typer.Option("--target", help="Class to explain (name or index) [default: the positive class; multiclass IG: each sample's label].")] = None,
    output: field_option(IGConfig, "output", str, "--output", help="IG: attribute the target's probability (prob) or its logit.") = None,
    top_k: field_option(IGConfig, "top_k", int, "--top-k", help="IG: features in the top table and bar plot.") = None,
    cases: field_option(CamConfig, "cases", int, "--cases", help="Grad-CAM: positive and negative test cases to draw (each).") = None,
    cam_scale: field_option(CamConfig, "scale", str, "--cam-scale", help="Grad-CAM: per-map (each map over its own maximum) or common (one scale for all maps of a figure, so cases compare).") = None,
    compare: Annotated[Optional[List[str]], typer.Option("--compare", help="Grad-CAM: another run (RUN or RUN:STAGE) whose maps of the same patients go beside; repeat for more.")] = None,
    split: derived_option(str, "--split", help="Samples explained (ig: the paper's choice).", shown=_both("split"), source=((IGConfig, "split"), (CamConfig, "split"))) = None,
    batch_size: derived_option(int, "--batch-size", help="IG: sample-steps per pass; Grad-CAM: images per pass.", shown=_both("batch_size"), source=((IGConfig, "batch_size"), (CamConfig, "batch_size"))) = None,
    seed: derived_option(int, "--seed", help="Which samples when capped (ig) / which cases are drawn (gradcam).", shown=_both("seed"), source=((IGConfig, "seed"), (CamConfig, "seed"))) = None,
) -> None:
    """Explain a trained model of the run: IG feature importance or Grad-CAM overlays, written to <run>/explain/."""
    from amfmedit.stages.explain import check_method, explain_gradcam, explain_ig
    from amfmedit.stages.report import REPORT_FILE

    check_method(method)
    if method == METHODS[0]:
        cfg = given(IGConfig(), steps=steps, completeness=completeness, max_samples=max_samples, split=split, target=target, output=output,
                    batch_size=batch_size, seed=seed, top_k=top_k)
        with _sample_bar(not quiet) as bar:
            rep = explain_ig(cfg, opts, stage=stage, progress=bar)
        _print_ig(rep, cfg.top_k)
    else:
        cfg = given(CamConfig(), cases=cases, split=split, target=target, seed=seed, batch_size=batch_size,
                    compare=list(compare) if compare else None, scale=cam_scale)
        rep = explain_gradcam(cfg, opts, stage=stage)
        _print_cam(rep)
    warn(rep.summary.get("warnings"))
    report = rep.folder.parents[1] / REPORT_FILE
    console.print(f"written: {rep.folder}" + (f"; run report: {report}" if report.is_file() else ""),
                  highlight=False, markup=False)


def _print_ig(rep, k: int) -> None:
    from amfmedit.explain.ig import IGTruth

    s = rep.summary
    console.print(f"model: {rep.summary['model_choice']}", markup=False, highlight=False)
    console.print(f"explained: {rep.model}", markup=False, highlight=False)
    table = Table(title=f"Top {k} features by Integrated Gradients ({s['n_samples']} {s['split']} samples, "
                        f"{s['steps']} steps)")
    for col, kw in (("rank", {"justify": "right"}), ("feature", {}), ("description", {"max_width": 60}),
                    ("importance %", {"justify": "right"})):
        table.add_column(col, **kw)
    truth = "informative" in rep.table.columns
    if truth:
        table.add_column("informative")
    for _, r in rep.table.head(k).iterrows():
        # user-supplied text (feature names, descriptions like "weight [kg]") is printed literally
        cells = [str(r["rank"]), str(r["name"]), str(r["description"] or "—"), f"{r['importance_pct']:.2f}"]
        if truth:
            cells.append("yes" if r["informative"] else "no")
        table.add_row(*map(Text, cells))
    console.print(table)
    c = s["completeness"]
    console.print(f"completeness: mean |sum(attr) - (f(x) - f(baseline))| = {c['mean_abs_delta']:.3g} "
                  f"(max {c['max_abs_delta']:.3g}; relative to mean |f(x) - f(baseline)| {c['relative']:.3g})")
    syn = s.get("synthetic")
    if syn:
        console.print(f"synthetic truth: {IGTruth.from_dict(syn).sentence()}", markup=False, highlight=False)


def _print_cam(rep) -> None:
    s = rep.summary
    console.print(f"model: {rep.summary['model_choice']}", markup=False, highlight=False)
    console.print(f"explained: {rep.model}", markup=False, highlight=False)
    groups = list(s["cases"])  # positive / negative, or the prediction kind's two groups of cases
    console.print(f"cases ({s['split']} split, toward {s['target']['name']}): "
                  + "; ".join(f"{g} {', '.join(s['cases'][g])}" for g in groups), markup=False, highlight=False)
    rows = [(rep.run, s)] + [(c["run"], c) for c in s.get("compare", [])]
    if "region" in s:
        table = Table(title=f"Grad-CAM mass inside the generator's signal region ({s['region'][groups[0]]['region']})")
        for col in ("run", "cases", "heat in region", "region area", "ratio"):
            table.add_column(col, justify="right" if col != "run" else "left")
        texts = []
        for name, rec in rows:
            for part in groups:
                r = rec["region"][part]
                table.add_row(Text(name), part, f"{100 * r['cam_mass_in_region']:.1f}%",
                              f"{100 * r['region_area_share']:.1f}%", f"{r['enrichment']:.2f}")
                if r.get("verdict_text"):
                    texts.append(f"{name}, {part} cases: {r['verdict_text']}")
        console.print(table)
        for t in texts:
            console.print(t, markup=False, highlight=False)
