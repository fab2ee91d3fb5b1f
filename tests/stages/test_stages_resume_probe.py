"""The online probe after --resume: with --probe-every 2 it runs on the same epochs as an
uninterrupted run, so metrics.jsonl is the same (timing aside)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

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

    opts = RunOptions(runs_dir=runs_dir, run="r", data_dir=data_dir, resume=mode == "resume")
    pretrain(None if mode == "resume" else "synthetic-ol3i", cfg, opts, progress=progress)
    """
)
CONFIG = dict(tabular_dim=8, image_arch="resnet18", epochs=3, warmup_epochs=1, batch_size=64, probe_every=2)


def _metrics(stage):
    return [metrics_without_timing(json.loads(x)) for x in (stage / "metrics.jsonl").read_text().splitlines()]


def test_resume_with_probe_every_2_gives_the_uninterrupted_metrics(tiny_ol3i, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(f"CONFIG = {CONFIG!r}\n" + WORKER)

    def work(runs, mode):
        return subprocess.run([sys.executable, str(script), str(tiny_ol3i.data_dir), str(runs), mode],
                              capture_output=True, text=True, timeout=600)

    killed = work(tmp_path / "a", "kill")
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = work(tmp_path / "a", "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = work(tmp_path / "b", "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    a, b = _metrics(tmp_path / "a/r/pretrain"), _metrics(tmp_path / "b/r/pretrain")
    assert [("probe_auc" in m) for m in b] == [False, True, False]  # epoch 2 only
    assert a == b
