"""What a finished training keeps on disk (``--keep-checkpoints`` keeps everything).

While a training runs, its folder holds ``last.pt`` (model, optimizer, scheduler, RNG and
early-stopping states: what ``--resume`` continues from) and ``best.pt`` (the model at its best
validation epoch). A finished stage is never continued (it is replaced with ``--force``; a
``--resume`` reuses it from its ``COMPLETE`` record), so once it is finished:

- a classifier (a fine-tuned seed, a supervised baseline, the chosen R_conf probe) keeps
  ``best.pt``, what ``evaluate``, ``predict``, ``explain`` and ``export`` load; ``last.pt`` goes;
- pretraining keeps ``last.pt`` without the optimizer, scheduler and RNG states: its weights are
  what fine-tuning, ``rconf`` and the baselines load (the reference fine-tunes from the last
  epoch); ``best.pt`` goes;
- the runs a search did not choose (learning rates, ``--rconf auto`` candidates) keep their
  records (``COMPLETE``, ``metrics.jsonl``, ``config.json``) and no checkpoint: a search that is
  resumed reads their results from ``COMPLETE`` alone.

At ResNet-18 a fine-tuned seed drops from about 200 MB to 50 MB.
"""

from __future__ import annotations

from pathlib import Path

from amfmedit.train.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint

CHECKPOINT_SUFFIX = ".pt"
#: what a finished pretraining's ``last.pt`` keeps: the weights, the config they were trained with, the record
SLIM_KEYS = ("model", "config", "epoch", "best_metric", "best_epoch", "history", "finished", "stopped_early")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def keep_only(folder: str | Path, keep: tuple[str, ...]) -> int:
    """Delete the checkpoints (``*.pt``) directly in ``folder`` except ``keep``; returns the bytes freed."""
    freed = 0
    for p in Path(folder).glob(f"*{CHECKPOINT_SUFFIX}"):
        if p.name not in keep and p.is_file():
            freed += _size(p)
            p.unlink()
    return freed


def finished_classifier(folder: str | Path) -> int:
    """A finished classifier keeps ``best.pt`` only."""
    return keep_only(folder, (BEST,))


def unchosen(folder: str | Path) -> int:
    """A run a search did not choose keeps no checkpoint (its ``COMPLETE`` holds its result)."""
    return keep_only(folder, ())


def finished_pretrain(folder: str | Path) -> int:
    """A finished pretraining keeps the weights of ``last.pt`` (rewritten without the optimizer,
    scheduler and RNG states) and nothing else."""
    folder = Path(folder)
    last = folder / LAST
    freed = keep_only(folder, (LAST,))
    if last.is_file():
        before = _size(last)
        ckpt = load_checkpoint(last)
        if set(ckpt) - {"format", *SLIM_KEYS}:
            save_checkpoint(last, {k: ckpt[k] for k in SLIM_KEYS if k in ckpt})
            freed += before - _size(last)
    return freed


def disk_usage(root: str | Path) -> tuple[int, int, int]:
    """``(bytes of every file under root, bytes of its checkpoints, number of checkpoints)``."""
    total = ckpt = n = 0
    for p in Path(root).rglob("*"):
        if p.is_file() and not p.is_symlink():
            size = _size(p)
            total += size
            if p.suffix == CHECKPOINT_SUFFIX:
                ckpt += size
                n += 1
    return total, ckpt, n


def human_bytes(n: int) -> str:
    """``n`` bytes as people read them: 512 B, 3.1 MB, 1.4 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
