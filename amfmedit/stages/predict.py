"""``predict``: score new patients with a trained classifier of a run.

The new table goes through the prepared dataset's ``schema.json`` with the same functions
``prepare`` used for the training rows (:func:`amfmedit.data.transform.transform_table`:
imputation, scaling, category codes; :func:`amfmedit.data.transform.load_image`: HU
window, scaling, resizing), so a new row is transformed exactly as training rows were.
Images are found through the table's image-path column (relative paths are relative to
the table's folder); a blank cell is a patient without a scan, scored as ``prepare`` keeps
such rows (docs/missing-data.md), and missing values are read as the model reads them
(``--missing``). Writes a CSV: id, one probability per class, the decision, the threshold
and its name, the calibration, the model, and which inputs the row had (``has_image``,
``has_table``, ``n_missing``: features without a value; ``inputs``: its availability pattern).
A row without any input the model reads has nothing to score and is a bad row.

Operating point and calibration come from ``evaluate`` (``evaluate/operating_points.json``):
the threshold chosen on the validation split for this classifier and the temperature fitted
there. With ``--calibration temperature`` (default) the probabilities are temperature-scaled
and the threshold column is the same cut on that scale; the decision does not depend on it.
A multiclass decision is the most probable class. Without an evaluation of this classifier
(or one older than its checkpoint), ``predict`` warns and writes probabilities as trained
with empty decision columns: it never cuts at 0.5 behind the user's back.

The columns are the prediction kind's (:meth:`amfmedit.stages.kinds.PredictionKind.predict_columns`):
a survival model writes its risk score and the survival probability at each horizon (the Breslow
baseline hazard ``evaluate`` fitted on the training split), a regression model the predicted value.

``--model DIR`` scores with a folder written by ``amfmedit export`` instead of a run: its own
schema, operating point and calibration, its files checked against their hashes first. The new
rows are read, checked and transformed by the same :func:`read_new_rows` (masks and presence
flags included) and written by the same :func:`scored_table` as a run's.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from amfmedit.data import Schema
from amfmedit.data.schema import SCHEMA_FILE
from amfmedit.data.prepared import dataset_path
from amfmedit.data.readers import read_table_file
from amfmedit.data.transform import category_key, image_path, load_optional_image, transform_table
from amfmedit.errors import UserError
from amfmedit.io import atomic_path, read_json
from amfmedit.stages import names
from amfmedit.stages.availability import pattern_title
from amfmedit.stages.classify import best_model
from amfmedit.stages.common import RunOptions, runtime_for
from amfmedit.stages.configs import PredictConfig
from amfmedit.stages.evaluate import OPERATING_FILE
from amfmedit.models.export import reads_presence
from amfmedit.stages.exported import RUNTIMES, open_export
from amfmedit.stages.kinds import kind_of
from amfmedit.stages.lifecycle import note_command
from amfmedit.stages.selection import choose_model
from amfmedit.train import rundir
from amfmedit.train.inputs import Batch
from amfmedit.train.tasks import infer

CALIBRATIONS = ("temperature", "none")
MAX_LISTED = 20  # bad rows named in the error line; the rest are counted


def _bad_table_rows(schema, df, where: str) -> dict[int, str]:
    """Row position -> what is wrong with its tabular values ({} when the table transforms).

    The whole table goes through :func:`transform_table` first; only when it fails is each
    row tried alone, so that every bad row is named. A problem of the table itself (a missing
    column) is raised as it is.
    """
    try:
        transform_table(schema, df, where=where)
        return {}
    except UserError as whole:
        table_error = whole
    bad = {}
    for i in range(len(df)):
        try:
            transform_table(schema, df.iloc[i:i + 1], where=where)
        except UserError as exc:
            bad[i] = str(exc).removeprefix(f"{where}: ")
    if len(bad) == len(df) and len(set(bad.values())) == 1:
        raise table_error  # every row fails the same way: the table's problem, not the rows'
    return bad


def _checked_images(paths: list[Path | None], schema) -> tuple[np.ndarray | None, np.ndarray, dict[int, str]]:
    """Each row's image read as prepare read the cohort's (None: a row without an image, zeros as
    prepare keeps it); unreadable files are collected, not raised. Returns the images, the (N,) bool
    image-present flags and the bad rows."""
    out, present, bad = [], [], {}
    blank = np.zeros(schema.image.shape, np.uint8)
    for i, p in enumerate(paths):
        try:
            img, has = load_optional_image(p, schema.image)
        except UserError as exc:
            bad[i] = str(exc)
            img, has = blank, False
        out.append(img)
        present.append(has)
    return (np.stack(out) if out else None), np.array(present, dtype=bool), bad


def _nothing_to_score(presence: bool, uses_image: bool, uses_table: bool, image_present, table_present) -> dict[int, str]:
    """Rows without any input the model reads (or, for a model that does not read the presence flags:
    one written before absent-modality vectors, without one of them): row position -> why."""
    legacy = not presence
    read = [(flags, what) for used, flags, what in ((uses_image, image_present, "image"),
                                                     (uses_table, table_present, "feature value")) if used]
    bad = {}
    for i in range(len(table_present)):
        lacking = [what for flags, what in read if not flags[i]]
        if legacy and lacking:
            bad[i] = (f"no {' and no '.join(lacking)}: this model was trained before rows without a modality could "
                      "be scored; train it again to score such rows")
        elif lacking and len(lacking) == len(read):
            bad[i] = f"no {' and no '.join(lacking)}: nothing this model reads"
    return bad


def unseen_categories(schema, df) -> list[str]:
    """One warning per categorical column with values the training rows never had (they are scored as
    missing, code 0), with how many rows and which values."""
    out = []
    for f in schema.categorical:
        if f.column not in df.columns:
            continue
        known = set(f.categories or [])
        keys = [category_key(v) for v in df[f.column].tolist()]
        unseen = collections.Counter(k for k in keys if k is not None and k not in known)
        if unseen:
            shown = ", ".join(f"{v!r} ({n})" for v, n in unseen.most_common(5))
            out.append(f"column {f.column}: {sum(unseen.values())} rows hold values unseen in training ({shown}"
                       f"{', ...' if len(unseen) > 5 else ''}); they are scored as missing")
    return out


@dataclass
class PredictResult:
    run: str
    stage: str
    out: Path
    n: int
    threshold_name: str | None = None  # None: no decisions written (evaluate has not run)
    warnings: list[str] = field(default_factory=list)
    model_choice: str = ""  # how the model was chosen (amfmedit.stages.selection)
    columns: list[str] = field(default_factory=list)  # the prediction kind's columns written


def operating_point(run: rundir.Run, stage: str, best_epoch: int) -> tuple[dict | None, str | None]:
    """The stage's record in ``evaluate/operating_points.json``, or (None, why not)."""
    path = run.stage(names.EVALUATE) / OPERATING_FILE
    hint = f"run `amfmedit evaluate --run {run.name}`"
    if not run.is_complete(names.EVALUATE) or not path.is_file():
        return None, f"{path}: not found ({hint} first)"
    rec = read_json(path).get("stages", {}).get(stage)
    if rec is None:
        return None, f"{path}: {stage} was not evaluated ({hint} again)"
    if rec.get("best_epoch") != best_epoch:
        return None, (f"{path}: written for epoch {rec.get('best_epoch')} of {stage}, its checkpoint is now epoch "
                      f"{best_epoch} ({hint} again)")
    return rec, None


