"""Batch grading: every submission in a fresh sandboxed kernel, every check in this process.

For each submission: validate the JSON, find the graded cells by ``metadata.gmcourse.question``,
build a notebook of the student's code cells plus one probe cell per (question, public|hidden),
copy it alone into a scratch directory, and run it with :mod:`gmcourse.grading.execute` in its
own worker process (several in parallel). The probes' arrays come back through
``np.load(allow_pickle=False)`` and the checks run here. A question scores its points when all
its public and hidden checks pass. Nothing a submission does stops the batch.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np

from gmcourse.grading.assign import check_module_name, graded_questions
from gmcourse.grading.evaluate import Outcome, run_checks
from gmcourse.grading.isolation import Isolation, detect
from gmcourse.grading.question import Question

EXECUTE = Path(__file__).with_name("execute.py")
CHECK_CELL = re.compile(r"\s*check\(\s*['\"][\w.-]+['\"]\s*\)\s*;?\s*")
MAX_NOTEBOOK_BYTES = 20 * 2**20
MAX_PROBE_BYTES = 50 * 2**20


@dataclass(frozen=True)
class Limits:
    cell_timeout: int = 60
    total_timeout: int = 300
    memory_mb: int = 3000
    file_mb: int = 64
    output_limit_bytes: int = 1_000_000


@dataclass
class Assignment:
    """What the grader needs from the release: points, public and hidden questions."""

    name: str
    points: dict[str, float]
    public: dict[str, Question]
    hidden: dict[str, Question]
    hide: list[Path] = field(default_factory=list)


@dataclass
class StudentGrade:
    student: str
    scores: dict[str, float]
    notes: dict[str, str]
    feedback: dict[str, list[Outcome]]
    reason: str = ""
    elapsed: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.scores.values())


def _questions(module, source: str) -> dict[str, Question]:
    questions = getattr(module, "QUESTIONS", None)
    if not isinstance(questions, tuple) or not all(isinstance(q, Question) for q in questions):
        raise ValueError(f"{source} should define QUESTIONS, a tuple of Question")
    for question in questions:
        if not question.probe.__module__.startswith("gmcourse.checks."):
            raise ValueError(f"{source}: {question.id} must use a probe from gmcourse.checks")
    return {question.id: question for question in questions}


def load_hidden_checks(path: Path):
    """The hidden-check module at ``path``, loaded by file: it is never installed or released."""
    spec = importlib.util.spec_from_file_location(f"gmcourse_hidden_{path.stem}", path)
    if spec is None or not path.exists():
        raise FileNotFoundError(f"hidden checks not found: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_assignment(release: Path, hidden: Path | None) -> Assignment:
    """Read the released exercise and its checks; ``hidden`` defaults to instructor/hidden/<name>.py."""
    nb = nbformat.read(release, as_version=4)
    public = _questions(importlib.import_module(check_module_name(nb)), check_module_name(nb))
    course = release.resolve().parent.parent
    hidden = hidden or course / "instructor" / "hidden" / f"{release.stem}.py"
    module = load_hidden_checks(hidden)
    points = graded_questions(nb)
    for qid in points:
        if qid not in public:
            raise ValueError(f"{release}: question {qid} has no public checks")
    return Assignment(release.stem, points, public, _questions(module, str(hidden)),
                      hide=[course / "solutions", course / "instructor", hidden.parent])


def _probe_cell(question: Question, inputs_path: Path, outputs_path: Path) -> str:
    return ("from gmcourse.grading.kernel_probe import run_probe\n"
            f"run_probe(globals(), {question.probe.__module__!r}, {question.probe.__name__!r}, "
            f"{str(inputs_path)!r}, {str(outputs_path)!r})")


def read_submission(path: Path):
    """The submission notebook, or a ValueError saying why it cannot be graded."""
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"file is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as error:
        raise ValueError(f"not a valid notebook: {type(error).__name__}: {str(error)[:200]}")
    return nb


def prepare(nb, assignment: Assignment, inputs: dict, workdir: Path):
    """The notebook to execute and ``[(qid, source, cell index, outputs path)]`` for its probes."""
    present = {}
    for cell in nb.cells:
        qid = cell.get("metadata", {}).get("gmcourse", {}).get("question")
        if cell.cell_type == "code" and qid in assignment.points:
            present[qid] = present.get(qid, 0) + 1
    run = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "gmcourse-sandbox", "display_name": "gmcourse sandbox"}})
    for cell in nb.cells:
        if cell.cell_type == "code" and not CHECK_CELL.fullmatch(cell.source):
            run.cells.append(nbformat.v4.new_code_cell(cell.source))
    probes = []
    for qid in assignment.points:
        if present.get(qid) != 1:
            continue
        for source, questions in (("public", assignment.public), ("hidden", assignment.hidden)):
            if qid in questions:
                out = workdir / f".probe-{uuid.uuid4().hex}.npz"
                probes.append((qid, source, len(run.cells), out))
                run.cells.append(nbformat.v4.new_code_cell(
                    _probe_cell(questions[qid], inputs[source, qid], out)))
    return run, probes, present


def run_worker(job: dict, limits: Limits) -> dict:
    """Run execute.py for one job; a worker that hangs or crashes gives a result with a reason."""
    job_path = Path(job["kernel_dir"]) / "job.json"
    job_path.write_text(json.dumps(job))
    process = subprocess.Popen([sys.executable, "-I", str(EXECUTE), str(job_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=limits.total_timeout + 90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return {"reason": "grading worker did not finish in time", "cells": [], "elapsed": 0.0}
    try:
        return json.loads(Path(job["result"]).read_text())
    except (OSError, ValueError):
        tail = stderr.decode(errors="replace")[-300:]
        return {"reason": f"grading worker failed: {tail}", "cells": [], "elapsed": 0.0}


def load_outputs(path: Path) -> dict:
    if not path.exists():
        raise ValueError("the probe wrote no outputs")
    if path.stat().st_size > MAX_PROBE_BYTES:
        raise ValueError("probe outputs are too large")
    with np.load(path, allow_pickle=False) as data:
        return {key: np.asarray(data[key], dtype=np.float64) for key in data.files}


def read_guard_log(path: Path) -> list[str]:
    """The protected paths a submission tried to touch, from :mod:`kernel_guard`'s log."""
    try:
        lines = path.read_text(errors="replace").splitlines()[:100]
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
            found.append(f"{entry['event']} on {entry['path']}")
        except (ValueError, KeyError, TypeError):
            found.append("an unreadable guard record")
    return list(dict.fromkeys(found))


