"""The model zoo of AMF-MedIT: tabular encoders, ResNet image encoder, heads, fusions, losses.

Registries are plain dicts (``TABULAR_ENCODERS``, ``IMAGE_ENCODERS``, ``FUSIONS``); every buildable module carries
``kind`` and ``config``, so a checkpoint ``{"kind", "config", "state_dict"}`` rebuilds its
model (:mod:`amfmedit.models.registry`)::

    ckpt = to_checkpoint(model)                 # tensors, numbers, strings, lists, dicts
    amfmedit.io.torch_save(ckpt, path)
    model = from_checkpoint(amfmedit.io.torch_load(path))

Importing this package or :mod:`amfmedit.models.specs` (what each member declares, torch-free)
does not import torch, so ``--help`` can read the specs; the registries, the classes and the
functions below load with torch on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amfmedit.models.specs import ARCHS, D_OUT, MISSING_MODES, STRATEGIES

if TYPE_CHECKING:  # what static tools see; at run time __getattr__ serves these
    from amfmedit.models.registry import *  # noqa: F403

_FROM_REGISTRY = frozenset({
    "TABULAR_ENCODERS", "IMAGE_ENCODERS", "FUSIONS", "MODEL_KINDS",
    "build_tabular_encoder", "build_image_encoder", "build_fusion", "options_of", "model_kinds", "build_model",
    "model_config", "to_checkpoint", "from_checkpoint",
    "MLPEncoder", "ResNetEncoder", "FTTransformerEncoder", "FTMambaEncoder", "MambaBlock",
    "ImageEncoder", "ProjectionHead", "ConcatFusion", "CrossAttentionFusion", "AMFFusion", "FusionOutput",
    "amf_split", "amf_aux_losses", "ContrastiveModel", "ImageTabularClassifier", "UnimodalClassifier",
    "kernel_status", "set_scan_impl",
})
__all__ = sorted(_FROM_REGISTRY | {"D_OUT", "STRATEGIES", "ARCHS", "MISSING_MODES", "losses"})


def __getattr__(name: str):
    if name not in _FROM_REGISTRY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from amfmedit.models import registry

    return getattr(registry, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | _FROM_REGISTRY)
