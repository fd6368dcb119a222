"""The pieces of lecture 07 (deep graph generation), exported to gmcourse.models.graphs, and the graph
data sets of gmcourse.data.graphs: orders, sequences, the three models' probabilities (normalised by
enumeration on the smallest cases) and the interface. The committed run's figures:
tests/test_graphs_lecture.py."""
import itertools
import math

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmcourse.data.graphs import GRAPH_SPLITS, load_graphs, make_graphs, to_adjacency, to_graphs
from gmcourse.models import check_interface
from gmcourse.models.graphs import (
    ErdosRenyi,
    GraphRNN,
    GraphVAE,
    bfs_order,
    canonical_order,
    from_sequence,
    node_count,
    sequence_masks,
    to_sequence,
)


@st.composite
def connected_graphs(draw, max_nodes=9):
    """A connected graph on nodes 0..n-1 (a random spanning tree plus random extra edges)."""
    n = draw(st.integers(2, max_nodes))
    edges = {(draw(st.integers(0, k - 1)), k) for k in range(1, n)}  # each node joins an earlier one
    extra = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=2 * n))
    edges |= {(min(u, v), max(u, v)) for u, v in extra if u != v}
    perm = draw(st.permutations(range(n)))
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from((perm[u], perm[v]) for u, v in edges)
    return graph


def bfs_layers_ok(graph: nx.Graph, order: list[int]) -> bool:
    """order is a breadth-first order of a connected graph: distances from its first node never
    decrease, and every node after the first has a neighbour placed before it."""
    distance = nx.single_source_shortest_path_length(graph, order[0])
    placed = set()
    for i, v in enumerate(order):
        if i and not any(u in placed for u in graph[v]):
            return False
        placed.add(v)
    return all(distance[a] <= distance[b] for a, b in zip(order, order[1:]))


# --- data -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["community", "grid", "lobster"])
def test_data_sets_are_seeded_connected_and_numbered_from_zero(name):
    first, again = make_graphs(name, 30), make_graphs(name, 30)
    assert all(nx.utils.graphs_equal(a, b) for a, b in zip(first, again))
    assert not all(nx.utils.graphs_equal(a, b) for a, b in zip(first, make_graphs(name, 30, seed=8)))
    for graph in first:
        assert list(graph.nodes) == list(range(graph.number_of_nodes()))
        assert nx.is_connected(graph) and nx.number_of_selfloops(graph) == 0
    sizes = [g.number_of_nodes() for g in first]
    low, high = {"community": (12, 20), "grid": (9, 25), "lobster": (10, 20)}[name]
    assert low <= min(sizes) and max(sizes) <= high
    if name == "lobster":
        assert all(nx.is_tree(g) for g in first)
    if name == "grid":
        assert all(max(d for _, d in g.degree) <= 4 for g in first)


def test_community_graphs_have_two_dense_blocks():
    for graph in make_graphs("community", 40):
        parts = nx.community.greedy_modularity_communities(graph, cutoff=2, best_n=2)
        inside = sum(graph.subgraph(p).number_of_edges() for p in parts)
        assert inside > 0.8 * graph.number_of_edges()  # p_in 0.7 against p_out 0.05


def test_splits_have_their_sizes_and_follow_one_stream():
    splits = {split: load_graphs("community", split) for split in GRAPH_SPLITS}
    assert {k: len(v) for k, v in splits.items()} == GRAPH_SPLITS
    stream = make_graphs("community", sum(GRAPH_SPLITS.values()))
    joined = splits["train"] + splits["val"] + splits["test"]
    assert all(nx.utils.graphs_equal(a, b) for a, b in zip(stream, joined))
    with pytest.raises(ValueError, match="split must be one of"):
        load_graphs("community", "validation")
    with pytest.raises(ValueError, match="name must be one of"):
        make_graphs("ego", 3)
    with pytest.raises(ValueError, match="n_graphs must be an int"):
        make_graphs("grid", 0)


def test_adjacency_round_trip_and_bad_input():
    graphs = load_graphs("community", "test")[:20]
    a = to_adjacency(graphs, 20)
    assert a.shape == (20, 20, 20) and torch.equal(a, a.transpose(1, 2)) and a.diagonal(dim1=1, dim2=2).sum() == 0
    assert all(nx.utils.graphs_equal(g, h) for g, h in zip(graphs, to_graphs(a)))
    with pytest.raises(ValueError, match="n <= n_max"):
        to_adjacency(graphs, 10)
    with pytest.raises(ValueError, match="symmetric"):
        to_graphs(torch.triu(torch.ones(4, 4), 1))
    with pytest.raises(ValueError, match=r"\(B, N, N\)"):
        to_graphs(torch.zeros(2, 3, 4))
    assert to_graphs(torch.zeros(5, 5))[0].number_of_nodes() == 1  # no edge at all: one node


