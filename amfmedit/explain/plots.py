"""Drawing, kept apart from computing: importance plots (Figs. 4-5), CAM grids (Fig. 6), curves.

Every function takes plain arrays / DataFrames and writes one PNG atomically; matplotlib runs
on the Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

_GROUP_COLOURS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C",
                  "#CCB974", "#64B5CD"]
LOW_COLOUR = "#BFD7EA"  # Fig. 5a's light blue for low-importance features


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    from amfmedit.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi)
    _plt().close(fig)
    return path


def _group_colours(groups: Sequence[str]) -> dict[str, str]:
    order = list(dict.fromkeys(groups))
    return {g: _GROUP_COLOURS[i % len(_GROUP_COLOURS)] for i, g in enumerate(order)}


def importance_distribution(table, names: Sequence[str], path, title: str, label_top: int = 5) -> Path:
    """Fig. 4: every feature's importance (%) in model input order, coloured by group.

    ``table``: the importance DataFrame; ``names``: features in input order. Informative
    features of a synthetic cohort get a black tick under their bar.
    """
    plt = _plt()
    t = table.set_index("name").loc[list(names)]
    colours = _group_colours(t["group"])
    x = np.arange(len(t))
    fig, ax = plt.subplots(figsize=(min(16, 7 + len(t) / 40), 3.6), dpi=110)
    ax.bar(x, t["importance_pct"], width=1.0, color=[colours[g] for g in t["group"]], linewidth=0)
    if "informative" in t.columns:
        inf = np.flatnonzero(t["informative"].to_numpy(bool))
        ax.plot(x[inf], np.full(len(inf), -0.02 * max(t["importance_pct"].max(), 1e-9)), "k|", ms=8,
                label="informative (generator)")
    for name in t.sort_values("importance_pct", ascending=False).index[:label_top]:
        i = list(t.index).index(name)
        ax.annotate(name, (i, t.loc[name, "importance_pct"]), xytext=(0, 3), textcoords="offset points",
                    ha="center", fontsize=7, rotation=30)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    labels = list(colours)
    if "informative" in t.columns:
        h, lab = ax.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xlim(-0.5, len(t) - 0.5)
    ax.set_xlabel(f"feature (model input order, {len(t)} features)")
    ax.set_ylabel("importance (% of total)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def top_features(table, k: int, path, title: str) -> Path:
    """Horizontal bars of the ``k`` most important features (Figs. 5b-c)."""
    plt = _plt()
    top = table.head(k).iloc[::-1]
    if "informative" in top.columns:
        colours = ["#C44E52" if v else "#4C72B0" for v in top["informative"]]
    else:
        colours = ["#4C72B0"] * len(top)
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(top) + 1.2), dpi=110)
    ax.barh(np.arange(len(top)), top["importance_pct"], color=colours)
    ax.set_yticks(np.arange(len(top)), top["name"], fontsize=8)
    for i, v in enumerate(top["importance_pct"]):
        ax.annotate(f"{v:.2f}%", (v, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_xlabel("importance (% of total)")
    ax.set_title(title, fontsize=10)
    if "informative" in top.columns:
        ax.legend([plt.Rectangle((0, 0), 1, 1, color=c) for c in ("#C44E52", "#4C72B0")],
                  ["informative (generator)", "not informative"], fontsize=7, loc="lower right")
    ax.set_xlim(0, top["importance_pct"].max() * 1.18 if len(top) else 1)
    fig.tight_layout()
    return _save(fig, path)


def group_breakdown(shares: dict[str, float], path, title: str, truth: dict[str, float] | None = None) -> Path:
    """Fig. 5a: one 100% bar split into the low-importance bucket and high-importance groups.

    ``truth`` (synthetic cohorts): a second bar split into low importance / high and informative /
    high and not informative, the generator's analogue of the paper's medical relevance.
    """
    plt = _plt()
    bars = [("by group", shares)] + ([("by ground truth", truth)] if truth else [])
    keys = list(dict.fromkeys(k for _, d in bars for k in d))
    colours = {k: (LOW_COLOUR if k.startswith("low importance") else c)
               for k, c in zip(keys, [_GROUP_COLOURS[i % len(_GROUP_COLOURS)] for i in range(len(keys))])}
    if truth:
        colours.update({k: c for k, c in zip(list(truth)[1:], ("#E377C2", "#1F3A93"))})
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.55 * len(bars)), dpi=110)
    for y, (_, d) in enumerate(bars):
        left = 0.0
        for k, v in d.items():
            ax.barh(y, v, left=left, color=colours[k], edgecolor="white", label=k if y == 0 or k not in shares else None)
            if v >= 4:
                ax.text(left + v / 2, y, f"{v:.0f}%", ha="center", va="center", fontsize=7)
            left += v
    ax.set_yticks(range(len(bars)), [b for b, _ in bars], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of total importance (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def _outline(ax, mask: np.ndarray) -> None:
    if mask is not None and mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=0.6)


def cam_grid(overlays: Sequence[np.ndarray], titles: Sequence[str], path, title: str,
             outlines: Sequence[np.ndarray] | None = None, columns: int = 4) -> Path:
    """A grid of CAM overlays (H, W, 3) uint8 with per-case titles; optional region outlines."""
    plt = _plt()
    n = max(len(overlays), 1)
    cols = min(columns, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows + 0.4), dpi=110, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(overlays):
            ax.imshow(overlays[i])
            if outlines is not None:
                _outline(ax, outlines[i])
            ax.set_title(titles[i], fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))  # room for the title above the first row
    return _save(fig, path)


def single_overlay(image: np.ndarray, path, title: str, outline: np.ndarray | None = None) -> Path:
    """One overlay in its own PNG."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.2, 3.4), dpi=110)
    ax.imshow(image)
    if outline is not None:
        _outline(ax, outline)
    ax.axis("off")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def compare_grid(cells: list[list[np.ndarray]], row_titles: Sequence[str], col_titles: Sequence[str], path,
                 title: str) -> Path:
    """Rows = patients, columns = runs: the same patients' CAMs side by side."""
    plt = _plt()
    n_rows, n_cols = len(cells), len(col_titles)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols + 0.6, 2.4 * n_rows + 0.5), dpi=110,
                             squeeze=False)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(cells[r][c])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_titles[c], fontsize=7)
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    return _save(fig, path)


def training_curves(history: list[dict], path, title: str) -> Path | None:
    """Loss curves from ``metrics.jsonl`` records (train_loss, val_loss, and a probe metric if logged)."""
    if not history:
        return None
    plt = _plt()
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    extra = [k for k in ("probe_auc", "probe_acc", "val_auc", "val_acc") if any(k in h for h in history)]
    fig, axes = plt.subplots(1, 2 if extra else 1, figsize=(9 if extra else 5, 3.4), dpi=110, squeeze=False)
    ax = axes[0, 0]
    for key in ("train_loss", "val_loss"):
        ys = [h.get(key, np.nan) for h in history]
        if np.isfinite(np.asarray(ys, dtype=float)).any():
            ax.plot(epochs, ys, marker="o" if len(epochs) < 30 else None, ms=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    if extra:
        ax2 = axes[0, 1]
        for key in extra:
            pts = [(e, h[key]) for e, h in zip(epochs, history) if key in h]
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=key)
        ax2.set_xlabel("epoch")
        ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
