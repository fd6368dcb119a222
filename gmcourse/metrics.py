"""Likelihood units: nats, bits per dimension, and the dequantisation correction.

D is the number of dimensions of one example (784 for MNIST, 3072 for CIFAR-10).

A negative log-likelihood in nats over D dimensions is, in bits per dimension,

    bpd = nll / (D * ln 2)                                            (1)

A *continuous* density p fitted to 8-bit data dequantised as y = (k + u) * bin_width,
u ~ U[0, 1)^D (bin_width = 1/256 for data scaled to [0, 1], 2/256 for [-1, 1]), bounds the
discrete likelihood of the integers k (Theis et al., 2016):

    -log P(k) <= E_u[-log p(y)] - D * log(bin_width)                  (2)

so the continuous NLL must be corrected by -D * log(bin_width) = +D * log 256 (for [0, 1])
before it is compared with a discrete model such as PixelCNN.

Sample-quality scores, which compare every family (GANs and flows alike), live in
:mod:`gmcourse.quality` and are re-exported here: ``frechet_distance``, ``precision_recall``,
``confident_share``, ``sample_quality`` (see docs/sample_quality.md).
"""
from __future__ import annotations

import math

import torch

from gmcourse.quality import (  # noqa: F401  (re-exported: one name per quantity)
    SampleQuality,
    confident_share,
    frechet_distance,
    precision_recall,
    sample_quality,
)

LN2 = math.log(2.0)


def _check_dims(n_dims) -> int:
    if isinstance(n_dims, bool) or not isinstance(n_dims, int) or n_dims < 1:
        raise ValueError(f"n_dims must be a positive int (e.g. 784 for MNIST), got {n_dims!r}")
    return n_dims


def dequantization_correction(n_dims: int, bin_width: float = 1 / 256) -> float:
    """Nats to add to a continuous NLL of dequantised data to bound the discrete NLL, eq. (2)."""
    if not 0 < bin_width:
        raise ValueError(f"bin_width must be positive (1/256 for data in [0, 1]), got {bin_width!r}")
    return -_check_dims(n_dims) * math.log(bin_width)  # eq. (2)


def bits_per_dim(nll_nats, n_dims: int, bin_width: float | None = None):
    """Convert an NLL in nats per example to bits per dimension, eq. (1).

    nll_nats: float or tensor of per-example NLLs. With ``bin_width`` (continuous model of
    dequantised 8-bit data) the correction of eq. (2) is added first.
    """
    n_dims = _check_dims(n_dims)
    if bin_width is not None:
        nll_nats = nll_nats + dequantization_correction(n_dims, bin_width)
    return nll_nats / (n_dims * LN2)  # eq. (1)


def nats(bpd, n_dims: int):
    """Convert bits per dimension back to nats per example (inverse of eq. (1), no correction)."""
    return bpd * _check_dims(n_dims) * LN2


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-example NLL in nats of binary ``x`` under independent Bernoulli(sigmoid(logits)).

    logits, x: (B, ...) with the same shape; x in {0, 1}. Returns (B,).
    """
    if logits.shape != x.shape:
        raise ValueError(f"logits and x must have the same shape, got {tuple(logits.shape)} and {tuple(x.shape)}")
    if x.ndim < 2:
        raise ValueError(f"x must be batched (B, ...), got shape {tuple(x.shape)}")
    nll = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return nll.flatten(1).sum(1)
