"""Write an exercise notebook from its solution: answers become stubs, outputs are cleared.

Markers (nbgrader's): the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` become one
``raise NotImplementedError("<qid>: <hint>")`` at the marker's indentation; a ``### HINT: ...``
line inside the block gives the hint. Graded cells keep ``metadata.gmcourse = {"question",
"points"}``. Cells that will raise with the stubs get the nbval tag ``raises-exception``.
See docs/authoring.md.
"""
from __future__ import annotations

import copy
import importlib
import json
import re
from pathlib import Path

import nbformat

BEGIN, END, HINT = "### BEGIN SOLUTION", "### END SOLUTION", "### HINT:"
RAISES_TAG, AUTHOR_RAISES_TAG = "raises-exception", "exercise-raises"
DEFAULT_HINT = "write your answer here"


class AuthoringError(ValueError):
    """The solution notebook breaks a convention of docs/authoring.md."""


def stub_source(source: str, label: str) -> tuple[str, bool]:
    """Replace each marker block of ``source``; return the new source and whether a stub is top level."""
    out, block, indent, top_level = [], None, "", False
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if block is not None:
                raise AuthoringError(f"{label}: nested {BEGIN!r} on line {number}")
            block, indent = [], line[: len(line) - len(line.lstrip())]
        elif stripped.startswith(END):
            if block is None:
                raise AuthoringError(f"{label}: {END!r} without {BEGIN!r} on line {number}")
            hints = [l.strip()[len(HINT):].strip() for l in block if l.strip().startswith(HINT)]
            message = f"{label}: {' '.join(hints) or DEFAULT_HINT}"
            out.append(f"{indent}raise NotImplementedError({message!r})")
            top_level = top_level or indent == ""
            block = None
        elif block is not None:
            block.append(line)
        else:
            out.append(line)
    if block is not None:
        raise AuthoringError(f"{label}: {BEGIN!r} without {END!r}")
    return "\n".join(out), top_level


def graded_questions(nb) -> dict[str, float]:
    """``{question id: points}`` from the cells' ``metadata.gmcourse``, in notebook order."""
    questions: dict[str, float] = {}
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("gmcourse", {})
        if "question" not in meta:
            continue
        qid, points = meta["question"], meta.get("points")
        if not isinstance(qid, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", qid):
            raise AuthoringError(f"cell {index}: question id must be a short name, got {qid!r}")
        if qid in questions:
            raise AuthoringError(f"cell {index}: question {qid!r} appears in more than one cell")
        if isinstance(points, bool) or not isinstance(points, (int, float)) or points <= 0:
            raise AuthoringError(f"cell {index}: {qid} needs positive 'points', got {points!r}")
        questions[qid] = points
    return questions


def check_module_name(nb) -> str:
    """The public check module named in the notebook metadata (``gmcourse.checks``)."""
    name = nb.metadata.get("gmcourse", {}).get("checks")
    if not isinstance(name, str) or not name.startswith("gmcourse.checks."):
        raise AuthoringError("notebook metadata needs gmcourse.checks = 'gmcourse.checks.<concept>'")
    return name


def make_exercise(solution):
    """The exercise notebook (a new object) for a solution notebook."""
    questions = graded_questions(solution)
    if not questions:
        raise AuthoringError("no graded cell (metadata gmcourse.question) in the solution")
    module = importlib.import_module(check_module_name(solution))
    defined = {question.id for question in module.QUESTIONS}
    if set(questions) - defined:
        raise AuthoringError(f"{module.__name__}.QUESTIONS lacks {sorted(set(questions) - defined)}")
    exercise = copy.deepcopy(solution)
    for index, cell in enumerate(exercise.cells):
        if cell.cell_type != "code":
            continue
        meta = cell.metadata
        label = meta.get("gmcourse", {}).get("question", f"cell {index}")
        cell.source, top_level = stub_source(cell.source, label)
        cell.outputs, cell.execution_count = [], None
        tags = [tag for tag in meta.get("tags", []) if tag != AUTHOR_RAISES_TAG]
        raises = top_level or AUTHOR_RAISES_TAG in meta.get("tags", [])
        if raises and RAISES_TAG not in tags:
            tags.append(RAISES_TAG)
        if tags:
            meta["tags"] = tags
        else:
            meta.pop("tags", None)
    return exercise


def exercise_text(solution_path: Path) -> str:
    """The exercise notebook's file contents for ``solution_path`` (what assign writes)."""
    raw = json.loads(Path(solution_path).read_text(encoding="utf-8"))
    if raw.get("nbformat") != 4:
        raise AuthoringError(f"{solution_path}: expected an nbformat 4 notebook")
    for index, cell in enumerate(raw.get("cells", [])):  # stable ids: nbformat would make random ones
        cell.setdefault("id", f"cell-{index}")
    raw["nbformat_minor"] = max(raw.get("nbformat_minor", 0), 5)
    solution = nbformat.reads(json.dumps(raw), as_version=4)
    exercise = make_exercise(solution)
    nbformat.validate(exercise)
    return nbformat.writes(exercise) + "\n"


def assign(solution_path: Path, exercises_dir: Path) -> Path:
    """Write ``exercises_dir/<same name>`` from ``solution_path``; return the path written."""
    target = Path(exercises_dir) / Path(solution_path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(exercise_text(Path(solution_path)), encoding="utf-8")
    return target
