"""Lint of every committed notebook (lectures/, solutions/, exercises/, found by glob).

* no control characters (other than newline) in any cell's source: an unescaped backslash in a
  Python string turns ``\\tfrac``, ``\\big``, ``\\text``, ``\\tag`` into tab, backspace, ...;
* no error outputs anywhere;
* lectures are committed executed: every code cell has an execution count, 1, 2, 3, ... from
  top to bottom, and each ``execute_result`` carries its cell's count;
* exercises are committed without outputs or execution counts;
* every lecture walks the seven steps of the minimum viable definition under headings of the one
  form of :mod:`gmcourse.course` (``## 3. The loss: ...``), once each, in order, and no
  heading names a step in another form (``### Step 3: ...``, ``## Step 4 and 5``).

The checks are plain functions returning a list of problems, so that they are tested on broken
notebooks below as well as run on the committed ones.
"""
from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

from gmcourse.course import STEP_HEADING_RE, STEPS

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("lectures", "solutions", "exercises")
NOTEBOOKS = {folder: sorted((ROOT / folder).glob("*.ipynb")) for folder in FOLDERS}
ALL = [p for folder in FOLDERS for p in NOTEBOOKS[folder]]


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


# ---------------------------------------------------------------- the checks

def control_characters(nb: dict) -> list[str]:
    """One problem per cell whose source holds a control character other than newline."""
    problems = []
    for i, cell in enumerate(nb["cells"]):
        src = _source(cell)
        bad = [(j, ch) for j, ch in enumerate(src)
               if unicodedata.category(ch) == "Cc" and ch != "\n"]
        if bad:
            j = bad[0][0]
            problems.append(
                f"cell {i} ({cell['cell_type']}): control character(s) "
                f"{sorted({ch for _, ch in bad})} (an unescaped backslash?) near "
                f"{src[max(0, j - 30):j + 30]!r}")
    return problems


def error_outputs(nb: dict) -> list[str]:
    return [f"cell {i}: error output {out.get('ename')}: {out.get('evalue')}"
            for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
            for out in cell.get("outputs", []) if out.get("output_type") == "error"]


def execution_order(nb: dict) -> list[str]:
    """Executed top to bottom in one run: the code cells' counts are exactly 1, 2, ..., n."""
    code = [(i, c) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for _, c in code]
    problems = []
    if counts != list(range(1, len(code) + 1)):
        problems.append(f"execution counts of the {len(code)} code cells are {counts}, "
                        f"expected 1..{len(code)} in order (re-execute the notebook top to bottom)")
    for i, cell in code:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "execute_result" and \
                    out.get("execution_count") != cell.get("execution_count"):
                problems.append(f"cell {i}: execute_result count {out.get('execution_count')} "
                                f"!= cell's {cell.get('execution_count')}")
    return problems


def stored_outputs(nb: dict) -> list[str]:
    """Problems for an exercise: any code cell with outputs or an execution count."""
    return [f"cell {i}: {len(c.get('outputs', []))} output(s), execution count "
            f"{c.get('execution_count')}"
            for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]


def markdown_headings(nb: dict) -> list[str]:
    """Heading lines of the markdown cells, in order (lines inside ``` fences skipped)."""
    headings = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        fenced = False
        for line in _source(cell).splitlines():
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            elif not fenced and re.match(r"^#{1,6}\s", line):
                headings.append(line.rstrip())
    return headings


# a heading that names a step in some form: "### Step 3: ...", "## 3: ...", "### 4. ...",
# "## Step 4 and 5" (but not a sub-section such as "### 2.1 FVSBN")
_STEPLIKE = re.compile(r"^#{1,6}\s*(?:(?i:step)\s*[1-7]|[1-7](?![\d.]\d)\s*[.:)]?\s)")


def step_headings(nb: dict) -> list[str]:
    """The seven step headings, each once, in order, in the form of gmcourse.course."""
    problems, found = [], []
    for line in markdown_headings(nb):
        m = STEP_HEADING_RE.match(line)
        if m:
            n, title = int(m["n"]), m["title"]
            name = dict(STEPS)[n]
            if not title.startswith(name):
                problems.append(f"{line!r}: step {n}'s title must start with {name!r}")
            found.append(n)
        elif _STEPLIKE.match(line):
            problems.append(f"{line!r} names a step in another form than "
                            f"'## <n>. <name>' (gmcourse.course.STEP_HEADING_FORMAT)")
    expected = [n for n, _ in STEPS]
    if found != expected:
        problems.append(f"step headings numbered {found}, expected {expected} once each, in order")
    return problems


# ---------------------------------------------------------------- the committed notebooks