def choose_stage(run: rundir.Run, name: str | None, data_dir=None) -> str:
    """The named classifier stage, or the run's model (:func:`amfmedit.stages.selection.choose_model`)."""
    return choose_model(run, "predict", name, data_dir=data_dir).stage


@dataclass
class NewRows:
    """New patients read, checked and transformed through a schema, ready for a model (n rows kept)."""

    ids: np.ndarray  # (n,) str
    x_cont: np.ndarray  # (n, n_cont) float32, imputed and scaled
    x_cat: np.ndarray  # (n, n_cat) int64
    missing: np.ndarray  # (n, F) bool: the feature had no value before imputation (continuous first)
    images: np.ndarray | None  # (n, C, H, W) uint8 (zeros where the row has none), None for a model without images
    image_present: np.ndarray  # (n,) bool
    table_present: np.ndarray  # (n,) bool: at least one feature value
    uses_image: bool
    skipped: object = None  # pandas DataFrame (id, problem) of the rows left out by skip_bad_rows, else None
    warnings: list[str] = field(default_factory=list)

    def batches(self, batch_size: int, device) -> Iterator[Batch]:
        """The rows as :class:`~amfmedit.train.inputs.Batch` objects on ``device`` (no labels)."""
        def on(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        for i in range(0, len(self.ids), batch_size):
            sl = slice(i, i + batch_size)
            yield Batch(rows=np.arange(len(self.ids))[sl], image=on(self.images[sl]) if self.images is not None else None,
                        x_cont=on(self.x_cont[sl]), x_cat=on(self.x_cat[sl]), label=None, missing=on(self.missing[sl]),
                        image_present=on(self.image_present[sl]), table_present=on(self.table_present[sl]))


def read_new_rows(schema: Schema, table: Path, *, image_column: str | None, modality: str, presence: bool,
                  skip_bad_rows: bool, skipped_file: Path) -> NewRows:
    """Read a table of new patients (and their images), check every row, transform them as prepare did.

    ``modality`` is the model's (``image``, ``tabular`` or ``multimodal``: which inputs it reads);
    ``presence``: whether it reads the presence flags (absent-modality vectors), so that a row
    without an image (a blank cell) or without any feature value can be scored. Every row is
    checked before any is scored, so all problems are reported at once: one UserError naming every
    bad row, or with ``skip_bad_rows`` the good rows and the bad ones in ``skipped`` (the warning
    names ``skipped_file``, where the caller writes them).
    """
    import pandas as pd

    df = read_table_file(table, id_column=schema.id_column, option="--table")
    if schema.id_column not in df.columns:
        raise UserError(f"{table}: no id column {schema.id_column!r} (the schema's); add it to the table")
    uses_image = modality != "tabular"
    paths = None
    if uses_image:
        column = image_column or schema.image_column
        if column is None:
            raise UserError(f"{table}: this classifier reads images; name the table's column of image paths "
                            "with --image-column")
        if column not in df.columns:
            raise UserError(f"{table}: no image-path column {column!r}; pass --image-column with the right name")
        paths = [image_path(v, table.parent) for v in df[column].tolist()]
    # every row is checked before any is scored: all problems are reported at once
    images, image_present, bad = _checked_images(paths, schema) if paths is not None else \
        (None, np.ones(len(df), bool), {})
    bad = {**_bad_table_rows(schema, df, str(table)), **{k: v for k, v in bad.items()}}
    if len(df):  # rows whose values transform: which of them hold nothing the model reads
        good = np.array([i not in bad for i in range(len(df))])
        _, _, miss = transform_table(schema, df.loc[good], where=str(table))
        table_present = np.ones(len(df), bool)
        table_present[good] = ~miss.all(axis=1) if miss.shape[1] else True
        empty = _nothing_to_score(presence, uses_image, modality != "image", image_present, table_present)
        bad = {**bad, **{i: why for i, why in empty.items() if i not in bad}}
    warnings = unseen_categories(schema, df)
    ids_all = df[schema.id_column].astype(str).to_numpy()
    skipped = None
    if bad:
        listing = "; ".join(f"{ids_all[i]}: {bad[i]}" for i in sorted(bad)[:MAX_LISTED])
        more = f"; and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        if len(bad) == len(df):  # --skip-bad-rows or not: an output without a single row helps no one
            raise UserError(f"{table}: none of the {len(df)} rows can be scored ({listing}{more}); fix them")
        if not skip_bad_rows:
            raise UserError(f"{table}: {len(bad)} of {len(df)} rows cannot be scored ({listing}{more}); fix them, or "
                            "pass --skip-bad-rows to score the others (the skipped rows are listed beside the output)")
        skipped = pd.DataFrame({"id": ids_all[sorted(bad)], "problem": [bad[i] for i in sorted(bad)]})
        keep = np.array([i not in bad for i in range(len(df))])
        df = df.loc[keep].reset_index(drop=True)
        image_present = image_present[keep]
        if images is not None:
            images = images[keep]
        warnings.append(f"{len(bad)} of {len(keep)} rows skipped (--skip-bad-rows), listed in {skipped_file}")
    x_cont, x_cat, missing = transform_table(schema, df, where=str(table))
    table_present = ~missing.all(axis=1) if missing.shape[1] else np.ones(len(df), bool)
    return NewRows(df[schema.id_column].astype(str).to_numpy(), x_cont, x_cat, missing.astype(bool), images,
                   image_present, table_present, uses_image, skipped, warnings)


def scored_table(raw: np.ndarray, rows: NewRows, schema: Schema, op: dict | None, *, calibration: str,
                 horizons: str | None, model_name: str, where: Path):
    """The output table of the predictions ``raw`` (n, K), as :func:`amfmedit.train.tasks.infer` gives
    them, for ``rows``: (table, threshold name or None, the kind's notes, the kind's columns).

    ``op`` is the model's record of ``evaluate/operating_points.json`` (None: no decisions).
    """
    import pandas as pd

    kind = kind_of(schema)
    ids = rows.ids
    bad = np.flatnonzero(~np.isfinite(raw).all(axis=1))
    if len(bad):
        raise UserError(f"{where}: row id {ids[bad[0]]!r} (and {len(bad) - 1} more) gave a non-finite model output; "
                        "check that row's values and image (e.g. an infinite or huge number)")
    # the kind's columns: probabilities and decisions, a risk score and survival probabilities, a value
    cols, threshold_name, notes = kind.predict_columns(raw, op, schema, calibration=calibration, horizons=horizons)
    res = pd.DataFrame({"id": ids})
    for name, values in cols.items():
        res[name] = values
    res["model"] = model_name
    res["has_image"] = rows.image_present if rows.uses_image else None  # empty: the model reads no image
    res["has_table"] = rows.table_present
    res["n_missing"] = rows.missing.sum(axis=1)
    res["inputs"] = [pattern_title(bool(i) and rows.uses_image, bool(t))
                     for i, t in zip(rows.image_present, rows.table_present)]
    return res, threshold_name, notes, list(cols)


def _skipped_file(out: Path) -> Path:
    return out.with_name(out.stem + ".skipped.csv")


def _write_scores(out: Path, res, skipped) -> None:
    with atomic_path(out) as tmp:
        res.to_csv(tmp, index=False)
    if skipped is not None:
        with atomic_path(_skipped_file(out)) as tmp:
            skipped.to_csv(tmp, index=False)


def _check_request(cfg: PredictConfig) -> None:
    if cfg.calibration not in CALIBRATIONS:
        raise UserError(f"--calibration {cfg.calibration}: use {' or '.join(CALIBRATIONS)}")
    if not Path(cfg.table).is_file():  # the user's own file first: the most likely mistake
        raise UserError(f"--table {cfg.table}: no such file; pass the CSV or Parquet of the new patients")


def predict(cfg: PredictConfig, opts: RunOptions) -> PredictResult:
    if cfg.model is not None:
        return predict_exported(cfg, opts)
    _check_request(cfg)
    rt = runtime_for(opts)
    run = rundir.open_run(opts.runs_dir, opts.run)
    choice = choose_model(run, "predict", cfg.stage, data_dir=opts.data_dir)
    stage = choice.stage
    info = names.parse_stage(stage)
    root = dataset_path(run.data, opts.data_dir or run.data_dir)
    schema = Schema.load(root / SCHEMA_FILE)
    table = Path(cfg.table)
    out = Path(cfg.out) if cfg.out else run.root / "predict" / f"{table.stem}.csv"
    if out.exists() and not opts.force:
        raise UserError(f"{out} exists; pass --force to replace it or --out to write elsewhere")
    model, ckpt = best_model(run.stage(stage))
    rows = read_new_rows(schema, table, image_column=cfg.image_column, modality=info["modality"],
                         presence=reads_presence(model), skip_bad_rows=cfg.skip_bad_rows,
                         skipped_file=_skipped_file(out))
    warnings = rows.warnings
    op, why = operating_point(run, stage, int(ckpt["epoch"]))
    model = model.to(rt.device).eval()
    kind = kind_of(schema)
    with torch.no_grad(), rt.autocast():
        parts = infer(model, kind, rows.batches(cfg.batch_size, rt.device), channels_last=rt.channels_last,
                      use_image=rows.images is not None)
    raw = np.concatenate(parts) if parts else np.zeros((0, kind.head_size(schema)))
    res, threshold_name, notes, cols = scored_table(raw, rows, schema, op, calibration=cfg.calibration,
                                                    horizons=cfg.horizons, model_name=stage, where=table)
    if op is None:
        warnings.append(f"{why}; {notes.pop(0)}" if notes else why)
    warnings += notes
    _write_scores(out, res, rows.skipped)
    note_command(run, f"predict {out.name}", opts.argv)  # the run report lists it
    return PredictResult(run.name, stage, out, len(res), threshold_name, warnings, choice.rule, cols)


def predict_exported(cfg: PredictConfig, opts: RunOptions) -> PredictResult:
    """``predict --model DIR``: the new rows through an export folder's schema and model; no run is read."""
    if cfg.stage is not None or opts.run is not None:
        raise UserError("--model scores with the export folder alone; drop --run and --stage")
    _check_request(cfg)
    if cfg.runtime not in RUNTIMES:
        raise UserError(f"--runtime {cfg.runtime}: use {', '.join(RUNTIMES)}")
    exported = open_export(cfg.model)
    table = Path(cfg.table)
    out = Path(cfg.out) if cfg.out else table.with_name(f"{table.stem}.predictions.csv")
    if out.exists() and not opts.force:
        raise UserError(f"{out} exists; pass --force to replace it or --out to write elsewhere")
    schema = exported.schema
    rows = read_new_rows(schema, table, image_column=cfg.image_column, modality=exported.modality,
                         presence=exported.reads_presence, skip_bad_rows=cfg.skip_bad_rows,
                         skipped_file=_skipped_file(out))
    runner = exported.runner(cfg.runtime, runtime_for(opts).device)
    raw = runner.predictions(rows.batches(cfg.batch_size, runner.device))
    if not len(raw):
        raw = np.zeros((0, kind_of(schema).head_size(schema)))
    res, threshold_name, notes, cols = scored_table(raw, rows, schema, exported.operating_point,
                                                    calibration=cfg.calibration, horizons=cfg.horizons,
                                                    model_name=exported.stage, where=table)
    _write_scores(out, res, rows.skipped)
    rule = f"{exported.stage} of run {exported.manifest['run']}, exported to {exported.path} ({runner.name})"
    return PredictResult(str(exported.path), exported.stage, out, len(res), threshold_name, rows.warnings + notes, rule,
                         cols)
