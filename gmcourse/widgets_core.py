"""The pure part of the widgets: latent paths, completion masks, and pictures as PNG bytes.

Nothing here imports ipywidgets, so every function is tested directly, and a lecture may use
``lerp`` / ``slerp``, ``render_graph`` or ``graph_summary`` without a widget.

Shapes: B batch, Z latent dim, T points on a path, C H W image (C in 1, 3).
"""
from __future__ import annotations

import io

import networkx as nx
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from gmcourse.plot import make_grid

MODES = ("linear", "spherical")
GRAPH_STATISTICS = ("nodes", "edges", "mean_degree", "clustering", "components", "diameter")


def _latents(z0, z1) -> tuple[torch.Tensor, torch.Tensor]:
    z0, z1 = torch.as_tensor(z0), torch.as_tensor(z1)
    if z0.ndim not in (1, 2) or z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must both be (Z,) or (B, Z), got {tuple(z0.shape)} and {tuple(z1.shape)}")
    if not (z0.is_floating_point() and z1.is_floating_point()):
        raise ValueError(f"z0 and z1 must be floating point, got {z0.dtype} and {z1.dtype}")
    return z0, z1


def _weights(t, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """t as a float64 column that broadcasts against ``like``; and whether t was a scalar."""
    t = torch.as_tensor(t, dtype=torch.float64, device=like.device)
    if t.ndim > 1:
        raise ValueError(f"t must be a number or a (T,) vector, got shape {tuple(t.shape)}")
    scalar = t.ndim == 0
    return t.reshape(-1, *([1] * like.ndim)), scalar  # (T, 1) or (T, 1, 1)


def lerp(z0, z1, t) -> torch.Tensor:
    """Linear interpolation ``(1 - t) * z0 + t * z1``.

    z0, z1: (Z,) or (B, Z); t: a number (result shaped like z0) or a (T,) vector (result
    (T, Z) or (T, B, Z)). t outside [0, 1] extrapolates.
    """
    z0, z1 = _latents(z0, z1)
    w, scalar = _weights(t, z0)
    z = (1 - w) * z0.double() + w * z1.double()
    return (z[0] if scalar else z).to(z0.dtype)


def slerp(z0, z1, t, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation: walk the great circle from z0 to z1 at a constant angle rate.

    ``sin((1 - t) omega) / sin(omega) * z0 + sin(t omega) / sin(omega) * z1``, where omega is the
    angle between z0 and z1 (per row for (B, Z) inputs). For equal-norm inputs every point keeps
    that norm, which is why it suits Gaussian latents, whose mass lies near a sphere. Where
    sin(omega) < eps (parallel or opposite vectors, or a zero vector) the direction is undefined
    and it falls back to :func:`lerp`. Shapes as in :func:`lerp`.
    """
    z0, z1 = _latents(z0, z1)
    w, scalar = _weights(t, z0)
    a, b = z0.double(), z1.double()
    a_norm, b_norm = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)  # (1,) or (B, 1)
    a_hat, b_hat = a / a_norm.clamp_min(1e-300), b / b_norm.clamp_min(1e-300)
    # the angle as 2 atan2(|a^ - b^|, |a^ + b^|): accurate near 0 and pi, where arccos is not
    omega = 2 * torch.atan2((a_hat - b_hat).norm(dim=-1, keepdim=True), (a_hat + b_hat).norm(dim=-1, keepdim=True))
    sin = torch.sin(omega)
    degenerate = (sin < eps) | (a_norm == 0) | (b_norm == 0)
    safe_sin = torch.where(degenerate, torch.ones_like(sin), sin)
    z_sphere = (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / safe_sin
    z_line = (1 - w) * a + w * b
    z = torch.where(degenerate, z_line, z_sphere)  # (T, Z) or (T, B, Z)
    return (z[0] if scalar else z).to(z0.dtype)


def interpolate(z0, z1, n_steps: int, mode: str = "linear") -> torch.Tensor:
    """``n_steps`` evenly spaced points from z0 to z1, both ends included: (Z,) -> (T, Z)."""
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 2:
        raise ValueError(f"n_steps must be an int >= 2, got {n_steps!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    t = torch.linspace(0, 1, n_steps, dtype=torch.float64)
    return (lerp if mode == "linear" else slerp)(z0, z1, t)


def top_rows_mask(x, n_rows: int) -> torch.Tensor:
    """Mask shaped like images x (B, C, H, W): 1 on the top ``n_rows`` rows (observed), 0 below."""
    x = torch.as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"x must be images (B, C, H, W), got shape {tuple(x.shape)}")
    h = x.shape[2]
    if not isinstance(n_rows, int) or isinstance(n_rows, bool) or not 0 <= n_rows <= h:
        raise ValueError(f"n_rows must be an int in [0, {h}], got {n_rows!r}")
    mask = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    mask[:, :, :n_rows] = 1
    return mask  # (B, C, H, W)


def render_points(x, lim: float = 4.0, size_px: int = 240, title: str = "") -> np.ndarray:
    """Scatter 2D points (B, 2) on a fixed [-lim, lim]^2 frame, with an optional title (matplotlib
    mathtext, e.g. ``r"$x_t$"``), as an (H, W, 3) float picture."""
    x = torch.as_tensor(x).detach().cpu().float()
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"points must be (B, 2), got {tuple(x.shape)}")
    fig = Figure(figsize=(size_px / 80, size_px / 80), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.1, 0.1, 0.85, 0.8 if title else 0.85))  # room above for a title
    ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=3, alpha=0.6, color="C1")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=9)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(np.float32) / 255  # (H, W, 3)


def side_by_side(pictures, gap: int = 6) -> np.ndarray:
    """Pictures (H_i, W_i, C_i) in [0, 1], C_i in (1, 3), placed left to right with ``gap`` white
    columns between them, top-aligned (a shorter one is padded with white below). Grey (C = 1)
    pictures stay grey when all are grey, and become RGB next to an RGB one. Returns (H, W, C)."""
    pictures = [np.asarray(p, dtype=np.float32) for p in pictures]
    if not pictures or any(p.ndim != 3 or p.shape[-1] not in (1, 3) for p in pictures):
        raise ValueError(f"pictures must be a non-empty list of (H, W, C) arrays with C in (1, 3), "
                         f"got shapes {[p.shape for p in pictures]}")
    if not isinstance(gap, int) or isinstance(gap, bool) or gap < 0:
        raise ValueError(f"gap must be an int >= 0, got {gap!r}")
    c = max(p.shape[-1] for p in pictures)
    h = max(p.shape[0] for p in pictures)
    columns = []
    for i, p in enumerate(pictures):
        if i:
            columns.append(np.ones((h, gap, c), dtype=np.float32))
        p = np.broadcast_to(p, (*p.shape[:2], c))
        columns.append(np.concatenate([p, np.ones((h - p.shape[0], p.shape[1], c), dtype=np.float32)]))
    return np.concatenate(columns, axis=1)  # (H, sum W_i + gaps, C)


def grid_points(lim: float = 4.0, n: int = 100) -> torch.Tensor:
    """An n x n grid over [-lim, lim]^2 as points (n*n, 2), row-major from the top-left corner."""
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    axis = torch.linspace(-lim, lim, n)
    y, x = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    return torch.stack([x, y], dim=-1).reshape(-1, 2)  # (n*n, 2)


def render_density(log_p, points=None, lim: float = 4.0, title: str = "", size_px: int = 240) -> np.ndarray:
    """A 2D density exp(log_p) on the grid of :func:`grid_points` (log_p (n*n,) or (n, n)), with
    optional points (B, 2) on top and a title, as an (H, W, 3) float picture in [0, 1]."""
    log_p = torch.as_tensor(log_p).detach().cpu().double()
    if torch.isfinite(log_p.max()):  # an unnormalised log density (-E) must not overflow exp(); the colour
        log_p = log_p - log_p.max()  # scale is relative to the picture's own range, so the picture is the same
    n = int(round(log_p.numel() ** 0.5))
    if n * n != log_p.numel() or n < 2:
        raise ValueError(f"log_p must hold the n*n values of grid_points(lim, n), got shape {tuple(log_p.shape)}")
    fig = Figure(figsize=(size_px / 80, size_px / 80), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.1, 0.1, 0.85, 0.8))
    ax.imshow(log_p.reshape(n, n).exp().numpy(), extent=(-lim, lim, -lim, lim), cmap="viridis", origin="upper")
    if points is not None:
        points = torch.as_tensor(points).detach().cpu().float()
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"points must be (B, 2), got {tuple(points.shape)}")
        ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=2, alpha=0.5, color="white")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_title(title, fontsize=9)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(np.float32) / 255  # (H, W, 3)


def _check_graph(graph, name: str = "graph") -> nx.Graph:
    if not isinstance(graph, nx.Graph):
        raise ValueError(f"{name} must be a networkx graph (networkx.Graph), got {type(graph).__name__}")
    if graph.is_directed() or graph.is_multigraph():
        raise ValueError(f"{name} must be an undirected simple graph (networkx.Graph), got {type(graph).__name__}")
    return graph


def as_graphs(x) -> list[nx.Graph] | None:
    """``x`` as a list of graphs when it is a networkx graph or a non-empty list / tuple of them; None
    when it is something else (a tensor, an empty list). A list mixing graphs with other things raises."""
    if isinstance(x, nx.Graph):
        return [_check_graph(x)]
    if isinstance(x, (list, tuple)) and x and any(isinstance(g, nx.Graph) for g in x):
        return [_check_graph(g, f"graphs[{i}]") for i, g in enumerate(x)]
    return None


def graph_summary(graph) -> dict:
    """Statistics of an undirected graph, each a plain Python int or float, computed with networkx:
    ``nodes``, ``edges``, ``mean_degree`` (2 edges / nodes), ``clustering`` (the average clustering
    coefficient, ``nx.average_clustering``, 0 for nodes of degree < 2), ``components`` (connected
    components) and ``diameter`` (the longest shortest path inside the largest component; of equally
    large ones, the largest diameter, so that the node order does not matter). A graph without nodes
    has every statistic 0."""
    graph = _check_graph(graph)
    n, m = graph.number_of_nodes(), graph.number_of_edges()
    if n == 0:
        return {"nodes": 0, "edges": 0, "mean_degree": 0.0, "clustering": 0.0, "components": 0, "diameter": 0}
    components = list(nx.connected_components(graph))
    largest = max(len(c) for c in components)
    diameter = max(nx.diameter(graph.subgraph(c)) for c in components if len(c) == largest)
    return {"nodes": int(n), "edges": int(m), "mean_degree": 2 * m / n,
            "clustering": float(nx.average_clustering(graph)), "components": len(components),
            "diameter": int(diameter)}


def render_graph(graph, title: str = "", size_px: int = 240, layout_seed: int = 0) -> np.ndarray:
    """Draw an undirected networkx graph, nodes and edges, on a square ``size_px`` picture with an
    optional title, as an (H, W, 3) float picture in [0, 1]. The layout is networkx's spring layout
    from ``layout_seed``, so the same graph (with its nodes in the same order) is always drawn the
    same way; the layout fills [-1, 1]^2 and the frame is fixed around it."""
    graph = _check_graph(graph)
    if not isinstance(size_px, int) or isinstance(size_px, bool) or size_px < 32:
        raise ValueError(f"size_px must be an int >= 32, got {size_px!r}")
    pos = nx.spring_layout(graph, seed=layout_seed)  # {node: (2,) in [-1, 1]}
    fig = Figure(figsize=(size_px / 80, size_px / 80), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.86 if title else 0.96))  # room above for a title
    nx.draw_networkx_edges(graph, pos, ax=ax, width=1.0, edge_color="0.55")
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=(size_px / 40) ** 2, node_color="C0",
                           edgecolors="white", linewidths=0.5)
    ax.set_xlim(-1.12, 1.12)
    ax.set_ylim(-1.12, 1.12)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(np.float32) / 255  # (H, W, 3)


def render_graphs(graphs, ncol: int = 4, titles=None, size_px: int = 200, layout_seed: int = 0,
                  gap: int = 6) -> np.ndarray:
    """Several graphs, each drawn by :func:`render_graph` (``titles``: one str per graph, or None),
    tiled ``ncol`` to a row, ``gap`` white pixels apart; a short last row is padded with white on the
    right. One graph, or a list of one, gives :func:`render_graph`'s picture. Returns (H, W, 3)."""
    graphs = as_graphs(graphs)
    if graphs is None:
        raise ValueError("graphs must be a networkx graph or a non-empty list of networkx graphs")
    if not isinstance(ncol, int) or isinstance(ncol, bool) or ncol < 1:
        raise ValueError(f"ncol must be an int >= 1, got {ncol!r}")
    titles = [""] * len(graphs) if titles is None else list(titles)
    if len(titles) != len(graphs) or not all(isinstance(t, str) for t in titles):
        raise ValueError(f"titles must be one str per graph ({len(graphs)}), got {titles!r}")
    pictures = [render_graph(g, title=t, size_px=size_px, layout_seed=layout_seed) for g, t in zip(graphs, titles)]
    rows = [side_by_side(pictures[i:i + ncol], gap=gap) for i in range(0, len(pictures), ncol)]
    # the rows one above the other: side_by_side of the transposed rows, top-aligned there, is
    # left-aligned here
    return side_by_side([r.transpose(1, 0, 2) for r in rows], gap=gap).transpose(1, 0, 2)  # (H, W, 3)


def render(x, nrow: int = 8, lim: float = 4.0) -> np.ndarray:
    """What a widget shows for a model output: images (B, C, H, W) or (B, H, W) in [0, 1] tiled by
    :func:`gmcourse.plot.make_grid`, 2D points (B, 2) as a scatter, or a networkx graph or a list of
    graphs, drawn by :func:`render_graphs` (``nrow`` of them to a row). Returns (H, W, C) in [0, 1]."""
    graphs = as_graphs(x)
    if graphs is not None:
        return render_graphs(graphs, ncol=nrow)
    x = torch.as_tensor(x)
    if x.ndim == 2:
        return render_points(x, lim=lim)
    if x.ndim in (3, 4):
        return make_grid(x, nrow=nrow)
    raise ValueError(f"expected images (B, C, H, W) / (B, H, W), points (B, 2) or networkx graphs, "
                     f"got shape {tuple(x.shape)}")


def to_png(image, scale: int = 1) -> bytes:
    """PNG bytes of an (H, W), (H, W, 1) or (H, W, 3) picture in [0, 1], enlarged ``scale`` times
    with square pixels (small images stay sharp in the browser)."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3), got {a.shape}")
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")
    if not np.isfinite(a).all() or a.min() < -1e-3 or a.max() > 1 + 1e-3:
        raise ValueError(f"image must lie in [0, 1], got range [{np.nanmin(a):.3g}, {np.nanmax(a):.3g}]")
    a = np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(np.round(a.clip(0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
