"""Shared by the exercise-check and grading tests: a solution's graded answers and its whole
namespace, its hidden checks, failures, and hostile submissions derived from any solution."""
import copy
from pathlib import Path

import nbformat
import pytest
import torch
from IPython.core.inputtransformer2 import TransformerManager

from gmcourse.grading import Checker
from gmcourse.grading.assign import check_module_name, graded_questions
from gmcourse.grading.batch import CHECK_CELL, load_hidden_checks, skipped

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


def graded_answers(name: str, namespace: dict, question_ids: list[str]) -> dict:
    """Run the graded cells of solutions/<name>.ipynb in ``namespace``, after checking their ids."""
    nb = nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4)
    graded = [cell for cell in nb.cells if "question" in cell.metadata.get("gmcourse", {})]
    assert [cell.metadata["gmcourse"]["question"] for cell in graded] == question_ids
    for cell in graded:
        exec(cell.source, namespace)
    return namespace


_NAMESPACES: dict = {}


def cached_solution_namespace(name: str) -> dict:
    """``solution_namespace(name)``, built once per test session (every module shares it); callers
    substitute answers in a copy, never in the dict itself."""
    if name not in _NAMESPACES:
        _NAMESPACES[name] = solution_namespace(name)
    return _NAMESPACES[name]


def solution_namespace(name: str) -> dict:
    """The globals of solutions/<name>.ipynb after every cell the grader runs (no check cells, no
    ``grader-skip`` demos), executed here in the test's own (smoke) mode."""
    nb = nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4)
    namespace = {"__name__": "__main__"}
    transform = TransformerManager().transform_cell   # the Colab cell's `!git clone` lines
    for cell in nb.cells:
        if cell.cell_type == "code" and not skipped(cell) and not CHECK_CELL.fullmatch(cell.source):
            exec(compile(transform(cell.source), f"<{name} cell {cell.get('id')}>", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Import into a test module that runs answers: one torch thread, as in the grader's sandbox
    (OMP_NUM_THREADS=1); on 2 shared cores, more threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hidden_checks(name: str):
    """The module instructor/hidden/<name>.py, loaded by path (it is not part of the package)."""
    return load_hidden_checks(ROOT / "instructor" / "hidden" / f"{name}.py")


def failed(checks, namespace, qid):
    """Names of the checks of question ``qid`` that the answers in ``namespace`` fail."""
    return [o.check for o in Checker(checks, namespace).results(qid) if not o.passed]


# ---- hostile submissions, derived from any solution -----------------------------------------

# Rebinds the named answers to wrappers whose every output is wrong but well formed: same types,
# shapes and dtypes, finite, but float tensors reversed along their last axis, scaled by 1.5 and
# shifted by 0.5, integer and boolean tensors reversed, a returned module's parameters moved by
# unit noise; a class becomes a subclass whose public methods give such outputs, and a trained
# model (an answer that is a module) a copy with its parameters moved by unit noise.
WRONG_ANSWER_CELL = '''
import copy as _gm_copy, functools as _gm_functools, inspect as _gm_inspect
import torch as _gm_torch

def _gm_wrong(value):
    if isinstance(value, _gm_torch.Tensor):
        if value.dim() == 0:
            return value * 1.5 + 0.5 if value.is_floating_point() else value + 1
        flipped = value.flip(-1)
        return flipped * 1.5 + 0.5 if value.is_floating_point() else flipped
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 1.5 + 0.5 if isinstance(value, float) else value + 1
    if isinstance(value, (tuple, list)):
        return type(value)(_gm_wrong(v) for v in value)
    if isinstance(value, dict):
        return {key: _gm_wrong(v) for key, v in value.items()}
    if isinstance(value, _gm_torch.nn.Module):
        value = _gm_copy.deepcopy(value)
        generator = _gm_torch.Generator().manual_seed(0)
        with _gm_torch.no_grad():
            for parameter in value.parameters():
                parameter.add_(_gm_torch.randn(parameter.shape, generator=generator).to(parameter))
        return value
    return value

def _gm_wrap(answer):
    if isinstance(answer, _gm_torch.nn.Module):   # a trained model: the same model, other weights
        return _gm_wrong(answer)
    if isinstance(answer, type):
        methods = {name: _gm_wrap(f) for name, f in vars(answer).items()
                   if _gm_inspect.isfunction(f) and not name.startswith("_")}
        return type(answer.__name__, (answer,), methods)
    @_gm_functools.wraps(answer)
    def wrong(*args, **kwargs):
        return _gm_wrong(answer(*args, **kwargs))
    return wrong

for _gm_name in {names!r}:
    globals()[_gm_name] = _gm_wrap(globals()[_gm_name])
'''

# Children that each stay under the per-process limit and together hold more than the sandbox's
# total: only the grader's watch from outside can stop them.
FORK_HOG_CELL = '''
import os, time
for _ in range(6):
    if os.fork() == 0:
        hold = b"1" * 700_000_000
        time.sleep(120)
        os._exit(0)
time.sleep(120)
'''

# One process that allocates until its address-space limit stops it, inside a function, so the
# memory is handed back when the MemoryError unwinds: only this cell is lost.
MEMORY_HOG_CELL = '''
def hog():
    held = []
    while True:
        held.append(bytearray(b"1" * 50_000_000))
hog()
'''


def wrong_answers(namespace: dict, names) -> dict:
    """A copy of ``namespace`` in which the answers ``names`` are rebound as WRONG_ANSWER_CELL does
    in a notebook (the same cell, executed here)."""
    wrong = dict(namespace)
    exec(WRONG_ANSWER_CELL.replace("{names!r}", repr(list(names))), wrong)
    return wrong


def question_cells(nb) -> dict[str, int]:
    """question id -> index of its answer cell, in notebook order."""
    return {cell.metadata["gmcourse"]["question"]: i for i, cell in enumerate(nb.cells)
            if "question" in cell.metadata.get("gmcourse", {})}


def hostile_submissions(solution: Path) -> dict:
    """name -> (notebook, {qid: expected points}, phrase expected in the gradebook's notes)."""
    sol = nbformat.read(solution, as_version=4)
    points = graded_questions(sol)
    cells = question_cells(sol)
    order = list(cells)
    first, last = cells[order[0]], cells[order[-1]]
    zero = {q: 0.0 for q in points}

    def inserted(at: int, source: str):
        nb = copy.deepcopy(sol)
        nb.cells.insert(at, nbformat.v4.new_code_cell(source))
        return nb

    found = {}
    # a stray cell that raises and a memory hog cost nothing but themselves; an answer cell that
    # raises before it defines its function costs that question
    raises = inserted(first, "raise ValueError('a stray cell that raises')")
    raises.cells.insert(first + 1, nbformat.v4.new_code_cell(MEMORY_HOG_CELL))
    answer = raises.cells[last + 2]
    answer.source = "raise RuntimeError('this answer cell raises before it defines anything')\n" + answer.source
    found["cells_raise"] = (raises, {q: (0.0 if q == order[-1] else float(points[q])) for q in order},
                            "3 of your cells raised, first: ValueError")
    # before the first answer: the cells above it are all the run costs, besides one cell limit
    found["infinite_loop"] = (inserted(first, "while True:\n    pass"), zero, "per-cell time limit")
    found["fork_hog"] = (inserted(first, FORK_HOG_CELL), zero, "held more than")
    return found


def question_functions(solution: Path) -> dict[str, tuple[str, ...]]:
    """qid -> the names its public question asks for."""
    import importlib
    module = importlib.import_module(check_module_name(nbformat.read(solution, as_version=4)))
    return {q.id: tuple(q.functions) for q in module.QUESTIONS}
