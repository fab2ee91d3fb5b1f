"""Every bad input the training commands meet: one line, exit code 2, nothing half-written."""

from __future__ import annotations

import errno
import os
import warnings

import pytest
import torch
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.errors import UserError
from amfmedit.train import rundir
from amfmedit.train.checkpoint import load_checkpoint

BASELINE = ["finetune", "--fusion", "none", "--modality", "tabular", "--tabular-encoder", "mlp", "--seeds", "2022",
            "--lr", "0.001", "--batch-size", "64", "--quiet"]


def _fails(*args, match: str):
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 2, res.output
    text = res.output.strip()
    assert "Traceback" not in text
    lines = [x for x in text.splitlines() if x.strip()]
    joined = " ".join(x.strip() for x in lines)
    assert joined.startswith("error:"), text
    import re

    assert re.search(match, joined), joined
    return joined


@pytest.fixture
def env(tiny_ol3i, tmp_path, monkeypatch):
    monkeypatch.setenv("AMFMEDIT_DATA", str(tiny_ol3i.data_dir))
    monkeypatch.setenv("AMFMEDIT_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_unknown_data_lists_what_exists_and_creates_nothing(env):
    _fails("pretrain", "--data", "synthetic-ol3j", match=r"no prepared dataset 'synthetic-ol3j' .*synthetic-ol3i")
    assert not env.exists() or not any(env.iterdir())


def test_no_run_and_no_pretrain_stage_say_which_command(env, tiny_ol3i):
    _fails("rconf", match=r"no run in .*amfmedit pretrain --data NAME")
    rundir.create_run(env, "bare", data=tiny_ol3i.name, data_dir=None, environment={})
    _fails("rconf", match=r"run bare has no pretrain/ stage; run `amfmedit pretrain --data synthetic-ol3i` first")
    _fails("finetune", "--fusion", "concat", match=r"run `amfmedit pretrain --data synthetic-ol3i` first")
    assert sorted(p.name for p in (env / "bare").iterdir()) == ["environment.json", "run.json"]


def test_amf_without_rconf_says_how_to_get_it(pretrained_run):
    _fails("finetune", "--fusion", "amf", match=r"needs R_conf .*run `amfmedit rconf` first or pass --rconf VALUE")
    assert not [p for p in pretrained_run.root.iterdir() if p.name.startswith("finetune")]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_but_absent(env, tiny_ol3i):
    _fails("pretrain", "--data", tiny_ol3i.name, "--device", "cuda", match=r"--device cuda: CUDA is not available")


def test_bad_option_values(env, pretrained_run):
    _fails("pretrain", "--data", "synthetic-ol3i", "--tabular-encoder", "ft_mambo", match=r"did you mean ft_mamba")
    _fails("finetune", "--fusion", "late", match=r"--fusion late: not one of concat, cross_attention, amf, none")
    _fails("finetune", "--fusion", "none", match=r"add --modality image or --modality tabular")
    _fails("finetune", "--fusion", "amf", "--rconf", "1", "--sampler-weights", "1,2,3",
           match=r"--sampler-weights 1.0,2.0,3.0: need one weight per class \(2\)")


def test_rconf_on_the_test_split_warns(pretrained_run):
    from amfmedit.stages.common import RunOptions
    from amfmedit.stages.rconf import RconfConfig, TestSplitWarning, rconf

    rundir.create_run(pretrained_run.runs_dir, "bare", data=pretrained_run.data, data_dir=None, environment={})
    with pytest.warns(TestSplitWarning, match="selects AMF's architecture with test data"):
        with pytest.raises(UserError, match="no pretrain/ stage"):
            rconf(RconfConfig(split="test"), RunOptions(run="bare"))


def test_finished_stage_is_not_replaced_without_force(env, tiny_ol3i):
    args = [*BASELINE, "--data", tiny_ol3i.name, "--run", "b", "--epochs", "1"]
    assert CliRunner().invoke(app, args).exit_code == 0
    before = (env / "b" / "supervised-tabular-seed2022" / "best.pt").read_bytes()
    _fails(*args, match=r"supervised-tabular-seed2022 is finished; pass --force")
    assert (env / "b" / "supervised-tabular-seed2022" / "best.pt").read_bytes() == before
    assert CliRunner().invoke(app, [*args, "--force"]).exit_code == 0


def test_nan_loss_stops_keeps_last_good_checkpoint_then_damaged_checkpoint_on_resume(env, tiny_ol3i, monkeypatch):
    import amfmedit.models.losses as losses

    real = losses.weighted_ce_loss
    calls = {"n": 0}

    def nan_from_epoch_2(logits, target, w):  # 154 training rows / batch 64 = 3 steps per epoch
        calls["n"] += 1
        out = real(logits, target, w)
        return out * float("nan") if calls["n"] > 3 else out

    stage = env / "b" / "supervised-tabular-seed2022"
    with monkeypatch.context() as m:
        m.setattr(losses, "weighted_ce_loss", nan_from_epoch_2)
        _fails(*BASELINE, "--data", tiny_ol3i.name, "--run", "b", "--epochs", "3",
               match=r"training loss became nan in epoch 2; stopped, the last good checkpoint \(epoch 1\) is kept in "
                     r".*last\.pt; lower the learning rate \(e\.g\. --lr 0\.0001\)")
    assert load_checkpoint(stage / "last.pt")["epoch"] == 1
    assert not (stage / "COMPLETE").exists()

    data = (stage / "last.pt").read_bytes()
    (stage / "last.pt").write_bytes(data[: len(data) // 3])
    _fails(*BASELINE, "--run", "b", "--epochs", "3", "--resume", match=r"last\.pt: not a readable checkpoint")
    _fails(*BASELINE, "--run", "b", "--epochs", "3", match=r"is unfinished; pass --force .* or --resume")


UNEXPECTED_POS = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(env, tiny_ol3i, monkeypatch):
    real_save = torch.save

    def disk_full_in_epoch_2(obj, f, *a, **k):  # what torch.save does on a full disk (measured on a tmpfs)
        if isinstance(obj, dict) and obj.get("epoch") == 2 and "optimizer" in obj:
            if isinstance(f, (str, os.PathLike)):  # its C++ writer: no OSError reaches Python
                with open(f, "wb") as fh:
                    fh.write(b"\0" * 100)
                raise RuntimeError(UNEXPECTED_POS)
            try:
                f.write(b"\0" * 100)
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:  # a file object's write failed: torch raises while handling it
                raise RuntimeError(UNEXPECTED_POS)
        return real_save(obj, f, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(torch, "save", disk_full_in_epoch_2)
        _fails(*BASELINE, "--data", tiny_ol3i.name, "--run", "b", "--epochs", "3",
               match=r"^error: disk full while writing \S*supervised-tabular-seed2022/last\.pt \(the previous checkpoint "
                     r"there is intact\); free space and continue with --resume$")
    stage = env / "b" / "supervised-tabular-seed2022"
    assert load_checkpoint(stage / "last.pt")["epoch"] == 1
    assert not [p for p in stage.iterdir() if p.name.startswith(".")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = CliRunner().invoke(app, [*BASELINE, "--run", "b", "--epochs", "3", "--resume"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(stage / "last.pt")["epoch"] == 3 and (stage / "COMPLETE").is_file()
