"""Every lecture's results file: committed from a full-mode run, read by the README's table;
lecture 00's figures are consistent with what it teaches (the NLL never below the entropy)."""
from pathlib import Path

import pytest

from gmcourse.results import HEADLINES, TABLE_BEGIN, TABLE_END, load_results, results_table

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("lecture", LECTURES, ids=lambda p: p.stem)
def test_every_lecture_commits_full_mode_results(lecture):
    record = load_results(lecture.stem, lecture.with_name(f"{lecture.stem}.results.json"))
    assert record["lecture"] == lecture.stem and record["mode"] == "full"
    assert record["seconds"] <= 10 * 60 or record["device"] != "cpu", "a lecture's full mode must fit in 10 min on a CPU"


def test_every_lecture_has_headlines_in_the_readme():
    assert {p.stem for p in LECTURES} <= set(HEADLINES)


def test_readme_table_is_the_results_files():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index(TABLE_BEGIN):readme.index(TABLE_END) + len(TABLE_END)]
    assert table == results_table(), "run `python -m gmcourse.results` to refresh the README's table"


def test_intro_figures_respect_the_entropy():
    figures = load_results("00_intro", ROOT / "lectures" / "00_intro.results.json")["figures"]
    entropy = figures["eight_gaussians_entropy"]
    assert figures["gaussian_test_nll"] > figures["mixture8_test_nll"] > entropy - 0.02
    # eight components fit eight gaussians: within 0.1 nats of the entropy (one Gaussian: > 1.5 away)
    assert figures["mixture8_test_nll"] - entropy < 0.1 < 1.5 < figures["gaussian_test_nll"] - entropy
