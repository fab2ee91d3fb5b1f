"""Incomplete data at the stage level (docs/missing-data.md): which rows each stage uses, how the
tabular encoder reads missing values, modality dropout's default, and the availability patterns
``evaluate`` and ``predict`` report.

- Contrastive pretraining and the R_conf probes use the rows with both an image and a table
  (a pair without one side has nothing to contrast; R_conf compares the modalities on the same
  patients); fine-tuning, the baselines, ``evaluate`` and ``predict`` use every row.
- ``--missing impute|token`` is a property of the tabular encoder: ``pretrain`` sets it for the
  run's encoders (``pretrain/``), so fusion models and the probes built on them inherit it. A run
  may hold a second pretraining with the other mode (``pretrain-<missing>/``, for comparing the
  two); stages on it, and baselines reading missing values otherwise, carry ``-<missing>`` in
  their names (:mod:`amfmedit.stages.names`).
"""

from __future__ import annotations

import numpy as np

from amfmedit.errors import UserError

#: ``--modality-dropout`` where the training rows include incomplete ones (bench_missing_quality:
#: +2-3 AUC points on rows without a scan, nothing measurable on complete rows); 0 on a complete
#: cohort, the paper's setting
MODALITY_DROPOUT = 0.25

#: availability patterns: key -> (title, has image, has table)
PATTERNS = {"complete": ("complete", True, True), "table_only": ("table only", False, True),
            "image_only": ("image only", True, False)}


#: how titles name a ``--missing`` mode (a model reading missing values otherwise than the run's)
MODE_WORDS = {"impute": "imputed values", "token": "missing-value tokens"}


def missing_mode(encoder) -> str:
    """How a tabular encoder reads missing values ("impute" for one built before the setting existed)."""
    return str(getattr(encoder, "missing_mode", "impute"))


def counts(ds, rows: np.ndarray) -> dict[str, int]:
    """Rows, complete ones, and those without an image / without a table among ``rows``."""
    return {"rows": len(rows), "complete": int(ds.complete[rows].sum()),
            "no_image": int((~ds.image_present[rows]).sum()), "no_table": int((~ds.table_present[rows]).sum())}


def check_complete_splits(ds, splits) -> None:
    """Each of ``splits`` holds complete rows (the R_conf probes train, select and score on them)."""
    for split in dict.fromkeys(splits):
        c = counts(ds, ds.indices(split))
        if c["complete"] == 0:
            raise UserError(f"{ds.root}: the {split} split has no complete rows (an image and a table) for the R_conf "
                            f"probes ({c['rows']} rows: {c['no_image']} without an image, {c['no_table']} without a "
                            "table); prepare more patients with both, or pass --rconf VALUE to finetune")


def modality_dropout(rate: float | None, ds, train_rows: np.ndarray) -> float:
    """``--modality-dropout``: the given rate, else :data:`MODALITY_DROPOUT` when some training row
    lacks a modality and 0 when every one is complete."""
    if rate is not None:
        return float(rate)
    return MODALITY_DROPOUT if not bool(ds.complete[train_rows].all()) else 0.0


def pattern_rows(ds, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Availability pattern -> (N,) bool over ``rows`` (``PATTERNS`` order; the patterns are disjoint,
    as prepare drops a row with neither modality)."""
    img, tab = ds.image_present[rows], ds.table_present[rows]
    return {k: (img == has_img) & (tab == has_tab) for k, (_, has_img, has_tab) in PATTERNS.items()}


def pattern_title(has_image: bool, has_table: bool) -> str:
    """The availability pattern of one row in words ("complete", "table only", "image only", "none")."""
    for title, img, tab in PATTERNS.values():
        if (img, tab) == (has_image, has_table):
            return title
    return "none"
