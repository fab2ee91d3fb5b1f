"""Image augmentation drawn per sample, computed as one batch on the device.

The reference code augments each image on the CPU with torchvision transforms inside
DataLoader workers. Here the parameters are drawn per sample from a seeded generator and
the whole batch is transformed at once: photometric changes as tensor arithmetic, then
random resized crop + rotation + flip as ONE affine ``grid_sample``. A sample is augmented
with probability ``p`` (0.95 in pretraining, Appendix A.2) and passed through unchanged
otherwise.

Presets follow the reference augmentations (Hager et al. 2023 / AMF-MedIT code):

- pretraining, grayscale CT: flip, rotation ±10°, brightness/contrast 0.5, crop scale (0.2, 1);
- pretraining, RGB: colour jitter 0.8 (p 0.8), grayscale (p 0.2), Gaussian blur σ∈(0.1, 2)
  (p 0.5), crop scale (0.08, 1), flip;
- fine-tuning ("hard eval" augmentations): grayscale: flip, rotation ±45°, jitter 0.5,
  crop scale (0.6, 1); RGB: as in pretraining with crop scale (0.6, 1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class ImageAugment:
    """Parameters of the per-sample random augmentation (ranges are sampled uniformly)."""

    p: float = 0.95  # probability that a sample is augmented at all
    crop_scale: tuple[float, float] = (0.2, 1.0)  # area fraction of the random resized crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range (log-uniform)
    rotation: float = 10.0  # maximum |angle| in degrees
    hflip: float = 0.5
    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.0
    jitter_p: float = 1.0  # probability of the colour jitter (RandomApply)
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __post_init__(self) -> None:
        for name in ("p", "hflip", "jitter_p", "grayscale_p", "blur_p"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} is a probability, got {name}={v}")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale=}")
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"bad {self.crop_ratio=}")
        for name in ("rotation", "brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {name}={getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_rate(self, p: float) -> "ImageAugment":
        return replace(self, p=p)


_GRAY_PRETRAIN = ImageAugment(p=0.95, crop_scale=(0.2, 1.0), rotation=10.0, brightness=0.5, contrast=0.5)
_RGB_PRETRAIN = ImageAugment(
    p=0.95,
    crop_scale=(0.08, 1.0),
    rotation=0.0,
    brightness=0.8,
    contrast=0.8,
    saturation=0.8,
    jitter_p=0.8,
    grayscale_p=0.2,
    blur_p=0.5,
)
# NOTE[paper]: the reference fine-tunes multimodal models with augmentation rate 0.95 (it passes
# augmentation_rate where eval_train_augment_rate is expected) and image-only models with 0.8.
PRESETS: dict[tuple[str, str], ImageAugment] = {
    ("pretrain", "gray"): _GRAY_PRETRAIN,
    ("pretrain", "rgb"): _RGB_PRETRAIN,
    ("finetune", "gray"): replace(_GRAY_PRETRAIN, crop_scale=(0.6, 1.0), rotation=45.0),
    ("finetune", "rgb"): replace(_RGB_PRETRAIN, crop_scale=(0.6, 1.0)),
}


def preset(stage: str, channels: int) -> ImageAugment:
    """The reference augmentation for ``stage`` ('pretrain' or 'finetune') and 1 or 3 channels."""
    kind = "rgb" if channels == 3 else "gray"
    try:
        return PRESETS[(stage, kind)]
    except KeyError:
        raise ValueError(f"no augmentation preset for {stage=}, {channels=}") from None


def _uniform(lo: float, hi: float, n: int, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (hi - lo) + lo


def _coin(p: float, n: int, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) < p


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, H, W) luma (the image itself when C == 1)."""
    if x.shape[1] == 1:
        return x
    w = x.new_tensor(_GRAY_WEIGHTS).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """Separable Gaussian blur with a different ``sigma`` (B,) per sample, reflect padding.

    The kernel radius comes from the configured ``sigma_max``, not the drawn sigmas: reading
    those back would stall the host on every batch.
    """
    b, c, h, w = x.shape
    radius = int(math.ceil(4.0 * sigma_max))
    radius = max(1, min(radius, h - 1, w - 1))
    offs = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (offs.view(1, -1) / sigma.view(-1, 1)) ** 2)
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, K)
    y = x.reshape(1, b * c, h, w)
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


