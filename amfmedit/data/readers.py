"""Readers for the raw formats: OL3I, DVM (front views) and a user's own table.

Each reader turns the files of one release into a :class:`RawCohort`: the raw table (one row
per sample, raw column names with surrounding spaces stripped, as DVM's headers carry stray
spaces), the row ids, and an image source aligned with the rows. Everything after that
(feature selection, labels, splits, statistics, images) is shared in
:mod:`amfmedit.data.prepare`, so the synthetic cohorts exercise exactly the real path.
"""

from __future__ import annotations

import collections
import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from amfmedit.data.spec import DataSpec
from amfmedit.data.image_options import rules_of
from amfmedit.data.transform import image_path, image_rule, read_image
from amfmedit.errors import UserError, close_matches

if TYPE_CHECKING:  # pandas is imported where a table is read
    import pandas


@dataclass
class RawCohort:
    """Raw rows and their images, before any preparation."""

    table: "pandas.DataFrame"  # one row per sample, in output order
    where: str  # the table file, for messages
    images: "H5Images | FileImages"  # aligned with the rows
    sources: dict[str, int]  # raw file (relative to the raw folder) -> bytes
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows removed by the reader


# ---------------------------------------------------------------------------------------------
# image sources


class H5Images:
    """One HDF5 file with one 2-D dataset per sample id (OL3I's ``l3_slices.h5``)."""

    def __init__(self, path: Path, keys: np.ndarray):
        self.path = Path(path)
        self.keys = np.asarray(keys, dtype=object)

    def __len__(self) -> int:
        return len(self.keys)

    def _names(self) -> set[str]:
        import h5py

        with h5py.File(self.path, "r") as f:
            return set(f.keys())

    def present(self) -> np.ndarray:
        names = self._names()
        return np.array([k in names for k in self.keys], dtype=bool)

    def unmatched(self) -> list[str]:
        """Datasets in the file that no table row refers to."""
        wanted = set(self.keys.tolist())
        return sorted(k for k in self._names() if k not in wanted)

    def take(self, rows: np.ndarray) -> "H5Images":  # rows: integer indices
        return H5Images(self.path, self.keys[rows])

    def __iter__(self) -> Iterator[tuple[np.ndarray | None, str]]:
        """``(HU array, where)`` per row; ``(None, where)`` for an id the file has no dataset for
        (a row kept without an image)."""
        import h5py

        with h5py.File(self.path, "r") as f:
            for key in self.keys:
                where = f"{self.path.name}[{key!r}]"
                if key is None or key not in f:
                    yield None, where
                    continue
                try:
                    arr = f[key][()]
                except Exception as exc:  # noqa: BLE001 - a corrupt dataset is the user's file
                    raise UserError(f"{where}: cannot read this dataset ({exc}); fix or re-export the file") from None
                if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf":
                    raise UserError(f"{where}: expected a numeric array of HU values, got {getattr(arr, 'dtype', type(arr))}")
                yield arr, where


class FileImages:
    """One image file per row (PNG/JPG, ``.npy`` or DICOM)."""

    def __init__(self, paths: list, image):
        """``image``: the spec's ``[image]`` (its modality and per-file rules: png, spacing_mm, field_mm)."""
        self.paths = [None if p is None else Path(p) for p in paths]
        self.options = rules_of(image)

    @property
    def modality(self) -> str:
        return self.options.modality

    def __len__(self) -> int:
        return len(self.paths)

    def present(self) -> np.ndarray:
        return np.array([p is not None and p.is_file() for p in self.paths], dtype=bool)

    def unmatched(self) -> list[str]:
        return []  # a folder may hold files the table does not use

    def take(self, rows: np.ndarray) -> "FileImages":
        return FileImages([self.paths[i] for i in rows], self.options)

    def __iter__(self) -> Iterator[tuple[np.ndarray | None, str]]:
        """``(raw array, where)`` per row; ``(None, where)`` for a row without an image file."""
        for p in self.paths:
            yield (read_image(p, self.options) if p is not None and p.is_file() else None), str(p)

    def named_but_absent(self) -> np.ndarray:
        """(N,) bool: rows whose path names a file that does not exist (not a blank cell)."""
        return np.array([p is not None and not p.is_file() for p in self.paths], dtype=bool)

    def rules(self) -> dict[str, int]:
        """How many files get each intensity rule (``dicom-hu``, ``png-windowed``, ...), for provenance."""
        return dict(collections.Counter(image_rule(p, self.options) for p in self.paths if p is not None))

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.paths if p is not None and p.is_file())


