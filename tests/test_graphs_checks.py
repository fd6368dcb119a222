"""Exercise 07's checks: the reference solution passes every public and hidden check, each typical
mistake fails the check meant for it (a depth-first search, a tie-break by decreasing label, a
search that does not notice a disconnected graph; rows oldest-first, a band that drops edges
silently, a decoding in the order's positions; an NLL without its end row, without the structural
mask, through log(sigmoid), that reads the padding or averages instead of summing; the biased
V-statistic, the total-variation distance, histograms not normalised, a signed EMD; a model that
sees the row it predicts, one that ignores the rows before, one trained too briefly), the data
fits the band, and q5's threshold keeps its margin.

q5's threshold comes from ten trainings (seeds 0-4 on the public and the hidden grids, recorded in
instructor/hidden/07_graphs.py). Every run of this file keeps the margin over the reference's
public graded run (seed 0; the hidden one is graded by tests/test_grading_exercises.py); the ten are
re-measured only with GMCOURSE_MEASURE=1 (about 80 s of one core), so that this file stays fast.
"""
import os

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from exercise_helpers import cached_solution_namespace, failed, hidden_checks, one_thread  # noqa: F401 (fixture)
from gmcourse.checks import graphs
from gmcourse.data.graphs import load_graphs, make_graphs, to_adjacency
from gmcourse.grading import Checker

HIDDEN = hidden_checks("07_graphs")
HIDDEN_Q5 = {q.id: q for q in HIDDEN.QUESTIONS}["q5"]
Q5_MARGIN = 3.0        # the reference's public NLL must stay this far below graphs.HELD_OUT_NLL_MAX (nats)
SPREAD_MARGIN = 1.5    # the worst of the ten measured runs must stay this far below it


@pytest.fixture(scope="module")
def solution():
    return cached_solution_namespace("07_graphs")


def answer(solution, **answers):
    return {**solution, **answers}


def all_failures(namespace, qid):
    return failed(graphs, namespace, qid) + failed(HIDDEN, namespace, qid)


@pytest.mark.parametrize("qid", ["q1", "q2", "q3", "q4"])
def test_reference_passes_public_and_hidden_checks(solution, qid):
    assert failed(graphs, solution, qid) == []
    assert failed(HIDDEN, solution, qid) == []


def test_missing_answer_prints_fail_and_does_not_raise(capsys):
    def band_sequence_nll(logits, sequences, n_nodes):
        raise NotImplementedError("q3: write your answer here")
    Checker(graphs, {"band_sequence_nll": band_sequence_nll})("q3")
    out = capsys.readouterr().out
    assert out.startswith("q3: FAIL") and "not answered yet" in out


# ---- the data and the enumeration the questions rely on ----------------------------------------

def test_every_bfs_order_of_the_grids_fits_the_band():
    """q5 encodes with M = BAND_M = 12: every start of every grid the grader uses (public train and
    test, the hidden draw) needs at most 11 (the exercise says so), with the tie-break of q1."""
    grids = load_graphs(graphs.DATASET, "train") + load_graphs(graphs.DATASET, "test") + \
        make_graphs(graphs.DATASET, 500, seed=HIDDEN.HIDDEN_GRID_SEED)
    widest = 0
    for g in grids:
        a = to_adjacency([g], g.number_of_nodes())[0].numpy()
        for start in range(len(a)):
            widest = max(widest, graphs._order_bandwidth(a, HIDDEN.reference_bfs(a, start)))
    assert widest == 11 < graphs.BAND_M
    assert max(g.number_of_nodes() for g in grids) == graphs.MAX_NODES


def test_the_enumerated_cases_hold_the_counts_the_exercise_states():
    counts = [len(graphs.all_sequences(n_rows, band)[0]) for n_rows, band in graphs.ENUMERATED]
    assert counts == [14, 173, 26]
    sequences, n_nodes = graphs.all_sequences(3, 2)
    assert sorted(n_nodes.tolist()) == [1, 2, 3, 3, 3] + [4] * 9


def test_the_bfs_nudge_switches_networkx_off_and_back_on():
    g = nx.path_graph(3)
    with graphs.own_bfs():
        with pytest.raises(RuntimeError, match="yourself"):
            list(nx.bfs_edges(g, 0))
    assert list(nx.bfs_edges(g, 0)) == [(0, 1), (1, 2)]


