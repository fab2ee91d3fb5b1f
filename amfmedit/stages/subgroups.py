"""``evaluate --subgroup``: which rows form each subgroup.

A spec is ``COLUMN`` (one subgroup per value) or ``COLUMN=c1,c2,...`` (a numeric column cut at
the points, bands ``< c1``, ``c1-c2``, ..., ``>= ck``). The column is looked up first among the
dataset's kept report columns (the spec's ``table.keep``, e.g. ``sex``: not a model feature), then
among its features, read back on their raw scale (a continuous feature's z-score undone with the
training mean and standard deviation; a categorical code as its category). Rows whose value was
missing form a ``missing`` subgroup; nothing is imputed for a subgroup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from amfmedit.data.prepared import kept_columns
from amfmedit.errors import UserError, close_matches

MAX_LEVELS = 12  # a column without cut points with more distinct values needs cut points
MISSING = "missing"


@dataclass(frozen=True)
class SubgroupSpec:
    column: str
    cuts: tuple[float, ...] = ()

    @property
    def label(self) -> str:
        return self.column + ("=" + ",".join(f"{c:g}" for c in self.cuts) if self.cuts else "")


def parse_subgroup(text: str) -> SubgroupSpec:
    """``sex`` or ``age=40,60,75`` -> a :class:`SubgroupSpec`; a bad one is a one-line error."""
    column, _, cuts = str(text).partition("=")
    column = column.strip()
    if not column:
        raise UserError(f"--subgroup {text!r}: name a column, e.g. --subgroup sex or --subgroup age=40,60,75")
    if not _:
        return SubgroupSpec(column)
    try:
        points = tuple(float(c) for c in cuts.split(",") if c.strip())
    except ValueError:
        raise UserError(f"--subgroup {text}: cut points must be numbers, e.g. {column}=40,60,75") from None
    if not points or any(not math.isfinite(p) for p in points) or list(points) != sorted(set(points)):
        raise UserError(f"--subgroup {text}: give increasing cut points, e.g. {column}=40,60,75")
    return SubgroupSpec(column, points)


def raw_values(dataset, column: str) -> tuple[np.ndarray, bool]:
    """(N,) raw values of ``column`` for every row (None / NaN where missing) and whether it is numeric."""
    kept = kept_columns(dataset)
    if column in kept:
        values = kept[column]
        return values, values.dtype.kind == "f"
    schema = dataset.schema
    names = schema.feature_names
    if column not in names:
        known = list(kept) + names
        hint = close_matches(column, known) or ", ".join([n for n in known if column.lower() in n.lower()][:3])
        raise UserError(f"--subgroup {column}: no column {column!r} in the prepared dataset {schema.name} (kept report "
                        f"columns: {', '.join(kept) or 'none'}; or a feature)" + (f"; did you mean {hint}?" if hint else
                        "; keep it with table.keep in the data spec and prepare again"))
    j = names.index(column)
    missing = np.asarray(dataset.missing[:, j], bool)
    if j < schema.n_cont:
        f = schema.continuous[j]
        values = np.asarray(dataset.x_cont[:, j], np.float64) * f.std + f.mean
        return np.where(missing, np.nan, values), True
    f = schema.categorical[j - schema.n_cont]
    codes = np.asarray(dataset.x_cat[:, j - schema.n_cont], np.int64)
    cats = list(f.categories or [])
    return np.array([cats[c - 1] if c > 0 else None for c in codes], dtype=object), False


def _band(v: float, cuts: tuple[float, ...]) -> str:
    if math.isnan(v):
        return MISSING
    if v < cuts[0]:
        return f"< {cuts[0]:g}"
    for lo, hi in zip(cuts, cuts[1:]):
        if v < hi:
            return f"{lo:g}-{hi:g}"
    return f">= {cuts[-1]:g}"


def subgroup_labels(dataset, spec: SubgroupSpec, rows: np.ndarray) -> np.ndarray:
    """(len(rows),) object array: each row's subgroup name under ``spec``."""
    values, numeric = raw_values(dataset, spec.column)
    values = values[rows]
    if spec.cuts:
        if not numeric:
            raise UserError(f"--subgroup {spec.label}: column {spec.column!r} is categorical; cut points apply to "
                            f"numbers (use --subgroup {spec.column})")
        return np.array([_band(float(v), spec.cuts) for v in values], dtype=object)
    if numeric:
        levels = {v for v in values.tolist() if not math.isnan(v)}
        if len(levels) > MAX_LEVELS:
            raise UserError(f"--subgroup {spec.column}: a numeric column with {len(levels)} distinct values; give cut "
                            f"points, e.g. --subgroup {spec.column}=40,60,75")
        return np.array([MISSING if math.isnan(v) else f"{v:g}" for v in values.tolist()], dtype=object)
    return np.array([MISSING if v is None else str(v) for v in values.tolist()], dtype=object)
