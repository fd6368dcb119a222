"""Hidden checks for exercises/02_vae (instructors only; never installed, released or copied
into a grading scratch directory). They reuse the public probes of ``gmcourse.checks.vae`` with
other inputs (extreme variances, more pixels, other seeds) and add stronger checks, computed here
in the grader's process.

Shapes: B batch, Z latent dim, D data dim, N Monte Carlo repeats.
"""
from __future__ import annotations

import numpy as np
import torch

from gmcourse.checks import vae
from gmcourse.grading.expect import expect_close
from gmcourse.grading.question import Check, Question


def reference_kl(mu, log_var):
    """KL(N(mu, diag(exp(log_var))) || N(0, I)) by torch.distributions, (B, Z) -> (B,)."""
    mu, log_var = torch.as_tensor(mu, dtype=torch.float64), torch.as_tensor(log_var, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * log_var).exp())
    return torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1).numpy()


def q1_inputs(generator):
    inputs = vae.q1_inputs(generator)
    inputs["mu"] = np.array([10.0, -3.0, 0.0, 0.5], dtype=np.float32)
    inputs["log_var"] = np.array([-6.0, 3.0, 0.0, 1.0], dtype=np.float32)
    inputs["n"] = np.array(50000)
    inputs["mu_batch"] = 3 * torch.randn(7, 4, generator=generator).numpy()
    inputs["log_var_batch"] = 2 * torch.randn(7, 4, generator=generator).numpy()
    return inputs


def _q1_gaussian_noise(inputs, outputs):
    eps = (outputs["z"] - inputs["mu"]) / np.exp(0.5 * inputs["log_var"])  # (N, Z), N(0, 1) if correct
    within_one = (np.abs(eps) < 1).mean(0)
    expect_close(within_one, np.full(eps.shape[1], 0.6827), "fraction of (z - mu) / std within +-1 "
                 "(a standard normal has 0.6827)", rtol=0, atol=0.01)


def q2_inputs(generator):
    inputs = vae.q2_inputs(generator)
    inputs["mu"] = np.concatenate([inputs["mu"], [[10.0, -7.0, 0.0]]]).astype(np.float32)
    inputs["log_var"] = np.concatenate([inputs["log_var"], [[-8.0, 5.0, 0.0]]]).astype(np.float32)
    return inputs


def _q2_reference(inputs, outputs):
    expect_close(outputs["kl"], reference_kl(inputs["mu"], inputs["log_var"]),
                 "KL vs torch.distributions.kl_divergence", rtol=1e-4, atol=1e-4)


def q3_inputs(generator):
    return {**vae.tiny_model_inputs(generator, n_pixels=12, batch=6), "n_repeats": np.array(40000),
            "seed": np.array(2024)}


def q4_inputs(generator):
    return {**vae.tiny_model_inputs(generator, n_pixels=10, batch=5), "ks": np.array([1, 5, 50, 2000]),
            "n_repeats": np.array(4000), "seed": np.array(77), "big_scale": np.array(100.0)}


QUESTIONS = (
    Question(id="q1", functions=vae.Q1.functions, make_inputs=q1_inputs, probe=vae.q1_probe,
             checks=(Check("noise is standard normal, also at extreme variances", _q1_gaussian_noise),
                     *vae.Q1.checks), seed=4321),
    Question(id="q2", functions=vae.Q2.functions, make_inputs=q2_inputs, probe=vae.q2_probe,
             checks=(Check("reference values, also for large mu and extreme variances", _q2_reference),
                     *vae.Q2.checks), seed=4321),
    Question(id="q3", functions=vae.Q3.functions, make_inputs=q3_inputs, probe=vae.q3_probe,
             checks=vae.Q3.checks, seed=4321),
    Question(id="q4", functions=vae.Q4.functions, make_inputs=q4_inputs, probe=vae.q4_probe,
             checks=vae.Q4.checks, seed=4321),
)
