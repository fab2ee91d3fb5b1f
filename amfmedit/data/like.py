"""``prepare --like``: another cohort through a training dataset's frozen pipeline.

The external cohort is read with its own spec (its reader, file and column names, per-file image
rules) and transformed with the training dataset's ``schema.json``, never refitted: the same
feature list, order and typing (continuous or categorical, whatever the spec's ``table.categorical``
says; ``--categorical`` is refused), imputation medians, z-score means and standard deviations,
category codes (a category never seen in training becomes code 0, as a missing value), class
coding, HU window, image size and channels. What does not fit is refused in one line (a feature the models need is
absent, a label value that is not one of the training classes, images of another modality); what
fits but differs is reported in ``provenance.json``'s ``checks`` (columns the pipeline ignores,
categories never seen, values far outside the training range).

Rows keep the split of the spec's split column when it has one (an external subset for
recalibration, say), else every row is ``test``. The folder is a prepared dataset like any other
(``load_prepared`` reads it); its provenance records the training dataset it was prepared like.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amfmedit import __version__
from amfmedit.data.prepare import write_images
from amfmedit.data.prepared import KEPT_FILE, MARKER, SPLITS, list_prepared, load_prepared, write_kept
from amfmedit.data.readers import READERS, require_columns
from amfmedit.data.schema import Schema
from amfmedit.data.spec import DataSpec
from amfmedit.data.synthetic import generate
from amfmedit.data.transform import ParsedTable, category_key, encode, parse_features
from amfmedit.errors import UserError, close_matches
from amfmedit.io import (disk_full_as_error, exclusive_lock, remove_stale, save_npy, staging_dir, temp_prefix,
                         write_json, write_text)
from amfmedit.paths import data_dir as _data_dir

FAR_SD = 3.0  # "far outside": beyond the training range by more than this many training standard deviations
MAX_SHOWN = 5  # values or columns named per check


@dataclass
class LikeResult:
    path: Path
    schema: Schema
    provenance: dict


def find_training(like: str, data_dir=None) -> Path:
    """The prepared training dataset ``--like`` names; one line naming the prepared ones otherwise."""
    p = Path(like)
    if (p / MARKER).is_file():
        return p
    root = _data_dir(data_dir)
    if (root / like / MARKER).is_file():
        return root / like
    have = list_prepared(root)
    hint = close_matches(like, have)
    raise UserError(f"--like {like}: no prepared dataset of that name in {root}/ (prepared there: "
                    f"{', '.join(have) if have else 'none'})" + (f"; did you mean {hint}?" if hint else "")
                    + "; prepare the training cohort first or pass --data-dir")


def schema_digest(schema: Schema) -> str:
    """SHA-256 of a schema's content without its name: two datasets prepared alike share it."""
    d = schema.to_dict()
    d.pop("name")
    return hashlib.sha256(repr(sorted(d.items())).encode()).hexdigest()


def same_pipeline(a: Schema, b: Schema) -> bool:
    return schema_digest(a) == schema_digest(b)


