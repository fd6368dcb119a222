"""Batch grading: student code in a throwaway OS sandbox, every check in this (trusted) process.

For each submission the grader

1. reads the file (a regular file, not a link; :mod:`gmcourse.grading.intake`) and gives it a
   unique student id;
2. makes a job folder of its own holding the notebook to run (the student's code cells, minus
   ``check(...)`` cells and cells the release tags ``grader-skip``, plus one export cell per
   question and public|hidden) and the check inputs, generated afresh for this submission;
3. runs the notebook runner and its kernel inside a fresh sandbox
   (:mod:`gmcourse.grading.sandbox`): the job folder read-only, nothing else of the course,
   no network, an unprivileged uid, rlimits inside, and from outside a wall-clock limit, a
   total resident-memory limit and a cap on what it may print, each enforced by killing the
   sandbox;
4. reads back at most two capped files of plain data (``result.json``, ``outputs.npz`` without
   pickle) and runs every public and hidden check here, on those raw values.

Solutions, hidden checks, references and the gradebook never enter a sandbox; nothing from a
sandbox is unpickled or executed here. A question scores its points when all its public and
hidden checks pass. Nothing a submission does stops the batch or reaches another submission.
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np

from gmcourse.grading import sandbox
from gmcourse.grading.assign import check_module_name, graded_questions
from gmcourse.grading.evaluate import Outcome, run_checks
from gmcourse.grading.intake import collect
from gmcourse.grading.question import Question
from gmcourse.grading.sandbox import NOBODY, Isolation, SandboxLimits

RUNNER = Path(__file__).with_name("runner.py")
CHECK_CELL = re.compile(r"\s*check\(\s*['\"][\w.-]+['\"]\s*\)\s*;?\s*")
SKIP_TAG = "grader-skip"
ORIGIN = "gmcourse_origin"          # run-cell metadata: which submission cell (or export) it is
MAX_OUTPUTS_BYTES = 64 * 2**20      # outputs.npz as read back (also capped by the file-size limit)
MAX_OUTPUT_ARRAYS = 2000
MAX_RESULT_BYTES = 2 * 2**20        # result.json as read back
MEMORY_POLL_S = 0.25
EVALUATING = threading.Lock()
UNSANDBOXED = ("UNSANDBOXED (--no-sandbox): this submission ran as the grader's user with network "
               "and could read solutions, hidden checks and the gradebook, and change other rows")


class SandboxUnavailable(RuntimeError):
    """Raised instead of grading when no sandbox can be made and the instructor did not opt out."""


@dataclass(frozen=True)
class Limits:
    cell_timeout: int = 60
    total_timeout: int = 300
    memory_mb: int = 3000           # per process (RLIMIT_AS) and for the whole sandbox (resident)
    file_mb: int = 64
    output_limit_bytes: int = 1_000_000   # cell outputs and widget messages, kept by the runner
    stream_limit_bytes: int = 1_000_000   # what the sandbox writes to its own stdout and stderr
    processes: int = 256
    tmpfs_mb: int = 256
    startup_s: int = 60             # sandbox and kernel start-up, on top of the notebook's total

    def sandbox(self) -> SandboxLimits:
        return SandboxLimits(memory_mb=self.memory_mb, file_mb=self.file_mb,
                             processes=self.processes, tmpfs_mb=self.tmpfs_mb)


@dataclass
class Assignment:
    """What the grader needs from the release: points, public and hidden questions."""

    name: str
    points: dict[str, float]
    public: dict[str, Question]
    hidden: dict[str, Question]
    skip_ids: set[str] = field(default_factory=set)   # ids of the release's grader-skip cells
    course: Path | None = None


@dataclass
class StudentGrade:
    student: str
    scores: dict[str, float]
    notes: dict[str, str]
    feedback: dict[str, list[Outcome]]
    reason: str = ""
    elapsed: float = 0.0
    slowest_cell: tuple[str, float] | None = None   # (which cell, seconds), as the kernel timed it

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


def skipped(cell) -> bool:
    return SKIP_TAG in cell.get("metadata", {}).get("tags", [])


def load_assignment(release: Path, hidden: Path | None) -> Assignment:
    """Read the released exercise and its checks; ``hidden`` defaults to instructor/hidden/<name>.py."""
    nb = nbformat.read(release, as_version=4)
    public = _questions(importlib.import_module(check_module_name(nb)), check_module_name(nb))
    course = Path(release).resolve().parent.parent
    hidden = hidden or course / "instructor" / "hidden" / f"{Path(release).stem}.py"
    module = load_hidden_checks(Path(hidden))
    points = graded_questions(nb)
    for qid in points:
        if qid not in public:
            raise ValueError(f"{release}: question {qid} has no public checks")
    skip_ids = {cell.get("id") for cell in nb.cells if skipped(cell) and cell.get("id")}
    return Assignment(Path(release).stem, points, public, _questions(module, str(hidden)),
                      skip_ids=skip_ids, course=course)


def parse_submission(data: bytes):
    """The submission notebook, or a ValueError saying why it cannot be graded."""
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as error:
        raise ValueError(f"not a valid notebook: {type(error).__name__}: {str(error)[:200]}")
    return nb


def _export_cell(question: Question, source: str, inputs: str, outputs: str) -> str:
    return ("from gmcourse.grading.export import export\n"
            f"export(globals(), {question.probe.__module__!r}, {question.probe.__name__!r}, "
            f"{inputs!r}, {outputs!r})")


def prepare(nb, assignment: Assignment, job_root: str = "/job", work: str = "/work"):
    """The notebook to run, ``[(qid, source, cell index)]`` of its export cells, and how many
    cells carry each question id. Paths are as the sandbox sees them."""
    present: dict[str, int] = {}
    for cell in nb.cells:
        qid = cell.get("metadata", {}).get("gmcourse", {}).get("question")
        if cell.cell_type == "code" and qid in assignment.points:
            present[qid] = present.get(qid, 0) + 1
    run = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "gmcourse-sandbox",
                                                            "display_name": "gmcourse sandbox"}})
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or CHECK_CELL.fullmatch(cell.source):
            continue
        if skipped(cell) or (cell.get("id") and cell.get("id") in assignment.skip_ids):
            continue
        run.cells.append(nbformat.v4.new_code_cell(cell.source, metadata={ORIGIN: f"cell {index}"}))
    exports = []
    for qid in assignment.points:
        if present.get(qid) != 1:
            continue
        for source, questions in (("public", assignment.public), ("hidden", assignment.hidden)):
            if qid in questions:
                exports.append((qid, source, len(run.cells)))
                run.cells.append(nbformat.v4.new_code_cell(_export_cell(
                    questions[qid], source, f"{job_root}/inputs/{source}-{qid}.npz",
                    f"{work}/.export/{source}-{qid}.npz"), metadata={ORIGIN: f"the {source} checks of {qid}"}))
    return run, exports, present


# ---- reading what comes out of a sandbox: plain data, capped ------------------------------

def read_capped(path: Path, limit: int) -> bytes:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit:,} bytes")
    return data


def read_outputs(path: Path) -> dict[str, np.ndarray]:
    """``outputs.npz`` as float64 arrays: stored (uncompressed) ``.npy`` members with plain names,
    sizes checked before reading, loaded with ``allow_pickle=False``."""
    if not path.exists() or path.stat().st_size == 0:
        return {}
    if path.stat().st_size > MAX_OUTPUTS_BYTES:
        raise ValueError(f"outputs are larger than {MAX_OUTPUTS_BYTES // 2**20} MB")
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) > MAX_OUTPUT_ARRAYS:
            raise ValueError(f"more than {MAX_OUTPUT_ARRAYS} output arrays")
        if sum(m.file_size for m in members) > MAX_OUTPUTS_BYTES:
            raise ValueError("outputs unpack to more than the limit")
        for member in members:
            if member.compress_type != zipfile.ZIP_STORED or not re.fullmatch(r"[A-Za-z0-9_]+\.npy", member.filename):
                raise ValueError(f"unexpected member {member.filename[:80]!r} in the outputs")
    arrays = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            array = data[key]
            if array.dtype.kind not in "biuf":
                raise ValueError(f"output {key} is not numeric")
            arrays[key] = np.asarray(array, dtype=np.float64)
    return arrays


def read_result(path: Path) -> dict:
    """The runner's report, type-checked field by field; anything else is ignored."""
    try:
        raw = json.loads(read_capped(path, MAX_RESULT_BYTES).decode("utf-8")) if path.stat().st_size else {}
    except (OSError, ValueError, UnicodeDecodeError) as error:
        return {"reason": f"the runner's report is unreadable ({type(error).__name__})", "cells": []}
    if not isinstance(raw, dict):
        return {"reason": "the runner's report is unreadable", "cells": []}
    cells = []
    for cell in raw.get("cells", []) if isinstance(raw.get("cells"), list) else []:
        if isinstance(cell, dict) and isinstance(cell.get("index"), int) and cell.get("status") in ("ok", "error", "not run"):
            seconds = cell.get("seconds")
            seconds = float(seconds) if isinstance(seconds, (int, float)) and 0 <= seconds < 1e6 else None
            cells.append({"index": cell["index"], "status": cell["status"], "error": str(cell.get("error", ""))[:500],
                          "seconds": seconds})
    elapsed = raw.get("elapsed")
    return {"reason": str(raw.get("reason", ""))[:500], "cells": cells,
            "elapsed": float(elapsed) if isinstance(elapsed, (int, float)) else 0.0,
            "output_truncated": raw.get("output_truncated") is True}