def misconduct_reason(result: dict) -> str:
    """Why a submission gets zero whatever its answers: it flooded the output or broke bounds."""
    reasons = []
    if result.get("guard"):
        reasons.append("zero: the notebook tried to reach what it may not (solutions, hidden checks, "
                       "gradebook or the course files): " + ", ".join(result["guard"][:3]))
    if result.get("output_truncated"):
        reasons.append(f"zero: the notebook printed more than {Limits.output_limit_bytes:,} bytes of "
                       "output, which were dropped")
    return "; ".join(reasons)


def evaluate(student, assignment, inputs, probes, present, result) -> StudentGrade:
    grade = StudentGrade(student, {q: 0.0 for q in assignment.points}, {}, {},
                         reason=result.get("reason", ""), elapsed=result.get("elapsed", 0.0))
    misconduct = misconduct_reason(result)
    if misconduct:  # zero for the whole notebook, with the reason, and no checks run
        grade.reason = "; ".join(r for r in (misconduct, grade.reason) if r)
        return grade
    cells = {cell["index"]: cell for cell in result.get("cells", [])}
    probe_cells = {index for _, _, index, _ in probes}
    student_errors = [c for i, c in cells.items() if i not in probe_cells and c["status"] == "error"]
    if student_errors:
        grade.notes["cells"] = (f"{len(student_errors)} of your cells raised, first: "
                                f"{student_errors[0]['error'][:200]}")
    for qid in assignment.points:
        if present.get(qid, 0) != 1:
            what = "is missing (deleted, or its metadata changed)" if not present.get(qid) else "appears more than once"
            grade.notes[qid] = f"graded cell {qid} {what}"
            continue
        outcomes = []
        for q, source, index, out in probes:
            if q != qid:
                continue
            question = (assignment.public if source == "public" else assignment.hidden)[qid]
            cell = cells.get(index, {"status": "not run", "error": ""})
            error = None
            if cell["status"] == "error":
                error = f"your code raised {cell['error']}"
            elif cell["status"] != "ok":
                error = f"not run: {grade.reason or 'execution stopped'}"
            outputs = None
            if error is None:
                try:
                    outputs = load_outputs(out)
                except Exception as exc:
                    error = f"could not read the probe outputs: {exc}"
            found = run_checks(question, inputs[source, qid], outputs, error)
            outcomes += [Outcome(f"[{source}] {o.check}", o.passed, o.detail) for o in found]
        grade.feedback[qid] = outcomes
        if outcomes and all(o.passed for o in outcomes):
            grade.scores[qid] = float(assignment.points[qid])
        else:
            first = next((o for o in outcomes if not o.passed), None)
            grade.notes[qid] = f"{first.check}: {first.detail.splitlines()[0]}" if first else "no checks"
    return grade