def test_every_folder_has_notebooks():
    # the parametrised tests below must never pass because the glob found nothing
    for folder in FOLDERS:
        assert NOTEBOOKS[folder], f"no notebooks found in {folder}/"
    assert {p.name for p in NOTEBOOKS["exercises"]} == {p.name for p in NOTEBOOKS["solutions"]}


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_no_control_characters(path):
    assert control_characters(_load(path)) == []


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_no_error_outputs(path):
    assert error_outputs(_load(path)) == []


@pytest.mark.parametrize("path", NOTEBOOKS["lectures"], ids=_id)
def test_lecture_executed_in_order(path):
    nb = _load(path)
    assert any(c["cell_type"] == "code" for c in nb["cells"]), "a lecture without code cells"
    assert execution_order(nb) == []


@pytest.mark.parametrize("path", NOTEBOOKS["exercises"], ids=_id)
def test_exercise_without_outputs(path):
    assert stored_outputs(_load(path)) == []


@pytest.mark.parametrize("path", NOTEBOOKS["lectures"], ids=_id)
def test_lecture_step_headings(path):
    assert step_headings(_load(path)) == []


def test_docs_name_the_heading_form():
    # the one place that defines the form is the one the authors' guide points to
    guide = (ROOT / "docs" / "writing_a_lecture.md").read_text(encoding="utf-8")
    assert "gmcourse.course" in guide and "STEP_HEADING_FORMAT" in guide


# ---------------------------------------------------------------- the checks catch faults

def _nb(*cells):
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text.splitlines(keepends=True)}


def _code(count=None, outputs=()):
    return {"cell_type": "code", "metadata": {}, "source": ["x = 1"],
            "execution_count": count, "outputs": list(outputs)}


def test_control_characters_caught():
    # what "\tfrac", "\big", "\text", "\tag", "\frac", "\r" become in a non-raw Python string
    for text in ("\tfrac{1}{2}", "\big(", "\text{loss}", "\frac12", "a\rb", "\a", "x\x00"):
        assert len(control_characters(_nb(_md(text)))) == 1, repr(text)
        assert len(control_characters(_nb({**_code(), "source": [text]}))) == 1, repr(text)
    assert control_characters(_nb(_md("$$\\tfrac{1}{2}\\big(x\\big) \\tag{12}$$\n\nnext"))) == []


def test_execution_order_caught():
    good = [_code(1), _md("# text"), _code(2), _code(3)]
    assert execution_order(_nb(*good)) == []
    for counts in ([1, 3, 2], [2, 3, 4], [1, 2, 4], [1, None, 3], [None, None, None], [1, 2, 2]):
        assert execution_order(_nb(*(_code(c) for c in counts))), counts
    result = {"output_type": "execute_result", "execution_count": 5, "data": {}, "metadata": {}}
    assert execution_order(_nb(_code(1), _code(2, [result])))


def test_error_and_stored_outputs_caught():
    error = {"output_type": "error", "ename": "ValueError", "evalue": "bad", "traceback": []}
    stream = {"output_type": "stream", "name": "stdout", "text": ["hi\n"]}
    assert error_outputs(_nb(_code(1, [stream]))) == []
    assert error_outputs(_nb(_code(1, [stream, error])))
    assert stored_outputs(_nb(_code(), _md("x"))) == []
    assert stored_outputs(_nb(_code(None, [stream])))
    assert stored_outputs(_nb(_code(1)))


def _steps_nb(headings):
    return _nb(*(_md(h + "\n\ntext") for h in headings))


def test_step_headings_caught():
    canonical = ["## 1. The family: latent variables", "## 2. The networks", "### 2.1 FVSBN",
                 "## 3. The loss", "## 4. The optimiser: Adam", "## 5. Training, held out",
                 "## 6. Likelihood of new digits", "## 7. Sampling, and how fast"]
    assert step_headings(_steps_nb(canonical)) == []
    for i, variant in [(0, "### Step 1: the family"), (3, "## 3: The loss"), (3, "### 3. The loss"),
                       (3, "## Step 3. The loss"), (4, "## 4. Adam"), (3, "## 3 The loss")]:
        headings = list(canonical)
        headings[i] = variant
        assert step_headings(_steps_nb(headings)), variant
    merged = canonical[:4] + ["### Step 4 and 5: Adam, and training"] + canonical[6:]
    assert step_headings(_steps_nb(merged))
    assert step_headings(_steps_nb(canonical[:-1]))  # a step missing
    assert step_headings(_steps_nb(canonical[1:2] + canonical[0:1] + canonical[2:]))  # order
    # a heading inside a fenced code block is no heading
    fenced = _nb(_md("```\n## 3. The loss\n```"), *_steps_nb(canonical)["cells"])
    assert step_headings(fenced) == []