# ---- running one sandbox, limits enforced from outside ------------------------------------

def _drain(stream, limit: int, counter: dict, key: str) -> None:
    """Read a pipe to its end, keeping at most ``limit`` bytes' count: memory stays bounded."""
    while True:
        chunk = stream.read(1 << 16)
        if not chunk:
            return
        counter[key] += len(chunk)
        if counter[key] <= limit:
            counter[key + "_tail"] = (counter.get(key + "_tail", b"") + chunk)[-2000:]


def _resident_bytes(pid: int) -> int:
    """Proportional set size (shared pages split between their users), else resident size."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _tree_rss_mb(root_pid: int) -> float:
    """Memory held by ``root_pid`` and all its descendants (proportional set size), in MB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, ()))
        total += _resident_bytes(pid)
    return total / 2**20


def run_sandboxed(argv: list[str], limits: Limits, env: dict | None = None) -> dict:
    """Run one sandbox; kill it (the whole PID namespace goes with bwrap) when it runs past its
    wall-clock limit, holds more than ``memory_mb`` resident, or writes more than
    ``stream_limit_bytes`` to stdout and stderr."""
    start = time.monotonic()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True, env=env)
    counter = {"stdout": 0, "stderr": 0}
    drains = [threading.Thread(target=_drain, args=(s, limits.stream_limit_bytes, counter, k), daemon=True)
              for s, k in ((process.stdout, "stdout"), (process.stderr, "stderr"))]
    for thread in drains:
        thread.start()
    deadline = start + limits.total_timeout + limits.startup_s
    killed = ""
    while process.poll() is None:
        if time.monotonic() > deadline:
            killed = (f"the sandbox ran past its wall-clock limit of {limits.total_timeout + limits.startup_s} s "
                      "and was killed")
        elif _tree_rss_mb(process.pid) > limits.memory_mb:
            killed = f"the sandbox held more than {limits.memory_mb} MB of memory and was killed"
        elif counter["stdout"] + counter["stderr"] > limits.stream_limit_bytes * 64:
            killed = "the sandbox flooded its output streams and was killed"
        if killed:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        time.sleep(MEMORY_POLL_S)
    process.wait()
    for thread in drains:
        thread.join(timeout=10)
    return {"killed": killed, "returncode": process.returncode, "elapsed": time.monotonic() - start,
            "stream_bytes": counter["stdout"] + counter["stderr"],
            "stderr_tail": counter.get("stderr_tail", b"").decode(errors="replace")}


