"""Tables a person reads: the paper's Table 2 (fusion x encoder, frozen / trainable) and Table 4
(incomplete tabular data) layouts and the per-stage table of ``evaluate``.

Row titles come from the registries (each fusion's and encoder's ``title``), so a newly
registered member appears under its own name.
"""

from __future__ import annotations

import math

import numpy as np

from amfmedit.models import FUSIONS, TABULAR_ENCODERS
from amfmedit.stages.kinds import PREDICTION_KINDS
from amfmedit.stages.names import NO_FUSION

SUPERVISED = "Supervised"


def fusion_title(kind: str) -> str:
    return SUPERVISED if kind == NO_FUSION else getattr(FUSIONS.get(kind), "title", kind)


def encoder_title(kind: str | None) -> str:
    return getattr(TABULAR_ENCODERS.get(kind or ""), "title", kind or "—")


def _headline(metric: str):
    return next((k.headline for k in PREDICTION_KINDS.values() if k.headline.key == metric), None)


def metric_scale(metric: str) -> float:
    """100 for a metric tables show in % (AUC, C-index), 1 for one shown in its own unit (RMSE)."""
    m = _headline(metric)
    return 100.0 if m is None or m.percent else 1.0


def metric_title(metric: str, percent: bool = True) -> str:
    """Column title of a kind's headline metric by its key: ``AUC (%)`` for binary tasks, ``ACC (%)`` for
    multiclass ones, ``RMSE`` for regression (the label each prediction kind declares)."""
    m = _headline(metric)
    name = m.label if m is not None else metric.upper()
    return f"{name} (%)" if percent and metric_scale(metric) == 100.0 else name


def model_title(fusion: str, strategy: str, modality: str | None, encoder: str | None) -> str:
    """The paper's name of a classifier, e.g. "AMF module + FT-Mamba, trainable"."""
    if fusion == NO_FUSION:
        return f"{SUPERVISED} ResNet (image only)" if modality == "image" else f"{SUPERVISED} {encoder_title(encoder)}"
    return f"{fusion_title(fusion)} + {encoder_title(encoder)}, {strategy}"


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
    title = metric_title(metric)
    scale = metric_scale(metric)
    lines = [
        f"| Fusion method | Tabular encoder | Frozen {title} | Trainable {title} |",
        "|---|---|---|---|",
    ]
    cells: dict[tuple[str, str], dict[str, str]] = {}
    order: list[tuple[str, str]] = []
    for g in groups:
        key = _row_key(g)
        if key not in cells:
            cells[key] = {}
            order.append(key)
        n = len([v for v in g["values"] if v is not None and math.isfinite(v)])
        cell = mean_std(g["values"], scale)
        cells[key][g["strategy"]] = f"{cell} (n={n})" if n > 1 else cell
    rank = {t: i for i, t in enumerate([*(fusion_title(k) for k in FUSIONS), SUPERVISED])}
    order.sort(key=lambda k: (rank.get(k[0], 99), k[1]))
    prev = None
    for fusion, encoder in order:
        row = cells[(fusion, encoder)]
        lines.append(
            f"| {fusion if fusion != prev else ''} | {encoder} | {row.get('frozen', '-')} | {row.get('trainable', '-')} |"
        )
        prev = fusion
    if oracle is not None and math.isfinite(oracle):
        lines.append(f"| Oracle (true risk) | — | {oracle * scale:.2f} | {oracle * scale:.2f} |")
    return "\n".join(lines) + "\n"


def _row_key(g: dict) -> tuple[str, str]:
    """(fusion title, encoder cell) of a group of ``evaluate``'s records."""
    if g["fusion"] != NO_FUSION:
        return fusion_title(g["fusion"]), encoder_title(g.get("encoder"))
    if g.get("modality") == "image":
        return SUPERVISED, "— (ResNet-50, image only)"
    return SUPERVISED, f"{encoder_title(g.get('encoder'))} (tabular only)"


def incomplete_markdown(groups: list[dict], *, metric: str) -> str:
    """Table 4 layout: each masked group's metric and its drop against the complete-data group.

    ``groups`` are ``evaluate``'s records (fusion, strategy, modality, encoder, values, mean and,
    for masked stages, ``mask`` = the stage-name tag, ``mask_features`` and ``r_conf``). The drop
    is complete mean − masked mean in points; "—" when the run has no complete counterpart.
    Returns "" when no group is masked.
    """

    def key(g: dict) -> tuple:
        return (g["fusion"], g.get("modality"), g.get("encoder"))

    complete = {(key(g), g["strategy"]): g for g in groups if not g.get("mask")}
    rows: dict[tuple, dict] = {}
    for g in groups:
        if not g.get("mask"):
            continue
        r_conf = g.get("r_conf")
        row = rows.setdefault((key(g), g["mask"], r_conf), {"features": g.get("mask_features") or [g["mask"]],
                                                             "title": _row_key(g)})
        ref = complete.get((key(g), g["strategy"]))
        drop = "—"
        if ref is not None and math.isfinite(ref.get("mean", math.nan)) and math.isfinite(g.get("mean", math.nan)):
            drop = f"{(ref['mean'] - g['mean']) * metric_scale(metric):.2f}"
        row[g["strategy"]] = (mean_std(g["values"], metric_scale(metric)), drop)
    if not rows:
        return ""
    title = metric_title(metric)
    lines = [f"| Fusion method | Tabular encoder | Masked features | R_conf | Frozen {title} | Drop | "
             f"Trainable {title} | Drop |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for (_key, _tag, r_conf), row in rows.items():
        name, enc = row["title"]
        fz, tr = row.get("frozen", ("-", "-")), row.get("trainable", ("-", "-"))
        rc = f"{r_conf:.2f}" if isinstance(r_conf, (int, float)) else "-"
        lines.append(f"| {name} | {enc} | {', '.join(row['features'])} | {rc} | {fz[0]} | {fz[1]} | {tr[0]} | {tr[1]} |")
    return "\n".join(lines) + "\n"


def stage_markdown(rows: list[dict], keys: list[str], headers: dict[str, str] | None = None) -> str:
    """One row per stage folder with its test metrics (``headers``: a column title per key, else the key)."""
    headers = headers or {}
    lines = ["| stage | " + " | ".join(headers.get(k, k) for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for r in rows:
        vals = []
        for k in keys:
            v = r.get(k)
            vals.append("-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else
                        (f"{v:.4f}" if isinstance(v, float) else str(v)))
        lines.append(f"| {r['stage']} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"
