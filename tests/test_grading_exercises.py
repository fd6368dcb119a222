"""Every exercise in solutions/ (those of lectures 03-08 included, by being there) is graded right by
``gmcourse grade``:

- with the documented defaults, its reference solution scores full marks and its blank exercise
  zero; the reference's slowest graded cell and its whole run stay within half the default
  limits, in full mode (the grader's kernel never sees GMCOURSE_SMOKE), so that a demo's budget
  or a slow training never decides a grade, even on a machine twice as slow as this one;
- the core hostile cases, derived from the solution itself: cells that raise (a stray one, a
  memory hog stopped by its address-space limit, an answer cell: only that answer is lost), an
  infinite loop, and a memory hog spread over processes (killed from outside: zero);
- a wrong but well-formed answer for each question fails its checks. This one runs in this
  process, on the solution's namespace (shared with test_grading_importable.py): a submission
  costs a whole notebook run in the sandbox (up to 35 s for exercises 01 and 02), and the checks,
  not the sandbox, are what it tests.

Each exercise's submissions are graded once, in two batches (the defaults, then the hostile cases with
a cell limit of their own), two exercises at a time.
"""
import csv
import importlib
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from exercise_helpers import (ROOT, SOLUTIONS, cached_solution_namespace, hidden_checks, hostile_submissions,
                              one_thread, question_functions, wrong_answers)  # noqa: F401 (one_thread: fixture)
from gmcourse.grading import Checker
from lecture_helpers import ONE_THREAD_ENV
from gmcourse.grading import sandbox
from gmcourse.grading.assign import check_module_name, graded_questions
from gmcourse.grading.batch import Limits

SANDBOXED = sandbox.detect()[0].sandboxed
DEFAULTS = Limits()
SLOWEST = re.compile(r"Time: (?P<total>[\d.]+) s in the sandbox; slowest cell: (?P<where>.+), (?P<seconds>[\d.]+) s")


