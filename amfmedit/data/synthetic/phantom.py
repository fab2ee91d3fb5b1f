"""Axial CT phantoms at the L3 level, in Hounsfield units, with known tissue regions.

Each patient's anatomy is drawn from its own random stream ``(seed, index)``, so any
patient's slice or region mask can be regenerated on its own at any resolution (for scoring
Grad-CAM maps against the region that carries the risk signal) without rebuilding the cohort.

Geometry lives in normalised coordinates: the field of view is [-1, 1]^2 (40 cm across),
``u`` to the image right (the patient's left) and ``v`` downwards (posterior). The body is a
set of nested ellipses (skin, subcutaneous fat, abdominal muscle wall, abdominal cavity);
the cavity is visceral fat with bowel loops, colon, liver tip, kidneys, vessels, psoas and
the vertebra painted into it. How much of the cavity stays fat follows a per-patient
visceral adiposity, so the visceral fat area varies between patients and a CNN can see it:
fat is about -95 HU, which the [-125, 275] window maps to about 0.08 while organs and muscle
land near 0.42.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FOV_CM = 40.0  # field of view across the slice

# tissue codes of the label map (order matters for the nested-ellipse trick in render_labels)
AIR, SKIN, SAT, MUSCLE, VAT, BOWEL, GAS, LIVER, KIDNEY, VESSEL, CANCELLOUS, CORTICAL, TABLE = range(13)
REGIONS = {
    "visceral_fat": (VAT,),
    "subcutaneous_fat": (SAT,),
    "muscle": (MUSCLE,),
    "vertebra": (CANCELLOUS, CORTICAL),
    "organs": (BOWEL, GAS, LIVER, KIDNEY, VESSEL),
    "body": (SKIN, SAT, MUSCLE, VAT, BOWEL, GAS, LIVER, KIDNEY, VESSEL, CANCELLOUS, CORTICAL),
}
NOISE_HU = 14.0  # image noise (standard deviation), spatially correlated over a few pixels


@dataclass
class Anatomy:
    """One patient's body: demographics that shape it and the geometry of every structure."""

    index: int
    male: bool
    age: float  # years
    adiposity: float  # general body fat, standard normal (drives BMI too)
    visceral: float  # visceral adiposity, standard normal-ish (drives the cavity's fat)
    cx: float
    cy: float
    ax: float  # body half-axes
    ay: float
    skin: float  # thicknesses as fractions of the body radius
    sat: float
    muscle: float
    hu: dict  # per-patient tissue HU means
    loops: np.ndarray  # (n, 4) bowel loops: cx, cy, ax, ay (axis-aligned, inside the cavity)
    bubbles: np.ndarray  # (m, 4) gas in some of the loops
    organs: list  # (code, cx, cy, ax, ay, theta, cavity_only) painted in order after the loops
    noise_offset: tuple[int, int]

    @property
    def cavity_scale(self) -> float:
        return 1.0 - self.skin - self.sat - self.muscle


def patient_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of one patient's anatomy and image noise."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0xA7A7, int(index)]))


