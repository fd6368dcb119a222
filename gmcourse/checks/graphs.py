"""Public checks for exercises/07_graphs: a breadth-first ordering from a given node with a stated
tie-break, GraphRNN's bandwidth-limited adjacency sequence and its inverse, the edge-wise negative
log-likelihood of a padded batch of sequences (structural mask and end-of-sequence row), the
unbiased MMD^2 with a Gaussian kernel on the earth mover's distance between 1D histograms, and a
GraphRNN-S style model trained on grids within a budget, graded by its held-out sequence NLL.

Shapes: G graphs, N padded node count, n a graph's own node count, M the band (entries a row),
L rows of a padded sequence, B sequences in a batch, K histogram bins, R repeats.

Every property is tested on the raw values the probes return, against something computed here:
the order's own parents and distances (which together fix a BFS order once the tie-break is
stated), round trips in both directions, the edge count, the band an order needs, hand-checked
sequences of tiny graphs, the sum of your probabilities over every sequence of a tiny case (which
must be 1), logits that cannot matter, central differences of your NLL, point masses whose
distance is known, mass moved by a known amount, averages over many draws from one law, and the
NLL of held-out grids. Reading this file does not give the answers away: no check holds a BFS, the
encoding, the masked NLL, the distance or the estimator (the hidden checks do).
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import math
import time

import networkx as nx
import numpy as np
import torch

from gmcourse.data.graphs import load_graphs, make_graphs, to_adjacency
from gmcourse.grading.expect import expect_close, expect_finite, expect_less, expect_shape
from gmcourse.grading.question import Check, CheckFailed, Question, as_array, student_function

F64 = torch.float64
N_PAD = 25                          # q1/q2 graphs padded to this many nodes in the inputs


def _graph(adjacency: np.ndarray, n: int) -> nx.Graph:
    """The graph on nodes 0..n-1 of a padded adjacency matrix."""
    graph = nx.from_numpy_array(np.asarray(adjacency)[:n, :n].astype(np.int64))
    graph.add_nodes_from(range(n))
    return graph


def _tensor(adjacency: np.ndarray, n: int) -> torch.Tensor:
    """What your functions get: the (n, n) float32 0/1 adjacency of one graph, no padding."""
    return torch.tensor(np.asarray(adjacency)[:n, :n], dtype=torch.float32)


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def _small_graphs() -> list[nx.Graph]:
    """Hand-made graphs whose labels are not in BFS order: a path, a star, a cycle, K4, a tree."""
    path = nx.relabel_nodes(nx.path_graph(6), dict(enumerate([3, 0, 5, 1, 4, 2])))
    star = nx.relabel_nodes(nx.star_graph(5), {0: 4, 4: 0})          # centre 4, leaves 0-3, 5
    cycle = nx.relabel_nodes(nx.cycle_graph(7), dict(enumerate([0, 4, 1, 6, 2, 5, 3])))
    tree = nx.relabel_nodes(nx.balanced_tree(2, 2), dict(enumerate([6, 2, 5, 0, 4, 1, 3])))
    return [path, star, cycle, nx.complete_graph(4), tree]


def _graph_pool(generator: torch.Generator) -> list[nx.Graph]:
    """The small graphs and three of each data set of lecture 07, drawn with a seed of generator."""
    seed = _seed(generator)
    pool = _small_graphs()
    for k, name in enumerate(("lobster", "community", "grid")):
        pool += make_graphs(name, 3, seed=seed + k)
    return [nx.convert_node_labels_to_integers(g, ordering="sorted") for g in pool]


def _stack(graphs: list[nx.Graph]) -> tuple[np.ndarray, np.ndarray]:
    canonical = []
    for g in graphs:
        h = nx.Graph()
        h.add_nodes_from(range(g.number_of_nodes()))
        h.add_edges_from(g.edges)
        canonical.append(h)
    return to_adjacency(canonical, N_PAD).numpy(), np.array([g.number_of_nodes() for g in graphs], np.float64)


# ---- q1: bfs_from_start(adjacency (n, n), start) -> order (n,) long --------------------------------
# Nudge: while the probe runs, networkx's own breadth-first traversals raise (write yours).

_NX_BFS = ("bfs_edges", "bfs_tree", "bfs_successors", "bfs_predecessors", "bfs_layers", "generic_bfs_edges",
           "bfs_labeled_edges", "descendants_at_distance")


@contextlib.contextmanager
def own_bfs():
    """networkx's breadth-first traversals raise while the probe runs: the question asks for yours."""
    saved = {}

    def forbidden(*args, **kwargs):
        raise RuntimeError("write the breadth-first search yourself: networkx's traversals are switched off "
                           "while the checks run")
    for name in _NX_BFS:
        if hasattr(nx, name):
            saved[name] = getattr(nx, name)
            setattr(nx, name, forbidden)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(nx, name, function)


def _disconnected() -> tuple[np.ndarray, np.ndarray]:
    two_triangles = nx.disjoint_union(nx.complete_graph(3), nx.complete_graph(3))
    isolated = nx.path_graph(4)
    isolated.add_node(4)
    return _stack([two_triangles, isolated])


def q1_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    adjacency, n = _stack(_graph_pool(generator))
    starts = (torch.rand(len(n), 2, generator=generator, dtype=F64) * torch.tensor(n)[:, None]).long()
    starts[: len(_small_graphs()), 0] = 0           # the small graphs: node 0 once (a leaf of the star)
    bad_adjacency, bad_n = _disconnected()
    return {"adjacency": adjacency, "n": n, "starts": starts.numpy().astype(np.float64),
            "bad_adjacency": bad_adjacency, "bad_n": bad_n}


