"""Graphs in the widget layer: render_graph / render_graphs / graph_summary in gmcourse.widgets_core
against networkx's own values on graphs whose statistics are known by hand, and GraphSampler driven
the way a notebook user drives it (pick a model, type a seed: the picture and the statistics follow).
tests/test_colab_env.py runs this file on Colab's ipywidgets 7.7.1 too."""
import re
import time

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmcourse.data.graphs import load_graphs
from gmcourse.widgets import GraphSampler, StepScrubber
from gmcourse.widgets_core import (GRAPH_STATISTICS, graph_summary, render, render_graph, render_graphs, side_by_side,
                                   to_png)

COMMUNITY = load_graphs("community", "test")  # 100 two-community graphs of 12-20 nodes
NODE_BLUE = np.array([0x1F, 0x77, 0xB4]) / 255  # matplotlib's C0, the nodes' colour
EDGE_GREY = 0.55


def two_components():
    """K4 and a 3-node path, disjoint: the largest component is K4 (diameter 1), not the path (2)."""
    return nx.disjoint_union(nx.complete_graph(4), nx.path_graph(3))


# graph, nodes, edges, mean degree, clustering, components, diameter of the largest component
KNOWN = [
    (nx.path_graph(5), 5, 4, 8 / 5, 0.0, 1, 4),
    (nx.cycle_graph(6), 6, 6, 2.0, 0.0, 1, 3),
    (nx.complete_graph(5), 5, 10, 4.0, 1.0, 1, 1),
    (two_components(), 7, 8, 16 / 7, 4 / 7, 2, 1),
    (nx.empty_graph(3), 3, 0, 0.0, 0.0, 3, 0),
]


@pytest.mark.parametrize("graph, nodes, edges, mean_degree, clustering, components, diameter", KNOWN,
                         ids=["path", "cycle", "complete", "two-components", "no-edges"])
def test_graph_summary_of_known_graphs(graph, nodes, edges, mean_degree, clustering, components, diameter):
    summary = graph_summary(graph)
    assert tuple(summary) == GRAPH_STATISTICS
    assert summary == {"nodes": nodes, "edges": edges, "mean_degree": pytest.approx(mean_degree),
                       "clustering": pytest.approx(clustering), "components": components, "diameter": diameter}
    assert summary["clustering"] == pytest.approx(nx.average_clustering(graph))
    assert summary["components"] == nx.number_connected_components(graph)
    assert all(type(v) is (float if k in ("mean_degree", "clustering") else int) for k, v in summary.items())


def test_graph_summary_agrees_with_networkx_on_the_community_graphs():
    for graph in COMMUNITY[:20]:
        summary = graph_summary(graph)
        degrees = [d for _, d in graph.degree]
        assert summary["nodes"] == len(graph) and summary["edges"] == graph.size()
        assert summary["mean_degree"] == pytest.approx(np.mean(degrees))
        assert summary["clustering"] == pytest.approx(np.mean(list(nx.clustering(graph).values())))
        assert summary["components"] == 1 and summary["diameter"] == nx.diameter(graph)


@settings(deadline=None, max_examples=30)
@given(st.integers(1, 14), st.floats(0.0, 1.0), st.integers(0, 10**6))
def test_graph_summary_ignores_node_names_and_order(n, p, seed):
    graph = nx.gnp_random_graph(n, p, seed=seed)
    order = np.random.default_rng(seed).permutation(n)  # node u is renamed f"v{order[u]}" ...
    renamed = nx.Graph()
    renamed.add_nodes_from(f"v{i}" for i in range(n))  # ... and the nodes are inserted in another order
    renamed.add_edges_from((f"v{order[u]}", f"v{order[v]}") for u, v in graph.edges)
    summary = graph_summary(graph)
    assert graph_summary(renamed) == pytest.approx(summary)
    assert summary["mean_degree"] * n == pytest.approx(2 * summary["edges"])
    assert 0 <= summary["clustering"] <= 1 and 1 <= summary["components"] <= n and summary["diameter"] < n


