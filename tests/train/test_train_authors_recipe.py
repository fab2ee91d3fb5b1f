"""`--recipe paper` / `paper-dvm` reach every stage with the authors' objective and optimisation
(issue 24), each item also selectable alone."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.stages.recipes import RECIPES

QUICK = ["--epochs", "1", "--seeds", "2022", "--lr", "0.001", "--quiet"]


def _cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def _config(stage):
    return json.loads((stage / "config.json").read_text())


def test_the_recipe_fixes_rconf_swaps_the_normalisers_and_trains_with_focal_loss(pretrained_run):
    from amfmedit.train.checkpoint import load_checkpoint

    run = pretrained_run.root
    # no rconf stage in the run: the recipe's R_conf 0.95 (the authors' OL3I configuration) is used
    _cli("finetune", "--recipe", "paper", "--fusion", "amf", *QUICK)
    stage = run / "finetune-amf-trainable-seed2022"
    cfg = _config(stage)
    assert cfg["r_conf"] == 0.95 and cfg["config"]["rconf"] == 0.95
    assert cfg["config"]["recipe"]["loss"] == "focal" and cfg["config"]["recipe"]["focal_gamma"] == 1.0
    assert cfg["config"]["recipe"]["val_every"] == 5  # the authors' val_check_interval
    fusion = load_checkpoint(stage / "last.pt")["model"]["config"]["fusion"]["config"]
    assert fusion["normaliser"] == "authors" and fusion["r_conf"] == 0.95
    assert not (run / "rconf").exists()
    # the flags alone, and a typed flag over the recipe
    _cli("finetune", "--recipe", "paper-dvm", "--fusion", "amf", "--rconf", "0.8", "--amf-normaliser", "paper",
         "--loss", "ce", "--batch-size", "32", *QUICK, "--force")
    cfg = _config(stage)
    assert cfg["r_conf"] == 0.8 and cfg["config"]["recipe"]["loss"] == "ce"
    assert cfg["config"]["recipe"]["val_every"] == 5
    assert load_checkpoint(stage / "last.pt")["model"]["config"]["fusion"]["config"]["normaliser"] == "paper"
    assert RECIPES["paper-dvm"]["finetune"]["rconf"] == 0.9  # the authors' DVM configuration
    # the probes: focal loss, measured on the test split as the paper did
    res = _cli("rconf", "--recipe", "paper", "--epochs", "1", "--lr", "0.01", "--quiet")
    rec = json.loads((run / "rconf" / "rconf.json").read_text())
    assert rec["split"] == "test" and "test split" in res.output
    assert _config(run / "rconf")["config"]["recipe"]["loss"] == "focal"
    bad = CliRunner().invoke(app, ["finetune", "--fusion", "amf", "--val-every", "-1", "--rconf", "1", *QUICK])
    assert bad.exit_code == 2 and "--val-every" in bad.output
    bad = CliRunner().invoke(app, ["finetune", "--fusion", "amf", "--amf-normaliser", "swapped", *QUICK])
    assert bad.exit_code == 2 and "--amf-normaliser swapped: not one of paper, authors" in bad.output
    bad = CliRunner().invoke(app, ["finetune", "--fusion", "amf", "--loss", "hinge", "--rconf", "1", *QUICK])
    assert bad.exit_code == 2 and "--loss hinge: not a loss of binary classification" in bad.output


def test_the_recipe_reaches_the_supervised_tabular_baseline(tiny_ol3i, tmp_path, monkeypatch):
    from amfmedit.train.checkpoint import load_checkpoint

    monkeypatch.setenv("AMFMEDIT_DATA", str(tiny_ol3i.data_dir))
    monkeypatch.setenv("AMFMEDIT_RUNS", str(tmp_path / "runs"))
    # a new run without pretraining: Table 1's supervised FT-Mamba with the authors' blocks
    _cli("finetune", "--data", tiny_ol3i.name, "--run", "b", "--recipe", "paper", "--fusion", "none",
         "--modality", "tabular", "--tabular-encoder", "ft_mamba,mlp", "--tabular-dim", "8", *QUICK)
    stage = tmp_path / "runs" / "b" / "supervised-tabular-enc-ft_mamba-seed2022"
    enc = load_checkpoint(stage / "last.pt")["model"]["config"]["encoder"]["config"]
    assert (enc["d_state"], enc["residual"], enc["final_norm"]) == (128, False, "mambular")
    assert _config(stage)["config"]["recipe"]["loss"] == "focal"
    mlp = load_checkpoint(tmp_path / "runs" / "b" / "supervised-tabular-enc-mlp-seed2022" / "last.pt")
    assert "d_state" not in mlp["model"]["config"]["encoder"]["config"]  # settings only for encoders that have them
    # our defaults without the recipe, and each setting alone
    _cli("finetune", "--run", "b", "--fusion", "none", "--modality", "tabular", "--tabular-encoder", "ft_mamba",
         "--tabular-dim", "8", "--final-norm", "mambular", *QUICK, "--force")
    enc = load_checkpoint(tmp_path / "runs" / "b" / "supervised-tabular-seed2022" / "last.pt")["model"]["config"]
    enc = enc["encoder"]["config"]
    assert (enc["d_state"], enc["residual"], enc["final_norm"]) == (16, True, "mambular")


def test_a_baseline_of_another_encoder_drops_the_pretrained_ft_mamba_blocks(tiny_ol3i, monkeypatch):
    from amfmedit.data import load_prepared
    from amfmedit.stages import finetune as ft
    from amfmedit.stages.pretrain import PretrainConfig

    # a run pretrained with the recipe's FT-Mamba (mambular's final norm among its block settings):
    # a supervised MLP baseline of that run takes none of them (study --recipe paper trains both)
    pretrained = PretrainConfig(tabular_encoder="ft_mamba", d_state=128, stacking="bare", final_norm="mambular")
    monkeypatch.setattr(ft, "load_pretrained", lambda run: (None, pretrained))

    class Run:
        def is_complete(self, stage):
            return True

    schema = load_prepared(tiny_ol3i.name, tiny_ol3i.data_dir).schema
    for encoder, final_norm in (("mlp", None), ("ft_mamba", "mambular")):
        cfg = ft.FinetuneConfig(fusion="none", modality="tabular", tabular_encoder=encoder, tabular_dim=8)
        build, _ = ft._model_builder(cfg, Run(), schema, {})
        enc = build().encoder
        assert enc.config.get("final_norm") == final_norm, encoder
