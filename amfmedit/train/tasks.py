"""The two kinds of training the engine runs: contrastive pretraining and supervised training.

A task turns row positions into a loss on the device (gather, augment, corrupt, forward)
and validates on clean inputs, gathering results across ranks. Supervised training covers the
rconf probes, fine-tuning (every fusion, frozen or trainable) and the supervised baselines:
they differ only in the model and which inputs it reads; what the model predicts and how it is
scored is the prediction kind's (:mod:`amfmedit.stages.kinds`), handed in by the stage.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from amfmedit.train.augment import ImageAugment, augment_batch
from amfmedit.train.corruption import TabularCorruptor, drop_modalities
from amfmedit.train.inputs import Batch, DeviceData
from amfmedit.train.metrics import classification_metrics
from amfmedit.train.runtime import Runtime, gather_with_grad


def _image_input(batch: Batch, aug: ImageAugment | None, gen: torch.Generator | None, channels_last: bool):
    if batch.image is None:
        return None
    x = augment_batch(batch.image, aug, gen) if aug is not None else batch.image.float() / 255.0
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _eval_chunks(rows: np.ndarray, batch_size: int, rt: Runtime) -> list[np.ndarray]:
    """This rank's share of ``rows`` in fixed-size chunks (file order, no padding)."""
    mine = rows[rt.rank :: rt.world_size]
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]


def global_contrastive_loss(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], z_img: torch.Tensor,
                            z_tab: torch.Tensor) -> torch.Tensor:
    """The contrastive loss over the global batch: every rank's pairs are every rank's negatives.

    Under DDP each rank gathers the projections of all ranks (with gradients,
    :func:`~amfmedit.train.runtime.gather_with_grad`) and computes the loss of the whole global
    batch, so W processes x batch B optimise the same objective, with the same loss value and
    (after DDP's averaging) the same gradients, as one process at batch W x B. In one process
    it is ``loss(z_img, z_tab)``. The logits grow to (W B) x (W B) per rank, small next to the
    encoders.
    """
    # NOTE[paper]: the paper trains on one GPU; the reference (Hager et al.) uses one process
    # too. Gathering keeps eq. 11's negatives those of the global batch under torchrun.
    return loss(gather_with_grad(z_img), gather_with_grad(z_tab))


