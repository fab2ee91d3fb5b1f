"""Synthetic OL3I: CT phantoms + 423 clinical features + a 1-year label from a known risk model.

Written in the real release's format (``clinical_data.csv`` with ``anon_id``, ``label_1y``,
``label_5y``, ``set_1y``, ``set_5y`` and the features; ``l3_slices.h5`` with one int16 HU
slice per ``anon_id``) so that ``prepare`` reads it with the real OL3I reader. The truth is
kept beside it in ``synthetic_truth.csv`` (never a feature): each patient's true 1- and
5-year risk and visceral fat area.

Risk model: ``logit = intercept + sum_j beta_j * g_j(x_j) + beta_img * z(visceral fat area)``
over twelve named features (``RISK_TERMS``) and one image property, with the intercept set so
that the mean risk equals the requested prevalence; the label is ``U < risk`` with ``U``
uniform, so the oracle AUC (true risk against label) is known per split. The informative
features are drawn from their true values, then some are hidden as missing, as in real
records; the remaining features are noise correlated only with age and healthcare use.

Modality strength (optional, for R_conf studies): ``image_strength`` and ``tabular_strength``
multiply the image and tabular parts of the logit (1 = the model above); the provenance's
``oracle.image_only`` / ``oracle.tabular_only`` AUCs then move with them, and their ratio is the
cohort's true modality-confidence ratio.

Other outcomes (``outcome``, :mod:`amfmedit.data.synthetic.outcomes`): a proportional-hazards time to
event with independent censoring, or a continuous score, from the same tabular and image terms.

Missingness (optional, :mod:`amfmedit.data.synthetic.missingness`): ``missing_rate`` and
``missing_mechanism`` (MCAR / MAR / MNAR) set how values are hidden, ``no_image_rate`` and
``no_table_rate`` the patients without a scan or without any feature value; the options and
the realised rates go into the provenance's ``missingness`` block, and the oracle gains
``missingness_only``: the AUC of the number of informative values hidden per patient.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from amfmedit.data.synthetic import outcomes, phantom
from amfmedit.data.synthetic.common import Generated, rounded, stratified_split, write_csv
from amfmedit.data.synthetic.missingness import absent_modalities, check_options, hide_values
from amfmedit.data.synthetic.vocabulary import FeatureDef, vocabulary
from amfmedit.data.workers import default_workers, ordered_map
from amfmedit.errors import UserError
from amfmedit.io import disk_full_as_error

OL3I_SPLIT = (5227, 1303, 1609)  # the release's 1-year split of 8,139 patients

# (feature, transform, coefficient, centre): logit contribution = coef * (transform(x) - centre)
RISK_TERMS = [
    ("age_at_scan", "linear", 0.042, 61.0),
    ("gender", "linear", 0.45, 0.0),
    ("CCI", "linear", 0.15, 0.0),
    ("smoker", "linear", 0.35, 0.0),
    ("exp_wt_lab_systolic", "linear", 0.017, 127.0),
    ("exp_wt_lab_ldl", "linear", 0.0065, 108.0),
    ("exp_wt_lab_hba1c", "linear", 0.35, 5.8),
    ("C10", "log1p", 0.25, 0.0),
    ("B01", "log1p", 0.28, 0.0),
    ("C03", "log1p", 0.25, 0.0),
    ("Chapter_IX_3", "log1p", 0.21, 0.0),
    ("Evaluation_14", "log1p", -0.32, 0.0),
]
# Strengths chosen so that on OL3I's scale the oracle AUC is about 0.88, the tabular part alone
# about 0.84 and the visceral fat area alone about 0.79 (both modalities matter).
IMAGE_TERM = ("visceral_fat_area_cm2", 1.0, 115.0, 36.0)  # name, coef per sd, population mean, sd
PROXY_FEATURES = {"bmi": "tracks adiposity and so visceral fat area (the image signal)",
                  "exp_wt_lab_weight": "tracks adiposity and so visceral fat area (the image signal)"}
INFORMATIVE = [t[0] for t in RISK_TERMS]
FIVE_YEAR_FACTOR = 2.5  # 5-year prevalence relative to the 1-year one


def select_features(n_features: int) -> list[FeatureDef]:
    """The informative features, the proxies and demographics, then noise features spread evenly
    over the vocabulary, in vocabulary order."""
    vocab = vocabulary()
    keep = set(INFORMATIVE) | set(PROXY_FEATURES) | {f.name for f in vocab if f.group == "Demographics"}
    if n_features < len(keep):
        raise UserError(f"--features {n_features}: synthetic OL3I needs at least {len(keep)} features "
                        f"(the {len(INFORMATIVE)} informative ones, proxies and demographics)")
    if n_features > len(vocab):
        raise UserError(f"--features {n_features}: OL3I has {len(vocab)} features at most")
    noise = [f.name for f in vocab if f.name not in keep]
    take = n_features - len(keep)
    if take:
        picks = np.unique(np.round(np.linspace(0, len(noise) - 1, take)).astype(int))
        keep |= {noise[i] for i in picks}
    return [f for f in vocab if f.name in keep]


def _draw_tabular(defs: list[FeatureDef], anat: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """True (complete) values of every feature; (N,) float64 each."""
    n = len(anat["age"])
    age, male, adip = anat["age"], anat["male"], anat["adiposity"]
    decade = (age - 61.0) / 10.0
    util = rng.normal(size=n)  # healthcare use: correlates the code counts, carries no risk itself
    height = np.where(male, rng.normal(1.76, 0.07, n), rng.normal(1.62, 0.065, n))
    bmi = np.clip(27.5 + 5.0 * adip + 1.5 * rng.normal(size=n), 14.0, 65.0)
    out = {}
    for f in defs:
        if f.kind == "age":
            out[f.name] = np.round(age, 1)
        elif f.kind == "sex":
            out[f.name] = male.astype(np.float64)
        elif f.kind == "bmi":
            out[f.name] = np.round(bmi, 1)
        elif f.kind == "smoker":
            p = 1 / (1 + np.exp(-(-1.3 + 0.3 * male - 0.2 * decade)))
            out[f.name] = (rng.random(n) < p).astype(np.float64)
        elif f.kind == "cci":
            lam = np.exp(0.05 + 0.3 * decade + 0.35 * util + 0.1 * adip)
            out[f.name] = np.minimum(rng.poisson(lam), 15).astype(np.float64)
        elif f.kind == "lab":
            if f.name == "exp_wt_lab_weight":
                v = bmi * height ** 2 + rng.normal(0, 1.5, n)
            else:
                z = rng.normal(size=n) + f.per_decade * decade + f.per_adiposity * adip
                v = f.mean * np.exp(f.sd * z) if f.log else f.mean + f.sd * z
            out[f.name] = rounded(v, f.decimals)
        else:  # count
            logit_any = math.log(f.prevalence / (1 - f.prevalence)) + f.age_slope * decade + 0.6 * util
            present = rng.random(n) < 1 / (1 + np.exp(-logit_any))
            extra = rng.poisson(f.rate * np.exp(0.3 * util))
            out[f.name] = np.where(present, 1 + extra, 0).astype(np.float64)
    return out


def _logit_terms(values: dict[str, np.ndarray], vat_cm2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tabular part, image part) of the risk logit, without the intercept."""
    tab = np.zeros(len(vat_cm2))
    for name, transform, coef, centre in RISK_TERMS:
        x = values[name]
        tab += coef * ((np.log1p(x) if transform == "log1p" else x) - centre)
    _, coef, mean, sd = IMAGE_TERM
    return tab, coef * (vat_cm2 - mean) / sd