# --- orders and sequences -------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(connected_graphs(), st.integers(0, 2**31 - 1))
def test_bfs_order_is_a_breadth_first_permutation(graph, seed):
    a = to_adjacency([graph], 10)[0]
    order = bfs_order(a, torch.Generator().manual_seed(seed)).tolist()
    assert sorted(order) == list(range(graph.number_of_nodes()))
    assert bfs_layers_ok(graph, order)


def test_bfs_order_reaches_every_start_and_canonical_order_is_fixed():
    graph = load_graphs("community", "train")[3]
    a = to_adjacency([graph], 20)[0]
    generator = torch.Generator().manual_seed(0)
    starts = {int(bfs_order(a, generator)[0]) for _ in range(400)}
    assert starts == set(range(graph.number_of_nodes()))
    canonical = canonical_order(a)
    assert torch.equal(canonical, canonical_order(a))
    assert graph.degree[int(canonical[0])] == max(d for _, d in graph.degree)
    assert bfs_layers_ok(graph, canonical.tolist())


@settings(max_examples=40, deadline=None)
@given(connected_graphs(), st.integers(0, 2**31 - 1))
def test_sequence_round_trip_most_recent_first_and_end_row(graph, seed):
    n, N = graph.number_of_nodes(), 10
    a = to_adjacency([graph], N)[0]
    order = bfs_order(a, torch.Generator().manual_seed(seed))
    S = to_sequence(a, order)
    assert S.shape == (N - 1, N - 1)
    in_order = torch.zeros(N, N)
    in_order[:n, :n] = a[order][:, order]
    assert torch.equal(from_sequence(S), in_order)
    for k in range(1, n):  # eq. (2), entry by entry, and nothing above the diagonal
        assert all(S[k - 1, j] == a[order[k], order[k - 1 - j]] for j in range(k))
        assert S[k - 1, k:].sum() == 0 and S[k - 1].any()  # a connected graph's rows are never empty
    assert S[n - 1:].sum() == 0  # the end row (and the padding)
    assert nx.is_isomorphic(to_graphs(from_sequence(S))[0], graph)


def test_sequence_masks_count_the_random_entries():
    n = torch.tensor([1, 2, 5, 6])
    rows, entries = sequence_masks(n, 6)
    assert rows.sum(1).tolist() == [1, 2, 5, 5]  # real rows n - 1 plus the end row, unless n == N
    assert entries.sum((1, 2)).tolist() == [1, 1 + 2, 1 + 2 + 3 + 4 + 5, 1 + 2 + 3 + 4 + 5]


# --- the models' probabilities ---------------------------------------------------------------------

def all_sequences(N: int):
    """Every sequence GraphRNN can produce with at most N nodes: (S (N-1, N-1), n)."""
    M = N - 1
    out = []

    def extend(rows):
        k = len(rows)  # rows so far: the graph has k + 1 nodes
        if k + 1 == N:
            out.append((rows, N))
            return
        out.append((rows + [[0] * (k + 1)], k + 1))  # end here
        for bits in itertools.product((0, 1), repeat=k + 1):
            if any(bits):
                extend(rows + [list(bits)])

    extend([])
    S = torch.zeros(len(out), M, M)
    for i, (rows, _) in enumerate(out):
        for r, row in enumerate(rows):
            S[i, r, :len(row)] = torch.tensor(row, dtype=torch.float)
    return S, torch.tensor([n for _, n in out])


@pytest.mark.parametrize("N", [3, 4])
def test_graph_rnn_sequence_probabilities_sum_to_one(N):
    torch.manual_seed(N)
    model = GraphRNN(N, hidden=16, edge_hidden=8, embed=8)
    for p in model.parameters():  # a model far from uniform
        p.data.normal_(0, 0.8)
    S, n = all_sequences(N)
    assert len(S) == {3: 5, 4: 1 + 1 + 3 + 3 * 7}[N]
    with torch.no_grad():
        assert model.sequence_log_prob(S, n).exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def test_graph_rnn_samples_are_connected_and_follow_their_log_prob():
    torch.manual_seed(0)
    model = GraphRNN(8, hidden=32, edge_hidden=16, embed=16)
    x = model.sample(300, torch.Generator().manual_seed(1))
    graphs = to_graphs(x)
    assert all(nx.is_connected(g) for g in graphs)  # each node joins an earlier one
    # the empirical share of one-node graphs matches the model's probability of the end row first
    one_node = torch.zeros(1, 7, 7), torch.tensor([1])
    with torch.no_grad():
        p_end = model.sequence_log_prob(*one_node).exp().item()
    share = np.mean([g.number_of_nodes() == 1 for g in graphs])
    assert abs(share - p_end) < 4 * math.sqrt(p_end * (1 - p_end) / 300) + 1e-3