def misconduct_reason(result: dict, limits: Limits) -> str:
    """Why a submission gets zero whatever its answers: it flooded an output channel."""
    reasons = []
    if result.get("output_truncated"):
        reasons.append(f"zero: the notebook printed more than {limits.output_limit_bytes:,} bytes of "
                       "output (cells or widget messages), which were dropped")
    if result.get("stream_bytes", 0) > limits.stream_limit_bytes:
        reasons.append(f"zero: the notebook wrote {result['stream_bytes']:,} bytes to the process's own "
                       f"streams (limit {limits.stream_limit_bytes:,}), which were dropped")
    return "; ".join(reasons)


def evaluate(student, assignment, inputs, exports, present, result, outputs, limits) -> StudentGrade:
    grade = StudentGrade(student, {q: 0.0 for q in assignment.points}, {}, {},
                         reason=result.get("reason", ""), elapsed=result.get("elapsed", 0.0),
                         slowest_cell=result.get("slowest_cell"))
    misconduct = misconduct_reason(result, limits)
    if misconduct:  # zero for the whole notebook, with the reason, and no checks run
        grade.reason = "; ".join(r for r in (misconduct, grade.reason) if r)
        return grade
    cells = {cell["index"]: cell for cell in result.get("cells", [])}
    export_cells = {index for _, _, index in exports}
    student_errors = [c for i, c in cells.items() if i not in export_cells and c["status"] == "error"]
    if student_errors:
        grade.notes["cells"] = (f"{len(student_errors)} of your cells raised, first: "
                                f"{student_errors[0]['error'][:200]}")
    for qid in assignment.points:
        if present.get(qid, 0) != 1:
            what = "is missing (deleted, or its metadata changed)" if not present.get(qid) else "appears more than once"
            grade.notes[qid] = f"graded cell {qid} {what}"
            continue
        outcomes = []
        for q, source, index in exports:
            if q != qid:
                continue
            question = (assignment.public if source == "public" else assignment.hidden)[qid]
            cell = cells.get(index, {"status": "not run", "error": ""})
            prefix = f"{source}__{qid}__"
            values = {k[len(prefix):]: v for k, v in outputs.items() if k.startswith(prefix)}
            error = None
            if cell["status"] == "error":
                error = f"your code raised {cell['error']}"
            elif cell["status"] != "ok":
                error = f"not run: {grade.reason or 'execution stopped'}"
            elif not values:
                error = "your code gave no values for this question"
            found = run_checks(question, inputs[source, qid], None if error else values, error)
            outcomes += [Outcome(f"[{source}] {o.check}", o.passed, o.detail) for o in found]
        grade.feedback[qid] = outcomes
        if outcomes and all(o.passed for o in outcomes):
            grade.scores[qid] = float(assignment.points[qid])
        else:
            first = next((o for o in outcomes if not o.passed), None)
            grade.notes[qid] = f"{first.check}: {first.detail.splitlines()[0]}" if first else "no checks"
    return grade


