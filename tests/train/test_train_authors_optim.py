"""The authors' optimisation where it differs from ours (issue 24): weight decay on every
parameter, the learning-rate schedule stepped per epoch from 0, validation every N batches."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from amfmedit.models import FTMambaEncoder
from amfmedit.train.engine import FitConfig, fit
from amfmedit.train.optim import build_optimizer, epoch_warmup_cosine_factor, param_groups, warmup_cosine_factor
from amfmedit.train.runtime import Runtime


class TinyTask:
    """A small classifier on fixed random data (40 training rows: 5 batches of 8; 16 validation rows);
    counts its validations."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(56, 4, generator=g)
        self.y = (self.x[:, 0] + 0.3 * torch.randn(56, generator=g) > 0).long()
        self.module = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
        self.validations, self.seen = 0, []  # validation losses in order

    def model_spec(self):
        return {"kind": "tiny", "config": {}}

    def train_labels(self):
        return self.y[:40].numpy()

    def train_step(self, model, positions, gen):
        idx = torch.as_tensor(positions)
        return nn.functional.cross_entropy(model(self.x[idx]), self.y[idx]), len(idx)

    def validate(self, model, runtime):
        self.validations += 1
        logits = model(self.x[40:])
        self.seen.append(float(nn.functional.cross_entropy(logits, self.y[40:])))
        return {"val_loss": self.seen[-1], "val_acc": float((logits.argmax(-1) == self.y[40:]).float().mean())}


def _fit(task, tmp_path, **kw):
    cfg = FitConfig(**{"epochs": 3, "batch_size": 8, "lr": 0.1, "seed": 1, "monitor": "val_acc", "mode": "max", **kw})
    return fit(task, cfg, Runtime(device=torch.device("cpu")), tmp_path)


def test_weight_decay_scope_all_decays_a_log_d_biases_and_norms():
    enc = FTMambaEncoder(n_cont_features=3, cat_cardinalities=[], d_block=8, d_state=4)
    names = {id(p): n for n, p in enc.named_parameters()}
    ours = param_groups(enc, 1e-4)
    exempt = {names[id(p)] for p in ours[1]["params"]}
    assert {"blocks.0.A_log", "blocks.0.D", "norm_f.weight", "norm_f.bias", "blocks.0.dt_proj.bias"} <= exempt
    assert ours[1]["weight_decay"] == 0.0
    (theirs,) = param_groups(enc, 1e-4, "all")  # the authors' Adam(params, weight_decay=...)
    assert theirs["weight_decay"] == 1e-4 and len(theirs["params"]) == len(list(enc.parameters()))
    opt = build_optimizer(enc, lr=1e-3, weight_decay=1e-4, weight_decay_scope="all")
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4]
    with pytest.raises(ValueError, match="scope"):
        param_groups(enc, 1e-4, "most")


def test_the_engine_takes_the_scope(tmp_path):
    task = TinyTask()
    _fit(task, tmp_path, epochs=1, weight_decay=1e-2, weight_decay_scope="all")
    state = torch.load(tmp_path / "last.pt", weights_only=True)["optimizer"]
    assert [g["weight_decay"] for g in state["param_groups"]] == [1e-2]


def _pl_bolts_chained(base, warmup, total, epochs):
    """The learning rate per epoch as pl_bolts' LinearWarmupCosineAnnealingLR (warmup_start_lr 0,
    eta_min 0) updates it step by step, once per epoch under Lightning."""
    lrs, lr = [], 0.0
    for e in range(epochs):
        if e == 0:
            lr = 0.0
        elif e < warmup:
            lr = lr + base / (warmup - 1)
        elif e == warmup:
            lr = base
        else:
            lr = (1 + math.cos(math.pi * (e - warmup) / (total - warmup))) / (
                1 + math.cos(math.pi * (e - warmup - 1) / (total - warmup))) * lr
        lrs.append(lr)
    return lrs


def test_the_authors_schedule_steps_per_epoch_from_zero():
    factors = [epoch_warmup_cosine_factor(e, warmup_epochs=10, total_epochs=500) for e in range(500)]
    assert factors[:3] == pytest.approx([0.0, 1 / 9, 2 / 9]) and factors[9] == factors[10] == 1.0
    assert factors == pytest.approx([lr / 3e-4 for lr in _pl_bolts_chained(3e-4, 10, 500, 500)], abs=1e-9)
    # ours: per step, the first step at one warm-up increment
    assert warmup_cosine_factor(0, warmup_steps=10, total_steps=500) == pytest.approx(1 / 11)


def test_the_engine_steps_the_epoch_schedule_once_per_epoch(tmp_path):
    task = TinyTask()
    with torch.no_grad():
        untrained = TinyTask().validate(task.module, None)["val_loss"]
    res = _fit(task, tmp_path, epochs=5, warmup_epochs=2, schedule_unit="epoch")
    # the first epoch trains at learning rate 0: its validation is the untrained model's
    assert res.history[0]["val_loss"] == pytest.approx(untrained, abs=1e-7)
    # each epoch's record holds the rate of the epoch that follows (as per-step records do)
    assert [h["lr"] for h in res.history] == pytest.approx([0.1 * f for f in (1, 1, 0.75, 0.25, 0)], abs=1e-9)


def test_validation_every_n_batches_keeps_the_best_of_all_and_stops_on_each_epochs_last(tmp_path):
    from amfmedit.io import torch_load

    # 5 batches an epoch, N = 2: after batches 2 and 4; batch 5 is not validated (Lightning's rule)
    task = TinyTask()
    res = _fit(task, tmp_path / "n2", epochs=3, val_every=2, monitor="val_loss", mode="min")
    assert task.validations == 6 and [h["validations"] for h in res.history] == [2, 2, 2]
    assert [h["val_loss"] for h in res.history] == task.seen[1::2]  # each epoch reports its last validation
    best = torch_load(tmp_path / "n2" / "best.pt")
    assert best["metric"] == pytest.approx(min(task.seen)) and best["batch"] in (2, 4)
    assert best["epoch"] == 1 + task.seen.index(min(task.seen)) // 2 == res.best_epoch
    last = torch_load(tmp_path / "n2" / "last.pt")
    assert last["early_stopping"]["best"] == pytest.approx(-min(task.seen[1::2]))  # epochs' last validations only
    # N a divisor of the epoch: the last batch's validation is the epoch's; N beyond it: one at the end
    for n, per_epoch in ((5, 1), (7, 1), (1, 5)):
        task = TinyTask()
        _fit(task, tmp_path / f"n{n}", epochs=2, val_every=n)
        assert task.validations == 2 * per_epoch, n
    task = TinyTask()
    res = _fit(task, tmp_path / "default", epochs=2)
    assert task.validations == 2 and "validations" not in res.history[0]
