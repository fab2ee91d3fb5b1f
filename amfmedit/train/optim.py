"""Optimizer with weight-decay groups, and the learning-rate schedule.

Weight decay (scope "selective", ours) is not applied to biases, normalisation weights
(BatchNorm, LayerNorm, RMSNorm) or to parameters that carry ``_no_weight_decay = True`` (the
Mamba block's ``A_log`` and ``D``, following mamba_ssm's optimizer hints); scope "all" decays
every parameter, as the authors' ``torch.optim.Adam(..., weight_decay=...)`` over all
parameters does. Frozen parameters are left out entirely.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULES = ("cosine", "constant")
#: how the warm-up + cosine schedule advances: "step" (ours, every training step) or "epoch"
#: (the authors': once per epoch, from 0)
SCHEDULE_UNITS = ("step", "epoch")
#: which parameters weight decay reaches: "selective" (ours: not biases, norms, A_log, D) or "all"
DECAY_SCOPES = ("selective", "all")

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def _is_norm(module: nn.Module) -> bool:
    # Custom norms (RMSNorm variants in Mamba code) are recognised by their class name.
    return isinstance(module, _NORM_TYPES) or type(module).__name__.endswith("Norm")


def param_groups(module: nn.Module, weight_decay: float, scope: str = "selective") -> list[dict]:
    """Two groups of trainable parameters: with ``weight_decay`` and without any.

    Scope "selective": a parameter is exempt when it is a bias, belongs to a normalisation
    layer, is 1-d scale/shift of any norm-like module, or is marked ``_no_weight_decay``.
    Scope "all": none is exempt.
    """
    if scope not in DECAY_SCOPES:
        raise ValueError(f"unknown weight-decay {scope=}; use one of {DECAY_SCOPES}")
    # NOTE[paper]: the paper's "weight decay" (Appendix A.2) does not say what it reaches; the
    # authors' Adam decays every parameter, including A_log (pulling A = -exp(A_log) towards
    # -1 whatever its initial decay rate), D, biases and norm scales (towards 0). Ours exempts those, as
    # mamba_ssm's optimizer hints ask; scope "all" (--weight-decay-scope all) keeps theirs.
    decay, no_decay, seen = [], [], set()
    for mod in module.modules():
        norm = _is_norm(mod)
        for name, p in mod.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            exempt = norm or name == "bias" or name.endswith("_bias") or getattr(p, "_no_weight_decay", False)
            if exempt and scope == "selective":
                no_decay.append(p)
            else:
                decay.append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(
    module: nn.Module, *, kind: Literal["adam", "adamw"] = "adam", lr: float, weight_decay: float = 0.0,
    weight_decay_scope: str = "selective",
) -> torch.optim.Optimizer:
    """Adam/AdamW over the trainable parameters of ``module`` with decay groups (:func:`param_groups`)."""
    if kind not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {kind=}; use one of {sorted(OPTIMIZERS)}")
    if not lr > 0:
        raise ValueError(f"learning rate must be positive, got {lr=}")
    groups = param_groups(module, weight_decay, weight_decay_scope)
    if not groups:
        raise ValueError("the module has no trainable parameters")
    # Adam's coupled L2 decay acts as the paper's "weight decay" (A.2); AdamW decouples it.
    # The fused kernel (one pass over each parameter) on CUDA and on the CPU: on a 2-core CPU
    # it took 120 vs 659 ms per step for 28 M parameters and 1.0 vs 2.0 ms for FT-Mamba's
    # 0.2 M, against the multi-tensor (foreach) update (benchmarks/bench_scaling.py --adam).
    # Where a device or dtype has no fused kernel, the foreach update (same arithmetic).
    try:
        return OPTIMIZERS[kind](groups, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return OPTIMIZERS[kind](groups, lr=lr, foreach=True)


def warmup_cosine_factor(step: int, *, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up from 1/(warmup+1) to 1, then cosine to 0.

    Matches ``LinearWarmupCosineAnnealingLR`` as the reference uses it (warm-up start 0 would
    waste the first step; we start at one warm-up increment).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_warmup_cosine_factor(epoch: int, *, warmup_epochs: int, total_epochs: int) -> float:
    """The authors' learning-rate multiplier for (0-based) ``epoch``: pl_bolts'
    ``LinearWarmupCosineAnnealingLR`` (warm-up start 0, eta_min 0) as Lightning steps it, once per
    epoch (their scheduler is returned without an interval).

    Warm-up: epoch / (warmup - 1), so the first epoch trains at 0 and epoch warmup - 1 at the
    full rate; then 0.5 (1 + cos(π (epoch - warmup) / (total - warmup))).
    """
    # NOTE[paper]: Appendix A.2 gives "10 warm-up epochs, cosine annealing" without the unit.
    # Ours advances every step from one warm-up increment (warmup_cosine_factor), so no step
    # trains at 0 and the rate does not jump at epoch boundaries; unit "epoch" keeps theirs.
    if epoch < warmup_epochs:
        return epoch / max(1, warmup_epochs - 1)
    span = max(1, total_epochs - warmup_epochs)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (epoch - warmup_epochs) / span)))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    schedule: str,
    warmup_steps: int,
    total_steps: int,
    unit: str = "step",
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepped once per ``unit`` (a training step or an epoch; ``warmup_steps`` and
    ``total_steps`` count that unit). Its state is an integer: exact on resume."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown {schedule=}; use one of {SCHEDULES}")
    if unit not in SCHEDULE_UNITS:
        raise ValueError(f"unknown schedule {unit=}; use one of {SCHEDULE_UNITS}")
    if schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if unit == "epoch":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: epoch_warmup_cosine_factor(e, warmup_epochs=warmup_steps, total_epochs=total_steps)
        )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, warmup_steps=warmup_steps, total_steps=total_steps)
    )
