"""Image encoders: torchvision ResNet-50 (AMF-MedIT §4.2.2, the paper's) and ResNet-18, 1-channel stem for CT.

The family's contract (every member of :data:`amfmedit.models.IMAGE_ENCODERS` meets it):
``geometry`` ("2d": inputs (B, C, H, W)), ``in_channels``, ``d_out``, ``forward(image) -> (B, d_out)``,
``forward_features(image) -> (B, d_out, h, w)`` and ``pool(feature_map)`` (cross-attention tokens),
``target_layer`` / ``target_layer_name`` (what Grad-CAM hooks), ``weights_source`` (where its
starting weights came from), and ``kind`` / ``config`` to rebuild it from a checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn
from torch import Tensor

from amfmedit.errors import UserError
from amfmedit.io import torch_load
from amfmedit.models.specs import ARCHS

# torchvision's ImageNet weights per architecture (the enum member's name, looked up lazily)
IMAGENET_WEIGHTS = {"resnet50": ("ResNet50_Weights", "IMAGENET1K_V2"), "resnet18": ("ResNet18_Weights", "IMAGENET1K_V1")}
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
    feeds [0, 1] intensities as the paper does (Appendix A.1). ``arch="resnet18"`` (512-d) is
    offered for small experiments and tests.

    ``weights``: where the trunk starts. ``None`` / ``"none"``: random initialisation (the
    paper's setting). ``"imagenet"``: torchvision's ImageNet weights (``IMAGENET_WEIGHTS``),
    read from torch.hub's checkpoint folder (``torch.hub.get_dir()/checkpoints/<file of the
    enum's url>``) and downloaded there only when missing; an offline machine without the file
    gets a one-line :class:`~amfmedit.errors.UserError` naming the path and how to place it
    (:func:`imagenet_weights_file`). A path: a state dict (torchvision-style or our own),
    loaded with ``weights_only=True``. For a 1-channel encoder a 3-channel ``conv1.weight`` is
    summed over its input channels (the usual grayscale adaptation: a grey image repeated into
    R, G and B gives the same response). ``weights`` is not part of ``config`` because a
    checkpoint's state dict already carries the weights; ``weights_source`` says what was loaded.
    """

    kind = "image_encoder"
    geometry = "2d"  # inputs (B, C, H, W); the prepared dataset's schema names the same geometry
    target_layer_name = "layer4"  # the last ResNet stage: Grad-CAM's layer and cross-attention's tokens

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
        self.in_channels = in_channels
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
        self.weights_path: str | None = None  # the file the weights came from
        self.weights_source = "none"
        if isinstance(weights, str) and weights.lower() == "none":
            weights = None
        if isinstance(weights, str) and weights.lower() == "imagenet":
            path = imagenet_weights_file(arch)
            if not path.is_file():
                _download_imagenet(arch, path)
            self.load_weights(path)
            self.weights_source = "imagenet ({}.{})".format(*IMAGENET_WEIGHTS[arch])
        elif weights is not None:
            self.load_weights(weights)
            self.weights_source = str(weights)

    @property
    def target_layer(self) -> nn.Module:
        return getattr(self, self.target_layer_name)

    def load_weights(self, path: str | Path) -> None:
        """Load a torchvision-style (or our own) state dict from ``path``; strict."""
        self._load_state_file(path)
        self.weights_path = str(path)

    def _load_state_file(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: image encoder weights file not found; pass an existing .pt/.pth state dict")
        try:
            state = torch_load(path, hint="save one with torch.save(model.state_dict()) and pass its path")
        except UserError:
            raise
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


def _weights_enum(arch: str):
    import torchvision

    enum, member = IMAGENET_WEIGHTS[arch]
    return getattr(getattr(torchvision.models, enum), member)


def imagenet_weights_file(arch: str) -> Path:
    """Where torchvision keeps ``arch``'s ImageNet weights: ``torch.hub.get_dir()/checkpoints/<file>``
    (``<file>``: the last part of the weights enum's url; ``TORCH_HOME`` moves torch.hub's folder)."""

    if arch not in IMAGENET_WEIGHTS:
        raise ValueError(f"arch must be one of {sorted(IMAGENET_WEIGHTS)}, however: {arch=}")
    name = Path(urlparse(_weights_enum(arch).url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _download_imagenet(arch: str, path: Path) -> None:
    """Fetch the weights into ``path`` through torch.hub (hash checked); a one-line error offline."""
    url = _weights_enum(arch).url
    try:
        torch.hub.load_state_dict_from_url(url, model_dir=str(path.parent), progress=False, check_hash=True,
                                           file_name=path.name, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - offline, proxy, disk: the user places the file by hand
        raise UserError(
            f"{path}: ImageNet weights for {arch} not found and the download of {url} failed "
            f"({type(exc).__name__}: {str(exc)[:80]}); download {url} on a machine with internet and copy it to "
            f"{path} (TORCH_HOME moves that folder), or pass the file itself as --image-weights PATH") from exc
    if not path.is_file():
        raise UserError(f"{path}: torch.hub did not leave the ImageNet weights there; download {url} and copy it "
                        "there, or pass the file as --image-weights PATH")


def parse_image_weights(text: str | None) -> str | Path | None:
    """A ``--image-weights`` value: ``"imagenet"``, ``None`` for ``"none"``, or an existing file's path."""
    if text is None or text.strip().lower() in ("", "none"):
        return None
    if text.strip().lower() == "imagenet":
        return "imagenet"
    path = Path(text).expanduser()
    if not path.is_file():
        raise UserError(f"--image-weights {text}: no such file; use imagenet, none, or the path of a state dict "
                        "(.pt/.pth)")
    return path
