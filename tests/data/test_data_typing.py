"""Feature typing as a prepare option (issue 24): ``--categorical none`` feeds every OL3I feature as a
continuous token, as the authors' code does; ``--categorical a,b`` names the categorical columns. The
shipped typing is kept without it, a text column is refused rather than read as missing, provenance
records the option, and ``--like`` inherits the training dataset's typing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from data_raw import ol3i_spec, write_ol3i
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.data import load_prepared
from amfmedit.data.prepare import apply_overrides
from amfmedit.errors import UserError
from amfmedit.stages.prepare import prepare, prepare_like


@pytest.fixture
def release(tmp_path):
    df, _ = write_ol3i(tmp_path / "raw")
    return tmp_path / "raw", df


def _prov(path):
    return json.loads((path / "provenance.json").read_text())


def _z(raw: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Median imputation and z-score with the train rows' statistics (Appendix A.1)."""
    median = np.nanmedian(raw[train])
    filled = np.where(np.isnan(raw), median, raw)
    return (filled - filled[train].mean()) / filled[train].std()


def test_categorical_none_makes_gender_and_smoker_continuous_features(release, data_dir):
    raw, df = release
    ds = load_prepared(prepare(apply_overrides(ol3i_spec(), categorical="none"), raw=raw, data_dir=data_dir).path)
    names = ds.schema.feature_names
    assert names[: ds.schema.n_cont] == ["age_at_scan", "gender", "smoker", "bmi", "CCI", "C09"]
    assert ds.schema.categorical == [] and ds.x_cat.shape == (30, 0)
    train = (df["set_1y"] == "train").to_numpy()
    for col in ("gender", "smoker"):  # 0/1, z-scored like the others; smoker's blanks take the train median
        np.testing.assert_allclose(ds.x_cont[:, names.index(col)], _z(df[col].to_numpy(float), train),
                                   rtol=1e-5, atol=1e-6)
    assert ds.schema.feature("smoker").median == np.nanmedian(df["smoker"].to_numpy(float)[train])
    prov = _prov(ds.root)
    assert prov["overrides"]["--categorical"] == "none"
    assert prov["spec"]["table"]["categorical"] == [] and prov["spec"]["table"]["categorical_dtypes"] == []
    assert prov["features"] == {"continuous": 6, "categorical": 0}


def test_the_option_names_the_categorical_columns_and_the_shipped_typing_stays_without_it(release, data_dir):
    raw, _ = release
    ds = load_prepared(prepare(ol3i_spec(), raw=raw, data_dir=data_dir).path)
    assert [f.name for f in ds.schema.categorical] == ["gender", "smoker"] and ds.x_cat.shape == (30, 2)
    assert "--categorical" not in _prov(ds.root)["overrides"]
    one = apply_overrides(ol3i_spec(), categorical="smoker", name="ol3i-smoker")
    ds = load_prepared(prepare(one, raw=raw, data_dir=data_dir).path)
    assert [f.name for f in ds.schema.categorical] == ["smoker"] and "gender" in ds.schema.feature_names[:5]
    assert _prov(ds.root)["overrides"]["--categorical"] == "smoker"


def test_a_bool_column_with_blanks_becomes_0_and_1(tmp_path, data_dir):
    raw = tmp_path / "raw"
    df, _ = write_ol3i(raw)
    smoker = [None if pd.isna(v) else bool(v) for v in df["smoker"]]  # written True / False / blank
    df.assign(smoker=smoker).to_csv(raw / "clinical_data.csv", index=False)
    assert pd.read_csv(raw / "clinical_data.csv")["smoker"].dtype == object  # pandas reads it as objects
    ds = load_prepared(prepare(apply_overrides(ol3i_spec(), categorical="none"), raw=raw, data_dir=data_dir).path)
    train = (df["set_1y"] == "train").to_numpy()
    np.testing.assert_allclose(ds.x_cont[:, ds.schema.feature_names.index("smoker")],
                               _z(df["smoker"].to_numpy(float), train), rtol=1e-5, atol=1e-6)


def test_a_text_column_asked_to_be_continuous_is_refused_in_one_line(tmp_path):
    raw = tmp_path / "raw"
    df, _ = write_ol3i(raw)
    df.assign(gender=np.where(df["gender"] == 1, "M", "F")).to_csv(raw / "clinical_data.csv", index=False)
    data = tmp_path / "data"
    res = CliRunner().invoke(app, ["prepare", "--data", "ol3i", "--raw", str(raw), "--data-dir", str(data),
                                   "--image-size", "16", "--categorical", "none", "--quiet"])
    assert res.exit_code == 2 and res.output.strip().count("\n") == 0, res.output
    assert "column 'gender' holds text ('F', 'M')" in res.output and "--categorical none" in res.output
    assert not data.exists() or not any(data.iterdir())  # nothing half-written
    # the spec's key path (categorical_dtypes without "string") refuses it in the same words
    spec = ol3i_spec(categorical=[], categorical_dtypes=[])
    with pytest.raises(UserError, match="column 'gender' holds text \\('F', 'M'\\)"):
        prepare(spec, raw=raw, data_dir=data)
    for typed, why in [("label_1y", "'label_1y' is not a feature"), ("gender,,smoker", "separated by commas"),
                       ("smoker,smoker", "'smoker' is named twice")]:
        with pytest.raises(UserError, match=why):
            prepare(apply_overrides(ol3i_spec(), categorical=typed), raw=raw, data_dir=data)


def test_like_inherits_the_training_typing_and_refuses_the_option(tmp_path):
    data = tmp_path / "data"
    train_df, _ = write_ol3i(tmp_path / "raw")
    prepare(apply_overrides(ol3i_spec(), categorical="none"), raw=tmp_path / "raw", data_dir=data)
    site_df, _ = write_ol3i(tmp_path / "site", n=20)
    # the external spec still lists gender and smoker as categorical: the training schema decides
    ext = prepare_like(apply_overrides(ol3i_spec(), name="site-b"), "ol3i", raw=tmp_path / "site", data_dir=data)
    ds, train = load_prepared(ext.path), load_prepared(data / "ol3i")
    assert ds.schema.feature_names == train.schema.feature_names and ds.schema.categorical == []
    f = train.schema.feature("gender")
    np.testing.assert_allclose(ds.x_cont[:, ds.schema.feature_names.index("gender")],
                               (site_df["gender"].to_numpy(float) - f.mean) / f.std, rtol=1e-5, atol=1e-6)
    res = CliRunner().invoke(app, ["prepare", "--data", "ol3i", "--raw", str(tmp_path / "site"), "--like", "ol3i",
                                   "--name", "site-c", "--data-dir", str(data), "--categorical", "gender", "--quiet"])
    assert res.exit_code == 2 and res.output.strip().count("\n") == 0, res.output
    assert "--categorical gender: an external cohort takes the training dataset's feature typing" in res.output
    assert not (data / "site-c").exists()