def q1_probe(namespace, inputs):
    bfs = student_function(namespace, "bfs_from_start")
    out = {}
    with own_bfs():
        for g, n in enumerate(inputs["n"].astype(int)):
            for k, start in enumerate(inputs["starts"][g].astype(int)):
                order = as_array(bfs(_tensor(inputs["adjacency"][g], n), int(start)), "bfs_from_start")
                out[f"order_{g}_{k}"] = order
        for g, n in enumerate(inputs["bad_n"].astype(int)):
            try:
                bfs(_tensor(inputs["bad_adjacency"][g], n), 0)
                raised = 0.0
            except ValueError:
                raised = 1.0
            except Exception:        # noqa: BLE001  (another error is not the one asked for)
                raised = -1.0
            out[f"bad_{g}"] = np.array(raised)
    return out


def _orders(inputs, outputs):
    """(graph, n, start, order) for every probed pair; the shape checked first."""
    for g, n in enumerate(inputs["n"].astype(int)):
        for k, start in enumerate(inputs["starts"][g].astype(int)):
            order = outputs[f"order_{g}_{k}"]
            expect_shape(order, (n,), f"graph {g} ({n} nodes): bfs_from_start gives one position per node")
            yield g, n, int(start), order


def _q1_permutation(inputs, outputs):
    for g, n, start, order in _orders(inputs, outputs):
        if not np.array_equal(np.sort(order), np.arange(n)):
            raise CheckFailed(f"graph {g}: every node exactly once", expected=f"a permutation of 0..{n - 1}",
                              actual=order)
        if int(order[0]) != start:
            raise CheckFailed(f"graph {g}: the order starts at the start node", expected=start, actual=order)


def _parents(graph: nx.Graph, order: np.ndarray) -> np.ndarray:
    """For each position k > 0, the position of the earliest node before k adjacent to order[k]
    (-1 if none)."""
    position = {int(v): k for k, v in enumerate(order)}
    out = np.full(len(order), -1)
    for k, v in enumerate(order[1:], start=1):
        earlier = [position[int(u)] for u in graph[int(v)] if position[int(u)] < k]
        out[k] = min(earlier) if earlier else -1
    return out


def _q1_levels(inputs, outputs):
    for g, n, start, order in _orders(inputs, outputs):
        graph = _graph(inputs["adjacency"][g], n)
        distance = nx.single_source_shortest_path_length(graph, start)
        levels = np.array([distance[int(v)] for v in order])
        if np.any(np.diff(levels) < 0):
            raise CheckFailed(f"graph {g}, start {start}: the distance from the start never decreases along a "
                              "breadth-first order", expected="non-decreasing distances", actual=levels)


def _q1_fifo(inputs, outputs):
    for g, n, start, order in _orders(inputs, outputs):
        parents = _parents(_graph(inputs["adjacency"][g], n), order)
        if np.any(parents[1:] < 0):
            raise CheckFailed(f"graph {g}: every node after the first has a neighbour earlier in the order",
                              expected="a parent for each", actual=parents)
        if np.any(np.diff(parents[1:]) < 0):
            raise CheckFailed(f"graph {g}, start {start}: first in, first out: the children of an earlier node come "
                              "before those of a later one (the position of each node's first-visited neighbour "
                              "never decreases)", expected="non-decreasing parent positions", actual=parents)


def _q1_tie_break(inputs, outputs):
    for g, n, start, order in _orders(inputs, outputs):
        parents = _parents(_graph(inputs["adjacency"][g], n), order)
        for k in range(2, n):
            if parents[k] == parents[k - 1] and order[k] < order[k - 1]:
                raise CheckFailed(f"graph {g}, start {start}: the children of one node are visited in increasing "
                                  f"label order (positions {k - 1} and {k})", expected="increasing labels",
                                  actual=order)


def _q1_disconnected(inputs, outputs):
    for g, _ in enumerate(inputs["bad_n"]):
        raised = float(outputs[f"bad_{g}"])
        if raised != 1.0:
            raise CheckFailed(f"disconnected graph {g}: bfs_from_start raises ValueError (a BFS from one node "
                              "cannot reach every node)", expected="ValueError",
                              actual="no error" if raised == 0 else "another exception")


Q1 = Question(
    id="q1", functions=("bfs_from_start",), make_inputs=q1_inputs, probe=q1_probe,
    checks=(Check("a permutation of the nodes that starts at the start", _q1_permutation),
            Check("distances from the start never decrease", _q1_levels),
            Check("first in, first out: parents' positions never decrease", _q1_fifo),
            Check("the children of one node in increasing label order", _q1_tie_break),
            Check("a disconnected graph raises ValueError", _q1_disconnected)))


# ---- q2: to_band_sequence(adjacency, order, M) -> (n - 1, M); from_band_sequence(sequence, order) -> (n, n) --