def _intercept(logit: np.ndarray, prevalence: float) -> float:
    """The intercept that makes the mean risk equal ``prevalence`` (bisection; monotone)."""
    lo, hi = -30.0, 30.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(logit + mid)))) < prevalence:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _render_chunk(args: tuple) -> list[tuple[np.ndarray, tuple]]:
    """Worker: slices (int16 HU) of a run of patients, with (visceral fat area, age, male, adiposity).

    The visceral fat area is measured on the slice itself, so the risk is an exact function of
    what the image shows.
    """
    seed, size, indices = args
    out = []
    for i in indices:
        anat = phantom.anatomy(seed, i)
        labels = phantom.render_labels(anat, size)
        hu = phantom.render_hu(anat, size, seed, labels)
        out.append((hu, (phantom.tissue_area_cm2(labels), anat.age, float(anat.male), anat.adiposity)))
    return out


def anon_id(index: int) -> str:
    return f"anon_{index:05d}"


def patient_index(anon: str) -> int:
    """Inverse of :func:`anon_id`: the patient index that seeds the anatomy."""
    return int(str(anon).rsplit("_", 1)[-1])


def _write_slices(path: Path, seed: int, size: int, n: int, progress, workers: int | None,
                  skip: np.ndarray | None = None) -> np.ndarray:
    """Render every slice into ``l3_slices.h5`` (streamed, optionally on worker processes).

    Returns (N, 4): visceral fat area (cm^2), age, male, adiposity of each patient. Patients
    marked in ``skip`` (N,) bool are rendered (their anatomy enters the risk) but not written.
    """
    import h5py

    if workers is None:  # worker processes pay off only for large cohorts
        workers = default_workers(n, 1000)
    chunk = 32
    jobs = [(seed, size, range(s, min(s + chunk, n))) for s in range(0, n, chunk)]
    traits = np.empty((n, 4))
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        # HDF5 writes through a Python file object: on a full disk its own file driver swallows the
        # errors and then crashes the process (a segmentation fault at close), while a Python
        # file's OSError propagates and becomes one line (amfmedit.io.DiskFullError)
        with disk_full_as_error(path), open(tmp, "w+b") as fh, h5py.File(fh, "w") as f:
            for (_, _, idx), results in zip(jobs, ordered_map(_render_chunk, jobs, workers=workers)):
                for k, (hu, row) in enumerate(results):
                    if skip is None or not skip[idx.start + k]:
                        f.create_dataset(anon_id(idx.start + k), data=hu, track_times=False)
                    traits[idx.start + k] = row
                progress("generate images", idx.stop, n)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return traits


