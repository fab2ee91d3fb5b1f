"""``prepare``: raw dataset (via its spec) -> prepared dataset folder.

The steps are the same for every reader: select features, parse them, drop or reject bad
rows, code the labels, assign splits, fit statistics on the train split only (Appendix A.1:
median imputation and z-scores; reference code fits its scaler on all rows, which leaks
test information), and stream the images through the one transform path into a uint8
array. Rows without an image are refused, dropped or kept (``image.missing``); a kept row
stores zeros in its image slot and False in ``image_present.npy``, and a row with neither an
image nor any feature value is dropped (it holds nothing but a label). The folder is built
under a temporary name and renamed when complete, so a failure leaves nothing behind and an
existing dataset is replaced only with ``force``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from amfmedit import __version__
from amfmedit.data.prepared import KEPT_FILE, MARKER, SPLITS, write_kept
from amfmedit.data.readers import READERS, RawCohort, require_columns
from amfmedit.data.schema import SCHEMA_FILE, Feature, ImageInfo, Schema
from amfmedit.data.spec import DataSpec
from amfmedit.data.synthetic import generate
from amfmedit.data.transform import (
    ParsedTable,
    encode,
    fit_features,
    image_to_uint8,
    is_boolean,
    parse_features,
    sort_categories,
)
from amfmedit.data.workers import default_workers, ordered_map
from amfmedit.data.targets import ClassTarget, NumericTarget, TimeEventTarget, first_bad
from amfmedit.errors import UserError
from amfmedit.io import (
    DiskFullError,
    disk_full_as_error,
    exclusive_lock,
    is_disk_full,
    remove_stale,
    save_npy,
    staging_dir,
    temp_prefix,
    write_json,
    write_text,
)
from amfmedit.paths import data_dir as _data_dir

Progress = Callable[[str, int, int], None]  # (phase, done, total)
IMAGE_BLOCK_BYTES = 16 << 20  # images are converted and written in blocks of about this size


@dataclass
class PrepareResult:
    path: Path
    schema: Schema
    provenance: dict


@dataclass
class _Assembled:
    """Rows that survive every check, in output order."""

    ids: np.ndarray  # (N,) str
    split: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) int64: class index, or the outcome coding's stratum (amfmedit.data.targets)
    class_names: list[str]
    features: list[Feature]  # fitted, continuous first then categorical
    x_cont: np.ndarray
    x_cat: np.ndarray
    missing: np.ndarray
    images: object  # image source restricted to the rows
    image_present: np.ndarray  # (N,) bool
    dropped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # the coding's float columns (time, event, target)
    target_record: dict = field(default_factory=dict)  # Schema.target
    kept: dict[str, np.ndarray] = field(default_factory=dict)  # table.keep: raw values of the output rows


IMAGE_MISSING = ("error", "drop", "keep")  # image.missing: a row without an image


def apply_overrides(spec: DataSpec, *, name=None, image_size=None, label=None, split_column=None,
                    image_missing=None, categorical: str | None = None) -> DataSpec:
    """Command-line overrides of a spec (a new object; the spec itself is untouched), recorded in its
    ``overrides`` as typed.

    ``categorical``: ``"none"`` (every feature continuous, as the authors' OL3I code) or columns
    ``"a,b"``; it replaces ``table.categorical`` and switches off ``table.categorical_dtypes``, so
    the columns named are exactly the categorical ones.
    """
    spec = dataclasses.replace(spec, table=dataclasses.replace(spec.table), image=dataclasses.replace(spec.image),
                               overrides=dict(spec.overrides))
    if name is not None:
        if not name or "/" in name or name.startswith("."):
            raise UserError(f"--name {name!r}: must be a plain folder name")
        spec.name = name
        spec.overrides["--name"] = name
    if image_size is not None:
        if image_size < 8:
            raise UserError(f"--image-size {image_size}: must be at least 8 pixels")
        spec.image.size = [image_size, image_size]
        spec.overrides["--image-size"] = str(image_size)
    if label is not None:
        spec.table.label = label
        spec.overrides["--label"] = label
    if split_column is not None:
        spec.table.split = split_column or None
        spec.overrides["--split-column"] = split_column
    if image_missing is not None:
        if image_missing not in IMAGE_MISSING:
            raise UserError(f"--image-missing {image_missing}: use one of {', '.join(IMAGE_MISSING)}")
        spec.image.missing = image_missing
        spec.overrides["--image-missing"] = image_missing
    if categorical is not None:
        spec.table.categorical = categorical_columns(categorical)
        spec.table.categorical_dtypes = []
        spec.overrides["--categorical"] = categorical
    return spec


def categorical_columns(text: str) -> list[str]:
    """``--categorical`` as typed -> the column names: ``none`` is no column, ``a,b`` are a and b."""
    if text.strip().lower() == "none":
        return []
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise UserError(f"--categorical {text!r}: give column names separated by commas (gender,smoker), "
                        f"or none for every feature continuous")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"--categorical {text}: column {dup[0]!r} is named twice")
    return names


def prepare(
    spec: DataSpec,
    *,
    raw: str | Path | None = None,
    data_dir: str | Path | None = None,
    force: bool = False,
    synthetic: dict | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    target: ClassTarget | TimeEventTarget | NumericTarget,
) -> PrepareResult:
    """Prepare the dataset described by ``spec`` into ``<data_dir>/<spec.name>/``.

    ``raw`` overrides the spec's raw folder; for synthetic specs it is where the generated raw
    files are kept (default: a temporary folder removed afterwards). ``synthetic`` overrides
    generator options (``patients``, ``seed``, ``features``, ``prevalence``, ``classes``) and
    ``workers`` sets the processes that render synthetic images and convert images (default:
    one per CPU for 1,000 images or more; see :mod:`amfmedit.data.workers`).
    ``progress(phase, done, total)`` is called as work advances. ``target``: how the outcome
    column(s) are coded (:mod:`amfmedit.data.targets`: class labels, time and event, a continuous
    value), the prediction kind's: call :func:`amfmedit.stages.prepare.prepare`, which finds it from
    the spec's ``task``.
    """
    final = _data_dir(data_dir) / spec.name
    if final.exists() and not force:
        raise UserError(f"{final} already exists; pass --force to replace it (it is kept until the new one is complete)")
    if final.parent.exists() and not final.parent.is_dir():
        raise UserError(f"--data-dir {final.parent}: is a file, not a folder; pass a folder for prepared datasets")
    busy = (f"{spec.name}: another amfmedit process (pid {{pid}}) is preparing this dataset in {final.parent}; "
            f"wait for it to finish")
    made_data_dir = not final.parent.exists()
    try:
        with exclusive_lock(final, busy):
            # leftovers of a prepare that was killed (its temporary folders name their owner pid)
            remove_stale(final.parent, suffixes=(".partial", ".raw", ".tmp"))
            if final.exists() and not force:  # finished by another process while this one waited to start
                raise UserError(f"{final} already exists; pass --force to replace it (it is kept until the new one "
                                f"is complete)")
            return _prepare_locked(spec, final, raw=raw, force=force, synthetic=synthetic, progress=progress,
                                   workers=workers, target=target)
    except BaseException:
        if made_data_dir:  # a failed first prepare leaves no empty data folder either
            with contextlib.suppress(OSError):
                final.parent.rmdir()
        raise


def _prepare_locked(spec: DataSpec, final: Path, *, raw, force: bool, synthetic: dict | None,
                    progress: Progress | None, workers: int | None, target) -> PrepareResult:
    progress = progress or (lambda phase, done, total: None)
    temp_raw: Path | None = None
    try:
        generated = None
        if spec.synthetic is not None:

            if raw is None:
                final.parent.mkdir(parents=True, exist_ok=True)
                temp_raw = Path(tempfile.mkdtemp(prefix=temp_prefix(spec.name), suffix=".raw", dir=final.parent))
                raw_dir = temp_raw
                try:
                    generated = generate(spec, raw_dir, overrides=synthetic or {}, progress=progress, workers=workers)
                except Exception as exc:  # a full disk: say that these files were temporary, and are gone
                    if not is_disk_full(exc):
                        raise
                    where = exc.path if isinstance(exc, DiskFullError) else raw_dir
                    raise DiskFullError(where, note=" (the generated raw files, now removed)") from exc
            else:
                raw_dir = Path(raw)
                if raw_dir.exists() and (not raw_dir.is_dir() or any(raw_dir.iterdir())):
                    raise UserError(f"--raw {raw_dir}: folder is not empty; for a synthetic cohort --raw is where "
                                    f"the generated raw files are written, so give a new folder")
                if raw_dir.exists():
                    raw_dir.rmdir()
                with staging_dir(raw_dir) as staged:  # kept raw files appear complete or not at all
                    generated = generate(spec, staged, overrides=synthetic or {}, progress=progress,
                                         workers=workers)
            spec = dataclasses.replace(spec, descriptions={**generated.descriptions, **spec.descriptions})
        else:
            if synthetic:
                raise UserError(f"--{next(iter(synthetic))}: only synthetic data specs take generator options")
            raw_text = raw if raw is not None else spec.raw
            if raw_text is None:
                raise UserError(f"{spec.path or spec.name}: no raw data location; pass --raw PATH or set 'raw' in the spec")
            raw_dir = Path(raw_text)
            if not raw_dir.exists():
                raise UserError(f"{raw_dir}: raw data not found; pass --raw PATH to the folder holding the dataset files")
        cohort = READERS[spec.reader](spec, raw_dir)
        target.check_spec(spec.table, spec.path or spec.name)
        asm = _assemble(spec, cohort, progress, target)
        rules = spec.image.rules()
        ct = spec.image.modality == "ct"
        info = ImageInfo(modality=spec.image.modality, channels=spec.channels, height=spec.image.size[0],
                         width=spec.image.size[1], window=rules.window,
                         png=rules.png if ct else "error", spacing_mm=rules.spacing_mm if ct else None,
                         field_mm=rules.field_mm if ct else None)
        schema = Schema(
            name=spec.name,
            task=spec.task,
            class_names=asm.class_names,
            features=asm.features,
            image=info,
            id_column=spec.table.id,
            label_source=spec.table.label,
            image_column=spec.image.column if spec.image.source == "column" else None,
            groups=dict(spec.groups),
            target=asm.target_record,
        )
        provenance = _provenance(spec, cohort, asm, raw_dir if temp_raw is None else None, target)
        truth = None
        if generated is not None:
            truth, oracle = generated.finish(asm.ids, asm.labels, asm.class_names, asm.split, spec.table.label)
            provenance["synthetic"] = {**generated.record, "oracle": oracle}
        with staging_dir(final, force=force) as tmp:
            _write(tmp, spec, schema, asm, provenance, truth, progress, workers)
        return PrepareResult(final, schema, provenance)
    finally:
        if temp_raw is not None:
            shutil.rmtree(temp_raw, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# rows, features, labels, splits


def _select_features(spec: DataSpec, df, where: str, target) -> list[Feature]:
    import pandas as pd

    t = spec.table
    reserved = {t.id, t.label, t.split, spec.image.column, *target.sources(t)} - {None}
    require_columns(df, t.features, where, "feature column")
    require_columns(df, t.categorical, where, "categorical column")
    require_columns(df, list(t.rename) + list(t.strip_suffix) + t.coerce_numeric, where)
    require_columns(df, t.keep, where, "kept column")
    columns = t.features or [c for c in df.columns if c not in reserved and c not in set(t.exclude) | set(t.keep)]
    if not columns:
        raise UserError(f"{where}: no feature columns left after excluding id, label, split and table.exclude")
    typed = spec.overrides.get("--categorical")
    outside = [c for c in t.categorical if c not in columns]
    if typed is not None and outside:  # a spec may list columns it excludes; a typed option names features
        raise UserError(f"--categorical {typed}: column {outside[0]!r} is not a feature of {where} (it is the id, "
                        f"outcome, split or image column, or in table.exclude / table.keep)")
    groups = [(re.compile(rx), g) for rx, g in spec.groups.items()]
    features = []
    for col in columns:
        if col in reserved:
            raise UserError(f"{where}: column {col!r} is the id, outcome, split or image column and cannot be a feature")
        s = df[col]
        if col in t.categorical:
            kind = "categorical"
        elif is_boolean(s):
            kind = "categorical" if "bool" in t.categorical_dtypes else "continuous"
        elif pd.api.types.is_numeric_dtype(s.dtype) or col in t.strip_suffix or col in t.coerce_numeric:
            kind = "continuous"
        else:
            # a text column is categorical only when most of its values are not numbers: a
            # numeric column with a few typos must fail loudly, not become a category
            text = s.dropna().astype("string").str.strip()
            numbers = pd.to_numeric(text, errors="coerce").notna()
            numeric = numbers.mean() if len(text) else 0.0
            words = text[~numbers & (text != "")]
            if "string" not in t.categorical_dtypes and numeric < 0.5 and len(words):
                raise _text_not_continuous(col, words, where, typed)  # continuous, it would be all missing
            kind = "categorical" if ("string" in t.categorical_dtypes and numeric < 0.5) else "continuous"
        name = t.rename.get(col, col)
        features.append(Feature(
            name=name, kind=kind,
            group=next((g for rx, g in groups if rx.search(name)), None),
            description=spec.descriptions.get(name) or spec.descriptions.get(col),
            source=col if name != col else None,
            strip_suffix=t.strip_suffix.get(col),
            coerce=col in t.coerce_numeric,
        ))
    names = [f.name for f in features]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"{where}: feature name {dup[0]!r} occurs twice (check table.rename)")
    for f in features:
        if f.name in ("id", "split", "label", *target.columns):
            raise UserError(f"{where}: feature {f.name!r} clashes with a prepared-table column; rename it (table.rename) "
                            f"or leave it out (table.exclude)")
    return [f for f in features if f.kind == "continuous"] + [f for f in features if f.kind == "categorical"]



def _text_not_continuous(column: str, text, where: str, typed: str | None) -> UserError:
    """A text column typed continuous: its values would all become missing, so it is refused."""
    values = sort_categories(text.tolist())
    shown = ", ".join(repr(v) for v in values[:5]) + (f" and {len(values) - 5} more" if len(values) > 5 else "")
    asked = f"--categorical {typed}" if typed is not None else "table.categorical_dtypes leaves out \"string\""
    return UserError(f"{where}: column {column!r} holds text ({shown}), not numbers, so it cannot be continuous "
                     f"({asked}); keep it categorical (name it in --categorical or table.categorical) or recode it "
                     f"as numbers (0/1)")


def _assemble(spec: DataSpec, cohort: RawCohort, progress: Progress, target) -> _Assembled:
    t = spec.table
    df, where = cohort.table, cohort.where
    require_columns(df, [t.id, *target.sources(t)] + ([t.split] if t.split else []), where)
    ids = df[t.id].astype("string").str.strip().to_numpy(dtype=object, na_value=None)
    if any(i is None for i in ids):
        raise UserError(f"{where}: column {t.id!r} has an empty id at row {[i is None for i in ids].index(True) + 1}; "
                        f"every row needs an id")
    ids = np.array([str(i) for i in ids], dtype=object)  # plain str, so messages show 'p004'
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise UserError(f"{where}: id {uniq[counts > 1][0]!r} occurs {counts[counts > 1][0]} times in column "
                        f"{t.id!r}; ids must be unique")
    features = _select_features(spec, df, where, target)
    progress("tabular", 0, 1)
    parsed = parse_features(features, df, where=where, ids=ids)
    keep = np.ones(len(df), bool)
    dropped = dict(cohort.dropped)
    warnings: list[str] = []

    if t.drop_missing:
        miss = parsed.missing.any(axis=1)
        dropped["missing feature values"] = int(miss.sum())
        keep &= ~miss

    coded = target.code(df, t, ids, keep, where)  # the outcome: class labels, time and event, or a value
    keep = coded.keep
    dropped.update(coded.dropped)
    class_names = coded.class_names

    present = cohort.images.present()
    no_image = keep & ~present
    mode = spec.image.missing
    if no_image.any():
        if mode == "drop":
            dropped["image file missing"] = int(no_image.sum())  # removed after the split, below
        elif mode == "keep":
            neither = no_image & parsed.missing.all(axis=1)
            dropped["no image and no feature values"] = int(neither.sum())
            keep &= ~neither
        else:
            i = int(np.flatnonzero(no_image)[0])
            loc = getattr(cohort.images, "paths", None)
            shown = str(loc[i]) if loc is not None else f"{cohort.images.path.name} has no dataset {ids[i]!r}"
            raise UserError(f"{where}: id {ids[i]!r} has no image ({shown}; {int(no_image.sum())} ids without "
                            f"images); add the images, remove the rows, or keep them without an image with "
                            f"image.missing = \"keep\" in the spec (--image-missing keep)")
        named = getattr(cohort.images, "named_but_absent", None)
        gone = (named() & keep) if named is not None and mode == "keep" else np.zeros(len(keep), bool)
        if gone.any():
            i = int(np.flatnonzero(gone)[0])
            warnings.append(f"{int(gone.sum())} rows name an image file that does not exist (first: id {ids[i]!r}, "
                            f"{cohort.images.paths[i]}); they are kept without an image (image.missing = \"keep\")")
    unmatched = cohort.images.unmatched()
    if unmatched:
        raise UserError(f"{cohort.images.path.name}: image {unmatched[0]!r} has no row in {where} "
                        f"({len(unmatched)} such images); remove them or add the rows")

    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise UserError(f"{where}: no rows left after filtering ({dropped}); check the spec and the files")
    labels = coded.strata[rows]
    split = _splits(spec, df, ids, rows, labels, where, stratify=target.stratify)
    # NOTE[paper]: the reference DVM preparation draws its split first and then removes the
    # adverts whose image file is missing; doing the same keeps the split identical to it.
    if mode != "keep":
        has_image = present[rows]
        rows, labels, split = rows[has_image], labels[has_image], split[has_image]
    if not present[rows].any():
        raise UserError(f"{where}: no row has an image file; check image.folder / image.column and --raw")
    for s in SPLITS:
        if not (split == s).any():
            counts_text = ", ".join(f"{x} {int((split == x).sum())}" for x in SPLITS)
            raise UserError(f"{where}: split {s!r} is empty ({counts_text}); every split needs rows "
                            f"(fix the split column or split.fractions)")
    values = {k: v[rows] for k, v in coded.values.items()}
    warnings += target.check_splits(labels, values, split, SPLITS, where)

    sub = ParsedTable(cont=parsed.cont[rows], cat=parsed.cat[rows])
    fitted = fit_features(features, sub, split == "train", where=where)
    x_cont, x_cat, missing = encode(fitted, sub)
    progress("tabular", 1, 1)
    return _Assembled(ids=ids[rows], split=split, labels=labels, class_names=class_names, features=fitted,
                      x_cont=x_cont, x_cat=x_cat, missing=missing, images=cohort.images.take(rows),
                      image_present=present[rows].copy(), dropped={k: v for k, v in dropped.items() if v},
                      warnings=warnings, targets=values, target_record=target.schema_record(t, values, split == "train"),
                      kept={c: df[c].to_numpy()[rows] for c in t.keep})


def _splits(spec: DataSpec, df, ids, rows, labels, where, stratify: bool = False) -> np.ndarray:
    t = spec.table
    if t.split:
        raw = df[t.split].astype("string").str.strip().str.lower().to_numpy(dtype=object, na_value=None)[rows]
        bad = np.array([v not in SPLITS for v in raw])
        if bad.any():
            shown = df[t.split].astype(object).to_numpy()[rows]
            raise first_bad(where, t.split, ids[rows], bad, "the split value", "allowed values are train, val, test",
                         values=shown)
        return raw.astype(str)
    from sklearn.model_selection import train_test_split

    # Two-stage split as the reference DVM preparation: test first, then val from the rest.
    f_train, f_val, f_test = spec.split.fractions
    idx = np.arange(len(rows))
    strat = labels if (spec.split.stratify or stratify) else None  # a coding may ask for it (survival: by event)
    try:
        rest, test = train_test_split(idx, test_size=f_test, random_state=spec.split.seed, stratify=strat)
        train, val = train_test_split(rest, test_size=f_val / (f_train + f_val), random_state=spec.split.seed,
                                      stratify=None if strat is None else labels[rest])
    except ValueError as exc:
        raise UserError(f"{where}: cannot split {len(rows)} rows with fractions {spec.split.fractions} ({exc}); "
                        f"use more rows or set split.stratify = false") from None
    out = np.empty(len(rows), dtype=object)
    out[train], out[val], out[test] = "train", "val", "test"
    return out.astype(str)


# ---------------------------------------------------------------------------------------------
# output


def _provenance(spec: DataSpec, cohort: RawCohort, asm: _Assembled, raw_dir: Path | None,
                target) -> dict:
    counts = {}
    table_present = ~asm.missing.all(axis=1)
    for s in SPLITS:
        here = asm.split == s
        lab = asm.labels[here]
        img, tab = asm.image_present[here], table_present[here]
        counts[s] = {"rows": int(len(lab)),
                     "classes": {c: int((lab == i).sum()) for i, c in enumerate(asm.class_names)},
                     # availability patterns: rows with both modalities, without an image, without a table
                     "availability": {"complete": int((img & tab).sum()), "table_only": int((~img & tab).sum()),
                                      "image_only": int((img & ~tab).sum())},
                     **target.split_record(lab, {k: v[here] for k, v in asm.targets.items()}, asm.class_names)}
    sources = dict(cohort.sources)
    images = asm.images
    if hasattr(images, "total_bytes"):
        sources["image files"] = images.total_bytes()
    rules = images.rules() if hasattr(images, "rules") else None
    return {
        "name": spec.name,
        "amfmedit": __version__,
        "spec_file": spec.path,
        "spec": spec.used_dict(),  # only the blocks this preparation read
        "overrides": dict(spec.overrides),  # the command-line options that changed the spec, as typed
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),  # the report lists it with the run's
        "raw": str(Path(raw_dir).resolve()) if raw_dir is not None else None,
        "sources": sources,
        "rows": {"read": int(len(cohort.table)) + sum(cohort.dropped.values()), "kept": int(len(asm.ids)),
                 "dropped": asm.dropped},
        "counts": counts,
        "features": {"continuous": sum(f.kind == "continuous" for f in asm.features),
                     "categorical": sum(f.kind == "categorical" for f in asm.features)},
        "image_shape": [spec.channels, *spec.image.size],
        "image_rules": rules,  # files per intensity rule (dicom-hu, npy-hu, png-windowed, ...); None: not files
        "warnings": asm.warnings,
    }


def _write(tmp: Path, spec: DataSpec, schema: Schema, asm: _Assembled, provenance: dict, truth,
           progress: Progress, workers: int | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"id": pa.array(asm.ids.tolist(), pa.string()), "split": pa.array(asm.split.tolist(), pa.string()),
               "label": pa.array(asm.labels, pa.int64())}
    for name, values in asm.targets.items():
        columns[name] = pa.array(values, pa.float64())
    names = schema.feature_names
    for j, name in enumerate(names[: schema.n_cont]):
        columns[name] = pa.array(asm.x_cont[:, j], pa.float32())
    for j, name in enumerate(names[schema.n_cont:]):
        columns[name] = pa.array(asm.x_cat[:, j], pa.int64())
    # a full disk names the file (staging_dir moves the name from the temporary folder to the final one)
    with disk_full_as_error(tmp / "tabular.parquet"):
        pq.write_table(pa.table(columns), tmp / "tabular.parquet")
    if asm.kept:
        with disk_full_as_error(tmp / KEPT_FILE):
            write_kept(tmp / KEPT_FILE, asm.ids, asm.kept)
    for name, array in (("missing.npy", asm.missing), ("image_present.npy", asm.image_present)):
        with disk_full_as_error(tmp / name):
            save_npy(tmp / name, array)
    with disk_full_as_error(tmp / schema.image.file):
        write_images(tmp / schema.image.file, asm.images, schema.image, spec, progress, workers)
    if truth is not None:
        with disk_full_as_error(tmp / "truth.parquet"):
            pq.write_table(pa.Table.from_pandas(truth, preserve_index=False), tmp / "truth.parquet")
    schema.save(tmp / SCHEMA_FILE)
    write_json(tmp / "provenance.json", provenance)
    write_text(tmp / MARKER, f"amfmedit {__version__}\n")


def _convert_chunk(job: tuple) -> np.ndarray:
    """Worker: raw images of a run of rows -> uint8 (k, C, H, W); zeros for a row without an image."""
    images, info, raw_size = job
    blank = np.zeros((info.channels, info.height, info.width), np.uint8)
    return np.stack([blank if arr is None else image_to_uint8(arr, info, where=where, raw_size=raw_size)
                     for arr, where in images])


def write_images(path: Path, images, info: ImageInfo, spec: DataSpec, progress: Progress,
                  workers: int | None) -> None:
    """Stream images into ``images.npy`` block by block: never the whole stack in memory.

    Blocks are converted on worker processes for large datasets (reading, windowing and
    resizing dominate) and written here in row order.
    """
    n = len(images)
    shape = info.shape
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, *shape))
    header = mm.offset  # the header is written and the file sized; rows follow at this offset
    del mm
    if workers is None:
        workers = default_workers(n, 1000)
    # blocks small enough to bound memory and to keep every worker busy
    block = int(np.clip(min(IMAGE_BLOCK_BYTES // max(int(np.prod(shape)), 1), -(-n // (4 * workers))), 1, 256))
    raw_size = spec.image.raw_size or None
    jobs = ((images.take(np.arange(s, min(s + block, n))), info, raw_size) for s in range(0, n, block))
    done = 0
    with open(path, "r+b") as fh:
        fh.seek(header)
        for arr in ordered_map(_convert_chunk, jobs, workers=workers):
            fh.write(memoryview(np.ascontiguousarray(arr)).cast("B"))
            done += len(arr)
            progress("images", done, n)
    progress("images", n, n)
