"""Colab's versions inside `make test`: the cheap Colab environment of colab/check.py (`lite`:
Colab's ipywidgets 7.7.1, numpy 2.0.2, matplotlib 3.10.0, IPython 7.34, ipykernel 6.17.1, ... in
front of the lock's CPU torch) runs the widget tests, the Fashion-MNIST download tests and every
notebook that shows a widget, in smoke mode, in a real kernel.

The environment is built on first use (about a minute and a half on 2 cores, from PyPI) and
cached in .venv/colab-lite; `make colab-check` runs Colab's exact versions (Python 3.12, torch
2.9.0) on every notebook.
"""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "colab"))
import check as colab_check  # noqa: E402
from lecture_helpers import ONE_THREAD_ENV, shows_widgets  # noqa: E402

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]


NOTEBOOKS = sorted(p for d in colab_check.NOTEBOOK_DIRS for p in (ROOT / d).glob("*.ipynb"))
WIDGET_NOTEBOOKS = [p for p in NOTEBOOKS if shows_widgets(p)]


@pytest.fixture(scope="module")
def lite_python() -> Path:
    return colab_check.build_lite()


def test_the_lite_environment_has_colabs_versions_and_the_locks_torch(lite_python):
    colab, lock = colab_check.colab_versions(), colab_check.lock_versions()
    got = colab_check.versions_in(lite_python, colab_check.LITE + ["torch"])
    assert {n: got[n] for n in colab_check.LITE} == {n: colab[colab_check.norm(n)] for n in colab_check.LITE}
    assert got["torch"].split("+")[0] == lock["torch"]
    imported = subprocess.run([lite_python, "-c", "import ipywidgets, numpy; print(ipywidgets.__version__, "
                               "numpy.__version__)"], capture_output=True, text=True, check=True).stdout.split()
    assert imported == [colab["ipywidgets"], colab["numpy"]]  # Colab's, not the lock's, win on import


def test_widget_and_fashion_mnist_download_tests_pass_on_colabs_versions(lite_python):
    proc = subprocess.run([lite_python, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-o", "addopts=",
                           "tests/test_widgets.py", "tests/test_widgets_graph.py", "tests/test_data_download.py",
                           "-k", "test_widgets or fashion"],
                          cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, GMCOURSE_SMOKE="1"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = [line.split(" ")[0] for line in proc.stdout.splitlines() if " PASSED" in line]
    assert any("test_widgets.py::test_every_widget_shows_its_box" in t for t in passed), proc.stdout[-2000:]
    assert any("test_widgets_graph.py::test_graph_sampler_follows" in t for t in passed), proc.stdout[-2000:]
    assert any("test_widgets.py::test_family_picker_follows" in t for t in passed), proc.stdout[-2000:]
    assert any("test_data_download.py::test_fashion_mnist_downloads" in t for t in passed), proc.stdout[-2000:]
    assert "SKIPPED" not in proc.stdout


TQDM_BAR = re.compile(r"^[^|]*\d+%\|.*\| \d+/\d+ \[")  # "epochs:  40%|####      | 4/10 [00:01<00:02, ...]"


def is_course_widget(output: dict) -> bool:
    """A widget view that is not a tqdm progress bar: fit's bar is an ipywidget too, but it shows only
    while a run trains, not when the run cache hands back a finished run, so it cannot be compared."""
    data = output.get("data", {})
    return WIDGET_VIEW in data and not TQDM_BAR.match(str(data.get("text/plain", "")))


def test_progress_bars_are_not_counted_as_widgets():
    bar = {"data": {WIDGET_VIEW: {}, "text/plain": "epochs:   0%|          | 0/35 [00:00<?, ?it/s]"}}
    box = {"data": {WIDGET_VIEW: {}, "text/plain": "VBox(children=(IntSlider(value=10),))"}}
    assert not is_course_widget(bar) and is_course_widget(box) and not is_course_widget({"data": {}})


def test_some_notebook_shows_widgets():
    assert WIDGET_NOTEBOOKS, "no notebook imports gmcourse.widgets: the widget-cell check below would be empty"


@pytest.fixture(scope="module")
def lite_runs(lite_python, tmp_path_factory) -> dict:
    """Every notebook that shows a widget, run on Colab's versions in smoke mode, two at a time (a
    smoke run is mostly one busy core): {path: (result, executed copy)}."""
    env = dict(os.environ, GMCOURSE_SMOKE="1", **ONE_THREAD_ENV)
    env.pop("VIRTUAL_ENV", None)

    def run(path: Path):
        out = tmp_path_factory.mktemp(path.stem) / path.name
        return colab_check.run_notebook(lite_python, path, out, path.parent, env), out

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(WIDGET_NOTEBOOKS, pool.map(run, WIDGET_NOTEBOOKS)))


@pytest.mark.parametrize("path", WIDGET_NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_with_widgets_runs_and_shows_them_on_colabs_versions(lite_runs, path):
    result, executed_copy = lite_runs[path]
    assert result["ok"], result["error"]
    executed = code_cells(executed_copy)
    shown = [i for i, c in enumerate(executed) if any(is_course_widget(o) for o in c["outputs"])]
    committed = [i for i, c in enumerate(code_cells(path)) if any(is_course_widget(o) for o in c.get("outputs", []))]
    # a committed lecture is executed: the same cells must show a widget here; otherwise at least one
    assert shown == committed if committed else shown, f"widget views in cells {shown}, committed {committed}"
