"""Small graph data sets for lecture 07, made with ``networkx`` from a seed.

Every data set is a list of connected, undirected, simple ``networkx.Graph`` objects whose nodes
are labelled ``0 .. n-1``. The graphs are generated, not downloaded: the same seed gives the same
graphs on every machine (the generators only use ``networkx`` and NumPy's ``default_rng``).

- ``community``: two communities of 6-10 nodes each, every pair inside a community joined with
  probability ``p_in`` (0.7), every pair across with probability ``p_out`` (0.05) and at least one
  edge across (the "community-small" set of GraphRNN, You et al. 2018), 12-20 nodes.
- ``grid``: 2D grids of r x c nodes, 3 <= r, c <= 5, relabelled in a random order, 9-25 nodes.
- ``lobster``: random lobsters (a path with legs of length at most two), 10-20 nodes.

:func:`load_graphs` gives the course's one train / validation / test split of each
(``GRAPH_SPLITS``: 400 / 100 / 100 graphs, disjoint draws of one seeded stream);
:func:`to_adjacency` and :func:`to_graphs` turn lists of graphs into zero-padded adjacency
tensors (B, N, N) and back.
"""
from __future__ import annotations

import networkx as nx
import numpy as np
import torch

GRAPH_SPLITS = {"train": 400, "val": 100, "test": 100}
GRAPH_DATASETS = ("community", "grid", "lobster")
SEED = 7  # the course's graph data seed; each split continues the one stream


def _check_count(n) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n_graphs must be an int >= 1, got {n!r}")
    return int(n)


def _relabel(graph: nx.Graph, rng: np.random.Generator) -> nx.Graph:
    """The same graph with its nodes renamed 0..n-1 in a random order (no ordering is handed over)."""
    nodes = list(graph.nodes)
    order = rng.permutation(len(nodes))
    return nx.relabel_nodes(graph, {node: int(order[i]) for i, node in enumerate(nodes)})


def _canonical(graph: nx.Graph) -> nx.Graph:
    """A plain Graph whose nodes are inserted in the order 0..n-1 (so list(G) == range(n))."""
    out = nx.Graph()
    out.add_nodes_from(range(graph.number_of_nodes()))
    out.add_edges_from(graph.edges)
    return out


def community_graph(rng: np.random.Generator, sizes=(6, 10), p_in: float = 0.7, p_out: float = 0.05) -> nx.Graph:
    """One two-community graph: community sizes uniform in ``sizes`` (inclusive), edges inside a
    community with probability ``p_in``, across with ``p_out``, at least one across; connected."""
    while True:
        n1, n2 = (int(s) for s in rng.integers(sizes[0], sizes[1] + 1, size=2))
        n = n1 + n2
        block = np.zeros((n, n), dtype=bool)
        block[:n1, :n1] = block[n1:, n1:] = True
        u = rng.random((n, n))
        a = np.where(block, u < p_in, u < p_out)
        a = np.triu(a, 1)
        if not a[:n1, n1:].any():  # at least one edge across
            a[rng.integers(n1), n1 + rng.integers(n2)] = True
        graph = nx.from_numpy_array((a | a.T).astype(np.int64))
        if nx.is_connected(graph):
            return _canonical(_relabel(graph, rng))


def grid_graph(rng: np.random.Generator, sizes=(3, 5)) -> nx.Graph:
    """One r x c grid, r and c uniform in ``sizes`` (inclusive), nodes in a random order."""
    r, c = (int(s) for s in rng.integers(sizes[0], sizes[1] + 1, size=2))
    graph = nx.convert_node_labels_to_integers(nx.grid_2d_graph(r, c))
    return _canonical(_relabel(graph, rng))


