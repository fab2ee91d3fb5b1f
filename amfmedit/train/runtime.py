"""Where and how a training process runs: device, DistributedDataParallel, bf16, channels-last,
and the process-wide CPU tuning (glibc's allocator thresholds, :mod:`amfmedit.train.cpu_alloc`).

One :class:`Runtime` per process. Launched under ``torchrun`` (``WORLD_SIZE`` > 1 in the
environment) it joins the process group (NCCL on CUDA, gloo on the CPU); rank 0 alone logs
and writes files, and metrics are gathered across ranks before anyone decides anything
(best checkpoint, early stopping), so every rank takes the same decision.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from amfmedit.env import choose_device
from amfmedit.train.cpu_alloc import tune_cpu_allocator


@dataclass
class Runtime:
    """The resolved execution settings of this process."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    bf16: bool = False  # autocast to bfloat16 (CUDA only: the CPU path stays fp32 and bit-exact)
    channels_last: bool = False
    compile: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        """bf16 autocast on CUDA when enabled; a no-op context elsewhere."""
        if self.bf16 and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_gather_object(self, obj: Any) -> list:
        """Every rank's ``obj`` in rank order (``[obj]`` in a single process)."""
        if not self.distributed:
            return [obj]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def describe(self) -> dict:
        return {
            "device": str(self.device),
            "world_size": self.world_size,
            "bf16": self.bf16,
            "channels_last": self.channels_last,
            "compile": self.compile,
        }


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` from every rank, concatenated in rank order, with gradients to every rank.

    Outside a process group (or with one process) ``x`` itself. Every rank must pass the same
    shape (the engine's sampler gives every rank batches of equal size). The backward pass sums
    the gradient of each rank's copy of a slot into the rank that owns it
    (``torch.distributed.nn.functional.all_gather``), so a loss computed by every rank on the
    gathered rows has, after DDP's gradient averaging, the gradient of that loss in one
    process (each rank's parameter gradient is world_size times its share, then averaged).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def setup_runtime(device: str | None = "auto", *, compile: bool = False, bf16: bool | None = None) -> Runtime:
    """Resolve ``--device`` and join the process group when launched by ``torchrun``.

    Every stage (training, evaluation, prediction, explanation) starts here, so the settings that
    act on the whole process are made here too: on the CPU, glibc's mmap and trim thresholds
    (:func:`~amfmedit.train.cpu_alloc.tune_cpu_allocator`; ``AMFMEDIT_MALLOPT=0`` leaves them).

    ``bf16`` defaults to on for CUDA and off for the CPU (CPU runs are the exact, reproducible
    reference; bf16 on the CPU is slower than fp32 on most machines anyway).
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = choose_device(device)
    if dev.type == "cuda":
        if world_size > 1 or dev.index is None:
            dev = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():

        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        atexit.register(_leave_group)
    on_cuda = dev.type == "cuda"
    if dev.type == "cpu":
        tune_cpu_allocator()  # large activations reused instead of mmapped afresh every step
    if on_cuda:
        # TF32 matmuls for whatever stays in fp32 under autocast; cudnn picks the fastest convs.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return Runtime(
        device=dev,
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        bf16=on_cuda if bf16 is None else (bf16 and on_cuda),
        channels_last=on_cuda,
        compile=compile,
    )


def _leave_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


