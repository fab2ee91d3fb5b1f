"""Every tabular encoder x every fusion, forward and backward; the encoder contract; errors."""

from __future__ import annotations

import pytest
import torch

from amfmedit.models import (
    FUSIONS,
    TABULAR_ENCODERS,
    FTMambaEncoder,
    FTTransformerEncoder,
    ImageEncoder,
    ImageTabularClassifier,
    build_fusion,
    build_tabular_encoder,
    losses,
)

from tiny_settings import TINY_ENCODERS as TINY  # noqa: E402  (tests/tiny_settings.py)
from tiny_settings import fusion_kwargs as tiny_fusion_kwargs  # noqa: E402

N_CONT, CARDS, N_CLASSES = 5, [3, 4], 3


@pytest.fixture(scope="module")
def image_encoder():
    torch.manual_seed(0)
    return ImageEncoder(arch="resnet18", in_channels=1)


def batch(b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 1, 32, 32, generator=g), torch.randn(b, N_CONT, generator=g),
            torch.stack([torch.randint(0, c, (b,), generator=g) for c in CARDS], dim=1))


def fusion_kwargs(name, d_img, d_tab):
    return tiny_fusion_kwargs(name, d_img=d_img, d_tab=d_tab, n_classes=N_CLASSES)


@pytest.mark.parametrize("fusion_name", list(FUSIONS))
@pytest.mark.parametrize("encoder_name", list(TABULAR_ENCODERS))
def test_every_encoder_with_every_fusion_forward_backward(encoder_name, fusion_name, image_encoder):
    torch.manual_seed(0)
    tab = build_tabular_encoder(encoder_name, n_cont_features=N_CONT, cat_cardinalities=CARDS, **TINY[encoder_name])
    fusion = build_fusion(fusion_name, **fusion_kwargs(fusion_name, image_encoder.d_out, tab.d_out))
    model = ImageTabularClassifier(image_encoder, tab, fusion)
    image, x_cont, x_cat = batch()
    out = model(image, x_cont, x_cat)
    assert out.logits.shape == (3, N_CLASSES) and torch.isfinite(out.logits).all()
    assert set(out.aux) == set(FUSIONS[fusion_name].aux_weights)  # every auxiliary loss has a weight
    loss = losses.finetune_loss(losses.ce_loss(out.logits, torch.tensor([0, 1, 2])), out.aux,
                                FUSIONS[fusion_name].aux_weights)
    model.zero_grad()
    loss.backward()
    for part in (tab, fusion):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
    assert image_encoder.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("encoder_name", list(TABULAR_ENCODERS))
@pytest.mark.parametrize("n_cont,cards", [(N_CONT, CARDS), (0, CARDS), (N_CONT, [])])
def test_encoder_contract_embedded_forward(encoder_name, n_cont, cards):
    torch.manual_seed(0)
    enc = build_tabular_encoder(encoder_name, n_cont_features=n_cont, cat_cardinalities=cards, **TINY[encoder_name])
    enc.eval()
    x_cont = torch.randn(4, n_cont)
    x_cat = torch.stack([torch.arange(4) % c for c in cards], dim=1) if cards else torch.zeros(4, 0, dtype=torch.long)
    e_cat = enc.embed_categorical(x_cat)
    assert e_cat.shape[:2] == (4, len(cards)) and e_cat.dtype == torch.float32
    z = enc(x_cont, x_cat)
    assert z.shape == (4, enc.d_out) and enc.d_out == 16
    torch.testing.assert_close(enc.forward_embedded(x_cont, e_cat), z)
    # Integrated Gradients differentiates through both inputs of forward_embedded.
    xc, ec = x_cont.clone().requires_grad_(), e_cat.detach().clone().requires_grad_()
    # (a random direction: the sum of a LayerNorm output is constant, its gradient zero)
    (enc.forward_embedded(xc, ec) * torch.randn(4, enc.d_out)).sum().backward()
    if n_cont:
        assert xc.grad.abs().sum() > 0
    if cards:
        assert ec.grad.sum(-1).shape == (4, len(cards)) and ec.grad.abs().sum() > 0


def test_paper_default_widths():
    kw = dict(n_cont_features=423, cat_cardinalities=[])
    assert {n: build_tabular_encoder(n, **kw).d_out for n in TABULAR_ENCODERS} == {
        "mlp": 256, "resnet": 256, "ft_transformer": 64, "ft_mamba": 64}
    ftt = FTTransformerEncoder(**kw)
    assert "attention_normalization" not in ftt.blocks[0] and "attention_normalization" in ftt.blocks[1]
    assert ftt.blocks[0]["ffn_linear2"].in_features == 85  # int(64 * 4/3), ReGLU
    assert ftt.blocks[0]["attention"].dropout == 0.2 and ftt.ffn_dropout.p == 0.1
    ftm = FTMambaEncoder(**kw)
    assert len(ftm.blocks) == 2 and ftm.blocks[0].d_state == 16 and ftm.pooling == "avg"  # the reference code; "cls" is the paper text (NOTE[paper])