def lobster_graph(rng: np.random.Generator, nodes=(10, 20), p1: float = 0.7, p2: float = 0.7) -> nx.Graph:
    """One random lobster with a number of nodes in ``nodes`` (inclusive), nodes in a random order."""
    while True:
        graph = nx.random_lobster_graph(6, p1, p2, seed=int(rng.integers(2**31)))
        if nodes[0] <= graph.number_of_nodes() <= nodes[1]:
            return _canonical(_relabel(nx.convert_node_labels_to_integers(graph), rng))


_MAKERS = {"community": community_graph, "grid": grid_graph, "lobster": lobster_graph}


def make_graphs(name: str, n_graphs: int, seed: int = SEED, **options) -> list[nx.Graph]:
    """``n_graphs`` graphs of data set ``name`` (one of ``GRAPH_DATASETS``) from ``seed``; ``options``
    go to the one-graph maker (e.g. ``sizes=(30, 80)`` for larger communities)."""
    if name not in _MAKERS:
        raise ValueError(f"name must be one of {GRAPH_DATASETS}, got {name!r}")
    n_graphs = _check_count(n_graphs)
    rng = np.random.default_rng(seed)
    return [_MAKERS[name](rng, **options) for _ in range(n_graphs)]


def to_adjacency(graphs, n_max: int) -> torch.Tensor:
    """Graphs with nodes 0..n-1 (n <= n_max) as zero-padded adjacency matrices (B, n_max, n_max),
    float32, symmetric, zero diagonal. Row i is node i; the padding rows and columns are zero."""
    graphs = list(graphs)
    if not isinstance(n_max, int) or isinstance(n_max, bool) or n_max < 1:
        raise ValueError(f"n_max must be an int >= 1, got {n_max!r}")
    out = torch.zeros(len(graphs), n_max, n_max)
    for b, graph in enumerate(graphs):
        n = graph.number_of_nodes()
        if n > n_max or set(graph.nodes) != set(range(n)):
            raise ValueError(f"graph {b} must have nodes 0..n-1 with n <= n_max = {n_max}, "
                             f"got {n} nodes labelled {sorted(graph.nodes)[:5]}...")
        if nx.number_of_selfloops(graph):
            raise ValueError(f"graph {b} has self-loops; expected a simple graph")
        for u, v in graph.edges:
            out[b, u, v] = out[b, v, u] = 1
    return out  # (B, n_max, n_max)


def to_graphs(adjacency) -> list[nx.Graph]:
    """Adjacency matrices (B, N, N) (or one (N, N)) back to graphs. A matrix's graph has the nodes
    0..k-1, where k - 1 is the last node with an edge: trailing rows without edges are padding.
    (A graph with no edge at all is one node.) Raises unless symmetric with entries in {0, 1}."""
    a = torch.as_tensor(adjacency).detach().cpu()
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError(f"adjacency must be (B, N, N) or (N, N), got shape {tuple(a.shape)}")
    if not torch.equal(a, a.transpose(1, 2)) or not ((a == 0) | (a == 1)).all():
        raise ValueError("adjacency must be symmetric with entries in {0, 1}")
    graphs = []
    for matrix in a.numpy().astype(np.int64):
        np.fill_diagonal(matrix, 0)
        has_edge = np.flatnonzero(matrix.any(axis=1))
        k = int(has_edge[-1]) + 1 if len(has_edge) else 1
        graphs.append(_canonical(nx.from_numpy_array(matrix[:k, :k])))
    return graphs


def load_graphs(name: str, split: str) -> list[nx.Graph]:
    """The course's split of graph data set ``name``: "train" (400), "val" (100) or "test" (100)
    graphs, disjoint parts of one seeded draw, the same on every machine and in both modes."""
    if split not in GRAPH_SPLITS:
        raise ValueError(f"split must be one of {tuple(GRAPH_SPLITS)}, got {split!r}")
    graphs = make_graphs(name, sum(GRAPH_SPLITS.values()))
    start = 0
    for key, size in GRAPH_SPLITS.items():
        if key == split:
            return graphs[start:start + size]
        start += size
    raise AssertionError("unreachable")
