"""FT-Mamba's readout is chosen at pretraining and carried by the checkpoint."""

from __future__ import annotations

import pytest

from amfmedit.errors import UserError
from amfmedit.stages.pretrain import PretrainConfig, build_contrastive, tabular_kwargs


def test_ft_mamba_pooling_reaches_the_encoder(tiny_ol3i):
    from amfmedit.data import load_prepared

    schema = load_prepared(tiny_ol3i).schema
    base = dict(tabular_encoder="ft_mamba", tabular_dim=8, image_arch="resnet18")
    assert build_contrastive(schema, PretrainConfig(**base)).tabular_encoder.pooling == "avg"
    cfg = PretrainConfig(**base, ft_mamba_pooling="cls")
    cfg.validate()
    # token mode (the default) without a list of missing features: every feature may be missing
    assert tabular_kwargs(cfg) == {"d_block": 8, "pooling": "cls", "missing": "token", "missing_features": None}
    model = build_contrastive(schema, cfg)
    assert model.tabular_encoder.pooling == "cls" and model.tabular_encoder.config["pooling"] == "cls"


@pytest.mark.parametrize("changes, message", [
    (dict(ft_mamba_pooling="mean"), "--ft-mamba-pooling"),
    (dict(tabular_encoder="mlp", ft_mamba_pooling="cls"), "only for --tabular-encoder ft_mamba"),
])
def test_bad_ft_mamba_pooling_is_one_clear_error(changes, message):
    with pytest.raises(UserError, match=message):
        PretrainConfig(**changes).validate()
