"""Case-mix and measurement shift between two cohorts, from arrays alone.

- Standardised mean difference (Austin 2009, Stat Med 28:3083-3107) of a numeric variable:
  ``(mean_b - mean_a) / sqrt((var_a + var_b) / 2)`` over the observed (non-missing) values, sample
  variances; 0 when both variances are 0 and the means agree, NaN with fewer than two values on a
  side. |SMD| > 0.1 is the usual mark of a meaningful imbalance.
- Category shares: each category's share of the rows of each cohort (missing counted as a category).
- Image intensities: mean, standard deviation and the shares of pixels at the bottom and top of the
  stored range (below and above the HU window for CT) of uint8 images, and the SMD of the per-image
  mean intensity.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

SMD_MARK = 0.1  # |SMD| above this: a meaningful imbalance (Austin 2009)


def smd(a, b) -> float:
    """Standardised mean difference of ``b`` against ``a`` (1-D, NaN = missing, ignored)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return math.nan
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2.0)
    diff = float(b.mean() - a.mean())
    if pooled == 0.0:
        return 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    return diff / pooled


def shares(values) -> dict[str, float]:
    """Each value's share of the rows (None / NaN counted as ``"missing"``), largest first."""
    keys = ["missing" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values]
    n = max(len(keys), 1)
    return {k: c / n for k, c in Counter(keys).most_common()}


def intensity_summary(images: np.ndarray) -> dict[str, float]:
    """uint8 images (N, ...) -> mean, sd, share of pixels at 0 and at 255 (stored range ends)."""
    x = np.asarray(images)
    if x.size == 0:
        return {"mean": math.nan, "sd": math.nan, "at_floor": math.nan, "at_ceiling": math.nan}
    flat = x.reshape(len(x), -1)
    return {"mean": float(flat.mean()), "sd": float(flat.std()), "at_floor": float((flat == 0).mean()),
            "at_ceiling": float((flat == 255).mean())}


def per_image_means(images: np.ndarray) -> np.ndarray:
    """(N,) mean intensity of each uint8 image."""
    x = np.asarray(images)
    return x.reshape(len(x), -1).mean(axis=1) if len(x) else np.zeros(0)