# ---- q1 -----------------------------------------------------------------------------------------

def neighbours(adjacency, v, reverse=False):
    return sorted(torch.nonzero(adjacency[v]).flatten().tolist(), reverse=reverse)


def bfs_variant(variant):
    def bfs_from_start(adjacency, start):
        n = adjacency.shape[0]
        if variant == "dfs":
            order, stack, seen = [], [start], set()
            while stack:
                v = stack.pop()
                if v not in seen:
                    seen.add(v)
                    order.append(v)
                    stack += neighbours(adjacency, v, reverse=True)
        else:
            seen, order, head = {start}, [start], 0
            while head < len(order):
                v = order[head]
                head += 1
                for w in neighbours(adjacency, v, reverse=variant == "descending"):
                    if w not in seen:
                        seen.add(w)
                        order.append(w)
            if len(order) < n and variant != "no_raise":
                raise ValueError("not connected")
        return torch.tensor(order)
    return bfs_from_start


@pytest.mark.parametrize("variant, check", [
    ("dfs", "distances from the start never decrease"),
    ("descending", "the children of one node in increasing label order"),
    ("no_raise", "a disconnected graph raises ValueError"),
])
def test_q1_mistakes_fail_their_check(solution, variant, check):
    assert check in failed(graphs, answer(solution, bfs_from_start=bfs_variant(variant)), "q1")


def test_q1_networkx_is_switched_off_while_the_checks_run(solution):
    def bfs_from_start(adjacency, start):
        graph = nx.from_numpy_array(adjacency.numpy())
        return torch.tensor([start] + [v for _, v in nx.bfs_edges(graph, start, sort_neighbors=sorted)])
    assert "calls your code on the check inputs" in failed(graphs, answer(solution, bfs_from_start=bfs_from_start),
                                                            "q1")


# ---- q2 -----------------------------------------------------------------------------------------

def encode_variant(solution, variant):
    encode = solution["to_band_sequence"]

    def to_band_sequence(adjacency, order, M):
        if variant == "oldest_first":
            sequence = encode(adjacency, order, M)
            return torch.stack([torch.cat([row[: min(i + 1, M)].flip(0), row[min(i + 1, M):]])
                                for i, row in enumerate(sequence)])
        a = adjacency[order][:, order]                        # "drops_edges": no ValueError, edges lost
        n = len(order)
        sequence = torch.zeros(n - 1, M)
        for i in range(1, n):
            for j in range(1, min(i, M) + 1):
                sequence[i - 1, j - 1] = a[i, i - j]
        return sequence
    return to_band_sequence


def decode_oldest_first(solution):
    def from_band_sequence(sequence, order):
        M = sequence.shape[1]
        flipped = torch.stack([torch.cat([row[: min(i + 1, M)].flip(0), row[min(i + 1, M):]])
                               for i, row in enumerate(sequence)])
        return solution["from_band_sequence"](flipped, order)
    return from_band_sequence


def decode_in_positions(solution):
    def from_band_sequence(sequence, order):
        return solution["from_band_sequence"](sequence, torch.arange(len(sequence) + 1))
    return from_band_sequence


def test_q2_oldest_first_fails_the_known_cases_even_as_a_consistent_pair(solution):
    namespace = answer(solution, to_band_sequence=encode_variant(solution, "oldest_first"),
                       from_band_sequence=decode_oldest_first(solution))
    assert failed(graphs, namespace, "q2") == ["hand-checked small cases"]


def test_q2_a_band_that_drops_edges_silently_fails(solution):
    namespace = answer(solution, to_band_sequence=encode_variant(solution, "drops_edges"))
    assert "a band narrower than the order needs raises ValueError" in failed(graphs, namespace, "q2")


def test_q2_decoding_in_the_orders_positions_fails(solution):
    namespace = answer(solution, from_band_sequence=decode_in_positions(solution))
    assert "decoding an encoded graph gives the graph" in failed(graphs, namespace, "q2")


# ---- q3 -----------------------------------------------------------------------------------------

