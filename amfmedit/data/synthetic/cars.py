"""Front views of cars drawn from a few shape parameters (synthetic DVM images).

A car is a body (coloured by the advert's ``Color``), a cabin with a dark windscreen, a
grille, two headlights, a number plate and wheels, on a white background as in DVM's
confirmed front views. Shape parameters are fractions of the image side; which values a
car model tends to have is what carries the image part of the class signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOURS = {  # DVM colour names -> RGB of the paint
    "Black": (25, 25, 28), "White": (236, 236, 232), "Silver": (190, 192, 196), "Grey": (118, 120, 124),
    "Blue": (35, 70, 160), "Red": (185, 30, 35), "Green": (40, 110, 60), "Orange": (230, 120, 30),
    "Yellow": (235, 200, 40), "Brown": (110, 70, 40), "Beige": (205, 190, 150), "Gold": (190, 160, 80),
    "Purple": (100, 50, 130), "Bronze": (150, 100, 50),
}


@dataclass
class CarShape:
    """Shape of one car's front view; lengths are fractions of the image side."""

    width: float  # body width
    height: float  # body height (bonnet to sill)
    clearance: float  # gap between the sill and the ground
    cabin: float  # cabin (windscreen) height
    roof: float  # roof width relative to the body width
    grille_w: float  # grille width relative to the body width
    grille_h: float  # grille height relative to the body height
    light: float  # headlight size relative to the body width
    round_grille: bool
    round_lights: bool


def draw_car(shape: CarShape, colour: tuple[int, int, int], size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8 front view; ``rng`` adds position jitter, shading and sensor noise."""
    from PIL import Image, ImageDraw

    shape = CarShape(**{k: (max(v, 0.02) if isinstance(v, float) else v) for k, v in vars(shape).items()})
    s = float(size)
    im = Image.new("RGB", (size, size), (246, 246, 244))
    d = ImageDraw.Draw(im)
    cx = s * (0.5 + 0.02 * rng.normal())
    ground = s * (0.84 + 0.015 * rng.normal())
    w = s * shape.width
    sill = ground - s * shape.clearance
    top = sill - s * shape.height
    roof_top = top - s * shape.cabin
    shadow = (205, 205, 203)
    d.ellipse([cx - 0.55 * w, ground - 0.03 * s, cx + 0.55 * w, ground + 0.03 * s], fill=shadow)
    tyre = (22, 22, 22)
    tw = 0.16 * w
    for side in (-1, 1):
        x0 = cx + side * (0.5 * w - 0.6 * tw) - tw / 2
        d.rectangle([x0, sill - 0.02 * s, x0 + tw, ground], fill=tyre)
    roof_w = w * shape.roof
    paint = tuple(int(np.clip(c + 10 * rng.normal(), 0, 255)) for c in colour)
    darker = tuple(int(c * 0.75) for c in paint)
    d.polygon([(cx - 0.47 * w, top), (cx - roof_w / 2, roof_top), (cx + roof_w / 2, roof_top), (cx + 0.47 * w, top)],
              fill=darker)
    glass = (55, 65, 78)
    m = 0.035 * s
    d.polygon([(cx - 0.47 * w + m, top - 0.004 * s), (cx - roof_w / 2 + m * 0.7, roof_top + m * 0.6),
               (cx + roof_w / 2 - m * 0.7, roof_top + m * 0.6), (cx + 0.47 * w - m, top - 0.004 * s)], fill=glass)
    d.rounded_rectangle([cx - w / 2, top, cx + w / 2, sill], radius=max(1, int(0.06 * s)), fill=paint)
    body_h = sill - top
    gw, gh = w * shape.grille_w, body_h * shape.grille_h
    gy = top + 0.55 * body_h
    box = [cx - gw / 2, gy - gh / 2, cx + gw / 2, gy + gh / 2]
    (d.ellipse if shape.round_grille else d.rectangle)(box, fill=(30, 30, 32))
    lr = w * shape.light / 2
    ly = top + 0.3 * body_h
    for side in (-1, 1):
        lx = cx + side * 0.36 * w
        lbox = [lx - lr, ly - lr * 0.7, lx + lr, ly + lr * 0.7]
        (d.ellipse if shape.round_lights else d.rectangle)(lbox, fill=(238, 238, 215))
    py = sill - 0.18 * body_h
    d.rectangle([cx - 0.12 * w, py - 0.05 * body_h, cx + 0.12 * w, py + 0.05 * body_h], fill=(250, 250, 250))
    arr = np.asarray(im, dtype=np.int16)
    arr = arr + rng.normal(0.0, 3.0, size=arr.shape).round().astype(np.int16)
    return np.clip(arr, 0, 255).astype(np.uint8)
