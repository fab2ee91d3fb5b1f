"""Adding a family member is one class and one registry line (docs/architecture.md).

A FiLM-style fusion, a toy tabular encoder, a toy prediction kind and a toy image encoder are
written here, not shipped: registered with one line each, they go through the CLI (choices,
stage names, report titles, evaluate) with no other change to the package.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.models import FUSIONS, IMAGE_ENCODERS, TABULAR_ENCODERS, FusionOutput, options_of
from amfmedit.models.specs import ARCHS, FUSION_SPECS, TABULAR_ENCODER_SPECS, settings_of
from amfmedit.stages.kinds import PREDICTION_KINDS, BinaryKind, Metric

QUICK = ["--epochs", "1", "--lr", "0.001", "--seeds", "2022", "--batch-size", "32", "--quiet"]


class FiLMFusion(nn.Module):
    """FiLM (Perez et al. 2018): the tabular embedding scales and shifts the image embedding,
    with an auxiliary penalty that keeps the scales near 1."""

    kind = "film"
    title = "FiLM"
    needs_feature_map = False
    run_inputs: tuple[str, ...] = ()
    aux_weights = {"film_scale": 0.1}

    def __init__(self, *, d_img: int, d_tab: int, n_classes: int) -> None:
        super().__init__()
        self.config = dict(d_img=d_img, d_tab=d_tab, n_classes=n_classes)
        self.film = nn.Linear(d_tab, 2 * d_img)
        self.head = nn.Linear(d_img, n_classes)

    def forward(self, z_img, z_tab, feature_map=None) -> FusionOutput:
        gamma, beta = self.film(z_tab).chunk(2, dim=1)
        aux = {"film_scale": (gamma ** 2).mean()} if torch.is_grad_enabled() else {}
        return FusionOutput(self.head((1 + gamma) * z_img + beta), aux)


class MeanEncoder(nn.Module):
    """A toy tabular encoder: continuous features and categorical embeddings, averaged, then one Linear."""

    kind = "mean"
    title = "Mean pooling"
    width_argument = "d_hidden"

    def __init__(self, *, n_cont_features: int, cat_cardinalities, d_hidden: int = 8) -> None:
        super().__init__()
        self.config = dict(n_cont_features=n_cont_features, cat_cardinalities=list(cat_cardinalities), d_hidden=d_hidden)
        self.embeddings = nn.ModuleList(nn.Embedding(c + 1, 4) for c in cat_cardinalities)
        self.linear = nn.Linear(n_cont_features + 4, d_hidden)
        self.d_out = d_hidden

    def embed_categorical(self, x_cat):
        return torch.stack([e(x_cat[:, j]) for j, e in enumerate(self.embeddings)], dim=1)

    def forward_embedded(self, x_cont, e_cat):
        return self.linear(torch.cat([x_cont, e_cat.mean(dim=1)], dim=1))

    def forward(self, x_cont, x_cat):
        return self.forward_embedded(x_cont, self.embed_categorical(x_cat))


def _ok(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def test_a_fusion_is_one_class_and_one_registry_line(pretrained_run, monkeypatch):
    monkeypatch.setitem(FUSIONS, "film", FiLMFusion)  # the one line: FUSIONS["film"] = FiLMFusion
    _ok("finetune", "--fusion", "film", "--strategy", "trainable", *QUICK)
    stage = pretrained_run.root / "finetune-film-trainable-seed2022"
    assert (stage / "COMPLETE").is_file()
    history = [json.loads(x) for x in (stage / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 1 and history[0]["train_loss"] > 0
    res = _ok("evaluate")
    results = (pretrained_run.root / "evaluate" / "results.md").read_text()
    assert "| FiLM |" in results  # the title the class declares, in the Table 2 layout
    metrics = json.loads((pretrained_run.root / "evaluate" / "metrics.json").read_text())
    assert [g["fusion"] for g in metrics["groups"]] == ["film"]
    assert "FiLM" in res.output
    # the auxiliary loss counts with its declared weight, and --aux-weight overrides it by name
    _ok("finetune", "--fusion", "film", "--aux-weight", "film_scale=0", "--force", *QUICK)
    cfg = json.loads((stage / "config.json").read_text())
    assert cfg["config"]["recipe"]["aux_weights"] == {"film_scale": 0.0}


def test_an_auxiliary_loss_without_a_weight_is_an_error(pretrained_run, monkeypatch):
    class Unweighted(FiLMFusion):
        kind = "unweighted"
        aux_weights: dict[str, float] = {}

    monkeypatch.setitem(FUSIONS, "unweighted", Unweighted)
    res = CliRunner().invoke(app, ["finetune", "--fusion", "unweighted", *QUICK])
    assert res.exit_code != 0
    assert "film_scale" in repr(res.exception) and "needs a weight" in repr(res.exception)


def test_a_tabular_encoder_is_one_class_and_one_registry_line(tiny_ol3i, tmp_path, monkeypatch):
    monkeypatch.setitem(TABULAR_ENCODERS, "mean", MeanEncoder)  # the one line
    monkeypatch.setenv("AMFMEDIT_DATA", str(tiny_ol3i.data_dir))
    monkeypatch.setenv("AMFMEDIT_RUNS", str(tmp_path / "runs"))
    _ok("pretrain", "--data", tiny_ol3i.name, "--run", "m", "--tabular-encoder", "mean", "--tabular-dim", "12",
        "--image-arch", "resnet18", "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "32", "--quiet")
    cfg = json.loads((tmp_path / "runs" / "m" / "pretrain" / "config.json").read_text())
    assert cfg["config"]["tabular_encoder"] == "mean"
    _ok("finetune", "--fusion", "concat", "--strategy", "frozen", *QUICK)
    _ok("finetune", "--fusion", "none", "--modality", "tabular", *QUICK)
    _ok("evaluate")
    results = (tmp_path / "runs" / "m" / "evaluate" / "results.md").read_text()
    assert "| Concatenation | Mean pooling |" in results and "Mean pooling (tabular only)" in results
    _ok("explain", "--method", "ig", "--max-samples", "8", "--steps", "4")  # IG through the declared contract
    summary = json.loads(next((tmp_path / "runs" / "m" / "explain").glob("ig-*/summary.json")).read_text())
    assert "Mean pooling" in summary["model"]


def test_cli_choices_and_help_read_the_registries(monkeypatch):
    monkeypatch.setitem(FUSIONS, "film", FiLMFusion)
    res = CliRunner().invoke(app, ["finetune", "--fusion", "filmm", "--quiet"])
    assert res.exit_code == 2 and "did you mean film" in res.output
    help_text = CliRunner().invoke(app, ["finetune", "--help"], env={"COLUMNS": "200"}).output
    for name in ("concat", "cross_attention", "amf"):  # the registry as imported
        assert name in help_text


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_every_fusion_declares_what_callers_need(name):
    cls = FUSIONS[name]
    assert cls.kind == name and isinstance(cls.title, str) and cls.title
    assert isinstance(cls.needs_feature_map, bool) and isinstance(cls.run_inputs, tuple)
    assert all(isinstance(w, float) and w >= 0 for w in cls.aux_weights.values())


@pytest.mark.parametrize("name", sorted(TABULAR_ENCODERS))
def test_every_encoder_declares_what_callers_need(name):
    from amfmedit.models import options_of

    cls = TABULAR_ENCODERS[name]
    assert cls.kind == name and cls.title
    assert cls.width_argument in options_of(cls)  # --tabular-dim sets a real constructor argument


@pytest.mark.parametrize(("registry", "specs"), [(FUSIONS, FUSION_SPECS), (TABULAR_ENCODERS, TABULAR_ENCODER_SPECS)])
def test_every_shipped_member_agrees_with_its_torch_free_spec(registry, specs):
    """--help reads the specs (amfmedit.models.specs); the classes must declare and default the same."""
    assert list(registry) == list(specs)
    for name, cls in registry.items():
        spec = specs[name]
        assert cls.spec is spec
        for f in dataclasses.fields(spec):
            if f.name != "settings":
                assert getattr(cls, f.name) == getattr(spec, f.name), (name, f.name)
        assert {k: options_of(cls).get(k, "missing") for k in settings_of(spec)} == settings_of(spec), name


def test_the_shipped_image_encoders_are_the_torch_free_list():
    """``--image-arch``'s help lists amfmedit.models.specs.ARCHS; the registry ships the same members."""
    assert list(IMAGE_ENCODERS) == list(ARCHS)
    for name, make in IMAGE_ENCODERS.items():
        assert make(in_channels=1).d_out == ARCHS[name]