def nll_variant(variant):
    def band_sequence_nll(logits, sequences, n_nodes):
        B, L, M = logits.shape
        i = torch.arange(1, L + 1)[:, None]
        j = torch.arange(1, M + 1)[None]
        n = torch.as_tensor(n_nodes).reshape(-1, 1, 1)
        last = n - 1 if variant == "no_end_row" else n
        scored = (i <= last) if variant == "no_structural_mask" else (j <= i) & (i <= last)
        target = sequences if variant == "reads_padding" else torch.where(i < n, sequences, 0.0)
        if variant == "log_sigmoid":
            p = torch.sigmoid(logits)
            per_entry = -(target * torch.log(p) + (1 - target) * torch.log(1 - p))
        else:
            per_entry = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
        per_entry = torch.where(scored, per_entry, 0.0)
        return per_entry.mean((1, 2)) if variant == "mean" else per_entry.sum((1, 2))
    return band_sequence_nll


@pytest.mark.parametrize("variant, check", [
    ("no_end_row", "normalised: the probabilities of all sequences sum to 1"),
    ("no_structural_mask", "normalised: the probabilities of all sequences sum to 1"),
    ("log_sigmoid", "stable at logits +-1e4"),
    ("reads_padding", "padding and unscored logits change nothing"),
    ("mean", "log 2 per scored entry at logits 0"),
])
def test_q3_mistakes_fail_their_check(solution, variant, check):
    assert check in failed(graphs, answer(solution, band_sequence_nll=nll_variant(variant)), "q3")


# ---- q4 -----------------------------------------------------------------------------------------

def padded(X, Y):
    width = max(X.shape[1], Y.shape[1])
    return F.pad(X, (0, width - X.shape[1])), F.pad(Y, (0, width - Y.shape[1]))


def emd_variant(variant):
    def histogram_emd(X, Y):
        X, Y = padded(X, Y)
        if variant != "unnormalised":
            X, Y = X / X.sum(1, keepdim=True), Y / Y.sum(1, keepdim=True)
        if variant == "total_variation":
            return 0.5 * (X[:, None] - Y[None]).abs().sum(-1)
        difference = X.cumsum(1)[:, None] - Y.cumsum(1)[None]
        return difference.sum(-1) if variant == "signed" else difference.abs().sum(-1)
    return histogram_emd


def biased_mmd2(solution):
    def emd_mmd2_unbiased(X, Y, sigma):
        def kernel(A, B):
            return torch.exp(-solution["histogram_emd"](A, B) ** 2 / (2 * sigma**2))
        return kernel(X, X).mean() + kernel(Y, Y).mean() - 2 * kernel(X, Y).mean()
    return emd_mmd2_unbiased


@pytest.mark.parametrize("variant, check", [
    ("total_variation", "EMD: point masses, moved mass, normalised"),
    ("unnormalised", "EMD: point masses, moved mass, normalised"),
    ("signed", "EMD: one per pair, symmetric, zero on the diagonal"),
])
def test_q4_distance_mistakes_fail_their_check(solution, variant, check):
    assert check in failed(graphs, answer(solution, histogram_emd=emd_variant(variant)), "q4")


def test_q4_the_biased_v_statistic_fails_only_the_unbiasedness_check(solution):
    assert failed(graphs, answer(solution, emd_mmd2_unbiased=biased_mmd2(solution)), "q4") == [
        "MMD^2: zero on average for one law"]


# ---- q5: the outcome, its margin, and near misses --------------------------------------------------

def mean_nll(inputs, outputs):
    sequences, counts = HIDDEN.reference_held_out(inputs)
    return float(HIDDEN.reference_nll(outputs["logits"], sequences, counts).mean())


def test_q5_reference_passes_with_margin(solution):
    """The reference trained once on the public grids (seed 0), in this process; its hidden run is
    graded by tests/test_grading_exercises.py (full marks), the ten runs by the test below."""
    inputs = graphs.Q5.inputs()
    outputs = graphs.q5_probe(solution, inputs)
    for question in (graphs.Q5, HIDDEN_Q5):
        for check in question.checks:
            check.run(inputs, outputs)
    value = mean_nll(inputs, outputs)
    print(f"reference, public grids, seed 0: {value:.3f} nats, {float(outputs['seconds']):.1f} CPU s")
    assert value <= graphs.HELD_OUT_NLL_MAX - Q5_MARGIN, value


