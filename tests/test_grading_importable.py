"""No graded answer can be imported from the installed package.

For every graded question of every exercise in solutions/ (lectures 03-08 included, by being there):

(a) by name: no public attribute of any ``gmcourse`` module carries the name of a function
    (or class) the question asks for;
(b) by behaviour: every public callable defined in ``gmcourse`` whose signature accepts the calls
    the question's probes make (recorded on the reference answer) is put in the place of the
    student's answer, the probes run, and the question's public and hidden checks are evaluated:
    no substitute may pass every check that the reference answer passes.

The reference answers come from running the solution's graded cells (smoke mode). Tooling
modules that write files, run processes or start kernels are scanned by name only (a), not run.
"""
import importlib
import inspect
import pkgutil
import signal

import matplotlib.pyplot as plt
import nbformat
import pytest

import gmcourse
from exercise_helpers import SOLUTIONS, cached_solution_namespace, hidden_checks, one_thread  # noqa: F401 (fixture)
from gmcourse.grading.assign import check_module_name, graded_questions
from gmcourse.grading.evaluate import run_checks

# run by name only: these write files (a gradebook, notebooks, results, the README, exported
# modules), download, install packages or start sandboxes and kernels when called
TOOLING = ("gmcourse.cli", "gmcourse.colab", "gmcourse.export", "gmcourse.results", "gmcourse.data.download",
           "gmcourse.grading.assign", "gmcourse.grading.batch", "gmcourse.grading.sandbox",
           "gmcourse.grading.runner", "gmcourse.grading.gradebook", "gmcourse.grading.intake",
           "gmcourse.grading.export")
CALL_SECONDS = 20   # a substitute that runs longer than this on one probe fails (and is named)


def gmcourse_modules():
    modules = [gmcourse]
    for info in pkgutil.walk_packages(gmcourse.__path__, "gmcourse."):
        modules.append(importlib.import_module(info.name))
    return modules


MODULES = gmcourse_modules()


def public_names() -> dict[str, list[str]]:
    """name -> the modules where it is a public attribute."""
    names: dict[str, list[str]] = {}
    for module in MODULES:
        for name in dir(module):
            if not name.startswith("_"):
                names.setdefault(name, []).append(module.__name__)
    return names


def public_callables() -> list[tuple[str, object]]:
    """(qualified name, callable) for every public function or class defined in gmcourse."""
    seen, found = set(), []
    for module in MODULES:
        if module.__name__ in TOOLING:
            continue
        for name in dir(module):
            obj = getattr(module, name)
            if name.startswith("_") or not callable(obj) or id(obj) in seen:
                continue
            home = getattr(obj, "__module__", "") or ""
            if home.startswith("gmcourse") and home not in TOOLING:
                seen.add(id(obj))
                found.append((f"{home}.{getattr(obj, '__qualname__', name)}", obj))
    return found


def questions():
    """(exercise stem, public Question, hidden Question or None) for every graded question."""
    found = []
    for solution in SOLUTIONS:
        nb = nbformat.read(solution, as_version=4)
        public = {q.id: q for q in importlib.import_module(check_module_name(nb)).QUESTIONS}
        try:   # a missing hidden file fails the exercise's grading tests, not this module's collection
            hidden = {q.id: q for q in hidden_checks(solution.stem).QUESTIONS}
        except FileNotFoundError:
            hidden = {}
        for qid in graded_questions(nb):
            found.append(pytest.param(solution.stem, public[qid], hidden.get(qid), id=f"{solution.stem}-{qid}"))
    return found


QUESTIONS = questions()


@pytest.mark.parametrize("stem, public, hidden", QUESTIONS)
def test_no_answer_has_the_name_of_a_package_attribute(stem, public, hidden):
    names = public_names()
    clashes = {name: names[name] for name in public.functions if name in names}
    assert not clashes, (f"{stem} {public.id} asks for {sorted(clashes)}, which the installed package "
                         f"already provides: {clashes}")


class TookTooLong(BaseException):
    """Raised by the alarm inside a substitute that runs too long."""


def _alarm(signum, frame):
    raise TookTooLong()


def guarded(call):
    """``call()`` under the alarm; (result, None) or (None, what it raised)."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CALL_SECONDS)
    try:
        return call(), None
    except (Exception, TookTooLong, SystemExit) as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:120]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        plt.close("all")


def passed_checks(namespace, question_pairs, required=None) -> set:
    """The (question index, check name) pairs that the answers in ``namespace`` pass; with
    ``required``, stop at the first question where one of those is missing."""
    passed = set()
    for i, (question, inputs) in enumerate(question_pairs):
        outputs, error = guarded(lambda: question.probe(namespace, inputs))
        passed |= {(i, o.check) for o in run_checks(question, inputs, outputs, error) if o.passed}
        if required is not None and not {r for r in required if r[0] == i} <= passed:
            break
    return passed


class Recorder:
    """Stands for the reference answer (a function, a class or a trained model): records the
    arguments of every call, hands attribute look-ups (``model.logits``) to the answer."""

    def __init__(self, answer, calls: list):
        self._answer, self._calls = answer, calls

    def __call__(self, *args, **kwargs):
        self._calls.append((args, kwargs))
        return self._answer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._answer, name)


def binds(candidate, calls) -> bool:
    try:
        signature = inspect.signature(candidate)
    except (TypeError, ValueError):
        return True            # no signature to read: try it
    try:
        for args, kwargs in calls:
            signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


@pytest.mark.parametrize("stem, public, hidden", QUESTIONS)
def test_no_package_callable_passes_a_question(stem, public, hidden, tmp_path, monkeypatch):
    """A substitute fails when it misses one of the checks the reference answer passes here (all
    of them, unless a check needs the full-mode state of the notebook: smoke mode runs here)."""
    monkeypatch.chdir(tmp_path)            # whatever a substitute writes lands here
    namespace = cached_solution_namespace(stem)
    pairs = [(q, q.inputs()) for q in (public, hidden) if q is not None]
    substitutes = public_callables()
    passing = []
    for name in public.functions:
        calls = []
        required = passed_checks({**namespace, name: Recorder(namespace[name], calls)}, pairs)
        assert calls, f"the probes of {stem} {public.id} never call {name}"
        assert {i for i, _ in required} == set(range(len(pairs))), (
            f"the reference answer passes no check of some probe of {stem} {public.id}: nothing to compare with")
        first_args, first_kwargs = calls[0]
        for qualified, candidate in substitutes:
            if not binds(candidate, calls):
                continue
            _, error = guarded(lambda: candidate(*first_args, **first_kwargs))   # most fail at once
            if error is None and required <= passed_checks({**namespace, name: candidate}, pairs, required):
                passing.append(f"{name} <- {qualified}")
    assert not passing, f"{stem} {public.id} is answered by the installed package: {passing}"
