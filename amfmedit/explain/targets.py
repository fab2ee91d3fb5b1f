"""Which trained model of a run is explained, and the views of it the explainers see.

Integrated Gradients explains a tabular model: the supervised tabular baseline
(``supervised-tabular-seed<N>``, the paper's §4.2.1 setting) when the run has one, else the
tabular branch of a fine-tuned image-tabular model with each sample's image held fixed.
Grad-CAM explains an image encoder inside a classifier: a fine-tuned concatenation model with
frozen pretrained encoders first (the paper's Fig. 6 setting), then any other fine-tuned model,
then the supervised image baseline. ``--stage NAME`` picks one explicitly.

The views: :class:`TabularScore` is ``(x_cont, e_cat, *context) -> (B, C)`` for captum, where
``context`` is the fixed image part of a multimodal model; :class:`ImageOnly` is
``image -> (B, C) logits`` with each sample's tabular row fixed, for pytorch-grad-cam.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn

from amfmedit.errors import UserError, close_matches
from amfmedit.explain.masking import split_mask_suffix, stage_mask
from amfmedit.train import rundir

OUTPUTS = ("prob", "logit")


def _parse(name: str) -> dict | None:
    from amfmedit.stages.finetune import parse_stage

    base, tag = split_mask_suffix(name)
    info = parse_stage(base)
    return None if info is None else {**info, "mask": tag}


def classifier_stages(run: rundir.Run) -> dict[str, dict]:
    """Finished ``finetune-*`` / ``supervised-*`` stages (masked ones included) -> parsed name."""
    out = {}
    for name in run.complete_stages():
        info = _parse(name)
        if info is not None:
            out[name] = info
    return out


def _uses(info: dict, purpose: str) -> bool:
    if purpose == "ig":
        return info["modality"] != "image"
    return info["modality"] != "tabular"


def _preference(info: dict, purpose: str) -> tuple:
    if purpose == "ig":
        rank = 0 if info["modality"] == "tabular" else (1 if info["strategy"] == "trainable" else 2)
    elif info["fusion"] == "concat":
        rank = 0 if info["strategy"] == "frozen" else 1
    else:
        rank = 3 if info["modality"] == "image" else 2
    return (rank, info["seed"])


def choose_stage(run: rundir.Run, purpose: str, stage: str | None = None) -> str:
    """The stage to explain: ``stage`` when given (checked), else the preferred finished one."""
    stages = classifier_stages(run)
    what = "a tabular input" if purpose == "ig" else "an image input"
    if stage is not None:
        if stage not in stages:
            names = list(stages)
            hint = close_matches(stage, names)
            listing = ", ".join(names) if names else "none"
            raise UserError(f"--stage {stage}: not a finished classifier of run {run.name} (finished: {listing})"
                            + (f"; did you mean {hint}?" if hint else ""))
        if not _uses(stages[stage], purpose):
            raise UserError(f"--stage {stage}: this model has no {what.split(' ', 1)[1]} to explain with "
                            f"{'Integrated Gradients' if purpose == 'ig' else 'Grad-CAM'}; pick a stage with {what}")
        return stage
    usable = {n: i for n, i in stages.items() if _uses(i, purpose) and i["mask"] is None}
    if not usable:
        make = ("`amfmedit finetune --fusion none --modality tabular` (the paper's supervised tabular model) "
                "or `amfmedit finetune --fusion amf`" if purpose == "ig"
                else "`amfmedit finetune --fusion concat --strategy frozen` (the paper's Fig. 6 setting)")
        raise UserError(f"run {run.name} has no trained model with {what} to explain; run {make} first")
    return min(usable, key=lambda n: (_preference(usable[n], purpose), n))


@dataclass
class Explained:
    """A trained classifier loaded for explanation."""

    run: rundir.Run
    stage: str
    model: nn.Module  # UnimodalClassifier or ImageTabularClassifier, eval mode
    info: dict  # fusion, strategy, modality, seed, mask tag
    mask: list[str]  # features this model was trained with masked

    @property
    def stage_dir(self) -> Path:
        return self.run.stage(self.stage)

    @property
    def tabular_encoder(self) -> nn.Module:
        return self.model.encoder if self.info["modality"] == "tabular" else self.model.tabular_encoder

    @property
    def image_encoder(self) -> nn.Module:
        return self.model.encoder if self.info["modality"] == "image" else self.model.image_encoder

    def describe(self, purpose: str) -> str:
        """One line naming the model, e.g. for the terminal and the report."""
        from amfmedit.stages.report import ENCODER_TITLES, FUSION_TITLES

        cfg = self.model.config
        if self.info["modality"] == "tabular":
            enc = ENCODER_TITLES.get(cfg["encoder"]["kind"], cfg["encoder"]["kind"])
            text = f"supervised {enc} tabular model"
        elif self.info["modality"] == "image":
            text = "supervised image model (ResNet)"
        else:
            enc = ENCODER_TITLES.get(cfg["tabular_encoder"]["kind"], cfg["tabular_encoder"]["kind"])
            fusion = FUSION_TITLES.get(self.info["fusion"], self.info["fusion"])
            part = f"the {enc} tabular branch of" if purpose == "ig" else "the image encoder of"
            text = f"{part} the fine-tuned {fusion} model ({self.info['strategy']})"
            if purpose == "ig":
                text += ", each sample's image held fixed"
            else:
                text += ", each sample's tabular row held fixed"
        masked = f"; trained with {', '.join(self.mask)} masked" if self.mask else ""
        return f"{text} [{self.stage}/best.pt{masked}]"


def load_explained(run: rundir.Run, stage: str, device: torch.device | str = "cpu") -> Explained:
    """Load ``stage``'s best-validation model (``best.pt``) in eval mode on ``device``."""
    from amfmedit.stages.classify import best_model

    info = classifier_stages(run).get(stage)
    if info is None:
        raise UserError(f"--stage {stage}: not a finished classifier of run {run.name}")
    model, _ = best_model(run.stage(stage))
    model = model.to(device).eval()
    return Explained(run, stage, model, info, stage_mask(run.stage(stage)))


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
    the target class); ``"logit"``: the raw logits. For a multimodal model ``context`` is
    ``(z_img (B, D_img), feature_map (B, D_img, h, w) | None)`` from :meth:`image_context`, so
    the image part is computed once per sample, not once per interpolation step.
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
        fmap = self.model.image_encoder.forward_features(image)
        z_img = self.model.image_encoder.pool(fmap)
        return (z_img, fmap if self.model.fusion.needs_feature_map else None)

    def forward(self, x_cont: Tensor, e_cat: Tensor, *context) -> Tensor:
        z_tab = self.encoder.forward_embedded(x_cont, e_cat)
        if self.multimodal:
            z_img, fmap = context
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

    def fix(self, x_cont: Tensor, x_cat: Tensor) -> None:
        self.x_cont, self.x_cat = x_cont, x_cat

    def forward(self, image: Tensor) -> Tensor:
        if self.x_cont is None or len(self.x_cont) != len(image):
            raise ValueError("fix(x_cont, x_cat) with one tabular row per image before calling")
        # A frozen image encoder has no parameter that needs a gradient, so its last stage's
        # output would not require one and Grad-CAM's gradient hook would never fire: let the
        # gradient start at the image instead.
        if not image.requires_grad:
            image = image.detach().requires_grad_(True)
        return self.model(image, self.x_cont, self.x_cat).logits
