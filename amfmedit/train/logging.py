"""Experiment logging: every scalar of ``metrics.jsonl`` (and figures) to TensorBoard or MLflow.

``metrics.jsonl`` stays the record the stages and reports read; a logger is a second copy for
the tools users already watch runs with. :func:`open_logger` gives one for ``--log KIND``:

* ``"none"``: does nothing (the default);
* ``"tensorboard"``: event files in ``<folder>/tensorboard/`` through
  ``torch.utils.tensorboard.SummaryWriter`` (needs the ``tensorboard`` package); view with
  ``tensorboard --logdir RUNS_DIR`` (every stage of every run appears);
* ``"mlflow"``: a run in an MLflow file store at ``<folder>/mlruns/`` (needs the ``mlflow``
  package; ``mlflow ui --backend-store-uri <folder>/mlruns``).

``folder`` is the stage folder (the one holding ``metrics.jsonl``).

A missing package is a one-line :class:`~amfmedit.errors.UserError` saying what to install.
Scalars are logged under their ``metrics.jsonl`` names with the epoch as the step; values that
are not finite numbers are skipped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Protocol

import numpy as np

from amfmedit.errors import UserError

LOG_KINDS = ("none", "tensorboard", "mlflow")
LOG_FOLDERS = {"tensorboard": "tensorboard", "mlflow": "mlruns"}  # under the stage folder
LOG_HELP = ("also log every metrics.jsonl scalar (and the figures) to 'tensorboard' (event files in the stage "
            "folder's tensorboard/; needs `pip install tensorboard`) or 'mlflow' (needs `pip install mlflow`); "
            "'none' writes metrics.jsonl only")


class Logger(Protocol):
    """What the engine and the stages call."""

    def log_scalars(self, step: int, scalars: Mapping[str, object]) -> None:
        """Log the finite numbers among ``scalars`` at ``step`` (the epoch)."""
    def log_figure(self, tag: str, path: str | Path, step: int = 0) -> None:
        """Log a PNG file under ``tag``."""
    def close(self) -> None:
        """Flush and release the files."""


def _numbers(scalars: Mapping[str, object]) -> dict[str, float]:
    out = {}
    for k, v in scalars.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(float(v)):
            out[str(k)] = float(v)
    return out


class NullLogger:
    """``--log none``."""

    def log_scalars(self, step: int, scalars: Mapping[str, object]) -> None:
        pass

    def log_figure(self, tag: str, path: str | Path, step: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Event files in ``folder`` (itself, not a subfolder); ``purge_step``: on a resumed run, events of that step and later
    left by the interrupted run are hidden (TensorBoard's own rule), so no epoch shows twice."""

    def __init__(self, folder: str | Path, *, purge_step: int | None = None) -> None:
        self.folder = Path(folder)
        self._writer = _summary_writer()(log_dir=str(self.folder), purge_step=purge_step)

    def log_scalars(self, step: int, scalars: Mapping[str, object]) -> None:
        for k, v in _numbers(scalars).items():
            self._writer.add_scalar(k, v, global_step=int(step))
        self._writer.flush()

    def log_figure(self, tag: str, path: str | Path, step: int = 0) -> None:
        from PIL import Image

        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB"))
        self._writer.add_image(tag, pixels, global_step=int(step), dataformats="HWC")
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class MlflowLogger:
    """One MLflow run in a file store at ``folder`` (``mlflow ui --backend-store-uri FOLDER``)."""

    def __init__(self, folder: str | Path, *, run_name: str | None = None) -> None:
        mlflow = _mlflow()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._client = mlflow.tracking.MlflowClient(tracking_uri=self.folder.resolve().as_uri())
        exp = self._client.get_experiment_by_name("amfmedit")
        exp_id = exp.experiment_id if exp is not None else self._client.create_experiment("amfmedit")
        self._run = self._client.create_run(exp_id, run_name=run_name)

    def log_scalars(self, step: int, scalars: Mapping[str, object]) -> None:
        for k, v in _numbers(scalars).items():
            self._client.log_metric(self._run.info.run_id, k, v, step=int(step))

    def log_figure(self, tag: str, path: str | Path, step: int = 0) -> None:
        self._client.log_artifact(self._run.info.run_id, str(path), artifact_path=tag)

    def close(self) -> None:
        self._client.set_terminated(self._run.info.run_id)


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise UserError("--log tensorboard: the tensorboard package is not installed; pip install tensorboard "
                        "(or use --log none)") from exc
    return SummaryWriter


def _mlflow():
    try:
        import mlflow
    except ImportError as exc:
        raise UserError("--log mlflow: the mlflow package is not installed; pip install mlflow "
                        "(or use --log tensorboard)") from exc
    return mlflow


#: what each backend needs imported (a missing package is a UserError saying what to install)
_BACKENDS = {"tensorboard": _summary_writer, "mlflow": _mlflow}


def require_logger(kind: str) -> None:
    """Import what ``--log KIND`` needs now, so that a missing package stops a command before it
    makes any folder, not when the first epoch ends."""
    if kind in _BACKENDS:
        _BACKENDS[kind]()


def open_logger(kind: str, folder: str | Path, *, purge_step: int | None = None) -> Logger:
    """A logger writing under the stage folder ``folder`` (``LOG_FOLDERS``, created when needed);
    ``kind`` one of ``LOG_KINDS``; ``purge_step``: the first epoch of a resumed run."""
    folder = Path(folder)
    if kind == "none":
        return NullLogger()
    if kind == "tensorboard":
        return TensorBoardLogger(folder / LOG_FOLDERS["tensorboard"], purge_step=purge_step)
    if kind == "mlflow":
        return MlflowLogger(folder / LOG_FOLDERS["mlflow"], run_name=folder.name or None)
    raise UserError(f"--log {kind}: unknown logger; use one of {', '.join(LOG_KINDS)}")
