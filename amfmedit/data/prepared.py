"""Reading a prepared dataset (the only thing later stages read; never the raw files).

A prepared dataset is a folder ``<data-dir>/<name>/`` holding:

- ``tabular.parquet``: one row per sample, columns ``id`` (str), ``split`` (train/val/test),
  ``label`` (int, 0..C-1: the class, or the outcome coding's stratum: the event indicator of a
  survival task, 0 for regression), the outcome's float columns (``schema.target_columns``:
  ``time`` and ``event``, or ``target``), then every feature in ``schema.feature_names`` order — continuous
  ones imputed and z-scored (float32), categorical ones as integer codes (int64, 0 = missing).
- ``images.npy``: uint8 array (N, C, H, W), rows in the same order, windowed to [0, 255];
  zeros for a row without an image.
- ``missing.npy``: bool array (N, n_features), columns in ``schema.feature_names`` order
  (continuous first, then categorical, as the model inputs): the value was missing before
  imputation. A row whose every feature is missing has no table (``table_present`` False).
- ``image_present.npy``: bool array (N,): the row has an image (False only for rows kept
  with ``image.missing = "keep"``; a dataset prepared without the file has every image).
- ``schema.json`` (:class:`~amfmedit.data.schema.Schema`) and ``provenance.json`` (spec, source
  file sizes, counts per split, class and availability pattern; seed, oracle AUCs and
  informative features for synthetic cohorts).
- ``COMPLETE``: written last; a folder without it is not a prepared dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from amfmedit.data.schema import SCHEMA_FILE, Schema, damaged_hint
from amfmedit.errors import UserError
from amfmedit.io import read_json
from amfmedit.paths import data_dir as _data_dir

SPLITS = ("train", "val", "test")
MARKER = "COMPLETE"


@dataclass
class PreparedDataset:
    """In-memory view of a prepared dataset; images stay memory-mapped until asked for."""

    root: Path
    schema: Schema
    ids: np.ndarray  # (N,) str
    split: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) int64
    x_cont: np.ndarray  # (N, n_cont) float32
    x_cat: np.ndarray  # (N, n_cat) int64
    missing: np.ndarray  # (N, n_features) bool, continuous then categorical (x_cont, x_cat order)
    images: np.ndarray  # (N, C, H, W) uint8, np.memmap
    image_present: np.ndarray | None = None  # (N,) bool; None (a hand-built dataset): every row has one
    table_present: np.ndarray | None = None  # (N,) bool: not every feature missing; None: from ``missing``
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # schema.target_columns -> (N,) float64

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.image_present is None:
            self.image_present = np.ones(n, bool)
        if self.table_present is None:
            # fixed here, from the prepared mask: masking features later (data.masking) is not absence
            self.table_present = ~np.asarray(self.missing, dtype=bool).all(axis=1) if self.missing.shape[1] \
                else np.ones(n, bool)

    @property
    def complete(self) -> np.ndarray:
        """(N,) bool: the row has both an image and a table."""
        return self.image_present & self.table_present

    def missing_features(self, split: str = "train") -> list[int]:
        """Input-order indices of the features missing in at least one row of ``split`` that has a
        table: what a token encoder's ``missing_features`` reads (a row without a table is all
        missing and would list every feature; its table is replaced as a whole)."""
        rows = self.indices(split)
        rows = rows[self.table_present[rows]]
        return [int(j) for j in np.flatnonzero(self.missing[rows].any(axis=0))]

    @property
    def name(self) -> str:
        return self.schema.name

    def __len__(self) -> int:
        return len(self.ids)

    def indices(self, split: str) -> np.ndarray:
        """Row indices of one split, in file order."""
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        return np.flatnonzero(self.split == split)

    @property
    def provenance(self) -> dict:
        return read_json(self.root / "provenance.json", hint=damaged_hint(self.root))


def list_prepared(data_dir: str | Path | None = None) -> list[str]:
    """Names of the complete prepared datasets in the data directory."""
    root = _data_dir(data_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / MARKER).is_file())


def dataset_path(name: str | Path, data_dir: str | Path | None = None) -> Path:
    """Resolve ``--data NAME`` (or a folder path) to a complete prepared dataset folder."""
    p = Path(name)
    if (p / MARKER).is_file():
        return p
    root = _data_dir(data_dir)
    q = root / str(name)
    if (q / MARKER).is_file():
        return q
    have = list_prepared(root)
    listing = ", ".join(have) if have else "none"
    raise UserError(
        f"no prepared dataset {str(name)!r} in {root}/ (prepared there: {listing}); "
        f"run `amfmedit prepare --data {name}` first or pass --data-dir"
    )


def npy_header(path: Path, *, hint: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` of a ``.npy`` file, checking that the file holds all of it.

    ``np.load(mmap_mode="r")`` of a truncated file fails with "mmap length is greater than file
    size" (or, worse, a plain load reads garbage): the size the header promises is compared with
    the size on disk first. A damaged header or a short file is a UserError naming ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found; {hint}")
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            offset = fh.tell()
    except Exception as exc:  # noqa: BLE001 - any unreadable header gets the same answer
        raise UserError(f"{path}: not a readable .npy file ({type(exc).__name__}: {exc}); {hint}") from None
    if dtype.hasobject or fortran:
        raise UserError(f"{path}: unexpected array layout (dtype {dtype}, fortran order {fortran}); {hint}")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != need:
        raise UserError(f"{path}: file is {size:,} bytes but its shape {tuple(shape)} of {dtype} needs {need:,} "
                        f"(truncated or damaged copy); {hint}")
    return tuple(int(x) for x in shape), dtype, offset


def _read_table(path: Path, schema: Schema, hint: str):
    import pyarrow.parquet as pq

    if not path.is_file():
        raise UserError(f"{path}: file not found; {hint}")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - Arrow's errors for damaged files vary
        raise UserError(f"{path}: not a readable Parquet file ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); {hint}") from None
    types = table.schema
    want = {"id": "string", "split": "string", "label": "integer"}
    want.update({c: "float" for c in schema.target_columns})
    want.update({f.name: "float" for f in schema.continuous})
    want.update({f.name: "integer" for f in schema.categorical})
    absent = [c for c in want if c not in types.names]
    if absent:
        raise UserError(f"{path}: column {absent[0]!r} of schema.json is missing"
                        + (f" (and {len(absent) - 1} more)" if len(absent) > 1 else "") + f"; {hint}")
    import pyarrow.types as pat

    check = {"string": lambda t: pat.is_string(t) or pat.is_large_string(t), "integer": pat.is_integer,
             "float": pat.is_floating}
    for col, kind in want.items():
        t = types.field(col).type
        if not check[kind](t):
            raise UserError(f"{path}: column {col!r} has type {t}, schema.json needs {kind} values; {hint}")
    try:
        return table.to_pandas()
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{path}: cannot read the table ({type(exc).__name__}: {exc}); {hint}") from None


def load_prepared(name: str | Path, data_dir: str | Path | None = None) -> PreparedDataset:
    """Load a prepared dataset by name (in the data directory) or by folder path.

    Every file is checked against ``schema.json`` before use (Parquet columns and types, row
    counts, the ``.npy`` shapes, dtypes and sizes, split and label values): a damaged or
    truncated dataset is a one-line UserError naming the file and saying to prepare it again.
    """
    root = dataset_path(name, data_dir)
    hint = damaged_hint(root)
    schema = Schema.load(root / SCHEMA_FILE)
    table = _read_table(root / "tabular.parquet", schema, hint)
    n = len(table)
    where = root / "tabular.parquet"
    prov = read_json(root / "provenance.json", hint=hint)
    kept = prov.get("rows", {}).get("kept") if isinstance(prov, dict) and isinstance(prov.get("rows"), dict) else None
    if kept is not None and kept != n:
        raise UserError(f"{where}: has {n} rows, provenance.json records {kept}; {hint}")
    bad_split = ~table["split"].isin(SPLITS).to_numpy()
    if bad_split.any():
        raise UserError(f"{where}: split value {table['split'][bad_split].iloc[0]!r} is not one of "
                        f"{', '.join(SPLITS)}; {hint}")
    labels = table["label"].to_numpy()
    if n and (table["label"].isna().any() or labels.min() < 0 or labels.max() >= schema.n_classes):
        raise UserError(f"{where}: labels outside 0..{schema.n_classes - 1} (schema.json has "
                        f"{schema.n_classes} classes); {hint}")
    cont = [f.name for f in schema.continuous]
    cat = [f.name for f in schema.categorical]
    x_cont = table[cont].to_numpy(dtype=np.float32) if cont else np.zeros((n, 0), np.float32)
    x_cat = table[cat].to_numpy(dtype=np.int64) if cat else np.zeros((n, 0), np.int64)
    if not np.isfinite(x_cont).all():
        j = int(np.flatnonzero(~np.isfinite(x_cont).all(axis=0))[0])
        raise UserError(f"{where}: column {cont[j]!r} holds non-finite values; {hint}")
    card = np.array(schema.cardinalities, dtype=np.int64)
    if cat and ((x_cat < 0) | (x_cat >= card)).any():
        j = int(np.flatnonzero(((x_cat < 0) | (x_cat >= card)).any(axis=0))[0])
        raise UserError(f"{where}: column {cat[j]!r} holds codes outside its {card[j] - 1} categories; {hint}")
    info = schema.image
    img_path = root / info.file
    shape, dtype, _ = npy_header(img_path, hint=hint)
    expect = (n, *info.shape)
    if shape != expect or dtype != np.uint8:
        raise UserError(f"{img_path}: holds {dtype} {shape}, schema.json and tabular.parquet need uint8 {expect}; "
                        f"{hint}")
    images = np.load(img_path, mmap_mode="r")
    missing_path = root / "missing.npy"
    if missing_path.exists():
        shape, dtype, _ = npy_header(missing_path, hint=hint)
        expect = (n, len(schema.features))
        if shape != expect or dtype != np.bool_:
            raise UserError(f"{missing_path}: holds {dtype} {shape}, schema.json and tabular.parquet need bool "
                            f"{expect}; {hint}")
        missing = np.load(missing_path)
    else:
        missing = np.zeros((n, len(schema.features)), bool)
    present_path = root / "image_present.npy"
    if present_path.exists():
        shape, dtype, _ = npy_header(present_path, hint=hint)
        if shape != (n,) or dtype != np.bool_:
            raise UserError(f"{present_path}: holds {dtype} {shape}, tabular.parquet needs bool ({n},); {hint}")
        image_present = np.load(present_path)
    else:
        image_present = np.ones(n, bool)
    return PreparedDataset(
        root=root,
        schema=schema,
        ids=table["id"].astype(str).to_numpy(),
        split=table["split"].astype(str).to_numpy(),
        labels=labels.astype(np.int64),
        x_cont=np.ascontiguousarray(x_cont),
        x_cat=np.ascontiguousarray(x_cat),
        missing=missing,
        images=images,
        image_present=image_present,
        targets=_targets(table, schema, where, hint),
    )


def _targets(table, schema: Schema, where: Path, hint: str) -> dict[str, np.ndarray]:
    out = {}
    for c in schema.target_columns:
        v = table[c].to_numpy(dtype=np.float64)
        if not np.isfinite(v).all():
            raise UserError(f"{where}: outcome column {c!r} holds missing or non-finite values; {hint}")
        out[c] = v
    return out
