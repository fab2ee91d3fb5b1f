"""Image encoder: torchvision ResNet-50 (AMF-MedIT §4.2.2), 1-channel stem for CT."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

ARCHS = {"resnet50": 2048, "resnet18": 512}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageEncoder(nn.Module):
    """ResNet trunk without its classifier: (B, C, H, W) in [0, 1] -> (B, d_out).

    ``forward_features`` returns the last stage's map (B, d_out, H/32, W/32) (cross-attention
    tokens, Grad-CAM); ``forward`` average-pools it. ``target_layer`` (``layer4``) is the
    module Grad-CAM hooks. Module names equal torchvision's, so a torchvision ResNet state
    dict loads after dropping ``fc.*``.

    ``in_channels`` 1 replaces the stem with a 1-channel convolution (CT slices), as the
    reference code does. ``normalize="imagenet"`` subtracts the ImageNet mean and divides by
    its std inside the model (useful with ImageNet weights; RGB only); the default ``"none"``
    feeds [0, 1] intensities as the paper does (Appendix A.1). ``weights``: a path to a state
    dict (loaded with ``weights_only=True``); it is not part of ``config`` because a
    checkpoint's state dict already carries the weights. For a 1-channel encoder, a 3-channel
    ``conv1.weight`` is summed over its input channels (the usual grayscale adaptation).
    ``arch="resnet18"`` (512-d) is offered for small experiments and tests.
    """

    kind = "image_encoder"

    def __init__(
        self,
        *,
        arch: str = "resnet50",
        in_channels: int = 1,
        normalize: str = "none",
        weights: str | Path | None = None,
    ) -> None:
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {sorted(ARCHS)}, however: {arch=}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, however: {in_channels=}")
        if normalize not in ("none", "imagenet"):
            raise ValueError(f"normalize must be 'none' or 'imagenet', however: {normalize=}")
        if normalize == "imagenet" and in_channels != 3:
            raise ValueError(f"normalize='imagenet' needs in_channels=3, however: {in_channels=}")
        super().__init__()
        import torchvision

        self.config = dict(arch=arch, in_channels=in_channels, normalize=normalize)
        net = getattr(torchvision.models, arch)(weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))
        self.d_out = ARCHS[arch]
        self.normalize = normalize
        if normalize == "imagenet":
            self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.weights_path = str(weights) if weights is not None else None
        if weights is not None:
            self.load_weights(weights)

    @property
    def target_layer(self) -> nn.Module:
        return self.layer4

    def load_weights(self, path: str | Path) -> None:
        """Load a torchvision-style (or our own) state dict from ``path``; strict."""
        from amfmedit.errors import UserError
        from amfmedit.io import torch_load

        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: image encoder weights file not found; pass an existing .pt/.pth state dict")
        try:
            state = torch_load(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise UserError(f"{path}: not a loadable state dict ({type(exc).__name__}); save one with torch.save(model.state_dict())") from exc
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        w = state.get("conv1.weight")
        if w is not None and w.shape[1] != self.conv1.in_channels and w.shape[1] == 3 and self.conv1.in_channels == 1:
            state["conv1.weight"] = w.sum(dim=1, keepdim=True)
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise UserError(
                f"{path}: not a {self.config['arch']} state dict ({len(missing)} keys missing, e.g. "
                f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})"
            )
        bad = [k for k in own if own[k].shape != state[k].shape]
        if bad:
            raise UserError(f"{path}: shape mismatch for {bad[0]}: file {tuple(state[bad[0]].shape)} vs model {tuple(own[bad[0]].shape)}")
        self.load_state_dict(state, strict=True)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [0, 1] -> the last stage's feature map (B, d_out, H/32, W/32)."""
        if self.normalize == "imagenet":
            x = (x - self.mean) / self.std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    @staticmethod
    def pool(feature_map: Tensor) -> Tensor:
        """Global average pooling: (B, d, h, w) -> (B, d)."""
        return feature_map.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.forward_features(x))
