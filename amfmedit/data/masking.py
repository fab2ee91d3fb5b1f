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
