"""Batch corruption for training: tabular corruption for contrastive pretraining and modality dropout.

Tabular corruption (SCARF-style, Hager et al. 2023; A.2): for each sample,
``floor(rate * n_features)`` features chosen at random are corrupted. Continuous and categorical
features are one pool of features, as in the reference code. Two modes, :data:`CORRUPTION_MODES`:

- ``"swap"`` (default): the cell takes the value of the same feature in a randomly drawn
  TRAINING row, i.e. a draw from that column's empirical marginal distribution. With the
  missing mask (:meth:`TabularCorruptor.corrupt`) the drawn row's missing flag comes with the
  value, so the draw is from the marginal of the cell as recorded, missingness included.
- ``"missing"``: the cell is marked missing and its value left as it is (masked-feature
  corruption, as TIP's masking; Du et al. 2024). Only an encoder that reads the mask
  (``missing="token"``) sees this corruption: for one with ``missing="impute"`` nothing changes.

"swap" stays the default: it is the corruption the paper's results were obtained with, it acts
on every encoder whichever way it reads missing values, and with the mask it already exposes
token encoders to corrupted missingness patterns drawn from the cohort itself. "missing" is
the choice for studying masked-feature pretraining with token encoders.

Modality dropout (:func:`drop_modalities`, Neverova et al. 2016, ModDrop): complete training
rows lose one modality at random, so a fusion model learns to score rows that arrive without
an image or without a table (docs/missing-data.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CORRUPTION_MODES = ("swap", "missing")


@dataclass
class Corrupted:
    """A corrupted batch: values, missing mask and which cells were corrupted."""

    x_cont: torch.Tensor  # (B, n_cont)
    x_cat: torch.Tensor  # (B, n_cat)
    missing: torch.Tensor  # (B, F) bool after corruption
    corrupted: torch.Tensor  # (B, F) bool: cells chosen for corruption


class TabularCorruptor:
    """Holds the training columns; :meth:`corrupt` (or ``__call__``) corrupts a batch on their device.

    Args:
        x_cont: (N_train, n_cont) float training values (already imputed and scaled).
        x_cat: (N_train, n_cat) int64 training codes.
        rate: fraction of features corrupted in every sample (0.3 in the paper).
        missing: (N_train, F) bool training missing mask (None: nothing missing); swapped along
            with the values.
        mode: ``"swap"`` or ``"missing"`` (module docstring).
    """

    def __init__(self, *, x_cont: torch.Tensor, x_cat: torch.Tensor, rate: float = 0.3,
                 missing: torch.Tensor | None = None, mode: str = "swap") -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"corruption rate must be in [0, 1], got {rate=}")
        if mode not in CORRUPTION_MODES:
            raise ValueError(f"corruption mode must be one of {CORRUPTION_MODES}, however: {mode=}")
        if x_cont.shape[0] != x_cat.shape[0] or x_cont.shape[0] == 0:
            raise ValueError(f"need the same non-zero number of training rows, got {x_cont.shape=} {x_cat.shape=}")
        self.x_cont = x_cont
        self.x_cat = x_cat
        self.rate = rate
        self.mode = mode
        self.n_cont = x_cont.shape[1]
        self.n_features = x_cont.shape[1] + x_cat.shape[1]
        self.n_corrupt = int(self.n_features * rate)
        if missing is None:
            missing = torch.zeros(x_cont.shape[0], self.n_features, dtype=torch.bool, device=x_cont.device)
        if missing.shape != (x_cont.shape[0], self.n_features):
            raise ValueError(f"missing must be (N_train, F) = {(x_cont.shape[0], self.n_features)}, however: "
                             f"{tuple(missing.shape)=}")
        self.missing = missing.bool()

    def corrupt(self, x_cont: torch.Tensor, x_cat: torch.Tensor, missing: torch.Tensor | None,
                gen: torch.Generator) -> Corrupted:
        """(B, n_cont), (B, n_cat), (B, F) bool | None -> the corrupted batch."""
        b = x_cont.shape[0]
        dev = x_cont.device
        if missing is None:
            missing = torch.zeros(b, self.n_features, dtype=torch.bool, device=dev)
        if self.n_corrupt == 0 or b == 0:
            return Corrupted(x_cont, x_cat, missing, torch.zeros(b, self.n_features, dtype=torch.bool, device=dev))
        # Exactly n_corrupt features per sample: the ranks of i.i.d. uniforms are a random permutation.
        scores = torch.rand(b, self.n_features, generator=gen, device=dev)
        chosen = scores.argsort(dim=1)[:, : self.n_corrupt]
        mask = torch.zeros(b, self.n_features, dtype=torch.bool, device=dev)
        mask.scatter_(1, chosen, True)
        if self.mode == "missing":
            return Corrupted(x_cont, x_cat, missing | mask, mask)
        rows = torch.randint(0, self.x_cont.shape[0], (b, self.n_features), generator=gen, device=dev)
        out_cont, out_cat = x_cont, x_cat
        if self.n_cont:
            drawn = torch.gather(self.x_cont, 0, rows[:, : self.n_cont])
            out_cont = torch.where(mask[:, : self.n_cont], drawn, x_cont)
        if self.n_features > self.n_cont:
            drawn = torch.gather(self.x_cat, 0, rows[:, self.n_cont :])
            out_cat = torch.where(mask[:, self.n_cont :], drawn, x_cat)
        out_missing = torch.where(mask, torch.gather(self.missing, 0, rows), missing)
        return Corrupted(out_cont, out_cat, out_missing, mask)

    def __call__(
        self, x_cont: torch.Tensor, x_cat: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, n_cont), (B, n_cat) -> corrupted copies and the (B, n_features) bool mask of replaced cells
        (``"swap"`` without a missing mask; :meth:`corrupt` is the full form)."""
        if self.mode != "swap":
            raise ValueError(f"corruption mode {self.mode!r} changes the missing mask: call corrupt(x_cont, x_cat, "
                             f"missing, gen)")
        out = self.corrupt(x_cont, x_cat, None, gen)
        return out.x_cont, out.x_cat, out.corrupted


def drop_modalities(image_present: torch.Tensor, table_present: torch.Tensor, rate: float,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Modality dropout: each complete row loses its image or its table with probability ``rate``.

    image_present, table_present: (B,) bool. A complete row is hit with probability ``rate``
    and then loses one modality, image or table with equal odds; rows already missing a
    modality are left as they are, so no row ends with neither. Returns the new (B,) flags.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"modality dropout rate must be in [0, 1], got {rate=}")
    b, dev = image_present.shape[0], image_present.device
    if rate == 0.0 or b == 0:
        return image_present, table_present
    u = torch.rand(b, 2, generator=gen, device=dev)
    hit = (u[:, 0] < rate) & image_present & table_present
    drop_image = hit & (u[:, 1] < 0.5)
    return image_present & ~drop_image, table_present & ~(hit & ~drop_image)
