"""The public checks of 00_intro: the solution passes, and each wrong variant fails a check."""
import math
from pathlib import Path

import nbformat
import pytest
import torch

from gmcourse.checks import intro
from gmcourse.grading import Checker

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def solution():
    """The functions of solutions/00_intro.ipynb, taken from its graded cells."""
    namespace = {"math": math, "torch": torch}
    nb = nbformat.read(ROOT / "solutions" / "00_intro.ipynb", as_version=4)
    for cell in nb.cells:
        if "question" in cell.metadata.get("gmcourse", {}):
            exec(cell.source, namespace)
    return namespace


def failed(checker, qid):
    return [o.check for o in checker.results(qid) if not o.passed]


@pytest.mark.parametrize("qid", ["q1", "q2", "q3"])
def test_solution_passes(solution, qid):
    assert failed(Checker(intro, solution), qid) == []


def test_missing_answer_prints_fail_and_does_not_raise(capsys):
    def diag_gaussian_log_prob(x, mu, log_var):
        raise NotImplementedError("q1: write your answer here")
    Checker(intro, {"diag_gaussian_log_prob": diag_gaussian_log_prob})("q1")
    out = capsys.readouterr().out
    assert out.startswith("q1: FAIL") and "not answered yet" in out


def test_wrong_gaussian_fails_with_expected_and_actual(solution, capsys):
    def diag_gaussian_log_prob(x, mu, log_var):  # forgets the log-determinant
        return -0.5 * (math.log(2 * math.pi) + (x - mu) ** 2 / log_var.exp()).sum(-1)
    checker = Checker(intro, {"diag_gaussian_log_prob": diag_gaussian_log_prob})
    assert "analytic value at x = mu" in failed(checker, "q1")
    checker("q1")
    out = capsys.readouterr().out
    assert "expected:" in out and "actual:" in out


def test_naive_mixture_fails_stability_only(solution):
    def mixture_log_prob(x, logits, mu, log_var):
        dens = solution["diag_gaussian_log_prob"](x[:, None, :], mu, log_var).exp()
        return torch.log((torch.softmax(logits, 0) * dens).sum(1))
    assert failed(Checker(intro, {"mixture_log_prob": mixture_log_prob}), "q2") == [
        "finite far from every component (logsumexp)"]


def test_unnormalised_weights_fail(solution):
    def mixture_log_prob(x, logits, mu, log_var):
        comp = solution["diag_gaussian_log_prob"](x[:, None, :], mu, log_var)
        return torch.logsumexp(logits + comp, dim=1)
    assert "invariant to shifting all logits" in failed(
        Checker(intro, {"mixture_log_prob": mixture_log_prob}), "q2")


def test_fit_that_does_not_train_fails(solution):
    def fit_mixture(x, n_components, n_steps=500, lr=0.05, seed=0):
        return solution["fit_mixture"](x, n_components, n_steps=1, lr=lr, seed=seed)
    namespace = dict(solution, fit_mixture=fit_mixture)
    assert "training lowers the held-out NLL" in failed(Checker(intro, namespace), "q3")
