"""``schema.json``: everything needed to turn a raw row into model input exactly as in training.

Written by ``prepare``, read by every later stage and by ``predict`` for new patients.
Continuous features: median imputation, then z-scoring with train-split statistics.
Categorical features: integer codes, where code 0 means missing or unseen and code ``i >= 1``
is ``categories[i - 1]``; an embedding table for a feature therefore has
``len(categories) + 1`` rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from amfmedit.data.image_options import ImageOptions
from amfmedit.errors import UserError
from amfmedit.io import read_json, write_json

SCHEMA_VERSION = 1
SCHEMA_FILE = "schema.json"  # in every prepared dataset folder
#: keys every ``schema.json`` has (the others have defaults)
REQUIRED_KEYS = ("name", "task", "class_names", "features", "image")


def damaged_hint(root: str | Path) -> str:
    """What to do about a damaged prepared dataset folder ``root``."""
    return f"the prepared dataset is damaged; prepare it again (`amfmedit prepare --data {Path(root).name} --force`)"


@dataclass
class Feature:
    """One tabular input feature after preparation."""

    name: str
    kind: Literal["continuous", "categorical"]
    group: str | None = None
    description: str | None = None
    # continuous: train-split statistics (median for imputation, mean/std for z-scoring)
    median: float | None = None
    mean: float | None = None
    std: float | None = None
    # categorical: vocabulary in code order (code i -> categories[i-1]; code 0 = missing/unseen)
    categories: list[str] | None = None
    missing_fraction_train: float = 0.0
    # how the raw value is read (``amfmedit.data.transform.parse_features``): the raw column
    # when it differs from ``name`` (DVM ``Engin_size`` -> ``Engine_size``), a unit suffix to
    # strip before parsing ("6.8L"), and whether text in a continuous column becomes missing
    # (``coerce``) instead of being an error
    source: str | None = None
    strip_suffix: str | None = None
    coerce: bool = False

    @property
    def column(self) -> str:
        """The raw table column this feature is read from."""
        return self.source or self.name

    @property
    def cardinality(self) -> int:
        """Embedding rows needed for this feature (vocabulary + the missing/unseen code)."""
        if self.kind != "categorical":
            raise ValueError(f"{self.name} is continuous and has no cardinality")
        return len(self.categories or []) + 1


#: The image geometries a prepared dataset can hold, with the per-image array dimensions.
GEOMETRIES = {"2d": ("channels", "height", "width")}


@dataclass
class ImageInfo:
    """How images were windowed and stored (``images.npy``: uint8, shape (N, *shape), (N, C, H, W) for
    ``geometry`` "2d"). Readers of image arrays take the shape from here, never a literal rank."""

    modality: Literal["ct", "rgb", "gray"]
    channels: int
    height: int
    width: int
    window: tuple[float, float] | None = None  # HU window for CT: [low, high] -> [0, 1]
    file: str = "images.npy"
    # the spec's per-file rules, so predict reads a new patient's file as prepare read the cohort's
    png: str = "error"  # CT: "windowed" takes 8-bit PNG/JPG as slices already windowed
    spacing_mm: float | None = None  # CT: DICOM slices resampled to this spacing before the resize
    field_mm: tuple[float, float] | None = None  # with spacing_mm: the field kept around the centre
    geometry: str = "2d"  # GEOMETRIES: what one image is; image encoders declare the geometry they read

    def rules(self) -> ImageOptions:
        """The per-file reading rules ``predict`` applies to a new patient's image file."""
        return ImageOptions(self.modality, tuple(self.window) if self.window else None, self.png or "error",
                            self.spacing_mm, tuple(self.field_mm) if self.field_mm else None)

    @property
    def shape(self) -> tuple[int, ...]:
        """One stored image's array shape, e.g. (C, H, W)."""
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"unknown image geometry {self.geometry!r}; known: {', '.join(GEOMETRIES)}")
        return tuple(int(getattr(self, d)) for d in GEOMETRIES[self.geometry])


@dataclass
class Schema:
    """Feature order, statistics and label coding of one prepared dataset."""

    name: str
    task: str  # a prediction kind (amfmedit.stages.kinds.PREDICTION_KINDS)
    class_names: list[str]
    features: list[Feature]
    image: ImageInfo
    id_column: str = "id"
    label_source: str = "label"
    image_column: str | None = None  # raw table column with image paths (own cohorts), for predict
    groups: dict[str, str] = field(default_factory=dict)  # regex -> group name (reports)
    # the outcome's coding beyond class labels (amfmedit.data.targets): its prepared columns
    # ("time", "event" / "target"), sources and what models need (a regression target's train mean and SD)
    target: dict = field(default_factory=dict)
    version: int = SCHEMA_VERSION

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def continuous(self) -> list[Feature]:
        return [f for f in self.features if f.kind == "continuous"]

    @property
    def categorical(self) -> list[Feature]:
        return [f for f in self.features if f.kind == "categorical"]

    @property
    def n_cont(self) -> int:
        return len(self.continuous)

    @property
    def cardinalities(self) -> list[int]:
        return [f.cardinality for f in self.categorical]

    @property
    def feature_names(self) -> list[str]:
        """Model input order: continuous features first, then categorical ones."""
        return [f.name for f in self.continuous] + [f.name for f in self.categorical]

    @property
    def target_columns(self) -> list[str]:
        """The prepared table's float outcome columns besides ``label`` (none for classification)."""
        return list(self.target.get("columns") or [])

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Schema":
        """Rebuild from :meth:`to_dict`; raises KeyError/TypeError/ValueError on a malformed dict."""
        d = dict(d)
        d["features"] = [Feature(**f) for f in d["features"]]
        img = dict(d["image"])
        if img.get("window") is not None:
            img["window"] = tuple(img["window"])
        d["image"] = ImageInfo(**img)
        return cls(**d)

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Schema":
        """Read ``schema.json``; a damaged one or one missing keys is a one-line UserError."""
        path = Path(path)
        hint = damaged_hint(path.parent)
        d = read_json(path, hint=hint)
        if not isinstance(d, dict):
            raise UserError(f"{path}: expected a JSON object, found {type(d).__name__}; {hint}")
        absent = [k for k in REQUIRED_KEYS if k not in d]
        if absent:
            raise UserError(f"{path}: missing key {absent[0]!r}" + (f" (and {len(absent) - 1} more)" if len(absent) > 1
                            else "") + f"; {hint}")
        if d.get("version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise UserError(f"{path}: schema version {d.get('version')!r}, this amfmedit reads version "
                            f"{SCHEMA_VERSION}; prepare the dataset again with this version (--force)")
        try:
            return cls.from_dict(d)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"{path}: malformed entry ({type(exc).__name__}: {exc}); {hint}") from None