def test_graph_summary_takes_the_widest_of_equally_large_components():
    triangle_then_path = nx.disjoint_union(nx.complete_graph(3), nx.path_graph(3))
    path_then_triangle = nx.disjoint_union(nx.path_graph(3), nx.complete_graph(3))
    assert graph_summary(triangle_then_path)["diameter"] == graph_summary(path_then_triangle)["diameter"] == 2


def test_graph_summary_of_a_graph_without_nodes_is_all_zero():
    assert graph_summary(nx.Graph()) == dict.fromkeys(GRAPH_STATISTICS, 0)


@pytest.mark.parametrize("draw", [graph_summary, render_graph], ids=["graph_summary", "render_graph"])
def test_graph_functions_reject_what_is_not_an_undirected_simple_graph(draw):
    with pytest.raises(ValueError, match=r"graph must be a networkx graph \(networkx.Graph\), got ndarray"):
        draw(np.eye(3))
    with pytest.raises(ValueError, match="graph must be an undirected simple graph .* got DiGraph"):
        draw(nx.DiGraph([(0, 1)]))
    with pytest.raises(ValueError, match="graph must be an undirected simple graph .* got MultiGraph"):
        draw(nx.MultiGraph([(0, 1), (0, 1)]))


def colour_share(picture: np.ndarray, colour) -> float:
    """The share of pixels within 0.05 of a colour (an RGB triple or a grey level)."""
    return float((np.abs(picture - np.asarray(colour, dtype=np.float32)) < 0.05).all(-1).mean())


def test_render_graph_draws_nodes_and_edges_the_same_way_every_time():
    graph = COMMUNITY[0]
    picture = render_graph(graph)
    assert picture.shape == (240, 240, 3) and picture.dtype == np.float32
    assert 0 <= picture.min() and picture.max() <= 1
    np.testing.assert_array_equal(render_graph(graph), picture)  # a seeded layout
    assert colour_share(picture, NODE_BLUE) > 0.005 and colour_share(picture, EDGE_GREY) > 0.01
    assert not np.array_equal(render_graph(graph, layout_seed=1), picture)
    assert not np.array_equal(render_graph(COMMUNITY[1]), picture)
    assert not np.array_equal(render_graph(graph, title="community"), picture)
    assert render_graph(graph, size_px=120).shape == (120, 120, 3)
    no_edges = render_graph(nx.empty_graph(graph.number_of_nodes()))
    assert colour_share(no_edges, NODE_BLUE) > 0.005 and colour_share(no_edges, EDGE_GREY) == 0
    assert (render_graph(nx.Graph()) == 1).all()  # nothing to draw: a white picture
    assert to_png(picture).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="size_px must be an int >= 32, got 8"):
        render_graph(graph, size_px=8)


def test_render_graph_of_a_20_node_graph_takes_under_a_fifth_of_a_second():
    graph = next(g for g in COMMUNITY if g.number_of_nodes() == 20)
    render_graph(graph)  # warm-up: fonts, caches
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        render_graph(graph)
        seconds.append(time.perf_counter() - start)
    assert min(seconds) < 0.2, seconds  # about 0.02 s on an idle core


def test_render_graphs_tiles_the_graphs_in_rows_of_ncol():
    graphs = COMMUNITY[:5]
    grid = render_graphs(graphs, ncol=2, size_px=100, gap=6)
    assert grid.shape == (3 * 100 + 2 * 6, 2 * 100 + 6, 3)
    for i, graph in enumerate(graphs):
        r, c = divmod(i, 2)
        panel = grid[r * 106:r * 106 + 100, c * 106:c * 106 + 100]
        np.testing.assert_array_equal(panel, render_graph(graph, size_px=100))
    assert (grid[212:, 100:] == 1).all()  # the short last row is padded with white
    np.testing.assert_array_equal(render_graphs(graphs[:3], ncol=4, size_px=100),
                                  side_by_side([render_graph(g, size_px=100) for g in graphs[:3]]))
    np.testing.assert_array_equal(render_graphs(graphs[0], size_px=100), render_graph(graphs[0], size_px=100))
    titled = render_graphs(graphs[:2], titles=["a", "b"], size_px=100)
    np.testing.assert_array_equal(titled[:, :100], render_graph(graphs[0], title="a", size_px=100))
    with pytest.raises(ValueError, match=r"titles must be one str per graph \(2\)"):
        render_graphs(graphs[:2], titles=["a"])
    with pytest.raises(ValueError, match="ncol must be an int >= 1, got 0"):
        render_graphs(graphs, ncol=0)
    with pytest.raises(ValueError, match="non-empty list of networkx graphs"):
        render_graphs([])


