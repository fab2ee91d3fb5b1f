"""The engine on a small task: checkpoints, exact resume, early stopping, NaN, full disk, damage."""

import errno

import pytest
import torch
from torch import nn

from amfmedit.errors import UserError
from amfmedit.io import torch_load
from amfmedit.train.checkpoint import load_checkpoint
from amfmedit.train.engine import FitConfig, fit, metrics_without_timing
from amfmedit.train.metrics import classification_metrics
from amfmedit.train.runtime import Runtime


class ToyTask:
    """Logistic regression with dropout on fixed random data (train 64 rows, val 32)."""

    def __init__(self, nan_from_epoch=None, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(96, 6, generator=g)
        w = torch.randn(6, generator=g)
        self.y = (self.x @ w + 0.5 * torch.randn(96, generator=g) > 0).long()
        self.module = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
        self.nan_from_epoch = nan_from_epoch
        self.epoch_seen = 0

    def model_spec(self):
        return {"kind": "toy", "config": {"d": 6}}

    def train_labels(self):
        return self.y[:64].numpy()

    def train_step(self, model, positions, gen):
        idx = torch.as_tensor(positions)
        noise = torch.randn(len(idx), 6, generator=gen) * 0.1  # an "augmentation" from the epoch generator
        loss = nn.functional.cross_entropy(model(self.x[idx] + noise), self.y[idx])
        if self.nan_from_epoch is not None and self._epoch() >= self.nan_from_epoch:
            loss = loss * float("nan")
        return loss, len(idx)

    def _epoch(self):
        return self.epoch_seen

    def validate(self, model, runtime):
        self.epoch_seen += 1
        logits = model(self.x[64:])
        probs = logits.softmax(-1).numpy()
        m = classification_metrics(probs, self.y[64:].numpy())
        return {"val_loss": float(nn.functional.cross_entropy(logits, self.y[64:])), "val_auc": m["auc"]}


def _cfg(**kw):
    base = dict(epochs=6, batch_size=16, lr=0.05, monitor="val_auc", mode="max", seed=3, warmup_epochs=1)
    base.update(kw)
    return FitConfig(**base)


def _rt():
    return Runtime(device=torch.device("cpu"))


def test_fit_writes_checkpoints_and_one_metrics_line_per_epoch(tmp_path):
    res = fit(ToyTask(), _cfg(), _rt(), tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 6 == res.epochs_run
    last = load_checkpoint(tmp_path / "last.pt")
    best = torch_load(tmp_path / "best.pt")
    assert last["epoch"] == 6 and last["finished"] is True
    assert best["epoch"] == res.best_epoch and best["metric"] == pytest.approx(res.best_metric)
    assert set(last) >= {"model", "optimizer", "scheduler", "rng", "early_stopping", "history", "config"}
    assert res.best_metric > 0.7


def test_resume_from_an_earlier_epoch_is_bit_identical(tmp_path):
    full = tmp_path / "full"
    part = tmp_path / "part"
    fit(ToyTask(), _cfg(), _rt(), full)
    with pytest.raises(_Stop):
        fit(ToyTask(), _cfg(), _rt(), part, progress=_stop_after(3))
    assert load_checkpoint(part / "last.pt")["epoch"] == 3
    task = ToyTask()
    fit(task, _cfg(), _rt(), part, resume=True)
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(part / "last.pt")
    for k, v in a["model"]["state_dict"].items():
        assert torch.equal(v, b["model"]["state_dict"][k]), k
    la = [metrics_without_timing(r) for r in _lines(full)]
    lb = [metrics_without_timing(r) for r in _lines(part)]
    assert la == lb and len(la) == 6


def _lines(d):
    import json

    return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]


class _Stop(Exception):
    """Raised from the progress callback: the run ends abruptly after a finished epoch."""


def _stop_after(epoch):
    def cb(p):
        if p.done and p.epoch == epoch:
            raise _Stop()

    return cb


def test_resume_needs_the_same_settings(tmp_path):
    with pytest.raises(_Stop):
        fit(ToyTask(), _cfg(), _rt(), tmp_path, progress=_stop_after(2))
    with pytest.raises(UserError, match=r"settings differ .*fit\.lr"):
        fit(ToyTask(), _cfg(lr=0.01), _rt(), tmp_path, resume=True)


def test_early_stopping_uses_patience_and_min_delta(tmp_path):
    res = fit(ToyTask(), _cfg(epochs=60, lr=0.05, patience=3, min_delta=0.5), _rt(), tmp_path)
    # with min_delta 0.5 on an AUC nothing after epoch 1 counts as an improvement
    assert res.stopped_early and res.epochs_run == 4


def test_nan_loss_stops_names_the_epoch_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(UserError, match=r"became nan in epoch 3; stopped, the last good checkpoint \(epoch 2\).*--lr 0.005"):
        fit(ToyTask(nan_from_epoch=2), _cfg(), _rt(), tmp_path)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"]["state_dict"].values())
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save

    def flaky_save(obj, f, *a, **k):  # the disk fills up while epoch 3's last.pt is written
        if isinstance(obj, dict) and obj.get("epoch") == 3 and "optimizer" in obj:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", flaky_save)
    with pytest.raises(UserError, match=r"disk full while writing .*last\.pt \(the previous checkpoint there is intact\); free space and continue "
                                             r"with --resume$"):
        fit(ToyTask(), _cfg(), _rt(), tmp_path)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_damaged_checkpoint_on_resume_is_one_clear_line(tmp_path):
    with pytest.raises(_Stop):
        fit(ToyTask(), _cfg(), _rt(), tmp_path, progress=_stop_after(2))
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"last\.pt: not a readable checkpoint .*--force"):
        fit(ToyTask(), _cfg(), _rt(), tmp_path, resume=True)
