"""``evaluate --missingness-sweep R,... --image-drop Q,...``: every classifier of a run against
test-time missingness (docs/experiments.md).

Two axes, each scored on the same split as the plain evaluation:

- features: a share ``r`` of each row's features removed completely at random (MCAR), as
  ``prepare`` records a value that was never there (imputed value, missing flag set;
  :func:`amfmedit.data.masking.remove_values`);
- images: the image of a share ``q`` of the patients that have one removed
  (:func:`amfmedit.data.masking.drop_images`); the model scores them as rows without a scan.

The removals are drawn from one fixed seed, so every model and seed sees the same cells removed
and the curves compare on the same rows. Each point is the headline metric of the seed-averaged
prediction with the kind's 95 % interval (``kind.probe_score``: DeLong for a binary AUC, a
stratified bootstrap for accuracy), beside the mean ± SD over seeds. At ``r = 0`` and ``q = 0``
nothing is removed and the point is the plain evaluation's. Unimodal baselines are the floors:
an image model does not read the table, a tabular model not the image. Models trained with
features masked (Table 4) keep their own table and are left out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from amfmedit.data.masking import drop_images, remove_values
from amfmedit.errors import UserError
from amfmedit.figures import pyplot, save
from amfmedit.stages import availability, names
from amfmedit.train.tasks import SupervisedTask

FIGURE = "missingness_sweep.png"
#: axis -> (what its rate is, its symbol)
AXES = {"features": ("share of each row's features removed", "r"),
        "images": ("share of the patients' images removed", "q")}
TITLES = {"features": "Features removed at random (MCAR)", "images": "Images removed"}
SEED = 0  # the removals' seed: the same cells for every model


@dataclass(frozen=True)
class Sweep:
    """The rates to score: ``features`` (``--missingness-sweep``) and ``images`` (``--image-drop``)."""

    features: tuple[float, ...] = ()
    images: tuple[float, ...] = ()

    def validate(self) -> None:
        for option, rates in (("--missingness-sweep", self.features), ("--image-drop", self.images)):
            bad = [r for r in rates if not (isinstance(r, (int, float)) and 0 <= r <= 1)]
            if bad:
                raise UserError(f"{option} {bad[0]}: a share of the test rows' inputs, in [0, 1]")

    @property
    def active(self) -> bool:
        return bool(self.features or self.images)

    def axes(self) -> dict[str, tuple[float, ...]]:
        return {k: tuple(sorted(set(v))) for k, v in (("features", self.features), ("images", self.images)) if v}


@dataclass
class Point:
    """One model at one rate: the seed-averaged prediction's metric with its interval, and the seeds'."""

    value: float
    low: float | None
    high: float | None
    method: str | None
    seeds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        finite = [v for v in self.seeds if math.isfinite(v)]
        return {"value": self.value, "low": self.low, "high": self.high, "method": self.method, "seeds": self.seeds,
                "seed_mean": float(np.mean(finite)) if finite else None,
                "seed_std": float(np.std(finite, ddof=1)) if len(finite) > 1 else None}


@dataclass
class SweepResult:
    """``curves[axis][title][rate]`` and what each model reads."""

    split: str
    metric: str  # the headline's label ("AUC")
    n: int  # rows scored
    curves: dict[str, dict[str, dict[float, Point]]]
    reads: dict[str, str]  # title -> "token", "impute" or "image only"
    unimodal: set[str]  # titles of the single-modality baselines (the floors)

    def to_dict(self) -> dict:
        return {"split": self.split, "metric": self.metric, "rows": self.n, "seed": SEED,
                "reads": self.reads, "unimodal": sorted(self.unimodal),
                **{axis: {t: {f"{r:g}": p.to_dict() for r, p in pts.items()} for t, pts in per.items()}
                   for axis, per in self.curves.items()}}


class SweepScorer:
    """Scores each classifier of ``evaluate`` on the swept copies of the data (built once each)."""

    def __init__(self, sweep: Sweep, dataset, data, split: str) -> None:
        self.sweep, self.dataset, self.data, self.split = sweep, dataset, data, split
        self.rows = dataset.indices(split)
        self._copies: dict[tuple[str, float], object] = {}
        self.outputs: dict[str, dict[tuple[str, float], np.ndarray]] = defaultdict(dict)
        self.reads: dict[str, str] = {}

    def _data(self, axis: str, rate: float):
        key = (axis, rate)
        if key not in self._copies:
            if axis == "features":
                self._copies[key] = self.data.with_table(remove_values(self.dataset, self.rows, rate, SEED))
            else:
                self._copies[key] = self.data.with_image_present(drop_images(self.dataset, self.rows, rate, SEED))
        return self._copies[key]

    def score(self, stage: str, model, *, modality: str | None, kind, rt, batch_size: int) -> None:
        """Every swept prediction of one classifier (eval mode; the caller holds no_grad and autocast)."""
        encoder = getattr(model, "tabular_encoder", None) or (model.encoder if modality == "tabular" else None)
        self.reads[stage] = "image only" if encoder is None else availability.missing_mode(encoder)
        for axis, rates in self.sweep.axes().items():
            for rate in rates:
                task = SupervisedTask(model=model, loss=None, data=self._data(axis, rate),
                                      use_image=modality != "tabular", augment=None, kind=kind,
                                      channels_last=rt.channels_last, eval_batch_size=batch_size)
                _, preds, _ = task.predict(model, self.split, rt)
                self.outputs[stage][(axis, rate)] = preds

    def result(self, kind, groups: dict[str, list[str]], targets: np.ndarray, unimodal: set[str]) -> SweepResult:
        """``groups``: title -> its stages (seeds); the seeds' predictions are averaged per rate."""
        curves: dict = {}
        key = kind.headline.key
        for axis, rates in self.sweep.axes().items():
            per = curves.setdefault(axis, {})
            for title, stages in groups.items():
                stages = [s for s in stages if s in self.outputs]
                if not stages:
                    continue
                for rate in rates:
                    seeds = [self.outputs[s][(axis, rate)] for s in stages]
                    score = kind.probe_score(np.mean(seeds, axis=0), targets, SEED)
                    per.setdefault(title, {})[rate] = Point(
                        float(score.value), score.low, score.high, score.method,
                        [float(kind.validation_metrics(p, targets)[key]) for p in seeds])
        reads = {t: self.reads[s[0]] for t, s in groups.items() if s and s[0] in self.reads}
        return SweepResult(self.split, kind.headline.label, len(targets), curves, reads,
                           {t for t in unimodal if t in reads})


