"""Instant feedback inside a notebook: ``check = Checker(intro, globals())`` then ``check("q1")``.

The checker is given the notebook's globals explicitly (no stack-frame inspection) and the
notebook's public check module (e.g. ``gmcourse.checks.intro``), whose ``QUESTIONS`` it runs.
It prints PASS/FAIL with expected and actual values and never raises, so an exercise with
unanswered stubs still runs top to bottom (under nbval too).
"""
from __future__ import annotations

import traceback
from types import ModuleType
from typing import Mapping

from gmcourse.grading.evaluate import run_checks, summary
from gmcourse.grading.question import Question


def probe_error_text(error: BaseException) -> str:
    """One line for a probe that raised; a missing answer gets a friendly hint."""
    if isinstance(error, NotImplementedError):
        return f"not answered yet (NotImplementedError: {error})"
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (line {frames[-1].lineno} of {frames[-1].name})" if frames else ""
    return f"your code raised {type(error).__name__}: {error}{where}"


class Checker:
    """Runs one notebook's public checks against the functions defined in ``namespace``."""

    def __init__(self, checks: ModuleType, namespace: Mapping):
        questions = getattr(checks, "QUESTIONS", None)
        if not isinstance(questions, tuple) or not all(isinstance(q, Question) for q in questions):
            raise TypeError(f"{checks!r} should define QUESTIONS, a tuple of Question")
        self.questions = {question.id: question for question in questions}
        self.namespace = namespace

    def results(self, question_id: str):
        """The list of check outcomes for one question (what ``__call__`` prints)."""
        if question_id not in self.questions:
            raise KeyError(f"no question {question_id!r}; this notebook has {sorted(self.questions)}")
        question = self.questions[question_id]
        inputs = question.inputs()
        try:
            outputs, error = question.probe(self.namespace, inputs), None
        except Exception as exc:
            outputs, error = None, probe_error_text(exc)
        return run_checks(question, inputs, outputs, error)

    def __call__(self, question_id: str) -> None:
        print(summary(question_id, self.results(question_id)))
