"""Tabular corruption for contrastive pretraining (SCARF-style, Hager et al. 2023; A.2).

For each sample, ``floor(rate * n_features)`` features chosen at random are replaced by the
value of the same feature in a randomly drawn TRAINING row, i.e. by a draw from that
column's empirical marginal distribution. Continuous and categorical features are one pool
of features, as in the reference code.
"""

from __future__ import annotations

import torch


class TabularCorruptor:
    """Holds the training columns; :meth:`__call__` corrupts a batch on their device.

    Args:
        x_cont: (N_train, n_cont) float training values (already imputed and scaled).
        x_cat: (N_train, n_cat) int64 training codes.
        rate: fraction of features replaced in every sample (0.3 in the paper).
    """

    def __init__(self, *, x_cont: torch.Tensor, x_cat: torch.Tensor, rate: float = 0.3) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"corruption rate must be in [0, 1], got {rate=}")
        if x_cont.shape[0] != x_cat.shape[0] or x_cont.shape[0] == 0:
            raise ValueError(f"need the same non-zero number of training rows, got {x_cont.shape=} {x_cat.shape=}")
        self.x_cont = x_cont
        self.x_cat = x_cat
        self.rate = rate
        self.n_cont = x_cont.shape[1]
        self.n_features = x_cont.shape[1] + x_cat.shape[1]
        self.n_corrupt = int(self.n_features * rate)

    def __call__(
        self, x_cont: torch.Tensor, x_cat: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, n_cont), (B, n_cat) -> corrupted copies and the (B, n_features) bool mask of replaced cells."""
        b = x_cont.shape[0]
        dev = x_cont.device
        if self.n_corrupt == 0 or b == 0:
            return x_cont, x_cat, torch.zeros(b, self.n_features, dtype=torch.bool, device=dev)
        # Exactly n_corrupt features per sample: the ranks of i.i.d. uniforms are a random permutation.
        scores = torch.rand(b, self.n_features, generator=gen, device=dev)
        chosen = scores.argsort(dim=1)[:, : self.n_corrupt]
        mask = torch.zeros(b, self.n_features, dtype=torch.bool, device=dev)
        mask.scatter_(1, chosen, True)
        rows = torch.randint(0, self.x_cont.shape[0], (b, self.n_features), generator=gen, device=dev)
        out_cont, out_cat = x_cont, x_cat
        if self.n_cont:
            drawn = torch.gather(self.x_cont, 0, rows[:, : self.n_cont])
            out_cont = torch.where(mask[:, : self.n_cont], drawn, x_cont)
        if self.n_features > self.n_cont:
            drawn = torch.gather(self.x_cat, 0, rows[:, self.n_cont :])
            out_cat = torch.where(mask[:, self.n_cont :], drawn, x_cat)
        return out_cont, out_cat, mask
