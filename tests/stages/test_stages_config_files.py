"""--config files and --recipe presets layered under the typed flags; the sanity warnings of a run
that learned nothing."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from amfmedit.cli import app

SMALL = ["--tabular-encoder", "mlp", "--tabular-dim", "16", "--image-arch", "resnet18", "--batch-size", "32", "--quiet"]


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _config(runs, run):
    return json.loads((runs / run / "pretrain" / "config.json").read_text())["config"]


def test_config_round_trip_recipe_and_flags_override(tiny_ol3i, tmp_path, monkeypatch):
    monkeypatch.setenv("AMFMEDIT_DATA", str(tiny_ol3i.data_dir))
    runs = tmp_path / "runs"
    monkeypatch.setenv("AMFMEDIT_RUNS", str(runs))
    res = _run("pretrain", "--data", tiny_ol3i.name, "--run", "a", "--recipe", "cpu", "--epochs", "1",
               "--temperature", "0.2", *SMALL)
    assert res.exit_code == 0, res.output
    a = _config(runs, "a")
    # the recipe set what it lists, the typed flags won over it, the rest kept the paper's defaults
    assert (a["image_arch"], a["warmup_epochs"], a["lr"]) == ("resnet18", 1, 1e-3)
    assert (a["epochs"], a["temperature"], a["batch_size"]) == (1, 0.2, 32)
    assert a["weight_decay"] == 1e-4 and a["corruption_rate"] == 0.3
    # the stage's own config.toml repeats it: the same resolved settings in a new run
    res = _run("pretrain", "--config", runs / "a" / "pretrain" / "config.toml", "--run", "b", "--quiet")
    assert res.exit_code == 0, res.output
    assert _config(runs, "b") == a
    # a file's value gives way to a typed flag
    res = _run("pretrain", "--config", runs / "a" / "pretrain" / "config.toml", "--run", "c", "--seed", "7", "--quiet")
    assert res.exit_code == 0, res.output
    assert _config(runs, "c") == {**a, "seed": 7}


def test_bad_config_files_are_one_line_errors_before_anything_is_written(tiny_ol3i, tmp_path, monkeypatch):
    monkeypatch.setenv("AMFMEDIT_DATA", str(tiny_ol3i.data_dir))
    runs = tmp_path / "runs"
    monkeypatch.setenv("AMFMEDIT_RUNS", str(runs))
    cases = {
        "unknown.toml": ("epochs = 2\nbogus = 1\n", "bogus is not an option of `amfmedit pretrain`"),
        "broken.toml": ("epochs = [2\n", "not a readable TOML file"),
        "type.toml": ('epochs = "two"\n', 'epochs = \'two\': expected an integer'),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        res = _run("pretrain", "--data", tiny_ol3i.name, "--config", tmp_path / name, "--quiet")
        assert res.exit_code == 2, res.output
        assert message in res.output and "Traceback" not in res.output, res.output
    res = _run("pretrain", "--data", tiny_ol3i.name, "--recipe", "cpux", "--quiet")
    assert res.exit_code == 2 and "did you mean cpu" in res.output
    res = _run("pretrain", "--data", tiny_ol3i.name, "--config", tmp_path / "missing.toml", "--quiet")
    assert res.exit_code == 2 and "no such file" in res.output
    assert not runs.exists() or not any(runs.iterdir())


def test_a_run_that_learned_nothing_says_so(tiny_ol3i, tmp_path, monkeypatch):
    monkeypatch.setenv("AMFMEDIT_DATA", str(tiny_ol3i.data_dir))
    runs = tmp_path / "runs"
    monkeypatch.setenv("AMFMEDIT_RUNS", str(runs))
    # one epoch at a learning rate of 1e-9, all of it warm-up: the ITC loss stays at chance
    res = _run("pretrain", "--data", tiny_ol3i.name, "--run", "z", "--epochs", "1", "--warmup-epochs", "1",
               "--lr", "1e-9", *SMALL)
    assert res.exit_code == 0, res.output
    assert "never left its linear warm-up" in res.output and "learned nothing measurable" in res.output
    marker = json.loads((runs / "z" / "pretrain" / "COMPLETE").read_text())
    chance = marker["chance_val_loss"]
    # 38 validation rows in chunks of 32 and 6: log-sizes weighted by rows
    import math

    assert chance == (32 * math.log(32) + 6 * math.log(6)) / 38
    assert len(marker["warnings"]) == 2
    report = (runs / "z" / "report.md").read_text()
    assert "## Warnings" in report and "learned nothing measurable" in report


def test_the_authors_recipe_sets_ft_mamba_blocks_and_the_checkpoint_records_them(tiny_ol3i, tmp_path, monkeypatch):
    from amfmedit.stages.pretrain import load_pretrained
    from amfmedit.train import rundir

    monkeypatch.setenv("AMFMEDIT_DATA", str(tiny_ol3i.data_dir))
    runs = tmp_path / "runs"
    monkeypatch.setenv("AMFMEDIT_RUNS", str(runs))
    res = _run("pretrain", "--data", tiny_ol3i.name, "--run", "p", "--recipe", "paper", "--tabular-encoder", "ft_mamba",
               "--tabular-dim", "8", "--image-arch", "resnet18", "--epochs", "1", "--warmup-epochs", "0",
               "--batch-size", "32", "--quiet")
    assert res.exit_code == 0, res.output
    cfg = _config(runs, "p")
    assert (cfg["d_state"], cfg["stacking"], cfg["expand"]) == (128, "bare", None)
    model, pcfg = load_pretrained(rundir.open_run(runs, "p"))
    enc = model.tabular_encoder.config
    assert (enc["d_state"], enc["residual"], enc["expand"]) == (128, False, 2)  # rebuilt from the checkpoint
    assert model.tabular_encoder.blocks[0].A_log.shape[-1] == 128 and model.tabular_encoder.norms is None
    res = _run("pretrain", "--data", tiny_ol3i.name, "--tabular-encoder", "mlp", "--d-state", "8", "--quiet")
    assert res.exit_code == 2 and "--d-state 8: only for --tabular-encoder ft_mamba (not mlp)" in res.output
    res = _run("pretrain", "--data", tiny_ol3i.name, "--stacking", "deep", "--quiet")
    assert res.exit_code == 2 and "--stacking deep" in res.output
