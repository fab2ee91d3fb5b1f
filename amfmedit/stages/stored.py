"""Classifiers that leave their predictions in their stage folder: the scikit-learn baselines.

A neural classifier is scored by ``evaluate`` from its checkpoint; a stage whose folder holds
``predictions.npz`` was scored when it was fitted, and ``evaluate`` reads the file instead
(:func:`open_stored` is None for every other stage). The file holds, per split, the dataset row
indices, the ids of those rows (checked against the dataset, so predictions of another
preparation are refused) and the predictions (N, K).

The fitted estimator is a pickle (``model.pkl``): scikit-learn has no other format. Its SHA-256
is recorded in the stage's ``COMPLETE`` marker and checked before it is unpickled, so a file that
changed after fitting is refused (a run folder from elsewhere is trusted as its code would be).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amfmedit.errors import UserError
from amfmedit.io import atomic_path, read_json
from amfmedit.train import rundir

PREDICTIONS_FILE = "predictions.npz"
MODEL_FILE = "model.pkl"
SPLITS = ("val", "test")


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_predictions(folder: Path, dataset, outputs: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """``predictions.npz``: per split (``outputs[split] = (rows, predictions (N, K))``) rows, ids, predictions."""
    arrays = {}
    for split, (rows, preds) in outputs.items():
        arrays[f"{split}_rows"] = np.asarray(rows, np.int64)
        arrays[f"{split}_ids"] = np.asarray(dataset.ids[rows]).astype(str)
        arrays[f"{split}_preds"] = np.asarray(preds, np.float64)
    with atomic_path(folder / PREDICTIONS_FILE) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def write_model(folder: Path, payload: dict) -> str:
    """Pickle ``payload`` (the estimator and what it needs) to ``model.pkl``; returns its SHA-256."""
    with atomic_path(folder / MODEL_FILE) as tmp:
        with open(tmp, "wb") as fh:
            pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return sha256(folder / MODEL_FILE)


@dataclass
class StoredModel:
    """A finished stage with stored predictions (see the module docstring)."""

    folder: Path
    marker: dict

    @property
    def best_epoch(self) -> int:
        return int(self.marker.get("best_epoch", 0))

    @property
    def best_val(self) -> float:
        return float(self.marker.get("best_val", float("nan")))

    def outputs(self, split: str, dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, predictions (N, K), targets)`` of ``split`` in ``dataset`` (the run's prepared dataset)."""
        path = self.folder / PREDICTIONS_FILE
        hint = f"fit it again with `amfmedit baseline --force` ({self.folder.name})"
        try:
            with np.load(path, allow_pickle=False) as z:
                rows, ids, preds = z[f"{split}_rows"], z[f"{split}_ids"], z[f"{split}_preds"]
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"{path}: no readable {split} predictions ({type(exc).__name__}); {hint}") from None
        if len(rows) and (rows.max() >= len(dataset) or not np.array_equal(np.asarray(dataset.ids[rows]).astype(str),
                                                                             ids)):
            raise UserError(f"{path}: its {split} rows are not those of the prepared dataset {dataset.name} (prepared "
                            f"again since?); {hint}")
        return rows, preds, np.asarray(dataset.labels[rows])

    def load(self) -> dict:
        """The pickled estimator payload, after checking its SHA-256 against the one recorded at fitting."""
        path = self.folder / MODEL_FILE
        want = self.marker.get("model_sha256")
        if not path.is_file() or want is None:
            raise UserError(f"{path}: the fitted model is missing; fit it again with `amfmedit baseline --force`")
        if sha256(path) != want:
            raise UserError(f"{path}: changed since it was fitted (SHA-256 differs from the one in "
                            f"{self.folder.name}/{rundir.MARKER}); fit it again with `amfmedit baseline --force`")
        with open(path, "rb") as fh:
            return pickle.load(fh)  # noqa: S301 - the file's hash was checked against the one written at fitting


def open_stored(stage_dir: str | Path) -> StoredModel | None:
    """The stage's stored predictions, or None for a stage scored from its checkpoint."""
    folder = Path(stage_dir)
    if not (folder / PREDICTIONS_FILE).is_file():
        return None
    return StoredModel(folder, read_json(folder / rundir.MARKER))
