"""Loss functions of AMF-MedIT §3.3-3.4: one function per equation, each citing it.

Eq. 6-8 (the split of D_out, the masks and the fused vector) live with the AMF module in
:mod:`amfmedit.models.fusion`; the losses here take the masks it registers.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# λ1, λ2 (eq. 14), τ (eq. 11) and OL3I's α (eq. 12) are read by --help too: they live in specs
from amfmedit.models.specs import (  # noqa: F401
    FOCAL_GAMMA,
    ITC_TEMPERATURE,
    LAMBDA_DENSITY,
    LAMBDA_LEAKAGE,
    NORMALISERS,
    OL3I_CLASS_WEIGHTS,
)


def itc_loss(p_img: Tensor, p_tab: Tensor, temperature: float = ITC_TEMPERATURE) -> Tensor:
    """Image-tabular contrastive loss, eq. 11: (L_i2t + L_t2i) / 2.

    p_img, p_tab: (N, d) projections of the same N subjects (row j of each is a pair).
    L_i2t = -1/N sum_j log softmax_k(cos(p_img^j, p_tab^k) / tau)[j]; L_t2i is symmetric.
    """
    # NOTE[paper]: eq. 11 prints the denominator as a sum over k != j, which is not a
    # softmax (the positive pair is missing from its own normaliser) and lets the loss go
    # below zero without bound. Hager et al.'s CLIP loss, which the paper says it applies,
    # is the standard cross-entropy over all k; that is what we compute.
    if p_img.shape != p_tab.shape or p_img.dim() != 2:
        raise ValueError(f"p_img and p_tab must both be (N, d), however: {tuple(p_img.shape)=}, {tuple(p_tab.shape)=}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, however: {temperature=}")
    logits = F.normalize(p_img, dim=1) @ F.normalize(p_tab, dim=1).T / temperature
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2




def _lengths(m_img: Tensor, m_tab: Tensor, normaliser: str) -> tuple[Tensor, Tensor]:
    """(L_img, L_tab) as eq. 9/10 divide by them: whole numbers, exact in fp32 (< 2**24)."""
    if normaliser not in NORMALISERS:
        raise ValueError(f"normaliser must be one of {NORMALISERS}, however: {normaliser=}")
    l_img, l_tab = m_img.sum(), m_tab.sum()
    # NOTE[paper]: the authors' FusionModule swaps L_img and L_tab whenever it is given a device
    # (``self.L_tab = tensor(self.L_img)`` and the reverse), and FusionMultimodalModel always
    # passes one (cuda:N), so every published run divides each sum of eq. 9/10 by the other
    # part's length: at R_conf 0.95 (998 / 1050 of 2048) by a factor 1050/998 or 998/1050 off.
    return (l_tab, l_img) if normaliser == "authors" else (l_img, l_tab)


def _fp32(*tensors: Tensor) -> tuple[Tensor, ...]:
    """The auxiliary losses of eq. 9/10 are computed in fp32 whatever the autocast dtype."""
    return tuple(t.float() for t in tensors)


def _no_autocast(like: Tensor):
    """Autocast off on ``like``'s device: under bf16 autocast a mask length such as 1050 would
    round to 1048 in bf16 (8 mantissa bits) and bias the normalisers of eq. 9/10."""
    return torch.autocast(device_type=like.device.type, enabled=False)


def _row_mean(values: Tensor, rows: Tensor | None) -> Tensor:
    """Mean of (N,) ``values`` over the rows where ``rows`` (N,) bool is True (0 when none); all rows for None."""
    if rows is None:
        return values.mean()
    w = rows.to(values.dtype)
    return (values * w).sum() / w.sum().clamp_min(1.0)


def leakage_loss(z_img: Tensor, z_tab: Tensor, m_img: Tensor, m_tab: Tensor, normaliser: str = "paper", *,
                 image_rows: Tensor | None = None, table_rows: Tensor | None = None) -> Tensor:
    """Leakage loss, eq. 9: the mean l1 content of the parts that the masks discard.

    z_img, z_tab: (N, D_out) transitional features z'; m_img, m_tab: (D_out,) binary masks
    of eq. 7 (L_img and L_tab ones). Returns
    1/(2N) sum_j ( ||m_tab * z'_img^j||_1 / L_tab + ||m_img * z'_tab^j||_1 / L_img ),
    in fp32 (inputs of lower precision are upcast; autocast is off inside), a float32 scalar.
    ``normaliser="authors"`` swaps L_img and L_tab, as the authors' code does (:data:`NORMALISERS`).
    ``image_rows`` / ``table_rows`` (N,) bool: the image term is averaged over the rows that
    have an image, the tabular term over the rows that have a table (None: all rows; see
    :func:`amfmedit.models.fusion.amf_aux_losses`).
    """
    # NOTE[paper]: eq. 9 prints the normalisers as D_tab and D_img; the discarded image part
    # has L_tab elements and the discarded tabular part L_img, so each l1 norm is divided by
    # the length of what it sums (a mean absolute value, comparable across R_conf). The
    # authors' code swaps the two in every published run (see _lengths); normaliser="authors"
    # (--amf-normaliser authors) reproduces it.
    z_img, z_tab, m_img, m_tab = _fp32(z_img, z_tab, m_img, m_tab)
    with _no_autocast(z_img):
        l_img, l_tab = _lengths(m_img, m_tab, normaliser)
        leak_img = (z_img * m_tab).abs().sum(dim=1) / l_tab
        leak_tab = (z_tab * m_img).abs().sum(dim=1) / l_img
        if image_rows is None and table_rows is None:
            return (leak_img + leak_tab).mean() / 2
        return (_row_mean(leak_img, image_rows) + _row_mean(leak_tab, table_rows)) / 2


def density_loss(z_img: Tensor, z_tab: Tensor, m_img: Tensor, m_tab: Tensor, normaliser: str = "paper", *,
                 rows: Tensor | None = None) -> Tensor:
    """Density loss, eq. 10: |Density(retained image part) - Density(retained tabular part)|.

    1/N sum_j | ||m_img * z'_img^j||_1 / L_img - ||m_tab * z'_tab^j||_1 / L_tab |, where the
    density of eq. 2 is the l1 content per element. Computed in fp32 as :func:`leakage_loss`;
    ``normaliser="authors"`` swaps L_img and L_tab as there. ``rows`` (N,) bool: the mean runs
    over these rows only (the complete ones; None: all).
    """
    # NOTE[paper]: printed with D_img / D_tab; the retained parts have L_img and L_tab
    # elements (see leakage_loss; the authors' code swaps them).
    z_img, z_tab, m_img, m_tab = _fp32(z_img, z_tab, m_img, m_tab)
    with _no_autocast(z_img):
        l_img, l_tab = _lengths(m_img, m_tab, normaliser)
        dens_img = (z_img * m_img).abs().sum(dim=1) / l_img
        dens_tab = (z_tab * m_tab).abs().sum(dim=1) / l_tab
        return _row_mean((dens_img - dens_tab).abs(), rows)


def weighted_ce_loss(logits: Tensor, target: Tensor, class_weights: Sequence[float] | Tensor) -> Tensor:
    """Class-weighted cross-entropy, eq. 12, generalised to per-class weights α_c.

    logits (N, C), target (N,) int64 -> -1/N sum_j α_{y_j} log p_{y_j}^j, with p = softmax.
    For two classes this is -1/N sum_j (α_1 y^j log p^j + α_0 (1 - y^j) log(1 - p^j)).
    """
    # NOTE[paper]: eq. 12 prints "α y log p - (1-α)(1-y) log(1-p)" inside -1/N sum: the minus
    # between the terms rewards confident mistakes on class 0. Both terms are penalties, so
    # they add. Appendix A.3 then gives separate weights (0.1 for class 0, 2 for class 1),
    # not (1-α, α), hence per-class weights. Normalised by N as printed (torch's weighted
    # mean would divide by the sum of the weights instead). The authors' code trains OL3I
    # with a focal loss of γ = 1 instead (:func:`focal_loss`, ``--loss focal``), which is
    # this quantity only at γ = 0.
    w = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
    if w.dim() != 1 or w.numel() != logits.shape[-1]:
        raise ValueError(f"class_weights needs one weight per class ({logits.shape[-1]}), however: {w.tolist()=}")
    if (w < 0).any():
        raise ValueError(f"class_weights must be non-negative, however: {w.tolist()=}")
    nll = F.cross_entropy(logits, target, reduction="none")
    return (w[target] * nll).mean()


def focal_loss(logits: Tensor, target: Tensor, gamma: float = FOCAL_GAMMA,
               class_weights: Sequence[float] | Tensor | None = None) -> Tensor:
    """Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection", eq. 5) with per-class α.

    logits (N, C), target (N,) int64 -> -1/N sum_j α_{y_j} (1 - p_j)^γ log p_j, where
    p_j = softmax(logits^j)[y_j]; without ``class_weights`` every α is 1. This is the authors'
    ``FocalLoss`` (log-softmax, the target's probability, the mean over the batch), which trains
    their OL3I classifiers with α = (0.1, 2) and γ = 1. γ = 0 gives eq. 12
    (:func:`weighted_ce_loss`). Computed in fp32 whatever the autocast dtype (a float32 scalar).
    """
    if not (gamma >= 0 and math.isfinite(gamma)):
        raise ValueError(f"gamma must be a finite number >= 0, however: {gamma=}")
    log_p = F.log_softmax(logits.float(), dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    loss = -((1 - log_p.exp()) ** gamma) * log_p
    if class_weights is not None and len(class_weights):
        w = torch.as_tensor(class_weights, dtype=loss.dtype, device=loss.device)
        if w.dim() != 1 or w.numel() != logits.shape[-1]:
            raise ValueError(f"class_weights needs one weight per class ({logits.shape[-1]}), however: {w.tolist()=}")
        if (w < 0).any():
            raise ValueError(f"class_weights must be non-negative, however: {w.tolist()=}")
        loss = loss * w[target]
    return loss.mean()


def ce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy, eq. 13: -1/N sum_j sum_c y_c^j log p_c^j (logits (N, C), target (N,))."""
    return F.cross_entropy(logits, target)


def finetune_loss(classification: Tensor, aux: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Fine-tuning objective, eq. 14: L_ce (or weighted, eq. 12) + sum_k λ_k L_k.

    ``aux`` is a fusion module's dict of auxiliary losses and ``weights`` the λ of each
    (a fusion declares them in its ``aux_weights``; AMF: leakage λ1 = LAMBDA_LEAKAGE, density
    λ2 = LAMBDA_DENSITY). An auxiliary loss without a weight is an error, never silently
    dropped; modules without auxiliary losses pass an empty ``aux``.
    """
    unweighted = sorted(set(aux) - set(weights))
    if unweighted:
        raise ValueError(f"every auxiliary loss needs a weight (eq. 14), however these have none: {unweighted}")
    total = classification
    for name, value in aux.items():
        total = total + float(weights[name]) * value
    return total


COX_TIES = ("efron", "breslow")


def cox_partial_likelihood_loss(risk: Tensor, time: Tensor, event: Tensor, ties: str = "efron") -> Tensor:
    """Negative log Cox partial likelihood per event (Cox 1972, JRSS B 34:187), ties by Efron (1977,
    JASA 72:557) or Breslow (1974, Biometrics 30:89).

    risk (N,) or (N, 1): the model's log relative hazard r; time (N,) >= 0; event (N,) 1 = observed,
    0 = censored. For each distinct event time tau with d tied events D_tau, R_tau = sum over the
    risk set {j: t_j >= tau} of exp(r_j) and S_tau = sum over D_tau of exp(r_j):

    - Efron:   L = -1/D sum_tau [ sum_{i in D_tau} r_i - sum_{l=0}^{d-1} log(R_tau - (l/d) S_tau) ]
    - Breslow: L = -1/D sum_tau [ sum_{i in D_tau} r_i - d log R_tau ]

    with D the number of events (the two agree without ties). A batch without events gives 0
    (with a graph, so a training step stays valid). Computed in float64; returns risk's dtype.
    """
    # NOTE[paper]: the paper trains classifiers only. A Cox loss needs each event's whole risk set;
    # on mini-batches the risk set is the batch's rows still at risk, the approximation of
    # DeepSurv (Katzman et al. 2018, BMC Med Res Methodol 18:24) that Kvamme et al. (2019, JMLR
    # 20:129) show estimates the same parameters as the full partial likelihood.
    if ties not in COX_TIES:
        raise ValueError(f"ties must be one of {COX_TIES}, however: {ties=}")
    r = risk.reshape(-1).double()
    t = time.reshape(-1).to(r)
    e = event.reshape(-1) > 0.5
    if not (len(r) == len(t) == len(e)):
        raise ValueError(f"risk, time and event need one value per row, however: {len(r)=}, {len(t)=}, {len(e)=}")
    n_events = int(e.sum())
    if n_events == 0:
        return (risk * 0).sum()
    shift = r.max().detach()  # exp(r - shift) <= 1: no overflow
    w = torch.exp(r - shift)
    times, inv = torch.unique(t, return_inverse=True)  # ascending distinct times
    zeros = torch.zeros(len(times), dtype=r.dtype, device=r.device)
    at_risk = torch.flip(torch.cumsum(torch.flip(zeros.index_add(0, inv, w), [0]), 0), [0])  # R at each time
    group = inv[e]  # the distinct time of each event
    if ties == "breslow":
        log_denominators = torch.log(at_risk[group])
    else:
        tied = zeros.index_add(0, inv, w * e)  # S at each time
        count = zeros.index_add(0, inv, e.to(r.dtype))  # d at each time
        order = torch.argsort(group, stable=True)
        g = group[order]
        _, sizes = torch.unique_consecutive(g, return_counts=True)
        starts = torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
        rank = (torch.arange(len(g), device=r.device) - starts).to(r.dtype)  # l = 0..d-1 within each tied group
        log_denominators = torch.log(at_risk[g] - rank / count[g] * tied[g])
    nll = -(r[e].sum() - (log_denominators + shift).sum()) / n_events
    return nll.to(risk.dtype)


def regression_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean squared error, 1/N sum_j (y_hat_j - y_j)^2, of (N,) or (N, 1) predictions against (N,) targets."""
    return F.mse_loss(prediction.reshape(-1).float(), target.reshape(-1).float())
