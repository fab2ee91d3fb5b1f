"""DDP under torchrun: two CPU processes (gloo) run pretrain and finetune to the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from amfmedit.train.checkpoint import load_checkpoint

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
    torchrun("finetune", "--fusion", "amf", "--strategy", "frozen", "--rconf", "1.0", "--seeds", "2022", "--lr",
             "0.001", "--epochs", "1", "--batch-size", "32")
    run = tmp_path / "runs" / "ddp"
    for stage in ("pretrain", "finetune-amf-frozen-seed2022"):
        assert (run / stage / "COMPLETE").is_file()
        lines = (run / stage / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == 1  # rank 0 alone writes
        cfg = load_checkpoint(run / stage / "last.pt")["config"]
        assert cfg["world_size"] == 2
    assert json.loads((run / "finetune-amf-frozen-seed2022" / "config.json").read_text())["runtime"]["world_size"] == 2

    # The validation AUC the DDP run selected on was gathered from both ranks' halves of the
    # split: scoring best.pt on the whole validation split in one process gives the same number.
    from amfmedit.stages.common import RunOptions
    from amfmedit.stages.evaluate import EvaluateConfig, evaluate

    res = evaluate(EvaluateConfig(split="val"), RunOptions(runs_dir=str(tmp_path / "runs"), run="ddp",
                                                          data_dir=str(tiny_ol3i.data_dir)))
    (row,) = res.stages
    assert row["auc"] == pytest.approx(row["val_metric"], abs=1e-6)