def generate_ol3i(raw_dir: Path, *, patients: int, image_size: int, features: int = 423, prevalence: float = 0.04,
                  seed: int = 2022, image_strength: float = 1.0, tabular_strength: float = 1.0,
                  missing_rate: float | None = None, missing_mechanism: str = "mcar", no_image_rate: float = 0.0,
                  no_table_rate: float = 0.0, progress=None, workers: int | None = None, outcome: str = "label",
                  censoring: float = 0.1) -> Generated:
    """Write a synthetic OL3I release into ``raw_dir`` and return its truth.

    ``image_strength`` / ``tabular_strength`` (>= 0, not both 0) scale the image and tabular
    parts of the risk logit; ``missing_rate`` (None: the vocabulary's rates), ``missing_mechanism``,
    ``no_image_rate`` and ``no_table_rate`` set the missingness (see the module docstring).
    ``outcome``: also write a time to event (``censoring``: yearly rate of loss to follow-up) or a
    continuous score (:mod:`amfmedit.data.synthetic.outcomes`).
    """
    outcomes.check(outcome, censoring)
    import pyarrow as pa

    progress = progress or (lambda *a: None)
    if patients < 20:
        raise UserError(f"--patients {patients}: use at least 20 patients")
    if not 0 < prevalence < 1 / FIVE_YEAR_FACTOR:
        raise UserError(f"--prevalence {prevalence}: must be between 0 and {1 / FIVE_YEAR_FACTOR:.2f}")
    for name, value in (("image_strength", image_strength), ("tabular_strength", tabular_strength)):
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"--{name.replace('_', '-')} {value}: must be a finite number >= 0")
    if image_strength == 0 and tabular_strength == 0:
        raise UserError("--image-strength 0 --tabular-strength 0: the label would carry no signal; keep one above 0")
    check_options(missing_rate, missing_mechanism, no_image_rate, no_table_rate)
    defs = select_features(features)
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    no_image, no_table = absent_modalities(patients, no_image_rate=no_image_rate, no_table_rate=no_table_rate,
                                           seed=seed)

    traits = _write_slices(raw_dir / "l3_slices.h5", seed, image_size, patients, progress, workers, skip=no_image)
    vat = traits[:, 0]
    anat = {"age": traits[:, 1], "male": traits[:, 2] > 0.5, "adiposity": traits[:, 3]}
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7AB]))
    values = _draw_tabular(defs, anat, rng)
    tab_logit, img_logit = _logit_terms(values, vat)
    tab_logit, img_logit = tabular_strength * tab_logit, image_strength * img_logit
    logit = tab_logit + img_logit
    b1 = _intercept(logit, prevalence)
    b5 = _intercept(logit, prevalence * FIVE_YEAR_FACTOR)
    risk1, risk5 = 1 / (1 + np.exp(-(logit + b1))), 1 / (1 + np.exp(-(logit + b5)))
    u = rng.random(patients)
    label1, label5 = (u < risk1).astype(np.int64), (u < risk5).astype(np.int64)  # nested: 1-year cases are 5-year cases
    counts = tuple(round(patients * c / sum(OL3I_SPLIT)) for c in OL3I_SPLIT[:2])
    counts = (counts[0], counts[1], patients - counts[0] - counts[1])
    set1 = stratified_split(label1, counts, seed)
    set5 = stratified_split(label5, counts, seed + 1)
    drawn = outcomes.draw(outcome, tab_logit, img_logit, seed=seed, prevalence=prevalence, censoring=censoring)
    # hide values as records do; the risk above used the true ones
    missingness, hidden_informative = hide_values(values, defs, rate=missing_rate, mechanism=missing_mechanism,
                                                  rng=rng, informative=INFORMATIVE)
    for f in defs:
        values[f.name] = np.where(no_table, np.nan, values[f.name])
    missingness.update(no_image_rate=no_image_rate, no_image=int(no_image.sum()), no_table_rate=no_table_rate,
                       no_table=int(no_table.sum()))

    ids = [anon_id(i) for i in range(patients)]
    cols = {"anon_id": pa.array(ids), "label_1y": pa.array(label1), "label_5y": pa.array(label5),
            "set_1y": pa.array(set1.tolist()), "set_5y": pa.array(set5.tolist())}
    if drawn is not None:
        cols.update({k: pa.array(v) for k, v in drawn.columns.items()})
    for f in defs:
        v = values[f.name]
        integral = f.kind in ("sex", "smoker", "cci", "count")
        cols[f.name] = pa.array(v, pa.float64(), from_pandas=True) if not integral else \
            pa.array(np.where(np.isnan(v), 0, v).astype(np.int64), mask=np.isnan(v))
    progress("generate table", 0, 1)
    write_csv(raw_dir / "clinical_data.csv", cols)
    write_csv(raw_dir / "synthetic_truth.csv", {
        "anon_id": pa.array(ids), "risk_1y": pa.array(np.round(risk1, 8)), "risk_5y": pa.array(np.round(risk5, 8)),
        "visceral_fat_area_cm2": pa.array(np.round(vat, 4))})
    progress("generate table", 1, 1)

    record = {
        "generator": "synthetic-ol3i",
        "seed": seed,
        "options": {"patients": patients, "image_size": image_size, "features": features, "prevalence": prevalence,
                    "image_strength": image_strength, "tabular_strength": tabular_strength,
                    "missing_rate": missing_rate, "missing_mechanism": missing_mechanism,
                    "no_image_rate": no_image_rate, "no_table_rate": no_table_rate},
        "missingness": missingness,
        "informative_features": INFORMATIVE,
        "proxy_features": {k: v for k, v in PROXY_FEATURES.items() if any(f.name == k for f in defs)},
        "risk_model": {
            "logit": "intercept + sum coef * (transform(x) - centre) + image_coef * (visceral_fat_area_cm2 - mean) / sd",
            "terms": [{"feature": n, "transform": t, "coef": c, "centre": m} for n, t, c, m in RISK_TERMS],
            "image_term": {"property": IMAGE_TERM[0], "coef": IMAGE_TERM[1], "mean": IMAGE_TERM[2], "sd": IMAGE_TERM[3]},
            "intercept": {"label_1y": b1, "label_5y": b5},
            "logit_sd": {"tabular": float(tab_logit.std()), "image": float(img_logit.std())},
        },
        "image_signal": {
            "property": "visceral_fat_area_cm2", "region": "visceral_fat",
            "mask_function": "amfmedit.data.synthetic.region_mask",
            "mask_arguments": "(seed, patient_index(id), size, 'visceral_fat')",
            "measured_at": "the generated slice (image_size x image_size), in cm^2 of a 40 cm field of view",
        },
        "truth_columns": {"risk": "true probability of label 1 for the prepared label column"},
    }
    if drawn is not None:
        record["options"].update(outcome=outcome, censoring=censoring)
        record["outcome"] = drawn.record
        record["truth_columns"] = {"risk": f"the true {drawn.truth_name} of the {outcome} outcome"}
    truth = {"label_1y": risk1, "label_5y": risk5}
    logits = {"tabular": tab_logit, "image": img_logit}

    def finish(ids_kept, labels, class_names, split, label_column):
        import pandas as pd
        from sklearn.metrics import roc_auc_score

        if drawn is not None:  # the outcome's own truth (true log hazard ratio, expected value) and oracle
            rows = np.array([patient_index(i) for i in ids_kept])
            risk, oracle = drawn.finish(rows, np.asarray(split))
            return pd.DataFrame({"id": np.asarray(ids_kept, dtype=str), "risk": risk}), oracle
        if label_column not in truth:
            raise UserError(f"synthetic OL3I has no truth for label column {label_column!r}; use label_1y or label_5y")
        rows = np.array([patient_index(i) for i in ids_kept])
        risk = truth[label_column][rows]

        def auc(score, mask):
            y = labels[mask]
            return float(roc_auc_score(y, score[mask])) if len(np.unique(y)) == 2 else None

        everything = np.ones(len(rows), bool)
        oracle = {"metric": "auc", **{s: auc(risk, split == s) for s in ("train", "val", "test")},
                  "all": auc(risk, everything),
                  # how much each modality alone can reach (true logit part of that modality)
                  "tabular_only": auc(logits["tabular"][rows], everything),
                  "image_only": auc(logits["image"][rows], everything),
                  # what missingness alone tells: the count of informative values hidden per patient
                  "missingness_only": auc(hidden_informative[rows].astype(float), everything)}
        table = pd.DataFrame({"id": np.asarray(ids_kept, dtype=str), "risk": risk})
        return table, oracle

    return Generated(record=record, finish=finish, descriptions={f.name: f.description for f in defs})