def test_render_draws_a_graph_or_a_list_of_graphs_and_names_a_stray_item():
    graph = COMMUNITY[0]
    np.testing.assert_array_equal(render(graph), render_graph(graph, size_px=200))
    np.testing.assert_array_equal(render(COMMUNITY[:3], nrow=2), render_graphs(COMMUNITY[:3], ncol=2))
    with pytest.raises(ValueError, match=r"graphs\[1\] must be a networkx graph .* got int"):
        render([graph, 3])
    with pytest.raises(ValueError, match=r"got shape \(0,\)"):
        render([])


# ---------------------------------------------------------------- GraphSampler, driven like a user

def fake_models(calls: list | None = None, n_graphs: int = 1):
    """sample_fn(model, seed) for two stand-in models: "data" hands back a test graph picked by the
    seed, "gnp" an Erdős–Rényi graph of the same size and edge density drawn from the seed."""
    def sample_fn(model, seed):
        if calls is not None:
            calls.append((model, seed))
        graphs = []
        for i in range(n_graphs):
            graph = COMMUNITY[(seed + i) % len(COMMUNITY)]
            if model == "gnp":
                graph = nx.gnp_random_graph(len(graph), nx.density(graph), seed=seed * 100 + i)
            graphs.append(graph)
        return graphs[0] if n_graphs == 1 else graphs
    return sample_fn


def table(html: str) -> list[list[str]]:
    """The cells of the statistics panel, row by row."""
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", html)]


def test_graph_sampler_follows_its_model_and_seed_and_shows_the_statistics():
    calls = []
    sampler = GraphSampler(fake_models(calls), models=("data", "gnp"), seed=3)
    assert calls == [("data", 3)]
    graph = COMMUNITY[3]
    np.testing.assert_array_equal(sampler.image, render_graph(graph, size_px=200))
    assert sampler.graphs == [graph] and sampler.summaries == [graph_summary(graph)]
    s = graph_summary(graph)
    assert table(sampler.stats.value) == [
        ["", "nodes", "edges", "mean degree", "clustering", "components", "diameter"],
        ["graph", str(s["nodes"]), str(s["edges"]), f"{s['mean_degree']:.2f}", f"{s['clustering']:.2f}", "1",
         str(s["diameter"])]]
    assert sampler.widget.children[0] is sampler.model_picker and sampler.widget.children[-1] is sampler.stats
    pictures, stats, pngs = [sampler.image.copy()], [sampler.stats.value], [bytes(sampler.view.value)]
    for control, value in ((sampler.model_picker, "gnp"), (sampler.seed_box, 4), (sampler.model_picker, "data")):
        control.value = value  # what picking a model / typing a seed in the browser does
        pictures.append(sampler.image.copy())
        stats.append(sampler.stats.value)
        pngs.append(bytes(sampler.view.value))
    assert calls == [("data", 3), ("gnp", 3), ("gnp", 4), ("data", 4)]  # one sample per change
    assert all(not np.array_equal(a, b) for a, b in zip(pictures, pictures[1:]))
    assert all(a != b for a, b in zip(stats, stats[1:])) and all(a != b for a, b in zip(pngs, pngs[1:]))
    assert sampler.graphs == [COMMUNITY[4]]
    sampler.next_seed()  # the "new seed" button
    assert sampler.seed_box.value == 5 and calls[-1] == ("data", 5)
    sampler.seed_box.value = 3  # the same model and seed: the same picture and statistics
    np.testing.assert_array_equal(sampler.image, pictures[0])
    assert sampler.stats.value == stats[0]


