"""Which training rows each rank sees in an epoch, in which order.

Plain shuffling or class-balanced sampling with replacement (Appendix A.3: OL3I's class 0
weighted 0.5, class 1 weighted 5). The whole epoch's order is drawn from ``(seed, epoch)``
identically on every rank and then dealt out ``rank::world_size`` after padding to a
multiple of the world size — the same contract as ``DistributedSampler``, extended to the
weighted case (``WeightedRandomSampler`` has no distributed version).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from amfmedit.train.seeding import STREAM_SAMPLER, generator


def sample_weights(labels: np.ndarray, class_weights: list[float] | tuple[float, ...]) -> np.ndarray:
    """Per-sample weight = ``class_weights[label]``."""
    labels = np.asarray(labels, dtype=np.int64)
    cw = np.asarray(class_weights, dtype=np.float64)
    if labels.size and labels.max() >= len(cw):
        raise ValueError(f"class_weights has {len(cw)} entries but labels go up to {labels.max()}")
    if (cw < 0).any() or not (cw > 0).any():
        raise ValueError(f"class weights must be >= 0 with one positive, got {list(cw)}")
    return cw[labels]


@dataclass
class EpochSampler:
    """Indices into the training rows for one rank, per epoch.

    Args:
        n: number of training rows.
        weights: per-row sampling weights (class-balanced sampling with replacement, ``n``
            draws per epoch) or None for a plain permutation.
    """

    n: int
    seed: int
    weights: np.ndarray | None = None
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError(f"no training rows ({self.n=})")
        if self.weights is not None and len(self.weights) != self.n:
            raise ValueError(f"{len(self.weights)=} != {self.n=}")

    @property
    def per_rank(self) -> int:
        return -(-self.n // self.world_size)

    def epoch(self, epoch: int) -> np.ndarray:
        """(per_rank,) int64 row positions for this rank in ``epoch``."""
        gen = generator(self.seed, epoch, STREAM_SAMPLER)
        if self.weights is None:
            order = torch.randperm(self.n, generator=gen)
        else:
            w = torch.as_tensor(self.weights, dtype=torch.float64)
            order = torch.multinomial(w, self.n, replacement=True, generator=gen)
        order = order.numpy()
        total = self.per_rank * self.world_size
        if total > self.n:  # pad by wrapping around, as DistributedSampler does
            order = np.concatenate([order, order[: total - self.n]])
        return order[self.rank :: self.world_size].astype(np.int64)


def batches(order: np.ndarray, batch_size: int, *, drop_last_single: bool = True) -> list[np.ndarray]:
    """Split an epoch's order into batches; a trailing batch of one sample is dropped
    (BatchNorm cannot normalise one sample, and the reference drops it too)."""
    if batch_size <= 0:
        raise ValueError(f"{batch_size=} must be positive")
    out = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_last_single and len(out) > 1 and len(out[-1]) == 1:
        out.pop()
    return out
