"""The training core: one engine, the device-side input pipeline, checkpoints, run directory.

Imports without Typer and Rich; progress goes to a callback the caller provides.
"""

from amfmedit.train.engine import FitConfig, FitResult, Progress, fit
from amfmedit.train.runtime import Runtime, setup_runtime

__all__ = ["FitConfig", "FitResult", "Progress", "Runtime", "fit", "setup_runtime"]
