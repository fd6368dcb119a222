"""The grading battery: submissions made from solutions/00_intro by small edits, graded in one
parallel batch through the ``gmcourse grade`` command, each with the grade it must get."""
import copy
import csv
import time
from pathlib import Path

import nbformat
import pytest

from gmcourse.cli import main
from gmcourse.grading.isolation import detect

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "00_intro.ipynb"
EXERCISE = ROOT / "exercises" / "00_intro.ipynb"
FULL = {"q1": 2, "q2": 2, "q3": 3}
ISOLATED = detect().mounts_private

WRONG_ANSWERS = '''
def diag_gaussian_log_prob(x, mu, log_var):
    return -0.5 * ((x - mu) ** 2).sum(-1) + 0.0 * log_var.sum()

def mixture_log_prob(x, logits, mu, log_var):
    return diag_gaussian_log_prob(x[:, None, :], mu, log_var).max(1).values + logits.sum() * 0

def fit_mixture(x, n_components, n_steps=500, lr=0.05, seed=0):
    return torch.zeros(n_components), x[:n_components].clone(), torch.zeros(n_components, x.shape[1])
'''

MONKEYPATCH = '''
import numpy, torch
import gmcourse.grading.evaluate, gmcourse.grading.expect, gmcourse.checks.intro as intro
torch.allclose = lambda *args, **kwargs: True
numpy.allclose = lambda *args, **kwargs: True
numpy.testing.assert_allclose = lambda *args, **kwargs: None
for name in ("expect_close", "expect_shape", "expect_finite", "expect_less"):
    setattr(gmcourse.grading.expect, name, lambda *args, **kwargs: None)
    setattr(intro, name, lambda *args, **kwargs: None)
gmcourse.grading.evaluate.run_checks = lambda question, *args: []
'''

READ_SOLUTIONS = f'''
import json, pathlib
for path in [pathlib.Path({str(SOLUTION)!r}), pathlib.Path({str(ROOT / "instructor" / "hidden" / "00_intro.py")!r})]:
    print(path, path.exists())
nb = json.loads(pathlib.Path({str(SOLUTION)!r}).read_text())
for cell in nb["cells"]:
    if "BEGIN SOLUTION" in "".join(cell["source"]):
        exec("".join(cell["source"]))
'''

TAMPER_FILE = ROOT / "gmcourse" / "checks" / "_tampered_by_a_student.py"


def cell_index(nb, qid):
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("gmcourse", {}).get("question") == qid)


def after(nb, qid, source):
    nb.cells.insert(cell_index(nb, qid) + 1, nbformat.v4.new_code_cell(source))
    return nb