def _cell(p: Point) -> str:
    if not math.isfinite(p.value):
        return "n/a"
    return f"{p.value:.3f}" if p.low is None else f"{p.value:.3f} ({p.low:.2f}-{p.high:.2f})"


def markdown(result: SweepResult, figure: str | None) -> str:
    """``results.md``'s section: one table per axis (model x rate) and the figure."""
    parts = [f"\n## Test-time missingness\n\n{result.metric} of the seed-averaged prediction on the "
             f"{result.split} split ({result.n} rows) with its 95% interval, as inputs are removed from the scored "
             "rows: features at random (MCAR: a share r of each row's features set missing, as `prepare` records a "
             "value never measured) and images (a share q of the patients who have one scored without it). The "
             f"removals are drawn once (seed {SEED}), the same for every model; r = 0 and q = 0 are the plain "
             "evaluation. Reads: how the model reads a missing value (token: a learned missing embedding or "
             "indicator; impute: the imputed value); single-modality baselines are the floors.\n"]
    for axis, per in result.curves.items():
        words, sym = AXES[axis]
        rates = sorted({r for pts in per.values() for r in pts})
        parts.append(f"\n### {TITLES[axis]} ({sym}: {words})\n\n| Model | Reads | "
                     + " | ".join(f"{sym} = {r:g}" for r in rates) + " |\n|---|---|" + "--:|" * len(rates) + "\n")
        for title, pts in per.items():
            parts.append(f"| {title} | {result.reads.get(title, '-')} | "
                         + " | ".join(_cell(pts[r]) if r in pts else "-" for r in rates) + " |\n")
    if figure:
        parts.append(f"\n![{result.metric} against test-time missingness]({figure})\n")
    return "".join(parts)


