"""Reading a prepared dataset (the only thing later stages read; never the raw files).

A prepared dataset is a folder ``<data-dir>/<name>/`` holding:

- ``tabular.parquet``: one row per sample, columns ``id`` (str), ``split`` (train/val/test),
  ``label`` (int, 0..C-1), then every feature in ``schema.feature_names`` order — continuous
  ones imputed and z-scored (float32), categorical ones as integer codes (int64, 0 = missing).
- ``images.npy``: uint8 array (N, C, H, W), rows in the same order, windowed to [0, 255].
- ``missing.npy``: bool array (N, n_features): the value was missing before imputation.
- ``schema.json`` (:class:`~amfmedit.data.schema.Schema`) and ``provenance.json`` (spec, source
  file sizes, counts per split and class; seed, oracle AUCs and informative features for
  synthetic cohorts).
- ``COMPLETE``: written last; a folder without it is not a prepared dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amfmedit.data.schema import Schema
from amfmedit.errors import UserError
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
    missing: np.ndarray  # (N, n_features) bool
    images: np.ndarray  # (N, C, H, W) uint8, np.memmap

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
        return json.loads((self.root / "provenance.json").read_text(encoding="utf-8"))


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


def load_prepared(name: str | Path, data_dir: str | Path | None = None) -> PreparedDataset:
    """Load a prepared dataset by name (in the data directory) or by folder path."""
    import pandas as pd

    root = dataset_path(name, data_dir)
    schema = Schema.load(root / "schema.json")
    table = pd.read_parquet(root / "tabular.parquet")
    cont = [f.name for f in schema.continuous]
    cat = [f.name for f in schema.categorical]
    x_cont = table[cont].to_numpy(dtype=np.float32) if cont else np.zeros((len(table), 0), np.float32)
    x_cat = table[cat].to_numpy(dtype=np.int64) if cat else np.zeros((len(table), 0), np.int64)
    images = np.load(root / schema.image.file, mmap_mode="r")
    missing_path = root / "missing.npy"
    missing = np.load(missing_path) if missing_path.exists() else np.zeros((len(table), len(schema.features)), bool)
    return PreparedDataset(
        root=root,
        schema=schema,
        ids=table["id"].astype(str).to_numpy(),
        split=table["split"].astype(str).to_numpy(),
        labels=table["label"].to_numpy(dtype=np.int64),
        x_cont=np.ascontiguousarray(x_cont),
        x_cat=np.ascontiguousarray(x_cat),
        missing=missing,
        images=images,
    )
