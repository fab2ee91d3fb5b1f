"""The one transform path from raw rows and raw images to model input.

``prepare`` fits statistics on the train split and then calls these functions on every row;
``predict`` calls the same functions on new patients with the statistics from
``schema.json``, so a new row is transformed exactly as the training rows were.

Tabular (Appendix A.1): continuous features are median-imputed and z-scored with train-split
statistics; categorical features become integer codes (0 = missing or unseen, ``i`` =
``categories[i - 1]``); a boolean mask records what was missing before imputation.

Images: CT slices are windowed, ``pixel = clip((HU - low) / (high - low), 0, 1)`` (default
window [-125, 275] HU), RGB/gray photos are scaled to [0, 1]; both are resized with
antialiased bilinear interpolation and stored as ``round(pixel * 255)`` in uint8.

Per file in a CT cohort (:func:`image_rule` names the rule applied, for provenance): DICOM
(HU through RescaleSlope/Intercept) and ``.npy`` (HU) are windowed; 8-bit PNG/JPG are refused
unless the spec says ``image.png = "windowed"``, then they are taken as intensities already
windowed to the spec's window (pixel 0 = low, 255 = high). With ``image.spacing_mm`` a DICOM
slice is resampled from its PixelSpacing to that spacing and centre-cropped or padded (with
air, -1024 HU) to ``image.field_mm`` before the resize to ``image.size`` (a DICOM without
PixelSpacing is refused: its scale is unknown); file types without a pixel spacing (``.npy``,
PNG) are left as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from amfmedit.data.image_options import ImageOptions, rules_of
from amfmedit.data.schema import Feature, ImageInfo, Schema
from amfmedit.errors import UserError, close_matches

# ---------------------------------------------------------------------------------------------
# tabular


def category_key(value) -> str | None:
    """Canonical text of a categorical value; ``None`` when missing.

    Integral numbers print without a decimal point so that ``1``, ``1.0`` and ``"1"`` (the same
    value read from CSVs with and without missing entries) are one category.
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value).strip()
    return text or None


def _category_keys(column) -> np.ndarray:
    """(n,) object array of :func:`category_key` values for a pandas Series."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column.dtype):
        return np.array([category_key(v) if not pd.isna(v) else None for v in column], dtype=object)
    if pd.api.types.is_numeric_dtype(column.dtype):
        arr = column.to_numpy(dtype=np.float64, na_value=np.nan)
        out = np.empty(len(arr), dtype=object)
        finite = ~np.isnan(arr)
        integral = finite & (np.mod(arr, 1.0) == 0)
        out[:] = None
        out[integral] = arr[integral].astype(np.int64).astype(str)
        other = finite & ~integral
        out[other] = [repr(float(v)) for v in arr[other]]
        return out
    return np.array([None if pd.isna(v) else category_key(v) for v in column], dtype=object)


def sort_categories(keys) -> list[str]:
    """Vocabulary order: numbers numerically, then text alphabetically."""
    def order(k: str):
        try:
            return (0, float(k), k)
        except ValueError:
            return (1, 0.0, k)

    return sorted(set(keys), key=order)


@dataclass
class ParsedTable:
    """Raw feature values parsed but not yet imputed or scaled (one row per sample)."""

    cont: np.ndarray  # (N, n_cont) float64, NaN where missing
    cat: np.ndarray  # (N, n_cat) object, canonical text or None where missing
    ids: np.ndarray | None = None  # (N,) row ids for error messages (None: rows are numbered)

    @property
    def missing(self) -> np.ndarray:
        """(N, n_cont + n_cat) bool in ``feature_names`` order."""
        cat_missing = np.vectorize(lambda v: v is None, otypes=[bool])(self.cat) if self.cat.size else \
            np.zeros(self.cat.shape, bool)
        return np.concatenate([np.isnan(self.cont), cat_missing], axis=1)


def _numeric_column(feature: Feature, column, *, where: str, ids) -> np.ndarray:
    """Float64 values of a continuous column (NaN where missing); infinities are an error.

    ``inf`` / ``-inf`` (and ``Infinity``, which pandas also parses) are rejected, not treated as
    missing: no spec marks them as a missing-value code, and a silent imputation would hide a
    broken export. The message names the column and the id of the first offending row.
    """
    values = _numeric_values(feature, column, where=where, ids=ids)
    inf = np.isinf(values)
    if inf.any():
        i = int(np.flatnonzero(inf)[0])
        row = f"id {ids[i]!r}" if ids is not None else f"row {i + 1}"
        raise UserError(
            f"{where}: column {feature.column!r} has the non-finite value {values[i]} at {row} "
            f"({int(inf.sum())} such value{'s' if inf.sum() != 1 else ''}); replace it with a number, "
            f"or leave the cell empty to mark it missing"
        )
    return values


def is_boolean(column) -> bool:
    """A bool column: a bool dtype, or objects that are all True / False where present (pandas reads
    a CSV column of True, False and blanks so)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column.dtype):
        return True
    present = column.dropna()
    return column.dtype == object and len(present) > 0 and all(isinstance(v, (bool, np.bool_)) for v in present)


