"""Seeds and random-number state.

Every random draw in an epoch (sampling order, augmentation, corruption, dropout) comes from
generators seeded by ``(seed, epoch, rank, stream)``. An epoch therefore replays exactly
from its start, which is what makes ``--resume`` after a crash mid-epoch bit-identical on
the CPU: the resumed process restores the end-of-epoch checkpoint and re-runs the
interrupted epoch with the same draws. The global states are saved in checkpoints as well
and restored on resume, so code that draws from the global generators stays exact too.
"""

from __future__ import annotations

import random

import numpy as np
import torch

# Independent random streams within one epoch.
STREAM_SAMPLER = 0
STREAM_AUGMENT = 1
STREAM_GLOBAL = 2
STREAM_INIT = 3  # model initialisation before training


def derive_seed(seed: int, *keys: int) -> int:
    """A well-mixed 63-bit seed from ``seed`` and integer keys (epoch, rank, stream)."""
    state = np.random.SeedSequence([int(seed), *[int(k) for k in keys]]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generator(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded from ``(seed, *keys)``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *keys))
    return gen


def seed_everything(seed: int, *keys: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators from ``(seed, *keys)``."""
    s = derive_seed(seed, *keys)
    random.seed(s)
    np.random.seed(s % (2**32))
    torch.manual_seed(s)


def deterministic_cpu() -> None:
    """Make CPU runs repeatable bit for bit (the same thread count gives the same sums)."""
    torch.use_deterministic_algorithms(True, warn_only=True)


def rng_state() -> dict:
    """Global RNG states as tensors and primitives (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _python_state_to_list(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(
        ("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    random.setstate(_python_state_from_list(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_list(state) -> list:
    version, internal, gauss = state
    return [int(version), list(internal), gauss]


def _python_state_from_list(state: list):
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
