"""Machine-readable lecture results: written atomically with the run's mode, time and device;
names and values checked; read back by tests and the README."""
import json

import pytest

from gmcourse import results


def test_save_and_load_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("GMCOURSE_RESULTS", str(tmp_path))
    path = results.save_results("07_graphs", {"mmd_degree": 0.01, "epochs": 3}, seconds=12.34)
    assert path == tmp_path / "07_graphs.results.json" and not list(tmp_path.glob("*.tmp"))
    record = results.load_results("07_graphs")
    assert record["figures"] == {"mmd_degree": 0.01, "epochs": 3}
    assert record["seconds"] == 12.3 and record["mode"] in ("smoke", "full") and record["device"]
    assert json.loads(path.read_text()) == record


@pytest.mark.parametrize("lecture, figures, match", [
    ("graphs", {"a": 1.0}, "lecture must be a notebook's name"),
    ("07_graphs", {}, "non-empty dict"),
    ("07_graphs", {"bad name": 1.0}, "identifiers"),
    ("07_graphs", {"a": float("nan")}, "finite number"),
    ("07_graphs", {"a": "95 nats"}, "finite number"),
])
def test_bad_figures_are_refused(tmp_path, monkeypatch, lecture, figures, match):
    monkeypatch.setenv("GMCOURSE_RESULTS", str(tmp_path))
    with pytest.raises(ValueError, match=match):
        results.save_results(lecture, figures, seconds=1.0)


def test_missing_results_say_where_they_were_expected(tmp_path, monkeypatch):
    monkeypatch.setenv("GMCOURSE_RESULTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="07_graphs.results.json"):
        results.load_results("07_graphs")
