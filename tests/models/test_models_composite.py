"""Composite models: frozen means frozen, checkpoints rebuild without pickles, image encoder."""

from __future__ import annotations

import pytest
import torch

from amfmedit.errors import UserError
from amfmedit.io import torch_load, torch_save
from amfmedit.models import (
    ContrastiveModel,
    ImageEncoder,
    ImageTabularClassifier,
    UnimodalClassifier,
    build_fusion,
    build_model,
    build_tabular_encoder,
    from_checkpoint,
    losses,
    model_config,
    to_checkpoint,
)

from tiny_settings import fusion_kwargs  # noqa: E402  (tests/tiny_settings.py)

CARDS = [3, 2]


def inputs(b=4, seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 1, size, size, generator=g), torch.randn(b, 6, generator=g),
            torch.stack([torch.randint(0, c, (b,), generator=g) for c in CARDS], dim=1))


def classifier(strategy, fusion="concat", tab="resnet"):
    torch.manual_seed(0)
    img = ImageEncoder(arch="resnet18")
    enc = build_tabular_encoder(tab, n_cont_features=6, cat_cardinalities=CARDS, d_block=16)
    fu = build_fusion(fusion, **fusion_kwargs(fusion, d_img=img.d_out, d_tab=enc.d_out, n_classes=2))
    return ImageTabularClassifier(img, enc, fu, strategy=strategy)


def clone_state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def train_steps(model, n=3):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    for step in range(n):
        image, x_cont, x_cat = inputs(seed=step)
        out = model(image, x_cont, x_cat)
        loss = losses.finetune_loss(losses.ce_loss(out.logits, torch.tensor([0, 1, 0, 1])), out.aux,
                                    getattr(model, "fusion", None).aux_weights if hasattr(model, "fusion") else {})
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_frozen_means_frozen_parameters_and_batchnorm_statistics():
    model = classifier("frozen")  # ResNet image encoder and ResNet tabular encoder: both have BN
    before_img, before_tab = clone_state(model.image_encoder), clone_state(model.tabular_encoder)
    before_fusion = clone_state(model.fusion)
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert not any(p.requires_grad for p in model.tabular_encoder.parameters())
    train_steps(model)
    assert model.training and not model.image_encoder.training and not model.tabular_encoder.training
    for before, enc in ((before_img, model.image_encoder), (before_tab, model.tabular_encoder)):
        after = enc.state_dict()
        assert set(after) == set(before)
        for k in before:  # bit-identical, running_mean/var and num_batches_tracked included
            assert torch.equal(after[k], before[k]), k
    assert any(not torch.equal(v, model.fusion.state_dict()[k]) for k, v in before_fusion.items())


def test_trainable_strategy_updates_encoders_and_batchnorm_statistics():
    # The counterpart: the same steps without freezing do move weights and BN buffers.
    model = classifier("trainable")
    before = clone_state(model.image_encoder)
    train_steps(model, n=1)
    after = model.image_encoder.state_dict()
    assert not torch.equal(after["bn1.running_mean"], before["bn1.running_mean"])
    assert not torch.equal(after["conv1.weight"], before["conv1.weight"])


def test_frozen_encoders_still_pass_gradients_to_their_inputs():
    model = classifier("frozen", tab="ft_transformer").eval()
    image, x_cont, x_cat = inputs()
    image.requires_grad_()
    x_cont.requires_grad_()
    model(image, x_cont, x_cat).logits[:, 1].sum().backward()
    assert image.grad.abs().sum() > 0 and x_cont.grad.abs().sum() > 0


@pytest.mark.parametrize("fusion,tab", [("amf", "ft_mamba"), ("cross_attention", "ft_transformer"), ("concat", "mlp")])
def test_checkpoint_round_trip_rebuilds_the_same_model(fusion, tab, tmp_path):
    model = classifier("frozen", fusion=fusion, tab=tab).eval()
    path = tmp_path / "model.pt"
    torch_save(to_checkpoint(model, epoch=3), path)
    ckpt = torch_load(path)  # weights_only=True: no pickled objects inside
    assert ckpt["kind"] == "image_tabular_classifier" and ckpt["epoch"] == 3
    assert ckpt["config"]["fusion"]["kind"] == fusion and ckpt["config"]["strategy"] == "frozen"
    rebuilt = from_checkpoint(ckpt).eval()
    image, x_cont, x_cat = inputs()
    a, b = model(image, x_cont, x_cat), rebuilt(image, x_cont, x_cat)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
    assert rebuilt.strategy == "frozen" and not any(p.requires_grad for p in rebuilt.image_encoder.parameters())


