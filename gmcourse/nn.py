"""Masked layers for autoregressive networks: MADE masks, ``MaskedLinear``, ``MaskedConv2d``.

Shapes: B batch, D data dim, H_k hidden units of layer k, C channels, H W image height/width.

An autoregressive network computes, for every dimension d, an output that may depend only on
the inputs that come *before* d in an ordering. MADE (Germain et al., 2015) gets this in one
pass by giving every unit a degree m and zeroing weights with masks:

    hidden layer:  M[k, j] = 1  if  m_k >= m_j                            (1)
    output layer:  M[d, k] = 1  if  m_d >  m_k                            (2)

where the inputs' degrees are their positions in the ordering (1..D). Masked convolutions
(PixelCNN, van den Oord et al., 2016) do the same for images in raster order: type A hides
the centre pixel (first layer), type B keeps it (later layers).

Used by the autoregressive lecture and by the flows that need an autoregressive network (MAF/IAF).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["made_degrees", "made_masks", "MaskedLinear", "MADE", "conv_mask", "MaskedConv2d"]


def _check_order(order) -> torch.Tensor:
    order = torch.as_tensor(order)
    d = order.numel()
    if order.ndim != 1 or d == 0:
        raise ValueError(f"order must be a non-empty 1D permutation of 1..D, got shape {tuple(order.shape)}")
    if not torch.equal(torch.sort(order.long()).values, torch.arange(1, d + 1)):
        raise ValueError(f"order must be a permutation of 1..{d} (the position of each input), got {order.tolist()}")
    return order.long()


def made_degrees(order, hidden_sizes: Sequence[int], generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Degrees of the inputs and of every hidden layer.

    order: (D,) permutation of 1..D, ``order[j]`` is the position of input j in the ordering.
    Hidden degrees are drawn uniformly from 1..D-1, so each unit sees at least one input and
    is useful to at least one output. Returns ``[order, m_1, ..., m_K]`` with m_k of shape (H_k,).
    """
    order = _check_order(order)
    d = order.numel()
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden_sizes):
        raise ValueError(f"hidden_sizes must be positive ints, got {list(hidden_sizes)}")
    low = 1 if d > 1 else 0  # with D = 1 no unit can be useful; degree 0 sees nothing
    degrees = [order]
    for h in hidden_sizes:
        degrees.append(torch.randint(low, max(d, low + 1), (h,), generator=generator))
    return degrees


def made_masks(degrees: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Masks from degrees ``[order, m_1, ..., m_K]``: K hidden masks, eq. (1), then the output mask, eq. (2).

    Mask k has shape (out, in) like ``nn.Linear.weight``; the output mask is (D, H_K).
    """
    if len(degrees) < 1:
        raise ValueError("degrees must start with the input order")
    order = _check_order(degrees[0])
    masks = []
    for m_in, m_out in zip(degrees[:-1], degrees[1:]):
        masks.append((m_out[:, None] >= m_in[None, :]).float())  # eq. (1)
    masks.append((order[:, None] > degrees[-1][None, :]).float())  # eq. (2)
    return masks


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 mask of shape (out, in)."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        if mask.shape != (out_features, in_features):
            raise ValueError(f"mask must be ({out_features}, {in_features}), got {tuple(mask.shape)}")
        self.register_buffer("mask", mask.float().clone())

    def set_mask(self, mask: torch.Tensor) -> None:
        if mask.shape != self.mask.shape:
            raise ValueError(f"mask must be {tuple(self.mask.shape)}, got {tuple(mask.shape)}")
        self.mask.copy_(mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder: (B, D) -> (B, n_params, D) outputs, column d depending only on inputs before d.

    n_params outputs per dimension (1 for Bernoulli logits, 2 for a Gaussian's mu and log_std).
    ``order`` defaults to the natural order 1..D; ``seed`` fixes the hidden degrees.
    """

    def __init__(self, d: int, hidden_sizes: Sequence[int], n_params: int = 1, order=None, seed: int = 0):
        super().__init__()
        self.d, self.n_params, self.hidden_sizes = d, n_params, list(hidden_sizes)
        order = torch.arange(1, d + 1) if order is None else order
        masks = made_masks(made_degrees(order, hidden_sizes, torch.Generator().manual_seed(seed)))
        sizes = [d, *hidden_sizes]
        self.hidden = nn.ModuleList(MaskedLinear(a, b, m) for a, b, m in zip(sizes[:-1], sizes[1:], masks[:-1]))
        self.out = MaskedLinear(sizes[-1], d * n_params, masks[-1].repeat(n_params, 1))
        self.register_buffer("order", _check_order(order).clone())

    def set_order(self, order, generator: torch.Generator | None = None) -> None:
        """New ordering and new hidden degrees (order-agnostic training, ensembles of orderings)."""
        masks = made_masks(made_degrees(order, self.hidden_sizes, generator))
        for layer, mask in zip(self.hidden, masks[:-1]):
            layer.set_mask(mask)
        self.out.set_mask(masks[-1].repeat(self.n_params, 1))
        self.order.copy_(_check_order(order))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"x must be (B, {self.d}), got {tuple(x.shape)}")
        h = x
        for layer in self.hidden:
            h = torch.relu(layer(h))  # (B, H_k)
        return self.out(h).view(len(x), self.n_params, self.d)  # (B, n_params, D)


def conv_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """(k, k) 0/1 mask of a PixelCNN convolution in raster order (rows top to bottom, left to right).

    Keeps the rows above the centre and the pixels left of the centre; type "B" also keeps the
    centre, type "A" does not. ``kernel_size`` must be odd.
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    c = kernel_size // 2
    mask = torch.zeros(kernel_size, kernel_size)
    mask[:c, :] = 1
    mask[c, :c] = 1
    if mask_type == "B":
        mask[c, c] = 1
    return mask


class MaskedConv2d(nn.Conv2d):
    """Same-size 2D convolution with a masked kernel: (B, C_in, H, W) -> (B, C_out, H, W).

    Either ``mask_type`` "A" or "B" with an odd ``kernel_size`` (the PixelCNN masks of
    :func:`conv_mask`, one colour channel in raster order), or any 0/1 ``mask`` of odd shape
    (kh, kw), e.g. the vertical and horizontal stacks of the gated PixelCNN. ``dilation`` spreads
    the kernel's taps ``dilation`` pixels apart (the mask still says which taps exist), so a stack
    of layers sees further up and to the side at the same cost.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | None = None,
                 mask_type: str | None = None, mask: torch.Tensor | None = None, bias: bool = True,
                 dilation: int = 1):
        if (mask is None) == (mask_type is None):
            raise ValueError("give either mask_type ('A' or 'B') with kernel_size, or a mask, not both")
        if mask is None:
            mask = conv_mask(kernel_size, mask_type)
        mask = torch.as_tensor(mask, dtype=torch.float32)
        if mask.ndim != 2 or mask.shape[0] % 2 == 0 or mask.shape[1] % 2 == 0:
            raise ValueError(f"mask must be (kh, kw) with odd kh and kw, got {tuple(mask.shape)}")
        if not isinstance(dilation, int) or dilation < 1:
            raise ValueError(f"dilation must be an int >= 1, got {dilation!r}")
        kh, kw = mask.shape
        super().__init__(in_channels, out_channels, (kh, kw), padding=(dilation * (kh // 2), dilation * (kw // 2)),
                         dilation=dilation, bias=bias)
        self.mask_type = mask_type
        self.register_buffer("mask", mask[None, None].clone())  # (1, 1, kh, kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)