def prepare_like(spec: DataSpec, like: str, *, raw=None, data_dir=None, force: bool = False,
                 synthetic: dict | None = None, progress=None, workers: int | None = None) -> LikeResult:
    """Prepare ``spec``'s cohort into ``<data_dir>/<spec.name>/`` through the pipeline of dataset ``like``."""
    progress = progress or (lambda phase, done, total: None)
    where_spec = spec.path or spec.name
    if "--categorical" in spec.overrides:  # the typing is the schema's: re-deciding it would change the inputs
        raise UserError(f"--categorical {spec.overrides['--categorical']}: an external cohort takes the training "
                        f"dataset's feature typing (--like {like}); leave the option out")
    train_root = find_training(like, data_dir)
    training = load_prepared(train_root)
    schema = training.schema
    if spec.task != schema.task:
        raise UserError(f"{where_spec}: task {spec.task!r}, but the training dataset {schema.name} is {schema.task!r}; "
                        "an external cohort is scored on the training task")
    if spec.image.modality != schema.image.modality or spec.channels != schema.image.channels:
        raise UserError(f"{where_spec}: image.modality {spec.image.modality!r} ({spec.channels} channel(s)), but the "
                        f"training dataset {schema.name} holds {schema.image.modality!r} images ({schema.image.channels} "
                        "channel(s)); an external cohort must be of the training modality")
    final = _data_dir(data_dir) / spec.name
    if final.resolve() == train_root.resolve():
        raise UserError(f"--name {spec.name}: that is the training dataset itself; give the external cohort its own name")
    if final.exists() and not force:
        raise UserError(f"{final} already exists; pass --force to replace it (it is kept until the new one is complete)")
    size = [schema.image.height, schema.image.width]
    spec = dataclasses.replace(spec, image=dataclasses.replace(spec.image, size=size))
    busy = f"{spec.name}: another amfmedit process (pid {{pid}}) is preparing this dataset in {final.parent}; wait for it"
    with exclusive_lock(final, busy):
        remove_stale(final.parent, suffixes=(".partial", ".raw", ".tmp"))
        temp_raw, generated = None, None
        try:
            if spec.synthetic is not None:
                overrides = dict(synthetic or {})
                trained_on = (training.provenance.get("synthetic") or {}).get("options") or {}
                if "features" not in overrides and "features" in trained_on:  # the training cohort's feature set
                    overrides["features"] = trained_on["features"]
                final.parent.mkdir(parents=True, exist_ok=True)
                temp_raw = Path(tempfile.mkdtemp(prefix=temp_prefix(spec.name), suffix=".raw", dir=final.parent))
                raw_dir = Path(raw) if raw is not None else temp_raw
                generated = generate(spec, raw_dir, overrides=overrides, progress=progress, workers=workers)
            else:
                if synthetic:
                    raise UserError(f"--{next(iter(synthetic))}: only synthetic data specs take generator options")
                raw_text = raw if raw is not None else spec.raw
                if raw_text is None or not Path(raw_text).exists():
                    raise UserError(f"--raw {raw_text}: raw data not found; pass --raw PATH to the external cohort's files")
                raw_dir = Path(raw_text)
            cohort = READERS[spec.reader](spec, raw_dir)
            _check_image_modality(cohort.images, schema)
            asm = _assemble(spec, schema, cohort, training)
            progress("tabular", 1, 1)
            provenance = _provenance(spec, schema, train_root, cohort, asm)
            truth = None
            if generated is not None:
                truth, oracle = generated.finish(asm["ids"], asm["labels"], schema.class_names, asm["split"],
                                                 spec.table.label)
                provenance["synthetic"] = {**generated.record, "oracle": oracle}
            out_schema = dataclasses.replace(schema, name=spec.name)
            with staging_dir(final, force=force) as tmp:
                _write(tmp, out_schema, asm, provenance, truth)
                write_images(tmp / out_schema.image.file, asm["images"], out_schema.image, spec, progress, workers)
                write_text(tmp / MARKER, f"amfmedit {__version__}\n")
            return LikeResult(final, out_schema, provenance)
        finally:
            if temp_raw is not None:
                shutil.rmtree(temp_raw, ignore_errors=True)


def _check_image_modality(images, schema: Schema) -> None:
    """DICOM files name their modality: a CT pipeline refuses an MR or X-ray series in one line."""
    paths = getattr(images, "paths", None) or []
    dicoms = [p for p in paths if p is not None and p.suffix.lower() in (".dcm", ".dicom") and p.is_file()]
    if not dicoms or schema.image.modality != "ct":
        return
    import pydicom

    for p in dicoms:
        try:
            tag = pydicom.dcmread(str(p), stop_before_pixels=True).get("Modality")
        except Exception:  # noqa: BLE001 - an unreadable file is reported when its pixels are read
            continue
        if tag is not None and str(tag).upper() != "CT":
            n = sum(1 for q in dicoms if q.parent == p.parent)
            raise UserError(f"{p}: DICOM Modality {str(tag)!r}, but the training dataset {schema.name} holds CT slices "
                            f"({n} DICOM file(s) in that folder); an external cohort must be of the training modality")


