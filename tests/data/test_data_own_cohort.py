"""A user's own cohort: a table with image paths (DICOM, PNG, NPY), and the one transform path."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest
from data_raw import leftovers
from PIL import Image

from amfmedit.data import load_prepared
from amfmedit.stages.prepare import prepare
from amfmedit.data.schema import ImageInfo
from amfmedit.data.spec import load_spec
from amfmedit.data.transform import load_image, transform_table
from amfmedit.errors import UserError

CT_SMALL = pydicom.data.get_testdata_file("CT_small.dcm")


def _spec(tmp_path, **image):
    """The shipped example spec, pointed at a cohort in ``tmp_path``."""
    spec = load_spec("example-own-cohort")
    spec.image.size = [128, 128]
    for key, value in image.items():
        setattr(spec.image, key, value)
    return spec


def _cohort(folder, images, **extra):
    n = len(images)
    df = pd.DataFrame({
        "patient_id": [f"c{i}" for i in range(n)], "outcome": [i % 2 for i in range(n)],
        "split": (["train", "val", "test"] * n)[:n], "image_path": images,
        "age": [50.0 + 3 * i for i in range(n)], "sex": (["F", "M"] * n)[:n],
        "scan_date": ["2020-01-01"] * n, **extra})
    df.to_csv(folder / "cohort.csv", index=False)
    return df


def _ct_copies(folder):
    """CT_small three times; the last with a different RescaleSlope and RescaleIntercept."""
    (folder / "scans").mkdir(parents=True)
    names = []
    for i in range(3):
        ds = pydicom.dcmread(CT_SMALL)
        if i == 2:
            ds.RescaleSlope, ds.RescaleIntercept = 2, -2048
        ds.save_as(folder / "scans" / f"s{i}.dcm")
        names.append(f"scans/s{i}.dcm")
    return names


def test_ct_pixels_follow_the_window_formula_on_a_real_dicom(tmp_path, data_dir):
    names = _ct_copies(tmp_path)
    _cohort(tmp_path, names)
    ds = load_prepared(prepare(_spec(tmp_path), raw=tmp_path, data_dir=data_dir).path)
    for row, name in enumerate(names):
        dcm = pydicom.dcmread(tmp_path / name)
        hu = dcm.pixel_array.astype(np.float64) * float(dcm.RescaleSlope) + float(dcm.RescaleIntercept)
        expected = np.clip((hu + 125) / 400, 0, 1)
        assert np.abs(ds.images[row, 0] / 255.0 - expected).max() <= 0.5 / 255 + 1e-9
    # the rescale tags are applied: the same stored values give different HU, so other pixels
    assert (ds.images[2] != ds.images[0]).mean() > 0.5


def test_dicom_without_rescale_tags_is_an_error(tmp_path, data_dir):
    names = _ct_copies(tmp_path)
    ds = pydicom.dcmread(tmp_path / names[1])
    del ds.RescaleSlope
    del ds.RescaleIntercept
    ds.save_as(tmp_path / names[1])
    _cohort(tmp_path, names)
    with pytest.raises(UserError, match=r"s1\.dcm: DICOM has no RescaleSlope / RescaleIntercept tag"):
        prepare(_spec(tmp_path), raw=tmp_path, data_dir=data_dir)
    assert leftovers(data_dir) == []


def test_png_and_npy_images_in_gray_and_rgb(tmp_path, data_dir):
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    gray = [rng.integers(0, 256, (24, 24), dtype=np.uint8) for _ in range(3)]
    Image.fromarray(gray[0]).save(tmp_path / "img/a.png")
    np.save(tmp_path / "img/b.npy", gray[1])
    np.save(tmp_path / "img/c.npy", gray[2].astype(np.float32) / 255)  # float in [0, 1]
    _cohort(tmp_path, ["img/a.png", "img/b.npy", "img/c.npy"])
    spec = _spec(tmp_path, modality="gray", size=[24, 24])
    ds = load_prepared(prepare(spec, raw=tmp_path, data_dir=data_dir).path)
    for row in range(3):
        np.testing.assert_array_equal(ds.images[row, 0], gray[row])
    # rgb: a colour PNG keeps its channels; channels = 1 turns it into luma
    Image.fromarray(np.stack([gray[0], gray[1], gray[2]], axis=-1)).save(tmp_path / "img/a.png")
    info = ImageInfo(modality="rgb", channels=3, height=12, width=12)
    rgb = load_image(tmp_path / "img/a.png", info)
    assert rgb.shape == (3, 12, 12)
    np.testing.assert_allclose(rgb.mean(axis=(1, 2)), [g.mean() for g in gray], atol=1.0)
    luma = load_image(tmp_path / "img/a.png", ImageInfo(modality="rgb", channels=1, height=24, width=24))
    expected = 0.299 * gray[0] + 0.587 * gray[1] + 0.114 * gray[2]
    assert np.abs(luma[0].astype(float) - expected).max() <= 0.5 + 1e-6


def test_transform_table_reproduces_prepared_rows_and_handles_new_patients(tmp_path, data_dir):
    names = _ct_copies(tmp_path)
    for i in range(3, 9):
        shutil.copy(tmp_path / names[0], tmp_path / "scans" / f"s{i}.dcm")
        names.append(f"scans/s{i}.dcm")
    _cohort(tmp_path, names, bmi=[22.0, np.nan, 30.5, 27.0, np.nan, 24.0, 31.0, 26.5, 29.0])
    result = prepare(_spec(tmp_path), raw=tmp_path, data_dir=data_dir)
    ds = load_prepared(result.path)
    x_cont, x_cat, missing = transform_table(ds.schema, pd.read_csv(tmp_path / "cohort.csv"))
    np.testing.assert_array_equal(x_cont, ds.x_cont)
    np.testing.assert_array_equal(x_cat, ds.x_cat)
    np.testing.assert_array_equal(missing, ds.missing)
    # a new patient: unseen category -> code 0, missing bmi -> the train median (z-scored)
    new = pd.DataFrame({"patient_id": ["new"], "age": [61.0], "sex": ["X"], "bmi": [np.nan]})
    x_cont, x_cat, missing = transform_table(ds.schema, new)
    bmi = ds.schema.feature("bmi")
    assert x_cont[0, ds.schema.feature_names.index("bmi")] == pytest.approx((bmi.median - bmi.mean) / bmi.std)
    assert x_cat.tolist() == [[0]] and missing[0].tolist() == [False, True, False]
    assert ds.schema.image_column == "image_path"
    np.testing.assert_array_equal(load_image(tmp_path / names[4], ds.schema.image), ds.images[4])
    with pytest.raises(UserError, match="missing column 'bmi'"):
        transform_table(ds.schema, new.drop(columns=["bmi"]), where="new.csv")


def test_random_split_when_the_table_has_none(tmp_path, data_dir):
    (tmp_path / "img").mkdir()
    images = []
    for i in range(40):
        np.save(tmp_path / f"img/{i}.npy", np.full((8, 8), i, np.uint8))
        images.append(f"img/{i}.npy")
    df = _cohort(tmp_path, images)
    spec = _spec(tmp_path, modality="gray", size=[8, 8])
    spec.table.split = None
    spec.table.exclude = spec.table.exclude + ["split"]
    ds = load_prepared(prepare(spec, raw=tmp_path / "cohort.csv", data_dir=data_dir).path)
    counts = {s: int((ds.split == s).sum()) for s in ("train", "val", "test")}
    assert counts == {"train": 28, "val": 6, "test": 6}  # 0.7 / 0.15 / 0.15, stratified
    for s in ("train", "val", "test"):  # stratify = true in the example spec
        assert ds.labels[ds.split == s].mean() == pytest.approx(0.5)
    assert ds.images[:, 0, 0, 0].tolist() == list(range(40))  # rows stay in table order
    assert (ds.split != df["split"].to_numpy()).any()  # the table's split column was not used


def test_parquet_table(tmp_path, data_dir):
    (tmp_path / "img").mkdir()
    for i in range(3):
        np.save(tmp_path / f"img/{i}.npy", np.full((8, 8), 10 * i, np.uint8))
    df = _cohort(tmp_path, [f"img/{i}.npy" for i in range(3)])
    df.to_parquet(tmp_path / "cohort.parquet", index=False)
    (tmp_path / "cohort.csv").unlink()
    spec = _spec(tmp_path, modality="gray", size=[8, 8])
    spec.table.file = "cohort.parquet"
    ds = load_prepared(prepare(spec, raw=tmp_path, data_dir=data_dir).path)
    assert ds.ids.tolist() == ["c0", "c1", "c2"] and ds.images[:, 0, 0, 0].tolist() == [0, 10, 20]
    assert ds.schema.feature("sex").categories == ["F"]  # vocabulary from the train row only
    assert ds.x_cat[:, 0].tolist() == [1, 0, 1]  # "M" appears only outside train: unseen -> 0
