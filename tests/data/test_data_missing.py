"""Incomplete cohorts in the data layer: rows kept without an image (image.missing = "keep"),
table-absent rows, availability counts, blank image paths for new rows, and the synthetic
OL3I knobs for known missingness (MCAR / MAR / MNAR, patients without a scan or a table)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from data_raw import leftovers
from PIL import Image

from amfmedit.data import load_prepared
from amfmedit.data.prepare import apply_overrides
from amfmedit.stages.prepare import prepare
from amfmedit.data.schema import ImageInfo
from amfmedit.data.spec import load_spec
from amfmedit.data.transform import image_path, load_optional_image
from amfmedit.errors import UserError


def _own(tmp_path, missing="keep"):
    """A gray-PNG cohort of 12 rows: row 1 has a blank image path, row 2 names a file that is not
    there, row 4 has every feature blank, row 7 has neither an image nor a feature value."""
    (tmp_path / "img").mkdir()
    n = 12
    paths = []
    for i in range(n):
        Image.fromarray(np.full((8, 8), 40 + 10 * i, np.uint8)).save(tmp_path / "img" / f"p{i}.png")
        paths.append(f"img/p{i}.png")
    paths[1], paths[2], paths[7] = "", "img/gone.png", None
    age = [50.0 + i for i in range(n)]
    sex = (["F", "M"] * n)[:n]
    age[4] = age[7] = math.nan
    sex[4] = sex[7] = None
    pd.DataFrame({"patient_id": [f"c{i}" for i in range(n)], "outcome": [i % 2 for i in range(n)],
                  "split": ["train"] * 6 + ["val"] * 3 + ["test"] * 3, "image_path": paths, "age": age,
                  "sex": sex}).to_csv(tmp_path / "cohort.csv", index=False)
    spec = load_spec("example-own-cohort")
    spec.image.modality, spec.image.size, spec.image.missing = "gray", [8, 8], missing
    spec.table.exclude = ["scan_date"]
    return spec


def test_keep_mode_keeps_rows_without_an_image_and_counts_every_pattern(tmp_path, data_dir):
    result = prepare(_own(tmp_path), raw=tmp_path, data_dir=data_dir)
    ds = load_prepared(result.path)
    ids = list(ds.ids)
    assert "c7" not in ids and len(ds) == 11  # neither an image nor a feature value: dropped, counted
    prov = result.provenance
    assert prov["rows"]["dropped"] == {"no image and no feature values": 1}
    no_image = {ids.index("c1"), ids.index("c2")}
    assert set(np.flatnonzero(~ds.image_present)) == no_image
    assert (np.asarray(ds.images)[sorted(no_image)] == 0).all() and np.asarray(ds.images)[ids.index("c0")].any()
    assert set(np.flatnonzero(~ds.table_present)) == {ids.index("c4")}  # every feature missing: table-absent
    assert ds.missing[ids.index("c4")].all() and not ds.missing[ids.index("c0")].any()
    assert list(ds.complete) == [i not in no_image | {ids.index("c4")} for i in range(len(ds))]
    assert prov["counts"]["train"]["availability"] == {"complete": 3, "table_only": 2, "image_only": 1}
    assert prov["counts"]["val"]["availability"] == {"complete": 2, "table_only": 0, "image_only": 0}
    assert any("name an image file that does not exist" in w and "'c2'" in w for w in prov["warnings"])
    assert json.loads((result.path / "provenance.json").read_text())["counts"] == prov["counts"]


def test_error_mode_names_the_keep_option_and_drop_mode_drops(tmp_path, data_dir):
    with pytest.raises(UserError, match=r"id 'c1' has no image .*image\.missing = \"keep\" .*--image-missing keep"):
        prepare(_own(tmp_path, "error"), raw=tmp_path, data_dir=data_dir)
    assert leftovers(data_dir) == []
    other = tmp_path / "other"
    other.mkdir()
    ds = load_prepared(prepare(_own(other, "drop"), raw=other, data_dir=data_dir).path)
    assert ds.image_present.all() and {"c1", "c2", "c7"}.isdisjoint(ds.ids)


def test_image_missing_override_and_its_bad_value():
    spec = load_spec("example-own-cohort")
    assert apply_overrides(spec, image_missing="keep").image.missing == "keep" and spec.image.missing == "error"
    with pytest.raises(UserError, match="--image-missing maybe: use one of error, drop, keep"):
        apply_overrides(spec, image_missing="maybe")


def test_a_dataset_prepared_before_image_present_existed_has_every_image(tiny_ol3i, tmp_path):
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(tiny_ol3i.path, copy)
    (copy / "image_present.npy").unlink()
    ds = load_prepared(copy)
    assert ds.image_present.all() and ds.image_present.shape == (len(ds),)
    np.save(copy / "image_present.npy", np.ones(3, bool))  # damaged: wrong length
    with pytest.raises(UserError, match=r"image_present\.npy: holds bool \(3,\), tabular\.parquet needs bool"):
        load_prepared(copy)


@pytest.mark.parametrize("value", [None, float("nan"), pd.NA, "", "  ", "nan"])
def test_a_blank_image_cell_is_an_absent_image(value, tmp_path):
    assert image_path(value, tmp_path) is None
    info = ImageInfo(modality="gray", channels=1, height=8, width=8)
    img, present = load_optional_image(image_path(value, tmp_path), info)
    assert not present and img.shape == (1, 8, 8) and img.dtype == np.uint8 and not img.any()


def test_a_named_image_path_loads_or_fails(tmp_path):
    Image.fromarray(np.full((4, 4), 200, np.uint8)).save(tmp_path / "a.png")
    info = ImageInfo(modality="gray", channels=1, height=4, width=4)
    assert image_path(" a.png ", tmp_path) == tmp_path / "a.png"
    img, present = load_optional_image(image_path("a.png", tmp_path), info)
    assert present and (img == 200).all()
    with pytest.raises(UserError, match="image file not found"):  # a typo is not an absent image
        load_optional_image(image_path("b.png", tmp_path), info)


# ---------------------------------------------------------------------------------------------
# synthetic OL3I with known missingness


def _synthetic(tmp_path, tag, **options):
    spec = apply_overrides(load_spec("synthetic-ol3i"), image_size=16, name=f"syn-{tag}")
    opts = dict(patients=400, seed=3, features=40, prevalence=0.2) | options
    return prepare(spec, data_dir=tmp_path / "data", synthetic=opts, workers=1)


def test_synthetic_knobs_are_realised_and_recorded(tmp_path):
    mcar = _synthetic(tmp_path, "mcar", missing_rate=0.3, missing_mechanism="mcar", no_image_rate=0.15,
                      no_table_rate=0.1)
    syn = mcar.provenance["synthetic"]
    miss = syn["missingness"]
    assert syn["options"]["missing_mechanism"] == "mcar" and miss["rate"] == 0.3
    assert abs(miss["realised_rate"] - 0.3) < 0.04
    ds = load_prepared(mcar.path)
    assert (~ds.image_present).sum() == miss["no_image"] and abs(miss["no_image"] / 400 - 0.15) < 0.05
    assert (~ds.table_present).sum() == miss["no_table"] and abs(miss["no_table"] / 400 - 0.1) < 0.05
    assert not (~ds.image_present & ~ds.table_present).any()
    # the eligible features' missing fraction in the prepared mask, on rows that have a table
    names = ds.schema.feature_names
    cols = [names.index(f) for f in miss["eligible_features"]]
    assert abs(ds.missing[ds.table_present][:, cols].mean() - miss["realised_rate"]) < 0.03
    listed = ds.missing_features("train")  # table-absent rows do not list every feature
    assert sorted(names[j] for j in listed) == sorted(miss["eligible_features"])
    counts = mcar.provenance["counts"]
    assert sum(c["availability"]["table_only"] for c in counts.values()) == miss["no_image"]
    assert sum(c["availability"]["image_only"] for c in counts.values()) == miss["no_table"]


def test_mnar_missingness_carries_outcome_signal_and_mar_follows_age(tmp_path):
    # 1,000 patients: the AUC of missingness alone has a standard error of about 0.02 there
    mcar = _synthetic(tmp_path, "mcar", patients=1000, missing_rate=0.3).provenance["synthetic"]
    mnar = _synthetic(tmp_path, "mnar", patients=1000, missing_rate=0.3, missing_mechanism="mnar").provenance["synthetic"]
    assert abs(mcar["oracle"]["missingness_only"] - 0.5) < 0.07
    assert mnar["oracle"]["missingness_only"] > max(0.57, mcar["oracle"]["missingness_only"] + 0.03)
    assert mnar["missingness"]["slope"] > 0
    assert abs(mnar["missingness"]["realised_rate"] - 0.3) < 0.04
    mar = _synthetic(tmp_path, "mar", missing_rate=0.3, missing_mechanism="mar")
    ds = load_prepared(mar.path)
    raw_age = ds.x_cont[:, ds.schema.feature_names.index("age_at_scan")]
    cols = [ds.schema.feature_names.index(f) for f in mar.provenance["synthetic"]["missingness"]["eligible_features"]]
    share = ds.missing[:, cols].mean(axis=1)
    young = raw_age < np.median(raw_age)
    assert share[young].mean() > share[~young].mean() + 0.1  # MAR: driven by the observed age


@pytest.mark.parametrize("options, text", [
    (dict(missing_mechanism="mnr"), "--missing-mechanism mnr: use one of mcar, mar, mnar"),
    (dict(missing_rate=1.5), "--missing-rate 1.5: must be between 0 and 0.9"),
    (dict(no_image_rate=0.6, no_table_rate=0.5), "together they must stay below 1"),
])
def test_bad_missingness_options(tmp_path, options, text):
    with pytest.raises(UserError, match=text):
        _synthetic(tmp_path, "bad", patients=40, **options)
