"""How far an IG ranking can be trusted: rank intervals over resamples, and the share of the output moved.

**Rank intervals.** A feature's importance is its mean |attribution| over the explained rows
(:meth:`amfmedit.explain.ig.Attributions.importance`). Its rank moves when other rows are explained
(a bootstrap of the rows) and when another training seed's model is explained (the same rows
through each seed's model). :func:`rank_stability` ranks the features on every resample of every
model given and reports each feature's 2.5-97.5 % rank interval, and how much of the top ``k``
a resample's top ``k`` keeps.

**Share of the output moved.** IG's importances are percentages of ``f(x) - f(baseline)``, what
the explained branch moves (the tabular branch with each image held fixed, for a fusion model).
When that is small against how much the output varies across the explained rows, the
percentages are percentages of almost nothing: :func:`output_share` measures it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

N_BOOT = 200  # row resamples per model
STABLE_OVERLAP = 0.8  # a resample's top k keeps this share of the top k on average, or the top k is "not stable"
SMALL_SHARE = 0.2  # mean |f(x) - f(baseline)| below this share of the output's sd: "moves almost nothing"


@dataclass(frozen=True)
class RankStability:
    """Each feature's rank (1 = most important) with its 95 % interval over the resamples."""

    names: list[str]
    rank: list[int]  # the explained model on every explained row
    low: list[int]
    high: list[int]
    top_k: int
    overlap: float  # mean share of the top k that a resample's top k holds
    stable: int  # features of the top k whose interval stays within the top k
    resamples: int
    models: int
    rows: int

    @property
    def is_stable(self) -> bool:
        return self.overlap >= STABLE_OVERLAP

    def interval(self, name: str) -> tuple[int, int]:
        i = self.names.index(name)
        return self.low[i], self.high[i]

    def sources(self) -> str:
        seeds = f" x {self.models} seeds' models" if self.models > 1 else ""
        return f"{self.resamples} resamples: a bootstrap of the {self.rows} explained rows{seeds}"

    def sentence(self) -> str:
        return (f"a resample's top {self.top_k} keeps {100 * self.overlap:.0f}% of it on average, and {self.stable} "
                f"of its {self.top_k} features stay in the top {self.top_k} in 95% of them ({self.sources()})")

    def warning(self) -> str | None:
        if self.is_stable:
            return None
        return (f"the top {self.top_k} is not stable: {self.sentence()}; read the ranking as uncertain "
                "(explain more rows, --max-samples, or a larger cohort)")

    def to_dict(self) -> dict:
        return {**asdict(self), "stable_top": self.is_stable}

    @classmethod
    def from_dict(cls, d: dict) -> "RankStability":
        return cls(list(d["names"]), list(d["rank"]), list(d["low"]), list(d["high"]), int(d["top_k"]),
                   float(d["overlap"]), int(d["stable"]), int(d["resamples"]), int(d["models"]), int(d["rows"]))


def _ranks(importance: np.ndarray) -> np.ndarray:
    """(R, F) importances -> (R, F) ranks, 1 = largest (ties in feature order)."""
    return np.argsort(np.argsort(-importance, axis=1, kind="stable"), axis=1, kind="stable") + 1


def rank_stability(values: list[np.ndarray], names: list[str], top_k: int, *, n_boot: int = N_BOOT,
                   seed: int = 0) -> RankStability:
    """Rank intervals of the features from ``values``: one (N, F) attribution matrix per model, the
    same N rows in each, the explained model first (its ranks on all rows are the point ranks)."""
    n, f = values[0].shape
    k = min(top_k, f)
    point = _ranks(np.abs(values[0]).mean(axis=0)[None])[0]
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)]).astype(np.float64)
    reps = np.concatenate([_ranks(counts @ np.abs(v) / n) for v in values])  # (models x n_boot, F)
    low, high = np.quantile(reps, [0.025, 0.975], axis=0, method="inverted_cdf")
    top = point <= k
    overlap = float((reps[:, top] <= k).sum(axis=1).mean() / k) if k else 1.0
    stable = int((high[top] <= k).sum())
    return RankStability(list(names), point.astype(int).tolist(), low.astype(int).tolist(), high.astype(int).tolist(),
                         k, overlap, stable, int(len(reps)), len(values), int(n))


def output_share(change: np.ndarray, outputs: np.ndarray) -> dict:
    """How much of the output the explained branch moves: mean |f(x) - f(baseline)| against the sd of
    f(x) over the same rows (``share``; NaN for a constant output), and whether that is small."""
    moved = float(np.abs(change).mean()) if len(change) else float("nan")
    spread = float(np.std(outputs)) if len(outputs) > 1 else float("nan")
    share = moved / spread if spread > 0 else float("nan")
    return {"mean_abs_change": moved, "output_sd": spread, "output_mean": float(np.mean(outputs)) if len(outputs) else
            float("nan"), "share": share, "small": bool(np.isfinite(share) and share < SMALL_SHARE)}


def trust_text(summary: dict) -> str:
    """Markdown lines on how far an IG report's importances can be read (``summary.json``'s
    ``output_share`` and ``rank_stability``); "" for a report written without them."""
    parts = []
    share = summary.get("output_share")
    if share:
        parts.append(f"\nShare of the output moved: mean |f(x) − f(baseline)| {share['mean_abs_change']:.3g} against "
                     f"an output sd of {share['output_sd']:.3g} across these rows ({100 * share['share']:.0f}%).\n")
    stab = summary.get("rank_stability")
    if stab:
        parts.append(f"\nRank stability: {RankStability.from_dict(stab).sentence()}.\n")
    return "".join(parts)