def read_rows(gradebook: Path) -> dict:
    with open(gradebook, newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def grade(exercise: Path, submissions: dict, folder: Path, *options) -> tuple[int, dict]:
    """Write ``{student: notebook}`` to ``folder`` and grade them in one ``gmcourse grade`` run."""
    folder.mkdir(parents=True)
    paths = []
    for student, nb in submissions.items():
        path = folder / f"{student}.ipynb"
        path.write_text(nb if isinstance(nb, str) else nbformat.writes(nb), encoding="utf-8")
        paths.append(str(path))
    gradebook = folder / "grades.csv"
    # the installed command itself, in its own process, so that two exercises can be graded at once;
    # one thread for the grader's own checks (the sandboxes set one thread themselves)
    proc = subprocess.run([sys.executable, "-m", "gmcourse.cli", "grade", str(exercise), *paths, "-o", str(gradebook),
                           *options], capture_output=True, text=True, env=dict(os.environ, **ONE_THREAD_ENV))
    assert gradebook.exists(), f"gmcourse grade wrote no gradebook (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.returncode, read_rows(gradebook)


_GRADED: dict = {}


@pytest.fixture(scope="module", params=SOLUTIONS, ids=[s.stem for s in SOLUTIONS])
def graded(request, tmp_path_factory):
    """One exercise: reference and blank graded with the defaults, then the hostile batch. Every
    exercise is graded the first time any is asked for, two exercises at a time (each exercise's
    two batches run one after the other, each with the default two sandboxes), so both cores stay
    busy while one exercise's reference trains alone; each hostile case reads its exercise's batch
    (pytest sets a module fixture up again for every indirect parametrisation, so the batches are
    kept here)."""
    if not _GRADED:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {solution: pool.submit(grade_exercise, solution, tmp_path_factory) for solution in SOLUTIONS}
            _GRADED.update({solution: future.result() for solution, future in futures.items()})
    return _GRADED[request.param]


def grade_exercise(solution: Path, tmp_path_factory) -> dict:
    exercise = ROOT / "exercises" / solution.name
    points = graded_questions(nbformat.read(solution, as_version=4))
    folder = tmp_path_factory.mktemp(solution.stem)
    # the documented command, defaults only; where no sandbox can be made, grading itself is
    # still tested, unprotected
    code, rows = grade(exercise, {"reference": solution.read_text(encoding="utf-8"),
                                  "blank": exercise.read_text(encoding="utf-8")},
                       folder / "defaults", *([] if SANDBOXED else ["--no-sandbox"]))
    timing = SLOWEST.search((folder / "defaults" / "grades-feedback" / "reference.md").read_text())
    found = {"solution": solution, "exercise": exercise, "points": points, "code": code, "rows": rows,
             "timing": timing, "hostile": None}
    if SANDBOXED and timing:
        cases = hostile_submissions(solution)
        # an infinite loop costs one cell limit: three times the reference's slowest cell is enough
        # (the raising case runs most answers, and two exercises are graded at once)
        cell_timeout = max(15, math.ceil(3 * float(timing["seconds"])))
        code, rows = grade(exercise, {name: nb for name, (nb, _, _) in cases.items()}, folder / "hostile",
                           "--cell-timeout", str(cell_timeout))
        found["hostile"] = {"code": code, "rows": rows, "cases": cases, "cell_timeout": cell_timeout}
    return found


def test_reference_scores_full_marks_and_blank_scores_zero(graded):
    rows, points = graded["rows"], graded["points"]
    assert graded["code"] == 0
    reference, blank = rows["reference"], rows["blank"]
    assert float(reference["total"]) == sum(points.values()), reference["notes"]
    assert all(float(reference[q]) == p for q, p in points.items())
    assert float(blank["total"]) == 0 and "NotImplementedError" in blank["notes"], blank["notes"]


def test_graded_cells_fit_the_default_limits_in_full_mode(graded):
    """The grader's kernel runs the notebook in full mode; every cell it runs (all but check cells
    and grader-skip demos, plus the export cells that call the answers) took at most half the
    default per-cell limit, and the whole run at most half the per-notebook limit."""
    assert "GMCOURSE_SMOKE" not in sandbox.SANDBOX_ENV        # the sandbox starts from --clearenv
    timing = graded["timing"]
    assert timing, "the reference's feedback has no timing line"
    assert float(timing["seconds"]) <= DEFAULTS.cell_timeout / 2, (
        f"{graded['solution'].name}: {timing['where']} took {timing['seconds']} s in full mode; tag a demo "
        f"cell grader-skip, or shrink what the graded code runs (docs/authoring.md)")
    assert float(timing["total"]) <= DEFAULTS.total_timeout / 2, timing["total"]


def hostile_cases():
    """(solution, case) for every exercise: the core cases that need the sandbox."""
    found = []
    for solution in SOLUTIONS:
        for case in ["cells_raise", "infinite_loop", "fork_hog"]:
            found.append(pytest.param(solution, case, id=f"{solution.stem}-{case}"))
    return found


@pytest.mark.parametrize("graded, case", hostile_cases(), indirect=["graded"])
def test_hostile_case(graded, case):
    if graded["hostile"] is None:
        pytest.skip("no sandbox on this machine: install bubblewrap (.ci/install-bubblewrap)")
    hostile = graded["hostile"]
    _, expected, phrase = hostile["cases"][case]
    row = hostile["rows"][case]
    for qid, points in expected.items():
        if points is not None:
            assert float(row[qid]) == points, f"{case}: {qid} scored {row[qid]}, expected {points}; notes {row['notes']!r}"
    assert float(row["total"]) < sum(graded["points"].values()), row["notes"]
    assert phrase in row["notes"], f"expected {phrase!r} in the notes, got {row['notes']!r}"


def wrong_answer_cases():
    found = []
    for solution in SOLUTIONS:
        for qid, names in question_functions(solution).items():
            found.append(pytest.param(solution.stem, qid, names, id=f"{solution.stem}-{qid}"))
    return found


@pytest.mark.parametrize("stem, qid, names", wrong_answer_cases())
def test_a_wrong_but_well_formed_answer_fails_its_checks(stem, qid, names):
    """Each question's answer rebound to a wrong but well-formed version (the cell of
    exercise_helpers.WRONG_ANSWER_CELL) fails at least one public or hidden check. Run in this
    process on the solution's namespace: the checks decide, and the grader runs the same probe in
    the sandbox and the same checks (the battery proves that path, failing checks included)."""
    namespace = cached_solution_namespace(stem)
    wrong = wrong_answers(namespace, names)
    public = importlib.import_module(check_module_name(nbformat.read(ROOT / "solutions" / f"{stem}.ipynb", as_version=4)))
    modules = (public, hidden_checks(stem))
    # checks the reference itself fails here (one that needs the notebook's full-mode training) decide nothing
    right_failures = {(m, o.check) for m in modules for o in Checker(m, namespace).results(qid) if not o.passed}
    failures = [o.check for m in modules for o in Checker(m, wrong).results(qid)
                if not o.passed and (m, o.check) not in right_failures]
    assert failures, f"{stem} {qid}: the wrong answer {names} passed every check"
