"""Test-wide settings: every notebook kernel started by nbval inherits smoke mode, Agg, a fresh
run cache (no training result of an earlier test session is reused) and a throwaway folder for
the lectures' results files (the committed, full-mode ones are never overwritten)."""
import os
import tempfile

os.environ.setdefault("GMCOURSE_SMOKE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GMCOURSE_RUNS", tempfile.mkdtemp(prefix="gmcourse-runs-"))
os.environ.setdefault("GMCOURSE_RESULTS", tempfile.mkdtemp(prefix="gmcourse-results-"))

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "tests"))
from lecture_helpers import CHROMIUM, lectures_with_widgets  # noqa: E402

# A lecture with widgets runs top to bottom in smoke mode in tests/test_browser.py (JupyterLab;
# no cell may raise), so nbval does not run it a second time, unless that test cannot run (no
# Chromium) or the lecture is named on the command line.
BROWSER_RUN = set(lectures_with_widgets(Path(__file__).parent / "lectures")) if CHROMIUM.exists() else set()


def pytest_ignore_collect(collection_path, config):
    path = Path(collection_path).resolve()
    named = {Path(arg.split("::")[0]).resolve() for arg in config.args}
    if path in BROWSER_RUN and path not in named:
        return True
    return None
