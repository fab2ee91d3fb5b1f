"""Grad-CAM (Selvaraju et al. 2017) on the image encoder's last stage, with pytorch-grad-cam (§4.4.1, Fig. 6).

The CAM library sees an image-only model (:class:`~amfmedit.explain.targets.ImageOnly`): each
image goes through the classifier with its own patient's tabular row, so the map shows what
the image encoder contributes to this patient's prediction. The class attributed is the
disease (positive) class for positive and negative cases alike, as in Fig. 6.

For synthetic cohorts the generator knows the image region that carries the risk (visceral fat
in synthetic OL3I); :func:`mass_share` measures how much of a CAM's mass falls inside it, to
be compared with the region's share of the image area (what a map spread evenly would give).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from amfmedit.errors import UserError
from amfmedit.explain.targets import ImageOnly, frozen_parameters


@dataclass
class CamCases:
    """Test cases to draw: rows of N positive and N negative cases (in file order)."""

    positive: np.ndarray  # (N,) dataset rows with label == target (or the kind's first group)
    negative: np.ndarray  # (N,) dataset rows with another label (or the kind's second group)
    names: tuple[str, str] = ("positive", "negative")  # the two groups in file names and reports

    @property
    def rows(self) -> np.ndarray:
        return np.concatenate([self.positive, self.negative])


def select_cases(dataset, n: int, target: int, *, split: str = "test", seed: int = 0) -> CamCases:
    """``n`` random positive and ``n`` random negative cases of ``split`` among its rows with an image
    (the same for the same seed)."""
    if n < 1:
        raise UserError(f"--cases {n}: must be at least 1")
    rows = dataset.indices(split)
    present = getattr(dataset, "image_present", None)
    with_image = "" if present is None or present[rows].all() else " with an image"
    if present is not None:
        rows = rows[present[rows]]
    labels = dataset.labels[rows]
    pos, neg = rows[labels == target], rows[labels != target]
    for what, have in (("positive", pos), ("negative", neg)):
        if n > len(have):
            raise UserError(f"--cases {n}: the {split} split of {dataset.name} has only {len(have)} {what} cases"
                            f"{with_image}; use --cases {min(len(pos), len(neg))} or fewer")
    rng = np.random.default_rng(seed)
    return CamCases(np.sort(rng.choice(pos, n, replace=False)), np.sort(rng.choice(neg, n, replace=False)))


def _table_context(dataset) -> list:
    """``[missing (N, F), table_present (N,)]`` of a dataset that has them, else []."""
    missing, present = getattr(dataset, "missing", None), getattr(dataset, "table_present", None)
    return [] if missing is None or present is None else [missing, present]


def images_of(dataset, rows: np.ndarray, device) -> torch.Tensor:
    """Float images (B, C, H, W) in [0, 1] of dataset ``rows``, as the classifiers read them."""
    return torch.from_numpy(np.asarray(dataset.images[rows])).to(device).float() / 255.0


def grad_cams(model, dataset, rows: np.ndarray, *, target: int, device="cpu", batch_size: int = 16,
              raw: bool = False, output: str = "prob"):
    """Grad-CAMs of ``model``'s image encoder (``target_layer``) for dataset ``rows``.

    Returns ``(cams (N, H, W) float32, probs (N,) target-class probability)`` (``output="raw"``: the target
    output itself, e.g. a risk score, instead of its softmax probability). By default each map
    is ReLU'd, upsampled to the image size and min-max scaled to [0, 1] on its own by
    pytorch-grad-cam. ``raw=True``: the same maps before that scaling (ReLU of the gradient-weighted
    activations, in the model's units, bilinearly upsampled), so that maps of one model can be
    drawn on a common scale (:func:`amfmedit.explain.plots.cam_maps_grid` with ``scale="common"``).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def targets_of(chunk):
        return [ClassifierOutputTarget(target) for _ in chunk]

    encoder = model.encoder if getattr(model, "modality", None) == "image" else model.image_encoder
    view = ImageOnly(model).to(device).eval()
    cams, probs = [], []
    with frozen_parameters(model):
        cam = GradCAM(model=view, target_layers=[encoder.target_layer])
        try:
            for start in range(0, len(rows), batch_size):
                chunk = np.asarray(rows[start : start + batch_size])
                view.fix(torch.from_numpy(dataset.x_cont[chunk]).to(device),
                         torch.from_numpy(dataset.x_cat[chunk]).to(device),
                         *[torch.from_numpy(np.asarray(a)[chunk]).to(device) for a in _table_context(dataset)])
                maps = cam(input_tensor=images_of(dataset, chunk, device), targets=targets_of(chunk))
                h, w = cam.activations_and_grads.activations[0].shape[-2:]
                if h * w == 1:  # a single cell: the min-max scaled map is all zeros
                    size = "x".join(map(str, dataset.images.shape[-2:]))
                    raise UserError(f"{dataset.root}: images of {size} pixels give a 1x1 map at the image encoder's "
                                    "last stage, so Grad-CAM has nothing to localise; prepare images of 64 pixels "
                                    "or more (--image-size)")
                if raw:
                    maps = _raw_maps(cam, encoder.target_layer, images_of(dataset, chunk, device), targets_of(chunk),
                                     dataset.images.shape[-2:])
                cams.append(np.asarray(maps, dtype=np.float32))
                out = cam.outputs.detach().float()
                probs.append((out if output == "raw" else torch.softmax(out, dim=-1))[:, target].cpu().numpy())
        finally:
            cam.activations_and_grads.release()  # remove the hooks from the shared encoder
    h, w = dataset.images.shape[-2:]
    if not cams:
        return np.zeros((0, h, w), np.float32), np.zeros(0)
    return np.concatenate(cams), np.concatenate(probs)


def _raw_maps(cam, layer, images: torch.Tensor, targets, size) -> np.ndarray:
    """The last call's maps before pytorch-grad-cam's per-map scaling, upsampled to ``size``."""
    acts = cam.activations_and_grads.activations[0].cpu().numpy()
    grads = cam.activations_and_grads.gradients[0].cpu().numpy()
    low = np.maximum(cam.get_cam_image(images, layer, targets, acts, grads, False), 0).astype(np.float32)
    up = torch.nn.functional.interpolate(torch.from_numpy(low)[:, None], size=tuple(size), mode="bilinear",
                                         align_corners=False)
    return up[:, 0].clamp_min(0).numpy()


def mass_share(cams: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(N,) share of each CAM's total mass inside its boolean mask (NaN for an all-zero map)."""
    cams = np.asarray(cams, dtype=np.float64)
    total = cams.sum(axis=(1, 2))
    inside = (cams * masks).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)


def region_verdict(mass_in_region: float, area_share: float, zero_maps: int = 0, cases: int | None = None) -> str:
    """Plain words for a CAM's mass in a region against the region's share of the image area.

    ``"all-zero map"`` (no map has any heat), ``"not above area share"`` (no more heat inside
    than a map spread evenly would put there), ``"above area share, mostly outside"`` (enriched,
    but most of the heat lies outside the region) or ``"concentrated"`` (above the area share and
    at least half of the heat inside).
    """
    if (cases is not None and zero_maps >= cases) or not np.isfinite(mass_in_region):
        return "all-zero map"
    if not np.isfinite(area_share) or mass_in_region <= area_share:
        return "not above area share"
    return "concentrated" if mass_in_region >= 0.5 else "above area share, mostly outside"


def region_summary(cams: np.ndarray, masks: np.ndarray, region: str) -> dict:
    """Mean CAM mass inside ``region`` against the mean share of image area the region covers.

    Besides the numbers (fractions in [0, 1]; ``*_pct`` the same in %), ``verdict`` is one of
    :func:`region_verdict`'s phrases and ``verdict_text`` says it in a sentence; a map is said to
    concentrate on the region only when its heat inside is above the region's area share and is
    at least half of the heat. All-zero maps are counted (``zero_maps``) and left out of the means.
    """
    share = mass_share(cams, masks)
    area = masks.reshape(len(masks), -1).mean(axis=1)
    mean_share = float(np.nanmean(share)) if np.isfinite(share).any() else float("nan")
    mean_area = float(area.mean()) if len(area) else float("nan")
    zero = int((~np.isfinite(share)).sum())
    verdict = region_verdict(mean_share, mean_area, zero, int(len(cams)))
    return {
        "region": region,
        "cases": int(len(cams)),
        "cam_mass_in_region": mean_share,
        "region_area_share": mean_area,
        "enrichment": mean_share / mean_area if mean_area > 0 else float("nan"),
        "per_case_mass": [None if not np.isfinite(s) else float(s) for s in share],
        "per_case_area": [float(a) for a in area],
        "cam_mass_outside_region": 1.0 - mean_share if np.isfinite(mean_share) else float("nan"),
        "cam_mass_in_region_pct": 100.0 * mean_share,
        "region_area_share_pct": 100.0 * mean_area,
        "zero_maps": zero,
        "cases_above_area_share": int(sum(1 for s, a in zip(share, area) if np.isfinite(s) and s > a)),
        "verdict": verdict,
        "verdict_text": _verdict_text(verdict, region, mean_share, mean_area, zero, int(len(cams))),
    }


def _verdict_text(verdict: str, region: str, mass: float, area: float, zero: int, cases: int) -> str:
    zeros = f" ({zero} of {cases} maps are all zero and are left out)" if 0 < zero < cases else ""
    if verdict == "all-zero map":
        return f"every map is all zero: Grad-CAM found no evidence toward the class in these {cases} images"
    numbers = (f"{100 * mass:.0f}% of the heat lies inside {region}, which covers {100 * area:.0f}% of the image"
               + zeros)
    if verdict == "not above area share":
        return f"{numbers}: no more than a map spread evenly would put there, so the map does not single out {region}"
    if verdict == "above area share, mostly outside":
        return (f"{numbers}: {mass / area:.2f} times its area share, but {100 * (1 - mass):.0f}% of the heat "
                f"lies outside {region}")
    return f"{numbers}: the map concentrates on {region} ({mass / area:.2f} times its area share)"


def overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the image in grey (CT) or colour (RGB) with the heat map blended on top."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    img = np.asarray(image, dtype=np.float32) / 255.0
    rgb = np.repeat(img[0][..., None], 3, axis=2) if img.shape[0] == 1 else np.transpose(img[:3], (1, 2, 0))
    return show_cam_on_image(rgb, np.clip(cam, 0.0, 1.0), use_rgb=True, image_weight=0.55)