class Independent(torch.nn.Module):
    """The best model that ignores the rows before: one Bernoulli per position, by counting."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, sequences):
        return self.logits.expand(len(sequences), -1, -1)


class SeesItsRow(torch.nn.Module):
    """Cheats: row r's logits read row r itself (large where the entry is 1)."""

    def forward(self, sequences):
        return 20 * sequences - 10


def independent_model(solution):
    def train_band_rnn(adjacency, n_nodes, seed=0):
        generator = torch.Generator().manual_seed(seed)
        starts = (torch.rand(len(adjacency), generator=generator) * n_nodes).long()
        sequences = solution["padded_sequences"](adjacency, n_nodes, starts, graphs.BAND_M)
        rows = torch.arange(1, adjacency.shape[1] + 1)[None, :, None]
        ones = (sequences * (rows < n_nodes[:, None, None])).sum(0)
        counted = (rows <= n_nodes[:, None, None]).sum(0)
        p = (ones + 0.5) / (counted + 1)
        return Independent(torch.log(p) - torch.log1p(-p))
    return train_band_rnn


def brief_training(solution, n_steps):
    def train_band_rnn(adjacency, n_nodes, seed=0):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        starts = (torch.rand(8, len(adjacency), generator=generator) * n_nodes).long()
        sequences = torch.cat([solution["padded_sequences"](adjacency, n_nodes, s, graphs.BAND_M) for s in starts])
        counts = n_nodes.repeat(8)
        model = solution["BandRNN"](graphs.BAND_M)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(n_steps):
            batch = torch.randint(0, len(sequences), (64,), generator=generator)
            loss = solution["band_sequence_nll"](model(sequences[batch]), sequences[batch], counts[batch]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model.eval()
    return train_band_rnn


@pytest.mark.parametrize("name", ["independent", "100_steps"])
def test_q5_near_misses_stay_above_the_target(solution, name):
    """The best position-wise model, and the reference's network trained for a fifth of its steps,
    miss the target by the checks of both kinds (the student's own NLL and the grader's)."""
    train = independent_model(solution) if name == "independent" else brief_training(solution, 100)
    namespace = answer(solution, train_band_rnn=train)
    inputs = graphs.Q5.inputs()
    value = mean_nll(inputs, graphs.q5_probe(namespace, inputs))
    print(f"{name}: {value:.3f} nats")
    assert value > graphs.HELD_OUT_NLL_MAX + 2
    assert f"held-out NLL at most {graphs.HELD_OUT_NLL_MAX:g} nats a sequence" in failed(graphs, namespace, "q5")


def test_q5_a_model_that_sees_its_own_row_fails_the_causality_check(solution):
    namespace = answer(solution, train_band_rnn=lambda adjacency, n_nodes, seed=0: SeesItsRow())
    assert failed(graphs, namespace, "q5") == ["autoregressive: row r's logits see only rows before r"]


@pytest.mark.skipif(not os.environ.get("GMCOURSE_MEASURE"), reason="re-measures q5's ten reference runs "
                    "(about 80 s of one core); set GMCOURSE_MEASURE=1")
def test_q5_target_keeps_its_margin_over_the_reference_spread(solution):
    """Seeds 0-4 on the public and the hidden grids: the worst stays at least SPREAD_MARGIN below the
    target (instructor/hidden/07_graphs.py records the measurement the target was set from)."""
    rows = []
    for name, question in (("public", graphs.Q5), ("hidden", HIDDEN_Q5)):
        inputs = question.inputs()
        for seed in range(5):
            inputs["seed"] = np.array(seed)
            outputs = graphs.q5_probe(solution, inputs)
            rows.append((name, seed, mean_nll(inputs, outputs), float(outputs["seconds"])))
            print(f"{name} seed {seed}: {rows[-1][2]:.3f} nats, {rows[-1][3]:.1f} CPU s")
    assert max(r[2] for r in rows) <= graphs.HELD_OUT_NLL_MAX - SPREAD_MARGIN, rows
    assert max(r[3] for r in rows) <= graphs.BAND_SECONDS_BUDGET / 2, rows
