"""One cohort's per-file image rules: one type, whichever record they come from.

The spec's ``[image]`` (:class:`amfmedit.data.spec.ImageSpec`) and a prepared dataset's
``schema.json`` (:class:`amfmedit.data.schema.ImageInfo`) each give theirs with ``rules()``, so the
readers of image files (:mod:`amfmedit.data.transform`, :mod:`amfmedit.data.readers`) take one type.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DEFAULT_FIELD_PX = 512  # field of view after resampling, in pixels of spacing_mm, when image.field_mm is unset


@dataclass(frozen=True)
class ImageOptions:
    """Per-file reading rules of one cohort (the spec's ``[image]`` keys beyond modality and window)."""

    modality: str
    window: tuple[float, float] | None = None
    png: str = "error"  # "windowed": 8-bit PNG/JPG in a CT cohort are already-windowed intensities
    spacing_mm: float | None = None  # resample DICOM slices to this pixel spacing (mm)
    field_mm: tuple[float, float] | None = None  # field of view kept after resampling, [height, width] mm

    @classmethod
    def of(cls, image, **override) -> "ImageOptions":
        """The rules of ``image`` (anything with ``rules()``, or rules themselves); keywords given and not
        ``None`` override."""
        opts = rules_of(image)
        return replace(opts, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in override.items()
                                if v is not None})

    def field_px(self) -> tuple[int, int] | None:
        if self.spacing_mm is None:
            return None
        if self.field_mm is None:
            return DEFAULT_FIELD_PX, DEFAULT_FIELD_PX
        return tuple(max(1, int(round(f / self.spacing_mm))) for f in self.field_mm)  # type: ignore[return-value]


def rules_of(image) -> ImageOptions:
    """``image``'s rules: an :class:`ImageOptions` as it is, else ``image.rules()`` (a spec's or a schema's)."""
    return image if isinstance(image, ImageOptions) else image.rules()
