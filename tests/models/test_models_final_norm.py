"""FT-Mamba's final norm: torch's LayerNorm (ours) or mambular's (x - mean) / (unbiased std + eps)
(the authors' code), a setting that old checkpoints load without."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from amfmedit.models import FTMambaEncoder, build_model, from_checkpoint, model_config
from amfmedit.models.tabular import StdNorm


def test_the_authors_final_norm_divides_by_the_unbiased_std_plus_eps():
    x = torch.tensor([[1.0, 2.0, 3.0, 6.0]])  # mean 3, unbiased variance 14/3, biased 14/4
    centred = [-2.0, -1.0, 0.0, 3.0]
    theirs = StdNorm(4)(x)[0].tolist()
    assert theirs == pytest.approx([c / (math.sqrt(14 / 3) + 1e-5) for c in centred], rel=1e-6)
    ours = nn.LayerNorm(4)(x)[0].tolist()
    assert ours == pytest.approx([c / math.sqrt(14 / 4 + 1e-5) for c in centred], rel=1e-6)
    assert abs(theirs[3] - ours[3]) > 0.1


def test_final_norm_is_a_setting_and_old_checkpoints_load_with_ours():
    torch.manual_seed(0)
    enc = FTMambaEncoder(n_cont_features=5, cat_cardinalities=[3], d_block=8, d_state=4, final_norm="mambular")
    assert isinstance(enc.norm_f, StdNorm) and enc.config["final_norm"] == "mambular"
    x_cont, x_cat = torch.randn(6, 5), torch.randint(0, 3, (6, 1))
    again = from_checkpoint({**model_config(enc), "state_dict": enc.state_dict()})
    assert torch.equal(again(x_cont, x_cat), enc(x_cont, x_cat))
    # a checkpoint written before the setting: torch's LayerNorm, with the same parameter names
    old = {k: v for k, v in enc.config.items() if k != "final_norm"}
    ours = build_model("ft_mamba", old)
    assert isinstance(ours.norm_f, nn.LayerNorm)
    ours.load_state_dict(enc.state_dict(), strict=True)
    assert not torch.allclose(ours(x_cont, x_cat), enc(x_cont, x_cat))
    with pytest.raises(ValueError, match="final_norm"):
        FTMambaEncoder(n_cont_features=5, cat_cardinalities=[], final_norm="rms")
