"""Integrated Gradients on a tabular model (§4.2.1, §4.3.2, Appendix B) with captum.

Setup of the paper: the baseline is the mean training sample; attributions toward the disease
class for every training sample; a feature's importance is its mean absolute attribution as
a percentage of the total over features (Table B.1, Figs. 4-5).

Inputs attributed: the continuous values ``x_cont`` and the categorical embeddings ``e_cat``
(the lookup itself has no gradient), through ``forward_embedded``; a categorical feature's
attribution is the sum over its embedding dimensions, so completeness holds per feature:
``sum_j attr_j = f(x) - f(baseline)`` up to the integral's quadrature error, which captum
reports as the convergence delta. The baseline of ``e_cat`` is the mean of the training
rows' embeddings.

Interpolation steps of several samples run as one batch (captum's ``internal_batch_size``)
with parameters frozen, so the backward pass computes input gradients only.
"""

from __future__ import annotations

import contextlib
import math
import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from amfmedit.errors import UserError
from amfmedit.explain.configs import IGConfig  # noqa: F401 (its home: configs, torch-free)

IMPORTANCE_FILE = "importance.csv"
TOP_FILE = "top10.md"
SUMMARY_FILE = "summary.json"
LOW_IMPORTANCE_PCT = 1.0  # Fig. 5a: features under 1% of the total are "low importance"

ProgressFn = Callable[[int, int], None]  # (samples done, samples total)


@dataclass
class Attributions:
    """IG attributions of N samples over F features (model input order: continuous, categorical)."""

    names: list[str]
    rows: np.ndarray  # (N,) dataset rows
    values: np.ndarray  # (N, F) float64
    delta: np.ndarray  # (N,) captum's convergence delta: sum(attr) - (f(x) - f(baseline))
    change: np.ndarray  # (N,) f(x) - f(baseline) of the target output
    steps: int
    targets: np.ndarray  # (N,) class index attributed

    def importance(self) -> np.ndarray:
        """(F,) mean |attribution| per feature."""
        return np.abs(self.values).mean(axis=0)

    def importance_pct(self) -> np.ndarray:
        """(F,) importance as a percentage of the total (sums to 100)."""
        imp = self.importance()
        total = imp.sum()
        if not total > 0:
            raise UserError("every attribution is zero: the explained model's output does not depend on its "
                            "tabular input (an untrained or collapsed model?)")
        return 100.0 * imp / total

    def completeness(self) -> dict:
        """How closely the attributions add up to f(x) - f(baseline) (Sundararajan et al., completeness)."""
        d, c = np.abs(self.delta), np.abs(self.change)
        mean_change = float(c.mean()) if len(c) else math.nan
        return {
            "mean_abs_delta": float(d.mean()) if len(d) else math.nan,
            "max_abs_delta": float(d.max()) if len(d) else math.nan,
            "mean_abs_output_change": mean_change,
            "relative": float(d.mean() / mean_change) if mean_change > 0 else math.nan,
            "steps": self.steps,
        }


def tabular_baseline(encoder, x_cont: Tensor, x_cat: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """The mean training sample: (n_cont,) mean of ``x_cont`` and (n_cat, d_e) mean of the embeddings."""
    with torch.no_grad():
        b_cont = x_cont.double().mean(dim=0).float()
        sums = None
        for i in range(0, len(x_cat), chunk):
            e = encoder.embed_categorical(x_cat[i : i + chunk]).double().sum(dim=0)
            sums = e if sums is None else sums + e
        b_cat = (sums / max(len(x_cat), 1)).float()
    return b_cont, b_cat


CPU_TOKENS_PER_PASS = 1 << 15


def _frozen(module: torch.nn.Module):
    """Parameters set to requires_grad=False for the duration (restored after), so backward
    passes compute input gradients only: no weight-gradient matrix products, no dA in the scan."""

    @contextlib.contextmanager
    def cm():
        flags = [(p, p.requires_grad) for p in module.parameters()]
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)

    return cm()


def _target_output(scorer, xc: Tensor, ec: Tensor, context: tuple, tgt: Tensor) -> Tensor:
    with torch.no_grad():
        return scorer(xc, ec, *context).gather(1, tgt[:, None])[:, 0]


