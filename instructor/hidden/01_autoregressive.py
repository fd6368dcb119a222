"""Hidden checks for exercises/01_autoregressive (instructors only; never installed, released or
copied into a grading scratch directory). They reuse the public probes with other inputs and
compare with reference masks and values computed here, in the grader's process.

Shapes: B batch, D data dim, H_k hidden units, k kernel size.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from gmcourse.checks import autoregressive
from gmcourse.grading.expect import expect_close
from gmcourse.grading.question import Check, Question


def reference_made_masks(order, degrees):
    """Eq. (1) of the exercise with NumPy: order (D,), degrees [(H_1,), ...] -> masks (out, in)."""
    layers = [np.asarray(order), *[np.asarray(m) for m in degrees]]
    masks = [(m_out[:, None] >= m_in[None, :]).astype(float) for m_in, m_out in zip(layers[:-1], layers[1:])]
    masks.append((layers[0][:, None] > layers[-1][None, :]).astype(float))
    return masks


def reference_conv_mask(k, mask_type):
    c = k // 2
    mask = np.zeros((k, k))
    mask[:c] = 1
    mask[c, :c] = 1
    mask[c, c] = float(mask_type == "B")
    return mask


def q1_inputs(generator):
    """A larger problem with a random order and hidden degrees that include the extremes 1 and D-1."""
    inputs = autoregressive.q1_inputs(generator)
    d = len(inputs["order"])
    inputs["degrees_1"][:2] = [1, d - 1]
    inputs["degrees_2"][:2] = [d - 1, 1]
    return inputs


def _q1_reference(inputs, outputs):
    expected = reference_made_masks(inputs["order"], [inputs["degrees_1"], inputs["degrees_2"]])
    for i, mask in enumerate(expected):
        expect_close(outputs[f"mask_{i}"], mask, f"mask {i} against the reference")


def _q2_reference(inputs, outputs):
    for k in inputs["kernel_sizes"].tolist():
        for t in "AB":
            expect_close(outputs[f"{t}{k}"], reference_conv_mask(k, t), f"mask type {t}, k = {k} against the reference")


def q3_inputs(generator):
    inputs = autoregressive.q3_inputs(generator)
    inputs["logits"] = 30.0 * inputs["logits"]  # far into the tails
    inputs["p"] = np.array(0.03)
    return inputs


def _q3_reference(inputs, outputs):
    logits, x = inputs["logits"].astype(np.float64), inputs["x"]
    nll = x * np.logaddexp(0, -logits) + (1 - x) * np.logaddexp(0, logits)
    expected = nll.reshape(len(x), -1).sum(1) / (nll[0].size * math.log(2))
    expect_close(outputs["bpd"], expected, "bits per dimension against the reference", rtol=1e-4, atol=1e-4)


QUESTIONS = (
    Question(id="q1", functions=autoregressive.Q1.functions, make_inputs=q1_inputs, probe=autoregressive.q1_probe,
             checks=(Check("masks against the reference", _q1_reference), *autoregressive.Q1.checks), seed=4321),
    Question(id="q2", functions=autoregressive.Q2.functions, make_inputs=autoregressive.q2_inputs,
             probe=autoregressive.q2_probe,
             checks=(Check("masks against the reference", _q2_reference), *autoregressive.Q2.checks), seed=4321),
    Question(id="q3", functions=autoregressive.Q3.functions, make_inputs=q3_inputs, probe=autoregressive.q3_probe,
             checks=(Check("values against the reference", _q3_reference), *autoregressive.Q3.checks), seed=4321),
)