def _assemble(spec: DataSpec, schema: Schema, cohort, training) -> dict:
    t = spec.table
    df, where = cohort.table, cohort.where
    require_columns(df, [t.id, t.label] + ([t.split] if t.split and t.split in df.columns else []), where)
    ids = df[t.id].astype("string").str.strip().to_numpy(dtype=object, na_value=None)
    if any(i is None for i in ids):
        raise UserError(f"{where}: column {t.id!r} has an empty id; every row needs an id")
    ids = np.array([str(i) for i in ids], dtype=object)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise UserError(f"{where}: id {uniq[counts > 1][0]!r} occurs {counts[counts > 1][0]} times in column {t.id!r}; "
                        "ids must be unique")
    ordered = schema.continuous + schema.categorical
    parsed = parse_features(ordered, df, where=where, ids=ids)  # a feature the models need, absent: one line
    labels = _labels(spec, schema, df, where)
    keep = np.ones(len(df), bool)
    present = cohort.images.present()
    dropped = {}
    if not present.all():
        if spec.image.missing == "drop":
            keep &= present
            dropped["image file missing"] = int((~present).sum())
        elif spec.image.missing == "keep":  # scored without an image, as the training dataset's kept rows
            neither = ~present & parsed.missing.all(axis=1)
            keep &= ~neither
            if neither.any():
                dropped["no image and no feature values"] = int(neither.sum())
        else:
            i = int(np.flatnonzero(~present)[0])
            raise UserError(f"{where}: id {ids[i]!r} has no image ({int((~present).sum())} ids without images); add "
                            "the images, or set image.missing = \"drop\" or \"keep\" (--image-missing)")
    rows = np.flatnonzero(keep)
    if len(rows) == 0 or not present[rows].any():
        raise UserError(f"{where}: no rows left with an image; check image.folder / image.column and --raw")
    if t.split and t.split in df.columns:
        split = df[t.split].astype("string").str.strip().str.lower().to_numpy(dtype=object, na_value=None)[rows]
        bad = [v for v in split if v not in SPLITS]
        if bad:
            raise UserError(f"{where}: column {t.split!r} has the split value {bad[0]!r} ({len(bad)} rows); allowed "
                            "values are train, val, test (or leave table.split out: every row is scored as test)")
        split = split.astype(str)
    else:
        split = np.full(len(rows), "test")
    sub = ParsedTable(cont=parsed.cont[rows], cat=parsed.cat[rows])
    x_cont, x_cat, missing = encode(ordered, sub)  # the training statistics, never refitted
    checks = _checks(spec, schema, df, sub, x_cont, missing, training)
    checks["dropped"] = dropped
    return {"ids": ids[rows], "labels": labels[rows], "split": split, "x_cont": x_cont, "x_cat": x_cat,
            "missing": missing, "images": cohort.images.take(rows), "image_present": present[rows].copy(),
            "checks": checks,
            "kept": {c: df[c].to_numpy()[rows] for c in t.keep if c in df.columns},
            "read": int(len(df))}


def _labels(spec: DataSpec, schema: Schema, df, where: str) -> np.ndarray:
    """Class indices in the training coding: the external values are the training class names, or the
    spec's ``table.label_values`` listed in the training classes' order."""
    t = spec.table
    keys = np.array([category_key(v) for v in df[t.label].astype(object)], dtype=object)
    if any(k is None for k in keys):
        raise UserError(f"{where}: column {t.label!r} has missing labels ({sum(k is None for k in keys)} rows); every "
                        "row of an external cohort needs its outcome")
    names = [str(c) for c in schema.class_names]
    values = [str(v) for v in t.label_values] or names
    if len(values) != len(names):
        raise UserError(f"{spec.path or spec.name}: table.label_values lists {len(values)} values, the training dataset "
                        f"{schema.name} has {len(names)} classes ({', '.join(names)}); list one value per class, in "
                        "that order")
    index = {v: i for i, v in enumerate(values)}
    unknown = collections.Counter(k for k in keys if k not in index)
    if unknown:
        shown = ", ".join(f"{v!r} ({n} rows)" for v, n in unknown.most_common(MAX_SHOWN))
        raise UserError(f"{where}: label column {t.label!r} holds {shown}, not a class of the training dataset "
                        f"{schema.name} (coded {', '.join(repr(v) for v in values)}); the label is coded differently: "
                        "recode the column, or list its values in the training classes' order in table.label_values")
    return np.array([index[k] for k in keys], dtype=np.int64)


def _checks(spec: DataSpec, schema: Schema, df, parsed, x_cont, missing, training) -> dict:
    """What fits the pipeline but differs from the training cohort (reported, never refused)."""
    t = spec.table
    used = {f.column for f in schema.features} | {t.id, t.label, t.split, spec.image.column} | set(t.keep)
    ignored = [c for c in df.columns if c not in used and c not in set(t.exclude)]
    unseen = {}
    for j, f in enumerate(schema.categorical):
        known = set(f.categories or [])
        counts = collections.Counter(k for k in parsed.cat[:, j] if k is not None and k not in known)
        if counts:
            unseen[f.name] = {"rows": int(sum(counts.values())), "values": dict(counts.most_common(MAX_SHOWN))}
    far = {}
    train_rows = training.indices("train")
    n_cont = schema.n_cont
    observed_train = ~training.missing[train_rows][:, :n_cont]
    for j, f in enumerate(schema.continuous):
        seen = training.x_cont[train_rows, j][observed_train[:, j]]
        if not len(seen):
            continue
        lo, hi = float(seen.min()), float(seen.max())
        z = x_cont[:, j][~missing[:, j]]
        out = (z < lo - FAR_SD) | (z > hi + FAR_SD)
        if out.any():
            raw = z[out].astype(np.float64) * f.std + f.mean
            far[f.name] = {"rows": int(out.sum()), "training_range": [_raw(lo, f), _raw(hi, f)],
                           "min": float(f"{raw.min():.6g}"), "max": float(f"{raw.max():.6g}")}
    return {"ignored_columns": ignored, "unseen_categories": unseen, "far_outside_training_range": far,
            "far_rule": f"more than {FAR_SD:g} training standard deviation(s) beyond the training split's range",
            "missing_fraction": float(missing.mean()) if missing.size else 0.0}


