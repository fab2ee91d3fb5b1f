"""What every stage shares: run options, opening the run and its dataset, writing stage records,
and which features a stage masks (incomplete tabular data, §4.2.4)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

from amfmedit.data import load_prepared
from amfmedit.data.masking import check_feature_names, mask_features
from amfmedit.data.prepared import dataset_path
from amfmedit.data.schema import SCHEMA_FILE, Schema
from amfmedit.env import environment
from amfmedit.errors import UserError, close_matches
from amfmedit.explain.ig import IMPORTANCE_FILE
from amfmedit.io import write_json, write_text
from amfmedit.stages import names as stage_names
from amfmedit.stages.configs import PAPER_SEEDS, RunOptions, check_choice  # noqa: F401 (the stages import them from here)
from amfmedit.train import rundir
from amfmedit.train.engine import ProgressFn
from amfmedit.train.inputs import DeviceData
from amfmedit.train.runtime import Runtime, setup_runtime

# ``progress(title, monitor) -> callback or None``: the CLI draws one bar per training run.
ProgressFactory = Callable[[str, "str | None"], "ProgressFn | None"]


def runtime_for(opts: RunOptions) -> Runtime:
    return setup_runtime(opts.device, compile=opts.compile)


def no_progress(title: str, monitor: str | None = None) -> None:
    return None


def load_dataset(run: rundir.Run, opts: RunOptions):
    """The prepared dataset a run was started on (``--data-dir`` overrides the recorded folder)."""
    return load_prepared(run.data, opts.data_dir or run.data_dir)


CONFIG_TOML = "config.toml"  # the stage's settings as a --config file: repeats the stage


def write_stage_config(stage_dir: Path, config, runtime: Runtime, extra: dict | None = None,
                       toml_extra: dict | None = None) -> None:
    """``config.json`` (resolved settings), ``config.toml`` and ``environment.json`` of a stage, written first.

    ``config.toml`` holds the same settings, nested configs flattened (a recipe's fields at the
    top level) and ``toml_extra`` (e.g. pretrain's ``data``), so ``amfmedit <stage> --config
    <stage>/config.toml`` runs the stage again with them.
    """
    cfg = asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    write_json(stage_dir / rundir.CONFIG_FILE, {"config": cfg, "runtime": runtime.describe(), **(extra or {})})
    write_text(stage_dir / CONFIG_TOML, toml_text({**(toml_extra or {}), **flat_config(cfg)},
                                                  header=f"settings of {stage_dir.name}"))
    write_json(stage_dir / rundir.ENV_FILE, environment())


def flat_config(cfg: dict) -> dict:
    """Nested config dicts (a ``Recipe`` inside a stage config) flattened to their fields; Nones dropped."""
    out: dict = {}
    for k, v in cfg.items():
        if isinstance(v, dict) and k != "aux_weights":
            out.update(flat_config(v))
        elif v is not None:
            out[k] = v
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {type(v).__name__}: {v!r}")


def toml_text(values: dict, header: str = "") -> str:
    """Flat ``key = value`` TOML (strings, numbers, booleans, lists, inline tables)."""
    head = f"# amfmedit: {header}\n" if header else ""
    return head + "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())


def jsonable(obj) -> dict:
    """A dataclass as plain JSON types (tuples become lists) for checkpoint configs."""
    return json.loads(json.dumps(asdict(obj) if dataclasses.is_dataclass(obj) else obj))


# ----------------------------------------------------------------------------------------------
# Incomplete tabular data: which features a stage masks
# ----------------------------------------------------------------------------------------------


def top_features(run: rundir.Run, k: int, *, ig_stage: str | None = None) -> list[str]:
    """The ``k`` most important features of an IG report of ``run`` (``explain/ig-*/importance.csv``).

    ``ig_stage``: the explained stage (``ig-<stage>`` folder); default the supervised tabular
    model's report as in §4.2.4, else the most recent IG report of the run.
    """
    import pandas as pd

    if k < 1:
        raise UserError(f"--mask-top-k {k}: must be at least 1")
    reports = stage_names.ig_reports(run)
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
        supervised = [s for s in reports if (stage_names.parse_stage(s) or {}).get("modality") == "tabular"]
        folder = reports[supervised[0]] if supervised else reports[list(reports)[-1]]
    table = pd.read_csv(folder / IMPORTANCE_FILE).sort_values("rank")
    if k > len(table):
        raise UserError(f"--mask-top-k {k}: the IG report {folder} ranks only {len(table)} features")
    return [str(n) for n in table["name"].head(k)]


def resolve_mask(run: rundir.Run, names: Sequence[str] = (), top_k: int | None = None, *, data_dir=None) -> list[str]:
    """The features a stage masks: ``--mask-features`` names (checked against the run's schema)
    or the top ``--mask-top-k`` of the run's IG report; [] when neither is given."""
    names = _mask_names(names)
    if names and top_k is not None:
        raise UserError("--mask-features and --mask-top-k: give one of them")
    if top_k is not None:
        names = top_features(run, top_k)
    if not names:
        return []
    schema = Schema.load(dataset_path(run.data, data_dir or run.data_dir) / SCHEMA_FILE)
    return check_feature_names(schema, names)


def check_new_run_mask(schema: Schema, names: Sequence[str] = (), top_k: int | None = None) -> None:
    """What :func:`resolve_mask` would refuse in a run that does not exist yet, refused before it does."""
    if top_k is not None:
        raise UserError(f"--mask-top-k {top_k}: a new run has no IG report to rank features by; name the features "
                        "with --mask-features (or rank them in a run with `amfmedit explain --method ig`)")
    names = _mask_names(names)
    if names:
        check_feature_names(schema, names)


def _mask_names(names: Sequence[str]) -> list[str]:
    """``--mask-features`` values, repeated or comma-separated, as one list of names."""
    return [n.strip() for part in names for n in str(part).split(",") if n.strip()]


def masked_data(dataset, device_data: DeviceData, names: Sequence[str]):
    """``(masked dataset, its DeviceData)`` sharing ``device_data``'s images (no second image copy)."""
    masked = mask_features(dataset, names)
    return masked, device_data.with_table(masked)
