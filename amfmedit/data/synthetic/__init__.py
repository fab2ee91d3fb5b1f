"""Synthetic cohorts with known ground truth, written in the real raw formats.

``generate(spec, raw_dir, overrides)`` writes a synthetic OL3I or DVM release into
``raw_dir``; ``prepare`` then reads it with the real reader, so the synthetic path exercises
the real one. The truth (true risks or class posteriors, the informative features, the
image region carrying the signal) goes into the prepared dataset's ``provenance.json`` and
``truth.parquet``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amfmedit.data.synthetic.dvm import generate_dvm
from amfmedit.data.synthetic.ol3i import generate_ol3i, patient_index
from amfmedit.data.synthetic.phantom import REGIONS, region_mask
from amfmedit.errors import UserError

# image_strength / tabular_strength, the missingness and outcome options: optional OL3I knobs
# (amfmedit.data.synthetic.ol3i), not spec fields
GENERATOR_OPTIONS = {"ol3i": {"patients", "seed", "features", "prevalence", "image_strength", "tabular_strength",
                              "missing_rate", "missing_mechanism", "no_image_rate", "no_table_rate", "outcome",
                              "censoring"},
                     "dvm": {"patients", "seed", "classes"}}


def generate(spec, raw_dir: Path, *, overrides: dict, progress=None, workers: int | None = None):
    """Run the spec's generator with CLI overrides; returns a :class:`~.common.Generated`.

    Large cohorts render images on ``workers`` processes (default: one per CPU from 1,000
    patients or 2,000 images up; 1 = in this process). They start with the ``forkserver``
    method, so a script that calls this must do so under ``if __name__ == "__main__":``.
    """
    syn = spec.synthetic
    allowed = GENERATOR_OPTIONS[syn.generator]
    for key, value in overrides.items():
        if key not in allowed:
            raise UserError(f"--{key}: not an option of the synthetic {syn.generator} generator "
                            f"(it takes {', '.join('--' + k for k in sorted(allowed))})")
    opts = {k: getattr(syn, k) for k in allowed if hasattr(syn, k)}
    opts.update(overrides)
    if syn.generator == "ol3i":
        return generate_ol3i(raw_dir, image_size=spec.image.size[0], progress=progress, workers=workers, **opts)
    return generate_dvm(raw_dir, image_size=spec.image.size[0], progress=progress, workers=workers, **opts)


def region_masks(prepared, rows, region: str = "visceral_fat") -> np.ndarray:
    """(len(rows), H, W) bool masks of ``region`` for rows of a prepared synthetic OL3I dataset.

    ``prepared`` is a :class:`~amfmedit.data.prepared.PreparedDataset`; the seed comes from its
    provenance and each row's patient index from its id.
    """
    syn = prepared.provenance.get("synthetic") or {}
    if syn.get("generator") != "synthetic-ol3i":
        raise UserError(f"{prepared.root}: region masks exist only for synthetic OL3I datasets")
    size = prepared.schema.image.height
    return np.stack([region_mask(syn["seed"], patient_index(prepared.ids[r]), size, region) for r in rows])


__all__ = ["REGIONS", "generate", "patient_index", "region_mask", "region_masks"]
