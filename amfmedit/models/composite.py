"""Whole models: contrastive pretraining pair, image-tabular classifier, unimodal classifier.

Their ``config`` nests the parts as ``{"kind", "config"}`` dicts, so
:func:`amfmedit.models.build_model` rebuilds a checkpoint without pickled objects.

The parts may be any ``nn.Module`` that meets its family's contract (docs/library.md):

- image encoder: ``d_out`` and ``forward(image (B, C, H, W)) -> (B, d_out)``; for fusions
  that read the feature map (``needs_feature_map``) and for Grad-CAM also
  ``forward_features(image) -> (B, d_out, h, w)`` and ``pool(feature_map) -> (B, d_out)``;
- tabular encoder: ``d_out`` and ``forward(x_cont (B, n_cont), x_cat (B, n_cat)) -> (B, d_out)``
  (Integrated Gradients also needs ``embed_categorical`` and ``forward_embedded``); an encoder
  that reads the missing mask takes it as a third argument, ``forward(x_cont, x_cat, missing)``,
  and is only given it when a caller has one;
- fusion: ``forward(z_img, z_tab, feature_map | None) -> FusionOutput`` and the declarations
  listed in :mod:`amfmedit.models.fusion`.

A part without ``kind`` / ``config`` trains and explains like any other; only saving the
model as a self-describing checkpoint (:func:`model_config`) needs them.

Absent modalities (docs/missing-data.md): the classifiers take ``image_present`` /
``table_present`` (B,) bool (None: every row has it). A row without a modality gets a learned
absent-modality vector in place of that encoder's output (z_img, z_tab, and for fusions that
read the feature map every position of it), and the fusion runs unchanged on it; fusions that
declare ``reads_presence`` also get the flags (AMF restricts its auxiliary losses with them).
The encoder still runs on every row (a blank image, imputed values): batch shapes stay fixed,
and the substitution is a ``torch.where`` that always runs, so the absent vectors take part in
every step as DistributedDataParallel requires.
"""

from __future__ import annotations

import torch.nn as nn
import torch
from torch import Tensor

from amfmedit.models.fusion import FusionOutput
from amfmedit.models.heads import ProjectionHead
from amfmedit.models.specs import STRATEGIES


def model_config(module: nn.Module) -> dict:
    """``{"kind", "config"}`` of a buildable module (see :func:`amfmedit.models.build_model`)."""
    kind, config = getattr(module, "kind", None), getattr(module, "config", None)
    if kind is None or config is None:
        raise ValueError(f"{type(module).__name__} has no kind/config and cannot be rebuilt from a checkpoint; "
                         "give it both and register its class in amfmedit.models.MODEL_KINDS")
    missing = [k for k, v in config.items() if v is _UNBUILDABLE]
    if missing:
        raise ValueError(f"{type(module).__name__}: its part(s) {missing} have no kind/config and cannot be rebuilt "
                         "from a checkpoint; give them both and register their classes in amfmedit.models.MODEL_KINDS")
    return {"kind": kind, "config": config}


class _Unbuildable:
    def __repr__(self) -> str:
        return "<no kind/config>"


_UNBUILDABLE = _Unbuildable()


def _part_config(module: nn.Module):
    """A part's ``{"kind", "config"}``, or a placeholder for a user module without them."""
    kind, config = getattr(module, "kind", None), getattr(module, "config", None)
    return _UNBUILDABLE if kind is None or config is None else {"kind": kind, "config": config}


def _width(module: nn.Module, role: str) -> int:
    d = getattr(module, "d_out", None)
    if not isinstance(d, int) or d < 1:
        raise ValueError(f"the {role} {type(module).__name__} needs an int attribute d_out (its output width), "
                         f"however: d_out={d!r}")
    return d


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, however: {strategy=}")


def _tabular(encoder: nn.Module, x_cont: Tensor, x_cat: Tensor, missing: Tensor | None) -> Tensor:
    """The encoder's output; the mask is passed only when there is one (the base contract has no mask)."""
    return encoder(x_cont, x_cat) if missing is None else encoder(x_cont, x_cat, missing)


def _substitute(z: Tensor, present: Tensor | None, absent: Tensor, channel_dim: int = -1) -> Tensor:
    """``z`` with the rows where ``present`` (B,) is False replaced by ``absent`` (D,).

    ``z``: (B, D), (B, T, D) tokens (``channel_dim=-1``) or (B, D, h, w) a feature map
    (``channel_dim=1``), whose every position gets ``absent``.
    """
    b = z.shape[0]
    if present is None:
        present = torch.ones(b, dtype=torch.bool, device=z.device)
    elif present.shape != (b,):
        raise ValueError(f"presence flags must be (B,) = ({b},), however: {tuple(present.shape)=}")
    shape = [1] * z.dim()
    shape[channel_dim] = -1
    return torch.where(present.view(b, *([1] * (z.dim() - 1))), z, absent.to(z.dtype).view(shape))


