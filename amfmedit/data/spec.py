"""Data specs: TOML files in ``data_specs/`` that map a raw dataset onto the prepared format.

A spec names the reader (``ol3i``, ``dvm`` or ``table``), where the raw files are, the id /
label / split columns, which columns are features and which of them are categorical, the
image source and modality (CT window in HU, RGB, grayscale; in CT cohorts whether 8-bit
PNG/JPG are already-windowed slices, ``image.png``, and an optional common pixel spacing,
``image.spacing_mm`` / ``image.field_mm``: see :class:`ImageSpec`), the target image size, the
split fractions used when the source has no split column, and feature groups and
descriptions for reports. ``--data NAME`` resolves to ``data_specs/NAME.toml`` (first in
``./data_specs``, then in the source checkout) or to a path ending in ``.toml``.

Validation is strict: an unknown key or a value of the wrong type is a :class:`UserError`
naming the spec file and the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from amfmedit.data.image_options import ImageOptions
from amfmedit.errors import UserError, close_matches
from amfmedit.paths import repo_root

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SPEC_DIR = "data_specs"
DEFAULT_WINDOW = (-125.0, 275.0)  # Appendix A.1: HU outside [-125, 275] are clipped
NOT_KEYS = ("path", "overrides")  # DataSpec fields set in code, never read from a spec file


@dataclass
class TableSpec:
    """The tabular source: which columns are id, outcome, split and features.

    The outcome: ``label`` (classification: the class; regression: the continuous value), or
    ``time`` and ``event`` (survival: time to event or censoring, in ``time_unit``, and 1 = event
    observed / 0 = censored). Which keys a task needs is checked by its outcome coding
    (:mod:`amfmedit.data.targets`).

    Typing: a feature is categorical when ``categorical`` lists it or its dtype is one of
    ``categorical_dtypes``; every other one is continuous (median-imputed, z-scored), so
    ``categorical = []`` with ``categorical_dtypes = []`` makes every feature continuous (the
    authors' OL3I code; ``prepare --categorical none`` does the same without editing the spec).
    A text column left continuous is refused, never read as missing (unless ``coerce_numeric``
    lists it).
    """

    id: str
    label: str | None = None
    file: str | None = None  # relative to the raw folder (reader ``ol3i``/``table``)
    alternatives: list[str] = field(default_factory=list)  # other accepted file names
    split: str | None = None  # None: split randomly with [split] fractions and seed
    features: list[str] = field(default_factory=list)  # include list; empty = all other columns
    exclude: list[str] = field(default_factory=list)  # never features (absent ones are ignored)
    categorical: list[str] = field(default_factory=list)
    # dtypes whose columns become categorical without being listed ("string", "bool")
    categorical_dtypes: list[str] = field(default_factory=lambda: ["string", "bool"])
    coerce_numeric: list[str] = field(default_factory=list)  # text in these columns -> missing
    rename: dict[str, str] = field(default_factory=dict)  # raw column -> feature name
    strip_suffix: dict[str, str] = field(default_factory=dict)  # raw column -> unit suffix ("L")
    label_values: list[str] = field(default_factory=list)  # class order; binary default ["0", "1"]
    drop_missing: bool = False  # drop rows with a missing feature instead of imputing
    min_class_count: int = 0  # classes with fewer rows are dropped (DVM: 100)
    time: str | None = None  # survival: time to event or censoring (>= 0)
    event: str | None = None  # survival: 1 = event observed, 0 = censored
    time_unit: str = ""  # survival: the unit of ``time`` ("years", "days"), for reports and --horizons
    horizons: list[float] = field(default_factory=list)  # survival: default --horizons, in time_unit
    # columns kept beside the prepared table for reports (subgroups, case-mix; never features): columns.parquet
    keep: list[str] = field(default_factory=list)


@dataclass
class ImageSpec:
    """The image source and how images are windowed, resized and stored.

    Mixed sources in one CT cohort: DICOM (HU through RescaleSlope/RescaleIntercept) and
    ``.npy`` (HU) are windowed with ``window``; ``png = "windowed"`` also accepts 8-bit PNG/JPG
    as intensities already windowed to that window (an export by the same window is assumed and
    cannot be checked); without it a PNG in a CT cohort is an error naming the key.
    ``spacing_mm``: DICOM slices are resampled from their PixelSpacing to this many mm per
    pixel, then centre-cropped or padded (with air, -1024 HU) to ``field_mm`` ([height, width] in mm;
    default 512 pixels of ``spacing_mm`` a side), then resized to ``size``, so the same anatomy
    spans the same pixels across scanners; a DICOM without PixelSpacing is refused, file types
    without a spacing (``.npy``, PNG) are only resized.
    """

    source: Literal["hdf5", "column", "dvm"]
    modality: Literal["ct", "rgb", "gray"]
    size: list[int]  # [height, width] after preparation
    file: str | None = None  # hdf5: file in the raw folder, one dataset per id
    column: str | None = None  # column: table column with image paths (relative to the table)
    folder: str | None = None  # dvm: folder holding <Maker>/<Year>/<Image_name>
    window: list[float] = field(default_factory=lambda: list(DEFAULT_WINDOW))  # CT, in HU
    channels: int | None = None  # default: 1 for ct/gray, 3 for rgb (rgb with 1 -> grayscale)
    raw_size: list[int] = field(default_factory=list)  # expected raw [height, width]; empty = any
    # a table row whose image is absent: "error" refuses it, "drop" removes it, "keep" keeps it
    # (image_present.npy records which rows have one; see docs/missing-data.md)
    missing: Literal["error", "drop", "keep"] = "error"
    # ct: "windowed" accepts 8-bit PNG/JPG as slices already windowed to `window` (0 = low, 255 =
    # high) beside DICOM / .npy in HU; "error" (default) refuses them, as they hold no HU
    png: Literal["error", "windowed"] = "error"
    spacing_mm: float | None = None  # ct: resample DICOM slices (PixelSpacing) to this spacing first
    field_mm: list[float] = field(default_factory=list)  # with spacing_mm: [height, width] kept, centred

    def rules(self) -> ImageOptions:
        """The per-file reading rules of this cohort (the window only for CT)."""
        ct = self.modality == "ct"
        return ImageOptions(self.modality, tuple(self.window) if ct and self.window else None,
                            self.png or "error", self.spacing_mm, tuple(self.field_mm) if self.field_mm else None)


@dataclass
class SplitSpec:
    """Random split used when the table has no split column (DVM: 72/18/10, seed 2022)."""

    fractions: list[float] = field(default_factory=lambda: [0.72, 0.18, 0.10])
    seed: int = 2022
    stratify: bool = False


@dataclass
class DvmSpec:
    """File names of the DVM release (reader ``dvm``)."""

    ad_table: str = "Ad_table.csv"
    price_table: str = "Price_table.csv"
    image_table: str = "Image_table.csv"
    quality: str = "P"  # keep Quality_check == quality
    viewpoint: int = 0  # keep Predicted_viewpoint == viewpoint (front views)


@dataclass
class SyntheticSpec:
    """Options of a synthetic generator (``amfmedit.data.synthetic``); CLI options override."""

    generator: Literal["ol3i", "dvm"]
    patients: int
    seed: int = 2022
    features: int = 423  # ol3i only
    prevalence: float = 0.04  # ol3i only (survival outcome: the mean 1-year risk)
    outcome: str = "label"  # ol3i only: label, time_to_event or continuous (amfmedit.data.synthetic.outcomes)
    censoring: float = 0.1  # ol3i time_to_event only: yearly rate of loss to follow-up (exponential)
    classes: int = 26  # dvm only: car models generated before the min_class_count filter


@dataclass
class SourceSpec:
    """Where and when the data come from, as the data's owner states it (``[source]``; every key optional).

    Reporting checklists ask for these (TRIPOD+AI 5a-6b, 8a; CLAIM 7-8); the run report quotes them
    as given and marks each one not given as a placeholder."""

    citation: str = ""  # the dataset's reference or release
    dates: str = ""  # when participants' data were collected, e.g. "2007-2016"
    setting: str = ""  # e.g. "tertiary academic hospital, outpatient and inpatient CT"
    centres: str = ""  # number and location of centres
    eligibility: str = ""  # inclusion and exclusion criteria
    outcome: str = ""  # how and when the outcome was assessed


@dataclass
class DataSpec:
    """One data spec file, validated."""

    name: str
    reader: Literal["ol3i", "dvm", "table"]
    task: str  # a prediction kind's name (amfmedit.stages.kinds.PREDICTION_KINDS), checked by the prepare stage
    table: TableSpec
    image: ImageSpec
    description: str = ""
    raw: str | None = None  # folder of the raw files (relative: to the working directory)
    split: SplitSpec = field(default_factory=SplitSpec)
    dvm: DvmSpec = field(default_factory=DvmSpec)
    synthetic: SyntheticSpec | None = None
    source: SourceSpec = field(default_factory=SourceSpec)
    groups: dict[str, str] = field(default_factory=dict)  # regex -> group name (reports)
    descriptions: dict[str, str] = field(default_factory=dict)  # feature -> description
    path: str | None = None  # the file it was read from (set by load_spec, not a TOML key)
    # command-line options that changed it, as typed ({"--categorical": "none"}; set by
    # amfmedit.data.prepare.apply_overrides, not a TOML key): provenance records them
    overrides: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("path")
        d.pop("overrides")
        return d

    def used_dict(self) -> dict:
        """:meth:`to_dict` without the blocks this cohort's preparation did not read (for provenance):
        ``[split]`` when the table has a split column, ``[dvm]`` for another reader, the CT window
        for photos, an absent ``[synthetic]``."""
        d = self.to_dict()
        if self.table.split:
            d.pop("split")
        if self.reader != "dvm":
            d.pop("dvm")
        if self.synthetic is None:
            d.pop("synthetic")
        if self.image.modality != "ct":
            d["image"].pop("window")
        return d

    @property
    def channels(self) -> int:
        if self.image.channels is not None:
            return self.image.channels
        return 3 if self.image.modality == "rgb" else 1


# ---------------------------------------------------------------------------------------------
# resolving --data NAME


def spec_dirs() -> list[Path]:
    """Where ``--data NAME`` is looked up, in order: ./data_specs, then the source checkout's."""
    dirs = [Path.cwd() / SPEC_DIR, repo_root() / SPEC_DIR]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and all(d.resolve() != o.resolve() for o in out):
            out.append(d)
    return out


def available_specs() -> list[str]:
    names: set[str] = set()
    for d in spec_dirs():
        names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def resolve_spec_path(name: str | os.PathLike) -> Path:
    """``NAME`` -> ``data_specs/NAME.toml``; a path ending in ``.toml`` is used as given."""
    text = str(name)
    if text.endswith(".toml") or os.sep in text:
        p = Path(text)
        if not p.is_file():
            raise UserError(f"--data {text}: no such spec file; give a .toml path or a name from data_specs/")
        return p
    for d in spec_dirs():
        p = d / f"{text}.toml"
        if p.is_file():
            return p
    names = available_specs()
    hint = close_matches(text, names)
    raise UserError(
        f"--data {text}: no data spec named {text!r} (known: {', '.join(names) or 'none'})"
        + (f"; did you mean {hint}?" if hint else f"; write data_specs/{text}.toml or pass a .toml path")
    )


def load_spec(name: str | os.PathLike) -> DataSpec:
    """Read and validate a data spec by name or path."""
    path = resolve_spec_path(name)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc}); fix the file") from None
    spec = spec_from_dict(raw, source=str(path))
    spec.path = str(path)
    return spec


