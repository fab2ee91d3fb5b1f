"""Missing values and absent modalities in the models: every encoder reads the mask in token mode,
absent modalities get learned vectors, AMF's auxiliary losses run over the rows they are defined
for, and checkpoints (new and from before these settings) rebuild."""

from __future__ import annotations

import pytest
import torch

from amfmedit.models import (
    FUSIONS,
    TABULAR_ENCODERS,
    ImageEncoder,
    ImageTabularClassifier,
    UnimodalClassifier,
    amf_aux_losses,
    build_fusion,
    build_model,
    build_tabular_encoder,
    from_checkpoint,
    losses,
    model_config,
    to_checkpoint,
)

from tiny_settings import TINY_ENCODERS as TINY  # noqa: E402  (tests/tiny_settings.py)
from tiny_settings import fusion_kwargs  # noqa: E402

N_CONT, CARDS = 4, [3, 4]
F = N_CONT + len(CARDS)


def encoder(name, missing="token", seed=0):
    torch.manual_seed(seed)
    return build_tabular_encoder(name, n_cont_features=N_CONT, cat_cardinalities=CARDS, missing=missing, **TINY[name])


def rows(b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_cont = torch.randn(b, N_CONT, generator=g)
    x_cat = torch.stack([torch.randint(1, c, (b,), generator=g) for c in CARDS], dim=1)  # observed codes
    missing = torch.rand(b, F, generator=g) < 0.4
    x_cat = torch.where(missing[:, N_CONT:], 0, x_cat)  # code 0 where a category is missing, as prepared
    return x_cont, x_cat, missing


@pytest.mark.parametrize("name", list(TABULAR_ENCODERS))
def test_a_model_whose_only_signal_is_missingness_learns_it(name):
    # Feature 0 holds exactly the imputed value (0) in every row; the label is whether it was
    # missing. An imputing encoder sees identical inputs for both classes, a token encoder the mask.
    g = torch.Generator().manual_seed(1)
    n = 256
    x_cont = torch.randn(n, N_CONT, generator=g)
    x_cont[:, 0] = 0.0
    x_cat = torch.stack([torch.randint(1, c, (n,), generator=g) for c in CARDS], dim=1)
    missing = torch.zeros(n, F, dtype=torch.bool)
    missing[:, 0] = torch.rand(n, generator=g) < 0.5
    y = missing[:, 0].long()

    imputing = UnimodalClassifier(encoder(name, "impute"), n_classes=2, modality="tabular").eval()
    flipped = missing.clone()
    flipped[:, 0] = ~flipped[:, 0]
    torch.testing.assert_close(imputing(x_cont=x_cont, x_cat=x_cat, missing=missing).logits,
                               imputing(x_cont=x_cont, x_cat=x_cat, missing=flipped).logits)

    model = UnimodalClassifier(encoder(name, "token"), n_classes=2, modality="tabular")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(40):
        idx = torch.randint(0, n, (64,), generator=g)
        loss = losses.ce_loss(model(x_cont=x_cont[idx], x_cat=x_cat[idx], missing=missing[idx]).logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(x_cont=x_cont, x_cat=x_cat, missing=missing).logits.argmax(dim=1)
    assert (pred == y).float().mean() > 0.95


@pytest.mark.parametrize("name", list(TABULAR_ENCODERS))
def test_token_mode_never_reads_a_missing_value(name):
    enc = encoder(name).eval()
    x_cont, x_cat, missing = rows()
    base = enc(x_cont, x_cat, missing)
    i, j = torch.nonzero(missing[:, :N_CONT])[0].tolist()
    changed = x_cont.clone()
    changed[i, j] += 5.0
    torch.testing.assert_close(enc(changed, x_cat, missing), base)
    k, l = torch.nonzero(~missing[:, :N_CONT])[0].tolist()
    changed = x_cont.clone()
    changed[k, l] += 5.0
    assert not torch.allclose(enc(changed, x_cat, missing)[k], base[k])


@pytest.mark.parametrize("name", list(TABULAR_ENCODERS))
def test_token_mode_reads_only_the_listed_features(name):
    torch.manual_seed(0)
    listed = [1, N_CONT + 1]  # one continuous, one categorical feature can be missing
    enc = build_tabular_encoder(name, n_cont_features=N_CONT, cat_cardinalities=CARDS, missing="token",
                                missing_features=listed, **TINY[name]).eval()
    assert enc.config["missing_features"] == listed
    x_cont, x_cat, missing = rows()
    x_cat = torch.where(x_cat == 0, 1, x_cat)  # code 0 would read as missing on the listed categorical
    unlisted = missing.clone()
    unlisted[:, listed] = False
    # a missing unlisted feature is read as its imputed value, like an observed one
    torch.testing.assert_close(enc(x_cont, x_cat, unlisted), enc(x_cont, x_cat))
    only = torch.zeros_like(missing)
    only[:, 1] = True
    assert not torch.allclose(enc(x_cont, x_cat, only), enc(x_cont, x_cat))
    if hasattr(enc, "inputs"):  # MLP / ResNet: one indicator column per listed feature
        full = build_tabular_encoder(name, n_cont_features=N_CONT, cat_cardinalities=CARDS, **TINY[name])
        assert enc.inputs.d_in == full.inputs.d_in + len(listed)
    with pytest.raises(ValueError, match="missing_features must index the 6 features"):
        build_tabular_encoder(name, n_cont_features=N_CONT, cat_cardinalities=CARDS, missing="token",
                              missing_features=[6], **TINY[name])


@pytest.mark.parametrize("name", list(TABULAR_ENCODERS))
def test_token_mode_on_a_cohort_without_missing_values_is_the_imputing_model(name):
    # nothing listed (no training row misses a value): same parameters, same initialisation
    imputing = encoder(name, "impute").eval()
    torch.manual_seed(0)
    token = build_tabular_encoder(name, n_cont_features=N_CONT, cat_cardinalities=CARDS, missing="token",
                                  missing_features=[], **TINY[name]).eval()
    assert token.state_dict().keys() == imputing.state_dict().keys()
    x_cont, x_cat, missing = rows()
    x_cat = torch.where(x_cat == 0, 1, x_cat)
    torch.testing.assert_close(token(x_cont, x_cat, missing), imputing(x_cont, x_cat), rtol=0, atol=0)


@pytest.mark.parametrize("name", list(TABULAR_ENCODERS))
def test_integrated_gradients_path_with_the_mask(name):
    enc = encoder(name).eval()
    x_cont, x_cat, missing = rows()
    mask = enc.input_mask(x_cat, missing)
    e_cat = enc.embed_categorical(x_cat)
    torch.testing.assert_close(enc.forward_embedded(x_cont, e_cat, mask), enc(x_cont, x_cat, missing))
    # a missing feature is attributed nothing: its value has no gradient (the mask is fixed context)
    xc, ec = x_cont.clone().requires_grad_(), e_cat.detach().clone().requires_grad_()
    (enc.forward_embedded(xc, ec, mask) * torch.randn(len(xc), enc.d_out)).sum().backward()
    assert (xc.grad[missing[:, :N_CONT]] == 0).all() and xc.grad[~missing[:, :N_CONT]].abs().sum() > 0
    assert (ec.grad[missing[:, N_CONT:]] == 0).all()


@pytest.mark.parametrize("name", list(TABULAR_ENCODERS))
def test_category_code_zero_reads_as_missing_in_token_mode(name):
    # code 0 is "missing or unseen in training" (predict scores an unseen category as missing)
    enc = encoder(name).eval()
    x_cont, x_cat, missing = rows()
    observed = missing.clone()
    observed[:, N_CONT:] = False
    torch.testing.assert_close(enc(x_cont, x_cat, observed), enc(x_cont, x_cat, missing))


@pytest.mark.parametrize("name", list(TABULAR_ENCODERS))
def test_impute_mode_ignores_the_mask_and_old_configs_build(name):
    enc = encoder(name, "impute").eval()
    x_cont, x_cat, missing = rows()
    torch.testing.assert_close(enc(x_cont, x_cat, missing), enc(x_cont, x_cat))
    old = {k: v for k, v in enc.config.items() if k != "missing"}  # a checkpoint from before the setting
    rebuilt = build_model(name, old)
    rebuilt.load_state_dict(enc.state_dict(), strict=True)
    assert rebuilt.config["missing"] == "impute"
    with pytest.raises(ValueError, match="missing must be one of"):
        encoder(name, "zero")


@pytest.mark.parametrize("name", list(TABULAR_ENCODERS))
def test_token_parameters_take_part_in_every_step(name):
    # DistributedDataParallel needs a gradient for every parameter, also without a mask
    enc = encoder(name).train()
    x_cont, x_cat, _ = rows()
    enc(x_cont, x_cat).sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


# ---------------------------------------------------------------------------------------------
# absent modalities


@pytest.fixture(scope="module")
def image_encoder():
    torch.manual_seed(0)
    return ImageEncoder(arch="resnet18", in_channels=1)


def classifier(image_encoder, fusion, tab="ft_mamba", **kw):
    enc = encoder(tab)
    fus = build_fusion(fusion, **fusion_kwargs(fusion, d_img=image_encoder.d_out, d_tab=enc.d_out, n_classes=2))
    model = ImageTabularClassifier(image_encoder, enc, fus, **kw)
    with torch.no_grad():  # away from their zero start, so that substitution is visible
        model.absent_image.normal_()
        model.absent_table.normal_()
    return model


@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_an_absent_modality_is_replaced_by_its_learned_vector(image_encoder, fusion):
    model = classifier(image_encoder, fusion).eval()
    image = torch.rand(4, 1, 32, 32)
    x_cont, x_cat, missing = rows(4)
    img_p = torch.tensor([True, False, True, True])
    tab_p = torch.tensor([True, True, False, True])
    base = model(image, x_cont, x_cat, missing=missing, image_present=img_p, table_present=tab_p).logits
    # row 1 has no image: its image does not matter, the absent vector does
    other = image.clone()
    other[1] = torch.rand(1, 32, 32)
    torch.testing.assert_close(model(other, x_cont, x_cat, missing=missing, image_present=img_p,
                                     table_present=tab_p).logits, base)
    # row 2 has no table: its values do not matter
    xc = x_cont.clone()
    xc[2] += 3.0
    torch.testing.assert_close(model(image, xc, x_cat, missing=missing, image_present=img_p,
                                     table_present=tab_p).logits, base)
    with torch.no_grad():
        model.absent_image.add_(1.0)
        model.absent_table.add_(1.0)
    moved = model(image, x_cont, x_cat, missing=missing, image_present=img_p, table_present=tab_p).logits
    assert not torch.allclose(moved[1], base[1]) and not torch.allclose(moved[2], base[2])
    torch.testing.assert_close(moved[[0, 3]], base[[0, 3]])
    # without flags every row is complete
    torch.testing.assert_close(model(image, x_cont, x_cat, missing=missing).logits[[0, 3]], base[[0, 3]])


@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_absent_vectors_learn_and_take_part_in_every_step(image_encoder, fusion):
    model = classifier(image_encoder, fusion, strategy="frozen").train()
    image = torch.rand(4, 1, 32, 32)
    x_cont, x_cat, missing = rows(4)
    out = model(image, x_cont, x_cat, missing=missing)  # no flags: zero gradients, but gradients
    losses.finetune_loss(out.logits.sum(), out.aux, FUSIONS[fusion].aux_weights).backward()
    assert model.absent_image.grad is not None and model.absent_table.grad is not None
    assert model.absent_image.grad.abs().sum() == 0
    model.zero_grad()
    out = model(image, x_cont, x_cat, missing=missing, image_present=torch.tensor([False, True, True, True]),
                table_present=torch.tensor([True, True, False, True]))
    losses.finetune_loss(out.logits.sum(), out.aux, FUSIONS[fusion].aux_weights).backward()
    assert model.absent_image.grad.abs().sum() > 0 and model.absent_table.grad.abs().sum() > 0
    assert model.absent_image.requires_grad  # trainable with frozen encoders


def test_amf_auxiliary_losses_run_over_the_rows_they_are_defined_for():
    g = torch.Generator().manual_seed(0)
    z_img, z_tab = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    m_img = torch.tensor([1.0] * 4 + [0.0] * 6)
    m_tab = 1 - m_img
    img_p = torch.tensor([True, True, False, True, True, True])
    tab_p = torch.tensor([True, False, True, True, True, True])
    aux = amf_aux_losses(z_img, z_tab, m_img, m_tab, img_p, tab_p)
    leak_img = (z_img * m_tab).abs().sum(1) / 6
    leak_tab = (z_tab * m_img).abs().sum(1) / 4
    torch.testing.assert_close(aux["leakage"], (leak_img[img_p].mean() + leak_tab[tab_p].mean()) / 2)
    both = img_p & tab_p
    dens = ((z_img * m_img).abs().sum(1) / 4 - (z_tab * m_tab).abs().sum(1) / 6).abs()
    torch.testing.assert_close(aux["density"], dens[both].mean())
    # every row complete (or no flags): eq. 9-10 as printed
    full = amf_aux_losses(z_img, z_tab, m_img, m_tab, None, None)
    torch.testing.assert_close(full["leakage"], losses.leakage_loss(z_img, z_tab, m_img, m_tab))
    torch.testing.assert_close(amf_aux_losses(z_img, z_tab, m_img, m_tab, torch.ones(6, dtype=torch.bool),
                                              None)["density"], full["density"])
    # no complete row: the density term is 0 (and still differentiable)
    none = amf_aux_losses(z_img, z_tab, m_img, m_tab, img_p & ~tab_p, tab_p & ~img_p)
    assert none["density"].item() == 0.0


def test_unimodal_classifier_scores_an_absent_row_from_its_absent_vector():
    probe = UnimodalClassifier(encoder("mlp"), n_classes=2, modality="tabular").eval()
    x_cont, x_cat, missing = rows(3)
    present = torch.tensor([True, False, True])
    out = probe(x_cont=x_cont, x_cat=x_cat, missing=missing, table_present=present).logits
    torch.testing.assert_close(out[1], probe.head(probe.absent))
    torch.testing.assert_close(out[[0, 2]], probe(x_cont=x_cont, x_cat=x_cat, missing=missing).logits[[0, 2]])


def test_checkpoints_round_trip_with_the_new_settings(image_encoder, tmp_path):
    from amfmedit.io import torch_load, torch_save

    model = classifier(image_encoder, "amf", tab="ft_transformer").eval()
    torch_save(to_checkpoint(model), tmp_path / "m.pt")
    ckpt = torch_load(tmp_path / "m.pt")
    assert ckpt["config"]["absent_vectors"] is True and ckpt["config"]["tabular_encoder"]["config"]["missing"] == "token"
    again = from_checkpoint(ckpt).eval()
    image = torch.rand(3, 1, 32, 32)
    x_cont, x_cat, missing = rows(3)
    flags = dict(missing=missing, image_present=torch.tensor([True, False, True]),
                 table_present=torch.tensor([True, True, False]))
    torch.testing.assert_close(again(image, x_cont, x_cat, **flags).logits, model(image, x_cont, x_cat, **flags).logits,
                               rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["image_tabular_classifier", "unimodal_classifier"])
def test_a_checkpoint_from_before_absent_vectors_loads_and_refuses_incomplete_rows(image_encoder, kind):
    if kind == "unimodal_classifier":
        old = UnimodalClassifier(encoder("resnet", "impute"), n_classes=2, modality="tabular", absent_vectors=False)
    else:
        old = classifier(image_encoder, "concat")
        old = ImageTabularClassifier(old.image_encoder, old.tabular_encoder, old.fusion, absent_vectors=False)
    ckpt = to_checkpoint(old)
    ckpt["config"] = {k: v for k, v in model_config(old)["config"].items() if k != "absent_vectors"}
    rebuilt = from_checkpoint(ckpt).eval()  # strict: no parameter was added
    assert rebuilt.config["absent_vectors"] is False
    x_cont, x_cat, missing = rows(2)
    args = dict(x_cont=x_cont, x_cat=x_cat) if kind == "unimodal_classifier" else \
        dict(image=torch.rand(2, 1, 32, 32), x_cont=x_cont, x_cat=x_cat)
    rebuilt(**args, table_present=torch.ones(2, dtype=torch.bool))  # complete rows score as before
    with pytest.raises(ValueError, match="without absent-modality vectors"):
        rebuilt(**args, table_present=torch.tensor([True, False]))