def _order_bandwidth(adjacency: np.ndarray, order: np.ndarray) -> int:
    """The largest |position(u) - position(v)| over the edges (u, v): the smallest band M that the
    order allows (0 for a graph without edges)."""
    adjacency = np.asarray(adjacency)
    position = np.empty(len(order), dtype=np.int64)
    position[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    u, v = np.nonzero(np.triu(adjacency, 1))
    return int(np.abs(position[u] - position[v]).max()) if len(u) else 0


# hand-checked cases: (edges, n, order, M, the sequence)
KNOWN = (
    (((0, 1), (1, 2), (2, 3)), 4, (0, 1, 2, 3), 2, ((1, 0), (1, 0), (1, 0))),      # a path from its end
    (((0, 1), (1, 2), (2, 3)), 4, (1, 0, 2, 3), 2, ((1, 0), (0, 1), (1, 0))),      # the same path from node 1
    (((0, 1), (0, 2), (0, 3)), 4, (1, 0, 2, 3), 3, ((1, 0, 0), (1, 0, 0), (0, 1, 0))),   # a star from a leaf
    (((0, 1), (0, 2), (1, 2)), 3, (2, 0, 1), 4, ((1, 0, 0, 0), (1, 1, 0, 0))),     # a triangle, M > n - 1
)


def q2_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    adjacency, n = _stack(_graph_pool(generator))
    out = {"adjacency": adjacency, "n": n}
    for g, size in enumerate(n.astype(int)):
        order = torch.randperm(size, generator=generator).numpy()
        band = _order_bandwidth(adjacency[g][:size, :size], order)
        out[f"order_{g}"] = order.astype(np.float64)
        out[f"band_{g}"] = np.array(band, np.float64)
        # a random sequence: 0/1 in every entry that exists (entry j of row i for j <= i), zero elsewhere
        m = band + 2
        rows = torch.arange(1, size)[:, None]
        exists = torch.arange(1, m + 1)[None] <= rows
        out[f"random_seq_{g}"] = ((torch.rand(size - 1, m, generator=generator, dtype=F64) < 0.4) & exists).numpy() \
            .astype(np.float64)
    for k, (edges, size, order, m, _) in enumerate(KNOWN):
        a = np.zeros((size, size))
        for u, v in edges:
            a[u, v] = a[v, u] = 1
        out[f"known_adjacency_{k}"], out[f"known_order_{k}"], out[f"known_m_{k}"] = a, np.array(order, float), \
            np.array(m, float)
    return out


def q2_probe(namespace, inputs):
    encode = student_function(namespace, "to_band_sequence")
    decode = student_function(namespace, "from_band_sequence")
    out = {}
    for g, n in enumerate(inputs["n"].astype(int)):
        a = _tensor(inputs["adjacency"][g], n)
        order = torch.tensor(inputs[f"order_{g}"], dtype=torch.long)
        band = int(inputs[f"band_{g}"])
        for tag, m in (("tight", band), ("wide", band + 3)):
            sequence = encode(a, order, m)
            out[f"seq_{tag}_{g}"] = as_array(sequence, "to_band_sequence")
            out[f"back_{tag}_{g}"] = as_array(decode(torch.as_tensor(sequence), order), "from_band_sequence")
        if band >= 2:
            try:
                encode(a, order, band - 1)
                raised = 0.0
            except ValueError:
                raised = 1.0
            except Exception:        # noqa: BLE001
                raised = -1.0
            out[f"narrow_{g}"] = np.array(raised)
        random_seq = torch.tensor(inputs[f"random_seq_{g}"], dtype=torch.float32)
        decoded = decode(random_seq, order)
        out[f"random_back_{g}"] = as_array(decoded, "from_band_sequence of a random sequence")
        try:                         # a failure here costs only the check that reads it
            again = as_array(encode(torch.as_tensor(decoded), order, random_seq.shape[1]),
                             "to_band_sequence of that graph")
        except Exception:            # noqa: BLE001  (a decoding in the wrong labels: an edge outside the band)
            again = np.full(tuple(random_seq.shape), np.nan)
        out[f"random_again_{g}"] = again
    for k, _ in enumerate(KNOWN):
        out[f"known_{k}"] = as_array(encode(torch.tensor(inputs[f"known_adjacency_{k}"], dtype=torch.float32),
                                            torch.tensor(inputs[f"known_order_{k}"], dtype=torch.long),
                                            int(inputs[f"known_m_{k}"])), "to_band_sequence")
    return out


def _q2_shape(inputs, outputs):
    for g, n in enumerate(inputs["n"].astype(int)):
        band = int(inputs[f"band_{g}"])
        for tag, m in (("tight", band), ("wide", band + 3)):
            s = outputs[f"seq_{tag}_{g}"]
            expect_shape(s, (n - 1, m), f"graph {g} ({n} nodes), M = {m}: one row for each node after the first, "
                         "M entries each")
            if not np.all((s == 0) | (s == 1)):
                raise CheckFailed(f"graph {g}: entries are 0 or 1", expected="{0, 1}", actual=s)
            exists = np.arange(1, m + 1)[None] <= np.arange(1, n)[:, None]
            if np.any(s[~exists] != 0):
                raise CheckFailed(f"graph {g}, M = {m}: row i (the node at position i) has only min(i, M) entries; "
                                  "the others are structural zeros", expected="zeros where j > i", actual=s)


def _q2_edges(inputs, outputs):
    for g, n in enumerate(inputs["n"].astype(int)):
        edges = int(np.triu(inputs["adjacency"][g][:n, :n], 1).sum())
        for tag in ("tight", "wide"):
            expect_close(outputs[f"seq_{tag}_{g}"].sum(), edges, f"graph {g}: the sequence holds each of its "
                         f"{edges} edges once", rtol=0, atol=0)


def _q2_round_trip(inputs, outputs):
    for g, n in enumerate(inputs["n"].astype(int)):
        for tag in ("tight", "wide"):
            expect_close(outputs[f"back_{tag}_{g}"], inputs["adjacency"][g][:n, :n], f"graph {g} ({n} nodes, "
                         f"{tag} band): from_band_sequence(to_band_sequence(A, order, M), order) is A, in A's own "
                         "labels", rtol=0, atol=0)


def _q2_other_way(inputs, outputs):
    for g, n in enumerate(inputs["n"].astype(int)):
        back = outputs[f"random_back_{g}"]
        expect_shape(back, (n, n), f"graph {g}: from_band_sequence of a sequence of {n - 1} rows")
        if not (np.array_equal(back, back.T) and np.all(np.diag(back) == 0) and np.all((back == 0) | (back == 1))):
            raise CheckFailed("from_band_sequence gives a symmetric 0/1 matrix with a zero diagonal",
                              expected="a simple graph's adjacency", actual=back)
        expect_close(outputs[f"random_again_{g}"], inputs[f"random_seq_{g}"], f"graph {g}: any sequence (random "
                     "bits where entries exist) decoded and encoded again with the same order is itself", rtol=0,
                     atol=0)


def _q2_band(inputs, outputs):
    for g, n in enumerate(inputs["n"].astype(int)):
        if f"narrow_{g}" not in outputs:
            continue
        raised = float(outputs[f"narrow_{g}"])
        band = int(inputs[f"band_{g}"])
        if raised != 1.0:
            raise CheckFailed(f"graph {g}: with M = {band - 1}, one less than the order's band {band}, an edge "
                              "falls outside the rows: to_band_sequence raises ValueError",
                              expected="ValueError", actual="no error" if raised == 0 else "another exception")


def _q2_known(inputs, outputs):
    for k, (edges, n, order, m, sequence) in enumerate(KNOWN):
        expect_close(outputs[f"known_{k}"], np.array(sequence, float), f"edges {list(edges)}, order {order}, "
                     f"M = {m} (row i: the node at position i against the nodes 1, 2, ..., M places before it)",
                     rtol=0, atol=0)


Q2 = Question(
    id="q2", functions=("to_band_sequence", "from_band_sequence"), make_inputs=q2_inputs, probe=q2_probe,
    checks=(Check("rows of M entries, 0/1, structural zeros", _q2_shape),
            Check("each edge once", _q2_edges),
            Check("decoding an encoded graph gives the graph", _q2_round_trip),
            Check("encoding a decoded sequence gives the sequence", _q2_other_way),
            Check("a band narrower than the order needs raises ValueError", _q2_band),
            Check("hand-checked small cases", _q2_known)))


# ---- q3: band_sequence_nll(logits (B, L, M), sequences (B, L, M), n_nodes (B,)) -> (B,) nats ----------

ENUMERATED = ((3, 2), (4, 3), (3, 5))     # (L, M): every sequence of these is enumerated
EXTREME = 1e4


@functools.lru_cache(maxsize=8)
def all_sequences(n_rows: int, band: int) -> tuple[np.ndarray, np.ndarray]:
    """Every sequence of at most n_rows + 1 nodes: rows S_1 .. S_{n-1} with at least one 1 among
    the entries that exist (row i has min(i, band)), zeros elsewhere, padded to (n_rows, band).
    (count, n_rows, band) float64 and their node counts (count,)."""
    sequences, counts = [], []
    for n in range(1, n_rows + 2):
        choices = []
        for i in range(1, n):
            width = min(i, band)
            choices.append([bits + (0,) * (band - width) for bits in itertools.product((0, 1), repeat=width)
                            if any(bits)])
        for rows in itertools.product(*choices):
            s = np.zeros((n_rows, band))
            if rows:
                s[: len(rows)] = np.array(rows)
            sequences.append(s)
            counts.append(n)
    return np.stack(sequences), np.array(counts, np.float64)


def _random_sequences(generator, n_nodes, n_rows, band):
    out = torch.zeros(len(n_nodes), n_rows, band, dtype=F64)
    for b, n in enumerate(n_nodes):
        for i in range(1, int(n)):
            width = min(i, band)
            while True:
                bits = (torch.rand(width, generator=generator, dtype=F64) < 0.4).to(F64)
                if bits.any():
                    break
            out[b, i - 1, :width] = bits
    return out


def q3_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    g = dict(generator=generator, dtype=F64)
    out = {}
    for k, (n_rows, band) in enumerate(ENUMERATED):
        out[f"enum_logits_{k}"] = (1.5 * torch.randn(n_rows, band, **g)).numpy()
    n_rows, band = 8, 4
    n_nodes = torch.tensor([1, 2, 3, 5, 6, 8, 9, 4], dtype=F64)     # 1 and L + 1 = 9 among them
    sequences = _random_sequences(generator, n_nodes, n_rows, band)
    rows = torch.arange(1, n_rows + 1, dtype=F64)[None, :, None]
    entries = torch.arange(1, band + 1, dtype=F64)[None, None, :]
    unscored = (entries > rows) | (rows > n_nodes[:, None, None])              # cannot matter, by the statement
    padding = rows >= n_nodes[:, None, None]                                    # rows n-1, ... (0-based)
    logits = 2 * torch.randn(len(n_nodes), n_rows, band, **g)
    out.update(n_nodes=n_nodes.numpy(), sequences=sequences.numpy(), logits=logits.numpy(),
               garbage_sequences=torch.where(padding, 7 * torch.rand(sequences.shape, **g) - 3, sequences).numpy(),
               garbage_logits=torch.where(unscored, 50 * torch.randn(logits.shape, **g), logits).numpy(),
               extreme_c=np.array(EXTREME), extreme_flip=np.array([3, 2, 1], np.float64),   # graph 3, row 3, entry 2
               diff_entries=np.array([[4, 0, 0], [4, 2, 1], [4, 4, 3], [4, 4, 0], [4, 5, 0], [4, 6, 2],
                                      [5, 7, 3], [0, 0, 0], [0, 1, 0], [7, 2, 2]], np.float64))
    return out


H_DIFF = 1e-5


def q3_probe(namespace, inputs):
    nll = student_function(namespace, "band_sequence_nll")

    def call(logits, sequences, n_nodes, what):
        return as_array(nll(torch.as_tensor(logits, dtype=F64), torch.as_tensor(sequences, dtype=F64),
                            torch.as_tensor(n_nodes).long()), what)
    out = {}
    for k, (n_rows, band) in enumerate(ENUMERATED):
        sequences, n_nodes = all_sequences(n_rows, band)
        logits = np.broadcast_to(inputs[f"enum_logits_{k}"], sequences.shape).copy()
        out[f"enum_{k}"] = call(logits, sequences, n_nodes, f"band_sequence_nll on every sequence of L = {n_rows}, "
                                f"M = {band}")
    logits, sequences, n_nodes = inputs["logits"], inputs["sequences"], inputs["n_nodes"]
    out["batch"] = call(logits, sequences, n_nodes, "band_sequence_nll")
    out["alone"] = np.array([call(logits[b:b + 1], sequences[b:b + 1], n_nodes[b:b + 1], "band_sequence_nll")
                             .reshape(-1)[0] for b in range(len(n_nodes))])
    out["zero_logits"] = call(np.zeros_like(logits), sequences, n_nodes, "band_sequence_nll at zero logits")
    out["garbage"] = call(inputs["garbage_logits"], inputs["garbage_sequences"], n_nodes,
                          "band_sequence_nll with garbage where nothing is scored")
    c = float(inputs["extreme_c"])
    agree = np.where(sequences > 0.5, c, -c)
    out["extreme_agree"] = call(agree, sequences, n_nodes, "band_sequence_nll at +-1e4")
    b, i, j = inputs["extreme_flip"].astype(int)
    flipped = agree.copy()
    flipped[b, i, j] = -flipped[b, i, j]
    out["extreme_flip"] = call(flipped, sequences, n_nodes, "band_sequence_nll at +-1e4, one entry wrong")
    # the gradient of the summed NLL in the logits (autograd), and central differences at chosen entries
    leaf = torch.tensor(logits, dtype=F64, requires_grad=True)
    total = nll(leaf, torch.as_tensor(sequences, dtype=F64), torch.as_tensor(n_nodes).long())
    if isinstance(total, torch.Tensor) and total.requires_grad:
        total.sum().backward()
        out["gradient"] = as_array(leaf.grad, "the gradient") if leaf.grad is not None else np.full(logits.shape,
                                                                                                       np.nan)
    else:
        out["gradient"] = np.full(logits.shape, np.nan)
    shifted = []
    for b, i, j in inputs["diff_entries"].astype(int):
        pair = []
        for sign in (1.0, -1.0):
            moved = logits.copy()
            moved[b, i, j] += sign * H_DIFF
            pair.append(float(call(moved, sequences, n_nodes, "band_sequence_nll").sum()))
        shifted.append(pair)
    out["shifted"] = np.array(shifted)
    return out


def _q3_shape(inputs, outputs):
    b = len(inputs["n_nodes"])
    expect_shape(outputs["batch"], (b,), "band_sequence_nll: one NLL per sequence of the batch")
    expect_finite(outputs["batch"], "the NLL")
    if np.any(outputs["batch"] < 0):
        raise CheckFailed("an NLL of 0/1 data is never negative", expected=">= 0", actual=outputs["batch"])


def _q3_normalised(inputs, outputs):
    for k, (n_rows, band) in enumerate(ENUMERATED):
        _, n_nodes = all_sequences(n_rows, band)
        p = np.exp(-outputs[f"enum_{k}"])
        expect_shape(p, n_nodes.shape, f"L = {n_rows}, M = {band}: one NLL per sequence")
        expect_close(p.sum(), 1.0, f"L = {n_rows}, M = {band}: exp(-NLL) summed over all {len(p)} sequences of up to "
                     f"{n_rows + 1} nodes (an all-zero row ends a sequence; a sequence of L + 1 nodes has none) is 1",
                     rtol=0, atol=1e-9)


def _q3_zero_logits(inputs, outputs):
    n_rows, band = inputs["logits"].shape[1:]
    count = [sum(min(i, band) for i in range(1, min(int(n), n_rows) + 1)) for n in inputs["n_nodes"]]
    expect_close(outputs["zero_logits"], np.array(count) * math.log(2), "logits 0 (every entry a fair coin): "
                 "log 2 for every entry scored: row i has min(i, M) entries; rows 1..n-1 and the end row n (if n <= L)",
                 rtol=1e-9, atol=1e-12)


def _q3_ignores(inputs, outputs):
    expect_close(outputs["garbage"], outputs["batch"], "anything in the padding rows (from row n on, 0-based n - 1) "
                 "and any logit of an entry that is not scored changes nothing", rtol=1e-9, atol=1e-9)


def _q3_batch(inputs, outputs):
    expect_close(outputs["alone"], outputs["batch"], "each sequence's NLL is the same alone or in a batch",
                 rtol=1e-9, atol=1e-12)


def _q3_extreme(inputs, outputs):
    c = float(inputs["extreme_c"])
    expect_close(outputs["extreme_agree"], np.zeros(len(inputs["n_nodes"])), f"logits +-{c:g} that agree with every "
                 "entry: NLL 0 (finite: use a stable log-sigmoid, not log(sigmoid))", rtol=0, atol=1e-9)
    b = int(inputs["extreme_flip"][0])
    expected = np.zeros(len(inputs["n_nodes"]))
    expected[b] = c
    expect_close(outputs["extreme_flip"], expected, f"one scored entry with the wrong sign at {c:g}: it costs {c:g} "
                 "nats, the other sequences nothing", rtol=1e-9, atol=1e-9)


def _q3_gradient(inputs, outputs):
    if np.isnan(outputs["gradient"]).all():
        raise CheckFailed("band_sequence_nll returns a tensor autograd can differentiate (it trains q5's model)",
                          expected="a gradient", actual="no graph")
    differences = (outputs["shifted"][:, 0] - outputs["shifted"][:, 1]) / (2 * H_DIFF)
    picked = np.array([outputs["gradient"][b, i, j] for b, i, j in inputs["diff_entries"].astype(int)])
    expect_close(picked, differences, "autograd's gradient of the summed NLL in the logits against central "
                 "differences of its values (zero where an entry is not scored)", rtol=1e-5, atol=1e-6)


Q3 = Question(
    id="q3", functions=("band_sequence_nll",), make_inputs=q3_inputs, probe=q3_probe,
    checks=(Check("one finite, non-negative NLL per sequence", _q3_shape),
            Check("normalised: the probabilities of all sequences sum to 1", _q3_normalised),
            Check("log 2 per scored entry at logits 0", _q3_zero_logits),
            Check("padding and unscored logits change nothing", _q3_ignores),
            Check("alone or in a batch", _q3_batch),
            Check("stable at logits +-1e4", _q3_extreme),
            Check("the gradient is that of the value", _q3_gradient)))


# ---- q4: histogram_emd(X (m, K1), Y (n, K2)) -> (m, n); emd_mmd2_unbiased(X, Y, sigma) -> scalar ------

SIGMA = 1.5
POINT_SHIFTS = (1, 2, 3)
UNBIASED_REPEATS, UNBIASED_SIZE = 400, 6
PMF = np.array([0.05, 0.2, 0.3, 0.25, 0.15, 0.05])    # the law the repeated histograms are drawn from


def _point(bins: int, at: int, mass: float = 1.0) -> np.ndarray:
    out = np.zeros(bins)
    out[at] = mass
    return out


def q4_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    g = dict(generator=generator, dtype=F64)
    out = {"sigma": np.array(SIGMA)}
    # point masses: X two histograms at 0 (as counts 3 and 1), Y two at d
    for d in POINT_SHIFTS:
        out[f"point_x_{d}"] = np.stack([_point(5, 0, 3.0), _point(5, 0, 1.0)])
        out[f"point_y_{d}"] = np.stack([_point(5, d, 2.0), _point(5, d, 5.0)])
    # general count histograms of different widths (Y's last bins empty in some rows)
    out["x"] = torch.randint(0, 6, (7, 6), generator=generator).to(F64).numpy() + np.eye(7, 6)
    y = torch.randint(0, 6, (5, 9), generator=generator).to(F64)
    y[:3, 6:] = 0
    out["y"] = y.numpy() + np.eye(5, 9)
    # pairs that differ by moving mass w from bin a to bin b (probabilities)
    exponential = -torch.log(torch.rand(10, 8, **g))
    p = (exponential / exponential.sum(1, keepdim=True)).numpy()          # Dirichlet(1, ..., 1) rows
    a = torch.randint(0, 8, (10,), generator=generator).numpy()
    b = (a + 1 + torch.randint(0, 7, (10,), generator=generator).numpy()) % 8
    w = torch.rand(10, **g).numpy() * p[np.arange(10), a]
    q = p.copy()
    q[np.arange(10), a] -= w
    q[np.arange(10), b] += w
    out.update(moved_p=p, moved_q=q, moved_w=w, moved_a=a.astype(float), moved_b=b.astype(float))
    # repeats: X and Y both from one law (counts of 12 draws from PMF), for the estimator's mean
    draws = torch.multinomial(torch.tensor(PMF), 12 * 2 * UNBIASED_SIZE * UNBIASED_REPEATS, replacement=True,
                              generator=generator).reshape(UNBIASED_REPEATS, 2, UNBIASED_SIZE, 12)
    out["repeats"] = torch.nn.functional.one_hot(draws, len(PMF)).sum(3).to(F64).numpy()   # (R, 2, size, K)
    return out


def q4_probe(namespace, inputs):
    emd = student_function(namespace, "histogram_emd")
    mmd2 = student_function(namespace, "emd_mmd2_unbiased")
    t = lambda key: torch.tensor(inputs[key], dtype=F64)   # noqa: E731
    sigma = float(inputs["sigma"])
    x, y = t("x"), t("y")
    out = {"emd_xy": as_array(emd(x, y), "histogram_emd"), "emd_yx": as_array(emd(y, x), "histogram_emd"),
           "emd_xx": as_array(emd(x, x), "histogram_emd"),
           "emd_x_scaled": as_array(emd(3 * x, y), "histogram_emd of counts times 3"),
           "emd_moved": as_array(emd(t("moved_p"), t("moved_q")), "histogram_emd")}
    for d in POINT_SHIFTS:
        out[f"point_emd_{d}"] = as_array(emd(t(f"point_x_{d}"), t(f"point_y_{d}")), "histogram_emd of point masses")
        out[f"point_mmd_{d}"] = as_array(mmd2(t(f"point_x_{d}"), t(f"point_y_{d}"), sigma), "emd_mmd2_unbiased")
    out["mmd_xy"] = as_array(mmd2(x, y, sigma), "emd_mmd2_unbiased")
    out["mmd_yx"] = as_array(mmd2(y, x, sigma), "emd_mmd2_unbiased")
    out["mmd_permuted"] = as_array(mmd2(x.flip(0), torch.roll(y, 2, 0), sigma), "emd_mmd2_unbiased, rows reordered")
    out["mmd_scaled"] = as_array(mmd2(2 * x, y / 4, sigma), "emd_mmd2_unbiased of rescaled counts")
    out["mmd_padded"] = as_array(mmd2(torch.nn.functional.pad(x, (0, 4)), y, sigma), "emd_mmd2_unbiased, X padded "
                                 "with empty bins")
    repeats = torch.tensor(inputs["repeats"], dtype=F64)
    out["repeats"] = np.array([float(as_array(mmd2(r[0], r[1], sigma), "emd_mmd2_unbiased")) for r in repeats])
    return out


def _q4_emd_shape(inputs, outputs):
    expect_shape(outputs["emd_xy"], (len(inputs["x"]), len(inputs["y"])), "histogram_emd(X, Y): one distance per "
                 "pair of rows (X's rows have 6 bins, Y's 9)")
    expect_finite(outputs["emd_xy"], "the distances")
    expect_close(outputs["emd_yx"], outputs["emd_xy"].T, "symmetric: histogram_emd(Y, X) is histogram_emd(X, Y) "
                 "transposed", rtol=1e-12, atol=1e-12)
    expect_close(np.diag(outputs["emd_xx"]), np.zeros(len(inputs["x"])), "zero from a histogram to itself", rtol=0,
                 atol=1e-12)


def _q4_emd_metric(inputs, outputs):
    d = outputs["emd_xx"]
    if np.any(d < -1e-12):
        raise CheckFailed("distances are never negative", expected=">= 0", actual=d)
    gap = d[:, None, :] - (d[:, :, None] + d[None, :, :])          # d(i, k) - d(i, j) - d(j, k)
    if gap.max() > 1e-9:
        raise CheckFailed("the triangle inequality, over every triple of X's rows", expected="<= 0",
                          actual=float(gap.max()))


def _q4_emd_values(inputs, outputs):
    for d in POINT_SHIFTS:
        expect_close(outputs[f"point_emd_{d}"], np.full((2, 2), float(d)), f"point masses at bins 0 and {d} "
                     f"(counts of any size): all the mass moves {d} bins, distance {d}", rtol=1e-12, atol=1e-12)
    w, a, b = inputs["moved_w"], inputs["moved_a"], inputs["moved_b"]
    expect_close(np.diag(outputs["emd_moved"]), w * np.abs(a - b), "q is p with mass w moved from bin a to bin b: "
                 "distance w |a - b|", rtol=1e-9, atol=1e-12)
    expect_close(outputs["emd_x_scaled"], outputs["emd_xy"], "histograms are normalised first: counts times 3 give "
                 "the same distances", rtol=1e-9, atol=1e-12)


def _q4_point_mmd(inputs, outputs):
    sigma = float(inputs["sigma"])
    for d in POINT_SHIFTS:
        expect_close(outputs[f"point_mmd_{d}"], 2 - 2 * math.exp(-d**2 / (2 * sigma**2)), f"X two point masses at 0, "
                     f"Y two at {d}, sigma = {sigma:g}: k = 1 within each sample, exp(-{d}^2 / 2 sigma^2) across",
                     rtol=1e-9, atol=1e-12)


def _q4_invariances(inputs, outputs):
    expect_shape(outputs["mmd_xy"], (), "emd_mmd2_unbiased: a scalar")
    for key, what in (("mmd_yx", "symmetric in X and Y"), ("mmd_permuted", "the order of the rows does not matter"),
                      ("mmd_scaled", "counts or frequencies give the same value"),
                      ("mmd_padded", "empty bins at the end change nothing")):
        expect_close(outputs[key], outputs["mmd_xy"], what, rtol=1e-9, atol=1e-12)


def _q4_unbiased(inputs, outputs):
    values = outputs["repeats"]
    expect_finite(values, "the repeated estimates")
    r = len(values)
    se = values.std(ddof=1) / math.sqrt(r)
    if not abs(values.mean()) <= 4 * se:
        raise CheckFailed(f"X and Y drawn from one law ({r} repeats of {UNBIASED_SIZE} histograms each): the unbiased "
                          "estimate is 0 on average (within 4 standard errors; the biased V-statistic is positive)",
                          expected=f"|mean| <= {4 * se:.4f}", actual=float(values.mean()))
    if not values.min() < 0:
        raise CheckFailed("the unbiased estimate goes below 0 for some draws of one law", expected="some < 0",
                          actual=float(values.min()))


Q4 = Question(
    id="q4", functions=("histogram_emd", "emd_mmd2_unbiased"), make_inputs=q4_inputs, probe=q4_probe,
    checks=(Check("EMD: one per pair, symmetric, zero on the diagonal", _q4_emd_shape),
            Check("EMD: non-negative, triangle inequality", _q4_emd_metric),
            Check("EMD: point masses, moved mass, normalised", _q4_emd_values),
            Check("MMD^2: known value on point masses", _q4_point_mmd),
            Check("MMD^2: symmetric, rows in any order, counts, padding", _q4_invariances),
            Check("MMD^2: zero on average for one law", _q4_unbiased)))


# ---- q5: train_band_rnn(adjacency (G, N, N), n_nodes (G,), seed) -> module: (B, L, M) -> logits (B, L, M) ---
# Grids of lecture 07 (gmcourse.data.graphs): trained on the course's 400 training grids, graded on
# the NLL of the 100 test grids, each from HELD_OUT_STARTS start nodes drawn here (BFS of q1, band of q2).

DATASET = "grid"
MAX_NODES = 25                      # the largest grid, 5 x 5: sequences have L = MAX_NODES rows
BAND_M = 12                         # every BFS order of these grids needs at most 11 (tests/test_graphs_checks.py)
HELD_OUT_STARTS = 2
HELD_OUT_NLL_MAX = 26.0             # nats a held-out sequence; where it comes from: instructor/hidden/07_graphs.py
BAND_SECONDS_BUDGET = 25.0          # CPU seconds of one train_band_rnn call (one core, as in the sandbox)
CAUSAL_ROWS = (0, 3, 9, 17)         # rows from which the probe scrambles the input: logits up to them must not move


def grid_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The course's grids (load_graphs) of one split: adjacency (G, MAX_NODES, MAX_NODES), n_nodes (G,)."""
    graphs = load_graphs(DATASET, split)
    return to_adjacency(graphs, MAX_NODES).numpy(), np.array([g.number_of_nodes() for g in graphs], np.float64)


def _held_out(adjacency, n_nodes, generator) -> dict[str, np.ndarray]:
    n = torch.tensor(n_nodes).repeat(HELD_OUT_STARTS)
    starts = (torch.rand(len(n), generator=generator, dtype=F64) * n).long()
    return {"test_adjacency": np.asarray(adjacency), "test_n": np.asarray(n_nodes),
            "test_starts": starts.numpy().reshape(HELD_OUT_STARTS, -1).astype(np.float64)}


def q5_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    train_adjacency, train_n = grid_split("train")
    test_adjacency, test_n = grid_split("test")
    out = {"train_adjacency": train_adjacency, "train_n": train_n, "seed": np.array(0)}
    out.update(_held_out(test_adjacency, test_n, generator))
    b = HELD_OUT_STARTS * len(test_n)
    out["scramble"] = (torch.rand(b, MAX_NODES, BAND_M, generator=generator) < 0.5).numpy().astype(np.float64)
    return out


def held_out_sequences(namespace, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out grids as padded sequences (B, MAX_NODES, BAND_M) made with your q1 and q2 from
    the inputs' start nodes, and their node counts (B,): B = HELD_OUT_STARTS x test graphs."""
    bfs = student_function(namespace, "bfs_from_start")
    encode = student_function(namespace, "to_band_sequence")
    rows, counts = [], []
    for starts in inputs["test_starts"].astype(int):
        for g, n in enumerate(inputs["test_n"].astype(int)):
            a = _tensor(inputs["test_adjacency"][g], n)
            sequence = torch.zeros(MAX_NODES, BAND_M)
            sequence[: n - 1] = torch.as_tensor(encode(a, bfs(a, int(starts[g])), BAND_M), dtype=torch.float32)
            rows.append(sequence)
            counts.append(n)
    return torch.stack(rows), torch.tensor(counts, dtype=torch.long)


def _logits(model, sequences, what):
    with torch.no_grad():
        value = model(sequences)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} should return a torch.Tensor, got {type(value).__name__}")
    return as_array(value, what)


def q5_probe(namespace, inputs):
    train = student_function(namespace, "train_band_rnn")
    nll = student_function(namespace, "band_sequence_nll")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)         # as in the grader's sandbox: one core
    try:
        start = time.process_time()  # CPU seconds of this process, whatever else the machine runs
        model = train(torch.tensor(inputs["train_adjacency"], dtype=torch.float32),
                      torch.tensor(inputs["train_n"], dtype=torch.long), seed=int(inputs["seed"]))
        seconds = time.process_time() - start
        if hasattr(model, "eval"):
            model.eval()
        sequences, n_nodes = held_out_sequences(namespace, inputs)
        out = {"seconds": np.array(seconds), "sequences": as_array(sequences, "the held-out sequences"),
               "logits": _logits(model, sequences, "the model")}
        scramble = torch.tensor(inputs["scramble"], dtype=torch.float32)
        for r in CAUSAL_ROWS:
            changed = sequences.clone()
            changed[:, r:] = scramble[:, r:]
            out[f"logits_scrambled_{r}"] = _logits(model, changed, "the model")
        out["nll"] = as_array(nll(torch.tensor(out["logits"], dtype=F64), sequences.to(F64), n_nodes),
                              "band_sequence_nll of your model's logits")
    finally:
        torch.set_num_threads(threads)
    return out


