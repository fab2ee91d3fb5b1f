"""The paper's experiment tables and figures, laid out from ``evaluate``'s records.

``evaluate`` groups its per-seed test metrics by stage (fusion, strategy, modality, encoder,
mask and the variant of :func:`amfmedit.stages.names.variant_tag`); this module turns the
groups of an experiment into its table and figure (``docs/experiments.md``):

- Table 5: AUC against R_conf (an R_conf sweep, ``--rconf auto``'s choice, the measured value);
  figure ``rconf_sweep.png`` with the measured R_conf marked;
- learning curves: AUC against the label fraction, one line per fusion x strategy (and
  baseline); figure ``learning_curve.png``;
- Table 1: the supervised tabular baseline per tabular encoder;
- Table 6: the auxiliary losses switched on / off.

A table appears only when its experiment was run. :func:`ordinary` returns the groups that
belong in the Table 2 layout (no sweep member, ablation row or label fraction).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from amfmedit.figures import pyplot, save
from amfmedit.io import read_json
from amfmedit.models import FUSIONS, amf_split, options_of
from amfmedit.stages import names
from amfmedit.stages.rconf import read_rconf
from amfmedit.stages.tables import encoder_title, fusion_title, mean_std, metric_scale, metric_title, model_title
from amfmedit.train import rundir

RCONF_FIGURE = "rconf_sweep.png"
CURVE_FIGURE = "learning_curve.png"


def _variant(g: dict) -> dict:
    return g.get("variant") or {}


def ordinary(groups: list[dict]) -> list[dict]:
    """Groups of the Table 2 layout: no R_conf sweep member, ablation row or label fraction
    (an encoder-sweep baseline is an ordinary Table 2 row under its encoder)."""
    return [g for g in groups if not names.is_variant({**_variant(g), "encoder": None})]


def _uses_rconf(g: dict) -> bool:
    return g["fusion"] != names.NO_FUSION and "r_conf" in getattr(FUSIONS.get(g["fusion"]), "run_inputs", ())


def _config(run: rundir.Run, g: dict) -> dict:
    stages = g.get("stages") or []
    path = run.stage(stages[0]) / rundir.CONFIG_FILE if stages else None
    return read_json(path) if path is not None and path.is_file() else {}


def _d_out(run: rundir.Run, g: dict) -> int | None:
    cfg = _config(run, g).get("config") or {}
    return cfg.get("d_out") or options_of(FUSIONS[g["fusion"]]).get("d_out")


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _n(g: dict) -> int:
    return len(_finite(g["values"]))


def _fraction(g: dict) -> float:
    return _variant(g).get("fraction") or 1.0


# ----------------------------------------------------------------------------------------------
# Table 5: R_conf
# ----------------------------------------------------------------------------------------------


def rconf_sets(groups: list[dict]) -> dict[tuple, list[dict]]:
    """Groups of fusions with run input R_conf, by everything but R_conf, where a sweep or ``auto`` was run."""
    sets = defaultdict(list)
    for g in groups:
        if _uses_rconf(g) and g.get("r_conf") is not None:
            v = _variant(g)
            sets[(g["fusion"], g["strategy"], g.get("mask"), tuple(v.get("off") or ()), v.get("fraction"),
                  v.get("missing"))].append(g)
    return {k: sorted(v, key=lambda g: g["r_conf"]) for k, v in sets.items()
            if any(_variant(g).get("rconf") is not None for g in v)}


def _measured(run: rundir.Run, key: tuple, rows: list[dict]) -> float | None:
    """The R_conf ``amfmedit rconf`` measured for these groups (same masked table and label fraction)."""
    return read_rconf(run, rows[0].get("mask_features") or (), key[4] or 1.0, key[5])


def table5_markdown(run: rundir.Run, groups: list[dict], *, metric: str) -> str:
    """Table 5's layout per fusion x strategy: R_conf, L_img / L_tab (eq. 6), metric mean ± std."""
    out = []
    for key, rows in rconf_sets(groups).items():
        fusion, strategy, mask, off, fraction, missing = key
        measured = _measured(run, key, rows)
        head = f"**{fusion_title(fusion)}, {strategy}**"
        extras = [f"mask {mask}" if mask else "", f"losses off: {'+'.join(off)}" if off else "",
                  f"label fraction {fraction:g}" if fraction else "", f"--missing {missing}" if missing else ""]
        head += "".join(f", {e}" for e in extras if e)
        if measured is not None:
            head += f"; measured R_conf {measured:.4f}"
        out.append(head + "\n\n")
        out.append(f"| R_conf | L_img / L_tab | {metric_title(metric)} | seeds |\n|---:|---|---|---:|\n")
        for g in rows:
            r = g["r_conf"]
            d_out = _d_out(run, g)
            split = " / ".join(map(str, amf_split(d_out, r))) if d_out else "—"
            tag = _variant(g).get("rconf")
            label = f"{r:g}"
            if tag == names.AUTO:
                auto = _config(run, g).get("rconf_auto") or {}
                tried = ", ".join(f"{c['r_conf']:g}" for c in auto.get("candidates", []))
                label += f" (auto, chosen on validation from {tried})" if tried else " (auto)"
            elif tag is None:
                label += " (measured)" if measured is not None and abs(r - measured) < 1e-9 else " (given)"
            out.append(f"| {label} | {split} | {mean_std(g['values'], metric_scale(metric))} | {_n(g)} |\n")
        out.append("\n")
    return "".join(out)


