"""``evaluate`` by availability pattern: the same statistics on the rows of each pattern.

A split with incomplete rows is scored three more times, on its complete rows, its rows without
an image ("table only") and its rows without a table ("image only"): every metric with its
interval and the paired comparisons, from the prediction kind's own statistics object
(``kind.statistics``), so nothing here depends on the kind. Each model is the one evaluated on
the whole split: its operating point and temperature come from the whole validation split (what
``predict`` applies), and the pattern's test rows are scored with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amfmedit.io import write_text
from amfmedit.stages import availability, evalstats
from amfmedit.stats import compare


@dataclass
class PatternStats:
    """One availability pattern of the scored split and the kind's statistics on its rows."""

    key: str  # availability.PATTERNS key
    title: str  # "complete", "table only", "image only"
    rows: np.ndarray  # (n,) positions in the scored split
    stats: object  # the kind's statistics object

    @property
    def n(self) -> int:
        return len(self.rows)

    def files(self) -> tuple[str, str]:
        """This pattern's comparison files (``comparisons-<key>.md`` / ``.csv``)."""
        return f"comparisons-{self.key}.md", f"comparisons-{self.key}.csv"


def by_pattern(kind, dataset, rows: np.ndarray, y_val, y_test, preds: dict, *, spec: str, split: str,
               schema) -> list[PatternStats]:
    """The statistics of every pattern with rows in ``rows`` (the scored split's dataset rows, in the
    order of ``y_test`` and of each model's ``preds[name].test`` (S, N, ...)); [] when every row is
    complete (the overall figures are then the complete rows')."""
    masks = availability.pattern_rows(dataset, rows)
    if masks["complete"].all():
        return []
    out = []
    for key, mask in masks.items():
        if not mask.any():
            continue
        sub = {name: evalstats.ModelPredictions(p.val, np.asarray(p.test)[:, mask]) for name, p in preds.items()}
        stats = kind.statistics(y_val, np.asarray(y_test)[mask], sub, spec=spec, split=split, schema=schema)
        out.append(PatternStats(key, availability.PATTERNS[key][0], np.flatnonzero(mask), stats))
    return out


def _demoted(text: str, pattern: PatternStats) -> str:
    """A statistics section under a pattern's heading: headings two levels down, its comparison files."""
    md, csv = pattern.files()
    text = text.replace("\n### ", "\n##### ").replace("\n## ", "\n#### ")
    return text.replace("(comparisons.md)", f"({md})").replace("(comparisons.csv)", f"({csv})")


def overview(kind, patterns: list[PatternStats], overall) -> str:
    """Headline metric with its interval: one row per model, a column per pattern and overall."""
    key, label = kind.headline.key, kind.headline.label
    cols = [("overall", overall), *((f"{p.title} (n={p.n})", p.stats) for p in patterns)]
    lines = ["| Model | " + " | ".join(f"{label} {c}" for c, _ in cols) + " |",
             "|---|" + "--:|" * len(cols)]
    for name in overall.summary.models:
        cells = [_cell(s, name, key) for _, s in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(stats, name: str, key: str) -> str:
    iv = stats.model_record(name)["intervals"].get(key)
    if not iv or iv.get("estimate") is None or not np.isfinite(iv["estimate"]):
        return "n/a"
    if iv.get("low") is None or not np.isfinite(iv["low"]):
        return f"{iv['estimate']:.3f}"
    return f"{iv['estimate']:.3f} ({iv['low']:.3f}-{iv['high']:.3f})"


def markdown(kind, patterns: list[PatternStats], overall, split: str) -> str:
    """``results.md``'s section: the overview, then each pattern's statistics."""
    if not patterns:
        return ""
    where = evalstats.split_word(split)
    parts = [f"\n## By availability pattern\n\nThe {where} split's rows by the inputs they have: complete (an image "
             "and a table), table only (no image), image only (no table). Each model is the one evaluated above "
             "(operating point and temperature from the whole validation split, as `predict` applies them) scored "
             "on the pattern's rows; a row without a modality is scored from the model's learned absent-modality "
             "vector (docs/missing-data.md).\n\n", overview(kind, patterns, overall)]
    for p in patterns:
        parts.append(f"\n### {p.title.capitalize()} ({p.n} rows)\n")
        parts.append(_demoted(p.stats.markdown(), p))
    return "".join(parts)


def terminal(kind, patterns: list[PatternStats], overall) -> str:
    """The terminal's section: the headline with its interval per pattern and model (80 columns)."""
    if not patterns:
        return ""
    key, label = kind.headline.key, kind.headline.label
    lines = [f"| Rows | Model | {label} (95% CI) |", "|---|---|--:|"]
    for title, stats in (("all", overall), *((f"{p.title} ({p.n})", p.stats) for p in patterns)):
        for name in stats.summary.models:
            lines.append(f"| {title} | {name} | {_cell(stats, name, key)} |")
    return "\n## By availability pattern\n\n" + "\n".join(lines) + "\n"


def record(patterns: list[PatternStats], titles: list[str]) -> dict:
    """``metrics.json``'s ``patterns``: per pattern its rows, every model's record and the comparisons."""
    return {p.key: {"title": p.title, "rows": p.n,
                    "models": {t: p.stats.model_record(t) for t in titles},
                    "comparisons": p.stats.summary.comparisons.to_dict() if p.stats.summary.comparisons else None,
                    "warnings": list(p.stats.warnings)} for p in patterns}


def write(folder: Path, patterns: list[PatternStats], run_name: str) -> None:
    """Each pattern's ``comparisons-<key>.md`` / ``.csv``."""
    for p in patterns:
        md, csv = p.files()
        table = p.stats.summary.comparisons
        title = f"Paired comparisons on the {p.title} rows, run {run_name}"
        if table is None:
            write_text(folder / md, f"# {title}\n\nOne classifier in this run: nothing to compare.\n")
            write_text(folder / csv, ",".join(compare.CSV_COLUMNS) + "\n")
        else:
            write_text(folder / md, compare.render_markdown(table, title=title))
            write_text(folder / csv, compare.render_csv(table))


def pattern_of(dataset, rows: np.ndarray) -> np.ndarray:
    """(N,) str: each row's availability pattern in words, for prediction files."""
    img, tab = dataset.image_present[rows], dataset.table_present[rows]
    return np.array([availability.pattern_title(bool(i), bool(t)) for i, t in zip(img, tab)], dtype=object)