def spec_from_dict(data: dict, *, source: str = "<spec>") -> DataSpec:
    """Validate a parsed TOML document (or a dict built in code) into a :class:`DataSpec`."""
    spec = _build(DataSpec, data, source, prefix="")
    _check(spec, source)
    return spec


# ---------------------------------------------------------------------------------------------
# validation: dataclass fields double as the schema of the TOML file


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        item = typing.get_args(tp)[0]
        plural = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}
        return f"a list of {plural.get(item, _type_name(item))}"
    if origin is dict:
        return f"a table of {_type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    bad = UserError(f"{source}: key {key!r} must be {_type_name(tp)}, got {value!r}; fix the spec")
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for a in args:
            try:
                return _convert(a, value, source, key)
            except UserError:
                continue
        raise bad
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise bad
    if origin is list:
        if not isinstance(value, list):
            raise bad
        (item,) = typing.get_args(tp)
        return [_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        _, item = typing.get_args(tp)
        return {str(k): _convert(item, v, source, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad
        return _build(tp, value, source, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise TypeError(f"unsupported spec field type {tp!r}")  # a programming error, not user input


def _build(cls, data: dict, source: str, *, prefix: str):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in NOT_KEYS}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            hint = close_matches(key, fields)
            raise UserError(
                f"{source}: unknown key {prefix + key!r}"
                + (f"; did you mean {prefix}{hint}?" if hint else f"; known keys: {', '.join(fields)}")
            )
        kwargs[key] = _convert(hints[key], value, source, prefix + key)
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in kwargs:
            raise UserError(f"{source}: required key {prefix + name!r} is missing; add it to the spec")
    return cls(**kwargs)


def _check(spec: DataSpec, source: str) -> None:
    """Checks across keys that types alone cannot express."""

    def bad(key: str, why: str) -> UserError:
        return UserError(f"{source}: key {key!r} {why}; fix the spec")

    img, tab = spec.image, spec.table
    if not spec.name or "/" in spec.name or spec.name.startswith("."):
        raise bad("name", f"must be a plain folder name, got {spec.name!r}")
    if len(img.size) not in (1, 2) or min(img.size) < 8:
        raise bad("image.size", f"must be [height, width] (or one side) of at least 8 pixels, got {img.size}")
    if len(img.size) == 1:
        img.size = [img.size[0], img.size[0]]
    if img.raw_size and len(img.raw_size) != 2:
        raise bad("image.raw_size", f"must be [height, width], got {img.raw_size}")
    if len(img.window) != 2 or not img.window[0] < img.window[1]:
        raise bad("image.window", f"must be [low, high] in HU with low < high, got {img.window}")
    if img.channels is not None and img.channels not in (1, 3):
        raise bad("image.channels", f"must be 1 or 3, got {img.channels}")
    if img.png == "windowed" and img.modality != "ct":
        raise bad("image.png", f"applies to CT cohorts only (modality {img.modality!r} reads PNG/JPG as pixels)")
    if img.spacing_mm is not None:
        if img.modality != "ct":
            raise bad("image.spacing_mm", f"applies to CT cohorts only (DICOM pixel spacing), not {img.modality!r}")
        if not 0 < img.spacing_mm <= 20:
            raise bad("image.spacing_mm", f"must be a pixel spacing in mm between 0 and 20, got {img.spacing_mm}")
    if img.field_mm:
        if img.spacing_mm is None:
            raise bad("image.field_mm", "needs image.spacing_mm (the field kept after resampling)")
        if len(img.field_mm) != 2 or min(img.field_mm) < 8 * img.spacing_mm:
            raise bad("image.field_mm", f"must be [height, width] in mm of at least 8 pixels, got {img.field_mm}")
    if img.modality in ("ct", "gray") and spec.channels != 1:
        raise bad("image.channels", f"must be 1 for modality {img.modality!r}")
    need = {"hdf5": "file", "column": "column", "dvm": "folder"}[img.source]
    if not getattr(img, need):
        raise bad(f"image.{need}", f"is required when image.source = {img.source!r}")
    if spec.reader == "dvm" and img.source != "dvm":
        raise bad("image.source", "must be 'dvm' for reader 'dvm'")
    if spec.reader != "dvm" and not tab.file:
        raise bad("table.file", f"is required for reader {spec.reader!r}")
    fr = spec.split.fractions
    if len(fr) != 3 or min(fr) <= 0 or abs(sum(fr) - 1) > 1e-6:
        raise bad("split.fractions", f"must be three positive fractions (train, val, test) summing to 1, got {fr}")
    for dt in tab.categorical_dtypes:
        if dt not in ("string", "bool"):
            raise bad("table.categorical_dtypes", f"entries must be 'string' or 'bool', got {dt!r}")
    if tab.min_class_count < 0:
        raise bad("table.min_class_count", f"must be >= 0, got {tab.min_class_count}")
    reserved = {"id", "split", "label"}
    if any(not (h > 0 and h == h) for h in tab.horizons):
        raise bad("table.horizons", f"must be positive times in table.time_unit, got {tab.horizons}")
    for col in tab.features + list(tab.rename.values()):
        if col in reserved:
            raise bad("table.features", f"may not name a feature {col!r} (reserved for the prepared table)")
    if spec.synthetic is not None:
        syn = spec.synthetic
        if syn.patients < 20:
            raise bad("synthetic.patients", f"must be at least 20, got {syn.patients}")
        if not 0 < syn.prevalence < 1:
            raise bad("synthetic.prevalence", f"must be between 0 and 1, got {syn.prevalence}")
        if syn.generator != spec.reader:
            raise bad("synthetic.generator", f"must match reader {spec.reader!r}, got {syn.generator!r}")
