"""The grading battery: hostile and broken submissions made from solutions/00_intro, graded in one
parallel batch through ``gmcourse grade``, each with the grade it must get. The cases every
exercise must survive (reference, blank, a wrong answer per question, a raising cell, an infinite
loop, memory hogs) are derived from every solution in tests/test_grading_exercises.py."""
import copy
import csv
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest

from gmcourse.cli import main
from gmcourse.grading import sandbox
from gmcourse.grading.assign import graded_questions

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "00_intro.ipynb"
EXERCISE = ROOT / "exercises" / "00_intro.ipynb"
POINTS = graded_questions(nbformat.read(SOLUTION, as_version=4))
FULL = dict(POINTS)
ZERO = {q: 0 for q in POINTS}
ALL_BUT = lambda *lost: {q: (0 if q in lost else p) for q, p in POINTS.items()}
RUN_ID = f"{os.getpid()}-{int(time.time())}"
MARKER = f"gmcourse-battery-{RUN_ID}"            # names every file and process a case may plant
TAMPER_FILE = ROOT / "gmcourse" / "checks" / f"_tampered_{RUN_ID}.py"
BASE_PLANT = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / f"{MARKER}.pth"
VENV_PLANT = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages" / f"{MARKER}.pth"
HOST_TMP_PLANT = Path("/tmp") / f"{MARKER}-planted"
UNPICKLED = Path("/tmp") / f"{MARKER}-unpickled"

SANDBOXED = sandbox.detect()[0].sandboxed

WRONG_ANSWERS = '''
def logsumexp(a, dim=-1):
    return a.amax(dim)

def e_step(x, log_pi, mu, log_var):
    log_joint = log_pi - 0.5 * ((x[:, None, :] - mu) ** 2).sum(-1)
    return log_joint - log_joint.amax(1, keepdim=True), log_joint.amax(1)

def m_step(x, log_resp, min_var=1e-3):
    k = log_resp.shape[1]
    return torch.zeros(k), x[:k].clone(), torch.zeros(k, x.shape[1])

def fit_em(x, n_components, n_iters=60, seed=0, min_var=1e-3):
    return (torch.zeros(n_components), x[:n_components].clone(), torch.zeros(n_components, x.shape[1]),
            torch.zeros(n_iters))

def histogram_log_prob(x_train, x, n_levels, alpha):
    return torch.zeros(len(x))
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

# Every route to the hidden solution the earlier hostile batch found, and a search of the whole
# filesystem; whatever answer text turns up is executed. A blank notebook must still score zero.
READ_HIDDEN = f'''
import ctypes, glob, json, os, subprocess, sys, time
targets = [{str(SOLUTION)!r}, {str(ROOT / "instructor" / "hidden" / "00_intro.py")!r}]
found = []
def grab(path):
    try:
        text = open(path, errors="replace").read()
    except Exception:
        return
    if "BEGIN SOLUTION" in text or "reference_gaussian" in text:
        found.append(text)
libc = ctypes.CDLL(None, use_errno=True)
for line in open("/proc/self/mountinfo").read().splitlines():  # umount whatever might hide something
    libc.umount2(line.split()[4].encode(), 2)
for target in targets:
    grab(target)
    for root in ["/proc/1/root", f"/proc/{{os.getppid()}}/root", *glob.glob("/proc/[0-9]*/root"),
                 *glob.glob("/proc/[0-9]*/cwd")]:
        grab(root + target)
    for argv in ([sys.executable, "-c", f"print(open({{target!r}}).read())"], ["cat", target]):
        try:
            grab_out = subprocess.run(argv, capture_output=True, text=True, timeout=3).stdout
            if "BEGIN SOLUTION" in grab_out:
                found.append(grab_out)
        except Exception:
            pass
deadline = time.monotonic() + 6  # the whole cell stays well inside the battery's 15 s cell limit
for top, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if not (top == "/" and d in ("proc", "sys", "dev"))]
    for name in files:
        if name.endswith((".ipynb", ".py")) and ("solution" in top or "instructor" in top or "hidden" in name):
            grab(os.path.join(top, name))
    if time.monotonic() > deadline:
        break
