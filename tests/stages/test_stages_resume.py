"""Exact resume: a pretraining run SIGKILLed mid-epoch and resumed ends bit-identical on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch

from amfmedit.train.checkpoint import load_checkpoint
from amfmedit.train.engine import metrics_without_timing

WORKER = textwrap.dedent(
    """
    import os, signal, sys
    from amfmedit.stages.common import RunOptions
    from amfmedit.stages.pretrain import PretrainConfig, pretrain

    data_dir, runs_dir, mode = sys.argv[1:4]
    cfg = PretrainConfig(**CONFIG)

    def progress(title, monitor):
        def cb(p):
            if mode == "kill" and p.epoch == 2 and not p.done:  # inside epoch 2, before its checkpoint
                os.kill(os.getpid(), signal.SIGKILL)
        return cb

    # keep_checkpoints: the test compares the finished runs' optimizer states
    opts = RunOptions(runs_dir=runs_dir, run="r", data_dir=data_dir, resume=mode == "resume", keep_checkpoints=True)
    pretrain(None if mode == "resume" else "synthetic-ol3i", cfg, opts, progress=progress)
    """
)
CONFIG = dict(tabular_dim=8, image_arch="resnet18", epochs=2, warmup_epochs=1, batch_size=64)


def _metrics(stage):
    return [metrics_without_timing(json.loads(x)) for x in (stage / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tiny_ol3i, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(f"CONFIG = {CONFIG!r}\n" + WORKER)

    def work(runs, mode):
        return subprocess.run([sys.executable, str(script), str(tiny_ol3i.data_dir), str(runs), mode],
                              capture_output=True, text=True, timeout=600)

    killed = work(tmp_path / "a", "kill")
    assert killed.returncode == -9, killed.stderr[-2000:]
    stage_a = tmp_path / "a" / "r" / "pretrain"
    assert load_checkpoint(stage_a / "last.pt")["epoch"] == 1 and not (stage_a / "COMPLETE").exists()
    resumed = work(tmp_path / "a", "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # the uninterrupted run, in this process (same thread count as the workers)
    from amfmedit.stages.common import RunOptions
    from amfmedit.stages.pretrain import PretrainConfig, pretrain

    pretrain("synthetic-ol3i", PretrainConfig(**CONFIG),
             RunOptions(runs_dir=str(tmp_path / "b"), run="r", data_dir=str(tiny_ol3i.data_dir), keep_checkpoints=True))
    stage_b = tmp_path / "b" / "r" / "pretrain"

    a, b = load_checkpoint(stage_a / "last.pt"), load_checkpoint(stage_b / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for k, v in b["model"]["state_dict"].items():
        assert torch.equal(a["model"]["state_dict"][k], v), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sb)
    assert a["scheduler"] == b["scheduler"]
    assert _metrics(stage_a) == _metrics(stage_b) and len(_metrics(stage_b)) == 2
    assert (stage_a / "COMPLETE").is_file()