def plot_rconf(run: rundir.Run, groups: list[dict], path: Path, *, metric: str) -> Path | None:
    """Metric (mean ± std over seeds) against R_conf, one line per fusion x strategy; the measured
    R_conf a dashed vertical line, ``--rconf auto``'s choice a star."""
    sets = rconf_sets(groups)
    if not sets:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    measured_drawn = set()
    for i, (key, rows) in enumerate(sets.items()):
        color = f"C{i}"
        swept = [g for g in rows if _variant(g).get("rconf") != names.AUTO]
        x = [g["r_conf"] for g in swept]
        y = [100 * np.mean(_finite(g["values"])) if _finite(g["values"]) else np.nan for g in swept]
        e = [100 * np.std(_finite(g["values"]), ddof=1) if _n(g) > 1 else 0.0 for g in swept]
        label = f"{fusion_title(key[0])}, {key[1]}" + (f", fraction {key[4]:g}" if key[4] else "") + \
            (f", off {'+'.join(key[3])}" if key[3] else "")
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, color=color, label=label)
        for g in rows:
            if _variant(g).get("rconf") == names.AUTO and _finite(g["values"]):
                ax.plot([g["r_conf"]], [100 * np.mean(_finite(g["values"]))], marker="*", ms=14, color=color,
                        ls="none", label=f"auto ({g['r_conf']:g})")
        measured = _measured(run, key, rows)
        if measured is not None and measured not in measured_drawn:
            measured_drawn.add(measured)
            ax.axvline(measured, ls="--", color="grey", lw=1, label=f"measured R_conf {measured:.3g}")
    ax.set_xlabel("R_conf")
    ax.set_ylabel(metric_title(metric))
    ax.set_title("Performance against R_conf (Table 5)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, plt)


# ----------------------------------------------------------------------------------------------
# learning curves
# ----------------------------------------------------------------------------------------------


def curve_lines(groups: list[dict]) -> dict[str, dict[float, dict]]:
    """Line label -> {label fraction: group}, for every model trained on at least one fraction < 1."""
    lines: dict[str, dict[float, dict]] = defaultdict(dict)
    for g in groups:
        v = _variant(g)
        label = model_title(g["fusion"], g["strategy"], g.get("modality"), g.get("encoder"))
        extras = [f"R_conf {v['rconf']}" if v.get("rconf") is not None else "",
                  f"losses off: {'+'.join(v['off'])}" if v.get("off") else "", f"mask {g['mask']}" if g.get("mask") else ""]
        label += "".join(f", {e}" for e in extras if e)
        lines[label][_fraction(g)] = g
    return {k: dict(sorted(v.items())) for k, v in lines.items() if any(f < 1 for f in v)}


def curve_markdown(groups: list[dict], *, metric: str) -> str:
    lines = curve_lines(groups)
    if not lines:
        return ""
    fractions = sorted({f for line in lines.values() for f in line})
    out = ["| Model | " + " | ".join(f"{f:g}" for f in fractions) + " |\n",
           "|---|" + "---|" * len(fractions) + "\n"]
    for label, line in lines.items():
        cells = (mean_std(line[f]["values"], metric_scale(metric)) if f in line else "-" for f in fractions)
        out.append(f"| {label} | " + " | ".join(cells)
                   + " |\n")
    return "".join(out)


def plot_curve(groups: list[dict], path: Path, *, metric: str) -> Path | None:
    """Metric (mean ± std over seeds) against the label fraction (log axis), one line per model."""
    lines = curve_lines(groups)
    if not lines:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, line in lines.items():
        f = list(line)
        y = [100 * np.mean(_finite(g["values"])) if _finite(g["values"]) else np.nan for g in line.values()]
        e = [100 * np.std(_finite(g["values"]), ddof=1) if _n(g) > 1 else 0.0 for g in line.values()]
        ax.errorbar(f, y, yerr=e, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of the training labels")
    ax.set_ylabel(metric_title(metric))
    ax.set_title("Learning curves")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, plt)


# ----------------------------------------------------------------------------------------------
# Table 1 and Table 6
# ----------------------------------------------------------------------------------------------


def table1_markdown(groups: list[dict], *, metric: str) -> str:
    """Table 1: the supervised tabular baseline of each encoder (when several were trained)."""
    rows = [g for g in groups if g["fusion"] == names.NO_FUSION and g.get("modality") == "tabular"
            and not g.get("mask") and not names.is_variant({**_variant(g), "encoder": None})]
    if not any(_variant(g).get("encoder") for g in rows):
        return ""
    swept = {_variant(g)["encoder"] for g in rows if _variant(g).get("encoder")}
    rows = [g for g in rows if _variant(g).get("encoder") or g.get("encoder") not in swept]  # one row per encoder
    out = [f"| Tabular encoder | {metric_title(metric)} | seeds |\n|---|---|---:|\n"]
    for g in rows:
        out.append(f"| {encoder_title(g.get('encoder'))} | {mean_std(g['values'], metric_scale(metric))} | {_n(g)} |\n")
    return "".join(out)


def table6_markdown(run: rundir.Run, groups: list[dict], *, metric: str) -> str:
    """Table 6: each auxiliary loss on (its weight) or off, per fusion x strategy, where an ablation ran."""
    sets = defaultdict(list)
    for g in groups:
        if g["fusion"] == names.NO_FUSION or not FUSIONS[g["fusion"]].aux_weights:
            continue
        v = _variant(g)
        sets[(g["fusion"], g["strategy"], g.get("mask"), v.get("rconf"), v.get("fraction"))].append(g)
    out = []
    for (fusion, strategy, mask, rconf, fraction), rows in sets.items():
        if not any(_variant(g).get("off") for g in rows):
            continue
        losses = list(FUSIONS[fusion].aux_weights)
        head = f"**{fusion_title(fusion)}, {strategy}**" + (f", R_conf {rconf}" if rconf is not None else "") + \
            (f", label fraction {fraction:g}" if fraction else "") + (f", mask {mask}" if mask else "")
        out.append(head + "\n\n| " + " | ".join(f"{n} loss" for n in losses) + f" | {metric_title(metric)} | seeds |\n")
        out.append("|" + "---|" * len(losses) + "---|---:|\n")
        rows = sorted(rows, key=lambda g: (len(_variant(g).get("off") or ()), _variant(g).get("off") or ()))
        for g in rows:
            off = set(_variant(g).get("off") or ())
            weights = ((_config(run, g).get("config") or {}).get("recipe") or {}).get("aux_weights") or {}
            cells = ["✗" if n in off else f"✓ ({weights.get(n, FUSIONS[fusion].aux_weights[n]):g})" for n in losses]
            out.append("| " + " | ".join(cells) + f" | {mean_std(g['values'], metric_scale(metric))} | {_n(g)} |\n")
        out.append("\n")
    return "".join(out)


# ----------------------------------------------------------------------------------------------
# the sections of results.md
# ----------------------------------------------------------------------------------------------


def write(run: rundir.Run, folder: Path, groups: list[dict], *, metric: str) -> str:
    """Draw the experiments' figures into ``folder`` and return their markdown sections ("" when none ran)."""
    parts = []
    t5 = table5_markdown(run, groups, metric=metric)
    if t5:
        fig = plot_rconf(run, groups, folder / RCONF_FIGURE, metric=metric)
        parts.append("\n## R_conf (Table 5)\n\nTest metric, mean ± std over seeds (%), against R_conf; L_img / L_tab "
                     "from eq. 6. `auto`: chosen on the validation split with the first seed.\n\n" + t5 +
                     (f"![AUC against R_conf]({fig.name})\n" if fig else ""))
    curve = curve_markdown(groups, metric=metric)
    if curve:
        fig = plot_curve(groups, folder / CURVE_FIGURE, metric=metric)
        parts.append("\n## Label fractions\n\nTest metric, mean ± std over seeds (%), against the fraction of the "
                     "training labels (stratified, nested, fixed per seed; pretraining used every training row).\n\n"
                     + curve + (f"\n![Learning curves]({fig.name})\n" if fig else ""))
    t1 = table1_markdown(groups, metric=metric)
    if t1:
        parts.append("\n## Tabular encoders, supervised (Table 1)\n\n" + t1)
    t6 = table6_markdown(run, groups, metric=metric)
    if t6:
        parts.append("\n## Loss ablation (Table 6)\n\n✓ (λ): the auxiliary loss with its weight in eq. 14; ✗: "
                     "switched off.\n\n" + t6)
    return "".join(parts)


def _pyplot():
    return pyplot()


def _save(fig, path: Path, plt) -> Path:
    return save(fig, path)