def plot(result: SweepResult, path: Path) -> Path | None:
    """One panel per axis: the metric against the removed share, a line per model with its 95 % interval
    as error bars (dodged sideways so they do not overlap); fusions in colour (solid: token, dashed:
    impute), single-modality baselines grey (the floors)."""
    axes = [a for a in ("features", "images") if result.curves.get(a)]
    if not axes:
        return None
    plt = pyplot()
    fig, panels = plt.subplots(1, len(axes), figsize=(3.4 * len(axes), 3.0), dpi=200, sharey=True, squeeze=False)
    titles = list(dict.fromkeys(t for a in axes for t in result.curves[a]))
    colours = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#CCB974", "#64B5CD"]
    greys = ["#333333", "#888888", "#555555", "#aaaaaa"]
    style, fused, floors = {}, 0, 0
    for t in titles:
        impute = result.reads.get(t) == "impute"
        if t in result.unimodal:
            style[t] = dict(color=greys[floors % len(greys)], linestyle=":" if impute else "-.", marker="s")
            floors += 1
        else:
            style[t] = dict(color=colours[fused % len(colours)], linestyle="--" if impute else "-", marker="o")
            fused += 1
    for ax, axis in zip(panels[0], axes):
        words, sym = AXES[axis]
        per = result.curves[axis]
        span = max((r for pts in per.values() for r in pts), default=1.0) or 1.0
        dodge = 0.012 * span
        for i, (t, pts) in enumerate(per.items()):
            rates = np.array(sorted(pts), dtype=float)
            x = rates + (i - (len(per) - 1) / 2) * dodge
            y = np.array([pts[r].value for r in rates], dtype=float)
            lo = np.array([np.nan if pts[r].low is None else pts[r].low for r in rates], dtype=float)
            hi = np.array([np.nan if pts[r].high is None else pts[r].high for r in rates], dtype=float)
            ax.errorbar(x, y, yerr=np.vstack([y - lo, hi - y]), markersize=3.2, linewidth=1.3, elinewidth=0.7,
                        capsize=1.8, label=t, **style[t])
        ax.set_xlabel(f"{sym}: {words}", fontsize=7.5)
        ax.set_title(TITLES[axis], fontsize=8.5)
        ax.tick_params(labelsize=7.5)
        ax.grid(alpha=0.3)
    panels[0][0].set_ylabel(f"{result.metric}, {result.split} split (95% CI)", fontsize=7.5)
    handles, labels = panels[0][0].get_legend_handles_labels()
    shown = [lab if result.reads.get(lab) in (None, "image only") or availability.MODE_WORDS[result.reads[lab]] in lab
             else f"{lab} [{result.reads[lab]}]" for lab in labels]  # the title may name the mode already
    fig.legend(handles, shown, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2 if len(labels) > 3 else 1,
               fontsize=7, frameon=False)
    fig.suptitle(f"{result.metric} against test-time missingness ({result.split} split, {result.n} rows, "
                 "seed-averaged)", fontsize=8.5)
    fig.tight_layout()
    return save(fig, path, tight=True)


def unimodal_titles(per_group: dict, titles: dict) -> set[str]:
    """The titles of the single-modality groups of ``evaluate``'s ``per_group`` (keys: fusion first)."""
    return {titles[k] for k in per_group if k[0] == names.NO_FUSION}
