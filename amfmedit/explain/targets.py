"""The views of a classifier that the explainers differentiate (which model of a run is
explained is the explain stage's business: :mod:`amfmedit.stages.explain`).

The views: :class:`TabularScore` is ``(x_cont, e_cat, *context) -> (B, C)`` for captum, where
``context`` is the fixed image part of a multimodal model; :class:`ImageOnly` is
``image -> (B, C) logits`` with each sample's tabular row fixed, for pytorch-grad-cam.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

from amfmedit.explain.configs import OUTPUTS


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[nn.Module]:
    """Parameters with requires_grad=False (gradients w.r.t. inputs only; no weight gradients), restored after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class TabularScore(nn.Module):
    """``(x_cont (B, n_cont), e_cat (B, n_cat, d_e), *context) -> (B, C)``: what IG differentiates.

    ``output="prob"``: softmax probabilities (attributions then sum to p(x) - p(baseline) of
    the target class); ``"logit"``: the raw logits. For a multimodal model ``context`` starts with
    ``(z_img (B, D_img), feature_map (B, D_img, h, w) | None)`` from :meth:`image_context`, so
    the image part is computed once per sample, not once per interpolation step. An encoder that
    reads the missing mask (``missing="token"``) gets it as the last item of ``context``: the
    (B, F) bool of its ``input_mask``, fixed context held equal at the sample and the baseline
    (docs/missing-data.md).
    """

    def __init__(self, model: nn.Module, *, modality: str | None, output: str = "prob") -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, however: {output=}")
        super().__init__()
        self.model, self.output = model, output
        self.multimodal = modality is None
        self.encoder = model.tabular_encoder if self.multimodal else model.encoder

    @torch.no_grad()
    def image_context(self, image: Tensor | None) -> tuple:
        """The fixed image inputs of the fusion for a batch of images (() for a tabular model)."""
        if not self.multimodal:
            return ()
        if not getattr(self.model, "uses_feature_map", True):
            return (self.model.image_encoder(image), None)
        fmap = self.model.image_encoder.forward_features(image)
        z_img = self.model.image_encoder.pool(fmap)
        return (z_img, fmap if getattr(self.model.fusion, "needs_feature_map", False) else None)

    def forward(self, x_cont: Tensor, e_cat: Tensor, *context) -> Tensor:
        if self.multimodal:
            z_img, fmap, *rest = context
        else:
            rest = context
        # the mask goes only to an encoder that reads it (the base contract has none)
        z_tab = self.encoder.forward_embedded(x_cont, e_cat, *rest[:1])
        if self.multimodal:
            logits = self.model.fusion(z_img, z_tab, fmap).logits
        else:
            logits = self.model.head(z_tab)
        return torch.softmax(logits.float(), dim=-1) if self.output == "prob" else logits.float()


class ImageOnly(nn.Module):
    """``image (B, C, H, W) -> logits (B, C)`` with the batch's own tabular rows fixed (:meth:`fix`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.x_cont: Tensor | None = None
        self.x_cat: Tensor | None = None
        self.missing: Tensor | None = None
        self.table_present: Tensor | None = None

    def fix(self, x_cont: Tensor, x_cat: Tensor, missing: Tensor | None = None,
            table_present: Tensor | None = None) -> None:
        """The tabular rows (with their (B, F) missing mask and (B,) table flags) that go with the next images."""
        self.x_cont, self.x_cat, self.missing, self.table_present = x_cont, x_cat, missing, table_present

    def forward(self, image: Tensor) -> Tensor:
        if self.x_cont is None or len(self.x_cont) != len(image):
            raise ValueError("fix(x_cont, x_cat) with one tabular row per image before calling")
        # A frozen image encoder has no parameter that needs a gradient, so its last stage's
        # output would not require one and Grad-CAM's gradient hook would never fire: let the
        # gradient start at the image instead.
        if not image.requires_grad:
            image = image.detach().requires_grad_(True)
        return self.model(image, self.x_cont, self.x_cat, missing=self.missing,
                          table_present=self.table_present).logits
