"""--log tensorboard: every metrics.jsonl scalar in the stage folder's event file at its epoch, read
back with TensorBoard's own reader; figures logged; a resumed run shows no epoch twice; missing
packages and unknown kinds are one-line errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from amfmedit.errors import UserError
from amfmedit.train.engine import fit
from amfmedit.train.logging import open_logger
from test_train_engine import ToyTask, _cfg, _rt  # tests/train/test_train_engine.py (the engine's toy task)


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_every_metrics_scalar_is_in_the_event_file_at_its_epoch(tmp_path):
    fit(ToyTask(), _cfg(epochs=4, log="tensorboard"), _rt(), tmp_path)
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    acc = _events(tmp_path / "tensorboard")
    keys = {k for rec in lines for k in rec if k != "epoch"}
    assert keys >= {"train_loss", "val_loss", "val_auc", "lr", "time_s", "samples_per_s"}
    assert set(acc.Tags()["scalars"]) == keys
    for key in keys:
        events = acc.Scalars(key)
        assert [e.step for e in events] == [rec["epoch"] for rec in lines]
        np.testing.assert_allclose([e.value for e in events], [rec[key] for rec in lines], rtol=1e-6)


def test_default_logs_nothing_and_the_setting_does_not_block_resume(tmp_path):
    fit(ToyTask(), _cfg(epochs=2), _rt(), tmp_path / "plain")
    assert not (tmp_path / "plain" / "tensorboard").exists()
    # an interrupted run resumed with --log tensorboard: the settings that matter are the same
    class _Stop(Exception):
        pass

    def stop_after_2(p):
        if p.done and p.epoch == 2:
            raise _Stop

    with pytest.raises(_Stop):
        fit(ToyTask(), _cfg(epochs=4), _rt(), tmp_path / "r", progress=stop_after_2)
    fit(ToyTask(), _cfg(epochs=4, log="tensorboard"), _rt(), tmp_path / "r", resume=True)
    steps = [e.step for e in _events(tmp_path / "r" / "tensorboard").Scalars("val_loss")]
    assert steps == [3, 4]  # what this process trained; epochs 1-2 are in metrics.jsonl


def test_figures_and_purge_on_resume(tmp_path):
    from PIL import Image

    png = tmp_path / "curve.png"
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(png)
    log = open_logger("tensorboard", tmp_path / "stage")
    for step in (1, 2, 3):
        log.log_scalars(step, {"val_loss": float(step), "note": "text", "bad": float("nan"), "flag": True})
    log.log_figure("pretrain_curves", png)
    log.close()
    # a resumed run from epoch 3: the interrupted run's epoch-3 event is dropped, the new one kept
    again = open_logger("tensorboard", tmp_path / "stage", purge_step=3)
    again.log_scalars(3, {"val_loss": 30.0})
    again.close()
    acc = _events(tmp_path / "stage" / "tensorboard")
    assert acc.Tags()["scalars"] == ["val_loss"]  # strings, NaN and booleans skipped
    assert [(e.step, e.value) for e in acc.Scalars("val_loss")] == [(1, 1.0), (2, 2.0), (3, 30.0)]
    (img,) = acc.Images("pretrain_curves")
    assert (img.width, img.height) == (30, 20)


def test_missing_package_and_unknown_kind_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(UserError, match="pip install tensorboard") as err:
        open_logger("tensorboard", tmp_path)
    assert "\n" not in str(err.value)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(UserError, match="pip install mlflow"):
        open_logger("mlflow", tmp_path)
    with pytest.raises(UserError, match="--log wandb: unknown logger; use one of none, tensorboard, mlflow"):
        open_logger("wandb", tmp_path)
    assert not (tmp_path / "tensorboard").exists()
    open_logger("none", tmp_path).log_scalars(1, {"x": 1.0})
    assert list(tmp_path.iterdir()) == []
