"""Device, randomness and the smoke/full mode switch.

``GMCOURSE_SMOKE=1`` in the environment shrinks data sizes and budgets so that every notebook
runs in seconds under the tests. It only changes *numbers* (through :func:`smoke_or_full`);
the code path that runs is the same in both modes.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def _smoke_from_env() -> bool:
    value = os.environ.get("GMCOURSE_SMOKE", "0").strip().lower()
    if value not in {"", "0", "1", "false", "true", "no", "yes"}:
        raise ValueError(f"GMCOURSE_SMOKE must be 0 or 1, got {value!r}")
    return value in {"1", "true", "yes"}


SMOKE: bool = _smoke_from_env()


def smoke_or_full(full, smoke):
    """Return ``smoke`` in smoke mode and ``full`` otherwise (data sizes, epochs, budgets)."""
    return smoke if SMOKE else full


def get_device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and CUDA)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