def _numeric_values(feature: Feature, column, *, where: str, ids) -> np.ndarray:
    import pandas as pd

    if is_boolean(column):  # False / True -> 0 / 1
        return column.astype("float64").to_numpy(na_value=np.nan)
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    text = column.astype("string").str.strip()
    if feature.strip_suffix:
        text = text.str.removesuffix(feature.strip_suffix).str.strip()
    text = text.mask(text == "")
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(values) & text.notna().to_numpy()
    if bad.any() and not feature.coerce:
        i = int(np.flatnonzero(bad)[0])
        row = f"id {ids[i]!r}" if ids is not None else f"row {i + 1}"
        raise UserError(
            f"{where}: column {feature.column!r} is numeric but has text {str(text.iloc[i])!r} at {row} "
            f"({int(bad.sum())} such values); fix the table, list the column as categorical, "
            f"or add it to table.coerce_numeric to treat text as missing"
        )
    return values


def parse_features(features: Sequence[Feature], df, *, where: str = "table", ids=None) -> ParsedTable:
    """Read the raw values of ``features`` from ``df`` (a pandas DataFrame).

    ``where`` names the source in error messages (a file name); ``ids`` (optional) name rows.
    """
    cont = [f for f in features if f.kind == "continuous"]
    cat = [f for f in features if f.kind == "categorical"]
    absent = [f.column for f in list(cont) + list(cat) if f.column not in df.columns]
    if absent:

        hint = close_matches(absent[0], [str(c) for c in df.columns])
        raise UserError(
            f"{where}: missing column {absent[0]!r}"
            + (f" (and {len(absent) - 1} more)" if len(absent) > 1 else "")
            + (f"; did you mean {hint}?" if hint else "; add it to the table or fix the spec")
        )
    n = len(df)
    cont_arr = np.empty((n, len(cont)), dtype=np.float64)
    for j, f in enumerate(cont):
        cont_arr[:, j] = _numeric_column(f, df[f.column], where=where, ids=ids)
    cat_arr = np.empty((n, len(cat)), dtype=object)
    for j, f in enumerate(cat):
        keys = _category_keys(df[f.column])
        if f.strip_suffix:
            keys = np.array([k.removesuffix(f.strip_suffix).strip() or None if k else None for k in keys], object)
        cat_arr[:, j] = keys
    return ParsedTable(cont=cont_arr, cat=cat_arr, ids=None if ids is None else np.asarray(ids))