def test_graph_rnn_bound_tightens_with_more_orders_and_respects_each_sequence():
    torch.manual_seed(0)
    model = GraphRNN(20, hidden=32, edge_hidden=16, embed=16)
    x = to_adjacency(load_graphs("community", "test")[:5], 20)
    bounds = [model.elbo(x, n_orders=k) for k in (1, 4, 16)]
    assert (bounds[1] >= bounds[0] - 1e-5).all() and (bounds[2] >= bounds[1] - 1e-5).all()
    S, n = model.sequences(x, torch.Generator().manual_seed(0))
    with torch.no_grad():
        single = model.sequence_log_prob(S, n)
    assert (bounds[0] <= 0).all() and torch.isfinite(single).all()


def test_erdos_renyi_is_normalised_over_the_graphs_of_four_nodes():
    train = to_adjacency([nx.complete_graph(4), nx.path_graph(4), nx.star_graph(3)], 4)
    model = ErdosRenyi(train)
    assert model.p == pytest.approx((6 + 3 + 3) / 18)
    total = (1 - model.p) ** 6  # the graph with no edge, which a padded matrix cannot tell from one node
    for graph in nx.graph_atlas_g()[1:]:  # one graph of every isomorphism class with at most 7 nodes
        if graph.number_of_nodes() != 4 or graph.number_of_edges() == 0:
            continue
        nodes = sorted(graph.nodes, key=lambda v: graph.degree[v] > 0)  # a node with an edge last
        total += model.log_prob(to_adjacency([nx.relabel_nodes(graph, {v: i for i, v in enumerate(nodes)})], 4)).exp().item()
    assert total == pytest.approx(1.0, abs=1e-9)


def test_erdos_renyi_samples_have_its_density_and_node_counts():
    train = to_adjacency(load_graphs("community", "train"), 20)
    model = ErdosRenyi(train)
    x = model.sample(2000, torch.Generator().manual_seed(0))
    counts = torch.tensor([node_count(a) for a in x])
    possible = (counts * (counts - 1) / 2).sum()
    assert (x.sum() / 2 / possible).item() == pytest.approx(model.p, abs=0.01)
    expected = (torch.arange(21) * model.n_probs).sum().item()
    # a padded matrix cannot hold isolated nodes at its end: they are dropped, which is rare at this density
    assert counts.max() <= 20 and expected - 0.1 < counts.float().mean().item() <= expected
    assert torch.equal(x, x.transpose(1, 2))


def test_graph_vae_reads_the_canonical_triangle_and_samples_within_its_node_count():
    model = GraphVAE(20, latent=4, hidden=32)
    graphs = load_graphs("community", "test")[:8]
    x = to_adjacency(graphs, 20)
    e, n = model.upper(x)
    assert n.tolist() == [g.number_of_nodes() for g in graphs]
    for row, count, graph in zip(e, n, graphs):
        a = torch.zeros(20, 20)
        a[model.pairs[0], model.pairs[1]] = row
        assert nx.is_isomorphic(to_graphs(a + a.T)[0], graph) and int(count) == graph.number_of_nodes()
    sample = model.sample(50, torch.Generator().manual_seed(0))
    assert torch.equal(sample, sample.transpose(1, 2)) and sample.diagonal(dim1=1, dim2=2).sum() == 0


@pytest.mark.parametrize("model", [GraphRNN(20, hidden=32, edge_hidden=8, embed=8), GraphVAE(20, latent=4, hidden=32)],
                         ids=["GraphRNN", "GraphVAE"])
def test_models_honour_the_interface(model):
    torch.manual_seed(0)
    x = to_adjacency(load_graphs("community", "val")[:6], 20)
    report = check_interface(model, x)
    assert report["likelihood"] == "bound" and report["sample_shape"] == (3, 20, 20)
