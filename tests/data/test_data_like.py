"""``prepare --like``: another cohort through the training dataset's frozen pipeline, and the one-line refusals
of what does not fit (a missing feature, a label coded differently, another image modality, an unknown
training dataset)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.data import load_prepared
from amfmedit.data.like import check_lines, prepare_like, same_pipeline
from amfmedit.data.readers import read_table_file
from amfmedit.data.spec import load_spec
from amfmedit.data.transform import transform_table
from amfmedit.errors import UserError

SPEC = """
name = "site-c"
reader = "ol3i"
task = "binary"
[table]
file = "clinical_data.csv"
id = "anon_id"
label = "label_1y"
split = "set_1y"
exclude = ["label_1y", "label_5y", "set_1y", "set_5y"]
categorical = ["gender", "smoker"]
keep = ["sex"]
{label_values}
[image]
source = "hdf5"
file = "l3_slices.h5"
modality = "{modality}"
size = [32, 32]
"""


@pytest.fixture(scope="module")
def shifted(tiny_ol3i, tmp_path_factory):
    """A synthetic second site prepared like tiny_ol3i (raw files kept), and its raw folder."""
    root = tmp_path_factory.mktemp("like")
    spec = dataclasses.replace(load_spec("synthetic-ol3i"), name="site-b")
    res = prepare_like(spec, str(tiny_ol3i.path), raw=root / "raw", data_dir=root / "data",
                       synthetic={"patients": 80, "seed": 5, "prevalence": 0.3, "age_shift": 10, "hu_scale": 1.2})
    return res, root


def _spec(tmp_path, *, modality="ct", label_values=""):
    path = tmp_path / "site.toml"
    path.write_text(SPEC.format(modality=modality, label_values=label_values))
    return load_spec(str(path))


def test_the_training_pipeline_is_applied_never_refitted(shifted, tiny_ol3i):
    res, root = shifted
    ext, train = load_prepared(res.path), load_prepared(tiny_ol3i)
    assert same_pipeline(train.schema, ext.schema) and ext.schema.name == "site-b"
    df = read_table_file(root / "raw" / "clinical_data.csv", id_column="anon_id").set_index("anon_id").loc[ext.ids]
    x_cont, x_cat, missing = transform_table(train.schema, df.reset_index())
    assert np.array_equal(x_cont, ext.x_cont) and np.array_equal(x_cat, ext.x_cat)
    assert np.array_equal(missing, ext.missing)
    assert ext.images.shape[1:] == train.images.shape[1:]
    age = train.schema.feature("age_at_scan")
    shift = (ext.x_cont[:, 0].mean() - train.x_cont[:, 0].mean()) * age.std
    assert train.schema.feature_names[0] == "age_at_scan" and shift > 4  # the tilted case-mix, in years
    assert ext.labels.mean() > train.labels.mean()  # another prevalence
    prov = res.provenance
    assert prov["like"]["dataset"] == train.name and set(prov["counts"]) == {"train", "val", "test"}
    assert prov["synthetic"]["options"]["features"] == 40  # the training cohort's feature set, by default


def test_what_fits_but_differs_is_reported(shifted):
    checks = shifted[0].provenance["checks"]
    assert "sex" not in checks["ignored_columns"] and "label_5y" not in checks["ignored_columns"]
    assert isinstance(checks["far_outside_training_range"], dict)
    assert all(isinstance(line, str) and "\n" not in line for line in check_lines(checks))


def test_a_real_reader_and_label_values_in_the_training_order(shifted, tiny_ol3i, tmp_path):
    raw = shifted[1] / "raw"
    recoded = tmp_path / "raw"
    recoded.mkdir()
    (recoded / "l3_slices.h5").symlink_to(raw / "l3_slices.h5")
    df = pd.read_csv(raw / "clinical_data.csv")
    df["label_1y"] = np.where(df["label_1y"] == 1, "yes", "no")
    df.to_csv(recoded / "clinical_data.csv", index=False)
    with pytest.raises(UserError, match=r"label column 'label_1y' holds .*'no'.*coded differently"):
        prepare_like(_spec(tmp_path), str(tiny_ol3i.path), raw=recoded, data_dir=tmp_path / "d")
    ok = prepare_like(_spec(tmp_path, label_values='label_values = ["no", "yes"]'), str(tiny_ol3i.path),
                      raw=recoded, data_dir=tmp_path / "d")
    assert np.array_equal(load_prepared(ok.path).labels, load_prepared(shifted[0].path).labels)


def test_one_line_refusals(shifted, tiny_ol3i, tmp_path):
    raw = shifted[1] / "raw"
    cut = tmp_path / "raw"
    cut.mkdir()
    (cut / "l3_slices.h5").symlink_to(raw / "l3_slices.h5")
    pd.read_csv(raw / "clinical_data.csv").drop(columns=["bmi"]).to_csv(cut / "clinical_data.csv", index=False)
    with pytest.raises(UserError, match=r"missing column 'bmi'") as exc:
        prepare_like(_spec(tmp_path), str(tiny_ol3i.path), raw=cut, data_dir=tmp_path / "d")
    assert "\n" not in str(exc.value)
    with pytest.raises(UserError, match=r"image.modality 'gray'.*training modality"):
        prepare_like(_spec(tmp_path, modality="gray"), str(tiny_ol3i.path), raw=raw, data_dir=tmp_path / "d")
    assert not (tmp_path / "d" / "site-c").exists()  # nothing half-written
    res = CliRunner().invoke(app, ["prepare", "--data", str(tmp_path / "site.toml"), "--raw", str(raw), "--like",
                                   "nope", "--data-dir", str(tiny_ol3i.data_dir)])
    assert res.exit_code == 2 and "--like nope: no prepared dataset" in res.output
    assert tiny_ol3i.name in res.output and res.output.strip().count("\n") == 0