def fit_features(features: Sequence[Feature], parsed: ParsedTable, train: np.ndarray, *, where: str) -> list[Feature]:
    """Statistics from the train rows only: medians, means and stds, category vocabularies.

    ``train`` is a (N,) bool mask. The mean and std are those of the median-imputed train
    values (as an imputer followed by a standard scaler), so train rows end with mean 0 and
    std 1 exactly. A constant column keeps std 1 instead of dividing by zero.
    """
    cont = [f for f in features if f.kind == "continuous"]
    cat = [f for f in features if f.kind == "categorical"]
    fitted: list[Feature] = []
    x = parsed.cont[train]
    for j, f in enumerate(cont):
        col = x[:, j]
        miss = np.isnan(col)
        if miss.all():
            raise UserError(
                f"{where}: column {f.column!r} has no values in the train split; exclude it in the spec "
                f"(table.exclude) or fill it in"
            )
        median = float(np.median(col[~miss]))
        filled = np.where(miss, median, col)
        mean = float(filled.mean())
        std = float(filled.std())
        fitted.append(replace(f, median=median, mean=mean, std=std if std > 1e-12 else 1.0,
                              missing_fraction_train=float(miss.mean())))
    c = parsed.cat[train]
    for j, f in enumerate(cat):
        col = c[:, j]
        present = [k for k in col if k is not None]
        fitted.append(replace(f, categories=sort_categories(present),
                              missing_fraction_train=float(1 - len(present) / max(len(col), 1))))
    return fitted


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_float32(cont: Sequence[Feature], raw: np.ndarray, z: np.ndarray, *, where: str, ids) -> None:
    """A scaled value the model's float32 input cannot hold (it would become inf) is the user's to fix."""
    with np.errstate(invalid="ignore"):
        over = ~(np.abs(z) <= FLOAT32_MAX)
    if not over.any():
        return
    i, j = (int(k[0]) for k in np.nonzero(over))
    row = f"id {ids[i]!r}" if ids is not None else f"row {i + 1}"
    raise UserError(
        f"{where}: column {cont[j].column!r} has the value {raw[i, j]:g} at {row} ({int(over.sum())} such "
        f"value{'s' if over.sum() != 1 else ''}), {abs(z[i, j]):.3g} standard deviations from the training mean: "
        "beyond what the model's float32 input holds; fix the value (a unit or typing error?) or leave the cell "
        "empty to mark it missing"
    )


def encode(features: Sequence[Feature], parsed: ParsedTable, *,
           where: str = "table") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply fitted statistics: ``(x_cont (N, n_cont) float32, x_cat (N, n_cat) int64, missing (N, F) bool)``.

    A value whose z-score does not fit in float32 is refused (:class:`UserError` naming the column,
    the value and the row), never cast to inf.
    """
    import pandas as pd

    cont = [f for f in features if f.kind == "continuous"]
    cat = [f for f in features if f.kind == "categorical"]
    n = parsed.cont.shape[0]
    if cont:
        median = np.array([f.median for f in cont])
        mean = np.array([f.mean for f in cont])
        std = np.array([f.std for f in cont])
        filled = np.where(np.isnan(parsed.cont), median, parsed.cont)
        with np.errstate(over="ignore"):  # a z-score beyond float64 is inf here, and refused below
            z = (filled - mean) / std
        _check_float32(cont, filled, z, where=where, ids=parsed.ids)
        x_cont = z.astype(np.float32)
    else:
        x_cont = np.zeros((n, 0), np.float32)
    x_cat = np.zeros((n, len(cat)), np.int64)
    for j, f in enumerate(cat):
        codes = pd.Index(f.categories or [], dtype=object).get_indexer(parsed.cat[:, j])
        x_cat[:, j] = codes.astype(np.int64) + 1  # -1 (missing or unseen) -> 0
    return x_cont, x_cat, parsed.missing


def transform_table(schema: Schema, df, *, where: str = "table") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw rows -> model input, exactly as ``prepare`` transformed the training rows.

    Returns ``x_cont`` (N, n_cont) float32, ``x_cat`` (N, n_cat) int64 and ``missing`` (N, F)
    bool, columns in ``schema.feature_names`` order.
    """
    ordered = schema.continuous + schema.categorical
    ids = df[schema.id_column].astype(str).to_numpy() if schema.id_column in df.columns else None
    return encode(ordered, parse_features(ordered, df, where=where, ids=ids), where=where)


# ---------------------------------------------------------------------------------------------
# images

PNG_RULES = ("error", "windowed")  # image.png: what a PNG/JPG in a CT cohort is
AIR_HU = -1024.0  # what a field larger than the scan is padded with


def window_ct(hu: np.ndarray, window: Sequence[float]) -> np.ndarray:
    """HU -> [0, 1]: ``clip((HU - low) / (high - low), 0, 1)`` as float32 (Appendix A.1)."""
    low, high = float(window[0]), float(window[1])
    x = np.asarray(hu, dtype=np.float32) - np.float32(low)
    x *= np.float32(1.0 / (high - low))
    return np.clip(x, 0.0, 1.0, out=x)


