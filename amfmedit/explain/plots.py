"""Drawing, kept apart from computing: importance plots (Figs. 4-5), CAM grids (Fig. 6), curves.

Every function takes plain arrays / DataFrames and writes one PNG atomically; matplotlib runs
on the Agg backend (no display needed).
"""

from __future__ import annotations

import textwrap
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from amfmedit.figures import pyplot, save

# A qualitative palette (matplotlib's tab10 and the light half of tab20, without the greys and
# the light blue that would read as Fig. 5a's low-importance colour): a group's colour is chosen
# by a stable hash of its name, so the same group has the same colour in every chart.
_GROUP_COLOURS = ["#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#BCBD22",
                  "#17BECF", "#FFBB78", "#98DF8A", "#FF9896", "#C5B0D5", "#C49C94", "#F7B6D2", "#DBDB8D",
                  "#9EDAE5"]
LOW_COLOUR = "#BFD7EA"  # Fig. 5a's light blue for low-importance features
TRUTH_COLOURS = {"high & informative": "#C44E52", "high & not informative": "#4C72B0"}
CAM_CMAP = "jet"  # the colour map of pytorch-grad-cam's overlays
OUTLINE_COLOUR = "white"


def _plt():
    return pyplot()


def _save(fig, path: str | Path) -> Path:
    return save(fig, path)


def _wrap(title: str, width_in: float, fontsize: float) -> str:
    """``title`` broken into lines that fit ``width_in`` inches at ``fontsize`` points."""
    chars = max(20, int(width_in * 72 / (0.55 * fontsize)))  # ~0.55 em per character (DejaVu Sans)
    return "\n".join(textwrap.fill(line, chars) for line in title.split("\n"))


def group_colours(groups: Sequence[str]) -> dict[str, str]:
    """A colour per group name, the same in every chart that is given the same names.

    Each name takes the palette slot of a stable hash (CRC-32) of the name; names whose slot is
    taken (processed in sorted order) take the next free one. Pass every group of the table to
    every chart for an exact match; a chart given a subset gets the same colours unless two
    names of the full set collided.
    """

    out: dict[str, str] = {}
    used: set[int] = set()
    for g in sorted(set(map(str, groups))):
        slot = zlib.crc32(g.encode("utf-8")) % len(_GROUP_COLOURS)
        for step in range(len(_GROUP_COLOURS)):
            k = (slot + step) % len(_GROUP_COLOURS)
            if k not in used or len(used) >= len(_GROUP_COLOURS):
                break
        used.add(k)
        out[g] = _GROUP_COLOURS[k]
    return out


def _place_labels(fig, ax, points: list[tuple[float, float, str]], fontsize: float = 7) -> None:
    """Name bars in a band above the tallest bar, with leader lines; names are pushed sideways so
    that none overlaps another or leaves the axes, and go on a second row when one row is full."""
    if not points:
        return
    renderer = fig.canvas.get_renderer()
    x0, x1 = ax.get_xlim()
    px_per_x = abs(ax.transData.transform((1, 0))[0] - ax.transData.transform((0, 0))[0])
    ax_h = ax.get_window_extent(renderer).height
    pts = sorted(points)
    sizes = []
    for _, _, text in pts:
        probe = ax.text(0, 0, text, fontsize=fontsize)
        box = probe.get_window_extent(renderer)
        probe.remove()
        sizes.append((box.width / px_per_x, box.height))
    gap = 6 / px_per_x
    rows = max(1, int(np.ceil(sum(w + gap for w, _ in sizes) / (0.9 * (x1 - x0)))))
    line = 1.5 * max(h for _, h in sizes) / ax_h  # one row of names, as a fraction of the axes height
    band = rows * line + 0.05
    lo, _ = ax.get_ylim()
    top = max(y for _, y, _ in pts)
    ax.set_ylim(lo, lo + (top - lo) / (1 - band))
    for r in range(rows):
        items = list(range(r, len(pts), rows))
        centre = [pts[i][0] for i in items]
        half = [sizes[i][0] / 2 + gap / 2 for i in items]
        for j in range(len(items)):  # push right past the left edge and the previous name
            floor = x0 + half[j] if j == 0 else centre[j - 1] + half[j - 1] + half[j]
            centre[j] = max(centre[j], floor)
        for j in reversed(range(len(items))):  # then back left inside the right edge
            ceil = x1 - half[j] if j == len(items) - 1 else centre[j + 1] - half[j + 1] - half[j]
            centre[j] = min(centre[j], ceil)
        for j, i in enumerate(items):
            x, y, text = pts[i]
            ax.annotate(text, (x, y), xytext=(centre[j], 1 - 0.02 - r * line), textcoords=("data", "axes fraction"),
                        ha="center", va="top", fontsize=fontsize,
                        arrowprops=dict(arrowstyle="-", lw=0.5, color="0.45", shrinkA=1, shrinkB=1))


