"""Bad input: one line naming the file, column or key and the value, and nothing written."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from data_raw import leftovers, ol3i_spec, write_ol3i

from amfmedit.stages.prepare import prepare  # the stage: the spec task's outcome coding (binary: 0, 1)
from amfmedit.errors import UserError


def _edit_table(raw, fn):
    df = pd.read_csv(raw / "clinical_data.csv", dtype={"anon_id": str})
    df = fn(df)
    df.to_csv(raw / "clinical_data.csv", index=False)


def _set(column, row, value):
    def fn(df):
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
        return df
    return fn


def _h5(fn):
    def edit(raw):
        with h5py.File(raw / "l3_slices.h5", "a") as f:
            fn(f)
    return edit


def _replace(key, data):
    def fn(f):
        del f[key]
        f.create_dataset(key, data=data)
    return fn


CASES = {
    "misspelt label column": (
        None, dict(label="lable_1y"), r"^clinical_data\.csv: missing column 'lable_1y'; did you mean label_1y"),
    "missing split column": (
        lambda raw: _edit_table(raw, lambda df: df.drop(columns=["set_1y"])), {},
        r"^clinical_data\.csv: missing column 'set_1y'; did you mean set_5y\?"),
    "misspelt feature in the include list": (
        None, dict(features=["age_at_scan", "bmii"]), r"missing feature column 'bmii'; did you mean bmi\?"),
    "id without an image": (
        _h5(lambda f: f.__delitem__("p004")), {},
        r"^clinical_data\.csv: id 'p004' has no image \(l3_slices\.h5 has no dataset 'p004'; 1 ids without images\)"),
    "image without a row": (
        _h5(lambda f: f.create_dataset("stray", data=np.zeros((16, 16), np.int16))), {},
        r"^l3_slices\.h5: image 'stray' has no row in clinical_data\.csv \(1 such images\)"),
    "unreadable image": (
        _h5(_replace("p007", np.array(b"not an image"))), {},
        r"^l3_slices\.h5\['p007'\]: expected a numeric array of HU values"),
    "3-D slice": (
        _h5(_replace("p007", np.zeros((2, 16, 16), np.int16))), {},
        r"^l3_slices\.h5\['p007'\]: a CT slice must be 2-D \(H, W\), got shape \(2, 16, 16\)"),
    "slice of the wrong size": (
        _h5(_replace("p009", np.zeros((16, 12), np.int16))), {},
        r"^l3_slices\.h5\['p009'\]: image shape \(16, 12\) differs from the expected raw size \[16, 16\]"),
    "NaN label": (
        lambda raw: _edit_table(raw, _set("label_1y", 5, np.nan)), {},
        r"^clinical_data\.csv: column 'label_1y' has a missing \(NaN\) label at id 'p005' \(1 row\)"),
    "unknown label": (
        lambda raw: _edit_table(raw, _set("label_1y", 6, 2)), {},
        r"^clinical_data\.csv: column 'label_1y' has the unknown label '2' at id 'p006' \(1 row\); "
        r"labels must be one of 0, 1"),
    "split value outside train/val/test": (
        lambda raw: _edit_table(raw, _set("set_1y", 8, "validation")), {},
        r"^clinical_data\.csv: column 'set_1y' has the split value 'validation' at id 'p008' \(1 row\); "
        r"allowed values are train, val, test"),
    "empty split": (
        lambda raw: _edit_table(raw, lambda df: df.assign(set_1y=df["set_1y"].replace("test", "val"))), {},
        r"^clinical_data\.csv: split 'test' is empty \(train 18, val 12, test 0\)"),
    "text in a numeric column": (
        lambda raw: _edit_table(raw, _set("bmi", 2, "obese")), {},
        r"^clinical_data\.csv: column 'bmi' is numeric but has text 'obese' at id 'p002' \(1 such values\)"),
    "duplicate id": (
        lambda raw: _edit_table(raw, _set("anon_id", 3, "p002")), {},
        r"^clinical_data\.csv: id 'p002' occurs 2 times in column 'anon_id'; ids must be unique"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_names_the_culprit_and_writes_nothing(case, tmp_path, data_dir):
    edit, table_changes, message = CASES[case]
    raw = tmp_path / "raw"
    write_ol3i(raw)
    if edit is not None:
        edit(raw)
    with pytest.raises(UserError, match=message) as err:
        prepare(ol3i_spec(**table_changes), raw=raw, data_dir=data_dir)
    assert "\n" not in str(err.value)
    assert leftovers(data_dir) == []


def test_a_failure_keeps_the_existing_dataset(tmp_path, data_dir):
    raw = tmp_path / "raw"
    write_ol3i(raw)
    good = prepare(ol3i_spec(), raw=raw, data_dir=data_dir)
    before = {p.name: p.read_bytes() for p in good.path.iterdir()}
    _edit_table(raw, _set("bmi", 2, "obese"))
    with pytest.raises(UserError, match="has text 'obese'"):
        prepare(ol3i_spec(), raw=raw, data_dir=data_dir, force=True)
    assert {p.name: p.read_bytes() for p in good.path.iterdir()} == before
    assert leftovers(data_dir) == sorted(["ol3i", *(f"ol3i/{n}" for n in before)])


def test_missing_raw_folder_and_missing_files(tmp_path, data_dir):
    with pytest.raises(UserError, match=r"nowhere: raw data not found; pass --raw PATH"):
        prepare(ol3i_spec(), raw=tmp_path / "nowhere", data_dir=data_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"none of clinical_data\.csv, OL3I_tabular_info_all_423\.csv found"):
        prepare(ol3i_spec(), raw=tmp_path / "empty", data_dir=data_dir)
    assert leftovers(data_dir) == []


def test_unreadable_png_in_an_own_cohort(tmp_path, data_dir):
    from amfmedit.data.spec import load_spec

    (tmp_path / "img").mkdir()
    for i in range(3):
        np.save(tmp_path / f"img/{i}.npy", np.zeros((8, 8), np.uint8))
    (tmp_path / "img/bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    pd.DataFrame({"patient_id": ["a", "b", "c", "d"], "outcome": [0, 1, 0, 1],
                  "split": ["train", "val", "test", "train"],
                  "image_path": ["img/0.npy", "img/1.npy", "img/2.npy", "img/bad.png"],
                  "age": [1.0, 2.0, 3.0, 4.0]}).to_csv(tmp_path / "cohort.csv", index=False)
    spec = load_spec("example-own-cohort")
    spec.image.modality, spec.image.size = "gray", [8, 8]
    spec.table.categorical = []
    with pytest.raises(UserError, match=r"bad\.png: cannot read this image"):
        prepare(spec, raw=tmp_path, data_dir=data_dir)
    (tmp_path / "img/bad.png").unlink()
    with pytest.raises(UserError, match=r"id 'd' has no image \(.*img/bad\.png; 1 ids without images\)"):
        prepare(spec, raw=tmp_path, data_dir=data_dir)
    assert leftovers(data_dir) == []


@pytest.mark.parametrize("name,options,message", [
    ("synthetic-dvm", dict(classes=99), r"--classes 99: synthetic DVM has between 2 and 30 car models"),
    ("synthetic-ol3i", dict(features=5), r"--features 5: synthetic OL3I needs at least 14 features"),
    ("synthetic-ol3i", dict(prevalence=0.9), r"--prevalence 0.9: must be between 0 and 0.40"),
    ("synthetic-ol3i", dict(patients=5), r"--patients 5: use at least 20 patients"),
])
def test_bad_generator_options_write_no_raw_files(tmp_path, data_dir, name, options, message):
    from amfmedit.data.spec import load_spec

    with pytest.raises(UserError, match=message):
        prepare(load_spec(name), raw=tmp_path / "raw", data_dir=data_dir, synthetic=options)
    assert not (tmp_path / "raw").exists() and leftovers(data_dir) == []
