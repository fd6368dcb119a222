"""Public checks for exercises/00_intro: Gaussian log-density, mixture, maximum-likelihood fit.

Shapes: B batch, D data dim, K mixture components, G grid points.
Every check tests a property (analytic value, normalisation, gradient, invariance) of the raw
values the probes return,
so reading this file does not give the answers away.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from gmcourse.grading.expect import expect_close, expect_finite, expect_less, expect_shape
from gmcourse.grading.question import Check, Question, as_array, as_tensor, student_function

LOG_2PI = math.log(2 * math.pi)


def grid_2d(half_width: float = 7.0, n: int = 141) -> tuple[np.ndarray, float]:
    """(G, 2) points of a square grid and the area of one cell, for Riemann sums."""
    axis = np.linspace(-half_width, half_width, n)
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1), float((axis[1] - axis[0]) ** 2)


def gaussian_at_mean(log_var: np.ndarray) -> float:
    """log N(mu; mu, diag(exp(log_var))) = -D/2 log(2 pi) - 1/2 sum(log_var)."""
    return float(-0.5 * log_var.shape[-1] * LOG_2PI - 0.5 * np.sum(log_var))


# ---- q1: diag_gaussian_log_prob(x, mu, log_var) -> (B,) ------------------------------------

def q1_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    mu = torch.randn(3, generator=generator)                       # (D,)
    log_var = 0.5 * torch.randn(3, generator=generator)            # (D,)
    x = torch.cat([mu[None], torch.randn(5, 3, generator=generator)])  # (B, D), row 0 is mu
    grid, cell_area = grid_2d()
    return {"x": x.numpy(), "mu": mu.numpy(), "log_var": log_var.numpy(),
            "shift": 3.0 * torch.randn(3, generator=generator).numpy(),
            "grid": grid, "cell_area": np.array(cell_area),
            "grid_mu": np.array([0.5, -0.3]), "grid_log_var": np.array([0.2, -0.4])}


FD_STEP = 0.1  # log_prob is quadratic in mu: central differences are exact up to rounding


def q1_probe(namespace, inputs):
    log_prob_fn = student_function(namespace, "diag_gaussian_log_prob")
    x, log_var, mu = as_tensor(inputs["x"]), as_tensor(inputs["log_var"]), as_tensor(inputs["mu"])
    step = FD_STEP * torch.eye(len(mu))
    shift = as_tensor(inputs["shift"])
    with torch.no_grad():
        log_prob = log_prob_fn(x, mu, log_var)
        out = {"log_prob": log_prob,
               "mu_plus": torch.stack([log_prob_fn(x, mu + e, log_var) for e in step]),   # (D, B)
               "mu_minus": torch.stack([log_prob_fn(x, mu - e, log_var) for e in step]),
               "shifted": log_prob_fn(x + shift, mu + shift, log_var),
               "grid_log_prob": log_prob_fn(as_tensor(inputs["grid"]), as_tensor(inputs["grid_mu"]),
                                            as_tensor(inputs["grid_log_var"]))}
    return {key: as_array(value, key) for key, value in out.items()}


def _q1_shape(inputs, outputs):
    expect_shape(outputs["log_prob"], (inputs["x"].shape[0],), "log_prob for x of shape (6, 3)")


def _q1_at_mean(inputs, outputs):
    expect_close(outputs["log_prob"][0], gaussian_at_mean(inputs["log_var"]),
                 "log N(x; mu, .) at x = mu should be -D/2 log(2 pi) - 1/2 sum(log_var)")


def _q1_integrates(inputs, outputs):
    total = np.exp(outputs["grid_log_prob"]).sum() * inputs["cell_area"]
    expect_close(total, 1.0, "exp(log_prob) summed over a fine 2D grid (x cell area)", atol=1e-2)


def _q1_gradient(inputs, outputs):
    var = np.exp(inputs["log_var"])
    expected = ((inputs["x"] - inputs["mu"]) / var).sum(axis=0)
    finite_difference = (outputs["mu_plus"] - outputs["mu_minus"]).sum(axis=1) / (2 * FD_STEP)
    expect_close(finite_difference, expected, "d(sum log_prob)/d mu by central differences of your values "
                 "vs sum (x - mu)/var", rtol=1e-3, atol=1e-2)


def _q1_translation(inputs, outputs):
    expect_close(outputs["shifted"], outputs["log_prob"],
                 "log_prob(x + c, mu + c) should equal log_prob(x, mu)", rtol=1e-3, atol=1e-3)


Q1 = Question(
    id="q1", functions=("diag_gaussian_log_prob",), make_inputs=q1_inputs, probe=q1_probe,
    checks=(Check("returns shape (B,)", _q1_shape),
            Check("analytic value at x = mu", _q1_at_mean),
            Check("density integrates to 1 on a 2D grid", _q1_integrates),
            Check("gradient w.r.t. mu matches (x - mu) / var", _q1_gradient),
            Check("invariant to shifting x and mu together", _q1_translation)))


# ---- q2: mixture_log_prob(x, logits, mu, log_var) -> (B,) ----------------------------------

def q2_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    logits = torch.randn(3, generator=generator)                      # (K,)
    mu = 2.0 * torch.randn(3, 2, generator=generator)                  # (K, D)
    log_var = 0.3 * torch.randn(3, 2, generator=generator) - 0.5       # (K, D)
    x = torch.randn(7, 2, generator=generator)                         # (B, D)
    grid, cell_area = grid_2d(half_width=9.0, n=181)
    return {"x": x.numpy(), "logits": logits.numpy(), "mu": mu.numpy(), "log_var": log_var.numpy(),
            "x_far": np.full((2, 2), 1e3), "grid": grid, "cell_area": np.array(cell_area),
            "permutation": np.array([2, 0, 1])}


def q2_probe(namespace, inputs):
    mixture = student_function(namespace, "mixture_log_prob")
    x, logits = as_tensor(inputs["x"]), as_tensor(inputs["logits"])
    mu, log_var = as_tensor(inputs["mu"]), as_tensor(inputs["log_var"])
    perm = torch.as_tensor(inputs["permutation"], dtype=torch.long)
    with torch.no_grad():
        out = {
            "log_prob": mixture(x, logits, mu, log_var),
            "permuted": mixture(x, logits[perm], mu[perm], log_var[perm]),
            "logits_shifted": mixture(x, logits + 5.0, mu, log_var),
            "far": mixture(as_tensor(inputs["x_far"]), logits, mu, log_var),
            "one_component_at_mean": mixture(mu[:1], logits[:1], mu[:1], log_var[:1]),
            "grid_log_prob": mixture(as_tensor(inputs["grid"]), logits, mu, log_var),
        }
    return {key: as_array(value, key) for key, value in out.items()}


def _q2_shape(inputs, outputs):
    expect_shape(outputs["log_prob"], (inputs["x"].shape[0],), "log_prob for x of shape (7, 2)")


def _q2_integrates(inputs, outputs):
    total = np.exp(outputs["grid_log_prob"]).sum() * inputs["cell_area"]
    expect_close(total, 1.0, "exp(log_prob) summed over a fine 2D grid (x cell area)", atol=1e-2)


def _q2_stable(inputs, outputs):
    expect_finite(outputs["far"], "log_prob at x = (1000, 1000), where exp() underflows")


def _q2_one_component(inputs, outputs):
    expect_close(outputs["one_component_at_mean"][0], gaussian_at_mean(inputs["log_var"][0]),
                 "with K = 1 the mixture is one Gaussian: value at its mean")


def _q2_permutation(inputs, outputs):
    expect_close(outputs["permuted"], outputs["log_prob"],
                 "reordering the components should not change log_prob")


def _q2_logits_shift(inputs, outputs):
    expect_close(outputs["logits_shifted"], outputs["log_prob"],
                 "adding a constant to all logits should not change log_prob (softmax)")


Q2 = Question(
    id="q2", functions=("mixture_log_prob",), make_inputs=q2_inputs, probe=q2_probe,
    checks=(Check("returns shape (B,)", _q2_shape),
            Check("density integrates to 1 on a 2D grid", _q2_integrates),
            Check("finite far from every component (logsumexp)", _q2_stable),
            Check("K = 1 reduces to a single Gaussian", _q2_one_component),
            Check("invariant to reordering components", _q2_permutation),
            Check("invariant to shifting all logits", _q2_logits_shift)))


# ---- q3: fit_mixture(x, n_components, n_steps, lr, seed) -> (logits, mu, log_var) -----------

def ring_of_gaussians(n: int, generator: torch.Generator, radius: float = 2.0,
                      std: float = 0.15) -> torch.Tensor:
    """(n, 2) samples from 8 Gaussians on a circle (like the 8-gaussians toy data)."""
    k = torch.randint(0, 8, (n,), generator=generator)
    angle = k.to(torch.float32) * (2 * math.pi / 8)
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # (n, 2)
    return centres + std * torch.randn(n, 2, generator=generator)


def q3_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    return {"x_train": ring_of_gaussians(1000, generator).numpy(),
            "x_test": ring_of_gaussians(500, generator).numpy(),
            "n_components": np.array(8), "n_steps": np.array(500)}


def q3_probe(namespace, inputs):
    fit = student_function(namespace, "fit_mixture")
    mixture = student_function(namespace, "mixture_log_prob")
    x_train, x_test = as_tensor(inputs["x_train"]), as_tensor(inputs["x_test"])
    k, n_steps = int(inputs["n_components"]), int(inputs["n_steps"])
    out = {}
    for name, steps in (("fit", n_steps), ("one_step", 1)):
        params = fit(x_train, k, n_steps=steps, lr=0.05, seed=0)
        if not isinstance(params, tuple) or len(params) != 3:
            raise TypeError("fit_mixture should return a tuple (logits, mu, log_var)")
        logits, mu, log_var = (torch.as_tensor(p).detach() for p in params)
        with torch.no_grad():
            out[f"{name}_test_nll"] = -mixture(x_test, logits, mu, log_var).mean()
        prefix = "" if name == "fit" else "one_step_"
        out.update({f"{prefix}logits": logits, f"{prefix}mu": mu, f"{prefix}log_var": log_var})
    return {key: as_array(value, key) for key, value in out.items()}


def single_gaussian_train_nll(x: np.ndarray) -> float:
    """Mean NLL of the maximum-likelihood diagonal Gaussian on its own training data."""
    var = x.var(axis=0)
    return float(0.5 * x.shape[1] * (LOG_2PI + 1.0) + 0.5 * np.log(var).sum())


def _q3_shapes(inputs, outputs):
    k, d = int(inputs["n_components"]), inputs["x_train"].shape[1]
    expect_shape(outputs["logits"], (k,), "logits")
    expect_shape(outputs["mu"], (k, d), "mu")
    expect_shape(outputs["log_var"], (k, d), "log_var")
    for name in ("logits", "mu", "log_var"):
        expect_finite(outputs[name], name)


def _q3_beats_gaussian(inputs, outputs):
    baseline = single_gaussian_train_nll(inputs["x_train"])
    expect_less(outputs["fit_test_nll"], baseline - 0.5,
                "held-out NLL of the 8-component fit should beat one Gaussian by 0.5 nats")


def _q3_training_helps(inputs, outputs):
    expect_less(outputs["fit_test_nll"], float(outputs["one_step_test_nll"]) - 1e-3,
                "held-out NLL after n_steps should be lower than after 1 step")


Q3 = Question(
    id="q3", functions=("fit_mixture",), make_inputs=q3_inputs, probe=q3_probe,
    checks=(Check("returns (logits, mu, log_var) of shapes (K,), (K, D), (K, D)", _q3_shapes),
            Check("held-out NLL beats a single Gaussian", _q3_beats_gaussian),
            Check("training lowers the held-out NLL", _q3_training_helps)))


QUESTIONS = (Q1, Q2, Q3)