# ---------------------------------------------------------------------------------------------
# tables


def read_table_file(path: Path, *, id_column: str | None = None, option: str = "--raw"):
    """CSV or Parquet -> DataFrame with stripped column names; ids read as text."""
    import pandas as pd

    if not path.is_file():
        advice = ("pass --raw FOLDER (or set 'raw' in the spec)" if option == "--raw"
                  else f"pass the table's path with {option}")
        raise UserError(f"{path}: table file not found; {advice}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix in (".csv", ".txt", ".tsv"):
            # ids stay text (leading zeros, "$$" separators); everything else is inferred
            header = pd.read_csv(path, nrows=0, sep="\t" if suffix == ".tsv" else ",").columns
            dtype = {c: str for c in header if id_column is not None and c.strip() == id_column}
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=dtype, low_memory=False)
        else:
            raise UserError(f"{path}: unsupported table type {suffix!r}; use CSV or Parquet")
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed file is the user's to fix
        raise UserError(f"{path}: cannot read this table ({type(exc).__name__}: {exc}); fix the file") from None
    if suffix != ".parquet":
        # pandas renames a repeated header to "x.1": the repeat is found in the raw header row
        _check_raw_header(path, "\t" if suffix == ".tsv" else ",")
    df.columns = [str(c).strip() for c in df.columns]
    dup = df.columns[df.columns.duplicated()].tolist()
    if dup:
        raise UserError(f"{path}: column {dup[0]!r} appears twice (after stripping spaces); rename one")
    if len(df) == 0:
        raise UserError(f"{path}: the table has a header but no rows; add the data rows (one per sample)")
    return df


