"""Projection heads (Hager et al. 2023; AMF-MedIT Fig. 1 and §3.3.2)."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor


class ProjectionHead(nn.Module):
    """Linear -> ReLU -> Linear: (B, d_in) -> (B, d_out).

    Pretraining uses 2048 -> 2048 -> 128 for images and d_tab -> d_tab -> 128 for tables; the
    AMF projectors Psi have the same form with d_out = D_out (2048), which is what makes
    Table 3's 8.53 M parameters come out (a BatchNorm variant would add 4 k).
    """

    kind = "projection_head"

    def __init__(self, *, d_in: int, d_hidden: int, d_out: int) -> None:
        for name, v in (("d_in", d_in), ("d_hidden", d_hidden), ("d_out", d_out)):
            if v < 1:
                raise ValueError(f"{name} must be positive, however: {name}={v}")
        super().__init__()
        self.config = dict(d_in=d_in, d_hidden=d_hidden, d_out=d_out)
        self.linear1 = nn.Linear(d_in, d_hidden)
        self.activation = nn.ReLU()
        self.linear2 = nn.Linear(d_hidden, d_out)
        self.d_out = d_out

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.activation(self.linear1(x)))
