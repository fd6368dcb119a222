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


def test_committed_results_are_read_from_the_checkout_wherever_this_run_writes(tmp_path, monkeypatch):
    """A lecture citing another lecture's figures reads the committed full-mode run, not the
    (smoke-mode, or absent) results of the current run."""
    monkeypatch.setenv("GMCOURSE_RESULTS", str(tmp_path))
    results.save_results("05_ebm", {"toy_cd_kl_8_gaussians": 99.0}, seconds=1.0)  # this run's own file
    committed = json.loads((results._CHECKOUT / "lectures" / "05_ebm.results.json").read_text())
    assert results.committed_results("05_ebm") == committed
    assert results.committed_results("05_ebm")["figures"]["toy_cd_kl_8_gaussians"] != 99.0
    assert results.load_results("05_ebm")["figures"]["toy_cd_kl_8_gaussians"] == 99.0
    with pytest.raises(FileNotFoundError, match="09_none.results.json"):
        results.committed_results("09_none")