def _check_raw_header(path: Path, sep: str) -> None:
    """A column name repeated in the first row of a CSV/TSV is an error naming it."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        header = next(csv.reader(fh, delimiter=sep), [])
    seen: set[str] = set()
    for name in (h.strip() for h in header):
        if name in seen:
            shown = repr(name) if name else "'' (an empty name)"
            raise UserError(f"{path}: column {shown} appears twice in the header; rename or remove one")
        seen.add(name)


def require_columns(df, columns, where: str, what: str = "column") -> None:
    """Each of ``columns`` must exist in ``df``; a misspelt one gets a 'did you mean'."""
    for col in columns:
        if col not in df.columns:
            hint = close_matches(col, [str(c) for c in df.columns])
            raise UserError(
                f"{where}: missing {what} {col!r}"
                + (f"; did you mean {hint}?" if hint else "; fix the spec or the table")
            )


def _first_existing(raw: Path, names: list[str]) -> Path:
    for name in names:
        if (raw / name).is_file():
            return raw / name
    raise UserError(f"{raw}: none of {', '.join(names)} found; pass --raw FOLDER holding the dataset files")


def read_ol3i(spec: DataSpec, raw: Path) -> RawCohort:
    """OL3I: ``clinical_data.csv`` (or the 423-feature CSV variant) + ``l3_slices.h5`` keyed by id."""
    table_path = _first_existing(raw, [spec.table.file, *spec.table.alternatives])
    df = read_table_file(table_path, id_column=spec.table.id)
    require_columns(df, [spec.table.id], table_path.name)
    h5_path = raw / spec.image.file
    if not h5_path.is_file():
        raise UserError(f"{h5_path}: image file not found; pass --raw FOLDER holding {spec.image.file}")
    keys = df[spec.table.id].astype("string").str.strip().to_numpy(dtype=object, na_value=None)
    sources = {table_path.name: table_path.stat().st_size, h5_path.name: h5_path.stat().st_size}
    return RawCohort(df, table_path.name, H5Images(h5_path, keys), sources)


def read_own_table(spec: DataSpec, raw: Path) -> RawCohort:
    """A user's CSV/Parquet with an image-path column; paths are relative to the table's folder.

    ``raw`` may be the folder holding ``table.file`` or the table file itself.
    """
    table_path = raw if raw.is_file() else raw / spec.table.file
    df = read_table_file(table_path, id_column=spec.table.id)
    col = spec.image.column
    require_columns(df, [spec.table.id, col], table_path.name)
    paths = [image_path(v, table_path.parent) for v in df[col].astype(object)]
    images = FileImages(paths, spec.image)
    sources = {table_path.name: table_path.stat().st_size}
    return RawCohort(df, table_path.name, images, sources)


def read_dvm(spec: DataSpec, raw: Path) -> RawCohort:
    """DVM front views, as in the reference preparation (DESIGN §2).

    Keeps images with ``Quality_check == "P"`` and ``Predicted_viewpoint == 0``, one per advert
    (``Adv_ID`` = the first two ``$$`` parts of ``Image_ID``); joins the entry price on
    (``Genmodel_ID``, ``Reg_year`` = ``Year``); images live under
    ``<folder>/<Maker>/<Year>/<Image_name>`` with Maker and Year the 1st and 3rd ``$$`` parts.
    """
    import pandas as pd

    d = spec.dvm
    ad_path, price_path, image_path = raw / d.ad_table, raw / d.price_table, raw / d.image_table
    ads = read_table_file(ad_path)
    prices = read_table_file(price_path)
    images = read_table_file(image_path)
    require_columns(ads, ["Adv_ID", "Genmodel_ID", "Reg_year"], ad_path.name)
    require_columns(prices, ["Genmodel_ID", "Year", "Entry_price"], price_path.name)
    require_columns(images, ["Image_ID", "Image_name", "Predicted_viewpoint", "Quality_check"], image_path.name)
    n_ads = len(ads)

    img = images[(images["Quality_check"].astype("string").str.strip() == d.quality)
                 & (pd.to_numeric(images["Predicted_viewpoint"], errors="coerce") == d.viewpoint)].copy()
    parts = img["Image_ID"].astype("string").str.strip().str.split("$$", regex=False)
    if (parts.str.len() < 2).any():
        bad = img["Image_ID"][parts.str.len() < 2].iloc[0]
        raise UserError(f"{image_path.name}: Image_ID {bad!r} is not '<Genmodel_ID>$$<advert>$$<image>'; fix the table")
    img["Adv_ID"] = parts.str[0] + "$$" + parts.str[1]
    img = img.drop_duplicates(subset=["Adv_ID"], keep="first")

    ads = ads.copy()
    ads["Genmodel_ID"] = ads["Genmodel_ID"].astype("string").str.strip()
    ads["Adv_ID"] = ads["Adv_ID"].astype("string").str.strip()
    prices = prices[["Genmodel_ID", "Year", "Entry_price"]].copy()
    prices["Genmodel_ID"] = prices["Genmodel_ID"].astype("string").str.strip()
    prices["Year"] = pd.to_numeric(prices["Year"], errors="coerce")
    ads["Reg_year"] = pd.to_numeric(ads["Reg_year"], errors="coerce")
    merged = ads.merge(prices, left_on=["Genmodel_ID", "Reg_year"], right_on=["Genmodel_ID", "Year"], how="inner")
    n_priced = len(merged)
    merged = merged.merge(img[["Adv_ID", "Image_name"]], on="Adv_ID", how="inner")
    if not merged["Adv_ID"].is_unique:
        dup = merged["Adv_ID"][merged["Adv_ID"].duplicated()].iloc[0]
        raise UserError(f"{ad_path.name}: Adv_ID {dup!r} occurs more than once after joining the entry price; "
                        f"{price_path.name} must have one row per (Genmodel_ID, Year)")
    names = merged["Image_name"].astype("string").str.strip()
    parts = names.str.split("$$", regex=False)
    folder = raw / spec.image.folder
    paths = [None if (p is None or len(p) < 3) else folder / p[0] / p[2] / n for p, n in zip(parts, names)]
    merged = merged.drop(columns=["Year"])
    dropped = {"no entry price for (Genmodel_ID, Reg_year)": n_ads - n_priced,
               "no front-view image passing the quality check": n_priced - len(merged)}
    sources = {p.name: p.stat().st_size for p in (ad_path, price_path, image_path)}
    return RawCohort(merged.reset_index(drop=True), ad_path.name, FileImages(paths, spec.image),
                     sources, dropped)


READERS = {"ol3i": read_ol3i, "dvm": read_dvm, "table": read_own_table}