def _no_absent(owner: str, **flags: Tensor | None) -> None:
    for name, flag in flags.items():
        if flag is not None and not bool(flag.all()):
            raise ValueError(f"{owner} was built without absent-modality vectors (a checkpoint written before they "
                             f"existed): it can only score rows that have every modality, however {name} has False")


def _freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()


class ContrastiveModel(nn.Module):
    """Image-tabular pretraining (Hager et al. 2023; AMF-MedIT §3.1, Fig. 1a).

    ``forward(image, x_cont, x_cat, missing=None) -> (p_img (B, d_proj), p_tab (B, d_proj))``:
    the encoders' outputs through ProjectionHeads D_img -> D_img -> d_proj and D_tab -> D_tab ->
    d_proj (2048 -> 2048 -> 128 and 64 -> 64 -> 128 for ResNet-50 and FT-Mamba), the inputs of
    the ITC loss (eq. 11). Pairs are complete by construction (pretraining uses the rows that
    have both modalities), so there are no absent-modality vectors here.
    """

    kind = "contrastive"

    def __init__(self, image_encoder: nn.Module, tabular_encoder: nn.Module, *, d_proj: int = 128) -> None:
        if d_proj < 1:
            raise ValueError(f"d_proj must be positive, however: {d_proj=}")
        d_img, d_tab = _width(image_encoder, "image encoder"), _width(tabular_encoder, "tabular encoder")
        super().__init__()
        self.image_encoder, self.tabular_encoder = image_encoder, tabular_encoder
        self.image_head = ProjectionHead(d_in=d_img, d_hidden=d_img, d_out=d_proj)
        self.tabular_head = ProjectionHead(d_in=d_tab, d_hidden=d_tab, d_out=d_proj)
        self.config = dict(
            image_encoder=_part_config(image_encoder), tabular_encoder=_part_config(tabular_encoder), d_proj=d_proj
        )

    def forward(self, image: Tensor, x_cont: Tensor, x_cat: Tensor,
                missing: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z_tab = _tabular(self.tabular_encoder, x_cont, x_cat, missing)
        return self.image_head(self.image_encoder(image)), self.tabular_head(z_tab)


class _Classifier(nn.Module):
    """Shared "frozen means frozen" behaviour for classifiers built on pretrained encoders.

    With strategy="frozen" the encoders' parameters have requires_grad=False AND the encoders
    stay in eval mode whatever ``.train()`` is called with, so BatchNorm running statistics
    (buffers, not parameters) are not updated either. (The reference code freezes parameters
    only and lets BN statistics drift during fine-tuning.) Gradients still flow through the
    frozen encoders to their inputs, which Integrated Gradients and Grad-CAM need.
    """

    strategy: str

    def _encoders(self) -> list[nn.Module]:
        raise NotImplementedError

    def _apply_strategy(self) -> None:
        if self.strategy == "frozen":
            for enc in self._encoders():
                _freeze(enc)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.strategy == "frozen":
            for enc in self._encoders():
                enc.eval()
        return self


class ImageTabularClassifier(_Classifier):
    """Fine-tuning model (AMF-MedIT Fig. 1b): image encoder + tabular encoder + a fusion module.

    ``forward(image (B, C, H, W), x_cont, x_cat, *, missing=None, image_present=None,
    table_present=None) -> FusionOutput``; the feature map is computed once and passed to
    fusions that need it (cross-attention). strategy: "trainable" or "frozen" (see
    :class:`_Classifier`). ``absent_vectors`` (default True): learned ``absent_image`` (D_img,)
    and ``absent_table`` (D_tab,) replace the encoder outputs of rows without that modality
    (module docstring); they stay trainable with frozen encoders. A checkpoint written before
    they existed rebuilds without them (``legacy_config``) and scores complete rows only.
    """

    kind = "image_tabular_classifier"
    #: what a config written before a constructor argument existed stands for (build_model)
    legacy_config = {"absent_vectors": False}
    #: the forward arguments the model reads, in order (what an exported graph takes)
    inputs = ("image", "x_cont", "x_cat")

    def __init__(
        self, image_encoder: nn.Module, tabular_encoder: nn.Module, fusion: nn.Module, *, strategy: str = "trainable",
        absent_vectors: bool = True,
    ) -> None:
        _check_strategy(strategy)
        d_img, d_tab = _width(image_encoder, "image encoder"), _width(tabular_encoder, "tabular encoder")
        fcfg = getattr(fusion, "config", None) or {}
        if fcfg.get("d_img", d_img) != d_img or fcfg.get("d_tab", d_tab) != d_tab:
            raise ValueError(
                f"fusion dims must match the encoders: fusion d_img={fcfg.get('d_img')}, d_tab={fcfg.get('d_tab')}; "
                f"encoders d_out={d_img}, {d_tab}"
            )
        self.uses_feature_map = hasattr(image_encoder, "forward_features") and hasattr(image_encoder, "pool")
        if getattr(fusion, "needs_feature_map", False) and not self.uses_feature_map:
            raise ValueError(f"{type(fusion).__name__} reads the image feature map: the image encoder "
                             f"{type(image_encoder).__name__} needs forward_features(image) and pool(feature_map)")
        super().__init__()
        self.image_encoder, self.tabular_encoder, self.fusion = image_encoder, tabular_encoder, fusion
        self.strategy = strategy
        self.config = dict(
            image_encoder=_part_config(image_encoder), tabular_encoder=_part_config(tabular_encoder),
            fusion=_part_config(fusion), strategy=strategy, absent_vectors=bool(absent_vectors),
        )
        # zero: "no evidence" at the start, whatever the scale of the encoder outputs
        self.absent_image = nn.Parameter(torch.zeros(d_img)) if absent_vectors else None
        self.absent_table = nn.Parameter(torch.zeros(d_tab)) if absent_vectors else None
        self._apply_strategy()

    def _encoders(self) -> list[nn.Module]:
        return [self.image_encoder, self.tabular_encoder]

    def forward(self, image: Tensor, x_cont: Tensor, x_cat: Tensor, *, missing: Tensor | None = None,
                image_present: Tensor | None = None, table_present: Tensor | None = None) -> FusionOutput:
        needs_map = getattr(self.fusion, "needs_feature_map", False)
        if self.uses_feature_map:
            feature_map = self.image_encoder.forward_features(image)
            z_img = self.image_encoder.pool(feature_map)
        else:
            feature_map, z_img = None, self.image_encoder(image)
        feature_map = feature_map if needs_map else None
        z_tab = _tabular(self.tabular_encoder, x_cont, x_cat, missing)
        if self.absent_image is not None:
            z_img = _substitute(z_img, image_present, self.absent_image)
            if needs_map:  # every image token of an absent image is the absent vector
                feature_map = _substitute(feature_map, image_present, self.absent_image, channel_dim=1)
            z_tab = _substitute(z_tab, table_present, self.absent_table)
        else:
            _no_absent(type(self).__name__, image_present=image_present, table_present=table_present)
        if getattr(self.fusion, "reads_presence", False):
            return self.fusion(z_img, z_tab, feature_map, image_present=image_present, table_present=table_present)
        return self.fusion(z_img, z_tab, feature_map)


class UnimodalClassifier(_Classifier):
    """Encoder + one Linear: supervised baselines (§4.2.1) and the R_conf probes (Appendix A.4).

    ``forward(image=None, x_cont=None, x_cat=None, *, missing=None, image_present=None,
    table_present=None) -> FusionOutput(logits, {})`` -- the same call as
    :class:`ImageTabularClassifier`, using only its own modality's inputs. With
    ``absent_vectors`` (default True) a row without this modality gets a learned ``absent``
    (d,) vector in place of the encoder output, so the head scores it from the training rows'
    prior (``legacy_config`` as for :class:`ImageTabularClassifier`).
    """

    kind = "unimodal_classifier"
    legacy_config = {"absent_vectors": False}

    def __init__(self, encoder: nn.Module, *, n_classes: int, modality: str, strategy: str = "trainable",
                 absent_vectors: bool = True) -> None:
        if modality not in ("image", "tabular"):
            raise ValueError(f"modality must be 'image' or 'tabular', however: {modality=}")
        if n_classes < 1:
            raise ValueError(f"n_classes must be positive, however: {n_classes=}")
        _check_strategy(strategy)
        d = _width(encoder, f"{modality} encoder")
        super().__init__()
        self.encoder, self.modality, self.strategy = encoder, modality, strategy
        self.head = nn.Linear(d, n_classes)
        self.absent = nn.Parameter(torch.zeros(d)) if absent_vectors else None
        self.config = dict(encoder=_part_config(encoder), n_classes=n_classes, modality=modality, strategy=strategy,
                           absent_vectors=bool(absent_vectors))
        self._apply_strategy()

    def _encoders(self) -> list[nn.Module]:
        return [self.encoder]

    @property
    def inputs(self) -> tuple[str, ...]:
        """The forward arguments the model reads, in order (what an exported graph takes)."""
        return ("image",) if self.modality == "image" else ("x_cont", "x_cat")

    def forward(self, image: Tensor | None = None, x_cont: Tensor | None = None, x_cat: Tensor | None = None, *,
                missing: Tensor | None = None, image_present: Tensor | None = None,
                table_present: Tensor | None = None) -> FusionOutput:
        if self.modality == "image":
            if image is None:
                raise ValueError("an image classifier needs image=(B, C, H, W)")
            z, present = self.encoder(image), image_present
        else:
            if x_cont is None or x_cat is None:
                raise ValueError("a tabular classifier needs x_cont and x_cat")
            z, present = _tabular(self.encoder, x_cont, x_cat, missing), table_present
        if self.absent is not None:
            z = _substitute(z, present, self.absent)
        else:
            _no_absent(type(self).__name__, **{f"{self.modality}_present": present})
        return FusionOutput(self.head(z), {})
