"""The paper's experiments as single commands (docs/experiments.md): R_conf sweeps and ``--rconf auto``
(Table 5), label fractions (learning curves), several tabular encoders (Table 1), the loss ablation
(Table 6), and R_conf probes that say when they are no better than chance."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.stages import names

FAST = ["--epochs", "1", "--lr", "0.001", "--seeds", "2022", "--quiet"]


def _cli(*args, ok: bool = True):
    res = CliRunner().invoke(app, list(args))
    if ok:
        assert res.exit_code == 0, res.output
    return res


def _config(run, stage):
    return json.loads((run / stage / "config.json").read_text())


def test_stage_names_carry_the_variant_and_parse_back():
    assert names.classifier_prefix("amf", "trainable") == "finetune-amf-trainable"  # today's names unchanged
    assert names.rconf_stage() == "rconf" and names.rconf_stage(fraction=1.0) == "rconf"
    cases = {
        names.classifier_prefix("amf", "trainable", rconf=0.95): {"rconf": 0.95},
        names.classifier_prefix("amf", "frozen", rconf=names.AUTO, off=("leakage",), fraction=0.1):
            {"rconf": names.AUTO, "off": ("leakage",), "fraction": 0.1},
        names.classifier_prefix(names.NO_FUSION, "trainable", "tabular", encoder="ft_transformer", fraction=0.01):
            {"encoder": "ft_transformer", "fraction": 0.01},
        names.classifier_prefix("concat", "trainable", off=("density", "leakage")): {"off": ("density", "leakage")},
        names.classifier_prefix("amf", "trainable", fraction=0.1, missing="impute"): {"fraction": 0.1, "missing": "impute"},
    }
    for prefix, variant in cases.items():
        info = names.parse_stage(names.seed_stage(prefix, 2023, ["age_at_scan"]))
        assert info["seed"] == 2023 and info["mask"] == "mask-age_at_scan"
        assert {k: info[k] for k in variant} == variant
        assert all(not info[k] for k in names.VARIANT_KEYS if k not in variant)
    plain = names.parse_stage("finetune-amf-trainable-seed2022")
    assert not names.is_variant(plain) and names.variant_of(plain) == (None, None, (), None, None)
    # a second pretraining and the probes on it (docs/missing-data.md)
    assert names.pretrain_stage() == "pretrain" and names.pretrain_stage("impute") == "pretrain-impute"
    assert names.rconf_stage(fraction=0.1, missing="token") == "rconf-frac0.1-token"
    assert names.parse_stage(names.rconf_search_stage("finetune-amf-trainable-rconfauto")) is None
    assert names.classifier_prefix("amf", "trainable", rconf=0.5) != names.classifier_prefix("amf", "trainable", rconf=0.55)


def test_rconf_sweep_runs_one_stage_per_value_and_evaluate_lays_out_table5(pretrained_run):
    run = pretrained_run.root
    _cli("rconf", "--epochs", "1", "--lr", "0.001", "--quiet")
    _cli("finetune", "--fusion", "amf", "--rconf", "0.5:1.5:1", "--d-out", "16", *FAST)
    stages = {p.name for p in run.iterdir() if p.name.startswith("finetune-")}
    assert stages == {f"finetune-amf-trainable-rconf{v}-seed2022" for v in ("0.5", "1.5")}
    assert _config(run, "finetune-amf-trainable-rconf1.5-seed2022")["r_conf"] == 1.5
    _cli("evaluate")
    md = (run / "evaluate" / "results.md").read_text()
    table5 = md[md.index("## R_conf (Table 5)"):]
    measured = json.loads((run / "rconf" / "rconf.json").read_text())["r_conf"]
    assert f"measured R_conf {measured:.4f}" in table5
    # one row per value, with eq. 6's split of D_out 16: 0.5 -> 6 / 10, 1.5 -> 10 / 6
    for value, split in (("0.5", "6 / 10"), ("1.5", "10 / 6")):
        assert f"| {value} | {split} |" in table5
    assert (run / "evaluate" / "rconf_sweep.png").stat().st_size > 1000
    groups = json.loads((run / "evaluate" / "metrics.json").read_text())["groups"]
    assert sorted(g["r_conf"] for g in groups) == [0.5, 1.5]  # sweep members are not merged


def test_rconf_auto_chooses_on_validation_only_and_records_the_search(pretrained_run, monkeypatch):
    from amfmedit.train.inputs import DeviceData

    run = pretrained_run.root
    _cli("rconf", "--epochs", "1", "--lr", "0.001", "--quiet")
    asked = []
    rows = DeviceData.rows
    monkeypatch.setattr(DeviceData, "rows", lambda self, split: asked.append(split) or rows(self, split))
    _cli("finetune", "--fusion", "amf", "--rconf", "auto", "--rconf-multipliers", "1,2", "--d-out", "16",
         "--epochs", "1", "--lr", "0.001", "--seeds", "2022,2023", "--quiet")
    assert "test" not in asked  # the choice never reads the test split
    measured = json.loads((run / "rconf" / "rconf.json").read_text())["r_conf"]
    cfg = _config(run, "finetune-amf-trainable-rconfauto-seed2022")
    auto = cfg["rconf_auto"]
    assert auto["measured"] == pytest.approx(measured) and auto["split"] == "val"
    assert [c["multiplier"] for c in auto["candidates"]][0] == 1.0  # the measured value first
    best = max(auto["candidates"], key=lambda c: c["val"])
    assert auto["chosen"] == best["r_conf"] == cfg["r_conf"]
    assert _config(run, "finetune-amf-trainable-rconfauto-seed2023")["r_conf"] == auto["chosen"]
    assert (run / "finetune-amf-trainable-rconfauto-rconfsearch" / "COMPLETE").is_file()
    # the first seed's training IS the winning candidate's (not trained again)
    ckpt_val = json.loads((run / "finetune-amf-trainable-rconfauto-seed2022" / "COMPLETE").read_text())["best_val"]
    assert ckpt_val == pytest.approx(best["val"])


def test_label_fractions_train_on_nested_stratified_subsets_and_evaluate_draws_the_curve(pretrained_run):
    from amfmedit.data import load_prepared
    from amfmedit.data.subsets import train_subset

    run = pretrained_run.root
    _cli("finetune", "--fusion", "amf", "--rconf", "0.9", "--fusion", "none", "--modality", "tabular", "--d-out", "16",
         "--train-fraction", "0.1,0.5,1", *FAST)
    ds = load_prepared(pretrained_run.data, pretrained_run.data_dir)
    train = ds.indices("train")
    for fraction, stage in ((0.1, "finetune-amf-trainable-frac0.1-seed2022"), (0.5, "supervised-tabular-frac0.5-seed2022")):
        rec = _config(run, stage)["train_subset"]
        expected = train_subset(ds.labels, train, fraction, 2022)
        assert rec["rows"] == len(expected) < len(train) and rec["of"] == len(train)
        assert min(rec["per_class"].values()) >= 1 and len(rec["per_class"]) == 2
        assert _config(run, stage)["config"]["train_fraction"] == fraction
    assert (run / "finetune-amf-trainable-seed2022").is_dir()  # fraction 1: today's name
    _cli("evaluate")
    md = (run / "evaluate" / "results.md").read_text()
    curve = md[md.index("## Label fractions"):]
    header = next(x for x in curve.splitlines() if x.startswith("| Model"))
    assert header == "| Model | 0.1 | 0.5 | 1 |"
    lines = [x for x in curve.splitlines() if x.startswith("| AMF") or x.startswith("| Supervised")]
    assert len(lines) == 2 and all(x.count(" | -") == 0 for x in lines)  # every fraction of both lines
    assert (run / "evaluate" / "learning_curve.png").stat().st_size > 1000


def test_amf_on_a_fraction_takes_r_conf_from_probes_on_the_same_fraction(pretrained_run):
    run = pretrained_run.root
    _cli("rconf", "--epochs", "1", "--lr", "0.001", "--quiet")  # on every label: not the one to use
    res = _cli("finetune", "--fusion", "amf", "--train-fraction", "0.5", "--d-out", "16", *FAST, ok=False)
    assert res.exit_code == 2 and "amfmedit rconf --train-fraction 0.5" in res.output
    _cli("rconf", "--epochs", "1", "--lr", "0.001", "--train-fraction", "0.5", "--quiet")
    assert _config(run, "rconf-frac0.5")["train_subset"]["fraction"] == 0.5
    _cli("finetune", "--fusion", "amf", "--train-fraction", "0.5", "--d-out", "16", *FAST)
    assert _config(run, "finetune-amf-trainable-frac0.5-seed2022")["r_conf"] == pytest.approx(
        json.loads((run / "rconf-frac0.5" / "rconf.json").read_text())["r_conf"])


def test_tabular_encoders_and_loss_ablation_give_tables_1_and_6(pretrained_run):
    run = pretrained_run.root
    _cli("finetune", "--fusion", "none", "--modality", "tabular", "--tabular-encoder", "mlp,resnet",
         "--tabular-dim", "16", *FAST)
    assert _config(run, "supervised-tabular-enc-resnet-seed2022")["tabular_encoder"] == "resnet"
    _cli("finetune", "--fusion", "amf", "--rconf", "0.9", "--d-out", "16", "--ablate-losses", *FAST)
    off = {"": {}, "-off-leakage": {"leakage": 0.0}, "-off-density": {"density": 0.0},
           "-off-density+leakage": {"leakage": 0.0, "density": 0.0}}
    for tag, zeros in off.items():
        weights = _config(run, f"finetune-amf-trainable{tag}-seed2022")["config"]["recipe"]["aux_weights"]
        assert {k: v for k, v in weights.items() if v == 0} == zeros
    _cli("evaluate")
    md = (run / "evaluate" / "results.md").read_text()
    t1 = md[md.index("## Tabular encoders, supervised (Table 1)"):].split("\n## ")[0]
    assert sum(1 for x in t1.splitlines() if x.startswith("| ") and "encoder" not in x and "---" not in x) == 2
    t6 = md[md.index("## Loss ablation (Table 6)"):].split("\n## ")[0]
    rows = [x for x in t6.splitlines() if x.startswith("| ✓") or x.startswith("| ✗")]
    assert len(rows) == 4 and rows[0].startswith("| ✓ (5) | ✓ (5) |") and rows[-1].startswith("| ✗ | ✗ |")
    lines = md.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith("| Fusion method"))
    table2 = "\n".join(lines[start:start + next(i for i, x in enumerate(lines[start:]) if not x.startswith("|"))])
    assert table2.count("AMF module") <= 1  # ablation rows do not overwrite Table 2's AMF row


def test_bad_experiment_options_are_one_line_errors(pretrained_run):
    for args, text in ((["--rconf", "0.5:0.2:0.1"], "LOW:HIGH:STEP"), (["--rconf", "lots"], "auto"),
                       (["--fusion", "concat", "--rconf", "0.5,1"], "needs a fusion that uses R_conf"),
                       (["--fusion", "concat", "--ablate-losses"], "auxiliary losses"),
                       (["--train-fraction", "0"], "(0, 1]")):
        res = _cli("finetune", *args, *FAST, ok=False)
        assert res.exit_code == 2 and text in res.output, res.output


def test_probe_intervals_say_when_a_probe_is_at_chance():
    from amfmedit.stages.kinds import BinaryKind, MulticlassKind

    def probe_interval(metric, probs, y, seed):
        return (BinaryKind() if metric == "auc" else MulticlassKind()).probe_score(probs, y, seed).to_dict()

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    noise = rng.random(400)
    at_chance = probe_interval("auc", np.stack([1 - noise, noise], 1), y, seed=0)
    assert at_chance["low"] < 0.5 < at_chance["high"] and not at_chance["informative"] and at_chance["method"] == "DeLong"
    signal = np.clip(0.5 * y + 0.5 * noise, 0, 1)
    good = probe_interval("auc", np.stack([1 - signal, signal], 1), y, seed=0)
    assert good["low"] > 0.5 and good["informative"]
    y3 = np.repeat([0, 1, 2], [200, 50, 50])  # majority 2/3: accuracy must beat that, not 1/3
    always_zero = np.tile([0.9, 0.05, 0.05], (300, 1))
    acc = probe_interval("acc", always_zero, y3, seed=0)
    assert acc["chance"] == pytest.approx(2 / 3) and not acc["informative"] and acc["method"] == "bootstrap"


def test_rconf_records_intervals_and_warns_when_a_probe_covers_chance(pretrained_run):
    run = pretrained_run.root
    res = CliRunner().invoke(app, ["rconf", "--epochs", "1", "--lr", "0.001", "--quiet"])
    assert res.exit_code == 0, res.output
    rec = json.loads((run / "rconf" / "rconf.json").read_text())
    uninformative = [m for m in ("image", "tabular") if not rec[m]["interval"]["informative"]]
    for m in ("image", "tabular"):
        iv = rec[m]["interval"]
        assert iv["low"] <= rec[m]["metric"] <= iv["high"] and iv["chance"] == 0.5
        assert iv["informative"] == (iv["low"] > 0.5)
    assert len(rec["warnings"]) == len(uninformative)
    assert all(f"{m}-only probe" in w for m, w in zip(uninformative, rec["warnings"]))
    report = (run / "report.md").read_text()
    section = report[report.index("## 3. Modality confidence"):].split("\n## ")[0]
    assert "95% CI" in section
    assert ("R_conf is noise" in res.stderr) == bool(uninformative) == ("**Warning**" in section)
