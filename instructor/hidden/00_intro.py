"""Hidden checks for exercises/00_intro (instructors only; never installed, released or copied
into a grading scratch directory). They reuse the public probes with other inputs and compare
with reference values computed here, in the grader's process.

Shapes: B batch, D data dim, K mixture components.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from gmcourse.checks import intro
from gmcourse.grading.expect import expect_close, expect_less
from gmcourse.grading.question import Check, Question


def reference_gaussian(x, mu, log_var):
    """(B, D), (D,) or (B, D) -> (B,) log N(x; mu, diag(exp(log_var)))."""
    return -0.5 * (math.log(2 * math.pi) + log_var + (x - mu) ** 2 / np.exp(log_var)).sum(-1)


def reference_mixture(x, logits, mu, log_var):
    """(B, D), (K,), (K, D), (K, D) -> (B,) with a stable log-sum-exp."""
    log_w = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
    terms = log_w + reference_gaussian(x[:, None, :], mu, log_var)   # (B, K)
    top = terms.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(terms - top).sum(axis=1, keepdims=True)))[:, 0]


def q1_inputs(generator):
    inputs = intro.q1_inputs(generator)
    inputs["x"] = 4.0 * torch.randn(9, 3, generator=generator).numpy()   # far from mu as well
    inputs["x"][0] = inputs["mu"]
    return inputs


def _q1_reference(inputs, outputs):
    expected = reference_gaussian(inputs["x"], inputs["mu"], inputs["log_var"])
    expect_close(outputs["log_prob"], expected, "log_prob at random points", rtol=1e-4, atol=1e-3)


def _q2_reference(inputs, outputs):
    expected = reference_mixture(inputs["x"], inputs["logits"], inputs["mu"], inputs["log_var"])
    expect_close(outputs["log_prob"], expected, "mixture log_prob at random points", atol=1e-3)
    far = reference_mixture(inputs["x_far"], inputs["logits"], inputs["mu"], inputs["log_var"])
    expect_close(outputs["far"], far, "mixture log_prob far away", rtol=1e-3, atol=1.0)


def _q3_reference_nll(inputs, outputs):
    nll = -reference_mixture(inputs["x_test"], outputs["logits"], outputs["mu"],
                             outputs["log_var"]).mean()
    expect_close(outputs["fit_test_nll"], nll, "your held-out NLL vs the grader's, same parameters",
                 rtol=1e-3, atol=1e-2)
    baseline = intro.single_gaussian_train_nll(inputs["x_train"])
    expect_less(nll, baseline - 0.5, "held-out NLL (computed by the grader) beats one Gaussian")
    one_step = -reference_mixture(inputs["x_test"], outputs["one_step_logits"], outputs["one_step_mu"],
                                  outputs["one_step_log_var"]).mean()
    expect_less(nll, one_step - 1e-3, "held-out NLL (computed by the grader) after n_steps vs after 1 step")


QUESTIONS = (
    Question(id="q1", functions=intro.Q1.functions, make_inputs=q1_inputs, probe=intro.q1_probe,
             checks=(Check("reference values at random points", _q1_reference),
                     *intro.Q1.checks), seed=1234),
    Question(id="q2", functions=intro.Q2.functions, make_inputs=intro.q2_inputs,
             probe=intro.q2_probe, checks=(Check("reference values", _q2_reference),
                                           *intro.Q2.checks), seed=1234),
    Question(id="q3", functions=intro.Q3.functions, make_inputs=intro.q3_inputs,
             probe=intro.q3_probe, checks=(Check("held-out NLL recomputed by the grader",
                                                 _q3_reference_nll),), seed=1234),
)
