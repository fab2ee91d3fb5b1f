"""The one home of matplotlib for every figure amfmedit draws: the Agg backend (no display) and
atomic PNG writes (``amfmedit.io.atomic_path``). Drawing modules (:mod:`amfmedit.stats.plots`,
:mod:`amfmedit.explain.plots`, the experiment figures of ``evaluate``) take ``pyplot()`` from here
and hand finished figures to :func:`save`.
"""

from __future__ import annotations

from pathlib import Path

from amfmedit.io import atomic_path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (imported on first use: matplotlib is a deferred package)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path, *, tight: bool = False) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folders made, atomically) and close it.

    ``tight``: crop to the drawn content (``bbox_inches="tight"``), for figures whose legend or
    title may reach past the axes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi, **({"bbox_inches": "tight"} if tight else {}))
    pyplot().close(fig)
    return path