for text in found:
    try:
        cells = json.loads(text)["cells"]
    except Exception:
        continue
    for cell in cells:
        if "BEGIN SOLUTION" in "".join(cell["source"]):
            exec("".join(cell["source"]), globals())
'''

# Right answers, plus a write by every route outside the sandbox's scratch space: all must fail,
# and the right answers keep their marks.
WRITE_OUTSIDE = f'''
import ctypes, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
MS_REMOUNT, MS_BIND = 32, 4096
for line in open("/proc/self/mountinfo").read().splitlines():  # try to make every mount writable
    libc.mount(None, line.split()[4].encode(), None, MS_REMOUNT | MS_BIND, None)
targets = [{str(TAMPER_FILE)!r}, {str(BASE_PLANT)!r}, {str(VENV_PLANT)!r}, {str(HOST_TMP_PLANT)!r},
           {{gradebook!r}}, "/job/inputs/hidden-q1.npz", "/job/submission.ipynb",
           "/proc/1/root" + {str(HOST_TMP_PLANT)!r}]
for target in targets:
    for attempt in (lambda t: open(t, "w").write("import os; os.system('touch {HOST_TMP_PLANT}')"),
                    lambda t: subprocess.run(["sh", "-c", f"echo planted > '{{t}}'"], timeout=10)):
        try:
            attempt(target)
        except Exception:
            pass
'''

SPY = f'''
import glob, os, signal, time
ancestors, pid = set(), os.getpid()
while pid > 1:
    ancestors.add(pid)
    pid = int(open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[1])
deadline = time.monotonic() + 8
while time.monotonic() < deadline:  # overlap the victim, which starts at the same time
    for path in glob.glob("/proc/[0-9]*"):
        other = int(path.rsplit("/", 1)[1])
        if other not in ancestors and other != 1:
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                try:
                    os.kill(other, sig)
                except OSError:
                    pass
    for path in glob.glob("/tmp/gmgrade-*/*") + glob.glob({str(Path("/tmp") / "pytest-of-*" / "**" / "victim.ipynb")!r}, recursive=True):
        try:
            open(path, "w").write("{{}}")
        except OSError:
            pass
    for name in ("/tmp/shared", "/work/shared"):
        open(name, "w").write("from the spy")
    time.sleep(0.5)
'''

FORGE_PICKLE = f'''
import io, json, os, zipfile
import numpy as np

class Payload:
    def __reduce__(self):
        return (os.system, ("touch {UNPICKLED}",))

buffer = io.BytesIO()
np.save(buffer, np.array([Payload()], dtype=object), allow_pickle=True)
with zipfile.ZipFile("/out/outputs.npz", "w") as archive:
    for key in ("public__q1__log_prob", "hidden__q1__log_prob"):
        archive.writestr(key + ".npy", buffer.getvalue())
