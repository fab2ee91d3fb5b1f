"""Incomplete tabular data (§4.2.4, §4.5, Table 4): features replaced by a constant at train AND test time.

The paper masks the most important feature of the IG analysis (age on OL3I) and fine-tunes and
evaluates on the masked table, so the model never sees the true value. Here any list of features
can be masked (``--mask-features NAME ...``) or the top K of an IG report (``--mask-top-k K``):

- a continuous feature becomes its mean over the TRAINING rows of the prepared (imputed,
  z-scored) column;
- a categorical feature becomes the most frequent code among the training rows (ties: the
  smaller code). The mode is the categorical counterpart of the mean: a value the model has
  seen most often, i.e. a typical patient, rather than the "missing" code 0 that may carry
  meaning of its own (values that were missing in the records).

``missing`` is set for masked columns (the value is unknown to the model). The prepared files
are never modified: :func:`mask_features` returns a masked copy of the in-memory arrays.

Test-time missingness (``evaluate --missing-sweep`` / ``--image-drop``, docs/experiments.md):
:func:`remove_values` removes a share of each row's feature values completely at random (MCAR),
as ``prepare`` records a value that was never there (imputed value, ``missing`` set);
:func:`drop_images` removes the image of a share of the patients that have one. Both draw from
a fixed seed, so every model is scored on the same removals (paired comparisons).

Which features a stage masks and how its folder is named are run matters
(:mod:`amfmedit.stages.names`, :func:`amfmedit.stages.common.resolve_mask`); this module only
transforms the arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from amfmedit.errors import UserError, close_matches


def check_feature_names(schema, names: Sequence[str], option: str = "--mask-features") -> list[str]:
    """``names`` as a list without repeats, every one a feature of ``schema``.

    An unknown name is a one-line UserError with the closest feature names.
    """
    names = list(dict.fromkeys(str(n) for n in names))
    if not names:
        raise UserError(f"{option}: give at least one feature name")
    known = [f.name for f in schema.features]
    for name in names:
        if name not in known:
            hint = close_matches(name, known)
            raise UserError(
                f"{option} {name}: no such feature in dataset {schema.name}"
                + (f"; did you mean {hint}?" if hint else f" (it has {len(known)} features, e.g. {', '.join(known[:3])})")
            )
    return names


def fill_values(dataset, names: Sequence[str]) -> dict[str, float | int]:
    """The constant each masked feature takes: training mean (continuous) or training mode (categorical)."""
    schema = dataset.schema
    names = check_feature_names(schema, names)
    train = dataset.indices("train")
    if len(train) == 0:
        raise UserError(f"{dataset.root}: the train split is empty; masking needs training rows for the fill values")
    cont = {f.name: j for j, f in enumerate(schema.continuous)}
    cat = {f.name: j for j, f in enumerate(schema.categorical)}
    out: dict[str, float | int] = {}
    for name in names:
        if name in cont:
            # NOTE[paper]: §4.2.4 replaces the feature by "its mean value across all samples";
            # the mean over training rows is used so that no test value enters training.
            out[name] = float(np.mean(dataset.x_cont[train, cont[name]], dtype=np.float64))
        else:
            codes = dataset.x_cat[train, cat[name]]
            out[name] = int(np.argmax(np.bincount(codes)))  # argmax: the smallest code among ties
    return out


def mask_features(dataset, names: Sequence[str]):
    """A copy of a :class:`~amfmedit.data.PreparedDataset` with ``names`` replaced by constants.

    Every row (train, val and test) gets the fill value of :func:`fill_values`; ``missing`` is
    True for the masked columns. Images stay the same memory map; the input is untouched.
    """
    schema = dataset.schema
    fills = fill_values(dataset, names)
    x_cont, x_cat, missing = dataset.x_cont.copy(), dataset.x_cat.copy(), dataset.missing.copy()
    cont = {f.name: j for j, f in enumerate(schema.continuous)}
    cat = {f.name: j for j, f in enumerate(schema.categorical)}
    order = schema.feature_names
    for name, value in fills.items():
        if name in cont:
            x_cont[:, cont[name]] = np.float32(value)
        else:
            x_cat[:, cat[name]] = value
        missing[:, order.index(name)] = True
    return dataclasses.replace(dataset, x_cont=x_cont, x_cat=x_cat, missing=missing)


def mask_record(dataset, names: Sequence[str]) -> dict:
    """``{"features": [...], "fill": {name: value}, "rule": ...}`` for a stage's config.json."""
    return {"features": check_feature_names(dataset.schema, names), "fill": fill_values(dataset, names),
            "rule": "continuous: training-split mean of the prepared column; categorical: training-split mode"}


def imputed_values(schema) -> tuple[np.ndarray, np.ndarray]:
    """What ``prepare`` stores for a missing value: (n_cont,) float32 z-scored train median and
    (n_cat,) int64 code 0."""
    cont = schema.continuous
    median = np.array([f.median for f in cont], dtype=np.float64)
    mean = np.array([f.mean for f in cont], dtype=np.float64)
    std = np.array([f.std for f in cont], dtype=np.float64)
    return ((median - mean) / std).astype(np.float32), np.zeros(len(schema.categorical), np.int64)


def remove_values(dataset, rows: np.ndarray, rate: float, seed: int = 0):
    """A copy of ``dataset`` where ``round(rate * F)`` features of each of ``rows``, chosen at random
    (MCAR), are missing: imputed value and ``missing`` set, as for a value never recorded (a value
    already missing stays so). ``table_present`` is the prepared one (removal is not absence);
    other rows, the images and the input are untouched. ``rate`` in [0, 1]; 0 returns ``dataset``."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], however: {rate=}")
    rows = np.asarray(rows, dtype=np.int64)
    n_cont, n_features = dataset.x_cont.shape[1], dataset.x_cont.shape[1] + dataset.x_cat.shape[1]
    k = int(round(rate * n_features))
    if k == 0 or len(rows) == 0:
        return dataset
    # exactly k features per row: the first k of a random permutation (ranks of i.i.d. uniforms)
    chosen = np.argsort(np.random.default_rng(seed).random((len(rows), n_features)), axis=1)[:, :k]
    removed = np.zeros((len(rows), n_features), bool)
    np.put_along_axis(removed, chosen, True, axis=1)
    fill_cont, fill_cat = imputed_values(dataset.schema)
    x_cont, x_cat, missing = dataset.x_cont.copy(), dataset.x_cat.copy(), dataset.missing.copy()
    x_cont[rows] = np.where(removed[:, :n_cont], fill_cont, x_cont[rows])
    x_cat[rows] = np.where(removed[:, n_cont:], fill_cat, x_cat[rows])
    missing[rows] |= removed
    return dataclasses.replace(dataset, x_cont=x_cont, x_cat=x_cat, missing=missing)


def drop_images(dataset, rows: np.ndarray, rate: float, seed: int = 0) -> np.ndarray:
    """(N,) bool image flags of ``dataset`` with the image of ``round(rate * n)`` of the ``n`` rows among
    ``rows`` that have one removed, chosen at random; ``rate`` in [0, 1]."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], however: {rate=}")
    present = np.asarray(dataset.image_present, dtype=bool).copy()
    rows = np.asarray(rows, dtype=np.int64)
    have = rows[present[rows]]
    k = int(round(rate * len(have)))
    if k:
        present[np.random.default_rng(seed).choice(have, k, replace=False)] = False
    return present
