"""Known missingness for synthetic OL3I: which values are hidden, and which patients lack a scan or a table.

Values (:func:`hide_values`). The features that records leave blank (those with a missing rate
in the vocabulary: labs and vitals, BMI, smoker) are eligible; each gets a per-feature rate,
the vocabulary's realistic one or ``rate`` for all of them, and a mechanism
(Rubin's taxonomy, as in Little & Rubin, *Statistical Analysis with Missing Data*):

- ``mcar``: missing completely at random, probability = the rate;
- ``mar``: missing at random given an observed feature: ``P = sigmoid(a_j + MAR_SLOPE * z(age))``,
  age being always recorded (younger patients have fewer measurements on record);
- ``mnar``: missing not at random, driven by the value itself: ``P = sigmoid(a_j + MNAR_SLOPE *
  z(x_j))``, so high values are hidden more often. Several informative features raise the risk
  with their value (systolic pressure, LDL, HbA1c, smoker), so there missingness itself carries
  outcome signal, which only an encoder that reads the mask can use.

``a_j`` is solved per feature so that the expected rate equals the feature's rate; ``z`` is the
cohort's z-score of the TRUE value. The risk is always computed from the true values.

Patients (:func:`absent_modalities`): a fraction ``no_image_rate`` has no scan (no dataset in
``l3_slices.h5``; the visceral fat area still enters the risk) and a disjoint fraction
``no_table_rate`` has every feature blank, both completely at random.

Values are hidden with the generator's own stream, feature after feature as before these
options existed, so the default cohort (vocabulary rates, MCAR, every patient complete) keeps
its bytes; the patients without a modality come from a stream of their own.
"""

from __future__ import annotations

import math

import numpy as np

from amfmedit.errors import UserError

MECHANISMS = ("mcar", "mar", "mnar")
MAR_DRIVER = "age_at_scan"
MAR_SLOPE = -1.0  # logit per sd of age: younger patients are measured less
MNAR_SLOPE = 1.5  # logit per sd of the value itself: high values are hidden more often
MAX_RATE = 0.9
_PATIENTS_STREAM = 0xA7A1


def check_options(rate: float | None, mechanism: str, no_image_rate: float, no_table_rate: float) -> None:
    """One-line UserErrors for the generator's missingness options."""
    if mechanism not in MECHANISMS:
        raise UserError(f"--missing-mechanism {mechanism}: use one of {', '.join(MECHANISMS)}")
    if rate is not None and not (math.isfinite(rate) and 0 <= rate <= MAX_RATE):
        raise UserError(f"--missing-rate {rate}: must be between 0 and {MAX_RATE}")
    for name, value in (("no-image-rate", no_image_rate), ("no-table-rate", no_table_rate)):
        if not (math.isfinite(value) and 0 <= value < 1):
            raise UserError(f"--{name} {value}: must be at least 0 and below 1")
    if no_image_rate + no_table_rate >= 1:
        raise UserError(f"--no-image-rate {no_image_rate} --no-table-rate {no_table_rate}: together they must stay "
                        f"below 1 (a patient lacks at most one of the two)")


def _intercepts(drive: np.ndarray, slope: float, rate: float) -> float:
    """``a`` with mean(sigmoid(a + slope * drive)) = rate (bisection; monotone in a)."""
    if rate <= 0:
        return -math.inf
    lo, hi = -40.0, 40.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(mid + slope * drive)))) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _z(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def hide_values(values: dict[str, np.ndarray], defs, *, rate: float | None, mechanism: str,
                rng: np.random.Generator, informative: list[str]) -> tuple[dict, np.ndarray]:
    """Replace hidden values of ``values`` (true values, (N,) float each) by NaN, in place.

    ``defs``: the cohort's feature definitions (``missing`` is a feature's vocabulary rate);
    ``rate``: None for the vocabulary rates, else the rate of every eligible feature.
    Returns the provenance record (options, constants, realised rates) and (N,) the number of
    informative values hidden per patient.
    """
    eligible = [f for f in defs if f.missing > 0]
    n = len(next(iter(values.values())))
    hidden = np.zeros((n, len(eligible)), bool)
    for j, f in enumerate(eligible):
        target = f.missing if rate is None else rate
        if mechanism == "mcar":
            p = np.full(n, target)
        else:
            slope = MAR_SLOPE if mechanism == "mar" else MNAR_SLOPE
            drive = _z(values[MAR_DRIVER] if mechanism == "mar" else values[f.name])
            p = 1 / (1 + np.exp(-(_intercepts(drive, slope, target) + slope * drive)))
        hidden[:, j] = rng.random(n) < p
        values[f.name] = np.where(hidden[:, j], np.nan, values[f.name])
    names = [f.name for f in eligible]
    inf_cols = [j for j, name in enumerate(names) if name in informative]
    record = {
        "mechanism": mechanism,
        "rate": rate,  # None: each feature's realistic rate from the vocabulary
        "eligible_features": names,
        "driver": {"mcar": None, "mar": MAR_DRIVER, "mnar": "the feature's own true value"}[mechanism],
        "slope": {"mcar": None, "mar": MAR_SLOPE, "mnar": MNAR_SLOPE}[mechanism],
        "realised_rate": float(hidden.mean()) if hidden.size else 0.0,
        "realised_rate_informative": float(hidden[:, inf_cols].mean()) if inf_cols else None,
    }
    return record, hidden[:, inf_cols].sum(axis=1)


def absent_modalities(n: int, *, no_image_rate: float, no_table_rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(no_image (N,) bool, no_table (N,) bool), disjoint, each completely at random."""
    u = np.random.default_rng(np.random.SeedSequence([seed, _PATIENTS_STREAM])).random(n)
    return u < no_image_rate, (u >= no_image_rate) & (u < no_image_rate + no_table_rate)