def test_contrastive_and_unimodal_models_rebuild_and_shapes(tmp_path):
    torch.manual_seed(0)
    img = ImageEncoder(arch="resnet18")
    tab = build_tabular_encoder("ft_mamba", n_cont_features=6, cat_cardinalities=CARDS, d_block=16, d_state=4)
    pre = ContrastiveModel(img, tab).eval()
    assert (pre.image_head.linear1.in_features, pre.image_head.linear1.out_features, pre.image_head.linear2.out_features) == (512, 512, 128)
    assert (pre.tabular_head.linear1.in_features, pre.tabular_head.linear2.out_features) == (16, 128)
    image, x_cont, x_cat = inputs()
    p_img, p_tab = pre(image, x_cont, x_cat)
    assert p_img.shape == p_tab.shape == (4, 128)
    torch_save(to_checkpoint(pre), tmp_path / "pre.pt")
    again = from_checkpoint(torch_load(tmp_path / "pre.pt")).eval()
    torch.testing.assert_close(again(image, x_cont, x_cat)[1], p_tab)

    probe = UnimodalClassifier(pre.tabular_encoder, n_classes=2, modality="tabular", strategy="frozen")
    assert probe(x_cont=x_cont, x_cat=x_cat).logits.shape == (4, 2)
    img_probe = UnimodalClassifier(pre.image_encoder, n_classes=5, modality="image")
    assert img_probe(image).logits.shape == (4, 5)
    rebuilt = build_model(**model_config(probe))
    assert rebuilt.config == probe.config and rebuilt.strategy == "frozen"
    with pytest.raises(ValueError, match="needs x_cont and x_cat"):
        probe(image)
    with pytest.raises(ValueError, match="modality must be"):
        UnimodalClassifier(tab, n_classes=2, modality="text")
    with pytest.raises(ValueError, match="strategy must be one of"):
        UnimodalClassifier(tab, n_classes=2, modality="tabular", strategy="partial")
    with pytest.raises(ValueError, match="unknown model kind 'gpt'"):
        build_model("gpt", {})


def test_fusion_dims_must_match_encoders():
    img = ImageEncoder(arch="resnet18")
    tab = build_tabular_encoder("mlp", n_cont_features=6, cat_cardinalities=CARDS, d_block=16)
    with pytest.raises(ValueError, match="fusion dims must match"):
        ImageTabularClassifier(img, tab, build_fusion("concat", d_img=2048, d_tab=16, n_classes=2))


def test_resnet50_image_encoder_shapes_and_target_layer():
    enc = ImageEncoder()  # ResNet-50, 1-channel stem, random init
    enc.eval()  # batch 1: BatchNorm needs running statistics
    x = torch.rand(1, 1, 64, 64)
    fmap = enc.forward_features(x)
    assert fmap.shape == (1, 2048, 2, 2) and enc.d_out == 2048
    torch.testing.assert_close(enc(x), fmap.mean(dim=(2, 3)))
    assert enc.target_layer is enc.layer4 and enc.conv1.in_channels == 1
    assert "fc.weight" not in enc.state_dict()


def test_image_encoder_loads_torchvision_weights(tmp_path):
    import torchvision

    tv = torchvision.models.resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    rgb = ImageEncoder(arch="resnet18", in_channels=3, weights=tmp_path / "r18.pth")
    torch.testing.assert_close(rgb.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)
    assert "weights" not in rgb.config  # the state dict, not the file, carries weights in checkpoints
    gray = ImageEncoder(arch="resnet18", in_channels=1, weights=tmp_path / "r18.pth")
    torch.testing.assert_close(gray.conv1.weight, tv.conv1.weight.sum(dim=1, keepdim=True))
    with pytest.raises(UserError, match="not found"):
        ImageEncoder(arch="resnet18", weights=tmp_path / "missing.pth")
    with pytest.raises(UserError, match="not a resnet50 state dict"):
        ImageEncoder(arch="resnet50", in_channels=3, weights=tmp_path / "r18.pth")
