"""The input pipeline: prepared arrays held where the model runs, batches gathered by index.

Images stay uint8 (4× smaller than float) and live on the GPU when they fit (OL3I is about
2.1 GB), so a batch is one ``index_select`` with no host-to-device copy and no worker
processes; augmentation then runs on the batch on the same device
(:mod:`amfmedit.train.augment`). A dataset larger than memory is read batch by batch from
the memory-mapped ``images.npy``.

Incomplete rows (docs/missing-data.md): every batch carries the missing mask (B, F) and the
``image_present`` / ``table_present`` (B,) flags of its rows, gathered on the device like the
values; :meth:`DeviceData.with_complete_rows` keeps the rows that have both modalities (what
contrastive pretraining and the R_conf probes train and validate on).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

Residency = Literal["auto", "device", "host", "stream"]
RESIDENCIES = ("auto", "device", "host", "stream")


def host_available_bytes() -> int:
    """Memory the OS can give us now (MemAvailable), else the physical total."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def choose_residency(nbytes: int, device: torch.device, requested: Residency = "auto") -> str:
    """Where to keep ``nbytes`` of images: on the device, in host memory, or streamed from disk."""
    if requested not in RESIDENCIES:
        raise ValueError(f"unknown residency {requested!r}; use one of {RESIDENCIES}")
    if requested != "auto":
        return "host" if requested == "device" and device.type == "cpu" else requested
    fits_host = nbytes <= 0.5 * host_available_bytes()
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        if nbytes <= 0.4 * free and fits_host:
            return "device"
    return "host" if fits_host else "stream"


def device_index(rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B,) int64 row indices on ``device`` without stalling the host.

    A plain ``torch.as_tensor(rows, device="cuda")`` copies from pageable memory and waits for
    the GPU to finish all queued work first, so the host could never run ahead of the GPU;
    a pinned, non-blocking copy keeps the queue full (the difference was ~5% of a ResNet-50
    pretraining step at 512 x 512 on an H200).
    """
    idx = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64))
    if device.type == "cuda":
        return idx.pin_memory().to(device, non_blocking=True)
    return idx


class ImageBank:
    """uint8 images (N, C, H, W) gathered by row index onto ``device``."""

    def __init__(self, images: np.ndarray, *, device: torch.device, residency: Residency = "auto") -> None:
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}")
        self.device = device
        self.shape = tuple(images.shape)
        self.residency = choose_residency(images.nbytes, device, residency)
        self._memmap = images
        self._tensor: torch.Tensor | None = None
        if self.residency in ("device", "host"):
            host = torch.from_numpy(np.array(images, copy=True, order="C"))  # read once from the memmap
            self._tensor = host.to(device) if self.residency == "device" else host

    def __len__(self) -> int:
        return self.shape[0]

    def gather(self, rows: np.ndarray, index: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) row indices -> uint8 (B, C, H, W) on the device (``index``: the same rows, already there)."""
        if self._tensor is not None:
            if index is None or index.device != self._tensor.device:
                index = device_index(rows, self._tensor.device)
            return self._tensor.index_select(0, index).to(self.device, non_blocking=True)
        # Streaming: read the rows in file order (sequential I/O), then restore the batch order.
        order = np.argsort(rows, kind="stable")
        block = np.asarray(self._memmap[rows[order]])
        out = np.empty_like(block)
        out[order] = block
        return torch.from_numpy(out).to(self.device, non_blocking=True)


@dataclass
class Batch:
    """One batch on the device; ``image`` is uint8 until a task converts/augments it."""

    rows: np.ndarray  # (B,) dataset row indices
    image: torch.Tensor | None  # (B, C, H, W) uint8 (zeros where the row has no image)
    x_cont: torch.Tensor  # (B, n_cont) float32
    x_cat: torch.Tensor  # (B, n_cat) int64
    label: torch.Tensor  # (B,) int64
    missing: torch.Tensor | None = None  # (B, F) bool, continuous features first: missing before imputation
    image_present: torch.Tensor | None = None  # (B,) bool: the row has an image
    table_present: torch.Tensor | None = None  # (B,) bool: the row has at least one feature value

    def __len__(self) -> int:
        return len(self.rows)


