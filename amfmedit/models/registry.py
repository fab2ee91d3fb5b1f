"""The registries of the model zoo and the checkpoints they rebuild (what :mod:`amfmedit.models` serves).

Registries are plain dicts; every buildable module carries ``kind`` and ``config`` (its
constructor keyword arguments, nested parts as ``{"kind", "config"}``), so a checkpoint
``{"kind", "config", "state_dict"}`` rebuilds its model with :func:`from_checkpoint`::

    ckpt = to_checkpoint(model)                 # tensors, numbers, strings, lists, dicts
    amfmedit.io.torch_save(ckpt, path)
    model = from_checkpoint(amfmedit.io.torch_load(path))
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Sequence

import torch.nn as nn

from amfmedit.models import losses
from amfmedit.models.composite import (
    STRATEGIES,
    ContrastiveModel,
    ImageTabularClassifier,
    UnimodalClassifier,
    model_config,
)
from amfmedit.models.fusion import AMFFusion, ConcatFusion, CrossAttentionFusion, FusionOutput, amf_aux_losses, amf_split
from amfmedit.models.heads import ProjectionHead
from amfmedit.models.image import ImageEncoder
from amfmedit.models.mamba import MambaBlock, kernel_status, set_scan_impl
from amfmedit.models.specs import D_OUT
from amfmedit.models.tabular import FTMambaEncoder, FTTransformerEncoder, MLPEncoder, ResNetEncoder
from amfmedit.models.tokenizer import MISSING_MODES

TABULAR_ENCODERS: dict[str, type[nn.Module]] = {
    "mlp": MLPEncoder,
    "resnet": ResNetEncoder,
    "ft_transformer": FTTransformerEncoder,
    "ft_mamba": FTMambaEncoder,
}

#: Image encoders by name (``--image-arch``): a class (its ``kind`` equal to the name) or a
#: function building one; every member meets the contract of :mod:`amfmedit.models.image`.
#: ``--help`` lists the shipped ones from :data:`amfmedit.models.specs.ARCHS`.
IMAGE_ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "resnet50": functools.partial(ImageEncoder, arch="resnet50"),
    "resnet18": functools.partial(ImageEncoder, arch="resnet18"),
}

FUSIONS: dict[str, type[nn.Module]] = {
    "concat": ConcatFusion,
    "cross_attention": CrossAttentionFusion,
    "amf": AMFFusion,
}

#: Every other kind a checkpoint may name -> its class (the two family registries above are
#: looked up too, so a member registered there needs no second line here).
MODEL_KINDS: dict[str, type[nn.Module]] = {
    "image_encoder": ImageEncoder,
    "projection_head": ProjectionHead,
    "mamba_block": MambaBlock,
    "contrastive": ContrastiveModel,
    "image_tabular_classifier": ImageTabularClassifier,
    "unimodal_classifier": UnimodalClassifier,
}


def options_of(cls: type) -> dict[str, Any]:
    """A family member's settings: its keyword-only constructor arguments with their defaults.

    Stages pass a user's setting only to members that have it (e.g. ``d_out`` to AMF,
    ``pooling`` to FT-Mamba), so nobody branches on a member's name.
    """
    sig = inspect.signature(cls.__init__)
    return {n: p.default for n, p in sig.parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty}


def _choice(name: str, registry: dict, what: str) -> type[nn.Module]:
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; choose one of: {', '.join(registry)}")
    return registry[name]


def build_tabular_encoder(name: str, *, n_cont_features: int, cat_cardinalities: Sequence[int], **kw: Any) -> nn.Module:
    """A tabular encoder by registry name (``TABULAR_ENCODERS``) with its keyword arguments."""
    cls = _choice(name, TABULAR_ENCODERS, "tabular encoder")
    return cls(n_cont_features=n_cont_features, cat_cardinalities=list(cat_cardinalities), **kw)


def build_image_encoder(name: str, *, in_channels: int, weights=None, geometry: str = "2d", **kw: Any) -> nn.Module:
    """An image encoder by registry name (``IMAGE_ENCODERS``) for images of ``in_channels`` channels.

    ``geometry``: the prepared images' (``schema.image.geometry``); an encoder of another geometry
    is refused with a ValueError naming both.
    """
    make = _choice(name, IMAGE_ENCODERS, "image encoder")
    declared = getattr(make, "geometry", getattr(getattr(make, "func", None), "geometry", None))
    if declared is not None and declared != geometry:
        raise ValueError(f"image encoder {name} reads {declared} images, the dataset's are {geometry}")
    return make(in_channels=in_channels, weights=weights, **kw)


def build_fusion(name: str, **kw: Any) -> nn.Module:
    """A fusion module by registry name (``FUSIONS``) with its keyword arguments."""
    return _choice(name, FUSIONS, "fusion")(**kw)


def _is_part(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"kind", "config"}


def model_kinds() -> dict[str, type[nn.Module]]:
    """Every buildable kind: the family registries and :data:`MODEL_KINDS`, as registered now."""
    images = {c.kind: c for c in IMAGE_ENCODERS.values() if isinstance(c, type)}
    return {**TABULAR_ENCODERS, **FUSIONS, **images, **MODEL_KINDS}


def build_model(kind: str, config: dict) -> nn.Module:
    """Rebuild a module from ``kind`` and ``config`` (nested ``{"kind", "config"}`` become modules).

    A class's ``legacy_config`` gives the value a constructor argument takes when ``config``,
    written before the argument existed, lacks it (e.g. classifiers without absent-modality
    vectors), so older checkpoints rebuild the model their weights belong to.
    """
    cls = _choice(kind, model_kinds(), "model kind")
    config = {**getattr(cls, "legacy_config", {}), **config}
    kwargs = {k: build_model(v["kind"], v["config"]) if _is_part(v) else v for k, v in config.items()}
    if kind == "image_tabular_classifier":
        return cls(kwargs.pop("image_encoder"), kwargs.pop("tabular_encoder"), kwargs.pop("fusion"), **kwargs)
    if kind == "contrastive":
        return cls(kwargs.pop("image_encoder"), kwargs.pop("tabular_encoder"), **kwargs)
    if kind == "unimodal_classifier":
        return cls(kwargs.pop("encoder"), **kwargs)
    return cls(**kwargs)


def to_checkpoint(model: nn.Module, **extra: Any) -> dict:
    """``{"kind", "config", "state_dict", **extra}``: loadable with ``weights_only=True``."""
    return {**model_config(model), "state_dict": model.state_dict(), **extra}


def from_checkpoint(checkpoint: dict) -> nn.Module:
    """The model of a :func:`to_checkpoint` dict, weights loaded strictly."""
    missing = {"kind", "config", "state_dict"} - set(checkpoint)
    if missing:
        raise ValueError(f"a model checkpoint needs kind, config and state_dict; missing: {sorted(missing)}")
    model = build_model(checkpoint["kind"], checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    return model


__all__ = [
    "TABULAR_ENCODERS", "IMAGE_ENCODERS", "FUSIONS", "MODEL_KINDS", "STRATEGIES", "D_OUT",
    "build_tabular_encoder", "build_image_encoder", "build_fusion", "options_of", "model_kinds", "build_model",
    "model_config", "to_checkpoint", "from_checkpoint",
    "MLPEncoder", "ResNetEncoder", "FTTransformerEncoder", "FTMambaEncoder", "MambaBlock",
    "ImageEncoder", "ProjectionHead", "ConcatFusion", "CrossAttentionFusion", "AMFFusion", "FusionOutput",
    "amf_split", "amf_aux_losses", "MISSING_MODES", "ContrastiveModel", "ImageTabularClassifier", "UnimodalClassifier",
    "losses", "kernel_status", "set_scan_impl",
]
