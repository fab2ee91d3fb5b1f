"""Data: specs, raw readers, preprocessing, synthetic cohorts and the prepared-dataset format."""

from amfmedit.data.prepared import PreparedDataset, list_prepared, load_prepared
from amfmedit.data.schema import Feature, ImageInfo, Schema

__all__ = ["Feature", "ImageInfo", "PreparedDataset", "Schema", "list_prepared", "load_prepared"]