def affine_matrices(
    sx: torch.Tensor, sy: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, angle: torch.Tensor, flip: torch.Tensor,
    h: int, w: int,
) -> torch.Tensor:
    """(B, 2, 3) ``affine_grid`` matrices for flip -> rotation -> crop (torchvision's order).

    Output pixel ``u`` (normalised to [-1, 1]) reads the source at ``F D⁻¹ R⁻¹ D (c + S u)``:
    ``S = diag(sx, sy)`` and ``c = (cx, cy)`` the crop half-size and centre (normalised units),
    ``R`` the rotation by ``angle`` (radians) in pixel space (``D`` converts normalised to
    pixel units so non-square images rotate rigidly), ``F = diag(flip, 1)`` with flip = ±1.
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    half_w, half_h = w / 2.0, h / 2.0
    # M = D^-1 R^-1 D with R^-1 = [[cos, sin], [-sin, cos]]
    m00, m01 = cos, sin * (half_h / half_w)
    m10, m11 = -sin * (half_w / half_h), cos
    theta = torch.empty(sx.shape[0], 2, 3, device=sx.device)
    theta[:, 0, 0] = flip * m00 * sx
    theta[:, 0, 1] = flip * m01 * sy
    theta[:, 0, 2] = flip * (m00 * cx + m01 * cy)
    theta[:, 1, 0] = m10 * sx
    theta[:, 1, 1] = m11 * sy
    theta[:, 1, 2] = m10 * cx + m11 * cy
    return theta


def _random_affine(aug: ImageAugment, b: int, h: int, w: int, gen: torch.Generator, device) -> torch.Tensor:
    """Draw crop, rotation and flip per sample and return their (B, 2, 3) matrices."""
    area = _uniform(aug.crop_scale[0], aug.crop_scale[1], b, gen, device)
    log_r = _uniform(math.log(aug.crop_ratio[0]), math.log(aug.crop_ratio[1]), b, gen, device)
    ratio = torch.exp(log_r)
    # NOTE[paper]: torchvision retries out-of-bounds crops up to 10 times; we clamp instead
    # (one draw per sample, no data-dependent loop on the device).
    sx = torch.sqrt(area * ratio).clamp(max=1.0)  # crop half-width in normalised units
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(b, generator=gen, device=device) * 2 - 1) * (1 - sx)
    cy = (torch.rand(b, generator=gen, device=device) * 2 - 1) * (1 - sy)
    angle = _uniform(-aug.rotation, aug.rotation, b, gen, device) * (math.pi / 180.0)
    flip = torch.where(_coin(aug.hflip, b, gen, device), -1.0, 1.0)
    return affine_matrices(sx, sy, cx, cy, angle, flip, h, w)


def augment_batch(images: torch.Tensor, aug: ImageAugment, gen: torch.Generator) -> torch.Tensor:
    """Augment a batch: uint8 or float (B, C, H, W) -> float32 (B, C, H, W) in [0, 1].

    Each sample is augmented with probability ``aug.p``; the others come back exactly as
    ``images / 255``. All random draws come from ``gen`` (on the images' device), so the
    result is a function of the generator state.
    """
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    b, c, h, w = x.shape
    dev = x.device
    apply = _coin(aug.p, b, gen, dev)
    y = x
    # Photometric first (the order torchvision applies them in the reference pipelines).
    if aug.brightness or aug.contrast or aug.saturation:
        jit = _per_sample(_coin(aug.jitter_p, b, gen, dev))
        bf = _uniform(max(0.0, 1 - aug.brightness), 1 + aug.brightness, b, gen, dev)
        cf = _uniform(max(0.0, 1 - aug.contrast), 1 + aug.contrast, b, gen, dev)
        sf = _uniform(max(0.0, 1 - aug.saturation), 1 + aug.saturation, b, gen, dev)
        # NOTE[paper]: torchvision's ColorJitter shuffles the order of its three adjustments per
        # call; we apply brightness, contrast, saturation in that fixed order.
        z = (y * _per_sample(bf)).clamp(0, 1)
        mean = _grayscale(z).mean(dim=(1, 2, 3), keepdim=True)
        z = (_per_sample(cf) * z + (1 - _per_sample(cf)) * mean).clamp(0, 1)
        if c == 3 and aug.saturation:
            z = (_per_sample(sf) * z + (1 - _per_sample(sf)) * _grayscale(z)).clamp(0, 1)
        y = torch.where(jit, z, y)
    if aug.grayscale_p and c == 3:
        gray = _per_sample(_coin(aug.grayscale_p, b, gen, dev))
        y = torch.where(gray, _grayscale(y).expand(-1, c, -1, -1), y)
    if aug.blur_p:
        blur = _per_sample(_coin(aug.blur_p, b, gen, dev))
        sigma = _uniform(aug.blur_sigma[0], aug.blur_sigma[1], b, gen, dev)
        y = torch.where(blur, _gaussian_blur(y, sigma, aug.blur_sigma[1]), y)
    theta = _random_affine(aug, b, h, w, gen, dev)
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    y = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return torch.where(_per_sample(apply), y.clamp_(0, 1), x)
