"""Feature tokenizer (Gorishniy et al. 2021, Fig. 2a; AMF-MedIT §3.2.1) and one-hot inputs.

Every tabular encoder takes ``x_cont`` (B, n_cont) float32 and ``x_cat`` (B, n_cat) int64,
where categorical code 0 is "missing/unseen" and ``cat_cardinalities`` count it. For
Integrated Gradients each encoder splits its forward into ``embed_categorical`` (the
non-differentiable lookup) and ``forward_embedded`` (differentiable in both arguments).

Missing values (``missing`` (B, F) bool, continuous features first, as ``x_cont`` then
``x_cat``) are read in one of two ways, :data:`MISSING_MODES`:

- ``"impute"``: the mask is ignored; a missing value is its imputed value (the train median,
  categorical code 0), as the paper's preprocessing leaves it;
- ``"token"``: a missing value is never read. :class:`FeatureTokenizer` replaces the feature's
  value embedding by a learned per-feature "missing" embedding (TIP, Du et al. 2024, replaces it
  by a shared [MASK] token and then adds a per-column embedding, i.e. one learned vector per
  feature; this tokenizer has no column embedding, so the per-feature vector is learned
  directly); :class:`OneHotInputs` zeroes the value (and the one-hot row) and appends the
  indicator column.

``missing_features`` (input-order indices; None: all) limits token mode to the features that
can be missing: the others are read as imputed, as a feature never missing in the training
rows has no trained missing embedding. It also keeps the MLP/ResNet input narrow: OL3I's
counts (ICD, CPT, ATC) are never missing, so at 424 features about 33 indicator columns are
needed, not 424 (which would double the width of their first layer).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torch import Tensor

#: How an encoder reads missing values (see the module docstring); torch-free, for --help.
from amfmedit.models.specs import MISSING_MODES


def check_missing_mode(missing: str) -> str:
    """Validate an encoder's ``missing`` setting."""
    if missing not in MISSING_MODES:
        raise ValueError(f"missing must be one of {MISSING_MODES}, however: {missing=}")
    return missing


def check_missing_features(missing_features: Sequence[int] | None, n_features: int) -> list[int]:
    """The features whose missingness a token encoder reads: sorted, unique, in ``range(n_features)``
    (None: all of them)."""
    if missing_features is None:
        return list(range(n_features))
    cols = sorted({int(j) for j in missing_features})
    if cols and not (0 <= cols[0] and cols[-1] < n_features):
        raise ValueError(f"missing_features must index the {n_features} features, however: {cols[0]=}, {cols[-1]=}")
    return cols


def _readable(cols: Sequence[int], n_features: int) -> Tensor:
    out = torch.zeros(n_features, dtype=torch.bool)
    out[list(cols)] = True
    return out


def _observed(missing: Tensor | None, batch: int, n_features: int, device: torch.device) -> Tensor:
    """The (B, F) mask to apply: ``missing`` checked, or nothing missing when it is None."""
    if missing is None:
        return torch.zeros(batch, n_features, dtype=torch.bool, device=device)
    if missing.shape != (batch, n_features):
        raise ValueError(f"missing must be (B, F) = {(batch, n_features)}, however: {tuple(missing.shape)=}")
    return missing.bool()


def check_features(n_cont_features: int, cat_cardinalities: Sequence[int]) -> list[int]:
    """Validate the feature description shared by all encoders; returns the cardinalities as ints."""
    if n_cont_features < 0:
        raise ValueError(f"n_cont_features must be non-negative, however: {n_cont_features=}")
    cards = [int(c) for c in cat_cardinalities]
    for i, c in enumerate(cards):
        if c < 1:
            raise ValueError(f"cat_cardinalities must be positive, however: cat_cardinalities[{i}]={c}")
    if n_cont_features == 0 and not cards:
        raise ValueError(f"at least one feature is needed, however: {n_cont_features=}, {cat_cardinalities=}")
    return cards


class ContinuousEmbeddings(nn.Module):
    """x_j -> x_j * W_j + b_j for each continuous feature j: (B, n) -> (B, n, d)."""

    def __init__(self, n_features: int, d_embedding: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_features, d_embedding))
        self.bias = nn.Parameter(torch.empty(n_features, d_embedding))
        bound = d_embedding**-0.5  # rtdl's initialisation
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.bias, x.unsqueeze(-1), self.weight)


class CategoricalEmbeddings(nn.Module):
    """A lookup table per categorical feature plus a per-feature bias: (B, n) -> (B, n, d).

    One table with offsets instead of a ModuleList of nn.Embedding: one gather for all
    features, which matters with hundreds of categorical columns.
    """

    def __init__(self, cardinalities: Sequence[int], d_embedding: int) -> None:
        super().__init__()
        cards = torch.tensor(list(cardinalities), dtype=torch.long)
        self.register_buffer("offsets", torch.cumsum(cards, 0) - cards, persistent=False)
        self.embedding = nn.Embedding(int(cards.sum()), d_embedding)
        self.bias = nn.Parameter(torch.empty(len(cards), d_embedding))
        bound = d_embedding**-0.5
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x_cat: Tensor) -> Tensor:
        return self.embedding(x_cat + self.offsets) + self.bias