def to_uint8(x01: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 ``round(x * 255)``."""
    y = np.multiply(x01, np.float32(255.0), dtype=np.float32)
    np.rint(y, out=y)
    np.clip(y, 0, 255, out=y)
    return y.astype(np.uint8)


def resize01(x: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(C, H, W) float32 in [0, 1] -> (C, h, w), antialiased bilinear; unchanged when sizes agree."""
    h, w = int(size[0]), int(size[1])
    if x.shape[1:] == (h, w):
        return x
    from PIL import Image

    # Pillow's bilinear resize widens its triangle filter when shrinking (antialiasing), on
    # 32-bit float channels, so no precision is lost before the final rounding to uint8
    out = np.empty((x.shape[0], h, w), dtype=np.float32)
    for c in range(x.shape[0]):
        ch = Image.fromarray(np.ascontiguousarray(x[c], dtype=np.float32), mode="F")
        out[c] = np.asarray(ch.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def _as_channels(arr: np.ndarray, info: ImageInfo, where: str) -> np.ndarray:
    """Raw array -> (C, H, W) float32 in [0, 1] for ``info.modality``; wrong shapes are errors."""
    if info.modality == "ct":
        a = arr[0] if arr.ndim == 3 and arr.shape[0] == 1 else arr
        if a.ndim != 2:
            raise UserError(f"{where}: a CT slice must be 2-D (H, W), got shape {arr.shape}; store one slice per image")
        return window_ct(a, info.window)[None]
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise UserError(f"{where}: expected an image (H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4, "
                        f"got shape {arr.shape}; fix the file")
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / np.float32(255.0)
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / np.float32(65535.0)
    else:
        x = arr.astype(np.float32)
        if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 1):
            raise UserError(f"{where}: float pixel values must lie in [0, 1], got [{np.nanmin(x):.3g}, "
                            f"{np.nanmax(x):.3g}]; store uint8 or scale the array")
    x = x[:, :, :3]
    if info.channels == 1 and x.shape[-1] == 3:
        x = x @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma, as PIL's "L"
        x = x[:, :, None]
    elif info.channels == 3 and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(np.moveaxis(x, -1, 0))


def image_to_uint8(arr: np.ndarray, info: ImageInfo, *, where: str = "image",
                   raw_size: Sequence[int] | None = None) -> np.ndarray:
    """A raw image (HU for CT, pixels otherwise) -> uint8 (C, H, W) at ``info``'s size."""
    if raw_size and tuple(arr.shape[-2:] if info.modality == "ct" else arr.shape[:2]) != tuple(raw_size):
        raise UserError(f"{where}: image shape {tuple(arr.shape)} differs from the expected raw size "
                        f"{list(raw_size)} (image.raw_size); fix or remove the image")
    x = _as_channels(arr, info, where)
    if not np.isfinite(x).all():
        raise UserError(f"{where}: image has NaN or infinite values; fix the file")
    return to_uint8(resize01(x, (info.height, info.width)))


def _dicom(path: str | Path, *, pixels: bool):
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=not pixels)
        stored = ds.pixel_array if pixels else None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise UserError(f"{path}: cannot read this DICOM file ({type(exc).__name__}: {exc}); "
                        f"check the file or install the decoder it needs") from None
    return ds, stored


def dicom_spacing(ds, path: str | Path = "DICOM") -> tuple[float, float] | None:
    """(row, column) pixel spacing in mm from a DICOM dataset's PixelSpacing (None without the tag)."""
    value = ds.get("PixelSpacing")
    if value is None:
        return None
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"{path}: DICOM PixelSpacing {value!r} is not two numbers; fix the tag or remove "
                        "image.spacing_mm from the spec") from None
    if not (row > 0 and col > 0):
        raise UserError(f"{path}: DICOM PixelSpacing {value!r} must be positive; fix the tag")
    return row, col


