"""Fusion modules (AMF-MedIT §3.3, §4.2.3): concatenation, cross-attention, AMF.

One contract: ``forward(z_img (B, D_img), z_tab (B, D_tab), feature_map (B, D_img, h, w) | None)
-> FusionOutput(logits (B, n_classes), aux)``, where ``aux`` maps names of auxiliary losses to
scalars (AMF: ``leakage``, ``density``; the others: empty). Each module ends in its classifier.

A fusion class declares what its callers need, so that no caller branches on its name (the
shipped fusions take these from their spec in :mod:`amfmedit.models.specs`, through
:func:`~amfmedit.models.specs.declares`; a class registered without a spec writes them itself):

- ``kind``: its registry name (``amfmedit.models.FUSIONS``), ``title``: its name in tables;
- ``needs_feature_map``: whether the caller must pass the image encoder's last feature map;
- ``run_inputs``: constructor arguments a stage must fill from the run (AMF: ``r_conf``, from
  ``amfmedit rconf``); every other constructor argument beyond ``d_img``, ``d_tab`` and
  ``n_classes`` is an optional setting with its default in the signature;
- ``aux_weights``: the weight of each auxiliary loss in eq. 14's total (an auxiliary loss
  without a weight is an error, :func:`amfmedit.models.losses.finetune_loss`);
- ``reads_presence``: whether ``forward`` takes ``image_present`` / ``table_present`` (B,) bool
  keywords. A row without a modality reaches every fusion with that modality's encoder output
  already replaced by the classifier's learned absent vector
  (:class:`amfmedit.models.ImageTabularClassifier`); concatenation and cross-attention then run
  unchanged, AMF also restricts its auxiliary losses to the rows they are defined for.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from amfmedit.models.heads import ProjectionHead
from amfmedit.models.losses import density_loss, leakage_loss
from amfmedit.models.specs import AMF, CONCAT, CROSS_ATTENTION, NORMALISERS, AMFSettings, declares


class FusionOutput(NamedTuple):
    logits: Tensor  # (B, n_classes)
    aux: dict[str, Tensor]  # auxiliary losses (scalars), empty when the module has none


def _check_dims(**dims: int) -> None:
    for name, v in dims.items():
        if v < 1:
            raise ValueError(f"{name} must be positive, however: {name}={v}")


# ----------------------------------------------------------------------------------------------
# Concatenation (Hager et al. 2023)
# ----------------------------------------------------------------------------------------------


@declares(CONCAT)
class ConcatFusion(nn.Module):
    """[z_img, z_tab] -> Linear -> logits (Hager et al. 2023; AMF-MedIT §4.2.3)."""

    def __init__(self, *, d_img: int, d_tab: int, n_classes: int) -> None:
        _check_dims(d_img=d_img, d_tab=d_tab, n_classes=n_classes)
        super().__init__()
        self.config = dict(d_img=d_img, d_tab=d_tab, n_classes=n_classes)
        self.head = nn.Linear(d_img + d_tab, n_classes)

    def forward(self, z_img: Tensor, z_tab: Tensor, feature_map: Tensor | None = None) -> FusionOutput:
        return FusionOutput(self.head(torch.cat([z_img, z_tab], dim=1)), {})


# ----------------------------------------------------------------------------------------------
# Cross-attention (TIP-style multimodal transformer; Du et al. 2024)
# ----------------------------------------------------------------------------------------------


class _SelfAttention(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d)
        self.n_heads, self.dropout = n_heads, dropout

    def forward(self, x: Tensor) -> Tensor:
        B, L, d = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(B, L, d))


class _CrossAttention(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.q_proj = nn.Linear(d, d)
        self.kv_proj = nn.Linear(d, 2 * d, bias=False)
        self.proj = nn.Linear(d, d)
        self.n_heads, self.dropout = n_heads, dropout

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        B, L, d = x.shape
        h = self.n_heads
        q = self.q_proj(x).view(B, L, h, d // h).transpose(1, 2)
        k, v = self.kv_proj(memory).view(B, memory.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(B, L, d))


class _CrossBlock(nn.Module):
    """Pre-norm: x + SelfAttn(LN x); x + CrossAttn(LN x, image tokens); x + MLP(LN x)."""

    def __init__(self, d: int, n_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = _SelfAttention(d, n_heads, dropout)
        self.cross_norm = nn.LayerNorm(d)
        self.cross_attn = _CrossAttention(d, n_heads, dropout)
        self.norm2 = nn.LayerNorm(d)
        d_mlp = int(d * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, d_mlp), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_mlp, d), nn.Dropout(dropout))

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.cross_attn(self.cross_norm(x), memory)
        return x + self.mlp(self.norm2(x))


@declares(CROSS_ATTENTION)
class CrossAttentionFusion(nn.Module):
    """TIP-style cross-attention fusion (AMF-MedIT §4.2.3, after Du et al. 2024).

    The last image feature map is flattened to h*w tokens, projected to ``d_model`` (512) and
    layer-normalised; the tabular embedding is projected to one token; a learned [CLS] token
    and the tabular token form the query sequence of ``n_layers`` (2) blocks of
    self-attention + cross-attention to the image tokens + MLP (x4, GELU); the [CLS] output,
    layer-normalised, goes to the classifier. With D_img 2048, D_tab 64 and 2 classes this
    has 9,488,898 parameters (Table 3: 9.49 M).

    ``z_tab`` may also be a token sequence (B, T, D_tab) (TIP feeds every tabular token);
    Table 3's FLOPs correspond to T = 424 OL3I tokens (see ``amfmedit bench``).
    """

    def __init__(
        self,
        *,
        d_img: int,
        d_tab: int,
        n_classes: int,
        d_model: int = 512,
        n_layers: int = 2,
        n_heads: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ) -> None:
        _check_dims(d_img=d_img, d_tab=d_tab, n_classes=n_classes, d_model=d_model, n_layers=n_layers)
        if n_heads < 1 or d_model % n_heads:
            raise ValueError(f"d_model must be a positive multiple of n_heads, however: {d_model=}, {n_heads=}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), however: {dropout=}")
        super().__init__()
        self.config = dict(
            d_img=d_img, d_tab=d_tab, n_classes=n_classes, d_model=d_model, n_layers=n_layers,
            n_heads=n_heads, mlp_ratio=mlp_ratio, dropout=dropout,
        )
        self.image_proj = nn.Linear(d_img, d_model)
        self.image_norm = nn.LayerNorm(d_model)
        self.tabular_proj = nn.Linear(d_tab, d_model) if d_tab != d_model else nn.Identity()
        self.cls = nn.Parameter(torch.zeros(d_model))
        self.blocks = nn.ModuleList(_CrossBlock(d_model, n_heads, mlp_ratio, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_classes)
        self.apply(self._init_weights)
        nn.init.trunc_normal_(self.cls, std=0.02)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:  # TIP / BERT initialisation
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, z_img: Tensor, z_tab: Tensor, feature_map: Tensor | None = None) -> FusionOutput:
        if feature_map is None:
            raise ValueError("cross_attention fusion needs the image feature map (B, D_img, h, w)")
        memory = self.image_norm(self.image_proj(feature_map.flatten(2).transpose(1, 2)))  # (B, hw, d)
        tab = self.tabular_proj(z_tab if z_tab.dim() == 3 else z_tab.unsqueeze(1))  # (B, T, d)
        x = torch.cat([self.cls.expand(tab.shape[0], 1, -1), tab], dim=1)
        for block in self.blocks:
            x = block(x, memory)
        return FusionOutput(self.head(self.norm(x[:, 0])), {})


# ----------------------------------------------------------------------------------------------
# AMF: adaptive modulation and fusion (§3.3)
# ----------------------------------------------------------------------------------------------


def amf_split(d_out: int, r_conf: float) -> tuple[int, int]:
    """Eq. 6: L_tab = floor(D_out / (1 + R_conf)), L_img = D_out - L_tab. Returns (L_img, L_tab).

    R_conf = Confidence(z_img) / Confidence(z_tab) (eq. 3); e.g. D_out 2048 and R_conf 0.95
    give 998 / 1050.
    """
    if d_out < 2:
        raise ValueError(f"d_out must be at least 2, however: {d_out=}")
    if not (r_conf > 0 and math.isfinite(r_conf)):
        raise ValueError(f"r_conf must be a positive finite number, however: {r_conf=}")
    l_tab = math.floor(d_out / (1 + r_conf))
    l_img = d_out - l_tab
    if l_img < 1 or l_tab < 1:
        raise ValueError(
            f"r_conf leaves a modality with no dimensions (L_img={l_img}, L_tab={l_tab}), however: {r_conf=}, {d_out=}"
        )
    return l_img, l_tab


def amf_masks(d_out: int, l_img: int) -> tuple[Tensor, Tensor]:
    """Eq. 7: m_img = [1 x L_img, 0 x L_tab], m_tab = 1 - m_img (float vectors of length D_out)."""
    m_img = torch.zeros(d_out)
    m_img[:l_img] = 1.0
    return m_img, 1.0 - m_img


def amf_fuse(z_img: Tensor, z_tab: Tensor, m_img: Tensor, m_tab: Tensor) -> Tensor:
    """Eq. 8: z_fused = m_img * z'_img + m_tab * z'_tab: (B, D_out)."""
    return torch.addcmul(z_img * m_img, z_tab, m_tab)


@declares(AMF)
class AMFFusion(nn.Module):
    """Adaptive Modulation and Fusion (AMF-MedIT §3.3, Fig. 3).

    Psi_img: D_img -> D_img -> D_out and Psi_tab: D_tab -> D_tab -> D_out (Linear-ReLU-Linear,
    the pretraining heads' form), the masks of eq. 6/7 from R_conf, the fused vector of eq. 8
    into Linear(D_out, n_classes), and ``aux = {"leakage": eq. 9, "density": eq. 10}`` on the
    transitional features (unweighted; λ1 = λ2 = 5 are applied by eq. 14,
    :func:`amfmedit.models.losses.finetune_loss`). The auxiliary losses belong to the
    fine-tuning objective only: ``with_aux=None`` (default) computes them when gradients are
    being recorded and skips them under ``torch.no_grad()`` (inference, Table 3's latency);
    pass ``with_aux=True`` to get them anyway. With D_img 2048, D_tab 64, D_out 2048 and
    2 classes this has 8,534,082 parameters (Table 3: 8.53 M). The masks are non-persistent
    buffers: they follow ``.to(device)`` and are rebuilt from ``config``. ``normaliser``: how
    eq. 9/10 divide their sums (:data:`~amfmedit.models.losses.NORMALISERS`; "authors" swaps
    L_img and L_tab as the authors' code does).

    Rows without a modality (``image_present`` / ``table_present`` (B,) bool, None: all rows
    have it) arrive with that modality's z replaced by the classifier's learned absent vector.
    The masks of eq. 6-7 stay as R_conf sets them and eq. 8 runs unchanged, so the absent
    modality's retained part is Psi(absent vector): a learned constant in its L dims. The
    leakage loss (eq. 9) sums each modality's term over the rows that have that modality, the
    density loss (eq. 10) runs over the rows that have both (see :func:`amf_aux_losses`).
    """

    def __init__(self, *, d_img: int, d_tab: int, n_classes: int, r_conf: float, d_out: int = AMFSettings.d_out,
                 normaliser: str = AMFSettings.normaliser) -> None:
        _check_dims(d_img=d_img, d_tab=d_tab, n_classes=n_classes)
        l_img, l_tab = amf_split(d_out, r_conf)
        if normaliser not in NORMALISERS:
            raise ValueError(f"normaliser must be one of {NORMALISERS}, however: {normaliser=}")
        super().__init__()
        self.config = dict(d_img=d_img, d_tab=d_tab, n_classes=n_classes, r_conf=float(r_conf), d_out=d_out,
                           normaliser=normaliser)
        self.normaliser = normaliser
        self.l_img, self.l_tab = l_img, l_tab
        m_img, m_tab = amf_masks(d_out, l_img)
        self.register_buffer("m_img", m_img, persistent=False)
        self.register_buffer("m_tab", m_tab, persistent=False)
        self.psi_img = ProjectionHead(d_in=d_img, d_hidden=d_img, d_out=d_out)
        self.psi_tab = ProjectionHead(d_in=d_tab, d_hidden=d_tab, d_out=d_out)
        self.head = nn.Linear(d_out, n_classes)

    def forward(
        self, z_img: Tensor, z_tab: Tensor, feature_map: Tensor | None = None, *, with_aux: bool | None = None,
        image_present: Tensor | None = None, table_present: Tensor | None = None,
    ) -> FusionOutput:
        zt_img, zt_tab = self.psi_img(z_img), self.psi_tab(z_tab)
        m_img, m_tab = self.m_img.to(zt_img.dtype), self.m_tab.to(zt_img.dtype)
        logits = self.head(amf_fuse(zt_img, zt_tab, m_img, m_tab))
        if not (torch.is_grad_enabled() if with_aux is None else with_aux):
            return FusionOutput(logits, {})
        return FusionOutput(logits, amf_aux_losses(zt_img, zt_tab, m_img, m_tab, image_present, table_present,
                                                   self.normaliser))


def amf_aux_losses(zt_img: Tensor, zt_tab: Tensor, m_img: Tensor, m_tab: Tensor, image_present: Tensor | None,
                   table_present: Tensor | None, normaliser: str = "paper") -> dict[str, Tensor]:
    """``{"leakage": eq. 9, "density": eq. 10}`` over the rows each is defined for.

    zt_img, zt_tab: (B, D_out) transitional features; presence flags (B,) bool or None (all);
    ``normaliser`` as :func:`~amfmedit.models.losses.leakage_loss`.
    """
    # NOTE[paper]: eq. 9-10 assume every row has both modalities. For a row without one, that
    # modality's z' is Psi(learned absent vector), not a feature of the patient: its leakage
    # term would only shrink a constant, and eq. 10 would pull the absent vector's density
    # towards every other row's (and theirs towards it), aligning a placeholder with real
    # features. So eq. 9's image term runs over the rows with an image, its tabular term over
    # the rows with a table, and eq. 10 over the complete rows (each a mean over its rows, so
    # with every row complete this is eq. 9-10 exactly; with no such row the term is 0).
    # Giving the present modality the absent one's L dims instead (a per-row mask) would feed
    # the head the discarded part that eq. 9 trains to be empty, in positions whose meaning
    # then changes from row to row, so the masks of eq. 6-7 are kept as R_conf sets them.
    complete = None
    if image_present is not None or table_present is not None:
        ones = torch.ones(zt_img.shape[0], dtype=torch.bool, device=zt_img.device)
        image_present = ones if image_present is None else image_present
        table_present = ones if table_present is None else table_present
        complete = image_present & table_present
    return {
        "leakage": leakage_loss(zt_img, zt_tab, m_img, m_tab, normaliser, image_rows=image_present,
                                table_rows=table_present),
        "density": density_loss(zt_img, zt_tab, m_img, m_tab, normaliser, rows=complete),
    }
