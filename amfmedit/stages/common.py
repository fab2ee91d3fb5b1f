"""What every stage shares: run options, opening the run and its dataset, writing stage records."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from amfmedit.errors import UserError
from amfmedit.io import write_json
from amfmedit.train import rundir
from amfmedit.train.engine import ProgressFn
from amfmedit.train.runtime import Runtime, setup_runtime

# ``progress(title, monitor) -> callback or None``: the CLI draws one bar per training run.
ProgressFactory = Callable[[str, "str | None"], "ProgressFn | None"]

BINARY_CLASS_WEIGHTS = (0.5, 5.0)  # Appendix A.3: class 0 down-sampled ×0.5, class 1 over-sampled ×5
BINARY_ALPHA = (0.1, 2.0)  # Appendix A.3: weighted CE factors for class 0 and class 1
FINETUNE_LRS = (1e-2, 1e-3, 1e-4)  # Appendix A.3: searched on validation with seed 2022
PAPER_SEEDS = (2022, 2023, 2024, 2025, 2026)


@dataclass
class RunOptions:
    """Where and how a stage runs (not what it computes: that is the stage config)."""

    runs_dir: str | None = None
    run: str | None = None
    data_dir: str | None = None
    device: str = "auto"
    compile: bool = False
    images_in: str = "auto"  # auto | device | host | stream
    resume: bool = False
    force: bool = False
    argv: list[str] | None = None  # the command line to record in run.json (None: sys.argv)


def runtime_for(opts: RunOptions) -> Runtime:
    return setup_runtime(opts.device, compile=opts.compile)


def no_progress(title: str, monitor: str | None = None) -> None:
    return None


def load_dataset(run: rundir.Run, opts: RunOptions):
    """The prepared dataset a run was started on (``--data-dir`` overrides the recorded folder)."""
    from amfmedit.data import load_prepared

    return load_prepared(run.data, opts.data_dir or run.data_dir)


def write_stage_config(stage_dir: Path, config, runtime: Runtime, extra: dict | None = None) -> None:
    """``config.json`` (resolved settings) and ``environment.json`` of a stage, written first."""
    from amfmedit.env import environment

    cfg = asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    write_json(stage_dir / rundir.CONFIG_FILE, {"config": cfg, "runtime": runtime.describe(), **(extra or {})})
    write_json(stage_dir / rundir.ENV_FILE, environment())


def jsonable(obj) -> dict:
    """A dataclass as plain JSON types (tuples become lists) for checkpoint configs."""
    return json.loads(json.dumps(asdict(obj) if dataclasses.is_dataclass(obj) else obj))


def check_choice(value, choices, option: str) -> None:
    if value not in choices:
        from amfmedit.errors import close_matches

        hint = close_matches(str(value), [str(c) for c in choices])
        raise UserError(
            f"{option} {value}: not one of {', '.join(map(str, choices))}" + (f"; did you mean {hint}?" if hint else "")
        )