def importance_distribution(table, names: Sequence[str], path, title: str, label_top: int = 5,
                            colours: dict[str, str] | None = None) -> Path:
    """Fig. 4: every feature's importance (%) in model input order, coloured by group.

    ``table``: the importance DataFrame; ``names``: features in input order. Informative
    features of a synthetic cohort get a black tick under their bar. The ``label_top`` largest
    bars are named (stacked with leader lines where names would overlap); ``colours``: group ->
    colour (default :func:`group_colours` of the table's groups, as :func:`group_breakdown` uses).
    """
    plt = _plt()
    t = table.set_index("name").loc[list(names)]
    colours = colours or group_colours(t["group"])
    x = np.arange(len(t))
    width = min(16, 7 + len(t) / 40)
    fig, ax = plt.subplots(figsize=(width, 4.0), dpi=110, layout="constrained")
    ax.bar(x, t["importance_pct"], width=1.0 if len(t) > 30 else 0.8,
           color=[colours[str(g)] for g in t["group"]], linewidth=0)
    ymax = max(float(t["importance_pct"].max()), 1e-9)
    ax.set_ylim(-0.04 * ymax if "informative" in t.columns else 0, ymax)
    ax.set_xlim(-0.5, len(t) - 0.5)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[g]) for g in dict.fromkeys(map(str, t["group"]))]
    labels = list(dict.fromkeys(map(str, t["group"])))
    if "informative" in t.columns:
        inf = np.flatnonzero(t["informative"].to_numpy(bool))
        (tick,) = ax.plot(x[inf], np.full(len(inf), -0.02 * ymax), "k|", ms=8)
        handles, labels = handles + [tick], labels + ["informative (generator)"]
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              title="group", title_fontsize=7)
    ax.set_xlabel(f"feature (model input order, {len(t)} features)")
    ax.set_ylabel("importance (% of total)")
    ax.set_title(_wrap(title, width * 0.8, 10), fontsize=10)
    fig.canvas.draw()  # settle the layout before measuring the labels
    top = t.sort_values("importance_pct", ascending=False).head(label_top)
    pos = {n: i for i, n in enumerate(t.index)}
    _place_labels(fig, ax, [(pos[n], float(v), str(n)) for n, v in top["importance_pct"].items()])
    return _save(fig, path)


