"""What a finished stage keeps on disk: the weights later stages load, and with --keep-checkpoints everything."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.train.checkpoint import load_checkpoint

QUICK = ["--epochs", "1", "--quiet"]


def _cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def _pts(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.pt"))


def test_finished_stages_keep_what_later_stages_load(pretrained_run):
    run = pretrained_run.root
    # pretraining: last.pt's weights (what finetune, rconf and the baselines load), no optimizer state
    assert _pts(run / "pretrain") == ["last.pt"]
    last = load_checkpoint(run / "pretrain" / "last.pt")
    assert "optimizer" not in last and "rng" not in last and last["finished"] and last["config"]["stage"]["pretrain"]
    from amfmedit.stages.pretrain import load_pretrained
    from amfmedit.train import rundir

    load_pretrained(rundir.open_run())  # what later stages read is intact

    # R_conf probes: the chosen learning rate's best.pt per modality; the other learning rate, none
    _cli("rconf", "--lrs", "0.01,0.001", *QUICK)
    rec = json.loads((run / "rconf" / "rconf.json").read_text())
    assert _pts(run / "rconf") == sorted([rec["image"]["checkpoint"].removeprefix("rconf/"),
                                          rec["tabular"]["checkpoint"].removeprefix("rconf/")])
    for modality in ("image", "tabular"):  # every candidate's result is still on record
        assert len(list((run / "rconf" / modality).glob("lr*/COMPLETE"))) == 2

    # --rconf auto with a learning-rate search: each seed keeps best.pt; no candidate or lr keeps anything
    _cli("finetune", "--fusion", "amf", "--rconf", "auto", "--rconf-multipliers", "1,2", "--d-out", "16",
         "--lrs", "0.01,0.001", "--seeds", "2022,2023", *QUICK)
    for seed in (2022, 2023):
        assert _pts(run / f"finetune-amf-trainable-rconfauto-seed{seed}") == ["best.pt"]
    search = run / "finetune-amf-trainable-rconfauto-rconfsearch"
    assert _pts(search) == [] and len(list(search.rglob("COMPLETE"))) >= 3  # 2 lrs + the other candidate
    _cli("evaluate")  # reads every seed's best.pt
    # a resume reuses the finished seeds from their records (no checkpoint needed) and trains the new one
    _cli("finetune", "--fusion", "amf", "--rconf", "auto", "--rconf-multipliers", "1,2", "--d-out", "16",
         "--lrs", "0.01,0.001", "--seeds", "2022,2023,2024", "--resume", *QUICK)
    assert _pts(run / "finetune-amf-trainable-rconfauto-seed2024") == ["best.pt"]
    chosen = json.loads((run / "finetune-amf-trainable-rconfauto-seed2022" / "config.json").read_text())["r_conf"]
    assert json.loads((run / "finetune-amf-trainable-rconfauto-seed2024" / "config.json").read_text())["r_conf"] == chosen

    # --keep-checkpoints keeps everything a training wrote
    _cli("finetune", "--fusion", "concat", "--lr", "0.001", "--seeds", "2022", "--keep-checkpoints", *QUICK)
    assert _pts(run / "finetune-concat-trainable-seed2022") == ["best.pt", "last.pt"]
    assert "optimizer" in load_checkpoint(run / "finetune-concat-trainable-seed2022" / "last.pt")

    # the report says how much the run takes
    from amfmedit.train.retention import disk_usage, human_bytes

    report = (run / "report.md").read_text()
    total, ckpt, n = disk_usage(run)
    line = next(x for x in report.splitlines() if x.startswith("On disk: "))
    assert f"in {n} checkpoint(s)" in line and n == 1 + 2 + 3 + 2
    shown = line.removeprefix("On disk: ").split(",")[0]
    value, unit = shown.split()
    assert unit == human_bytes(total).split()[1]  # measured when the report was written, just before
    assert abs(float(value) - float(human_bytes(total).split()[0])) <= 0.05 * float(value) + 0.1
