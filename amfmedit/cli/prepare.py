"""``amfmedit prepare``: a raw dataset (or a synthetic one) -> a prepared dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from amfmedit.cli.common import command, console, err_console, warn
from amfmedit.cli.options import DataDir, Force, Quiet
from amfmedit.data.prepare import apply_overrides
from amfmedit.stages.kinds import kind_of
from amfmedit.stages.prepare import prepare as run
from amfmedit.stages.prepare import prepare_like as run_like
from amfmedit.errors import UserError
from amfmedit.data.spec import load_spec

SYNTHETIC = "Synthetic cohorts"


@command("prepare")
def prepare(
    data: Annotated[str, typer.Option("--data", help="Data spec: a name in data_specs/ (ol3i, dvm, synthetic-ol3i, "
                                                     "synthetic-dvm, ...) or a path to a .toml file.")],
    raw: Annotated[Optional[Path], typer.Option("--raw", help="Folder (or table file) of the raw dataset, overriding "
                                                              "the spec; for synthetic data: keep the generated raw "
                                                              "files in this new folder.")] = None,
    data_dir: DataDir = None,
    force: Force = False,
    name: Annotated[Optional[str], typer.Option("--name", help="Output folder name (default: the spec's name).")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Prepared image side in pixels "
                                                                           "(default: the spec's).")] = None,
    label: Annotated[Optional[str], typer.Option("--label", help="Label column, e.g. label_5y for OL3I's 5-year "
                                                                 "task (default: the spec's).")] = None,
    split_column: Annotated[Optional[str], typer.Option("--split-column", help="Split column, e.g. set_5y "
                                                                               "(default: the spec's).")] = None,
    patients: Annotated[Optional[int], typer.Option("--patients", help="Patients (adverts for DVM) to generate.",
                                                    rich_help_panel=SYNTHETIC)] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Generator seed; the same seed gives the same bytes.",
                                                rich_help_panel=SYNTHETIC)] = None,
    features: Annotated[Optional[int], typer.Option("--features", help="OL3I features to generate (the informative "
                                                                       "ones are always kept; default: 423).",
                                                    rich_help_panel=SYNTHETIC)] = None,
    prevalence: Annotated[Optional[float], typer.Option("--prevalence", help="OL3I 1-year positive rate "
                                                                             "(default: 0.04).",
                                                        rich_help_panel=SYNTHETIC)] = None,
    classes: Annotated[Optional[int], typer.Option("--classes", help="DVM car models to generate before the "
                                                                     "min_class_count filter.",
                                                   rich_help_panel=SYNTHETIC)] = None,
    censoring: Annotated[Optional[float], typer.Option("--censoring", help="OL3I time-to-event outcome "
                                                                          "(synthetic-ol3i-survival): yearly rate of "
                                                                          "loss to follow-up (default: the spec's).",
                                                       rich_help_panel=SYNTHETIC)] = None,
    age_shift: Annotated[Optional[float], typer.Option("--age-shift", help="OL3I: another site's case-mix, the "
                                                                            "mean age moved by this many years "
                                                                            "(default: 0).",
                                                       rich_help_panel=SYNTHETIC)] = None,
    hu_scale: Annotated[Optional[float], typer.Option("--hu-scale", help="OL3I: another scanner's intensity "
                                                                          "scale, multiplying the stored HU "
                                                                          "(default: 1).",
                                                      rich_help_panel=SYNTHETIC)] = None,
    like: Annotated[Optional[str], typer.Option("--like", help="Prepare this cohort through the frozen pipeline of "
                                                               "a prepared training dataset (its imputation, scaling, "
                                                               "category codes, class coding, HU window and image "
                                                               "size, never refitted), for `evaluate --external`.")]
    = None,
    missing_rate: Annotated[Optional[float], typer.Option("--missing-rate", help="OL3I: rate at which every "
                                                          "feature that records leave blank (labs, vitals, BMI, "
                                                          "smoker) is missing (default: each one's realistic rate).",
                                                          rich_help_panel=SYNTHETIC)] = None,
    missing_mechanism: Annotated[Optional[str], typer.Option("--missing-mechanism", help="OL3I: mcar (at random), "
                                                             "mar (driven by age, always recorded) or mnar (high "
                                                             "values hidden more often; default: mcar).",
                                                             rich_help_panel=SYNTHETIC)] = None,
    no_image_rate: Annotated[Optional[float], typer.Option("--no-image-rate", help="OL3I: fraction of patients "
                                                           "without a scan (default: 0).",
                                                           rich_help_panel=SYNTHETIC)] = None,
    no_table_rate: Annotated[Optional[float], typer.Option("--no-table-rate", help="OL3I: fraction of patients "
                                                           "with every feature blank (default: 0).",
                                                           rich_help_panel=SYNTHETIC)] = None,
    image_missing: Annotated[Optional[str], typer.Option("--image-missing", help="A row without an image: error, "
                                                         "drop, or keep it and score it without one (default: the "
                                                         "spec's image.missing).")] = None,
    categorical: Annotated[Optional[str], typer.Option("--categorical", help="The categorical columns, replacing "
                                                       "the spec's (table.categorical, and no column made "
                                                       "categorical by its dtype): none makes every feature "
                                                       "continuous (the authors' OL3I code), or a,b names them "
                                                       "(default: the spec's).")] = None,
    quiet: Quiet = False,
) -> None:
    """Prepare a dataset: readers for OL3I, DVM and your own table, preprocessing of Appendix A.1."""

    spec = apply_overrides(load_spec(data), name=name, image_size=image_size, label=label,
                           split_column=split_column, image_missing=image_missing, categorical=categorical)
    synthetic = {k: v for k, v in dict(patients=patients, seed=seed, features=features, prevalence=prevalence,
                                         classes=classes, censoring=censoring, age_shift=age_shift, hu_scale=hu_scale,
                                         missing_rate=missing_rate, missing_mechanism=missing_mechanism,
                                         no_image_rate=no_image_rate, no_table_rate=no_table_rate).items()
                 if v is not None}
    if like is not None and image_size is not None:
        raise UserError("--image-size: an external cohort takes the training dataset's image size (--like)")
    with Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=quiet) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        if like is not None:
            result = run_like(spec, like, raw=raw, data_dir=data_dir, force=force, synthetic=synthetic,
                              progress=progress)
        else:
            result = run(spec, raw=raw, data_dir=data_dir, force=force, synthetic=synthetic, progress=progress)
    _summary(result)
    if like is not None:
        console.print(f"prepared like {result.provenance['like']['dataset']} (its schema, never refitted); "
                      f"score a run on it with `amfmedit evaluate --external {result.schema.name}`",
                      highlight=False, markup=False)


def _summary(result) -> None:
    prov, schema = result.provenance, result.schema
    kind = kind_of(schema)
    table = Table(title=f"{schema.name}: prepared into {result.path}", title_justify="left")
    table.add_column("split")
    table.add_column("rows", justify="right")
    for column in kind.summary_columns(schema):
        table.add_column(column, justify="right")
    oracle = (prov.get("synthetic") or {}).get("oracle")
    if oracle:
        table.add_column(f"oracle {oracle['metric']}", justify="right")
    for split, c in prov["counts"].items():
        row = [split, str(c["rows"]), *kind.summary_cells(c)]
        if oracle:
            row.append("-" if oracle.get(split) is None else f"{oracle[split]:.3f}")
        table.add_row(*row)
    console.print(table)
    f = prov["features"]
    c, h, w = prov["image_shape"]
    typed = prov.get("overrides", {}).get("--categorical")
    lines = [f"features: {f['continuous'] + f['categorical']} ({f['continuous']} continuous, "
             f"{f['categorical']} categorical" + (f"; --categorical {typed})" if typed is not None else ")"),
             f"images: {c} x {h} x {w} uint8 ({schema.image.modality}"
             + (f", window {list(schema.image.window)} HU)" if schema.image.window else ")"),
             f"task: {kind.title}" + (f", {schema.n_classes} classes" if kind.target_names(schema) else "")]
    if prov["rows"]["dropped"]:
        lines.append("dropped rows: " + ", ".join(f"{k}: {v}" for k, v in prov["rows"]["dropped"].items()))
    avail = {s: c.get("availability") for s, c in prov["counts"].items()}
    if any(a and (a["table_only"] or a["image_only"]) for a in avail.values()):
        lines.append("incomplete rows: " + "; ".join(
            f"{s} {a['table_only']} without an image, {a['image_only']} without a table" for s, a in avail.items()))
    if oracle and oracle.get("tabular_only") is not None:
        lines.append(f"oracle by modality ({oracle['metric']}, all rows): tabular {oracle['tabular_only']:.3f}, "
                     f"image {oracle['image_only']:.3f}")
    syn = prov.get("synthetic")
    if syn:
        lines.append(f"informative features: {', '.join(syn['informative_features'])}")
        miss = syn.get("missingness")
        if miss:
            lines.append(f"missing values: {miss['mechanism']}, {miss['realised_rate']:.1%} of "
                         f"{len(miss['eligible_features'])} recordable features"
                         + (f" (AUC of missingness alone {oracle['missingness_only']:.3f})"
                            if oracle and oracle.get("missingness_only") is not None else ""))
    for line in lines:
        console.print(line, highlight=False, markup=False)  # names and units like "[kg]" printed literally
    warn(prov.get("warnings", []))
