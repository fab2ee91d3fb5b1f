"""The DVM reader on a small release in DVM's real format (three tables, stray header spaces)."""

from __future__ import annotations

import numpy as np
import pytest
from data_raw import dvm_spec, write_dvm
from PIL import Image

from amfmedit.data import load_prepared
from amfmedit.stages.prepare import prepare
from amfmedit.data.transform import load_image


@pytest.fixture
def release(tmp_path):
    kept = write_dvm(tmp_path / "raw")
    return tmp_path / "raw", kept


def test_filters_joins_and_parsing(release, data_dir):
    raw, kept = release
    result = prepare(dvm_spec(), raw=raw, data_dir=data_dir)
    ds = load_prepared(result.path)
    # Kia has 2 adverts (< min_class_count 5); each model loses advert 2 (no entry price for
    # 2012), advert 3 (text mileage -> missing -> dropped) and advert 4 (failed quality check)
    expected = {r["Adv_ID"]: r for r in kept if r["Genmodel_ID"] != "43_2"}
    assert sorted(ds.ids.tolist()) == sorted(expected)
    dropped = result.provenance["rows"]["dropped"]
    assert dropped["no entry price for (Genmodel_ID, Reg_year)"] == 3
    assert dropped["no front-view image passing the quality check"] == 2  # Kia has no advert 4
    assert dropped["missing feature values"] == 2  # advert 3 of the two models that keep adverts 1-3
    assert dropped["class with fewer than 5 rows"] == 1  # Kia advert 1
    assert ds.schema.class_names == ["8_1", "29_1"]  # numeric-aware order
    assert ds.labels.tolist() == [ds.schema.class_names.index(expected[i]["Genmodel_ID"]) for i in ds.ids]


def test_thirteen_features_of_appendix_a1(release, data_dir):
    raw, kept = release
    ds = load_prepared(prepare(dvm_spec(), raw=raw, data_dir=data_dir).path)
    assert [f.name for f in ds.schema.continuous] == ["Adv_year", "Adv_month", "Reg_year", "Runned_Miles", "Price",
                                                      "Seat_num", "Door_num", "Entry_price", "Engine_size"]
    assert [f.name for f in ds.schema.categorical] == ["Color", "Bodytype", "Gearbox", "Fuel_type"]
    engine = ds.schema.feature("Engine_size")
    assert (engine.source, engine.strip_suffix) == ("Engin_size", "L")
    rows = {r["Adv_ID"]: r for r in kept}
    tr = ds.split == "train"
    for name in ("Engine_size", "Entry_price", "Runned_Miles", "Price", "Reg_year"):
        f = ds.schema.feature(name)
        raw_values = np.array([rows[i][name] for i in ds.ids], dtype=float)
        assert f.mean == pytest.approx(raw_values[tr].mean())
        j = ds.schema.feature_names.index(name)
        np.testing.assert_allclose(ds.x_cont[:, j] * f.std + f.mean, raw_values, rtol=1e-5)
    colour = ds.schema.feature("Color")
    assert colour.categories == ["Blue", "Red"]
    codes = ds.x_cat[:, 0]
    assert codes.tolist() == [colour.categories.index(rows[i]["Color"]) + 1 for i in ds.ids]


def test_split_is_the_reference_two_stage_split(release, data_dir):
    from sklearn.model_selection import train_test_split

    raw, _ = release
    ds = load_prepared(prepare(dvm_spec(), raw=raw, data_dir=data_dir).path)
    ids = list(ds.ids)
    rest, test = train_test_split(ids, test_size=0.1, random_state=2022)
    train, val = train_test_split(rest, test_size=0.2, random_state=2022)
    assert set(ds.ids[ds.split == "test"]) == set(test)
    assert set(ds.ids[ds.split == "val"]) == set(val)
    assert set(ds.ids[ds.split == "train"]) == set(train)


def test_images_are_resized_rgb(release, data_dir):
    raw, kept = release
    ds = load_prepared(prepare(dvm_spec(size=8), raw=raw, data_dir=data_dir).path)
    assert ds.images.shape == (len(ds), 3, 8, 8)
    path = {r["Adv_ID"]: r["image"] for r in kept}[ds.ids[0]]
    np.testing.assert_array_equal(ds.images[0], load_image(path, ds.schema.image))
    # an antialiased 20 -> 8 downsample keeps each channel's mean
    source = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64).mean(axis=(0, 1))
    np.testing.assert_allclose(ds.images[0].reshape(3, -1).mean(axis=1), source, atol=4)


def test_missing_image_files_are_dropped_after_the_split_as_in_the_reference(release, data_dir):
    raw, kept = release
    full = load_prepared(prepare(dvm_spec(), raw=raw, data_dir=data_dir / "full").path)
    victim = next(r for r in kept if r["Genmodel_ID"] == "29_1")
    victim["image"].unlink()
    result = prepare(dvm_spec(), raw=raw, data_dir=data_dir)
    ds = load_prepared(result.path)
    assert victim["Adv_ID"] not in set(ds.ids)
    assert result.provenance["rows"]["dropped"]["image file missing"] == 1
    # every other advert keeps the split it had with the image present
    before = dict(zip(full.ids, full.split))
    assert all(before[i] == s for i, s in zip(ds.ids, ds.split))