class DeviceData:
    """A prepared dataset's arrays on the training device.

    Args:
        dataset: a :class:`amfmedit.data.PreparedDataset` (or anything with ``images``,
            ``x_cont``, ``x_cat``, ``labels`` and ``indices(split)``; without ``missing``,
            ``image_present`` or ``table_present`` nothing is missing and every row complete).
        with_images: False for tabular-only work (images are then never read).
    """

    def __init__(self, dataset, *, device: torch.device, residency: Residency = "auto", with_images: bool = True) -> None:
        self.dataset = dataset
        self.device = device
        self.images = ImageBank(dataset.images, device=device, residency=residency) if with_images else None
        self.x_cont = torch.tensor(np.asarray(dataset.x_cont, dtype=np.float32), device=device)
        self.x_cat = torch.tensor(np.asarray(dataset.x_cat, dtype=np.int64), device=device)
        self.labels = torch.tensor(np.asarray(dataset.labels, dtype=np.int64), device=device)
        self._set_table(dataset)
        n = len(self.labels)
        image_present = getattr(dataset, "image_present", None)
        self.image_present = torch.tensor(np.ones(n, bool) if image_present is None else
                                          np.asarray(image_present, dtype=bool), device=device)
        self._split_rows = {}

    def _set_table(self, dataset) -> None:
        """The missing mask and table flags of ``dataset`` (defaults: nothing missing)."""
        n, f = len(self.x_cont), self.x_cont.shape[1] + self.x_cat.shape[1]
        missing = getattr(dataset, "missing", None)
        missing = np.zeros((n, f), bool) if missing is None else np.asarray(missing, dtype=bool)
        if missing.shape != (n, f):
            raise ValueError(f"missing must be (N, F) = {(n, f)}, however: {missing.shape}")
        self.missing = torch.tensor(missing, device=self.device)
        table_present = getattr(dataset, "table_present", None)
        # the prepared rows' own answer when the dataset has one: masking features is not absence
        table_present = ~missing.all(axis=1) if table_present is None else np.asarray(table_present, dtype=bool)
        self.table_present = torch.tensor(table_present, device=self.device)

    def rows(self, split: str) -> np.ndarray:
        if split not in self._split_rows:
            self._split_rows[split] = np.asarray(self.dataset.indices(split), dtype=np.int64)
        return self._split_rows[split]

    def batch(self, rows: np.ndarray, *, images: bool = True) -> Batch:
        idx = device_index(rows, self.device)
        return Batch(
            rows=np.asarray(rows),
            image=self.images.gather(rows, idx) if (images and self.images is not None) else None,
            x_cont=self.x_cont.index_select(0, idx),
            x_cat=self.x_cat.index_select(0, idx),
            label=self.labels.index_select(0, idx),
            missing=self.missing.index_select(0, idx),
            image_present=self.image_present.index_select(0, idx),
            table_present=self.table_present.index_select(0, idx),
        )

    def with_table(self, dataset) -> "DeviceData":
        """The same images with ``dataset``'s tabular arrays (e.g. features masked by
        :func:`amfmedit.data.masking.mask_features`): no second copy of the images is made."""
        if len(dataset.labels) != len(self.dataset.labels):
            raise ValueError(f"dataset has {len(dataset.labels)} rows, however these images hold {len(self.dataset.labels)}")
        other = object.__new__(DeviceData)
        other.dataset, other.device, other.images = dataset, self.device, self.images
        other.x_cont = torch.tensor(np.asarray(dataset.x_cont, dtype=np.float32), device=self.device)
        other.x_cat = torch.tensor(np.asarray(dataset.x_cat, dtype=np.int64), device=self.device)
        other.labels, other.image_present = self.labels, self.image_present
        other._set_table(dataset)
        other._split_rows = dict(self._split_rows)
        return other

    def with_image_present(self, image_present: np.ndarray) -> "DeviceData":
        """The same arrays with these (N,) bool image flags (e.g. images withheld at test time by
        :func:`amfmedit.data.masking.drop_images`); the images themselves are shared."""
        flags = np.asarray(image_present, dtype=bool)
        if flags.shape != tuple(self.image_present.shape):
            raise ValueError(f"image_present must be ({len(self.image_present)},), however: {flags.shape}")
        other = object.__new__(DeviceData)
        other.__dict__.update(self.__dict__)
        other.image_present = torch.tensor(flags, device=self.device)
        other._split_rows = dict(self._split_rows)
        return other

    def complete(self, rows: np.ndarray) -> np.ndarray:
        """(B,) bool: which of ``rows`` have both an image and a table."""
        both = (self.image_present & self.table_present).cpu().numpy()
        return both[np.asarray(rows, dtype=np.int64)]

    def with_complete_rows(self) -> "DeviceData":
        """The same arrays with every split restricted to the rows that have both modalities (in
        file order): contrastive pretraining pairs and the R_conf probes use these."""
        other = object.__new__(DeviceData)
        other.__dict__.update(self.__dict__)
        other._split_rows = {s: r[self.complete(r)] for s, r in ((s, self.rows(s)) for s in ("train", "val", "test"))}
        return other

    def with_train_rows(self, rows: np.ndarray) -> "DeviceData":
        """The same arrays with ``rows`` as the training split (e.g. a label fraction of
        :func:`amfmedit.data.subsets.train_subset`); validation and test rows are unchanged."""
        rows = np.asarray(rows, dtype=np.int64)
        full = set(self.rows("train").tolist())
        if not set(rows.tolist()) <= full:
            raise ValueError("training subset holds rows outside the training split")
        other = object.__new__(DeviceData)
        other.__dict__.update(self.__dict__)
        other._split_rows = {**self._split_rows, "train": rows}
        return other