def integrated_gradients(
    scorer,
    *,
    x_cont: Tensor,
    x_cat: Tensor,
    baseline: tuple[Tensor, Tensor],
    targets: Tensor,
    steps: int = 50,
    batch_size: int = 256,
    images: Callable[[np.ndarray], Tensor] | None = None,
    progress: ProgressFn | None = None,
    method: str = "gausslegendre",
    max_tokens_per_pass: int | None = None,
    missing: Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IG of ``scorer`` (:class:`~amfmedit.explain.targets.TabularScore`) for every row of ``x_cont``.

    Args:
        x_cont, x_cat: (N, n_cont) float32, (N, n_cat) int64 on the scorer's device.
        baseline: ``(b_cont (n_cont,), b_cat (n_cat, d_e))``.
        targets: (N,) int64 class whose output is attributed.
        steps: interpolation steps (Gauss-Legendre nodes, captum's default method; see
            :func:`steps_for_completeness` to choose them from a completeness error).
        batch_size: sample-steps per forward/backward pass; samples are processed
            ``max(1, batch_size // steps)`` at a time.
        images: for a multimodal scorer, ``positions -> (B, C, H, W)`` float images of those rows.
        missing: (N, F) bool missing mask of the rows (None: nothing missing); an encoder that
            reads it gets it as fixed context, held equal at the sample and the baseline, so a
            missing feature's attribution is 0 and completeness still holds.
        method: captum's quadrature (``"gausslegendre"`` or a ``"riemann_*"`` rule).
        max_tokens_per_pass: cap on rows x (features + 1) per pass, below ``batch_size``;
            None: 2^15 on a CPU (a pass's activations then stay closer to the caches: at
            423 features 50-row passes took 7.5 ms per sample-step against 8.2 for 250 rows),
            no cap elsewhere. The attributions do not depend on it.

    Returns: (N, n_cont + n_cat) attributions, (N,) convergence deltas, (N,) f(x) - f(baseline).

    The attributions are captum's ``IntegratedGradients.attribute`` with these settings. How
    it is made cheap: parameters are frozen during the call (input gradients only), the
    convergence delta ``sum(attr) - (f(x) - f(baseline))`` is computed here from one forward
    of the inputs and, without image context, a single forward of the baseline shared by all
    samples (captum's ``return_convergence_delta`` would run both per call). (On a CPU the
    explain stage's process set-up also keeps glibc's large blocks for reuse between passes.)
    """
    from captum.attr import IntegratedGradients

    if steps < 2:
        raise UserError(f"--steps {steps}: Integrated Gradients needs at least 2 steps")
    n = len(x_cont)
    if max_tokens_per_pass is None and x_cont.device.type == "cpu":
        max_tokens_per_pass = CPU_TOKENS_PER_PASS
    if max_tokens_per_pass is not None:
        tokens = x_cont.shape[1] + x_cat.shape[1] + 1
        batch_size = max(1, min(batch_size, max_tokens_per_pass // tokens))
    per_call = max(1, batch_size // steps)
    internal = max(per_call, batch_size)
    ig = IntegratedGradients(scorer)
    b_cont, b_cat = baseline
    f_base = None  # (C,) scorer output at the baseline, shared when there is no image context
    attrs, deltas, changes = [], [], []
    with _frozen(scorer), torch.enable_grad():
        for start in range(0, n, per_call):
            pos = np.arange(start, min(start + per_call, n))
            xc = x_cont[start : start + len(pos)]
            with torch.no_grad():
                ec = scorer.encoder.embed_categorical(x_cat[start : start + len(pos)])
            tgt = targets[start : start + len(pos)]
            context = scorer.image_context(images(pos)) if images is not None else ()
            mask_of = getattr(scorer.encoder, "input_mask", None)  # None: an encoder that reads no mask
            mask = None if mask_of is None else mask_of(x_cat[start : start + len(pos)],
                                                        None if missing is None else missing[start : start + len(pos)])
            if mask is not None:  # the row's mask: its baseline output is its own (below)
                context = (*context, mask)
            bc = b_cont.expand_as(xc).contiguous()
            be = b_cat.expand_as(ec).contiguous()
            if ec.shape[1]:
                a_cont, a_cat = ig.attribute(
                    (xc, ec), baselines=(bc, be), target=tgt, additional_forward_args=context or None,
                    n_steps=steps, method=method, internal_batch_size=internal,
                )
            else:  # no categorical feature: the empty (B, 0, d_e) embedding is no part of the graph, and
                # autograd refuses an input it cannot reach; it goes along as a fixed argument
                a_cont = ig.attribute(xc, baselines=bc, target=tgt, additional_forward_args=(ec, *context),
                                      n_steps=steps, method=method, internal_batch_size=internal)
                a_cat = ec
            f_x = _target_output(scorer, xc, ec, context, tgt)
            if context:
                f_b = _target_output(scorer, bc, be, context, tgt)
            else:
                if f_base is None:
                    with torch.no_grad():
                        f_base = scorer(b_cont[None], b_cat[None])[0]
                f_b = f_base[tgt]
            attr = torch.cat([a_cont, a_cat.sum(dim=-1)], dim=1).double()
            change = (f_x - f_b).double()
            attrs.append(attr.cpu().numpy())
            deltas.append((attr.sum(dim=1) - change).cpu().numpy())
            changes.append(change.cpu().numpy())
            if progress is not None:
                progress(start + len(pos), n)
    width = x_cont.shape[1] + x_cat.shape[1]
    return (np.concatenate(attrs) if attrs else np.zeros((0, width)),
            np.concatenate(deltas) if deltas else np.zeros(0),
            np.concatenate(changes) if changes else np.zeros(0))


def target_outputs(scorer, *, x_cont: Tensor, x_cat: Tensor, targets: Tensor, batch_size: int = 256,
                   images: Callable[[np.ndarray], Tensor] | None = None, missing: Tensor | None = None) -> np.ndarray:
    """(N,) ``f(x)``: the attributed output (the target's probability or logit) of every row, with
    its own image for a multimodal scorer (arguments as :func:`integrated_gradients`)."""
    out = []
    for start in range(0, len(x_cont), batch_size):
        pos = np.arange(start, min(start + batch_size, len(x_cont)))
        with torch.no_grad():
            ec = scorer.encoder.embed_categorical(x_cat[pos[0] : pos[-1] + 1])
        context = scorer.image_context(images(pos)) if images is not None else ()
        mask_of = getattr(scorer.encoder, "input_mask", None)  # as integrated_gradients reads the rows
        mask = None if mask_of is None else mask_of(x_cat[pos[0] : pos[-1] + 1],
                                                    None if missing is None else missing[pos[0] : pos[-1] + 1])
        if mask is not None:
            context = (*context, mask)
        out.append(_target_output(scorer, x_cont[pos[0] : pos[-1] + 1], ec, context,
                                  targets[pos[0] : pos[-1] + 1]).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


#: Step counts tried by :func:`steps_for_completeness`, fewest first.
STEP_LADDER = (4, 8, 12, 16, 24, 32, 50, 64, 100, 128, 200, 256)


def steps_for_completeness(
    scorer,
    *,
    x_cont: Tensor,
    x_cat: Tensor,
    baseline: tuple[Tensor, Tensor],
    targets: Tensor,
    tolerance: float,
    pilot: int = 16,
    batch_size: int = 256,
    images: Callable[[np.ndarray], Tensor] | None = None,
    missing: Tensor | None = None,
) -> tuple[int, float]:
    """The fewest Gauss-Legendre steps whose relative completeness error is within ``tolerance``.

    The relative error is ``mean |sum(attr) - (f(x) - f(baseline))| / mean |f(x) - f(baseline)|``
    (what :meth:`Attributions.completeness` reports as ``relative``), measured on the first
    ``pilot`` rows (pass them in a representative order). Returns (steps, relative error at
    those steps); raises :class:`UserError` when even the largest count in
    :data:`STEP_LADDER` misses the tolerance.
    """
    if not tolerance > 0:
        raise UserError(f"--completeness {tolerance}: must be positive (e.g. 0.01 for 1%)")
    k = min(pilot, len(x_cont))
    rel = math.nan
    for steps in STEP_LADDER:
        _, delta, change = integrated_gradients(
            scorer, x_cont=x_cont[:k], x_cat=x_cat[:k], baseline=baseline, targets=targets[:k], steps=steps,
            batch_size=batch_size, images=images, missing=None if missing is None else missing[:k],
        )
        mean_change = float(np.abs(change).mean()) if k else 0.0
        rel = float(np.abs(delta).mean() / mean_change) if mean_change > 0 else 0.0
        if rel <= tolerance:
            return steps, rel
    raise UserError(f"--completeness {tolerance}: {STEP_LADDER[-1]} steps still leave a relative completeness "
                    f"error of {rel:.3g}; ask for a larger tolerance or give --steps")


@dataclass(frozen=True)
class IGTruth:
    """How an IG ranking meets a synthetic cohort's truth (``summary.json``'s ``synthetic`` record).

    ``in_top_k``: informative features among the top ``top_k``; ``in_top_n``: among the top
    ``len(informative)``; ``proxies``: features the risk model does not use but that track its image
    term (bmi and weight follow visceral fat), counted apart, never as informative.
    ``reference_in_top_k``: informative features among the top ``top_k`` of a logistic regression
    on the same training rows (:mod:`amfmedit.explain.reference`), what the sample supports; None
    when it was not computed.
    """

    informative: list[str]
    top_k: int
    in_top_k: int
    in_top_n: int
    proxies: list[str] = dataclasses.field(default_factory=list)
    proxies_in_top_k: int = 0
    reference_in_top_k: int | None = None
    reference_rows: int = 0
    reference_top: list[str] = dataclasses.field(default_factory=list)

    @property
    def n_informative(self) -> int:
        return len(self.informative)

    @classmethod
    def of(cls, ranked: list[str], informative: list[str], proxies: list[str], top_k: int,
           reference=None) -> "IGTruth":
        """The record of ``ranked`` (feature names, most important first); ``reference``: a
        :class:`~amfmedit.explain.reference.ReferenceRanking` of the same training rows."""
        inf, prox = set(informative), set(proxies)
        ref = {} if reference is None else {
            "reference_in_top_k": sum(n in inf for n in reference.top(top_k)), "reference_rows": reference.n_rows,
            "reference_top": reference.top(top_k)}
        return cls(list(informative), top_k, sum(n in inf for n in ranked[:top_k]),
                   sum(n in inf for n in ranked[:len(informative)]), sorted(proxies),
                   sum(n in prox for n in ranked[:top_k]), **ref)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "n_informative": self.n_informative}

    @classmethod
    def from_dict(cls, d: dict) -> "IGTruth":
        ref = d.get("reference_in_top_k")
        return cls(list(d["informative"]), int(d["top_k"]), int(d["in_top_k"]), int(d["in_top_n"]),
                   list(d.get("proxies") or []), int(d.get("proxies_in_top_k") or 0),
                   None if ref is None else int(ref), int(d.get("reference_rows") or 0),
                   list(d.get("reference_top") or []))

    def sentence(self) -> str:
        k, m = self.top_k, self.n_informative
        text = (f"{self.in_top_k} of the top {k} features are informative "
                f"({self.in_top_n} of the top {m}; the generator uses {m})")
        if self.proxies:  # they track the image term; never added to the informative count
            text += f"; {self.proxies_in_top_k} more track the image signal ({', '.join(self.proxies)})"
        if self.reference_in_top_k is not None:  # what the sample supports, as the benchmark shows it
            text += (f"; a logistic regression on the same {self.reference_rows} training rows puts "
                     f"{self.reference_in_top_k} in its top {k}")
        return text


def importance_table(schema, attributions: Attributions, informative: list[str] | None = None):
    """A pandas DataFrame of every feature, most important first (rank 1).

    Columns: name, kind, group, description, importance_pct, rank, mean_abs_attribution,
    mean_attribution (signed: positive pushes toward the target class) and, for synthetic
    cohorts, informative (the generator's risk model uses the feature).
    """
    import pandas as pd

    features = {f.name: f for f in schema.features}
    pct = attributions.importance_pct()
    order = np.argsort(-pct, kind="stable")
    rank = np.empty(len(pct), dtype=np.int64)
    rank[order] = np.arange(1, len(pct) + 1)
    rows = []
    for j, name in enumerate(attributions.names):
        f = features[name]
        rows.append({
            "name": name, "kind": f.kind, "group": f.group or "Other", "description": f.description or "",
            "importance_pct": float(pct[j]), "rank": int(rank[j]),
            "mean_abs_attribution": float(np.abs(attributions.values[:, j]).mean()),
            "mean_attribution": float(attributions.values[:, j].mean()),
            **({"informative": name in set(informative)} if informative is not None else {}),
        })
    return pd.DataFrame(rows).sort_values("rank").reset_index(drop=True)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def top_markdown(table, k: int = 10) -> str:
    """The top-``k`` features as a markdown table (Table B.1 layout, with the share in %); with the
    columns ``rank_low`` / ``rank_high`` (:mod:`amfmedit.explain.stability`) each rank carries its
    95 % interval."""
    has_truth = "informative" in table.columns
    has_interval = "rank_low" in table.columns
    rank_head = "Rank (95% interval)" if has_interval else "Rank"
    head = f"| {rank_head} | Feature | Description | Group | Importance (%) |" + (" Informative |" if has_truth else "")
    lines = [head, "|---:|---|---|---|---:|" + ("---|" if has_truth else "")]
    for _, r in table.head(k).iterrows():
        rank = f"{r['rank']} ({r['rank_low']}–{r['rank_high']})" if has_interval else f"{r['rank']}"
        line = (f"| {rank} | `{_cell(r['name'])}` | {_cell(r['description']) or '—'} | {_cell(r['group'])} | "
                f"{r['importance_pct']:.2f} |")
        if has_truth:
            line += " yes |" if r["informative"] else " no |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def group_shares(table, low_pct: float = LOW_IMPORTANCE_PCT) -> dict[str, float]:
    """Fig. 5a: total importance (%) of features under ``low_pct`` ("low importance"), and of the
    others summed by group (largest first)."""
    low = table["importance_pct"] < low_pct
    out = {f"low importance (<{low_pct:g}%)": float(table.loc[low, "importance_pct"].sum())}
    high = table.loc[~low].groupby("group")["importance_pct"].sum().sort_values(ascending=False)
    out.update({str(g): float(v) for g, v in high.items()})
    return out
