"""Weight-decay groups and the warm-up + cosine schedule."""

import math

import pytest
import torch
from torch import nn

from amfmedit.train.optim import build_optimizer, build_scheduler, param_groups, warmup_cosine_factor


class _RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.lin = nn.Linear(4, 3)
        self.ln = nn.LayerNorm(3)
        self.rms = _RMSNorm(3)
        self.A_log = nn.Parameter(torch.zeros(3, 2))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(3))
        self.D._no_weight_decay = True
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_groups_exempt_biases_norms_and_marked_parameters():
    net = _Net()
    groups = param_groups(net, 1e-4)
    names = {id(p): n for n, p in net.named_parameters()}
    decay = sorted(names[id(p)] for p in groups[0]["params"])
    no_decay = sorted(names[id(p)] for p in groups[1]["params"])
    assert groups[0]["weight_decay"] == 1e-4 and groups[1]["weight_decay"] == 0.0
    assert decay == ["conv.weight", "lin.weight"]
    assert no_decay == ["A_log", "D", "bn.bias", "bn.weight", "conv.bias", "lin.bias", "ln.bias", "ln.weight", "rms.weight"]


def test_frozen_parameters_are_not_optimised():
    net = _Net()
    opt = build_optimizer(net, kind="adam", lr=1e-3, weight_decay=1e-4)
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(net.frozen.weight) not in ids and id(net.conv.weight) in ids


def test_warmup_then_cosine():
    f = [warmup_cosine_factor(s, warmup_steps=4, total_steps=14) for s in range(15)]
    assert f[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert f[4] == pytest.approx(1.0)
    assert f[9] == pytest.approx(0.5)
    assert f[14] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(f[4:], f[5:]))


def test_scheduler_drives_the_learning_rate_and_restores():
    net = nn.Linear(2, 2)
    opt = build_optimizer(net, lr=0.1)
    sched = build_scheduler(opt, schedule="cosine", warmup_steps=2, total_steps=10)
    for _ in range(5):
        opt.step()
        sched.step()
    lr = opt.param_groups[0]["lr"]
    opt2 = build_optimizer(net, lr=0.1)
    sched2 = build_scheduler(opt2, schedule="cosine", warmup_steps=2, total_steps=10)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    lr = opt.param_groups[0]["lr"]
    assert opt2.param_groups[0]["lr"] == lr == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))


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
