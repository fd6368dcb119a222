"""Hidden checks for exercises/04_flows (instructors only; never installed, released or copied into
a grading sandbox). They reuse the public probes of ``gmcourse.checks.flows`` with other inputs
and add checks against references kept here: eq. (1)'s coupling, eq. (2)'s initialisation,
eq. (3)'s weight, the bits-per-dimension formula, and the trained flow on other fresh points.

Shapes: B batch, D data dim, C channels, H W image height and width.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from gmcourse.checks import flows
from gmcourse.grading.expect import expect_close
from gmcourse.grading.question import Check, Question


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def reference_coupling(x, mask, w1, w2):
    """Eq. (1) in NumPy, float64, for the probes' tanh network: x (B, ...) -> z (B, ...)."""
    x = np.asarray(x, np.float64)
    mask = np.broadcast_to(np.asarray(mask, np.float64), x.shape[1:])
    x_a = mask * x
    out = (np.tanh(x_a.reshape(len(x), -1) @ w1) @ w2).reshape(len(x), 2 * x.shape[1], *x.shape[2:])
    shift, raw = out[:, :x.shape[1]], out[:, x.shape[1]:]
    return x_a + (1 - mask) * (x + shift) * _sigmoid(raw + 2)


# ---- q1: another mask and size; z against eq. (1) ---------------------------------------------

def q1_inputs(generator):
    inputs = flows.q1_inputs(generator)
    d = 5
    inputs.update(x=(2 * torch.randn(3, d, generator=generator)).numpy(), mask=np.array([0.0, 1.0, 0.0, 0.0, 1.0]),
                  net_w1=torch.randn(d, 12, generator=generator).numpy(),
                  net_w2=torch.randn(12, 2 * d, generator=generator).numpy())
    return inputs


def _q1_reference(inputs, outputs):
    for name, x_key, mask_key, net in (("vector", "x", "mask", "net"), ("image", "x_image", "image_mask", "image")):
        expected = reference_coupling(inputs[x_key], inputs[mask_key], inputs[f"{net}_w1"], inputs[f"{net}_w2"])
        expect_close(outputs[f"{name}_z"], expected, "z against eq. (1)", rtol=1e-6, atol=1e-6)


# ---- q2: other channel statistics; bias and log_scale against eq. (2)'s initialisation --------

def q2_inputs(generator):
    inputs = flows.q2_inputs(generator)
    inputs["x"] = (10 * torch.rand(32, 4, 3, 5, generator=generator) - 7).numpy()
    return inputs


def _q2_reference(inputs, outputs):
    for key in ("x", "x_vector"):
        x = inputs[key].astype(np.float64)
        axes = (0,) + tuple(range(2, x.ndim))
        expect_close(outputs[f"{key}_bias"], -x.mean(axes), "bias = -(channel mean)", rtol=1e-4, atol=1e-4)
        n = x.size // x.shape[1]
        unbiased, biased = -np.log(x.std(axes, ddof=1)), -np.log(x.std(axes))
        closest = np.where(np.abs(outputs[f"{key}_log_scale"] - unbiased) < np.abs(outputs[f"{key}_log_scale"] - biased),
                           unbiased, biased)
        expect_close(outputs[f"{key}_log_scale"], closest, f"log_scale = -log(channel std) over {n} values",
                     rtol=1e-4, atol=1e-4)


# ---- q3: four channels, another permutation; z against W x --------------------------------------

def q3_inputs(generator):
    c = 4
    return {"x": torch.randn(3, c, 3, 2, generator=generator).numpy(), "p": np.eye(c)[[1, 3, 0, 2]],
            "lower": torch.randn(c, c, generator=generator).numpy(), "upper": torch.randn(c, c, generator=generator).numpy(),
            "sign_s": np.array([-1.0, 1.0, -1.0, 1.0]), "log_s": (0.4 * torch.randn(c, generator=generator)).numpy(),
            "junk": (2 * torch.randn(c, c, generator=generator)).numpy()}


def _q3_reference(inputs, outputs):
    lower = np.tril(inputs["lower"], -1) + np.eye(len(inputs["log_s"]))
    upper = np.triu(inputs["upper"], 1) + np.diag(inputs["sign_s"] * np.exp(inputs["log_s"]))
    w = inputs["p"] @ lower @ upper  # eq. (3)
    expect_close(outputs["z"], np.einsum("dc,bchw->bdhw", w, inputs["x"]), "z = W x at every pixel, eq. (3)", atol=1e-6)
    h, wd = inputs["x"].shape[2:]
    expect_close(outputs["log_det"], np.full(len(inputs["x"]), h * wd * inputs["log_s"].sum()),
                 "log_det = H W sum(log_s)", atol=1e-6)


# ---- q4: eight bits, another alpha; against the formula -----------------------------------------

def q4_inputs(generator):
    inputs = flows.q4_inputs(generator)
    inputs.update(alpha=np.array(1e-3), n_bits=np.array(3))
    return inputs


def _q4_reference(inputs, outputs):
    y, alpha, n_bits = inputs["y"].astype(np.float64), float(inputs["alpha"]), int(inputs["n_bits"])
    s = alpha + (1 - 2 * alpha) * y
    d = y[0].size
    log_det = (math.log(1 - 2 * alpha) - np.log(s) - np.log1p(-s)).reshape(len(y), -1).sum(1)
    nll = -(inputs["log_p_z"] + log_det) + inputs["log_q"] + d * n_bits * math.log(2)
    expect_close(outputs["general"], nll / (d * math.log(2)), "bits per dimension against the formula", rtol=1e-6,
                 atol=1e-6)


# ---- q5: the same threshold on other fresh moons -------------------------------------------------
# The reference solution (solutions/04_flows.ipynb, q5's budget) trained with seeds 0..4 reaches the
# held-out NLLs recorded in gmcourse/checks/flows.py beside NLL_MAX; the public and the hidden inputs
# are two independent draws of 5,000 points each.

QUESTIONS = (
    Question(id="q1", functions=flows.Q1.functions, make_inputs=q1_inputs, probe=flows.q1_probe,
             checks=(*flows.Q1.checks, Check("z against the reference coupling", _q1_reference)), seed=4321),
    Question(id="q2", functions=flows.Q2.functions, make_inputs=q2_inputs, probe=flows.q2_probe,
             checks=(*flows.Q2.checks, Check("against the reference initialisation", _q2_reference)), seed=4321),
    Question(id="q3", functions=flows.Q3.functions, make_inputs=q3_inputs, probe=flows.q3_probe,
             checks=(*flows.Q3.checks, Check("against the reference weight", _q3_reference)), seed=4321),
    Question(id="q4", functions=flows.Q4.functions, make_inputs=q4_inputs, probe=flows.q4_probe,
             checks=(*flows.Q4.checks, Check("against the reference formula", _q4_reference)), seed=4321),
    Question(id="q5", functions=flows.Q5.functions, make_inputs=flows.q5_inputs, probe=flows.q5_probe,
             checks=flows.Q5.checks, seed=4321),
)
