"""Mixed image sources in one CT cohort: DICOM and .npy in HU windowed, 8-bit PNG/JPG taken as
already windowed when the spec says image.png = "windowed" (refused, naming the key, otherwise),
the rule applied per file for provenance, and DICOM pixel spacing resampled to a common spacing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from amfmedit.data.schema import ImageInfo
from amfmedit.data.spec import spec_from_dict
from amfmedit.data.transform import ImageOptions, image_rule, load_image, read_image
from amfmedit.errors import UserError

WINDOW = (-125.0, 275.0)


def write_dicom(path, stored: np.ndarray, *, intercept=-1024.0, slope=1.0, spacing=(0.7, 0.7)):
    """A minimal CT DICOM file (int16 pixels, rescale tags, optional PixelSpacing)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = intercept, slope
    if spacing is not None:
        ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]
    ds.PixelData = np.ascontiguousarray(stored, dtype="<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def windowed(hu) -> np.ndarray:
    return np.rint(np.clip((np.asarray(hu, np.float64) - WINDOW[0]) / (WINDOW[1] - WINDOW[0]), 0, 1) * 255).astype(np.uint8)


def _spec(**image):
    return spec_from_dict({
        "name": "mixed", "reader": "table", "task": "binary",
        "table": {"file": "cohort.csv", "id": "id", "label": "y"},
        "image": {"source": "column", "column": "path", "modality": "ct", "size": [16, 16], **image},
    }, source="mixed.toml")


@pytest.fixture
def cohort(tmp_path):
    """One patient per source: .npy in HU, a windowed 8-bit PNG, a JPG, a DICOM (stored + intercept)."""
    rng = np.random.default_rng(0)
    hu = rng.uniform(-400, 600, (16, 16)).astype(np.float32)
    np.save(tmp_path / "a.npy", hu)
    png = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(png, mode="L").save(tmp_path / "b.png")
    jpg = np.full((16, 16), 77, np.uint8)
    Image.fromarray(jpg, mode="L").save(tmp_path / "c.jpg", quality=100)
    stored = rng.integers(0, 2000, (16, 16)).astype(np.int16)
    write_dicom(tmp_path / "d.dcm", stored)
    return tmp_path, {"a.npy": windowed(hu), "b.png": png, "c.jpg": jpg, "d.dcm": windowed(stored - 1024.0)}


def test_each_source_of_a_mixed_ct_cohort_loads_to_the_expected_uint8(cohort):
    folder, want = cohort
    spec = _spec(png="windowed")
    assert spec.image.png == "windowed"
    info = ImageInfo(modality="ct", channels=1, height=16, width=16, window=WINDOW)
    for name, expected in want.items():
        got = load_image(folder / name, info, png=spec.image.png)
        assert got.shape == (1, 16, 16) and got.dtype == np.uint8
        if name == "c.jpg":  # lossy: within a grey level or two of the written value
            assert np.abs(got[0].astype(int) - expected).max() <= 2
        else:
            np.testing.assert_array_equal(got[0], expected, err_msg=name)
        # the reader's path (the spec's rules) gives the same pixels as load_image (predict's path)
        from amfmedit.data.transform import image_to_uint8

        np.testing.assert_array_equal(image_to_uint8(read_image(folder / name, spec.image), info), got)
    rules = Counter(image_rule(folder / n, spec.image) for n in want)
    assert rules == {"npy-hu": 1, "png-windowed": 2, "dicom-hu": 1}


def test_png_in_a_ct_cohort_without_the_key_is_refused_naming_it(cohort):
    folder, _ = cohort
    spec = _spec()
    info = ImageInfo(modality="ct", channels=1, height=16, width=16, window=WINDOW)
    for call in (lambda: load_image(folder / "b.png", info), lambda: read_image(folder / "b.png", spec.image),
                 lambda: image_rule(folder / "b.png", spec.image)):
        with pytest.raises(UserError, match=r'b\.png: PNG/JPG files hold no HU values; .*set image\.png = "windowed"'
                           ) as err:
            call()
        assert "\n" not in str(err.value)
    np.testing.assert_array_equal(load_image(folder / "a.npy", info)[0], cohort[1]["a.npy"])  # HU files still load


def test_sixteen_bit_png_is_not_taken_as_windowed(tmp_path):
    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(tmp_path / "x.png")
    with pytest.raises(UserError, match="16-bit PNG is not an 8-bit windowed image"):
        read_image(tmp_path / "x.png", _spec(png="windowed").image)


def _square(n: int, side: int) -> np.ndarray:
    """Stored values: air (0 -> -1024 HU) with a centred square of soft tissue (1074 -> 50 HU)."""
    a = np.zeros((n, n), np.int16)
    lo = (n - side) // 2
    a[lo:lo + side, lo:lo + side] = 1074
    return a


def test_pixel_spacing_is_resampled_to_a_common_spacing(tmp_path):
    # the same 16 mm square seen by two scanners: 32 px at 0.5 mm and 16 px at 1.0 mm
    fine = write_dicom(tmp_path / "fine.dcm", _square(64, 32), spacing=(0.5, 0.5))  # 32 mm field
    coarse = write_dicom(tmp_path / "coarse.dcm", _square(48, 16), spacing=(1.0, 1.0))  # 48 mm field
    np.save(tmp_path / "plain.npy", np.zeros((20, 20), np.float32))
    spec = _spec(spacing_mm=0.8, field_mm=[40.0, 40.0])
    a, b = read_image(fine, spec.image), read_image(coarse, spec.image)
    assert a.shape == b.shape == (50, 50)  # 40 mm at 0.8 mm per pixel
    for x in (a, b):
        inside = (x > (50 - 1024) / 2) & (x != np.float32(WINDOW[0]))  # half-way from air to the square; not the pad
        assert inside.sum() == pytest.approx(20 * 20, rel=0.15)  # 16 mm = 20 px of 0.8 mm a side
        rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
        assert abs((rows[0] + rows[-1]) / 2 - 24.5) <= 1 and abs((cols[0] + cols[-1]) / 2 - 24.5) <= 1  # centred
    assert np.abs(windowed(a).astype(int) - windowed(b).astype(int)).mean() < 10  # same anatomy, same pixels
    assert (a[:5] == -1024).all() and (a[:, -5:] == -1024).all()  # the fine scan's 32 mm field padded with air
    assert Counter(image_rule(p, spec.image) for p in (fine, coarse, tmp_path / "plain.npy")) == \
        {"dicom-hu+resampled": 2, "npy-hu+no-spacing": 1}
    assert read_image(tmp_path / "plain.npy", spec.image).shape == (20, 20)  # no spacing: left as it is
    without = read_image(fine, _spec().image)
    assert without.shape == (64, 64)  # no spacing_mm: the slice as stored
    # spacing_mm without field_mm keeps a 512-pixel field
    assert read_image(coarse, _spec(spacing_mm=0.8).image).shape == (512, 512)
    no_tag = write_dicom(tmp_path / "notag.dcm", _square(16, 8), spacing=None)
    assert read_image(no_tag, _spec().image).shape == (16, 16)  # without spacing_mm the tag is not needed


def test_a_dicom_without_pixel_spacing_is_refused_where_the_cohort_resamples(cohort, tmp_path):
    """Resizing it alone would put its anatomy on other pixels than every other slice's."""
    import pandas as pd

    from amfmedit.stages.prepare import prepare

    folder, _ = cohort
    spec = _spec(spacing_mm=0.8, field_mm=[16.0, 16.0])
    no_tag = write_dicom(folder / "notag.dcm", _square(16, 8), spacing=None)
    message = (r"notag\.dcm: DICOM has no PixelSpacing tag, but this cohort resamples DICOM slices to "
               r"image\.spacing_mm = 0\.8 mm; add the tag .* or drop image\.spacing_mm from the data spec$")
    for call in (lambda: read_image(no_tag, spec.image), lambda: image_rule(no_tag, spec.image)):
        with pytest.raises(UserError, match=message):
            call()
    names = ["d.dcm", "a.npy"] * 5 + ["notag.dcm", "d.dcm"]
    pd.DataFrame({"id": [f"p{i}" for i in range(len(names))], "y": [i % 2 for i in range(len(names))],
                  "split": ["train"] * 6 + ["val"] * 3 + ["test"] * 3, "path": names,
                  "age": np.arange(len(names), dtype=float)}).to_csv(folder / "cohort.csv", index=False)
    spec.table.split = "split"
    with pytest.raises(UserError, match=message):
        prepare(spec, raw=folder, data_dir=tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()  # nothing left: no dataset, no staging folder, no lock


def test_options_come_from_the_spec_or_the_schema():
    opts = ImageOptions.of(_spec(png="windowed", spacing_mm=0.8, field_mm=[40.0, 30.0]).image)
    assert (opts.png, opts.spacing_mm, opts.field_px()) == ("windowed", 0.8, (50, 38))
    info = ImageInfo(modality="ct", channels=1, height=16, width=16, window=WINDOW)
    assert ImageOptions.of(info) == ImageOptions(modality="ct", window=WINDOW)  # a schema without the new keys
    assert ImageOptions.of(info, png="windowed").png == "windowed"


@pytest.mark.parametrize("image, message", [
    ({"png": "yes"}, r"key 'image\.png' must be 'error' or 'windowed', got 'yes'"),
    ({"png": "windowed", "modality": "gray"}, r"key 'image\.png' applies to CT cohorts only"),
    ({"spacing_mm": 0.8, "modality": "gray"}, r"key 'image\.spacing_mm' applies to CT cohorts only"),
    ({"spacing_mm": -1.0}, r"key 'image\.spacing_mm' must be a pixel spacing in mm between 0 and 20"),
    ({"field_mm": [300.0, 300.0]}, r"key 'image\.field_mm' needs image\.spacing_mm"),
    ({"spacing_mm": 0.8, "field_mm": [300.0]}, r"key 'image\.field_mm' must be \[height, width\] in mm"),
])
def test_bad_image_keys_name_the_key(image, message):
    with pytest.raises(UserError, match=message) as err:
        _spec(**image)
    assert str(err.value).startswith("mixed.toml:") and "\n" not in str(err.value)


def test_prepare_a_mixed_ct_cohort_records_each_files_rule_and_the_schema_keeps_it(cohort, tmp_path):
    """Through `prepare` itself: PNG, JPG, .npy in HU and DICOM side by side in one CT table."""
    import json

    import pandas as pd

    from amfmedit.data import load_prepared
    from amfmedit.stages.prepare import prepare

    folder, want = cohort
    names = list(want) * 3  # 12 rows so that every split has rows of both classes
    pd.DataFrame({"id": [f"p{i}" for i in range(len(names))], "y": [i % 2 for i in range(len(names))],
                  "split": (["train"] * 6 + ["val"] * 3 + ["test"] * 3), "path": names,
                  "age": np.arange(len(names), dtype=float)}).to_csv(folder / "cohort.csv", index=False)
    spec = _spec(png="windowed")
    spec.table.split = "split"
    ds = load_prepared(prepare(spec, raw=folder, data_dir=tmp_path / "prepared").path)
    prov = json.loads((ds.root / "provenance.json").read_text())
    assert prov["image_rules"] == {"npy-hu": 3, "png-windowed": 6, "dicom-hu": 3}
    np.testing.assert_array_equal(ds.images[1, 0], want["b.png"])  # the PNG row, as already windowed
    np.testing.assert_array_equal(ds.images[0, 0], want["a.npy"])
    assert ds.schema.image.png == "windowed"  # predict reads a new patient's PNG the same way
    new = load_image(folder / "b.png", ds.schema.image)
    np.testing.assert_array_equal(new, ds.images[1])