def _release_memory() -> None:
    """Hand the checks' freed temporaries back to the OS: each worker thread has its own malloc
    arena, which would otherwise keep its largest evaluation resident."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _zero(student, assignment, reason) -> StudentGrade:
    return StudentGrade(student, {q: 0.0 for q in assignment.points}, {}, {}, reason=reason)


def grade_one(entry, assignment: Assignment, limits: Limits, isolation: Isolation, root: Path,
              index: int, slots: queue.Queue) -> StudentGrade:
    """Grade one submission in its own job folder and its own sandbox."""
    nb = parse_submission(entry.data)
    job = root / f"job-{index}"
    (job / "inputs").mkdir(parents=True)
    run, exports, present = prepare(nb, assignment) if isolation.sandboxed else prepare(
        nb, assignment, job_root=str(job), work=str(root / f"work-{index}"))
    nbformat.write(run, job / "submission.ipynb")
    inputs = {}
    for source, questions in (("public", assignment.public), ("hidden", assignment.hidden)):
        for qid, question in questions.items():   # generated afresh for this submission alone
            inputs[source, qid] = question.inputs()
            np.savez(job / "inputs" / f"{source}-{qid}.npz", **inputs[source, qid])
    out = root / f"out-{index}"
    out.mkdir()
    slot = slots.get()
    try:
        uid = NOBODY - slot
        files = {"result.json": out / "result.json", "outputs.npz": out / "outputs.npz"}
        for path in files.values():
            sandbox.prepare_out_file(path, uid, isolation)
        if isolation.sandboxed:
            paths = {"notebook": "/job/submission.ipynb", "export_dir": "/work/.export", "work": "/work",
                     "result": "/out/result.json", "outputs": "/out/outputs.npz"}
            env = None
        else:
            work = root / f"work-{index}"
            work.mkdir()
            paths = {"notebook": str(job / "submission.ipynb"), "export_dir": str(work / ".export"),
                     "work": str(work), "result": str(files["result.json"]), "outputs": str(files["outputs.npz"])}
            env = {k: v.replace("/work", str(work)).replace("/tmp", str(work)) for k, v in sandbox.SANDBOX_ENV.items()}
        spec = {**paths, "cell_timeout": limits.cell_timeout, "total_timeout": limits.total_timeout,
                "output_limit_bytes": limits.output_limit_bytes}
        (job / "job.json").write_text(json.dumps(spec))
        for path in [job, job / "inputs", *job.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        job_json = "/job/job.json" if isolation.sandboxed else str(job / "job.json")
        argv = sandbox.command(isolation, [sys.executable, "-I", str(RUNNER), job_json], job, files, uid,
                               limits.sandbox())
        ran = run_sandboxed(argv, limits, env)
    finally:
        slots.put(slot)
    result = read_result(out / "result.json")
    result["stream_bytes"] = ran["stream_bytes"]
    if ran["killed"]:
        result["reason"] = "; ".join(r for r in (ran["killed"], result.get("reason")) if r)
    elif not result["cells"] and not result["reason"]:
        result["reason"] = f"the notebook runner failed: {ran['stderr_tail'][-300:]}"
    result["elapsed"] = round(ran["elapsed"], 2)
    timed = [(cell["seconds"], cell["index"]) for cell in result["cells"]
             if cell["seconds"] is not None and 0 <= cell["index"] < len(run.cells)]
    if timed:
        seconds, index = max(timed)
        result["slowest_cell"] = (run.cells[index].metadata[ORIGIN], seconds)
    try:
        outputs = read_outputs(files["outputs.npz"])
    except Exception as error:  # zipfile.BadZipFile, ValueError, ...
        outputs = {}
        result["reason"] = "; ".join(r for r in (result.get("reason"), f"outputs refused: {error}") if r)
    shutil.rmtree(job, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    with EVALUATING:  # one submission's checks at a time: the grader's memory is that of one
        grade = evaluate(entry.student, assignment, inputs, exports, present, result, outputs, limits)
        del inputs, outputs
        _release_memory()
        return grade


def grade_all(release: Path, submissions: list[Path], hidden: Path | None = None,
              limits: Limits = Limits(), jobs: int = 2, isolation: Isolation | None = None,
              allow_unsandboxed: bool = False) -> list[StudentGrade]:
    """Grade ``submissions`` against ``release``: one row per path given, in order.

    Raises :class:`SandboxUnavailable` when this machine cannot make the sandbox, unless
    ``allow_unsandboxed``; then every row's reason starts with :data:`UNSANDBOXED`."""
    assignment = load_assignment(Path(release), hidden)
    if isolation is None:
        isolation, why = sandbox.detect(must_be_absent=[assignment.course / "solutions",
                                                        assignment.course / "instructor"])
    else:
        why = ""
    if not isolation.sandboxed and not allow_unsandboxed:
        raise SandboxUnavailable(f"refusing to grade without a sandbox ({why or isolation.description}); "
                                 "install bubblewrap, or pass --no-sandbox to grade anyway, unprotected")
    entries = collect([Path(s) for s in submissions])
    root = Path(tempfile.mkdtemp(prefix="gmgrade-"))
    root.chmod(0o711)
    slots: queue.Queue = queue.Queue()
    for slot in range(max(1, jobs)):
        slots.put(slot)

    def one(item):
        index, entry = item
        if entry.refusal:
            return _zero(entry.student, assignment, entry.refusal)
        try:
            return grade_one(entry, assignment, limits, isolation, root, index, slots)
        except Exception as error:  # never abort the batch for one submission
            return _zero(entry.student, assignment, str(error)[:300] if isinstance(error, ValueError)
                         else f"grader error: {type(error).__name__}: {str(error)[:300]}")

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            grades = list(pool.map(one, enumerate(entries)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not isolation.sandboxed:
        for grade in grades:
            grade.reason = "; ".join(r for r in (UNSANDBOXED, grade.reason) if r)
    return grades
