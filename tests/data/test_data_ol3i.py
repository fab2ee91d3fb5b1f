"""The OL3I reader and the preprocessing, on a small release written in OL3I's real format."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from data_raw import ol3i_spec, write_ol3i

from amfmedit.data import load_prepared
from amfmedit.stages.prepare import prepare
from amfmedit.errors import UserError

CONT = ["age_at_scan", "bmi", "CCI", "C09"]  # continuous features in table order
CAT = ["gender", "smoker"]


@pytest.fixture
def release(tmp_path):
    df, slices = write_ol3i(tmp_path / "raw")
    return tmp_path / "raw", df, slices


def test_prepared_folder_matches_the_contract(release, data_dir):
    raw, df, slices = release
    prepare(ol3i_spec(), raw=raw, data_dir=data_dir)
    root = data_dir / "ol3i"
    assert sorted(p.name for p in root.iterdir()) == [
        "COMPLETE", "image_present.npy", "images.npy", "missing.npy", "provenance.json", "schema.json",
        "tabular.parquet"]
    table = pd.read_parquet(root / "tabular.parquet")
    assert list(table.columns) == ["id", "split", "label", *CONT, *CAT]
    assert table["id"].tolist() == df["anon_id"].tolist()
    assert table["split"].tolist() == df["set_1y"].tolist()
    assert table["label"].tolist() == df["label_1y"].tolist()
    assert all(table[c].dtype == np.float32 for c in CONT) and all(table[c].dtype == np.int64 for c in CAT)
    images = np.load(root / "images.npy", mmap_mode="r")
    assert images.dtype == np.uint8 and images.shape == (30, 1, 16, 16)


def test_statistics_come_from_the_train_split_only(release, data_dir):
    raw, df, _ = release
    ds = load_prepared(prepare(ol3i_spec(), raw=raw, data_dir=data_dir).path)
    train = (df["set_1y"] == "train").to_numpy()
    bmi = df["bmi"].to_numpy()
    median = np.nanmedian(bmi[train])
    filled = np.where(np.isnan(bmi), median, bmi)
    mean, std = filled[train].mean(), filled[train].std()
    f = ds.schema.feature("bmi")
    assert (f.median, f.mean, f.std) == pytest.approx((median, mean, std))
    col = ds.schema.feature_names.index("bmi")
    np.testing.assert_allclose(ds.x_cont[:, col], (filled - mean) / std, rtol=1e-5, atol=1e-6)
    tr = ds.split == "train"
    np.testing.assert_allclose(ds.x_cont[tr].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_cont[tr].std(axis=0), 1, atol=1e-5)
    # the statistics of all rows differ, so using them would have shown
    assert abs(filled.mean() - mean) > 1e-3
    assert f.missing_fraction_train == pytest.approx(np.isnan(bmi[train]).mean())


def test_categorical_codes_and_missing_mask(release, data_dir):
    raw, df, _ = release
    ds = load_prepared(prepare(ol3i_spec(), raw=raw, data_dir=data_dir).path)
    smoker = ds.schema.feature("smoker")
    assert smoker.categories == ["0", "1"] and smoker.cardinality == 3
    codes = ds.x_cat[:, ds.schema.categorical.index(smoker)]
    raw_smoker = df["smoker"].to_numpy()
    expected = np.where(np.isnan(raw_smoker), 0, np.nan_to_num(raw_smoker) + 1)
    np.testing.assert_array_equal(codes, expected)
    names = ds.schema.feature_names
    np.testing.assert_array_equal(ds.missing[:, names.index("smoker")], np.isnan(raw_smoker))
    np.testing.assert_array_equal(ds.missing[:, names.index("bmi")], df["bmi"].isna().to_numpy())
    assert not ds.missing[:, names.index("age_at_scan")].any()


def test_images_are_windowed_hu(release, data_dir):
    raw, df, slices = release
    ds = load_prepared(prepare(ol3i_spec(), raw=raw, data_dir=data_dir).path)
    for row in (0, 7, 29):
        hu = slices[ds.ids[row]].astype(np.float64)
        expected = np.rint(np.clip((hu + 125) / 400, 0, 1) * 255)
        np.testing.assert_array_equal(ds.images[row, 0], expected)


def test_provenance_and_schema(release, data_dir):
    raw, df, _ = release
    result = prepare(ol3i_spec(), raw=raw, data_dir=data_dir)
    prov = json.loads((result.path / "provenance.json").read_text())
    train = df[df["set_1y"] == "train"]
    assert prov["counts"]["train"] == {"rows": len(train), "classes": {
        "0": int((train["label_1y"] == 0).sum()), "1": int((train["label_1y"] == 1).sum())},
        "availability": {"complete": len(train), "table_only": 0, "image_only": 0}}
    assert set(prov["sources"]) == {"clinical_data.csv", "l3_slices.h5"}
    assert prov["sources"]["l3_slices.h5"] == (raw / "l3_slices.h5").stat().st_size
    assert prov["spec"]["table"]["label"] == "label_1y" and prov["raw"] == str(raw.resolve())
    schema = result.schema
    assert schema.task == "binary" and schema.class_names == ["0", "1"]
    assert schema.image.window == (-125.0, 275.0)
    assert schema.feature("gender").group == "Demographics"
    assert schema.feature("C09").group == "ATC drug codes"
    assert schema.feature("age_at_scan").description == "Age at time of abdominal scan in years"


def test_five_year_task_is_selectable(release, data_dir):
    raw, df, _ = release
    spec = ol3i_spec()
    spec.table.label, spec.table.split, spec.name = "label_5y", "set_5y", "ol3i-5y"
    ds = load_prepared(prepare(spec, raw=raw, data_dir=data_dir).path)
    assert ds.labels.tolist() == df["label_5y"].tolist()
    assert ds.split.tolist() == df["set_5y"].tolist()
    assert not {"label_1y", "set_1y", "label_5y", "set_5y"} & set(ds.schema.feature_names)


def test_the_423_feature_csv_variant_is_accepted(tmp_path, data_dir):
    df, _ = write_ol3i(tmp_path / "raw", table="OL3I_tabular_info_all_423.csv", variant_423=True)
    ds = load_prepared(prepare(ol3i_spec(), raw=tmp_path / "raw", data_dir=data_dir).path)
    assert ds.schema.feature_names == CONT + CAT  # img_id is never a feature
    assert ds.labels.tolist() == df["label_1y"].tolist()


def test_an_existing_dataset_is_kept_unless_force(release, data_dir):
    raw, df, _ = release
    first = prepare(ol3i_spec(), raw=raw, data_dir=data_dir)
    before = (first.path / "tabular.parquet").read_bytes()
    with pytest.raises(UserError, match="already exists; pass --force"):
        prepare(ol3i_spec(), raw=raw, data_dir=data_dir)
    assert (first.path / "tabular.parquet").read_bytes() == before
    spec = ol3i_spec()
    spec.table.exclude = spec.table.exclude + ["C09"]
    prepare(spec, raw=raw, data_dir=data_dir, force=True)
    assert "C09" not in load_prepared(first.path).schema.feature_names
    assert sorted(p.name for p in data_dir.iterdir()) == ["ol3i"]  # no temporary or old folders left