cells = [{{"index": i, "status": "ok", "error": ""}} for i in range(40)]
open("/out/result.json", "w").write(json.dumps({{"reason": "", "cells": cells, "scores": {{"q1": 2, "q2": 2, "q3": 3}}}}))
os.kill(os.getppid(), 9)   # stop the runner before it writes the real files
'''

FORGE_COMPRESSED = '''
import io, json, os, zipfile
import numpy as np
buffer = io.BytesIO()
np.save(buffer, np.zeros(100_000_000 // 8))
with zipfile.ZipFile("/out/outputs.npz", "w", compression=zipfile.ZIP_DEFLATED) as archive:
    archive.writestr("public__q1__log_prob.npy", buffer.getvalue())
os.kill(os.getppid(), 9)
'''

REPLACE_PROBES = '''
import numpy as np, torch
import gmcourse.checks.intro as intro, gmcourse.grading.export as export_module

def fake_probe(namespace, inputs):
    x, mu, log_var = inputs.get("x"), inputs.get("mu"), inputs.get("log_var")
    out = {"log_prob": np.full(len(x), intro.gaussian_at_mean(log_var)) if x is not None and log_var is not None
           and log_var.ndim == 1 else np.zeros(3),
           "grad_mu": ((x - mu) / np.exp(log_var)).sum(0) if mu is not None and mu.ndim == 1 else np.zeros(3),
           "fit_test_nll": np.array(-100.0), "one_step_test_nll": np.array(100.0), "far": np.zeros(2)}
    return out

for name in dir(intro):
    if name.endswith("_probe"):
        setattr(intro, name, fake_probe)
export_module.export = lambda namespace, module, probe, inputs, outputs: np.savez(
    outputs, **fake_probe(namespace, dict(np.load(inputs))))
torch.autograd.grad = lambda outputs, inputs, *args, **kwargs: tuple(torch.ones_like(i) for i in
                                                                     (inputs if isinstance(inputs, (tuple, list)) else [inputs]))
'''

ESCAPE = f'''
for _ in range(60):   # session leaders that outlive the kernel, named so the test can look for them
    subprocess.Popen(["{MARKER}-daemon", "600"], executable="/usr/bin/sleep", start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
'''

STDERR_FLOOD = '''
import os
block = b"x" * (1 << 20)
for _ in range(300):     # 300 MB to the kernel's own stderr, around the notebook's output capture
    os.write(2, block)
'''

WIDGET_FLOOD = '''
import ipywidgets
text = ipywidgets.Text()
for i in range(30):      # 30 MB of widget state updates
    text.value = f"{i}" + "y" * 1_000_000
'''

def cell_index(nb, qid):
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("gmcourse", {}).get("question") == qid)


def after(nb, qid, source):
    nb.cells.insert(cell_index(nb, qid) + 1, nbformat.v4.new_code_cell(source))
    return nb


def appended(nb, source):
    nb = copy.deepcopy(nb)
    nb.cells.append(nbformat.v4.new_code_cell(source))
    return nb


def guarded(source):
    return "try:\n" + "\n".join("    " + line for line in source.splitlines()) + "\nexcept Exception:\n    pass"


def cases(gradebook: Path) -> dict:
    """name -> (notebook, raw text or a special file, expected scores, expected phrase in the notes)."""
    sol, ex = nbformat.read(SOLUTION, as_version=4), nbformat.read(EXERCISE, as_version=4)
    found = {"spy": (appended(ex, SPY), ZERO, ""),   # spy and victim run together
             "victim": (sol, FULL, ""),
             "solution": (sol, FULL, ""), "untouched": (ex, ZERO, "NotImplementedError")}

    slow = copy.deepcopy(sol)
    for _ in range(6):
        after(slow, "q1", "import time\ntime.sleep(8)")
    found["slow_notebook"] = (slow, ZERO, "total time limit")


    text = nbformat.writes(sol)
    found["malformed_json"] = (text[: len(text) // 2], ZERO, "not a valid notebook")

    deleted = copy.deepcopy(sol)
    del deleted.cells[cell_index(deleted, "q5")]
    found["deleted_graded_cell"] = (deleted, ALL_BUT("q5"), "graded cell q5 is missing")
    renamed_cell = copy.deepcopy(sol)
    renamed_cell.cells[cell_index(renamed_cell, "q1")].metadata["gmcourse"]["question"] = "q1_mine"
    found["renamed_graded_cell"] = (renamed_cell, ALL_BUT("q1"), "graded cell q1 is missing")
    renamed_fn = copy.deepcopy(sol)
    i = cell_index(renamed_fn, "q5")
    renamed_fn.cells[i].source = renamed_fn.cells[i].source.replace("def histogram_log_prob(", "def my_histogram(")
    found["renamed_function"] = (renamed_fn, ALL_BUT("q5"), "'histogram_log_prob' is not defined")

    # floods: cell output, the kernel's own stderr, widget messages
    found["megabytes_of_output"] = (after(copy.deepcopy(sol), "q1", "for _ in range(200):\n    print('x' * 50_000)"),
                                    ZERO, "dropped")
    found["stderr_flood"] = (after(copy.deepcopy(sol), "q1", STDERR_FLOOD), ZERO, "own streams")
    found["widget_flood"] = (after(copy.deepcopy(sol), "q1", WIDGET_FLOOD), ZERO, "widget messages")

    # reading hidden files by any route; writing outside the sandbox by any route
    found["reads_hidden_files"] = (appended(ex, guarded(READ_HIDDEN)), ZERO, "NotImplementedError")
    found["writes_outside"] = (appended(sol, guarded(WRITE_OUTSIDE.replace("{gradebook!r}", repr(str(gradebook))))),
                               FULL, "")
    # forging the result files; replacing the probes, the checks or autograd
    found["forges_pickled_outputs"] = (appended(ex, FORGE_PICKLE), ZERO, "outputs refused")
    found["forges_compressed_outputs"] = (appended(ex, FORGE_COMPRESSED), ZERO, "outputs refused")
    found["replaces_probes_and_autograd"] = (appended(ex, REPLACE_PROBES), ZERO, "")
    found["monkeypatches_checks"] = (appended(ex, "import torch\n" + WRONG_ANSWERS + MONKEYPATCH), ZERO, "")
    # processes that try to outlive the sandbox
    found["escapes"] = (after(copy.deepcopy(sol), "q1", ESCAPE), FULL, "")
    return found


def write_submissions(folder: Path, gradebook: Path):
    """The battery's files: every case, duplicate names, a symlink, a folder, a FIFO, formula names."""
    subs = folder / "submissions"
    (subs / "group_a").mkdir(parents=True)
    (subs / "group_b").mkdir()
    expected, paths = {}, []

    def add(path: Path, nb, student, scores, phrase):
        path.write_text(nb if isinstance(nb, str) else nbformat.writes(nb), encoding="utf-8")
        paths.append(path)
        expected[student] = (scores, phrase)

    for name, (nb, scores, phrase) in cases(gradebook).items():
        add(subs / f"{name}.ipynb", nb, name, scores, phrase)
    sol, ex = nbformat.read(SOLUTION, as_version=4), nbformat.read(EXERCISE, as_version=4)
    add(subs / "group_a" / "alice.ipynb", sol, "alice~group_a", FULL, "")
    add(subs / "group_b" / "alice.ipynb", ex, "alice~group_b", ZERO, "NotImplementedError")
    only_q1 = copy.deepcopy(ex)
    only_q1.cells[cell_index(only_q1, "q1")].source = sol.cells[cell_index(sol, "q1")].source
    add(subs / "alice-2.ipynb", only_q1, "alice-2", ALL_BUT(*[q for q in POINTS if q != "q1"]), "")
    add(subs / "=HYPERLINK(1).ipynb", ex, "'=HYPERLINK(1)", ZERO, "")
    add(subs / "@SUM(A1).ipynb", only_q1, "'@SUM(A1)", ALL_BUT(*[q for q in POINTS if q != "q1"]), "")
    link = subs / "symlinked.ipynb"
    link.symlink_to(SOLUTION)
    (subs / "a_folder.ipynb").mkdir()
    os.mkfifo(subs / "a_fifo.ipynb")
    for path, phrase in ((link, "symbolic link"), (subs / "a_folder.ipynb", "is a directory"),
                         (subs / "a_fifo.ipynb", "not a regular file")):
        paths.append(path)
        expected[path.stem] = (ZERO, phrase)
    return paths, expected


def vm_hwm_mb() -> float:
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def daemons() -> list[int]:
    """Processes on this machine whose command line carries the battery's marker."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and MARKER.encode() in open(f"/proc/{entry}/cmdline", "rb").read():
                found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def battery(tmp_path_factory):
    if not SANDBOXED:
        pytest.skip("no sandbox on this machine: install bubblewrap (.ci/install-bubblewrap)")
    folder = tmp_path_factory.mktemp("battery")
    gradebook = folder / "out" / "grades.csv"
    paths, expected = write_submissions(folder, gradebook)
    hwm_before = vm_hwm_mb()
    start = time.monotonic()
    code = main(["grade", str(EXERCISE), *map(str, paths), "-o", str(gradebook), "--jobs", "2",
                 "--cell-timeout", "15", "--total-timeout", "40", "--memory-mb", "2500"])
    elapsed = time.monotonic() - start
    text = gradebook.read_text()
    with open(gradebook, newline="") as f:
        rows = list(csv.DictReader(f))
    yield {"code": code, "rows": rows, "text": text, "expected": expected, "folder": folder,
           "elapsed": elapsed, "hwm_growth_mb": vm_hwm_mb() - hwm_before}
    for path in (TAMPER_FILE, BASE_PLANT, VENV_PLANT, HOST_TMP_PLANT, UNPICKLED):
        path.unlink(missing_ok=True)


CASES = ["spy", "victim", "solution", "untouched", "slow_notebook", "malformed_json", "deleted_graded_cell", "renamed_graded_cell",
         "renamed_function", "megabytes_of_output", "stderr_flood", "widget_flood", "reads_hidden_files",
         "writes_outside", "forges_pickled_outputs", "forges_compressed_outputs",
         "replaces_probes_and_autograd", "monkeypatches_checks", "escapes", "alice~group_a",
         "alice~group_b", "alice-2", "'=HYPERLINK(1)", "'@SUM(A1)", "symlinked", "a_folder", "a_fifo"]


@pytest.mark.parametrize("case", CASES)
def test_grade(battery, case):
    scores, phrase = battery["expected"][case]
    row = next(r for r in battery["rows"] if r["student"] == case)
    actual = {q: float(row[q]) for q in FULL}
    assert actual == {q: float(v) for q, v in scores.items()}, f"{case}: notes {row['notes']!r}"
    assert float(row["total"]) == sum(scores.values())
    assert phrase in row["notes"], f"expected {phrase!r} in the notes, got {row['notes']!r}"


def test_one_row_per_file_and_unique_ids(battery):
    students = [row["student"] for row in battery["rows"]]
    assert battery["code"] == 0
    assert len(students) == len(set(students)) == len(battery["expected"])
    assert sorted(students) == sorted(CASES) == sorted(battery["expected"])


def test_formula_names_are_neutralised(battery):
    first_fields = [line.split(",", 1)[0] for line in battery["text"].splitlines()[1:]]
    assert not any(field.lstrip('"').startswith(("=", "+", "-", "@")) for field in first_fields)
    assert "'=HYPERLINK(1)" in battery["text"]


def test_nothing_was_written_outside_and_nothing_unpickled(battery):
    for path in (TAMPER_FILE, BASE_PLANT, VENV_PLANT, HOST_TMP_PLANT, UNPICKLED):
        assert not path.exists(), f"a submission wrote {path}"
    assert "mallory" not in battery["text"]


def test_no_process_outlives_the_batch(battery):
    assert daemons() == []


def test_grader_memory_stays_bounded_whatever_is_printed(battery):
    # 300 MB to stderr and 30 MB of widget messages must not be held by the grader
    assert battery["hwm_growth_mb"] < 150, battery["hwm_growth_mb"]


def test_feedback_file_per_student_with_expected_and_actual(battery):
    feedback = battery["folder"] / "out" / "grades-feedback"
    assert len(list(feedback.glob("*.md"))) == len(CASES)
    text = (feedback / "monkeypatches_checks.md").read_text()
    assert f"## q1: 0 / {POINTS['q1']:g}" in text and "expected:" in text and "actual:" in text
    assert f"**Total: {sum(POINTS.values()):g} / {sum(POINTS.values()):g}**" in (feedback / "solution.md").read_text()