def test_ft_mamba_cls_at_the_end_sees_every_feature():
    torch.manual_seed(0)
    x_cont, x_cat = torch.randn(2, N_CONT), torch.zeros(2, 2, dtype=torch.long)
    for pooling in ("cls", "avg"):
        enc = FTMambaEncoder(n_cont_features=N_CONT, cat_cardinalities=CARDS, d_block=16, d_state=4, pooling=pooling).eval()
        tokens = enc.tokenizer.tokens(x_cont, enc.embed_categorical(x_cat), cls="last" if pooling == "cls" else "first")
        cls_pos = -1 if pooling == "cls" else 0
        torch.testing.assert_close(tokens[0, cls_pos], enc.tokenizer.cls.data)
        x2 = x_cont.clone()
        x2[:, 0] += 1.0  # the first feature token: only a [CLS] after it can see it (causal scan)
        assert not torch.allclose(enc(x_cont, x_cat), enc(x2, x_cat))


def test_ft_mamba_reference_variant_without_residuals():
    enc = FTMambaEncoder(n_cont_features=3, cat_cardinalities=[], d_block=16, d_state=4, pooling="avg", residual=False)
    assert enc.norms is None
    assert enc(torch.randn(2, 3), torch.zeros(2, 0, dtype=torch.long)).shape == (2, 16)


@pytest.mark.parametrize("pooling", ["avg", "cls"])
@pytest.mark.parametrize("residual", [True, False], ids=["residual", "bare"])
@pytest.mark.parametrize("impl", ["native", "sequential", "chunked"])
def test_ft_mamba_pooled_last_block_equals_pooling_the_full_output(pooling, residual, impl):
    # The last block returns its output pooled over time with out_proj applied after the
    # pooling (it is linear): the encoder's value and every parameter gradient must equal
    # running that block on every token and pooling afterwards.
    from amfmedit.models import native_scan, set_scan_impl

    if impl == "native" and not native_scan.available():
        pytest.skip(native_scan.status())
    torch.manual_seed(0)
    enc = FTMambaEncoder(n_cont_features=N_CONT, cat_cardinalities=CARDS, d_block=16, d_state=4,
                         pooling=pooling, residual=residual)
    set_scan_impl(enc, impl)
    for block in enc.blocks:  # a bias, so that "mean of (W y + b)" = "W mean(y) + b" is tested too
        block.out_proj.bias = torch.nn.Parameter(torch.randn(16))
    x_cont, x_cat = torch.randn(3, N_CONT), torch.randint(0, 3, (3, 2))

    def unpooled():
        x = enc.tokenizer.tokens(x_cont, enc.embed_categorical(x_cat), cls="last" if pooling == "cls" else "first")
        x = x.transpose(0, 1)
        for i, block in enumerate(enc.blocks):
            x = x + block(enc.norms[i](x), time_major=True) if residual else block(x, time_major=True)
        return enc.norm_f(x[-1] if pooling == "cls" else x.mean(dim=0))

    params = list(enc.parameters())
    out, ref = enc(x_cont, x_cat), unpooled()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    w = torch.randn_like(out)
    grads = torch.autograd.grad((out * w).sum(), params, allow_unused=True)
    ref_grads = torch.autograd.grad((ref * w).sum(), params, allow_unused=True)
    for (name, _), g, rg in zip(enc.named_parameters(), grads, ref_grads):
        assert (g is None) == (rg is None), name
        if g is not None:
            torch.testing.assert_close(g, rg, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("call,match", [
    (lambda: build_tabular_encoder("tabnet", n_cont_features=3, cat_cardinalities=[]),
     r"unknown tabular encoder 'tabnet'; choose one of: mlp, resnet, ft_transformer, ft_mamba"),
    (lambda: build_fusion("film", d_img=4, d_tab=4, n_classes=2),
     r"unknown fusion 'film'; choose one of: concat, cross_attention, amf"),
    (lambda: build_tabular_encoder("mlp", n_cont_features=0, cat_cardinalities=[]), "at least one feature"),
    (lambda: build_tabular_encoder("mlp", n_cont_features=2, cat_cardinalities=[3, 0]), r"cat_cardinalities\[1\]=0"),
    (lambda: build_tabular_encoder("resnet", n_cont_features=2, cat_cardinalities=[], n_blocks=0), "n_blocks=0"),
    (lambda: build_tabular_encoder("ft_transformer", n_cont_features=2, cat_cardinalities=[], d_block=30),
     "multiple of n_heads"),
    (lambda: build_tabular_encoder("ft_mamba", n_cont_features=2, cat_cardinalities=[], pooling="max"), "pooling='max'"),
    (lambda: build_tabular_encoder("ft_mamba", n_cont_features=2, cat_cardinalities=[], d_state=512), "d_state=512"),
    (lambda: build_fusion("amf", d_img=8, d_tab=4, n_classes=2, r_conf=0), "r_conf=0"),
    (lambda: build_fusion("amf", d_img=8, d_tab=4, n_classes=2, r_conf=1.0, d_out=1), "d_out=1"),
    (lambda: build_fusion("cross_attention", d_img=8, d_tab=4, n_classes=2, d_model=30), "multiple of n_heads"),
    (lambda: ImageEncoder(in_channels=2), "in_channels=2"),
])
def test_constructors_validate_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
