"""Checkpoints: written atomically, read as data only, failures explained in one line.

A training checkpoint (``last.pt``) holds everything needed to continue exactly: model,
optimizer and scheduler states, global RNG states, the epoch just finished, the best
metric so far, the early-stopping counter, the metric history and the resolved config.
``best.pt`` holds the model at its best validation epoch. Both contain only tensors,
numbers, strings, lists and dicts, so :func:`amfmedit.io.torch_load` (``weights_only=True``)
reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from amfmedit.errors import UserError
from amfmedit.io import DiskFullError, torch_load, torch_save

FORMAT = "amfmedit-checkpoint/1"
LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(path: str | Path, obj: dict[str, Any]) -> None:
    """Write ``obj`` to ``path`` atomically; a full disk keeps the previous file and says so."""
    path = Path(path)
    obj = {"format": FORMAT, **obj}
    try:
        torch_save(obj, path)
    except DiskFullError as exc:  # the partial file is already gone (amfmedit.io.atomic_path)
        kept = "the previous checkpoint there is intact" if path.exists() else "no earlier checkpoint existed"
        hint = "free space and continue with --resume" if path.exists() else "free space and rerun"
        raise DiskFullError(path, hint, note=f" ({kept})") from exc


def load_checkpoint(path: str | Path, *, hint: str = "run the stage again with --force to start over") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; a missing or damaged file is a UserError."""
    obj = torch_load(Path(path), hint=hint)  # missing or damaged: a UserError naming the file and the hint
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise UserError(f"{path}: not an amfmedit checkpoint (format {obj.get('format') if isinstance(obj, dict) else None!r}); {hint}")
    return obj
