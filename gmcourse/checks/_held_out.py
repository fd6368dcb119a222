"""Held-out digits for the checks that grade a trained model (exercises 01 and 02).

The checks evaluate an exported model on MNIST test digits that the exercise notebooks never
load, binarised once with a seed of the check's inputs; this runs in the grader's process (and
in the student's kernel for ``check(...)``), never in the notebook's own code.
"""
from __future__ import annotations

import functools

import numpy as np
import torch


@functools.lru_cache(maxsize=2)
def held_out_digits(start: int, stop: int, seed: int) -> np.ndarray:
    """(N, 784) float64 test digits start..stop-1, flattened and binarised once with ``seed``."""
    from gmcourse.data import binarize_dynamic, load_mnist
    x, _ = load_mnist("test")
    return binarize_dynamic(x[start:stop], torch.Generator().manual_seed(seed)).flatten(1).double().numpy()
