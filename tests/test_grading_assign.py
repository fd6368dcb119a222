"""assign: exercises are regenerated from solutions and must match the committed copies."""
from pathlib import Path

import nbformat
import pytest

from gmcourse.grading.assign import AuthoringError, exercise_text, graded_questions, stub_source

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[s.name for s in SOLUTIONS])
def test_committed_exercise_matches_regeneration(solution):
    committed = ROOT / "exercises" / solution.name
    assert committed.exists(), f"missing {committed}: run `gmcourse assign {solution.relative_to(ROOT)}`"
    expected, actual = exercise_text(solution), committed.read_text(encoding="utf-8")
    assert actual == expected, (f"{committed.name} drifted from its solution; "
                                f"run `gmcourse assign {solution.relative_to(ROOT)}`")


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[s.name for s in SOLUTIONS])
def test_exercise_has_no_answers_and_keeps_points(solution):
    sol = nbformat.read(solution, as_version=4)
    ex = nbformat.reads(exercise_text(solution), as_version=4)
    assert graded_questions(ex) == graded_questions(sol) and graded_questions(ex)
    for s_cell, e_cell in zip(sol.cells, ex.cells):
        assert "BEGIN SOLUTION" not in e_cell.source
        if e_cell.cell_type == "code":
            assert e_cell.outputs == [] and e_cell.execution_count is None
        if "BEGIN SOLUTION" in s_cell.source:
            answer = s_cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            code = [l.strip() for l in answer.splitlines() if l.strip() and not l.strip().startswith("#")]
            assert not any(line in e_cell.source for line in code), "answer code leaked"
            assert "raise NotImplementedError(" in e_cell.source


def test_stub_keeps_indentation_and_hint():
    source = ("def f(x):\n    '''doc'''\n    ### BEGIN SOLUTION\n    ### HINT: use torch.exp\n"
              "    return x.exp()\n    ### END SOLUTION\n")
    stub, top_level = stub_source(source, "q9")
    assert stub == "def f(x):\n    '''doc'''\n    raise NotImplementedError('q9: use torch.exp')"
    assert not top_level


def test_top_level_stub_is_flagged_to_raise():
    stub, top_level = stub_source("### BEGIN SOLUTION\ny = 2\n### END SOLUTION\nprint(y)", "q1")
    assert top_level and stub.startswith("raise NotImplementedError('q1: write your answer here')")


@pytest.mark.parametrize("source", ["### BEGIN SOLUTION\nx = 1\n",
                                    "x = 1\n### END SOLUTION\n",
                                    "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n"])
def test_unbalanced_markers_are_refused(source):
    with pytest.raises(AuthoringError):
        stub_source(source, "q1")


def test_duplicate_question_ids_are_refused():
    nb = nbformat.v4.new_notebook()
    for _ in range(2):
        nb.cells.append(nbformat.v4.new_code_cell("x = 1", metadata={"gmcourse": {"question": "q1", "points": 1}}))
    with pytest.raises(AuthoringError, match="more than one cell"):
        graded_questions(nb)
