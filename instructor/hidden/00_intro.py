"""Hidden checks for exercises/00_intro (instructors only; never installed, released or copied
into a sandbox). They reuse the public probes with other inputs and compare with reference values
computed here, in the grader's process, from the raw values the probes exported.

Shapes: B batch, N data points, D data dim, K mixture components.

q4 is graded on its outcome. The target, ``intro.EM_TEST_NLL_TARGET`` = 2.68 nats, comes from
the reference solution's held-out NLL on the two rings (K = 16, 60 EM iterations, 2,000 training
and 2,000 test points), measured for init seeds 0-9 on both data sets the grader uses (public
inputs, seed 0; hidden inputs, seed 1234), single-threaded, on 1 Dec 2026:

    public data:  2.565 2.546 2.580 2.554 2.566 2.550 2.578 2.559 2.589 2.575  (max 2.589)
    hidden data:  2.574 2.622 2.589 2.584 2.582 2.566 2.630 2.547 2.592 2.580  (max 2.630)

so the worst of 20 runs is 2.630 and the target leaves 0.05 nats on top: a right answer passes for
every seed. For scale, the solution's demo (full mode, seed 0, public data): full-batch Adam from
the same start (lr 0.05) reaches 3.367 nats after 60 steps, and 2.530 after 600; it matches EM's
60th training likelihood after 256 steps.
``tests/test_intro_checks.py`` refits the reference for seeds 0-9 on the public data and fails
if the target is no longer at least 0.02 nats above its worst run.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from gmcourse.checks import intro
from gmcourse.grading.expect import expect_close, expect_less
from gmcourse.grading.question import Check, Question

logsumexp64 = intro._float64_logsumexp


def reference_gaussian(x, mu, log_var):
    """(B, D) against (D,) or broadcast -> (B,) log N(x; mu, diag(exp(log_var)))."""
    return -0.5 * (math.log(2 * math.pi) + log_var + (x - mu) ** 2 / np.exp(log_var)).sum(-1)


def reference_e_step(x, log_pi, mu, log_var):
    log_joint = log_pi + reference_gaussian(x[:, None, :], mu, log_var)     # (B, K)
    log_px = logsumexp64(log_joint, axis=1)                                  # (B,)
    return log_joint - log_px[:, None], log_px


def reference_m_step(x, log_resp, min_var):
    resp = np.exp(log_resp)                                                  # (N, K)
    counts = resp.sum(0)                                                     # (K,)
    mu = resp.T @ x / counts[:, None]
    var = (resp[:, :, None] * (x[:, None, :] - mu) ** 2).sum(0) / counts[:, None]
    return np.log(counts / len(x)), mu, np.log(np.maximum(var, min_var))


def _q1_reference(inputs, outputs):
    expect_close(outputs["lse"], logsumexp64(inputs["a"].astype(np.float64)), "logsumexp at random rows",
                 rtol=1e-5, atol=1e-5)
    a = inputs["a"].astype(np.float64)
    softmax = np.exp(a - logsumexp64(a)[:, None])
    gradient = (outputs["plus"] - outputs["minus"]).T / (2 * intro.FD_STEP_Q1)
    expect_close(gradient, softmax, "gradient (central differences of your values) is softmax(a)",
                 rtol=0, atol=2e-2)


def _q2_reference(inputs, outputs):
    log_resp, log_px = reference_e_step(inputs["x"], inputs["log_pi"], inputs["mu"], inputs["log_var"])
    expect_close(outputs["log_px"], log_px, "log_px at random points", atol=1e-3)
    expect_close(outputs["log_resp"], log_resp, "log_resp at random points", atol=1e-3)
    far_resp, far_px = reference_e_step(inputs["x_far"], inputs["log_pi"], inputs["mu"], inputs["log_var"])
    expect_close(outputs["far_log_px"], far_px, "log_px far away", rtol=1e-4, atol=1.0)


def _q3_reference(inputs, outputs):
    log_pi, mu, log_var = reference_m_step(inputs["x"], inputs["soft"], float(inputs["min_var"]))
    expect_close(outputs["soft_log_pi"], log_pi, "log_pi from soft responsibilities", atol=1e-4)
    expect_close(outputs["soft_mu"], mu, "mu from soft responsibilities", rtol=1e-4, atol=1e-4)
    expect_close(outputs["soft_log_var"], log_var, "log_var from soft responsibilities", rtol=1e-4, atol=1e-4)


def _q4_recomputed(inputs, outputs):
    for i in intro.seeds_of(inputs):
        params = (outputs[f"log_pi_{i}"], outputs[f"mu_{i}"], outputs[f"log_var_{i}"])
        nll = -reference_e_step(inputs["x_test"], *params)[1].mean()
        expect_less(nll, intro.EM_TEST_NLL_TARGET, f"held-out NLL recomputed by the grader, seed "
                    f"{int(inputs['seeds'][i])} (nats)")
        expect_close(-np.mean(outputs[f"test_log_px_{i}"]), nll, "your held-out NLL vs the grader's, same "
                     "parameters", atol=1e-3)
        train = reference_e_step(inputs["x_train"], *params)[1].mean()
        expect_less(outputs[f"trace_{i}"][-1] - 1e-4, train, "the returned parameters are at least as "
                    "likely as the last recorded iterate (one more M-step cannot lower it)")


def q5_inputs(generator):
    inputs = intro.q5_inputs(generator)
    inputs["x_train"] = torch.randint(0, int(inputs["n_levels"]) - 2, (500, 2), generator=generator).numpy()  # last rows unseen
    inputs["order"] = torch.randperm(500, generator=generator).numpy()
    return inputs


def _q5_reference(inputs, outputs):
    n_levels, alpha = int(inputs["n_levels"]), float(inputs["alpha"])
    cells = inputs["x_train"][:, 0].astype(int) * n_levels + inputs["x_train"][:, 1].astype(int)
    counts = np.bincount(cells, minlength=n_levels**2)
    expected = np.log(counts + alpha) - np.log(len(cells) + alpha * n_levels**2)
    expect_close(outputs["every_cell"], expected, "add-alpha histogram at every cell", atol=1e-5)


def _crowded_free(checks):
    return tuple(c for c in checks if "count / N" not in c.name)   # the hidden data has no crowded cell


QUESTIONS = (
    Question(id="q1", functions=intro.Q1.functions, make_inputs=intro.q1_inputs, probe=intro.q1_probe,
             checks=(Check("reference values and gradient", _q1_reference), *intro.Q1.checks), seed=1234),
    Question(id="q2", functions=intro.Q2.functions, make_inputs=intro.q2_inputs, probe=intro.q2_probe,
             checks=(Check("reference values", _q2_reference), *intro.Q2.checks), seed=1234),
    Question(id="q3", functions=intro.Q3.functions, make_inputs=intro.q3_inputs, probe=intro.q3_probe,
             checks=(Check("reference M-step", _q3_reference), *intro.Q3.checks), seed=1234),
    Question(id="q4", functions=intro.Q4.functions, make_inputs=intro.q4_inputs, probe=intro.q4_probe,
             checks=(Check("held-out NLL recomputed by the grader", _q4_recomputed), *intro.Q4.checks),
             seed=1234),
    Question(id="q5", functions=intro.Q5.functions, make_inputs=q5_inputs, probe=intro.q5_probe,
             checks=(Check("reference histogram", _q5_reference), *_crowded_free(intro.Q5.checks)), seed=1234),
)