def submissions(gradebook: Path) -> dict:
    """name -> (notebook or raw text, expected scores, expected phrase in the notes)."""
    sol, ex = nbformat.read(SOLUTION, as_version=4), nbformat.read(EXERCISE, as_version=4)
    cases = {"solution": (sol, FULL, ""), "untouched": (ex, {"q1": 0, "q2": 0, "q3": 0}, "NotImplementedError")}

    wrong = copy.deepcopy(sol)
    wrong.cells[cell_index(wrong, "q2")].source = wrong.cells[cell_index(wrong, "q2")].source.replace(
        "torch.log_softmax(logits, dim=0)", "torch.softmax(logits, dim=0)")
    cases["wrong_q2"] = (wrong, {"q1": 2, "q2": 0, "q3": 0}, "q2:")

    raises = copy.deepcopy(sol)
    raises.cells[cell_index(raises, "q2")].source = "undefined_helper()\n" + raises.cells[cell_index(raises, "q2")].source
    after(raises, "q1", "raise ValueError('a stray cell that raises')")
    cases["cell_raises"] = (raises, {"q1": 2, "q2": 0, "q3": 0}, "NameError")

    loop = after(copy.deepcopy(sol), "q1", "while True:\n    pass")
    cases["infinite_loop"] = (loop, {"q1": 0, "q2": 0, "q3": 0}, "per-cell time limit")

    slow = copy.deepcopy(sol)
    for _ in range(6):
        after(slow, "q1", "import time\ntime.sleep(8)")
    cases["slow_notebook"] = (slow, {"q1": 0, "q2": 0, "q3": 0}, "total time limit")

    hog = copy.deepcopy(sol)
    hog.cells[cell_index(hog, "q1")].source = ("hog = []\nwhile True:\n    hog.append(bytearray(50_000_000))\n"
                                               + hog.cells[cell_index(hog, "q1")].source)
    cases["memory_hog"] = (hog, {"q1": 0, "q2": 0, "q3": 0}, "MemoryError")

    text = nbformat.writes(sol)
    cases["malformed_json"] = (text[: len(text) // 2], {"q1": 0, "q2": 0, "q3": 0}, "not a valid notebook")

    deleted = copy.deepcopy(sol)
    del deleted.cells[cell_index(deleted, "q3")]
    cases["deleted_graded_cell"] = (deleted, {"q1": 2, "q2": 2, "q3": 0}, "graded cell q3 is missing")

    renamed_cell = copy.deepcopy(sol)
    renamed_cell.cells[cell_index(renamed_cell, "q1")].metadata["gmcourse"]["question"] = "q1_mine"
    cases["renamed_graded_cell"] = (renamed_cell, {"q1": 0, "q2": 2, "q3": 3}, "graded cell q1 is missing")

    renamed_fn = copy.deepcopy(sol)
    i = cell_index(renamed_fn, "q3")
    renamed_fn.cells[i].source = renamed_fn.cells[i].source.replace("def fit_mixture(", "def fit_my_mixture(")
    cases["renamed_function"] = (renamed_fn, {"q1": 2, "q2": 2, "q3": 0}, "'fit_mixture' is not defined")

    loud = after(copy.deepcopy(sol), "q1", "for _ in range(200):\n    print('x' * 50_000)")
    cases["megabytes_of_output"] = (loud, {"q1": 0, "q2": 0, "q3": 0}, "dropped")

    cheat = copy.deepcopy(sol)  # right answers, plus a look at the solutions: still zero
    cheat.cells.append(nbformat.v4.new_code_cell("try:\n" + "\n".join("    " + line for line in READ_SOLUTIONS.splitlines())
                                                  + "\nexcept Exception:\n    pass"))
    cases["reads_solutions"] = (cheat, {"q1": 0, "q2": 0, "q3": 0}, "tried to reach")

    vandal = after(copy.deepcopy(sol), "q1",
                   f"open({str(gradebook)!r}, 'w').write('student,q1,q2,q3,total,notes\\nmallory,9,9,9,27,\\n')\n"
                   f"open({str(TAMPER_FILE)!r}, 'w').write('x = 1')")
    cases["writes_gradebook"] = (vandal, {"q1": 0, "q2": 0, "q3": 0}, "tried to reach")

    patched = copy.deepcopy(ex)
    patched.cells.append(nbformat.v4.new_code_cell("import torch\n" + WRONG_ANSWERS + MONKEYPATCH))
    cases["monkeypatches_checks"] = (patched, {"q1": 0, "q2": 0, "q3": 0}, "")
    return cases


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("battery")
    gradebook = folder / "out" / "grades.csv"
    cases = submissions(gradebook)
    paths = []
    for name, (nb, _, _) in cases.items():
        path = folder / "submissions" / f"{name}.ipynb"
        path.parent.mkdir(exist_ok=True)
        path.write_text(nb if isinstance(nb, str) else nbformat.writes(nb), encoding="utf-8")
        paths.append(str(path))
    start = time.monotonic()
    code = main(["grade", str(EXERCISE), *paths, "-o", str(gradebook), "--jobs", "2",
                 "--cell-timeout", "10", "--total-timeout", "40", "--memory-mb", "2500"])
    elapsed = time.monotonic() - start
    with open(gradebook, newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return {"code": code, "rows": rows, "cases": cases, "folder": folder, "elapsed": elapsed}


CASES = ["solution", "untouched", "wrong_q2", "cell_raises", "infinite_loop", "slow_notebook",
         "memory_hog", "malformed_json", "deleted_graded_cell", "renamed_graded_cell", "renamed_function",
         "megabytes_of_output", "reads_solutions", "writes_gradebook", "monkeypatches_checks"]


@pytest.mark.parametrize("case", CASES)
def test_grade(graded, case):
    if case in ("reads_solutions", "writes_gradebook") and not ISOLATED:
        pytest.skip("this OS gives the grader no mount namespace to hide solutions and the gradebook")
    _, expected, phrase = graded["cases"][case]
    row = graded["rows"][case]
    actual = {q: float(row[q]) for q in FULL}
    assert actual == {q: float(v) for q, v in expected.items()}, f"{case}: notes {row['notes']!r}"
    assert float(row["total"]) == sum(expected.values())
    assert phrase in row["notes"], f"expected {phrase!r} in the notes, got {row['notes']!r}"


def test_battery_covers_every_case_and_the_batch_finished(graded):
    assert graded["code"] == 0
    assert sorted(graded["rows"]) == sorted(CASES) == sorted(graded["cases"])


def test_gradebook_and_package_survive_vandalism(graded):
    assert "mallory" not in graded["rows"]
    if ISOLATED:
        assert not TAMPER_FILE.exists()


def test_feedback_file_per_student_with_expected_and_actual(graded):
    feedback = graded["folder"] / "out" / "grades-feedback"
    assert sorted(p.stem for p in feedback.glob("*.md")) == sorted(CASES)
    text = (feedback / "wrong_q2.md").read_text()
    assert "## q2: 0 / 2" in text and "expected:" in text and "actual:" in text
    assert "**Total: 7 / 7**" in (feedback / "solution.md").read_text()
