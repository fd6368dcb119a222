"""The committed lecture 07 (deep graph generation): its printed tables are those of its results file,
and its figures meet the issue's targets. Reads the committed outputs; runs nothing heavy (the pieces
themselves: tests/test_graphs.py). That it is executed top to bottom, small and prose first:
tests/test_lectures_committed.py."""
import re
from pathlib import Path

import pytest

from lecture_helpers import lecture_fixtures, outputs_text

LECTURE = Path(__file__).resolve().parents[1] / "lectures" / "07_graphs.ipynb"
MODELS = {"training graphs (the floor)": "floor", "Erdős–Rényi": "erdos_renyi", "GraphVAE": "graph_vae",
          "GraphRNN": "graph_rnn"}
KINDS = ("degree", "clustering", "spectral")

nb, figures = lecture_fixtures(LECTURE)


def test_printed_discrepancy_table_is_the_results_file(nb, figures):
    text = outputs_text(nb)
    for label, key in MODELS.items():
        line = re.search(re.escape(label) + r"\s+(-?\d+\.\d{4})\s+(-?\d+\.\d{4})\s+(-?\d+\.\d{4})", text)
        assert line, f"the MMD table has no row {label!r}"
        for kind, printed in zip(KINDS, line.groups()):
            assert float(printed) == pytest.approx(figures[f"mmd_{kind}_{key}"], abs=6e-5)


def test_printed_likelihoods_are_the_results_file(nb, figures):
    text = outputs_text(nb)
    exact = re.search(r"Erdős–Rényi, exact \(eq\. 1\)\s+(\d+\.\d\d)", text)
    assert exact and float(exact.group(1)) == pytest.approx(figures["nll_erdos_renyi"], abs=6e-3)
    for k in (1, 4, 16, 64):
        line = re.search(rf"K = {k}\s+<= (\d+\.\d\d)", text)
        assert line and float(line.group(1)) == pytest.approx(figures[f"nll_bound_graph_rnn_k{k}"], abs=6e-3)
    vae = re.search(r"GraphVAE, -ELBO in the canonical order\s+<= (\d+\.\d\d)", text)
    assert vae and float(vae.group(1)) == pytest.approx(figures["nll_bound_graph_vae"], abs=6e-3)


def test_the_sequential_model_beats_the_baseline_five_times_on_degree_and_clustering(figures):
    """Issue 16: GraphRNN's degree and clustering MMDs at least 5x lower than the Erdős–Rényi
    baseline's on community graphs (the one-shot model's figures next to them)."""
    for kind in ("degree", "clustering"):
        assert figures[f"mmd_{kind}_erdos_renyi"] >= 5 * max(figures[f"mmd_{kind}_graph_rnn"], 0.0), kind
        assert f"mmd_{kind}_graph_vae" in figures


def test_graph_rnn_bound_tightens_with_more_orders(figures):
    bounds = [figures[f"nll_bound_graph_rnn_k{k}"] for k in (1, 4, 16, 64)]
    assert all(b >= a_next - 1e-9 for b, a_next in zip(bounds, bounds[1:]))  # nats: lower is tighter


def test_the_mask_check_sums_to_one_and_the_floor_is_the_floor(figures):
    assert figures["mask_check_total"] == pytest.approx(1.0, abs=1e-5)
    for kind in KINDS:  # training against test graphs: the unbiased MMD of one distribution is ~0
        assert abs(figures[f"mmd_{kind}_floor"]) < figures[f"mmd_{kind}_erdos_renyi"] / 5


def test_sampling_was_timed(figures):
    for key in ("erdos_renyi", "graph_vae", "graph_rnn"):
        assert figures[f"graphs_per_second_{key}"] > 0
    assert figures["graphs_per_second_graph_vae"] > figures["graphs_per_second_graph_rnn"]  # one call against O(N^2)


def test_what_the_text_says_of_the_likelihoods(figures):
    """Section 6: GraphRNN's one-order bound is below the baseline's exact NLL, which is below the
    GraphVAE's bound."""
    assert figures["nll_bound_graph_rnn_k1"] < figures["nll_erdos_renyi"] < figures["nll_bound_graph_vae"]


def test_what_the_text_says_of_the_samples(figures):
    """Section 7's reading of the table: the baseline's degree discrepancy is the smallest of its
    three and its clustering the largest of all; GraphRNN's samples are all connected and a little
    less clustered than the test graphs; the GraphVAE is between on clustering, worse than the
    baseline on degrees, with a wider spread of degrees than the test graphs."""
    er = {kind: figures[f"mmd_{kind}_erdos_renyi"] for kind in KINDS}
    assert er["degree"] == min(er.values())
    assert er["clustering"] == max(figures[f"mmd_clustering_{key}"] for key in MODELS.values())
    assert er["spectral"] == max(figures[f"mmd_spectral_{key}"] for key in MODELS.values())
    assert figures["connected_graph_rnn"] == 1.0
    assert figures["clustering_graph_rnn"] < figures["clustering_test"]
    assert figures["mmd_clustering_graph_rnn"] < figures["mmd_clustering_graph_vae"] < er["clustering"]
    assert figures["mmd_degree_graph_vae"] > er["degree"]
    assert figures["degree_sd_graph_vae"] > figures["degree_sd_test"]
    assert figures["connected_graph_vae"] < 1.0


def test_the_bound_is_still_moving_at_64_orders_and_graph_rnn_is_at_the_floor_on_degrees(figures):
    assert figures["nll_bound_graph_rnn_k16"] - figures["nll_bound_graph_rnn_k64"] > 0.5
    assert abs(figures["mmd_degree_graph_rnn"]) < 0.005 and abs(figures["mmd_degree_floor"]) < 0.005
    assert figures["edges_graph_rnn"] < figures["edges_test"]
