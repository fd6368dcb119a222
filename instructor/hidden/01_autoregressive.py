"""Hidden checks for exercises/01_autoregressive (instructors only; never installed, released or
copied into a grading sandbox). They reuse the public probes with other inputs and compare with
reference answers computed here, in the grader's process.

Shapes: B batch, D data dim, H hidden units, K orderings, k kernel size, C channels.
"""
from __future__ import annotations

import numpy as np

from gmcourse.checks import autoregressive
from gmcourse.grading.expect import expect_close
from gmcourse.grading.question import Check, Question

# ---- q1 ---------------------------------------------------------------------------------------


def reference_rgb_mask(k, c_in, c_out, mask_type):
    """Eq. (2) of the exercise with NumPy: (C_out, C_in, k, k)."""
    m = k // 2
    mask = np.zeros((c_out, c_in, k, k))
    mask[:, :, :m] = 1
    mask[:, :, m, :m] = 1
    g_out, g_in = np.arange(c_out) // (c_out // 3), np.arange(c_in) // (c_in // 3)
    centre = g_in[None, :] < g_out[:, None] if mask_type == "A" else g_in[None, :] <= g_out[:, None]
    mask[:, :, m, m] = centre
    return mask


def q1_inputs(generator):
    inputs = autoregressive.q1_inputs(generator)
    inputs["cases"] = np.array([[1, 6, 9], [3, 12, 3], [7, 3, 3], [5, 9, 9]])
    return inputs


def _q1_reference(inputs, outputs):
    fixed = {"first": (5, 3, 6, "A"), "second": (3, 6, 6, "B"), "head": (1, 6, 3, "B"), "one_a": (1, 3, 3, "A"),
             "one_b": (1, 3, 3, "B")}
    for i, (k, c_in, c_out) in enumerate(inputs["cases"].tolist()):
        fixed.update({f"case_{i}_{t}": (k, c_in, c_out, t) for t in "AB"})
    for key, args in fixed.items():
        expect_close(outputs[key], reference_rgb_mask(*args), f"mask {key} {args} against the reference")


# ---- q2: more pixels, more fixed ones, another seed --------------------------------------------

def q2_inputs(generator):
    inputs = autoregressive.q2_inputs(generator, d=7, n_fixed=3)
    inputs.update(n_samples=np.array(40000), seed=np.array(2024))
    return inputs


# ---- q3: a larger small model, the ensemble against the reference formula ----------------------

def q3_inputs(generator):
    inputs = autoregressive.q3_inputs(generator)
    inputs.update(d=np.array(5), n_hidden=np.array(16), n_masks=np.array(4))
    return inputs


def _q3_reference_ensemble(inputs, outputs):
    x_all = autoregressive._binary_configurations(outputs["order"].shape[1])
    log_p_k = np.stack([autoregressive._bernoulli_log_prob(autoregressive.made_ensemble_logits(outputs, x_all, k), x_all)
                        for k in range(len(outputs["order"]))])                                   # (K, S)
    top = log_p_k.max(0)
    expect_close(outputs["log_px"], top + np.log(np.exp(log_p_k - top).mean(0)),
                 "forward(x) against log mean_k p_k(x) from the exported weights", atol=1e-4)


# ---- q4: the other 1,000 test digits, another binarisation ------------------------------------
# Reference solution (solutions/01_autoregressive.ipynb, q4's budget: MADEEnsemble(784, 300, 8),
# 600 steps of 128 digits, Adam 1e-2 with cosine decay), trained with seeds 0..4, one thread; NLL
# in nats on test digits 1000-1999 binarised with seed 1 (the public check uses digits 0-999 with
# seed 0; its module holds the thresholds and both spreads):
#   seed   ensemble   worst ordering   best ordering   gain
#     0     123.67        132.96           128.14       4.47
#     1     123.32        130.33           128.08       4.76
#     2     124.15        131.81           129.38       5.23
#     3     124.77        132.08           129.33       4.55
#     4     123.48        131.00           128.33       4.85
# (digits 0-999: ensemble 121.17, 120.67, 121.78, 122.26, 120.93; worst 129.47, 127.84, 129.21,
# 129.93, 128.08; gain 4.38, 4.77, 4.99, 4.50, 4.96.) Training took 7.8-9.3 s of CPU on a busy
# 2-core machine (5.3 s for seed 0 with the heavy-job lock held).


def q4_inputs(generator):
    inputs = autoregressive.q4_inputs(generator)
    inputs.update(test_rows=np.array([1000, 2000]), test_seed=np.array(1))
    return inputs


QUESTIONS = (
    Question(id="q1", functions=autoregressive.Q1.functions, make_inputs=q1_inputs, probe=autoregressive.q1_probe,
             checks=(Check("masks against the reference", _q1_reference), *autoregressive.Q1.checks), seed=4321),
    Question(id="q2", functions=autoregressive.Q2.functions, make_inputs=q2_inputs, probe=autoregressive.q2_probe,
             checks=autoregressive.Q2.checks, seed=4321),
    Question(id="q3", functions=autoregressive.Q3.functions, make_inputs=q3_inputs, probe=autoregressive.q3_probe,
             checks=(Check("the ensemble against the reference formula", _q3_reference_ensemble),
                     *autoregressive.Q3.checks), seed=4321),
    Question(id="q4", functions=autoregressive.Q4.functions, make_inputs=q4_inputs, probe=autoregressive.q4_probe,
             checks=autoregressive.Q4.checks, seed=4321),
)