def _q5_shape(inputs, outputs):
    b = HELD_OUT_STARTS * len(inputs["test_n"])
    expect_shape(outputs["logits"], (b, MAX_NODES, BAND_M), "the model's logits: (B, L, M) for sequences (B, L, M)")
    expect_finite(outputs["logits"], "the logits")


def _q5_budget(inputs, outputs):
    expect_less(outputs["seconds"], BAND_SECONDS_BUDGET, "CPU seconds for one train_band_rnn call")


def _q5_causal(inputs, outputs):
    for r in CAUSAL_ROWS:
        expect_close(outputs[f"logits_scrambled_{r}"][:, : r + 1], outputs["logits"][:, : r + 1],
                     f"rows {r}, {r + 1}, ... of the input scrambled: the logits of rows 0..{r} do not move (row r's "
                     "logits may only see rows before r)", rtol=0, atol=1e-5)


def _q5_nll(inputs, outputs):
    nll = outputs["nll"]
    expect_shape(nll, (len(outputs["logits"]),), "one NLL per held-out sequence")
    value = float(nll.mean())
    if not value <= HELD_OUT_NLL_MAX:
        raise CheckFailed(f"mean NLL of {len(nll)} held-out grid sequences (your band_sequence_nll of your model's "
                          "logits), nats per sequence", expected=f"<= {HELD_OUT_NLL_MAX}", actual=value)


Q5 = Question(
    id="q5", functions=("train_band_rnn",), make_inputs=q5_inputs, probe=q5_probe,
    checks=(Check("finite logits, one per entry", _q5_shape),
            Check(f"trained within {BAND_SECONDS_BUDGET:g} CPU seconds", _q5_budget),
            Check("autoregressive: row r's logits see only rows before r", _q5_causal),
            Check(f"held-out NLL at most {HELD_OUT_NLL_MAX:g} nats a sequence", _q5_nll)))


QUESTIONS = (Q1, Q2, Q3, Q4, Q5)
