"""Pixel transforms between 8-bit images and the spaces models work in.

Shapes: every transform is elementwise, so any shape works; images are usually (B, C, H, W).

==========================  ===============  ==========================================
transform                   input            output
==========================  ===============  ==========================================
``to_unit``                 uint8 0..255     float32 in [0, 1]
``binarize_static``         uint8 or [0, 1]  float32 in {0, 1}, fixed threshold
``binarize_dynamic``        uint8 or [0, 1]  float32 in {0, 1}, x ~ Bernoulli(x / 255)
``dequantize``              uint8 0..255     float32 in [0, 1): (x + u) / 256, u ~ U[0, 1)
``to_symmetric``            uint8 0..255     float32 in [-1, 1]
``from_symmetric``          float [-1, 1]    uint8 0..255 (values outside are clipped)
==========================  ===============  ==========================================

Uniform dequantisation (Theis et al., 2016) turns discrete pixels into a continuous variable
whose density a flow or VAE can model. If ``y = (x + u) / 256`` has density ``p(y)`` on
[0, 1)^D, the discrete model ``P(x) = int p((x + u) / 256) / 256^D du`` satisfies
``log P(x) >= E_u[log p(y)] - D log 256``: the correction is **log(256) per dimension**.
Bits per dimension are computed from it in :mod:`gmcourse.metrics`, not here.
"""
from __future__ import annotations

import torch

__all__ = [
    "to_unit",
    "binarize_static",
    "binarize_dynamic",
    "dequantize",
    "to_symmetric",
    "from_symmetric",
]


def _check_uint8(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} expects a torch.Tensor of dtype uint8, got {type(x).__name__}")
    if x.dtype != torch.uint8:
        raise ValueError(f"{name} expects a tensor of dtype torch.uint8 (0..255), got {x.dtype}")


def _check_float_range(x: torch.Tensor, name: str, low: float, high: float) -> None:
    if not x.is_floating_point():
        raise ValueError(f"{name} expects a floating tensor in [{low}, {high}], got {x.dtype}")
    if x.numel() == 0:
        return
    lo, hi = x.min().item(), x.max().item()
    if not (low <= lo and hi <= high):  # also catches NaN
        raise ValueError(f"{name} expects values in [{low}, {high}], got range [{lo}, {hi}]")


def _as_unit(x: torch.Tensor, name: str) -> torch.Tensor:
    """uint8 -> x / 255; a floating tensor must already lie in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"{name} expects a torch.Tensor (uint8 or float in [0, 1]), got {type(x).__name__}"
        )
    if x.dtype == torch.uint8:
        return x.float() / 255
    _check_float_range(x, name, 0.0, 1.0)
    return x


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0..255 -> float32 x / 255 in [0, 1]."""
    _check_uint8(x, "to_unit")
    return x.float() / 255


def binarize_static(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Deterministic binarisation: 1.0 where x / 255 > ``threshold``, else 0.0 (float32)."""
    if not (isinstance(threshold, (int, float)) and 0.0 <= threshold < 1.0):
        raise ValueError(f"threshold must be a number in [0, 1), got {threshold!r}")
    p = _as_unit(x, "binarize_static")
    return (p > threshold).float()


def binarize_dynamic(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic binarisation: a fresh sample x_bin ~ Bernoulli(x / 255) on every call.

    Call it per batch, so that the model sees a new binarisation each epoch.
    """
    p = _as_unit(x, "binarize_dynamic")
    return torch.bernoulli(p.float(), generator=generator)


def dequantize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantisation: y = (x + u) / 256, u ~ U[0, 1), a float32 in [0, 1).

    ``floor(256 * y) == x`` always holds. The log-likelihood of the discrete data is bounded
    by that of y minus log(256) per dimension (see the module docstring).
    """
    _check_uint8(x, "dequantize")
    x_float = x.float()
    u = torch.rand(x.shape, generator=generator, device=x.device)
    # float32 may round x + u up to x + 1 when u is within half an ulp of 1; keep it below
    z = torch.minimum(x_float + u, torch.nextafter(x_float + 1, x_float))
    return z / 256  # dividing by a power of two is exact


def to_symmetric(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0..255 -> float32 x / 127.5 - 1 in [-1, 1] (the DDPM convention)."""
    _check_uint8(x, "to_symmetric")
    return x.float() / 127.5 - 1


def from_symmetric(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_symmetric`: float in [-1, 1] -> uint8 0..255, rounded.

    Model samples often overshoot [-1, 1] a little, so finite values outside are clipped;
    NaN or infinite values raise ``ValueError``.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"from_symmetric expects a floating tensor in [-1, 1], got {got}")
    if not torch.isfinite(x).all():
        raise ValueError("from_symmetric expects finite values, got NaN or inf")
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