def top_features(table, k: int, path, title: str) -> Path:
    """Horizontal bars of the ``k`` most important features (Figs. 5b-c), labelled in %."""
    plt = _plt()
    top = table.head(k).iloc[::-1]
    if "informative" in top.columns:
        colours = [TRUTH_COLOURS["high & informative"] if v else TRUTH_COLOURS["high & not informative"]
                   for v in top["informative"]]
    else:
        colours = [TRUTH_COLOURS["high & not informative"]] * len(top)
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(top) + 1.4), dpi=110, layout="constrained")
    ax.barh(np.arange(len(top)), top["importance_pct"], color=colours)
    ax.set_yticks(np.arange(len(top)), top["name"], fontsize=8)
    for i, v in enumerate(top["importance_pct"]):
        ax.annotate(f"{v:.1f}%", (v, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_xlabel("importance (% of total)")
    ax.set_title(_wrap(title, 5.5, 10), fontsize=10)
    if "informative" in top.columns:
        ax.legend([plt.Rectangle((0, 0), 1, 1, color=c) for c in TRUTH_COLOURS.values()],
                  ["informative (generator)", "not informative"], fontsize=7, loc="lower right")
    ax.set_xlim(0, top["importance_pct"].max() * 1.2 if len(top) else 1)
    return _save(fig, path)


def group_breakdown(shares: dict[str, float], path, title: str, truth: dict[str, float] | None = None, *,
                    groups: Sequence[str] | None = None) -> Path:
    """Fig. 5a as labelled horizontal bars: the share (%) of total importance of the low-importance
    bucket and of each group's high-importance features (the bars sum to 100%).

    ``truth`` (synthetic cohorts): a second panel with low importance / high and informative /
    high and not informative, the generator's analogue of the paper's medical relevance.
    ``groups``: every group of the importance table, so that each group has the colour it has in
    :func:`importance_distribution` (default: the groups in ``shares``).
    """
    plt = _plt()
    panels = [("by group", shares)] + ([("by ground truth", truth)] if truth else [])
    palette = group_colours(groups if groups is not None else [k for k in shares if not k.startswith("low importance")])

    def colour(k: str) -> str:
        if k.startswith("low importance"):
            return LOW_COLOUR
        return TRUTH_COLOURS.get(k) or palette.get(k) or group_colours([k])[k]

    n_bars = sum(len(d) for _, d in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 1.3 + 0.32 * n_bars + 0.5 * len(panels)), dpi=110,
                             squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": [max(len(d), 1) for _, d in panels]})
    top = max((v for _, d in panels for v in d.values()), default=1.0)
    for ax, (name, d) in zip(axes[:, 0], panels):
        keys = list(d)[::-1]  # first entry on top
        vals = [float(d[k]) for k in keys]
        ax.barh(np.arange(len(keys)), vals, color=[colour(k) for k in keys], height=0.7)
        ax.set_yticks(np.arange(len(keys)), keys, fontsize=8)
        for i, v in enumerate(vals):
            ax.annotate(f"{v:.1f}%", (v, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        ax.set_xlim(0, min(100.0, top * 1.18) if top > 0 else 1)
        ax.set_ylim(-0.6, len(keys) - 0.4)
        ax.set_title(name, fontsize=8, loc="left")
        ax.spines[["top", "right"]].set_visible(False)
    axes[-1, 0].set_xlabel("share of total importance (%)")
    fig.suptitle(_wrap(title, 6.5, 10), fontsize=10)
    return _save(fig, path)


def _outline(ax, mask: np.ndarray | None) -> bool:
    """Draw the region's edge (white with a black rim, visible on grey and on the heat map)."""
    if mask is None or not mask.any() or mask.all():
        return False
    from matplotlib import patheffects

    cs = ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors=OUTLINE_COLOUR, linewidths=0.8)
    cs.set_path_effects([patheffects.withStroke(linewidth=2.0, foreground="black")])
    return True


def _outline_handle(label: str):
    from matplotlib import patheffects
    from matplotlib.lines import Line2D

    return Line2D([], [], color=OUTLINE_COLOUR, lw=1.2, label=label,
                  path_effects=[patheffects.withStroke(linewidth=2.6, foreground="black")])


def _scaled(cams: Sequence[np.ndarray], scale: str) -> list[np.ndarray]:
    """Maps in [0, 1]: each over its own maximum (``per-map``) or over the largest of all (``common``)."""
    if scale not in ("per-map", "common"):
        raise ValueError(f"scale {scale!r}: use 'per-map' or 'common'")
    maps = [np.clip(np.asarray(c, dtype=np.float64), 0, None) for c in cams]
    tops = [float(m.max()) if m.size else 0.0 for m in maps]
    common = max(tops, default=0.0)
    return [m / (t if scale == "per-map" else common) if t > 0 else np.zeros_like(m) for m, t in zip(maps, tops)]


def _draw_cam(ax, image: np.ndarray, cam01: np.ndarray, outline: np.ndarray | None):
    """The image (grey CT or RGB) with the [0, 1] heat map on top; a note instead of the heat for a zero map."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=255)
    elif img.ndim == 3:
        ax.imshow(np.transpose(img[:3], (1, 2, 0)))
    else:
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
    heat = None
    if cam01.max() > 0:
        heat = ax.imshow(cam01, cmap=CAM_CMAP, vmin=0, vmax=1, alpha=0.45)
    else:
        ax.text(0.5, 0.5, "map is all zero", transform=ax.transAxes, ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round", fc="white", ec="0.3", alpha=0.9))
    drawn = _outline(ax, outline)
    ax.set_xticks([])
    ax.set_yticks([])
    return heat, drawn


def _cam_colourbar(fig, axes, scale: str) -> None:
    import matplotlib as mpl
    from matplotlib.ticker import PercentFormatter

    what = "each map's own maximum" if scale == "per-map" else "the largest value in the figure"
    bar = fig.colorbar(mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, 1), cmap=CAM_CMAP), ax=axes,
                       shrink=0.8, pad=0.02, format=PercentFormatter(1.0))
    bar.set_label(f"Grad-CAM, % of {what}", fontsize=7)
    bar.ax.tick_params(labelsize=7)


def cam_maps_grid(images: Sequence[np.ndarray], cams: Sequence[np.ndarray], titles: Sequence[str], path,
                  title: str, *, scale: str = "per-map", outlines: Sequence[np.ndarray] | None = None,
                  outline_label: str = "signal region", columns: int = 4) -> Path:
    """A grid of CAMs over their images with a colour bar (Fig. 6).

    ``images``: dataset images (C, H, W) uint8; ``cams``: maps (H, W) >= 0 (raw or scaled);
    ``scale``: ``"per-map"`` (each map over its own maximum, as pytorch-grad-cam draws them) or
    ``"common"`` (all over the grid's largest value, so maps compare across cases); all-zero maps
    show the image with the note "map is all zero". ``outlines``: boolean region masks, drawn as a
    white line named ``outline_label`` in the legend.
    """
    plt = _plt()
    n = max(len(images), 1)
    cols = min(columns, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.5 * cols + 1.0, 2.6 * rows + 0.9), dpi=110, squeeze=False,
                             layout="constrained")
    maps = _scaled(cams, scale)
    any_outline = False
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.axis("on")
            _, drawn = _draw_cam(ax, images[i], maps[i], None if outlines is None else outlines[i])
            any_outline |= drawn
            ax.set_title(_wrap(titles[i], 2.3, 7), fontsize=7)
    _cam_colourbar(fig, axes, scale)
    if any_outline:
        fig.legend(handles=[_outline_handle(outline_label)], loc="outside lower center", fontsize=7, frameon=True,
                   facecolor="0.85")
    fig.suptitle(_wrap(title, 2.5 * cols + 0.5, 10), fontsize=10)
    return _save(fig, path)


def cam_map_single(image: np.ndarray, cam: np.ndarray, path, title: str, *, vmax: float | None = None,
                   outline: np.ndarray | None = None, outline_label: str = "signal region") -> Path:
    """One CAM over its image in its own PNG, with a colour bar; ``vmax``: the value drawn as 100%
    (default the map's own maximum; pass a grid's maximum to match a ``common``-scaled grid)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.8, 3.6), dpi=110, layout="constrained")
    m = np.clip(np.asarray(cam, dtype=np.float64), 0, None)
    top = float(m.max()) if vmax is None else float(vmax)
    _, drawn = _draw_cam(ax, image, m / top if top > 0 and m.max() > 0 else np.zeros_like(m), outline)
    _cam_colourbar(fig, ax, "per-map" if vmax is None else "common")
    if drawn:
        ax.legend(handles=[_outline_handle(outline_label)], loc="lower center", bbox_to_anchor=(0.5, -0.14),
                  fontsize=7, frameon=True, facecolor="0.85")
    ax.set_title(_wrap(title, 3.0, 8), fontsize=8)
    return _save(fig, path)


def cam_maps_compare(images: Sequence[np.ndarray], cams_by_run: Sequence[Sequence[np.ndarray]],
                     row_titles: Sequence[str], col_titles: Sequence[str], path, title: str, *,
                     scale: str = "per-map") -> Path:
    """Rows = patients, columns = runs: the same patients' CAMs side by side, with a colour bar.

    ``cams_by_run[c][r]``: run ``c``'s map of patient ``r``; ``scale="common"`` puts every map of
    the figure on one scale (meaningful for models whose gradients are comparable)."""
    plt = _plt()
    n_rows, n_cols = len(images), len(cams_by_run)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.3 * n_cols + 1.4, 2.3 * n_rows + 0.8), dpi=110,
                             squeeze=False, layout="constrained")
    flat = _scaled([c for run in cams_by_run for c in run], scale)
    for c in range(n_cols):
        for r in range(n_rows):
            ax = axes[r, c]
            _draw_cam(ax, images[r], flat[c * n_rows + r], None)
            if r == 0:
                ax.set_title(col_titles[c], fontsize=7)
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=7)
    _cam_colourbar(fig, axes, scale)
    fig.suptitle(_wrap(title, 2.3 * n_cols + 1.0, 10), fontsize=10)
    return _save(fig, path)