def anatomy(seed: int, index: int) -> Anatomy:
    """Draw patient ``index``'s anatomy from its own stream (independent of cohort size)."""
    rng = patient_rng(seed, index)
    male = bool(rng.random() < 0.46)
    age = float(np.clip(rng.normal(61.0, 14.0), 18.0, 95.0))
    adiposity = float(rng.normal())
    sex = 0.5 if male else -0.5
    # men store more fat viscerally and women subcutaneously; visceral fat rises with age
    visceral = 0.55 * adiposity + 0.6 * sex + 0.02 * (age - 61.0) + 0.65 * float(rng.normal())
    subcut = 0.8 * adiposity - 0.5 * sex + 0.45 * float(rng.normal())
    ax = float(np.clip(0.70 + 0.08 * adiposity + 0.04 * sex + 0.03 * rng.normal(), 0.48, 0.94))
    ay = float(np.clip(0.49 + 0.06 * adiposity + 0.02 * rng.normal(), 0.34, 0.74))
    cx, cy = 0.02 * float(rng.normal()), 0.04 + 0.02 * float(rng.normal())
    skin = 0.02
    sat = float(np.clip(0.11 + 0.05 * subcut, 0.025, 0.30))
    muscle = float(np.clip(0.075 + 0.012 * rng.normal() + 0.01 * sex, 0.04, 0.12))
    fat_shift, muscle_shift = 8.0 * rng.normal(), 7.0 * rng.normal()
    hu = {
        AIR: -1000.0, SKIN: 30.0, SAT: -105.0 + fat_shift, MUSCLE: 45.0 + muscle_shift, VAT: -92.0 + fat_shift,
        BOWEL: 28.0 + 6.0 * rng.normal(), GAS: -850.0, LIVER: 58.0 + 6.0 * rng.normal(), KIDNEY: 33.0,
        VESSEL: 42.0, CANCELLOUS: float(np.clip(260.0 - 2.0 * (age - 40.0), 90.0, 320.0)) + 15.0 * rng.normal(),
        CORTICAL: 750.0, TABLE: -250.0,
    }
    k = 1.0 - skin - sat - muscle
    cax, cay = ax * k, ay * k  # cavity half-axes
    # bowel loops fill less of the cavity the more visceral fat there is; candidates are drawn
    # in one batch and taken until their area reaches the target
    fill = float(np.clip(0.62 - 0.17 * visceral, 0.12, 0.9))
    n_max = 48
    r = rng.uniform(0.05, 0.09, n_max)
    t, rr = rng.uniform(0.0, 2 * np.pi, n_max), np.sqrt(rng.uniform(0.0, 1.0, n_max))
    squash, gas = rng.uniform(0.7, 1.0, n_max), rng.random(n_max) < 0.3
    n = min(int(np.searchsorted(np.cumsum(np.pi * r * r), fill * np.pi * cax * cay * 1.25)) + 1, n_max)
    lx = cx + 0.9 * cax * rr[:n] * np.cos(t[:n])
    ly = cy + 0.9 * cay * rr[:n] * np.sin(t[:n]) - 0.1 * cay
    wide = np.arange(n) % 2 == 0  # axis-aligned loops, alternately wide and tall
    rx = np.where(wide, r[:n], r[:n] * squash[:n])
    ry = np.where(wide, r[:n] * squash[:n], r[:n])
    loops = np.stack([lx, ly, rx, ry], axis=1)
    g = gas[:n]
    bubbles = np.stack([lx[g], ly[g] - 0.3 * r[:n][g], 0.45 * r[:n][g], 0.35 * r[:n][g]], axis=1)
    organs = []
    vy = cy + 0.58 * cay  # vertebral body centre, posterior part of the cavity
    rv = 0.075
    for side in (-1, 1):
        organs.append((BOWEL, cx + side * 0.72 * cax, cy + 0.05 * cay, 0.06, 0.055, 0.0, True))  # colon
        organs.append((GAS, cx + side * 0.72 * cax, cy, 0.03, 0.02, 0.0, True))
        organs.append((KIDNEY, side * (rv + 0.13), vy - 0.03, 0.052, 0.075, side * 0.45, False))
        organs.append((MUSCLE, side * (rv + 0.035), vy - 0.005, 0.035 + 0.008 * (sex + 0.5), 0.05, 0.0, False))  # psoas
        organs.append((MUSCLE, side * 0.075, vy + rv + 0.055, 0.068, 0.058, 0.0, False))  # paraspinal
        organs.append((CORTICAL, side * 0.1, vy + 0.015, 0.05, 0.013, side * 0.15, False))  # transverse process
    organs.append((LIVER, cx - 0.55 * cax, cy - 0.05 * cay, 0.32 * cax, 0.36 * cay, 0.3, True))
    organs.append((VESSEL, 0.02, vy - rv - 0.035, 0.026, 0.026, 0.0, False))  # aorta
    organs.append((VESSEL, -0.06, vy - rv - 0.03, 0.03, 0.02, 0.0, False))  # inferior vena cava
    organs.append((CORTICAL, 0.0, vy, rv, rv * 0.92, 0.0, False))  # vertebral body cortex
    organs.append((CANCELLOUS, 0.0, vy, rv - 0.012, rv * 0.92 - 0.012, 0.0, False))
    organs.append((CORTICAL, 0.0, vy + rv + 0.07, 0.016, 0.055, 0.0, False))  # spinous process
    noise_offset = (int(rng.integers(0, 1 << 20)), int(rng.integers(0, 1 << 20)))
    return Anatomy(index=index, male=male, age=age, adiposity=adiposity, visceral=visceral, cx=cx, cy=cy,
                   ax=ax, ay=ay, skin=skin, sat=sat, muscle=muscle, hu=hu, loops=loops, bubbles=bubbles,
                   organs=organs, noise_offset=noise_offset)


