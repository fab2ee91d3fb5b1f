"""Synthetic cohorts: real raw formats, known truth, reproducible bytes, a learnable image signal."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from amfmedit.data import load_prepared
from amfmedit.data.prepare import apply_overrides
from amfmedit.stages.prepare import prepare
from amfmedit.data.spec import load_spec
from amfmedit.data.synthetic import patient_index, region_mask, region_masks
from amfmedit.data.synthetic.ol3i import INFORMATIVE, select_features
from amfmedit.data.synthetic.phantom import anatomy, render_labels, tissue_area_cm2
from amfmedit.errors import UserError


def _ol3i(tmp_path, tag, size=16, **options):
    spec = apply_overrides(load_spec("synthetic-ol3i"), image_size=size)
    opts = dict(patients=60, seed=11, features=30, prevalence=0.2) | options
    return prepare(spec, raw=tmp_path / f"raw-{tag}", data_dir=tmp_path / f"data-{tag}", synthetic=opts)


def _digests(folder):
    """sha256 of every file; provenance.json without the raw folder's path (it differs on purpose)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "provenance.json":
                prov = json.loads(data)
                prov.pop("raw")  # where the raw files were kept, if they were
                data = json.dumps(prov, sort_keys=True).encode()
            out[str(p.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return out


def test_same_seed_same_bytes_and_another_seed_differs(tmp_path):
    a, b = _ol3i(tmp_path, "a"), _ol3i(tmp_path, "b")
    assert _digests(tmp_path / "raw-a") == _digests(tmp_path / "raw-b")
    assert _digests(a.path) == _digests(b.path)
    assert set(_digests(a.path)) == {"COMPLETE", "image_present.npy", "images.npy", "missing.npy", "provenance.json",
                                     "schema.json", "tabular.parquet", "truth.parquet"}
    c = _ol3i(tmp_path, "c", seed=12)
    differ = {k for k, v in _digests(c.path).items() if _digests(a.path)[k] != v}
    assert {"images.npy", "tabular.parquet", "truth.parquet"} <= differ


def test_raw_files_are_in_the_ol3i_format(tmp_path):
    _ol3i(tmp_path, "a")
    raw = tmp_path / "raw-a"
    df = pd.read_csv(raw / "clinical_data.csv")
    assert list(df.columns[:5]) == ["anon_id", "label_1y", "label_5y", "set_1y", "set_5y"]
    assert len(df.columns) == 5 + 30 and set(INFORMATIVE) <= set(df.columns)
    assert (df["label_5y"] >= df["label_1y"]).all()  # a 1-year case is a 5-year case
    assert df["set_1y"].value_counts().to_dict() == {"train": 39, "test": 11, "val": 10}  # OL3I's proportions
    assert df["bmi"].isna().any() and not df["age_at_scan"].isna().any()
    with h5py.File(raw / "l3_slices.h5") as f:
        assert sorted(f.keys()) == sorted(df["anon_id"])
        hu = f[df["anon_id"][0]][()]
    assert hu.dtype == np.int16 and hu.shape == (16, 16) and hu.min() >= -1024


def test_tiny_ol3i_has_known_truth(tiny_ol3i):
    ds = load_prepared(tiny_ol3i)
    prov = ds.provenance
    syn = prov["synthetic"]
    assert set(INFORMATIVE) <= set(ds.schema.feature_names) and len(ds.schema.features) == 40
    assert syn["informative_features"] == INFORMATIVE
    assert syn["image_signal"]["region"] == "visceral_fat"
    for split in ("train", "val", "test"):
        assert ds.labels[ds.split == split].sum() >= 3  # prevalence 0.2: every split has positives
    truth = pd.read_parquet(tiny_ol3i.path / "truth.parquet")
    assert truth["id"].tolist() == ds.ids.tolist()
    for split in ("train", "val", "test", "all"):
        mask = ds.split == split if split != "all" else np.ones(len(ds), bool)
        assert syn["oracle"][split] == pytest.approx(roc_auc_score(ds.labels[mask], truth["risk"][mask]))
    assert 0.7 < syn["oracle"]["all"] < 0.97
    assert ds.schema.feature("exp_wt_lab_systolic").description.startswith("Exponentially weighted average")


def test_oracle_auc_at_ol3i_prevalence(tmp_path):
    result = _ol3i(tmp_path, "big", size=8, patients=600, prevalence=0.06, features=25)
    oracle = result.provenance["synthetic"]["oracle"]
    assert 0.82 < oracle["all"] < 0.94
    assert 0.7 < oracle["tabular_only"] < oracle["all"]
    assert 0.65 < oracle["image_only"] < oracle["all"]
    labels = load_prepared(result.path).labels
    assert 0.04 < labels.mean() < 0.08


def test_region_mask_is_the_visceral_fat_of_the_slice(tmp_path):
    result = _ol3i(tmp_path, "a", size=64)
    ds = load_prepared(result.path)
    truth = pd.read_csv(tmp_path / "raw-a" / "synthetic_truth.csv")
    with h5py.File(tmp_path / "raw-a" / "l3_slices.h5") as f:
        for row in (0, 17, 42):
            anon = ds.ids[row]
            mask = region_mask(11, patient_index(anon), 64, "visceral_fat")
            hu = f[anon][()]
            assert -120 < np.median(hu[mask]) < -65  # fat
            organs = region_mask(11, patient_index(anon), 64, "organs")
            assert np.median(hu[organs]) > 0
            # the window keeps the contrast: fat is dark grey, organs mid grey, air black
            img = ds.images[row, 0]
            assert 12 <= np.median(img[mask]) <= 35 and np.median(img[organs]) >= 80
            assert img[0, 0] == 0
    masks = region_masks(ds, [0, 1, 2])
    assert masks.shape == (3, 64, 64) and masks.dtype == bool
    # the risk-carrying area is the area of that region in the slice (40 cm field of view)
    for row in range(5):
        mask = region_mask(11, patient_index(ds.ids[row]), 64, "visceral_fat")
        assert truth["visceral_fat_area_cm2"][row] == pytest.approx(mask.sum() * (40 / 64) ** 2, abs=1e-3)


def test_visceral_fat_varies_and_is_visible_at_low_resolution():
    areas_hi, areas_lo = [], []
    for i in range(40):
        labels = render_labels(anatomy(3, i), 128)
        areas_hi.append(tissue_area_cm2(labels))
        areas_lo.append(tissue_area_cm2(render_labels(anatomy(3, i), 32)))
    assert np.std(areas_hi) > 20  # cm^2: patients differ
    assert np.corrcoef(areas_hi, areas_lo)[0, 1] > 0.9  # a 32 x 32 image still shows it


def test_feature_selection_keeps_the_informative_features():
    names = [f.name for f in select_features(20)]
    assert len(names) == 20 and set(INFORMATIVE) <= set(names)
    assert len(select_features(423)) == 423
    with pytest.raises(UserError, match="--features 10: synthetic OL3I needs at least"):
        select_features(10)
    assert patient_index("anon_00123") == 123


def test_tiny_dvm_in_the_dvm_format(tiny_dvm):
    ds = load_prepared(tiny_dvm)
    syn = ds.provenance["synthetic"]
    assert ds.schema.task == "multiclass" and ds.schema.n_classes == 5
    assert ds.images.shape[1:] == (3, 32, 32) and len(ds.schema.features) == 13
    truth = pd.read_parquet(tiny_dvm.path / "truth.parquet")
    assert syn["oracle"]["all"] == pytest.approx((truth["bayes_label"] == ds.labels).mean())
    assert syn["oracle"]["all"] >= max(syn["oracle"]["tabular_only"], syn["oracle"]["image_only"]) - 0.02
    assert (truth["risk"] > 0).all() and (truth["risk"] <= 1).all()
    assert ds.provenance["rows"]["dropped"]  # the release's quirks were exercised


def test_dvm_same_seed_same_bytes(tmp_path):
    def run(tag):
        spec = apply_overrides(load_spec("synthetic-dvm"), image_size=16)
        spec.table.min_class_count = 5
        return prepare(spec, raw=tmp_path / f"raw-{tag}", data_dir=tmp_path / f"data-{tag}",
                       synthetic=dict(patients=60, seed=5, classes=3))

    a, b = run("a"), run("b")
    assert _digests(tmp_path / "raw-a") == _digests(tmp_path / "raw-b")
    assert _digests(a.path) == _digests(b.path)
    header = (tmp_path / "raw-a" / "Ad_table.csv").read_text().splitlines()[0]
    assert header.startswith("Maker, Genmodel, Genmodel_ID,Adv_ID,")
    jpgs = list((tmp_path / "raw-a" / "Confirmed_fronts").rglob("*.jpg"))
    assert jpgs and all(p.parent.parent.parent.name == "Confirmed_fronts" for p in jpgs)
    assert all(p.name.split("$$")[0] == p.parent.parent.name and p.name.split("$$")[2] == p.parent.name for p in jpgs)


def test_worker_processes_give_the_same_bytes(tmp_path):
    """Large cohorts render and convert on worker processes; the output must not change."""
    spec = apply_overrides(load_spec("synthetic-ol3i"), image_size=16)
    opts = dict(patients=40, seed=3, features=25, prevalence=0.2)
    serial = prepare(spec, data_dir=tmp_path / "one", synthetic=opts, workers=1)
    parallel = prepare(spec, data_dir=tmp_path / "two", synthetic=opts, workers=2)
    assert _digests(serial.path) == _digests(parallel.path)
