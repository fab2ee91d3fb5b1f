"""A task fed by plain iterables of batches, for training your own model from a notebook.

The stages feed the engine from a prepared dataset (:class:`amfmedit.train.tasks.SupervisedTask`
gathers rows by index). :class:`BatchTask` instead takes any re-iterable of batches (a
``torch.utils.data.DataLoader``, a list of tuples) and gives :func:`amfmedit.train.fit` everything
else: the optimizer and schedule, early stopping, checkpoints, ``metrics.jsonl``, ``--resume``.

A batch is ``(image (B, C, H, W) float | None, x_cont (B, n_cont) float32, x_cat (B, n_cat) int64,
label (B,) int64)``. The model is called ``model(image, x_cont, x_cat)`` and returns logits or a
:class:`amfmedit.models.FusionOutput`; auxiliary losses count with the fusion's declared
weights (eq. 14).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from amfmedit.models import model_config
from amfmedit.models.losses import ce_loss, finetune_loss
from amfmedit.train.metrics import classification_metrics
from amfmedit.train.runtime import Runtime

Batch = tuple  # (image | None, x_cont, x_cat, label)


def _split(out) -> tuple[torch.Tensor, dict]:
    return getattr(out, "logits", out), (getattr(out, "aux", None) or {})


class BatchTask:
    """Train ``model`` on ``train`` batches, validate on ``val`` batches (both re-iterable).

    Args:
        loss: ``(logits, labels, aux) -> scalar``; default: cross-entropy (eq. 13) plus each
            auxiliary loss times the weight the model's fusion declares (eq. 14).
        device: where batches are moved before the forward pass (default: the model's).
    """

    def __init__(self, model: nn.Module, train: Iterable[Batch], val: Iterable[Batch], *,
                 loss: Callable | None = None, device: torch.device | str | None = None) -> None:
        self.module = model
        self.train, self.val = train, val
        weights = dict(getattr(getattr(model, "fusion", None), "aux_weights", {}) or {})
        self.loss = loss or (lambda logits, y, aux: finetune_loss(ce_loss(logits, y), aux, weights))
        self.device = device

    # -- what the engine asks ------------------------------------------------------------------

    def model_spec(self) -> dict:
        """The model's ``{"kind", "config"}`` when it can be rebuilt from a checkpoint; else only its
        class name (the checkpoint's ``state_dict`` then loads into a model you build yourself)."""
        try:
            return model_config(self.module)
        except ValueError:
            return {"kind": type(self.module).__name__, "config": None}

    def epoch_batches(self, epoch: int) -> list:
        """The training batches of one epoch, in the iterable's own order (its sampler decides)."""
        return list(self.train)

    def steps_per_epoch(self) -> int:
        try:
            return len(self.train)  # type: ignore[arg-type]
        except TypeError:
            return len(list(self.train))

    def _to(self, batch: Batch, model: nn.Module):
        dev = self.device or next(model.parameters()).device
        return [None if t is None else torch.as_tensor(t).to(dev) for t in batch]

    def train_step(self, model: nn.Module, batch: Batch, gen: torch.Generator | None):
        image, x_cont, x_cat, y = self._to(batch, model)
        logits, aux = _split(model(image, x_cont, x_cat))
        return self.loss(logits.float(), y, aux), len(y)

    def validate(self, model: nn.Module, runtime: Runtime) -> dict[str, float]:
        probs, labels = [], []
        for batch in self.val:
            image, x_cont, x_cat, y = self._to(batch, model)
            logits, _ = _split(model(image, x_cont, x_cat))
            probs.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
            labels.append(y.cpu().numpy())
        p, y = np.concatenate(probs), np.concatenate(labels)
        nll = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0)))) if len(y) else math.nan
        m = classification_metrics(p, y)
        return {"val_loss": nll, **{f"val_{k}": v for k, v in m.items() if k != "n"}}
