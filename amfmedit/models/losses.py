"""Loss functions of AMF-MedIT §3.3-3.4: one function per equation, each citing it.

Eq. 6-8 (the split of D_out, the masks and the fused vector) live with the AMF module in
:mod:`amfmedit.models.fusion`; the losses here take the masks it registers.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: λ1 (leakage) and λ2 (density) of eq. 14 (Appendix A.3: "empirically set to 5.0").
LAMBDA_LEAKAGE = 5.0
LAMBDA_DENSITY = 5.0
#: τ of eq. 11 (the reference configuration's ``temperature: 0.1``).
ITC_TEMPERATURE = 0.1
#: α of eq. 12 for OL3I (Appendix A.3: 0.1 for class 0, 2 for class 1).
OL3I_CLASS_WEIGHTS = (0.1, 2.0)


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


def leakage_loss(z_img: Tensor, z_tab: Tensor, m_img: Tensor, m_tab: Tensor, *, image_rows: Tensor | None = None,
                 table_rows: Tensor | None = None) -> Tensor:
    """Leakage loss, eq. 9: the mean l1 content of the parts that the masks discard.

    z_img, z_tab: (N, D_out) transitional features z'; m_img, m_tab: (D_out,) binary masks
    of eq. 7 (L_img and L_tab ones). Returns
    1/(2N) sum_j ( ||m_tab * z'_img^j||_1 / L_tab + ||m_img * z'_tab^j||_1 / L_img ),
    in fp32 (inputs of lower precision are upcast; autocast is off inside), a float32 scalar.
    ``image_rows`` / ``table_rows`` (N,) bool: the image term is averaged over the rows that
    have an image, the tabular term over the rows that have a table (None: all rows; see
    :func:`amfmedit.models.fusion.amf_aux_losses`).
    """
    # NOTE[paper]: eq. 9 prints the normalisers as D_tab and D_img; the discarded image part
    # has L_tab elements and the discarded tabular part L_img, so each l1 norm is divided by
    # the length of what it sums (a mean absolute value, comparable across R_conf). The
    # reference code does this without a device argument and swaps L_img and L_tab when one
    # is given; we always use the lengths of the masked parts.
    z_img, z_tab, m_img, m_tab = _fp32(z_img, z_tab, m_img, m_tab)
    with _no_autocast(z_img):
        l_img, l_tab = m_img.sum(), m_tab.sum()  # whole numbers, exact in fp32 (< 2**24)
        leak_img = (z_img * m_tab).abs().sum(dim=1) / l_tab
        leak_tab = (z_tab * m_img).abs().sum(dim=1) / l_img
        if image_rows is None and table_rows is None:
            return (leak_img + leak_tab).mean() / 2
        return (_row_mean(leak_img, image_rows) + _row_mean(leak_tab, table_rows)) / 2


def density_loss(z_img: Tensor, z_tab: Tensor, m_img: Tensor, m_tab: Tensor, *, rows: Tensor | None = None) -> Tensor:
    """Density loss, eq. 10: |Density(retained image part) - Density(retained tabular part)|.

    1/N sum_j | ||m_img * z'_img^j||_1 / L_img - ||m_tab * z'_tab^j||_1 / L_tab |, where the
    density of eq. 2 is the l1 content per element. Computed in fp32 as :func:`leakage_loss`.
    ``rows`` (N,) bool: the mean runs over these rows only (the complete ones; None: all).
    """
    # NOTE[paper]: printed with D_img / D_tab; the retained parts have L_img and L_tab
    # elements (see leakage_loss).
    z_img, z_tab, m_img, m_tab = _fp32(z_img, z_tab, m_img, m_tab)
    with _no_autocast(z_img):
        dens_img = (z_img * m_img).abs().sum(dim=1) / m_img.sum()
        dens_tab = (z_tab * m_tab).abs().sum(dim=1) / m_tab.sum()
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
    # mean would divide by the sum of the weights instead); the reference code's focal loss
    # with gamma = 0 is the same quantity.
    w = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
    if w.dim() != 1 or w.numel() != logits.shape[-1]:
        raise ValueError(f"class_weights needs one weight per class ({logits.shape[-1]}), however: {w.tolist()=}")
    if (w < 0).any():
        raise ValueError(f"class_weights must be non-negative, however: {w.tolist()=}")
    nll = F.cross_entropy(logits, target, reduction="none")
    return (w[target] * nll).mean()


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
