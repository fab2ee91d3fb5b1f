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

Stages trained on masked data carry a suffix (:func:`masked_stage_name`), e.g.
``finetune-amf-frozen-seed2022-mask-age_at_scan`` or ``rconf-mask-age_at_scan``, and record the
masked names and fill values in their ``config.json`` under ``"mask"``, so ``evaluate`` can pair
a masked stage with its complete-data counterpart (:func:`split_mask_suffix`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from amfmedit.errors import UserError, close_matches

MASK_KEY = "mask"  # config.json key holding {"features": [...], "fill": {...}}
_SUFFIX = re.compile(r"-(mask(?:-[A-Za-z0-9_.+]+|\d+-[0-9a-f]{8}))$")
_SAFE = re.compile(r"^[A-Za-z0-9_.]+$")
_MAX_READABLE = 40  # longer tags are replaced by a count and a hash


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


def mask_tag(names: Sequence[str]) -> str:
    """Stage-name suffix for a masked feature set: ``mask-age_at_scan`` or ``mask12-<hash>``."""
    names = list(names)
    readable = "mask-" + "+".join(names)
    if all(_SAFE.match(n) for n in names) and len(readable) <= _MAX_READABLE:
        return readable
    digest = hashlib.sha1("\n".join(sorted(names)).encode()).hexdigest()[:8]
    return f"mask{len(names)}-{digest}"


def masked_stage_name(stage: str, names: Sequence[str] | None) -> str:
    """``stage`` with the mask suffix of ``names`` (unchanged when nothing is masked)."""
    return f"{stage}-{mask_tag(names)}" if names else stage


def split_mask_suffix(stage: str) -> tuple[str, str | None]:
    """``finetune-amf-frozen-seed2022-mask-age`` -> (``finetune-amf-frozen-seed2022``, ``mask-age``)."""
    m = _SUFFIX.search(stage)
    if not m:
        return stage, None
    return stage[: m.start()], m.group(1)


def stage_mask(stage_dir: str | Path) -> list[str]:
    """The feature names a stage was trained with masked (its config.json), [] for complete data."""
    from amfmedit.io import read_json

    path = Path(stage_dir) / "config.json"
    if not path.is_file():
        return []
    rec = read_json(path).get(MASK_KEY) or {}
    return list(rec.get("features") or [])


def top_features(run, k: int, *, ig_stage: str | None = None) -> list[str]:
    """The ``k`` most important features of an IG report of ``run`` (``explain/ig-*/importance.csv``).

    ``ig_stage``: the explained stage (``ig-<stage>`` folder); default the supervised tabular
    model's report as in §4.2.4, else the only/most recent IG report of the run.
    """
    import pandas as pd

    from amfmedit.explain.ig import IMPORTANCE_FILE, ig_reports

    if k < 1:
        raise UserError(f"--mask-top-k {k}: must be at least 1")
    reports = ig_reports(run)
    if not reports:
        raise UserError(f"run {run.name} has no IG report to rank features by; run `amfmedit explain --method ig` first "
                        "or name the features with --mask-features")
    if ig_stage is not None:
        if ig_stage not in reports:
            hint = close_matches(ig_stage, list(reports))
            raise UserError(f"--mask-from {ig_stage}: run {run.name} has no IG report of that stage (it has: "
                            f"{', '.join(reports)})" + (f"; did you mean {hint}?" if hint else ""))
        folder = reports[ig_stage]
    else:
        supervised = [s for s in reports if s.startswith("supervised-tabular")]
        folder = reports[supervised[0]] if supervised else reports[list(reports)[-1]]
    table = pd.read_csv(folder / IMPORTANCE_FILE).sort_values("rank")
    if k > len(table):
        raise UserError(f"--mask-top-k {k}: the IG report {folder} ranks only {len(table)} features")
    return [str(n) for n in table["name"].head(k)]


def incomplete_markdown(groups: list[dict], *, metric: str) -> str:
    """Table 4 layout: each masked group's metric and its drop against the complete-data group.

    ``groups`` are ``evaluate``'s records (fusion, strategy, modality, encoder, values, mean and,
    for masked stages, ``mask`` = the stage-name tag, ``mask_features`` and ``r_conf``). The drop
    is complete mean − masked mean in points; "—" when the run has no complete counterpart.
    Returns "" when no group is masked.
    """
    from amfmedit.stages.report import ENCODER_TITLES, FUSION_TITLES, mean_std

    def key(g: dict) -> tuple:
        return (g["fusion"], g.get("modality"), g.get("encoder"))

    complete = {(key(g), g["strategy"]): g for g in groups if not g.get("mask")}
    rows: dict[tuple, dict] = {}
    for g in groups:
        if not g.get("mask"):
            continue
        r_conf = g.get("r_conf")
        row = rows.setdefault((key(g), g["mask"], r_conf), {"features": g.get("mask_features") or [g["mask"]]})
        ref = complete.get((key(g), g["strategy"]))
        drop = "—"
        if ref is not None and math.isfinite(ref.get("mean", math.nan)) and math.isfinite(g.get("mean", math.nan)):
            drop = f"{(ref['mean'] - g['mean']) * 100:.2f}"
        row[g["strategy"]] = (mean_std(g["values"]), drop)
    if not rows:
        return ""
    title = "AUC (%)" if metric == "auc" else "ACC (%)"
    lines = [f"| Fusion method | Tabular encoder | Masked features | R_conf | Frozen {title} | Drop | "
             f"Trainable {title} | Drop |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for ((fusion, modality, encoder), _tag, r_conf), row in rows.items():
        name = "Supervised" if fusion == "none" else FUSION_TITLES.get(fusion, fusion)
        enc = "— (ResNet-50, image only)" if modality == "image" else ENCODER_TITLES.get(encoder, encoder or "—")
        fz, tr = row.get("frozen", ("-", "-")), row.get("trainable", ("-", "-"))
        rc = f"{r_conf:.2f}" if isinstance(r_conf, (int, float)) else "-"
        lines.append(f"| {name} | {enc} | {', '.join(row['features'])} | {rc} | {fz[0]} | {fz[1]} | {tr[0]} | {tr[1]} |")
    return "\n".join(lines) + "\n"


def resolve_mask(run, names: Sequence[str] = (), top_k: int | None = None, *, data_dir=None) -> list[str]:
    """The features a stage masks: ``--mask-features`` names (checked against the run's schema)
    or the top ``--mask-top-k`` of the run's IG report; [] when neither is given."""
    from amfmedit.data.prepared import dataset_path
    from amfmedit.data.schema import Schema

    names = [n for part in names for n in str(part).split(",") if n.strip()]
    names = [n.strip() for n in names]
    if names and top_k is not None:
        raise UserError("--mask-features and --mask-top-k: give one of them")
    if top_k is not None:
        names = top_features(run, top_k)
    if not names:
        return []
    schema = Schema.load(dataset_path(run.data, data_dir or run.data_dir) / "schema.json")
    return check_feature_names(schema, names)


def masked_data(dataset, device_data, names: Sequence[str]):
    """``(masked dataset, its DeviceData)`` sharing ``device_data``'s images (no second image copy)."""
    import copy

    import torch

    masked = mask_features(dataset, names)
    dd = copy.copy(device_data)
    dd.dataset = masked
    dd.x_cont = torch.from_numpy(np.ascontiguousarray(masked.x_cont, dtype=np.float32)).to(device_data.device)
    dd.x_cat = torch.from_numpy(np.ascontiguousarray(masked.x_cat, dtype=np.int64)).to(device_data.device)
    return masked, dd
