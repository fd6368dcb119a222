"""Test-wide settings: every notebook kernel started by nbval inherits smoke mode, Agg, a fresh
run cache (no training result of an earlier test session is reused) and a throwaway folder for
the lectures' results files (the committed, full-mode ones are never overwritten)."""
import os
import tempfile

os.environ.setdefault("GMCOURSE_SMOKE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GMCOURSE_RUNS", tempfile.mkdtemp(prefix="gmcourse-runs-"))
os.environ.setdefault("GMCOURSE_RESULTS", tempfile.mkdtemp(prefix="gmcourse-results-"))

import functools  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "tests"))
from lecture_helpers import CHROMIUM, lectures_with_widgets  # noqa: E402

LECTURES = Path(__file__).parent / "lectures"


@functools.cache
def browser_run() -> frozenset:
    """The lectures tests/test_browser.py runs top to bottom in smoke mode in JupyterLab (no cell may
    raise): those with widgets, where Chromium is installed."""
    return frozenset(p.resolve() for p in lectures_with_widgets(LECTURES)) if CHROMIUM.exists() else frozenset()


def pytest_ignore_collect(collection_path, config):
    """nbval does not run a lecture the browser test runs, unless it is named on the command line."""
    path = Path(collection_path).resolve()
    if path.suffix != ".ipynb" or path.parent != LECTURES.resolve() or path not in browser_run():
        return None
    named = {Path(arg.split("::")[0]).resolve() for arg in config.args}
    return None if path in named else True