def test_every_member_has_tiny_settings():
    from tiny_settings import TINY_ENCODERS, TINY_FUSIONS  # tests/tiny_settings.py

    assert set(TINY_ENCODERS) == set(TABULAR_ENCODERS) and set(TINY_FUSIONS) == set(FUSIONS)


# ---------------------------------------------------------------------------------------------
# prediction kinds and image encoders are families too


class BrierKind(BinaryKind):
    """A toy prediction kind: binary classification that selects models by the Brier score
    (lower is better), to show a kind is one class and one registry line."""

    name = "brier_binary"
    title = "binary classification scored by the Brier score"
    headline = Metric("brier", "Brier", "Brier score", higher_is_better=False)

    def validation_metrics(self, outputs, targets):
        import numpy as np

        m = super().validation_metrics(outputs, targets)
        m["brier"] = float(np.mean((outputs[:, 1] - np.asarray(targets)) ** 2))
        return m


def test_a_prediction_kind_is_one_class_and_one_registry_line(tmp_path, monkeypatch):
    monkeypatch.setitem(PREDICTION_KINDS, "brier_binary", BrierKind)  # the one line
    spec = (Path(__file__).resolve().parents[2] / "data_specs" / "synthetic-ol3i.toml").read_text()
    (tmp_path / "toy.toml").write_text(spec.replace('name = "synthetic-ol3i"', 'name = "toy"')
                                       .replace('task = "binary"', 'task = "brier_binary"'))
    monkeypatch.setenv("AMFMEDIT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("AMFMEDIT_RUNS", str(tmp_path / "runs"))
    _ok("prepare", "--data", tmp_path / "toy.toml", "--patients", 160, "--features", 16, "--image-size", 32,
        "--prevalence", 0.25, "--seed", 3, "--quiet")
    _ok("finetune", "--data", "toy", "--run", "k", "--fusion", "none", "--modality", "tabular",
        "--tabular-encoder", "mlp", "--tabular-dim", 8, *QUICK)
    stage = tmp_path / "runs" / "k" / "supervised-tabular-seed2022"
    history = [json.loads(x) for x in (stage / "metrics.jsonl").read_text().splitlines()]
    assert "val_brier" in history[0]  # the kind's validation metric selects the epoch ...
    best = torch.load(stage / "best.pt", weights_only=True)
    assert best["monitor"] == "val_brier" and best["metric"] == pytest.approx(history[0]["val_brier"])
    res = _ok("evaluate")
    metrics = json.loads((tmp_path / "runs" / "k" / "evaluate" / "metrics.json").read_text())
    assert metrics["metric"] == "brier" and metrics["stages"][0]["brier"] >= 0  # ... and heads evaluate's tables
    assert "Brier (%)" in res.output


class TinyCNN(nn.Module):
    """A toy image encoder: two convolutions and a global average pool (2-D images)."""

    kind = "tiny_cnn"
    geometry = "2d"
    target_layer_name = "conv2"

    def __init__(self, *, in_channels: int = 1, d_out: int = 16, weights=None) -> None:
        if weights is not None:
            raise ValueError("tiny_cnn has no pretrained weights")
        super().__init__()
        self.config = dict(in_channels=in_channels, d_out=d_out)
        self.in_channels, self.d_out, self.weights_source = in_channels, d_out, "none"
        self.conv1 = nn.Conv2d(in_channels, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, d_out, 3, stride=2, padding=1)

    @property
    def target_layer(self) -> nn.Module:
        return self.conv2

    def forward_features(self, x):
        return torch.relu(self.conv2(torch.relu(self.conv1(x))))

    @staticmethod
    def pool(feature_map):
        return feature_map.mean(dim=(2, 3))

    def forward(self, x):
        return self.pool(self.forward_features(x))


def test_an_image_encoder_is_one_class_and_one_registry_line(tiny_ol3i, tmp_path, monkeypatch):
    monkeypatch.setitem(IMAGE_ENCODERS, "tiny_cnn", TinyCNN)  # the one line
    monkeypatch.setenv("AMFMEDIT_DATA", str(tiny_ol3i.data_dir))
    monkeypatch.setenv("AMFMEDIT_RUNS", str(tmp_path / "runs"))
    _ok("pretrain", "--data", tiny_ol3i.name, "--run", "c", "--tabular-encoder", "mlp", "--tabular-dim", "8",
        "--image-arch", "tiny_cnn", "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "32", "--quiet")
    _ok("finetune", "--fusion", "cross_attention", "--strategy", "frozen", *QUICK)  # reads its feature map
    _ok("finetune", "--fusion", "none", "--modality", "image", *QUICK)  # the supervised image baseline
    _ok("evaluate")
    stage = tmp_path / "runs" / "c" / "finetune-cross_attention-frozen-seed2022"
    cfg = torch.load(stage / "best.pt", weights_only=True)["model"]["config"]
    assert cfg["image_encoder"]["kind"] == "tiny_cnn"  # rebuilt from its checkpoint by its kind
    _ok("explain", "--method", "gradcam", "--cases", "2")  # Grad-CAM hooks the layer it declares
    summary = json.loads(next((tmp_path / "runs" / "c" / "explain").glob("gradcam-*/summary.json")).read_text())
    assert summary["cases"]["positive"]
    res = CliRunner().invoke(app, ["pretrain", "--data", tiny_ol3i.name, "--run", "d", "--image-arch", "tiny_cnm",
                                   "--quiet"])
    assert res.exit_code == 2 and "did you mean tiny_cnn" in res.output


def test_torch_free_choice_lists_match_the_modules_that_build_them():
    """--final-norm and --amf-normaliser are checked against specs' names; the models build exactly those."""
    from amfmedit.models import losses, specs, tabular

    assert tuple(tabular.FINAL_NORMS) == specs.FINAL_NORM_NAMES
    assert losses.NORMALISERS is specs.NORMALISERS