class FeatureTokenizer(nn.Module):
    """Continuous and categorical features to tokens, plus a learned [CLS] token.

    ``embed_categorical``: (B, n_cat) int64 -> (B, n_cat, d).
    ``tokens(x_cont, e_cat, cls, missing)``: (B, n_cont + n_cat [+ 1], d); ``cls`` is
    ``"first"``, ``"last"`` or ``None``. With ``missing_features`` (a list of input-order
    indices) a feature of the list marked in ``missing`` (B, F) gets ``missing_embedding[j]``
    (F, d) instead of its value embedding (``missing`` None: nothing missing); the replacement
    always runs, so the parameter takes part in every step (DistributedDataParallel needs every
    parameter to receive a gradient). ``missing_features=None``: no missing embedding.
    """

    def __init__(self, *, n_cont_features: int, cat_cardinalities: Sequence[int], d_token: int,
                 missing_features: Sequence[int] | None = None) -> None:
        super().__init__()
        cards = check_features(n_cont_features, cat_cardinalities)
        self.n_cont, self.n_cat, self.d_token = n_cont_features, len(cards), d_token
        self.cont = ContinuousEmbeddings(n_cont_features, d_token) if n_cont_features else None
        self.cat = CategoricalEmbeddings(cards, d_token) if cards else None
        self.cls = nn.Parameter(torch.empty(d_token))
        bound = d_token**-0.5
        nn.init.uniform_(self.cls, -bound, bound)
        self.missing_embedding = None
        n_features = n_cont_features + len(cards)
        cols = [] if missing_features is None else check_missing_features(missing_features, n_features)
        if cols:  # none listed: no parameter, so the model (and its initialisation) is the imputing one
            self.register_buffer("readable", _readable(cols, n_features), persistent=False)
            self.missing_embedding = nn.Parameter(torch.empty(n_features, d_token))
            nn.init.uniform_(self.missing_embedding, -bound, bound)  # as the value embeddings' biases

    def embed_categorical(self, x_cat: Tensor) -> Tensor:
        if self.cat is None:
            return x_cat.new_zeros(x_cat.shape[0], 0, self.d_token, dtype=self.cls.dtype)
        return self.cat(x_cat)

    def tokens(self, x_cont: Tensor, e_cat: Tensor, cls: str | None, missing: Tensor | None = None) -> Tensor:
        parts = []
        batch = e_cat.shape[0]
        cls_token = self.cls.expand(batch, 1, -1)
        if cls == "first":
            parts.append(cls_token)
        e_cont = self.cont(x_cont) if self.cont is not None else None
        if self.missing_embedding is not None:
            # each part is replaced on its own, so the one concatenation below stays the only copy
            m = (_observed(missing, batch, self.n_cont + self.n_cat, e_cat.device) & self.readable).unsqueeze(-1)
            if e_cont is not None:
                e_cont = torch.where(m[:, : self.n_cont], self.missing_embedding[: self.n_cont].to(e_cont.dtype), e_cont)
            if self.n_cat:
                e_cat = torch.where(m[:, self.n_cont :], self.missing_embedding[self.n_cont :].to(e_cat.dtype), e_cat)
        if e_cont is not None:
            parts.append(e_cont)
        if self.n_cat:
            parts.append(e_cat)
        if cls == "last":
            parts.append(cls_token)
        return torch.cat(parts, dim=1)


class OneHotInputs(nn.Module):
    """Flat model input for MLP/ResNet: [x_cont, one-hot(x_cat)] (Gorishniy et al. §3.1).

    ``embed_categorical`` returns the one-hot codes padded to the largest cardinality,
    (B, n_cat, max_card); ``flat(x_cont, e_cat)`` drops the padding: (B, n_cont + sum(card)).
    With ``missing_features`` (K input-order indices), ``flat(x_cont, e_cat, missing)`` zeroes
    the values and one-hot rows of those features marked in ``missing`` (B, F) and appends their
    K indicator columns: (B, n_cont + sum(card) + K) (``missing`` None: nothing missing).
    """

    def __init__(self, *, n_cont_features: int, cat_cardinalities: Sequence[int],
                 missing_features: Sequence[int] | None = None) -> None:
        super().__init__()
        cards = check_features(n_cont_features, cat_cardinalities)
        self.n_cont, self.n_features = n_cont_features, n_cont_features + len(cards)
        self.d_pad = max(cards, default=1)
        keep = [i * self.d_pad + j for i, c in enumerate(cards) for j in range(c)]
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long), persistent=False)
        self.indicators = missing_features is not None
        cols = check_missing_features(missing_features, self.n_features) if self.indicators else []
        self.register_buffer("indicator_columns", torch.tensor(cols, dtype=torch.long), persistent=False)
        self.register_buffer("readable", _readable(cols, self.n_features), persistent=False)
        self.d_in = n_cont_features + sum(cards) + len(cols)

    def embed_categorical(self, x_cat: Tensor) -> Tensor:
        return nn.functional.one_hot(x_cat, self.d_pad).to(torch.float32)

    def flat(self, x_cont: Tensor, e_cat: Tensor, missing: Tensor | None = None) -> Tensor:
        if not self.indicators:
            onehot = e_cat.reshape(e_cat.shape[0], -1).index_select(1, self.keep)
            return torch.cat([x_cont, onehot.to(x_cont.dtype)], dim=1)
        m = _observed(missing, x_cont.shape[0], self.n_features, x_cont.device) & self.readable
        # a missing value never reaches the network: its gradient (its IG attribution) is zero
        x_cont = x_cont.masked_fill(m[:, : self.n_cont], 0.0)
        e_cat = e_cat.masked_fill(m[:, self.n_cont :, None], 0.0)
        onehot = e_cat.reshape(e_cat.shape[0], -1).index_select(1, self.keep)
        indicators = m.index_select(1, self.indicator_columns)
        return torch.cat([x_cont, onehot.to(x_cont.dtype), indicators.to(x_cont.dtype)], dim=1)