def _read_dicom(path: str | Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    ds, stored = _dicom(path, pixels=True)
    absent = [t for t in ("RescaleSlope", "RescaleIntercept") if t not in ds]
    if absent:
        raise UserError(f"{path}: DICOM has no {' / '.join(absent)} tag, so stored values cannot be "
                        f"converted to HU; export the series with rescale tags (or as .npy in HU)")
    hu = stored.astype(np.float32) * np.float32(float(ds.RescaleSlope)) + np.float32(float(ds.RescaleIntercept))
    return hu, dicom_spacing(ds, path)


def resample_to_spacing(hu: np.ndarray, spacing: tuple[float, float], target_mm: float,
                        field_px: tuple[int, int], fill: float) -> np.ndarray:
    """(H, W) -> (field_px) at ``target_mm`` per pixel: antialiased bilinear resampling from
    ``spacing`` (row, column mm), then a centred crop or pad with ``fill`` (the same anatomy in mm
    lands on the same pixels for every scanner)."""
    from PIL import Image

    h, w = hu.shape
    nh = max(1, int(round(h * spacing[0] / target_mm)))
    nw = max(1, int(round(w * spacing[1] / target_mm)))
    x = np.ascontiguousarray(hu, dtype=np.float32)
    if (nh, nw) != (h, w):
        x = np.asarray(Image.fromarray(x, mode="F").resize((nw, nh), Image.Resampling.BILINEAR), dtype=np.float32)
    out = np.full(field_px, np.float32(fill), dtype=np.float32)
    fh, fw = field_px
    # centre both: source offset where the source is larger (crop), target offset where smaller (pad)
    sy, sx = max(0, (nh - fh) // 2), max(0, (nw - fw) // 2)
    ty, tx = max(0, (fh - nh) // 2), max(0, (fw - nw) // 2)
    ch, cw = min(fh, nh), min(fw, nw)
    out[ty:ty + ch, tx:tx + cw] = x[sy:sy + ch, sx:sx + cw]
    return out


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".dcm", ".dicom"):
        return "dicom"
    if suffix == ".npy":
        return "npy"
    if suffix in (".png", ".jpg", ".jpeg"):
        return "png"
    raise UserError(f"{path}: unsupported image type {suffix!r}; use PNG, JPG, NPY or DICOM")


def image_rule(path: str | Path, image) -> str:
    """The intensity rule a file gets, as a short code to count in provenance.

    ``image``: the spec's ``[image]`` (``ImageSpec``), a schema's ``ImageInfo`` or
    :class:`ImageOptions`. Codes: CT cohorts ``dicom-hu`` / ``npy-hu`` (HU, windowed),
    ``png-windowed`` (8-bit PNG/JPG taken as windowed intensities); other modalities
    ``png-pixels`` / ``npy-pixels``. With ``spacing_mm`` set, ``+resampled`` (a DICOM, which must
    carry PixelSpacing) or ``+no-spacing`` (a file type without a spacing, left at its own scale) is
    appended.
    Files the rules refuse raise the same :class:`UserError` as loading them.
    """
    opts = rules_of(image)
    path = Path(path)
    kind = _kind(path)
    if opts.modality == "ct":
        if kind == "png":
            _check_png_in_ct(path, opts)
            rule = "png-windowed"
        else:
            rule = f"{kind}-hu"
    else:
        if kind == "dicom":
            raise UserError(f"{path}: DICOM images are read as CT (HU); set image.modality = 'ct' with a window")
        rule = f"{kind}-pixels"
    if opts.spacing_mm is not None:
        if kind == "dicom" and path.is_file():
            _required_spacing(path, dicom_spacing(_dicom(path, pixels=False)[0], path), opts)
            rule += "+resampled"
        else:
            rule += "+no-spacing"
    return rule


def _required_spacing(path: Path, spacing: tuple[float, float] | None, opts: "ImageOptions") -> tuple[float, float]:
    """A DICOM slice's spacing where the cohort resamples to ``spacing_mm``: without the tag its
    scale is unknown, and resizing it alone would put its anatomy on other pixels than the rest."""
    if spacing is None:
        raise UserError(f"{path}: DICOM has no PixelSpacing tag, but this cohort resamples DICOM slices to "
                        f"image.spacing_mm = {opts.spacing_mm:g} mm; add the tag (the scanner's mm per pixel) or "
                        "drop image.spacing_mm from the data spec")
    return spacing


def _check_png_in_ct(path: Path, opts: ImageOptions) -> None:
    if opts.png != "windowed":
        raise UserError(f"{path}: PNG/JPG files hold no HU values; if they are CT slices already windowed to 8 bits, "
                        f"set image.png = \"windowed\" in the spec (pixel 0-255 = the spec's window), otherwise use "
                        f"DICOM or .npy in HU, or set image.modality = 'gray'")


def _read_png(path: Path, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                if mode == "windowed":
                    raise UserError(f"{path}: a 16-bit PNG is not an 8-bit windowed image; store CT in HU as DICOM "
                                    "or .npy, or export 8-bit windowed PNGs")
                return np.asarray(im, dtype=np.uint16)
            return np.asarray(im.convert("RGB" if mode == "rgb" else "L"))
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path}: cannot read this image ({exc}); fix or replace the file") from None


def read_image(path: str | Path, image) -> np.ndarray:
    """Raw array from a PNG/JPG, ``.npy`` or DICOM file (HU for CT, pixels otherwise), read with the
    rules of ``image`` (an ``ImageSpec``, ``ImageInfo`` or :class:`ImageOptions`): what a reader
    of a spec's image column calls per file.

    CT cohorts: ``png="windowed"`` accepts 8-bit PNG/JPG as intensities already windowed to
    ``window`` and returns them mapped back onto it in HU (``low + pixel / 255 * (high - low)``),
    so that windowing restores each pixel exactly (what lay outside the window is unknown and
    stays clipped). ``spacing_mm``: a DICOM slice is resampled from its PixelSpacing to it (a
    DICOM without the tag is a UserError) and centre-cropped or padded (with air, -1024 HU) to
    ``field_mm`` (default ``DEFAULT_FIELD_PX`` pixels a side); ``.npy`` and PNG files, which
    carry no spacing, are returned as they are.
    """
    return _read(Path(path), rules_of(image))


def _read(path: Path, opts: ImageOptions) -> np.ndarray:
    if opts.png not in PNG_RULES:
        raise ValueError(f"png must be one of {PNG_RULES}, however: {opts.png=}")
    if not path.is_file():
        raise UserError(f"{path}: image file not found; fix the path in the table")
    kind = _kind(path)
    if kind == "dicom":
        if opts.modality != "ct":
            raise UserError(f"{path}: DICOM images are read as CT (HU); set image.modality = 'ct' with a window")
        hu, spacing = _read_dicom(path)
        if opts.spacing_mm is not None:
            hu = resample_to_spacing(hu, _required_spacing(path, spacing, opts), opts.spacing_mm, opts.field_px(),
                                     AIR_HU)
        return hu
    if kind == "npy":
        try:
            return np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{path}: cannot read this .npy file ({exc}); re-save it with numpy.save") from None
    if opts.modality == "ct":
        _check_png_in_ct(path, opts)
        if opts.window is None:
            raise ValueError("a windowed PNG in a CT cohort needs the cohort's window")
        pixels = _read_png(path, "windowed").astype(np.float32) / np.float32(255.0)
        low, high = float(opts.window[0]), float(opts.window[1])
        return np.float32(low) + pixels * np.float32(high - low)
    return _read_png(path, opts.modality)


def image_path(value, base: str | Path | None = None) -> Path | None:
    """A table cell of image paths -> the file's path, or None for a row without an image.

    Blank cells (None, NaN, pandas' missing values, empty or white-space text, and the text
    ``"nan"`` that ``astype(str)`` makes of a missing cell) mean "no image"; a relative path
    is taken relative to ``base`` (the table's folder). A path that names no file is returned
    as it is: loading it is an error, not an absent image.
    """
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas' missing scalars, without importing pandas
        return None
    text = str(value).strip()
    if not text or text.lower() == "nan":
        return None
    path = Path(text)
    return path if path.is_absolute() or base is None else Path(base) / path


def load_optional_image(path: str | Path | None, info: ImageInfo, **rules) -> tuple[np.ndarray, bool]:
    """``(uint8 (C, H, W), present)``: :func:`load_image` of ``path``, or zeros and False when
    ``path`` is None (a row without an image, as :func:`image_path` reports it). The zeros are
    what ``prepare`` stores for a kept row without an image (``image.missing = "keep"``).
    ``rules``: ``png`` / ``spacing_mm`` / ``field_mm`` as for :func:`load_image`."""
    if path is None:
        return np.zeros((info.channels, info.height, info.width), np.uint8), False
    return load_image(path, info, **rules), True


def load_image(path: str | Path, info: ImageInfo, *, png: str | None = None, spacing_mm: float | None = None,
               field_mm: Sequence[float] | None = None) -> np.ndarray:
    """One image file -> uint8 (C, H, W), exactly as ``prepare`` stored training images.

    ``png`` / ``spacing_mm`` / ``field_mm``: the spec's per-file rules (default: ``info``'s
    attributes of those names when it has them, else PNGs refused in CT and no resampling)."""
    opts = ImageOptions.of(info, png=png, spacing_mm=spacing_mm, field_mm=field_mm)
    return image_to_uint8(_read(Path(path), opts), info, where=str(path))
