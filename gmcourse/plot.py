"""Figures for the course. Every function returns ``(fig, ax)`` and saves nothing unless asked.

Shapes: B batch, C channels, H height, W width. Images are (B, C, H, W) or (B, H, W), either
uint8 in [0, 255] or float in [0, 1] (use ``gmcourse.data.from_symmetric`` for [-1, 1] data).
"""
from __future__ import annotations

from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def _axes(ax, figsize=(4, 4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _save(fig, save_as):
    if save_as is not None:
        fig.savefig(save_as, bbox_inches="tight", dpi=100)


def make_grid(x, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """Tile images (B, C, H, W) or (B, H, W) into one (rows*H', nrow*W', C) float array in [0, 1]."""
    x = torch.as_tensor(x).detach().cpu()
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3) or len(x) == 0:
        raise ValueError(f"images must be (B, C, H, W) with C in (1, 3) or (B, H, W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255
    else:
        x = x.float()
        if x.min() < -1e-3 or x.max() > 1 + 1e-3:
            raise ValueError(f"float images must lie in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")
        x = x.clamp(0, 1)
    b, c, h, w = x.shape
    ncol = min(nrow, b)
    nrows = -(-b // ncol)
    grid = torch.ones(c, nrows * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(b):
        r, q = divmod(i, ncol)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    return grid.permute(1, 2, 0).numpy()


def image_grid(x, nrow: int = 8, title: str | None = None, ax=None, save_as=None):
    """Show a batch of images as a grid."""
    grid = make_grid(x, nrow)
    fig, ax = _axes(ax, figsize=(0.5 * min(nrow, len(x)) + 1, 0.5 * (-(-len(x) // nrow)) + 1))
    ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    _save(fig, save_as)
    return fig, ax


def _points(x) -> np.ndarray:
    x = torch.as_tensor(x).detach().cpu()
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"points must be (B, 2), got {tuple(x.shape)}")
    return x.numpy()


def scatter_2d(x, label: str | None = None, lim: float = 4.0, ax=None, save_as=None, **kwargs):
    """Scatter plot of 2D points (B, 2) on a square [-lim, lim]^2 frame."""
    fig, ax = _axes(ax)
    p = _points(x)
    ax.scatter(p[:, 0], p[:, 1], s=kwargs.pop("s", 2), alpha=kwargs.pop("alpha", 0.5), label=label, **kwargs)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    if label:
        ax.legend(loc="upper right", markerscale=4)
    _save(fig, save_as)
    return fig, ax


def _grid_log_prob(log_prob: Callable, lim: float, n: int):
    xs = torch.linspace(-lim, lim, n)
    xx, yy = torch.meshgrid(xs, xs, indexing="xy")
    pts = torch.stack([xx.flatten(), yy.flatten()], dim=1)  # (n*n, 2)
    with torch.no_grad():
        lp = torch.as_tensor(log_prob(pts)).detach().cpu().float()
    if lp.shape != (n * n,):
        raise ValueError(f"log_prob must map (B, 2) to (B,), got output shape {tuple(lp.shape)}")
    return xx.numpy(), yy.numpy(), lp.reshape(n, n).numpy()


def density_2d(log_prob: Callable, lim: float = 4.0, n: int = 200, title: str | None = None, ax=None, save_as=None):
    """Show exp(log_prob) on a [-lim, lim]^2 grid; ``log_prob`` maps (B, 2) to (B,)."""
    fig, ax = _axes(ax)
    _, _, lp = _grid_log_prob(log_prob, lim, n)
    ax.imshow(np.exp(lp), origin="lower", extent=(-lim, lim, -lim, lim), cmap="viridis")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    _save(fig, save_as)
    return fig, ax


def contour_2d(log_probs: dict[str, Callable], lim: float = 4.0, n: int = 150, levels: int = 6, ax=None, save_as=None):
    """Contours of several densities on the same axes, e.g. {"model": ..., "true": ...}."""
    fig, ax = _axes(ax)
    for i, (name, log_prob) in enumerate(log_probs.items()):
        xx, yy, lp = _grid_log_prob(log_prob, lim, n)
        p = np.exp(lp)
        ax.contour(xx, yy, p, levels=np.linspace(p.max() / (levels + 1), p.max(), levels), colors=f"C{i}")
        ax.plot([], [], color=f"C{i}", label=name)
    ax.set_aspect("equal")
    ax.legend(loc="upper right")
    _save(fig, save_as)
    return fig, ax


_CURVE_LABELS = {"train_loss": "train", "val_loss": "validation"}
_NOT_METRICS = ("epoch", "seconds", "steps", "stopped_by")


def loss_curves(history, ylabel: str = "loss (nats)", title: str | None = None, ax=None, save_as=None,
                metrics: Sequence[str] | None = None):
    """Named metrics per epoch from a :class:`gmcourse.train.History` (or a dict of lists).

    metrics: which to draw (default: every metric the history holds, e.g. ``train_loss`` and
    ``val_loss``, or ``d_loss`` and ``g_loss``); ``train_loss``/``val_loss`` are labelled
    "train"/"validation".
    """
    h = history if isinstance(history, dict) else history.as_dict()
    names = list(metrics) if metrics is not None else [k for k in h if k not in _NOT_METRICS and h[k]]
    missing = [name for name in names if name not in h]
    if missing or not names:
        known = [k for k in h if k not in _NOT_METRICS]
        raise ValueError(f"expected metrics the history holds ({known}), got {missing or names}")
    fig, ax = _axes(ax, figsize=(5, 3.5))
    for name in names:
        if h[name]:
            ax.plot(h["epoch"], h[name], label=_CURVE_LABELS.get(name, name))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend()
    if title:
        ax.set_title(title)
    _save(fig, save_as)
    return fig, ax


def data_vs_samples(x_data, x_model, lim: float = 4.0, titles: Sequence[str] = ("data", "samples"), save_as=None):
    """Data and model samples side by side, on the same frame (2D points)."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
    scatter_2d(x_data, lim=lim, ax=axes[0], color="C0")
    scatter_2d(x_model, lim=lim, ax=axes[1], color="C1")
    for ax, t in zip(axes, titles):
        ax.set_title(t)
    _save(fig, save_as)
    return fig, axes
