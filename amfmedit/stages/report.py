"""Reports a person opens: the results table in the layout of the paper's Table 2, ROC plots.

Drawing is kept apart from computing; matplotlib runs on the Agg backend (no display).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

FUSION_TITLES = {"concat": "Concatenation", "cross_attention": "Cross-attention", "amf": "AMF module"}
ENCODER_TITLES = {"mlp": "MLP", "resnet": "ResNet", "ft_transformer": "FT-Transformer", "ft_mamba": "FT-Mamba"}
STRATEGIES = ("frozen", "trainable")


def mean_std(values: list[float], scale: float = 100.0) -> str:
    """``"76.97 ± 0.75"`` (sample standard deviation, as over the paper's five seeds)."""
    vals = [v * scale for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{np.mean(vals):.2f} ± {np.std(vals, ddof=1):.2f}"


def table2_markdown(groups: list[dict], *, metric: str, oracle: float | None = None) -> str:
    """Markdown table with rows (fusion method, tabular encoder) and columns frozen / trainable.

    Args:
        groups: dicts with ``kind`` ('fusion' or 'supervised'), ``fusion``/``modality``,
            ``encoder``, ``strategy`` and ``values`` (one test metric per seed, in [0, 1]).
        metric: 'auc' or 'acc' (column title).
        oracle: the true-risk AUC of a synthetic cohort's test split, shown as its own row.
    """
    title = "AUC (%)" if metric == "auc" else "ACC (%)"
    lines = [
        f"| Fusion method | Tabular encoder | Frozen {title} | Trainable {title} |",
        "|---|---|---|---|",
    ]
    cells: dict[tuple[str, str], dict[str, str]] = {}
    order: list[tuple[str, str]] = []
    for g in groups:
        if g["kind"] == "fusion":
            key = (FUSION_TITLES.get(g["fusion"], g["fusion"]), ENCODER_TITLES.get(g["encoder"], g["encoder"]))
        elif g["modality"] == "image":
            key = ("Supervised", "— (ResNet-50, image only)")
        else:
            key = ("Supervised", f"{ENCODER_TITLES.get(g['encoder'], g['encoder'])} (tabular only)")
        if key not in cells:
            cells[key] = {}
            order.append(key)
        n = len([v for v in g["values"] if v is not None and math.isfinite(v)])
        cells[key][g["strategy"]] = f"{mean_std(g['values'])} (n={n})" if n > 1 else mean_std(g["values"])
    rank = {t: i for i, t in enumerate([*FUSION_TITLES.values(), "Supervised"])}
    order.sort(key=lambda k: (rank.get(k[0], 99), k[1]))
    prev = None
    for fusion, encoder in order:
        row = cells[(fusion, encoder)]
        lines.append(
            f"| {fusion if fusion != prev else ''} | {encoder} | {row.get('frozen', '-')} | {row.get('trainable', '-')} |"
        )
        prev = fusion
    if oracle is not None and math.isfinite(oracle):
        lines.append(f"| Oracle (true risk) | — | {oracle * 100:.2f} | {oracle * 100:.2f} |")
    return "\n".join(lines) + "\n"


def stage_markdown(rows: list[dict], keys: list[str]) -> str:
    """One row per stage folder with its test metrics."""
    lines = ["| stage | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for r in rows:
        vals = []
        for k in keys:
            v = r.get(k)
            vals.append("-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else
                        (f"{v:.4f}" if isinstance(v, float) else str(v)))
        lines.append(f"| {r['stage']} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: str | Path, title: str) -> None:
    """ROC curves ``{label: (fpr, tpr, auc)}`` in one PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from amfmedit.io import atomic_path

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    for label, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, lw=1.5, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
