"""The training core: one engine, the device-side input pipeline, checkpoints, run directory.

Imports without Typer and Rich; progress goes to a callback the caller provides. Importing the
package (or a torch-free module of it, such as :mod:`amfmedit.train.rundir`) does not import
torch: the engine's names below load with it on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what static tools see; at run time __getattr__ serves these
    from amfmedit.train.engine import FitConfig, FitResult, Progress, fit
    from amfmedit.train.runtime import Runtime, setup_runtime

_FROM_ENGINE = frozenset({"FitConfig", "FitResult", "Progress", "fit"})
_FROM_RUNTIME = frozenset({"Runtime", "setup_runtime"})
__all__ = sorted(_FROM_ENGINE | _FROM_RUNTIME)


def __getattr__(name: str):
    if name in _FROM_ENGINE:
        from amfmedit.train import engine

        return getattr(engine, name)
    if name in _FROM_RUNTIME:
        from amfmedit.train import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