def _needed_by_kernel(path: Path) -> bool:
    """Whether hiding ``path`` would hide the package or the interpreter from the kernel."""
    needed = [Path(__file__).resolve().parent, Path(sys.prefix).resolve(), Path(sys.executable).resolve()]
    return any(path == n or path in n.parents for n in needed)


def grade_all(release: Path, submissions: list[Path], hidden: Path | None = None,
              limits: Limits = Limits(), jobs: int = 2, protect: list[Path] = (),
              isolation: Isolation | None = None) -> list[StudentGrade]:
    """Grade ``submissions`` against ``release``; ``protect`` are extra paths to hide (gradebook)."""
    assignment = load_assignment(Path(release), hidden)
    isolation = isolation or detect()
    root = Path(tempfile.mkdtemp(prefix="gmgrade-"))
    inputs, input_paths = {}, {}
    (root / "inputs").mkdir()
    for source, questions in (("public", assignment.public), ("hidden", assignment.hidden)):
        for qid, question in questions.items():
            inputs[source, qid] = question.inputs()
            input_paths[source, qid] = root / "inputs" / f"{source}-{qid}.npz"
            np.savez(input_paths[source, qid], **inputs[source, qid])
    names = _student_names(submissions)
    plans, grades = {}, {}
    for i, (student, path) in enumerate(zip(names, submissions)):
        job_root, workdir = root / f"s{i}", root / f"s{i}" / "work"
        (job_root / "k").mkdir(parents=True)
        workdir.mkdir()
        try:
            nb = read_submission(Path(path))
            run, probes, present = prepare(nb, assignment, input_paths, workdir)
        except Exception as error:
            grades[student] = StudentGrade(student, {q: 0.0 for q in assignment.points}, {}, {},
                                           reason=str(error))
            continue
        nbformat.write(run, workdir / "submission.ipynb")
        others = [root / f"s{j}" for j in range(len(submissions)) if j != i]
        hide = {p.resolve() for p in [*assignment.hide, *protect, *others,
                                      *(Path(s).resolve().parent for s in submissions)] if p.exists()}
        job = {"notebook": str(workdir / "submission.ipynb"), "cwd": str(workdir),
               "kernel_dir": str(job_root / "k"), "result": str(job_root / "result.json"),
               "guard_log": str(job_root / "guard.jsonl"),
               "hide": sorted(str(p) for p in hide if not _needed_by_kernel(p)),
               "readonly": sorted({str(Path(__file__).resolve().parents[2]), str(Path(sys.prefix).resolve())}),
               "prefix": list(isolation.prefix), "mount_private": isolation.mounts_private,
               **limits.__dict__}
        plans[student] = (job, probes, present)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = dict(zip(plans, pool.map(lambda p: run_worker(p[0], limits), plans.values())))
    for student, (job, _, _) in plans.items():
        results[student]["guard"] = read_guard_log(Path(job["guard_log"]))
    for student, (job, probes, present) in plans.items():
        try:
            grades[student] = evaluate(student, assignment, inputs, probes, present, results[student])
        except Exception as error:  # never abort the batch for one submission
            grades[student] = StudentGrade(student, {q: 0.0 for q in assignment.points}, {}, {},
                                           reason=f"grader error: {type(error).__name__}: {error}")
    shutil.rmtree(root, ignore_errors=True)
    return [grades[name] for name in names]


def _student_names(submissions: list[Path]) -> list[str]:
    names, seen = [], {}
    for path in submissions:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names
