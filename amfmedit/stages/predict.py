"""``predict``: score new patients with a trained classifier of a run.

The new table goes through the prepared dataset's ``schema.json`` with the same functions
``prepare`` used for the training rows (:func:`amfmedit.data.transform.transform_table`:
imputation, scaling, category codes; :func:`amfmedit.data.transform.load_image`: HU
window, scaling, resizing), so a new row is transformed exactly as training rows were.
Images are found through the table's image-path column (relative paths are relative to
the table's folder). Writes a CSV: id, one probability per class, the decision, the
threshold and its name, the calibration and the model.

Operating point and calibration come from ``evaluate`` (``evaluate/operating_points.json``):
the threshold chosen on the validation split for this classifier and the temperature fitted
there. With ``--calibration temperature`` (default) the probabilities are temperature-scaled
and the threshold column is the same cut on that scale; the decision does not depend on it.
A multiclass decision is the most probable class. Without an evaluation of this classifier
(or one older than its checkpoint), ``predict`` warns and writes probabilities as trained
with empty decision columns: it never cuts at 0.5 behind the user's back.

``--model DIR`` scores with a folder written by ``amfmedit export`` instead of a run: its own
schema, operating point and calibration, its files checked against their hashes first, the model
on ONNX Runtime when installed (else PyTorch). The new rows are read, checked and transformed by
the same :func:`read_new_rows` and scored by the same :func:`scored_table` as a run's.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from amfmedit.data import Schema
from amfmedit.data.schema import SCHEMA_FILE
from amfmedit.data.prepared import dataset_path
from amfmedit.data.readers import read_table_file
from amfmedit.data.transform import category_key, load_image, transform_table
from amfmedit.errors import UserError
from amfmedit.io import atomic_path, read_json
from amfmedit.stages import names
from amfmedit.stages.classify import best_model
from amfmedit.stages.common import RunOptions, runtime_for
from amfmedit.stages.evalstats import calibrated_threshold
from amfmedit.stages.evaluate import OPERATING_FILE
from amfmedit.stages.exported import RUNTIMES, open_export
from amfmedit.stages.kinds import kind_of
from amfmedit.stages.selection import choose_model
from amfmedit.stats import calibration as calib
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


def _checked_images(paths: list[Path | None], schema) -> tuple[np.ndarray | None, dict[int, str]]:
    """Each row's image read as prepare read the cohort's; unreadable files and rows without an image
    (``None``) are collected, not raised."""
    out, bad = [], {}
    blank = np.zeros(schema.image.shape, np.uint8)
    for i, p in enumerate(paths):
        if p is None:
            bad[i] = "no image path; this classifier reads an image for every row it scores"
            out.append(blank)
            continue
        try:
            out.append(load_image(p, schema.image))
        except UserError as exc:
            bad[i] = str(exc)
            out.append(blank)
    return (np.stack(out) if out else None), bad


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
class PredictConfig:
    table: str
    stage: str | None = None  # a finetune-*/supervised-* folder; None: the best on validation
    image_column: str | None = None  # None: the schema's image column
    out: str | None = None  # None: <run>/predict/<table stem>.csv
    batch_size: int = 64
    calibration: str = "temperature"  # temperature (fitted on validation by evaluate) | none
    skip_bad_rows: bool = False  # score the good rows and list the bad ones in <out>.skipped.csv
    model: str | None = None  # an `amfmedit export` folder instead of a run's classifier
    runtime: str = "auto"  # with model: auto (ONNX Runtime when installed, else PyTorch) | onnxruntime | pytorch


@dataclass
class PredictResult:
    run: str
    stage: str
    out: Path
    n: int
    threshold_name: str | None = None  # None: no decisions written (evaluate has not run)
    warnings: list[str] = field(default_factory=list)
    model_choice: str = ""  # how the model was chosen (amfmedit.stages.selection)


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
    """New patients read, checked and transformed through a schema, ready for a model."""

    ids: np.ndarray  # (n,) str
    x_cont: np.ndarray  # (n, n_cont) float32
    x_cat: np.ndarray  # (n, n_cat) int64
    images: np.ndarray | None  # (n, C, H, W) uint8, None for a tabular model
    skipped: object = None  # pandas DataFrame (id, problem) of the rows left out by skip_bad_rows, else None
    warnings: list[str] = field(default_factory=list)

    def batches(self, batch_size: int, device) -> Iterator[Batch]:
        """The rows as :class:`~amfmedit.train.inputs.Batch` objects on ``device`` (no labels)."""
        for i in range(0, len(self.ids), batch_size):
            sl = slice(i, i + batch_size)
            img = torch.from_numpy(self.images[sl]).to(device) if self.images is not None else None
            yield Batch(rows=np.arange(len(self.ids))[sl], image=img,
                        x_cont=torch.from_numpy(np.ascontiguousarray(self.x_cont[sl])).to(device),
                        x_cat=torch.from_numpy(np.ascontiguousarray(self.x_cat[sl])).to(device), label=None)


def read_new_rows(schema: Schema, table: Path, *, image_column: str | None, uses_image: bool, skip_bad_rows: bool,
                  skipped_file: Path) -> NewRows:
    """Read a table of new patients (and their images), check every row, transform them as prepare did.

    Every row is checked before any is scored, so all problems are reported at once: one
    UserError naming every bad row, or with ``skip_bad_rows`` the good rows and the bad ones in
    ``skipped`` (the warning names ``skipped_file``, where the caller writes them). A row whose
    image cannot be read (none given included) is a bad row: new rows are scored with an image.
    """
    import pandas as pd  # pandas costs ~0.3 s of start-up; only reading the new table needs it

    df = read_table_file(table, id_column=schema.id_column, option="--table")
    if schema.id_column not in df.columns:
        raise UserError(f"{table}: no id column {schema.id_column!r} (the schema's); add it to the table")
    paths = None
    if uses_image:
        column = image_column or schema.image_column
        if column is None:
            raise UserError(f"{table}: this classifier reads images; name the table's column of image paths "
                            "with --image-column")
        if column not in df.columns:
            raise UserError(f"{table}: no image-path column {column!r}; pass --image-column with the right name")
        given = [None if pd.isna(p) or not str(p).strip() else str(p) for p in df[column]]
        paths = [None if p is None else Path(p) if Path(p).is_absolute() else table.parent / p for p in given]
    # every row is checked before any is scored: all problems are reported at once
    images, bad = _checked_images(paths, schema) if paths is not None else (None, {})
    bad = {**_bad_table_rows(schema, df, str(table)), **{k: v for k, v in bad.items()}}
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
        if images is not None:
            images = images[keep]
        warnings.append(f"{len(bad)} of {len(keep)} rows skipped (--skip-bad-rows), listed in {skipped_file}")
    x_cont, x_cat, _ = transform_table(schema, df, where=str(table))
    return NewRows(df[schema.id_column].astype(str).to_numpy(), x_cont, x_cat, images, skipped, warnings)


def _skipped_file(out: Path) -> Path:
    return out.with_name(out.stem + ".skipped.csv")


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
    rows = read_new_rows(schema, table, image_column=cfg.image_column, uses_image=info["modality"] != "tabular",
                         skip_bad_rows=cfg.skip_bad_rows, skipped_file=_skipped_file(out))
    warnings = rows.warnings

    model, ckpt = best_model(run.stage(stage))
    op, why = operating_point(run, stage, int(ckpt["epoch"]))
    if op is None:
        warnings.append(f"{why}; writing probabilities as trained, without decisions (no threshold is known)")
    model = model.to(rt.device).eval()
    kind = kind_of(schema)
    with torch.no_grad(), rt.autocast():
        parts = infer(model, kind, rows.batches(cfg.batch_size, rt.device), channels_last=rt.channels_last,
                      use_image=rows.images is not None)
    raw = np.concatenate(parts) if parts else np.zeros((0, kind.head_size(schema)))
    res, threshold_name = scored_table(raw, rows.ids, schema, op, cfg.calibration, model_name=stage, where=table)
    _write_scores(out, res, rows.skipped)
    return PredictResult(run.name, stage, out, len(res), threshold_name, warnings, choice.rule)


def scored_table(raw: np.ndarray, ids: np.ndarray, schema: Schema, op: dict | None, calibration: str, *,
                 model_name: str, where: Path):
    """(the output table, the threshold's name or None) of the predictions ``raw`` (n, K) as trained.

    ``raw`` is what :func:`amfmedit.train.tasks.infer` gives (the kind's predictions: class
    probabilities); ``op`` is the classifier's record of ``evaluate/operating_points.json`` (None:
    no decisions); ``calibration`` is ``temperature`` (its temperature and bias applied) or ``none``.
    """
    import pandas as pd  # pandas costs ~0.3 s of start-up; only the output table needs it

    kind = kind_of(schema)
    bad = np.flatnonzero(~np.isfinite(raw).all(axis=1))
    if len(bad):
        raise UserError(f"{where}: row id {ids[bad[0]]!r} (and {len(bad) - 1} more) gave a non-finite model output; "
                        "check that row's values and image (e.g. an infinite or huge number)")
    scaled = op is not None and calibration == "temperature"
    temperature = float(op["temperature"]) if scaled else 1.0
    bias = float(op.get("bias") or 0.0) if scaled else 0.0  # binary recalibration (Platt); 0 in older evaluations
    # the same recalibration evaluate fitted and scored (on the probabilities' log-odds)
    p = calib.apply_temperature(calib.logits_from_probs(raw), temperature, bias) if scaled else raw
    res = pd.DataFrame({"id": ids})
    for c, name in enumerate(schema.class_names):
        res[f"prob_{name}"] = p[:, c]
    threshold_name = None
    if op is not None and op.get("threshold") is not None and kind.has_operating_point:
        threshold_name = op["threshold_name"]
        cut = float(op["threshold"])  # on the probabilities as trained: the decision does not depend on calibration
        res["decision"] = [schema.class_names[k] for k in (raw[:, 1] >= cut).astype(int)]
        res["threshold"] = calibrated_threshold(cut, temperature, bias) if scaled else cut
    elif op is not None:
        threshold_name = op["threshold_name"]
        res["decision"] = [schema.class_names[k] for k in p.argmax(axis=1)] if len(p) else []
        res["threshold"] = math.nan
    else:
        res["decision"], res["threshold"] = "", math.nan
    res["threshold_name"] = threshold_name or ""
    res["calibration"] = (f"temperature {temperature:.4g}" + (f", bias {bias:+.4g}" if bias else "")) if scaled else "none"
    res["model"] = model_name
    return res, threshold_name


def _write_scores(out: Path, res, skipped) -> None:
    with atomic_path(out) as tmp:
        res.to_csv(tmp, index=False)
    if skipped is not None:
        with atomic_path(_skipped_file(out)) as tmp:
            skipped.to_csv(tmp, index=False)


def predict_exported(cfg: PredictConfig, opts: RunOptions) -> PredictResult:
    """``predict --model DIR``: the new rows through an export folder's schema and model; no run is read."""
    if cfg.stage is not None or opts.run is not None:
        raise UserError("--model scores with the export folder alone; drop --run and --stage")
    _check_request(cfg)
    exported = open_export(cfg.model)
    if cfg.runtime not in RUNTIMES:
        raise UserError(f"--runtime {cfg.runtime}: use {', '.join(RUNTIMES)}")
    table = Path(cfg.table)
    out = Path(cfg.out) if cfg.out else table.with_name(f"{table.stem}.predictions.csv")
    if out.exists() and not opts.force:
        raise UserError(f"{out} exists; pass --force to replace it or --out to write elsewhere")
    schema = exported.schema
    rows = read_new_rows(schema, table, image_column=cfg.image_column, uses_image="image" in exported.inputs,
                         skip_bad_rows=cfg.skip_bad_rows, skipped_file=_skipped_file(out))
    runner = exported.runner(cfg.runtime, runtime_for(opts).device)
    raw = runner.predictions(rows.batches(cfg.batch_size, runner.device))
    if not len(raw):
        raw = np.zeros((0, kind_of(schema).head_size(schema)))
    res, threshold_name = scored_table(raw, rows.ids, schema, exported.operating_point, cfg.calibration,
                                       model_name=exported.stage, where=table)
    _write_scores(out, res, rows.skipped)
    rule = f"{exported.stage} of run {exported.manifest['run']}, exported to {exported.path} ({runner.name})"
    return PredictResult(str(exported.path), exported.stage, out, len(res), threshold_name, rows.warnings, rule)