class ContrastiveTask:
    """ITC pretraining (§3.4): augmented image vs corrupted tabular row; clean pairs for validation.

    Args:
        model: maps ``(image (B, C, H, W) float, x_cont, x_cat, missing=(B, F) bool)`` to projected
            ``(z_img, z_tab)``, each (B, d_proj). ``data`` should hold complete pairs only
            (:meth:`DeviceData.with_complete_rows`).
        loss: ``(z_img, z_tab) -> scalar`` (the ITC loss, eq. 11).
        probe_every: every this many epochs also fit a logistic-regression probe on the
            frozen image embeddings of the training rows and report its validation metric
            (the reference's online classifier); 0 turns it off.
        embed: ``(model, image) -> (B, D)`` pooled image embedding for the probe.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        data: DeviceData,
        augment: ImageAugment,
        corruptor: TabularCorruptor,
        channels_last: bool = False,
        eval_batch_size: int = 64,
        spec: dict,
        probe_every: int = 0,
        embed: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.module = model
        self.loss = loss
        self.data = data
        self.augment = augment
        self.corruptor = corruptor
        self.channels_last = channels_last
        self.eval_batch_size = eval_batch_size
        self.spec = spec
        self.probe_every = probe_every
        self.embed = embed
        self.train_rows = data.rows("train")
        self.val_rows = data.rows("val")
        self._epoch = 0  # the epoch being trained (set by the engine; counted here otherwise)
        self._epoch_set = False

    def model_spec(self) -> dict:
        return self.spec

    def set_epoch(self, epoch: int) -> None:
        """The engine's 1-based epoch number (also after ``--resume``): the probe runs on the
        epochs that are multiples of ``probe_every``, so a resumed run probes on the same
        epochs as an uninterrupted one."""
        self._epoch, self._epoch_set = int(epoch), True

    def train_labels(self) -> np.ndarray:
        return self.data.dataset.labels[self.train_rows]

    def train_step(self, model, positions, gen):
        batch = self.data.batch(self.train_rows[positions])
        image = _image_input(batch, self.augment, gen, self.channels_last)
        c = self.corruptor.corrupt(batch.x_cont, batch.x_cat, batch.missing, gen)
        z_img, z_tab = model(image, c.x_cont, c.x_cat, missing=c.missing)
        return global_contrastive_loss(self.loss, z_img, z_tab), len(batch)

    def validate(self, model, rt: Runtime) -> dict[str, float]:
        if not self._epoch_set:  # called outside the engine: count the calls
            self._epoch += 1
        total = torch.zeros(2, dtype=torch.float64, device=rt.device)
        for rows in _eval_chunks(self.val_rows, self.eval_batch_size, rt):
            if len(rows) < 2:  # a contrastive loss needs negatives
                continue
            batch = self.data.batch(rows)
            z_img, z_tab = model(_image_input(batch, None, None, self.channels_last), batch.x_cont, batch.x_cat,
                                 missing=batch.missing)
            total[0] += self.loss(z_img.float(), z_tab.float()).double() * len(rows)
            total[1] += len(rows)
        if rt.distributed:
            torch.distributed.all_reduce(total)
        out = {"val_loss": float(total[0] / total[1]) if total[1] > 0 else math.nan}
        if self.probe_every and self.embed is not None and self._epoch % self.probe_every == 0:
            out.update(self._probe(model, rt))
        return out

    def _embeddings(self, model, rows: np.ndarray, rt: Runtime) -> tuple[np.ndarray, np.ndarray]:
        parts = []
        for chunk in _eval_chunks(rows, self.eval_batch_size, rt):
            batch = self.data.batch(chunk)
            z = self.embed(model, _image_input(batch, None, None, self.channels_last)).float().cpu().numpy()
            parts.append((chunk, z))
        gathered = [p for rank_parts in rt.all_gather_object(parts) for p in rank_parts]
        idx = np.concatenate([c for c, _ in gathered])
        emb = np.concatenate([z for _, z in gathered])
        order = np.argsort(idx, kind="stable")
        return emb[order], self.data.dataset.labels[idx[order]]

    def _probe(self, model, rt: Runtime) -> dict[str, float]:
        from sklearn.linear_model import LogisticRegression

        x_tr, y_tr = self._embeddings(model, self.train_rows, rt)
        x_va, y_va = self._embeddings(model, self.val_rows, rt)
        if len(np.unique(y_tr)) < 2:
            return {}
        clf = LogisticRegression(class_weight="balanced", max_iter=1000).fit(x_tr, y_tr)
        probs = np.zeros((len(x_va), int(self.data.dataset.labels.max()) + 1))
        probs[:, clf.classes_] = clf.predict_proba(x_va)
        m = classification_metrics(probs, y_va)
        return {"probe_auc": m["auc"], "probe_acc": m["acc"]}


class SupervisedTask:
    """Supervised training of a model on images, tabular rows or both, for one prediction kind.

    Args:
        model: maps ``(image | None, x_cont, x_cat, *, missing, image_present, table_present)``
            (the classifiers of :mod:`amfmedit.models.composite`) to an output (B, K) or to an
            object with ``logits`` and ``aux`` (a dict of named auxiliary losses, e.g. AMF's).
        loss: ``(output, targets, aux) -> scalar``.
        kind: the prediction kind (:mod:`amfmedit.stages.kinds`): ``targets(dataset)`` is what the
            loss and the metrics take (class indices, time and event, values), ``predictions(output)``
            maps the model's output to what is stored and scored, ``validation_metrics(outputs,
            targets)`` scores a split (``loss`` and the headline among them), ``head_size``.
        use_image: whether the model reads images (tabular models are passed None).
        augment: image augmentation for training rows (None: clean images).
        modality_dropout: each complete training row loses its image or its table with this
            probability (:func:`~amfmedit.train.corruption.drop_modalities`); validation and
            prediction use the rows' own flags.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        loss: Callable | None,
        data: DeviceData,
        use_image: bool,
        augment: ImageAugment | None,
        kind,
        channels_last: bool = False,
        eval_batch_size: int = 128,
        spec: dict | None = None,
        modality_dropout: float = 0.0,
    ) -> None:
        self.module = model
        self.loss = loss
        self.data = data
        self.modality_dropout = modality_dropout
        self.use_image = use_image
        self.augment = augment
        self.kind = kind
        self.channels_last = channels_last
        self.eval_batch_size = eval_batch_size
        self.spec = spec or {}
        self.train_rows = data.rows("train")
        self.targets = np.asarray(kind.targets(data.dataset))  # (N, ...) every row's outcome, as the kind codes it
        # on the device once: int64 class indices stay int64, time / event / values are float32
        dtype = torch.int64 if self.targets.dtype.kind in "iu" else torch.float32
        # a copy: the prepared arrays are read-only memory maps, which torch would share (and warn about)
        self._targets = torch.tensor(self.targets, dtype=dtype, device=data.device)

    def model_spec(self) -> dict:
        return self.spec

    def train_labels(self) -> np.ndarray:
        """The groups the class-balanced sampler weighs (the prepared strata: class indices; survival: events)."""
        return self.data.dataset.labels[self.train_rows]

    def train_step(self, model, positions, gen):
        batch = self.data.batch(self.train_rows[positions], images=self.use_image)
        image = _image_input(batch, self.augment, gen, self.channels_last) if self.use_image else None
        image_present, table_present = batch.image_present, batch.table_present
        if self.modality_dropout > 0:
            image_present, table_present = drop_modalities(image_present, table_present, self.modality_dropout, gen)
        logits, aux = split_output(model(image, batch.x_cont, batch.x_cat, missing=batch.missing,
                                         image_present=image_present, table_present=table_present))
        targets = self._targets.index_select(0, torch.as_tensor(batch.rows, device=self._targets.device))
        return self.loss(logits.float(), targets, aux), len(batch)

    def predict(self, model, split: str, rt: Runtime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, predictions (N, K) and targets of ``split`` (all ranks' shares, file order)."""
        rows = self.data.rows(split)
        chunks = _eval_chunks(rows, self.eval_batch_size, rt)
        inputs = (self.data.batch(chunk, images=self.use_image) for chunk in chunks)
        outs = infer(model, self.kind, inputs, channels_last=self.channels_last, use_image=self.use_image)
        gathered = [p for rank_parts in rt.all_gather_object(list(zip(chunks, outs))) for p in rank_parts]
        if not gathered:
            return rows[:0], np.zeros((0, self.kind.head_size(self.data.dataset.schema))), self.targets[rows[:0]]
        idx = np.concatenate([c for c, _ in gathered])
        preds = np.concatenate([p for _, p in gathered])
        order = np.argsort(idx, kind="stable")
        idx, preds = idx[order], preds[order]
        return idx, preds, self.targets[idx]

    def validate(self, model, rt: Runtime) -> dict[str, float]:
        _, preds, targets = self.predict(model, "val", rt)
        return {f"val_{k}": v for k, v in self.kind.validation_metrics(preds, targets).items()}


def split_output(out) -> tuple[torch.Tensor, dict]:
    """A model's output as ``(logits (B, K), auxiliary losses)``: fusions return both, plain models a tensor."""
    return getattr(out, "logits", out), (getattr(out, "aux", None) or {})


@torch.no_grad()
def infer(model: nn.Module, kind, inputs, *, channels_last: bool = False, use_image: bool = True) -> list[np.ndarray]:
    """The predictions of ``model`` for each batch of ``inputs``: the one inference path of
    ``evaluate``, the R_conf probes and ``predict``.

    ``inputs`` yields objects with ``image`` (uint8 (B, C, H, W) on the model's device, or None),
    ``x_cont``, ``x_cat``, ``missing`` (B, F) bool and the ``image_present`` / ``table_present``
    (B,) bool flags (:class:`~amfmedit.train.inputs.Batch`); each batch gives
    ``kind.predictions(output)`` as float64 numpy (B, K). The caller holds eval mode and autocast.
    """
    out = []
    for batch in inputs:
        image = _image_input(batch, None, None, channels_last) if use_image else None
        logits, _ = split_output(model(image, batch.x_cont, batch.x_cat, missing=batch.missing,
                                       image_present=batch.image_present, table_present=batch.table_present))
        out.append(kind.predictions(logits.float()).cpu().numpy().astype(np.float64))
    return out
