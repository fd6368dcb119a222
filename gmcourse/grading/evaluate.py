"""Run a question's checks on probe outputs and describe the result for people."""
from __future__ import annotations

from dataclasses import dataclass

from gmcourse.grading.question import Arrays, CheckFailed, Question


PROBE_CHECK = "calls your code on the check inputs"


@dataclass(frozen=True)
class Outcome:
    """One check's verdict; ``detail`` is empty when it passed."""

    check: str
    passed: bool
    detail: str = ""

    def line(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return f"  {mark}  {self.check}" + ("" if self.passed else "\n    " + self.detail)


def run_checks(question: Question, inputs: Arrays, outputs: Arrays | None,
               probe_error: str | None = None) -> list[Outcome]:
    """Evaluate every check; a probe that failed gives one failed outcome with its reason."""
    if outputs is None:
        return [Outcome(PROBE_CHECK, False, probe_error or "the probe produced no outputs")]
    outcomes = []
    for check in question.checks:
        try:
            check.run(inputs, outputs)
        except CheckFailed as failure:
            outcomes.append(Outcome(check.name, False, failure.describe()))
        except Exception as error:  # a malformed output must fail the check, not the grader
            outcomes.append(Outcome(check.name, False,
                                    f"could not evaluate: {type(error).__name__}: {error}"))
        else:
            outcomes.append(Outcome(check.name, True))
    return outcomes


def summary(question_id: str, outcomes: list[Outcome]) -> str:
    """``q1: PASS (4/4 checks)`` followed by one line per check."""
    n_passed = sum(outcome.passed for outcome in outcomes)
    verdict = "PASS" if outcomes and n_passed == len(outcomes) else "FAIL"
    head = f"{question_id}: {verdict} ({n_passed}/{len(outcomes)} checks)"
    return "\n".join([head] + [outcome.line() for outcome in outcomes])