@lru_cache(maxsize=8)
def _axis(size: int) -> np.ndarray:
    """Pixel-centre coordinates along one axis, in [-1, 1]."""
    return ((np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0).astype(np.float32)


@lru_cache(maxsize=16384)
def _stamp(ax2: int, ay2: int, turn: int) -> np.ndarray:
    """Boolean ellipse on a pixel grid centred on a pixel: half-axes ``ax2 / 2`` and ``ay2 / 2``
    pixels, rotated by ``turn`` degrees. Cached: painting is then a few array operations,
    whatever the ellipse, which keeps a slice with ~70 structures fast."""
    ax, ay, theta = max(ax2, 1) / 2.0, max(ay2, 1) / 2.0, math.radians(turn)
    reach = math.ceil(max(ax, ay))
    g = np.arange(-reach, reach + 1, dtype=np.float32)
    u, v = g[None, :], g[:, None]
    c, s = math.cos(theta), math.sin(theta)
    return ((u * c + v * s) / ax) ** 2 + ((v * c - u * s) / ay) ** 2 <= 1.0


def _place(size: int, cx, cy, ax, ay, theta) -> tuple | None:
    """(stamp crop, row slice, column slice) of an ellipse centred on the nearest pixel, or None."""
    half = size / 2.0
    stamp = _stamp(round(2 * ax * half), round(2 * ay * half), round(math.degrees(theta)) % 180)
    reach = stamp.shape[0] // 2
    c0, r0 = round((cx + 1.0) * half - 0.5) - reach, round((cy + 1.0) * half - 0.5) - reach
    c1, r1 = c0 + stamp.shape[1], r0 + stamp.shape[0]
    sc0, sr0 = max(0, -c0), max(0, -r0)
    sc1, sr1 = stamp.shape[1] - max(0, c1 - size), stamp.shape[0] - max(0, r1 - size)
    if sc0 >= sc1 or sr0 >= sr1:
        return None
    return stamp[sr0:sr1, sc0:sc1], slice(r0 + sr0, r0 + sr1), slice(c0 + sc0, c0 + sc1)


def _paint(labels: np.ndarray, code: int, cx, cy, ax, ay, theta, cavity_only: bool) -> None:
    """Paint one (rotated) ellipse into the label map (only into the cavity if ``cavity_only``)."""
    placed = _place(labels.shape[0], cx, cy, ax, ay, theta)
    if placed is None:
        return
    inside, rows, cols = placed
    box = labels[rows, cols]
    if cavity_only:
        inside = inside & (box >= VAT)
    box[inside] = code


def _paint_many(labels: np.ndarray, code: int, ellipses: np.ndarray) -> None:
    """Paint the union of axis-aligned ellipses (n, 4: cx, cy, ax, ay) into the cavity at once."""
    union = np.zeros(labels.shape, dtype=bool)
    for cx, cy, ax, ay in ellipses.tolist():
        placed = _place(labels.shape[0], cx, cy, ax, ay, 0.0)
        if placed is not None:
            inside, rows, cols = placed
            union[rows, cols] |= inside
    union &= labels >= VAT
    labels[union] = code


def render_labels(anat: Anatomy, size: int) -> np.ndarray:
    """Tissue label map (size, size) uint8 of one patient."""
    x = _axis(size)
    # nested body ellipses as one separable quadratic form: q <= 1 body, then shrinking layers
    q = (((x - anat.cx) / anat.ax) ** 2)[None, :] + (((x - anat.cy) / anat.ay) ** 2)[:, None]
    t_skin = (1.0 - anat.skin) ** 2
    t_sat = (1.0 - anat.skin - anat.sat) ** 2
    t_cav = anat.cavity_scale ** 2
    labels = (q <= 1.0).astype(np.uint8)
    labels += q <= t_skin
    labels += q <= t_sat
    labels += q <= t_cav  # AIR 0, SKIN 1, SAT 2, MUSCLE 3, VAT 4
    _paint_many(labels, BOWEL, anat.loops)
    _paint_many(labels, GAS, anat.bubbles)
    for code, cx, cy, ax, ay, theta, cavity_only in anat.organs:
        _paint(labels, code, cx, cy, ax, ay, theta, cavity_only)
    # the CT couch: a thin band under the patient
    top = int((anat.cy + anat.ay + 0.06 + 1.0) * size / 2.0)
    band = max(1, size // 128)
    if top + band < size:
        labels[top:top + band] = np.where(labels[top:top + band] == AIR, TABLE, labels[top:top + band])
    return labels


@lru_cache(maxsize=2)
def noise_bank(seed: int, size: int) -> np.ndarray:
    """(2*size, 2*size) int16 noise in HU (std ``NOISE_HU``), correlated over about two pixels at 512.

    Patients take shifted windows of this bank: cheap per slice, deterministic per seed.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xB0B0, int(size)]))
    n = 2 * size
    z = rng.standard_normal((n, n), dtype=np.float32)
    if size >= 128:  # a 3x3 binomial blur gives CT-like grain at full resolution
        z = (np.roll(z, 1, 0) + 2 * z + np.roll(z, -1, 0)) / 4
        z = (np.roll(z, 1, 1) + 2 * z + np.roll(z, -1, 1)) / 4
        z /= z.std()
    return np.rint(z * np.float32(NOISE_HU)).astype(np.int16)


def render_hu(anat: Anatomy, size: int, seed: int, labels: np.ndarray | None = None) -> np.ndarray:
    """The patient's slice in HU, int16 (size, size)."""
    if labels is None:
        labels = render_labels(anat, size)
    lut = np.zeros(256, np.int16)
    for code, value in anat.hu.items():
        lut[code] = round(value)
    bank = noise_bank(seed, size)
    oy, ox = anat.noise_offset[0] % size, anat.noise_offset[1] % size
    hu = lut.take(labels)
    hu += bank[oy:oy + size, ox:ox + size]
    return np.maximum(hu, -1024, out=hu)  # the lowest value CT scanners store


def _in_region(labels: np.ndarray, region: str) -> np.ndarray:
    codes = REGIONS[region]
    if len(codes) == 1:
        return labels == codes[0]
    member = np.zeros(256, bool)
    member[list(codes)] = True
    return member[labels]


def tissue_area_cm2(labels: np.ndarray, region: str = "visceral_fat") -> float:
    """Area of a region in cm^2 on a label map covering the 40 cm field of view."""
    pixel = (FOV_CM / labels.shape[0]) ** 2
    return float(np.count_nonzero(_in_region(labels, region)) * pixel)


def region_mask(seed: int, index: int, size: int, region: str = "visceral_fat") -> np.ndarray:
    """Boolean (size, size) mask of ``region`` for synthetic patient ``index`` of cohort ``seed``.

    Regenerated from the patient's own random stream, at the prepared resolution (synthetic
    slices are generated at the prepared size, so the mask is pixel-exact).
    """
    if region not in REGIONS:
        raise ValueError(f"unknown region {region=}; choose from {sorted(REGIONS)}")
    return _in_region(render_labels(anatomy(seed, index), size), region)
