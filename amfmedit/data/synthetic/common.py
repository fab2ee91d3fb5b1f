"""Pieces shared by the synthetic generators: CSV writing, splits, the generator result."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from amfmedit.io import write_bytes


@dataclass
class Generated:
    """What a generator hands to ``prepare``: its provenance record and the oracle.

    ``finish(ids, labels, class_names, split, label_column)`` is called with the rows that
    survived preparation and returns ``(truth table (id, risk, ...), oracle dict)``.
    """

    record: dict
    finish: Callable
    descriptions: dict[str, str] = field(default_factory=dict)  # feature -> description for the schema


def write_csv(path: Path, columns: dict, *, header: list[str] | None = None) -> None:
    """A CSV the way pandas writes one (unquoted header and values), written atomically.

    ``columns`` maps names to pyarrow arrays; nulls become empty fields.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pa.table(columns)
    buf = io.BytesIO()
    buf.write((",".join(header or table.column_names) + "\n").encode())
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    write_bytes(path, buf.getvalue())


def stratified_split(labels: np.ndarray, counts: tuple[int, int, int], seed: int) -> np.ndarray:
    """(N,) 'train'/'val'/'test' with exactly ``counts`` rows each, stratified by ``labels``."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    n_train, n_val, n_test = counts
    strat = labels if np.bincount(labels).min() >= 3 else None
    rest, test = train_test_split(idx, test_size=n_test, random_state=seed, stratify=strat)
    train, val = train_test_split(rest, test_size=n_val, random_state=seed,
                                  stratify=None if strat is None else labels[rest])
    out = np.empty(len(labels), dtype=object)
    out[train], out[val], out[test] = "train", "val", "test"
    return out.astype(str)


def rounded(values: np.ndarray, decimals: int) -> np.ndarray:
    return np.round(values, decimals) if decimals else np.round(values)
