"""Shared by the exercise-check tests: a solution's graded answers, its hidden checks, failures."""
from pathlib import Path

import nbformat

from gmcourse.grading import Checker
from gmcourse.grading.batch import load_hidden_checks

ROOT = Path(__file__).resolve().parents[1]


def graded_answers(name: str, namespace: dict, question_ids: list[str]) -> dict:
    """Run the graded cells of solutions/<name>.ipynb in ``namespace``, after checking their ids."""
    nb = nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4)
    graded = [cell for cell in nb.cells if "question" in cell.metadata.get("gmcourse", {})]
    assert [cell.metadata["gmcourse"]["question"] for cell in graded] == question_ids
    for cell in graded:
        exec(cell.source, namespace)
    return namespace


def hidden_checks(name: str):
    """The module instructor/hidden/<name>.py, loaded by path (it is not part of the package)."""
    return load_hidden_checks(ROOT / "instructor" / "hidden" / f"{name}.py")


def failed(checks, namespace, qid):
    """Names of the checks of question ``qid`` that the answers in ``namespace`` fail."""
    return [o.check for o in Checker(checks, namespace).results(qid) if not o.passed]