def _raw(z: float, f) -> float:
    """A z-score back on the feature's scale, to 6 significant digits (float32 storage leaves noise past them)."""
    return float(f"{z * f.std + f.mean:.6g}")


def check_lines(checks: dict) -> list[str]:
    """The checks of :func:`prepare_like` in words, one line each ([] when there is nothing to say)."""
    out = []
    if checks.get("ignored_columns"):
        cols = checks["ignored_columns"]
        out.append(f"{len(cols)} column(s) not used by the training pipeline (ignored): "
                   f"{', '.join(cols[:MAX_SHOWN])}{', ...' if len(cols) > MAX_SHOWN else ''}")
    for name, rec in (checks.get("unseen_categories") or {}).items():
        shown = ", ".join(f"{v!r} ({n})" for v, n in rec["values"].items())
        out.append(f"column {name}: {rec['rows']} rows hold categories never seen in training ({shown}); they are "
                   "coded as missing")
    far = checks.get("far_outside_training_range") or {}
    if far:
        worst = sorted(far.items(), key=lambda kv: -kv[1]["rows"])
        shown = "; ".join(f"{name} {rec['rows']} rows (training {rec['training_range'][0]:.4g} to "
                          f"{rec['training_range'][1]:.4g}, here {rec['min']:.4g} to {rec['max']:.4g})"
                          for name, rec in worst[:MAX_SHOWN])
        out.append(f"{len(far)} column(s) with values far outside the training range ({checks['far_rule']}): {shown}"
                   + ("; ..." if len(far) > MAX_SHOWN else "") + " (all of them in provenance.json's checks)")
    return out


def _provenance(spec: DataSpec, schema: Schema, train_root: Path, cohort, asm: dict) -> dict:
    counts = {}
    for s in SPLITS:
        lab = asm["labels"][asm["split"] == s]
        if len(lab):
            counts[s] = {"rows": int(len(lab)), "classes": {c: int((lab == i).sum())
                                                           for i, c in enumerate(schema.class_names)}}
    sources = dict(cohort.sources)
    if hasattr(asm["images"], "total_bytes"):
        sources["image files"] = asm["images"].total_bytes()
    return {
        "name": spec.name,
        "amfmedit": __version__,
        "spec_file": spec.path,
        "spec": spec.to_dict(),
        "overrides": dict(spec.overrides),
        "like": {"dataset": schema.name, "path": str(train_root.resolve()), "schema_sha256": schema_digest(schema)},
        "sources": sources,
        "rows": {"read": asm["read"], "kept": int(len(asm["ids"])), "dropped": asm["checks"]["dropped"]},
        "counts": counts,
        "features": {"continuous": schema.n_cont, "categorical": len(schema.categorical)},
        "image_shape": [schema.image.channels, schema.image.height, schema.image.width],
        "image_rules": asm["images"].rules() if hasattr(asm["images"], "rules") else None,
        "checks": asm["checks"],
        "warnings": check_lines(asm["checks"]),
    }


def _write(tmp: Path, schema: Schema, asm: dict, provenance: dict, truth) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"id": pa.array(asm["ids"].tolist(), pa.string()), "split": pa.array(asm["split"].tolist(), pa.string()),
               "label": pa.array(asm["labels"], pa.int64())}
    names = schema.feature_names
    for j, name in enumerate(names[: schema.n_cont]):
        columns[name] = pa.array(asm["x_cont"][:, j], pa.float32())
    for j, name in enumerate(names[schema.n_cont:]):
        columns[name] = pa.array(asm["x_cat"][:, j], pa.int64())
    pq.write_table(pa.table(columns), tmp / "tabular.parquet")
    if asm["kept"]:
        write_kept(tmp / KEPT_FILE, asm["ids"], asm["kept"])
    for name in ("missing", "image_present"):
        with disk_full_as_error(tmp / f"{name}.npy"):
            save_npy(tmp / f"{name}.npy", asm[name])
    if truth is not None:
        pq.write_table(pa.Table.from_pandas(truth, preserve_index=False), tmp / "truth.parquet")
    schema.save(tmp / "schema.json")
    write_json(tmp / "provenance.json", provenance)
