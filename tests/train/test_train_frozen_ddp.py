"""Frozen means frozen (weights AND BatchNorm statistics); DDP under torchrun on the CPU (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.train.checkpoint import load_checkpoint


def _cli(*args):
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res


def test_frozen_strategy_keeps_encoder_weights_and_bn_statistics(pretrained_run):
    _cli("finetune", "--fusion", "concat", "--strategy", "frozen", "--seeds", "2022", "--lr", "0.01", "--epochs", "2",
         "--batch-size", "64", "--quiet")
    pre = load_checkpoint(pretrained_run.root / "pretrain" / "last.pt")["model"]["state_dict"]
    fin = load_checkpoint(pretrained_run.root / "finetune-concat-frozen-seed2022" / "last.pt")["model"]["state_dict"]
    enc = [k for k in fin if k.startswith(("image_encoder.", "tabular_encoder."))]
    assert any(k.endswith("running_mean") for k in enc) and any(k.endswith("num_batches_tracked") for k in enc)
    for k in enc:
        assert torch.equal(fin[k], pre[k]), k
    assert torch.isfinite(fin["fusion.head.weight"]).all()


def test_weight_decay_groups_of_a_real_model_exempt_mamba_parameters():
    from amfmedit.models import build_tabular_encoder
    from amfmedit.train.optim import param_groups

    enc = build_tabular_encoder("ft_mamba", n_cont_features=5, cat_cardinalities=[3], d_block=8)
    decay, no_decay = param_groups(enc, 1e-4)
    names = {id(p): n for n, p in enc.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    d = {names[id(p)] for p in decay["params"]}
    assert {n for n in names.values() if n.endswith(("A_log", ".D"))} <= nd
    assert not any(n.endswith(("A_log", ".D", ".bias")) for n in d)
    assert any(n.endswith("in_proj.weight") for n in d)


def test_torchrun_two_cpu_processes_pretrain_and_finetune(tiny_ol3i, tmp_path):
    env = {**os.environ, "AMFMEDIT_DATA": str(tiny_ol3i.data_dir), "AMFMEDIT_RUNS": str(tmp_path / "runs"),
           "OMP_NUM_THREADS": "1"}

    def torchrun(*args):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "amfmedit", "--", *args, "--quiet"]  # "--": torchrun would take --run for its --run-path
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        return res

    torchrun("pretrain", "--data", tiny_ol3i.name, "--run", "ddp", "--tabular-dim", "8", "--image-arch", "resnet18",
             "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "32")
    torchrun("finetune", "--fusion", "amf", "--rconf", "1.0", "--seeds", "2022", "--lr", "0.001", "--epochs", "1",
             "--batch-size", "32")
    run = tmp_path / "runs" / "ddp"
    for stage in ("pretrain", "finetune-amf-trainable-seed2022"):
        assert (run / stage / "COMPLETE").is_file()
        lines = (run / stage / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == 1  # rank 0 alone writes
        cfg = load_checkpoint(run / stage / "last.pt")["config"]
        assert cfg["world_size"] == 2
    assert json.loads((run / "finetune-amf-trainable-seed2022" / "config.json").read_text())["runtime"]["world_size"] == 2

    # The validation AUC the DDP run selected on was gathered from both ranks' halves of the
    # split: scoring best.pt on the whole validation split in one process gives the same number.
    from amfmedit.stages.common import RunOptions
    from amfmedit.stages.evaluate import EvaluateConfig, evaluate

    res = evaluate(EvaluateConfig(split="val"), RunOptions(runs_dir=str(tmp_path / "runs"), run="ddp",
                                                          data_dir=str(tiny_ol3i.data_dir)))
    (row,) = res.stages
    assert row["auc"] == pytest.approx(row["val_auc"], abs=1e-6)