def test_graph_sampler_draws_a_list_numbered_with_a_row_of_statistics_each_and_their_mean():
    sampler = GraphSampler(fake_models(n_graphs=3), models=["data", "gnp"], model="gnp", ncol=2, size_px=120)
    graphs = sampler.graphs
    assert len(graphs) == 3 and sampler.model_picker.value == "gnp"
    np.testing.assert_array_equal(sampler.image, render_graphs(graphs, ncol=2, size_px=120,
                                                               titles=["graph 1", "graph 2", "graph 3"]))
    rows = table(sampler.stats.value)
    assert [row[0] for row in rows] == ["", "graph 1", "graph 2", "graph 3", "mean"]
    summaries = [graph_summary(g) for g in graphs]
    assert sampler.summaries == summaries
    assert rows[-1][1:] == [f"{np.mean([s[k] for s in summaries]):.2f}" for k in GRAPH_STATISTICS]


def test_graph_sampler_layout_seed_and_scale_change_only_the_drawing():
    plain = GraphSampler(fake_models(), models=["data"])
    moved = GraphSampler(fake_models(), models=["data"], layout_seed=5, scale=2)
    assert moved.image.shape == plain.image.shape and not np.array_equal(moved.image, plain.image)
    assert moved.summaries == plain.summaries and moved.stats.value == plain.stats.value


def test_graph_sampler_rejects_bad_arguments_saying_what_it_expected():
    sample_fn = fake_models()
    with pytest.raises(ValueError, match="sample_fn must be a callable, got NoneType"):
        GraphSampler(None, models=["data"])
    with pytest.raises(ValueError, match=r"models must be distinct non-empty strs .* got \(\)"):
        GraphSampler(sample_fn, models=[])
    with pytest.raises(ValueError, match=r"models must be distinct non-empty strs .* got \('data', 'data'\)"):
        GraphSampler(sample_fn, models=["data", "data"])
    with pytest.raises(ValueError, match=r"models must be distinct non-empty strs .* got \(1, 2\)"):
        GraphSampler(sample_fn, models=[1, 2])
    with pytest.raises(ValueError, match=r"model must be one of models \('data', 'gnp'\), got 'vae'"):
        GraphSampler(sample_fn, models=["data", "gnp"], model="vae")
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2147483647\], got -1"):
        GraphSampler(sample_fn, models=["data"], seed=-1)
    with pytest.raises(ValueError, match="ncol must be an int >= 1, got 0"):
        GraphSampler(sample_fn, models=["data"], ncol=0)
    with pytest.raises(ValueError, match="size_px must be an int >= 32, got 10"):
        GraphSampler(sample_fn, models=["data"], size_px=10)
    with pytest.raises(ValueError, match="layout_seed must be an int, got 0.5"):
        GraphSampler(sample_fn, models=["data"], layout_seed=0.5)
    with pytest.raises(ValueError, match="scale must be an int >= 1, got 0"):
        GraphSampler(sample_fn, models=["data"], scale=0)
    with pytest.raises(ValueError, match="sample_fn must return a networkx graph or a non-empty list of them, "
                                         "got Tensor"):
        GraphSampler(lambda model, seed: torch.ones(4, 4), models=["adjacency"])
    with pytest.raises(ValueError, match="non-empty list of them, got an empty list"):
        GraphSampler(lambda model, seed: [], models=["nothing"])
    with pytest.raises(ValueError, match="must be an undirected simple graph .* got DiGraph"):
        GraphSampler(lambda model, seed: nx.DiGraph([(0, 1)]), models=["directed"])
    one = GraphSampler(sample_fn, models="data")  # one model may be named by a plain str
    assert list(one.model_picker.options) == ["data"]


def test_other_widgets_draw_graphs_too():
    """The widget layer draws a graph or a list of graphs wherever it draws images: a scrubber through
    the steps of a growing graph shows the graph of each step."""
    frames = [nx.path_graph(k) for k in range(2, 7)]  # a path growing a node per step
    scrubber = StepScrubber(frames)
    np.testing.assert_array_equal(scrubber.image, render(frames[0]))
    scrubber.step_slider.value = 4
    np.testing.assert_array_equal(scrubber.image, render(frames[4]))
    several = StepScrubber(frame_fn=lambda step: frames[:step + 1], n_steps=5, nrow=3)
    several.step_slider.value = 3
    np.testing.assert_array_equal(several.image, render_graphs(frames[:4], ncol=3))