def training_curves(history: list[dict], path, title: str, *, chance: float | None = None,
                    chance_label: str = "chance") -> Path | None:
    """Loss curves from ``metrics.jsonl`` records (train_loss, val_loss, and a probe metric if logged).

    Epoch ticks are integers. ``chance``: the loss of a model that learned nothing, drawn as a
    dashed line named ``chance_label`` and kept inside the y range (for the ITC loss, log(batch
    size): pass ``chance=math.log(batch)`` and e.g. ``chance_label="chance, log(batch 32)"``)."""
    if not history:
        return None
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    extra = [k for k in ("probe_auc", "probe_acc", "val_auc", "val_acc") if any(k in h for h in history)]
    fig, axes = plt.subplots(1, 2 if extra else 1, figsize=(9 if extra else 5.2, 3.6), dpi=110, squeeze=False,
                             layout="constrained")
    ax = axes[0, 0]
    for key in ("train_loss", "val_loss"):
        ys = [h.get(key, np.nan) for h in history]
        if np.isfinite(np.asarray(ys, dtype=float)).any():
            ax.plot(epochs, ys, marker="o" if len(epochs) < 30 else None, ms=3, label=key)
    if chance is not None and np.isfinite(chance):
        ax.axhline(chance, color="0.35", ls="--", lw=1.0, label=f"{chance_label} = {chance:.3f}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="best")
    if extra:
        ax2 = axes[0, 1]
        for key in extra:
            pts = [(e, h[key]) for e, h in zip(epochs, history) if key in h]
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=key)
        ax2.set_xlabel("epoch")
        ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax2.legend(fontsize=8)
    fig.suptitle(_wrap(title, 8.5 if extra else 4.8, 10), fontsize=10)
    return _save(fig, path)
