"""Public checks for exercises/02_vae: reparameterised sample, Gaussian KL, ELBO, IWAE bound.

Shapes: B batch, Z latent dim, D data dim, N Monte Carlo repeats, G quadrature points.

The ELBO and IWAE questions use a model small enough to integrate exactly: a 1D latent z with
prior N(0, 1), an affine Gaussian encoder and an affine Bernoulli decoder over D pixels. On a
dense grid of z the checks compute log p(x), E_q[log p(x | z)] and the true ELBO by quadrature,
so every property is tested against an exact value, never against a copied answer. The probes
return only the raw values of the student's functions (gradients are central differences of
those values, taken by the checks), so a batch grade never rests on autograd inside the
student's kernel.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from gmcourse.grading.expect import expect_close, expect_finite, expect_less, expect_shape
from gmcourse.grading.question import Check, CheckFailed, Question, as_array, as_tensor, student_function

LOG_2PI = math.log(2 * math.pi)


def _generator(inputs, key: str = "seed") -> torch.Generator:
    return torch.Generator().manual_seed(int(inputs[key]))


# ---- q1: reparameterize(mu, log_var, generator=None) -> z ----------------------------------

def q1_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    return {"mu": (2.0 * torch.randn(3, generator=generator)).numpy(),            # (Z,)
            "log_var": torch.randn(3, generator=generator).numpy(),               # (Z,)
            "n": np.array(20000), "seed": np.array(1234),
            "mu_batch": torch.randn(5, 3, generator=generator).numpy(),           # (B, Z)
            "log_var_batch": torch.randn(5, 3, generator=generator).numpy()}


FD_STEP = 1e-2


def _finite_differences(fn, array: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fn at ``array`` moved by +-FD_STEP in one entry at a time: two (n_entries, ...) stacks."""
    steps = FD_STEP * torch.eye(array.numel()).view(-1, *array.shape)
    return torch.stack([fn(array + e) for e in steps]), torch.stack([fn(array - e) for e in steps])


def q1_probe(namespace, inputs):
    reparameterize = student_function(namespace, "reparameterize")
    n = int(inputs["n"])
    mu, log_var = as_tensor(inputs["mu"]), as_tensor(inputs["log_var"])
    mu_b, log_var_b = as_tensor(inputs["mu_batch"]), as_tensor(inputs["log_var_batch"])
    with torch.no_grad():
        z = reparameterize(mu.expand(n, -1), log_var.expand(n, -1), _generator(inputs))  # (N, Z)
        z_b = reparameterize(mu_b, log_var_b, _generator(inputs))  # (B, Z)
        z_again = reparameterize(mu_b, log_var_b, _generator(inputs))
        mu_plus, mu_minus = _finite_differences(lambda m: reparameterize(m, log_var_b, _generator(inputs)), mu_b)
        lv_plus, lv_minus = _finite_differences(lambda v: reparameterize(mu_b, v, _generator(inputs)), log_var_b)
    return {"z": as_array(z, "z"), "z_batch": as_array(z_b, "z"), "z_again": as_array(z_again, "z"),
            "mu_plus": as_array(mu_plus, "z"), "mu_minus": as_array(mu_minus, "z"),
            "log_var_plus": as_array(lv_plus, "z"), "log_var_minus": as_array(lv_minus, "z")}


def finite_difference_gradient(outputs, name: str, shape) -> np.ndarray:
    """d(sum of the outputs)/d(each entry of the input ``name``), from the probe's +-FD_STEP values."""
    plus, minus = outputs[f"{name}_plus"], outputs[f"{name}_minus"]
    return ((plus - minus).reshape(len(plus), -1).sum(1) / (2 * FD_STEP)).reshape(shape)


def _q1_shape(inputs, outputs):
    expect_shape(outputs["z_batch"], inputs["mu_batch"].shape, "z for mu of shape (B, Z)")


def _q1_mean(inputs, outputs):
    n, std = outputs["z"].shape[0], np.exp(0.5 * inputs["log_var"])
    expect_close(outputs["z"].mean(0), inputs["mu"], "Monte Carlo mean of z (tolerance: 5 standard errors)",
                 rtol=0, atol=float(5 * std.max() / math.sqrt(n)))


def _q1_std(inputs, outputs):
    n, std = outputs["z"].shape[0], np.exp(0.5 * inputs["log_var"])
    expect_close(outputs["z"].std(0), std, "Monte Carlo std of z vs exp(log_var / 2)",
                 rtol=0, atol=float(5 * std.max() / math.sqrt(2 * n)))


def _q1_grad_mu(inputs, outputs):
    shape = inputs["mu_batch"].shape
    expect_close(finite_difference_gradient(outputs, "mu", shape), np.ones(shape),
                 "d(sum z)/d mu by central differences of your z, same generator seed (z = mu + noise)",
                 rtol=1e-3, atol=1e-3)


def _q1_grad_log_var(inputs, outputs):
    expected = 0.5 * (outputs["z_batch"] - inputs["mu_batch"])
    expect_close(finite_difference_gradient(outputs, "log_var", expected.shape), expected,
                 "d(sum z)/d log_var by central differences of your z vs (z - mu) / 2", rtol=1e-3, atol=1e-3)


def _q1_seeded(inputs, outputs):
    expect_close(outputs["z_again"], outputs["z_batch"],
                 "two calls with generators of the same seed should give the same z (draw eps from generator)")


Q1 = Question(
    id="q1", functions=("reparameterize",), make_inputs=q1_inputs, probe=q1_probe,
    checks=(Check("returns mu's shape", _q1_shape),
            Check("sample mean matches mu", _q1_mean),
            Check("sample std matches exp(log_var / 2)", _q1_std),
            Check("gradient w.r.t. mu is 1", _q1_grad_mu),
            Check("gradient w.r.t. log_var is (z - mu) / 2", _q1_grad_log_var),
            Check("uses the generator (same seed, same sample)", _q1_seeded)))


# ---- q2: gaussian_kl(mu, log_var) -> (B,) ---------------------------------------------------

def q2_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    return {"mu": torch.randn(4, 3, generator=generator).numpy(),               # (B, Z)
            "log_var": (0.7 * torch.randn(4, 3, generator=generator)).numpy(),
            "mc_samples": np.array(200_000), "mc_seed": np.array(7)}


def q2_probe(namespace, inputs):
    gaussian_kl = student_function(namespace, "gaussian_kl")
    mu, log_var = as_tensor(inputs["mu"]), as_tensor(inputs["log_var"])
    with torch.no_grad():
        out = {"kl": gaussian_kl(mu, log_var),
               "at_prior": gaussian_kl(torch.zeros_like(mu), torch.zeros_like(log_var)),
               "first": gaussian_kl(mu[:, :1], log_var[:, :1]),
               "rest": gaussian_kl(mu[:, 1:], log_var[:, 1:])}
        out["mu_plus"], out["mu_minus"] = _finite_differences(lambda m: gaussian_kl(m, log_var), mu)
    return {key: as_array(value, key) for key, value in out.items()}


def _q2_shape(inputs, outputs):
    expect_shape(outputs["kl"], (inputs["mu"].shape[0],), "KL for mu of shape (B, Z)")


def _q2_monte_carlo(inputs, outputs):
    rng = np.random.default_rng(int(inputs["mc_seed"]))
    mu, log_var = inputs["mu"].astype(np.float64), inputs["log_var"].astype(np.float64)
    eps = rng.standard_normal((int(inputs["mc_samples"]),) + mu.shape)   # (N, B, Z)
    z = mu + np.exp(0.5 * log_var) * eps
    log_q = -0.5 * (LOG_2PI + log_var + eps**2)
    log_p = -0.5 * (LOG_2PI + z**2)
    estimate = (log_q - log_p).sum(-1)                                      # (N, B)
    tolerance = 5 * estimate.std(0).max() / math.sqrt(len(estimate))
    expect_close(outputs["kl"], estimate.mean(0), "KL vs a Monte Carlo estimate E_q[log q(z) - log p(z)] "
                 "(tolerance: 5 standard errors)", rtol=0, atol=float(tolerance))


def _q2_zero(inputs, outputs):
    expect_close(outputs["at_prior"], np.zeros(inputs["mu"].shape[0]), "KL(N(0, I) || N(0, I))")


def _q2_nonnegative(inputs, outputs):
    expect_less(-float(np.min(outputs["kl"])), 1e-6, "minus the smallest KL (a KL is never negative)")


def _q2_gradient(inputs, outputs):
    expect_close(finite_difference_gradient(outputs, "mu", inputs["mu"].shape), inputs["mu"],
                 "d KL / d mu by central differences of your KL (KL grows like |mu|^2 / 2)", rtol=1e-3, atol=1e-3)


def _q2_additive(inputs, outputs):
    expect_close(outputs["first"] + outputs["rest"], outputs["kl"],
                 "KL over dims 1..Z vs KL of dim 1 plus KL of dims 2..Z (independent dims add up)")


Q2 = Question(
    id="q2", functions=("gaussian_kl",), make_inputs=q2_inputs, probe=q2_probe,
    checks=(Check("returns shape (B,)", _q2_shape),
            Check("matches a Monte Carlo estimate", _q2_monte_carlo),
            Check("is zero when q is the prior", _q2_zero),
            Check("is never negative", _q2_nonnegative),
            Check("gradient w.r.t. mu is mu", _q2_gradient),
            Check("adds up over latent dimensions", _q2_additive)))


# ---- the exactly integrable model of q3 and q4 ---------------------------------------------

def tiny_model_inputs(generator: torch.Generator, n_pixels: int = 6, batch: int = 4) -> dict[str, np.ndarray]:
    """Parameters of a 1D-latent VAE and a few binary x: encoder mu = x @ enc_w_mu + enc_b_mu,
    log_var = x @ enc_w_lv + enc_b_lv; decoder logits = z * dec_w + dec_b, all as NumPy arrays."""
    d = n_pixels
    return {"x": (torch.rand(batch, d, generator=generator) < 0.5).float().numpy(),   # (B, D)
            "enc_w_mu": (0.3 * torch.randn(d, 1, generator=generator)).numpy(),
            "enc_b_mu": (0.3 * torch.randn(1, generator=generator)).numpy(),
            "enc_w_lv": (0.1 * torch.randn(d, 1, generator=generator)).numpy(),
            "enc_b_lv": np.array([-0.5], dtype=np.float32),
            "dec_w": (1.5 * torch.randn(1, d, generator=generator)).numpy(),          # (1, D)
            "dec_b": (0.5 * torch.randn(d, generator=generator)).numpy()}


def tiny_networks(inputs, scale: float = 1.0, ignore_z: bool = False):
    """The encoder (x -> mu, log_var) and decoder (z -> logits) of the tiny model, as callables."""
    w_mu, b_mu = as_tensor(inputs["enc_w_mu"]), as_tensor(inputs["enc_b_mu"])
    w_lv, b_lv = as_tensor(inputs["enc_w_lv"]), as_tensor(inputs["enc_b_lv"])
    w_dec, b_dec = as_tensor(inputs["dec_w"]) * (0.0 if ignore_z else scale), as_tensor(inputs["dec_b"]) * scale

    def encoder(x):
        x = x.flatten(1)
        return x @ w_mu + b_mu, x @ w_lv + b_lv  # (B, 1), (B, 1)

    def decoder(z):
        return z @ w_dec + b_dec  # (B, D) logits

    return encoder, decoder


def _log_bernoulli(x, logits):
    """(B, D) and (G, D) -> (G, B) log prod_d Bernoulli(x_d; sigmoid(logits_d))."""
    return (x[None] * logits[:, None] - np.logaddexp(0.0, logits[:, None])).sum(-1)


def exact_terms(inputs, scale: float = 1.0, ignore_z: bool = False, n_grid: int = 8001):
    """By quadrature on z in [-12, 12]: log p(x), E_q[log p(x | z)] and KL(q || p), each (B,)."""
    x = inputs["x"].astype(np.float64).reshape(len(inputs["x"]), -1)
    z = np.linspace(-12, 12, n_grid)                                                # (G,)
    dz = z[1] - z[0]
    w = 0.0 if ignore_z else scale
    logits = z[:, None] * inputs["dec_w"].astype(np.float64) * w + inputs["dec_b"].astype(np.float64) * scale
    log_px_z = _log_bernoulli(x, logits)                                            # (G, B)
    log_prior = -0.5 * (LOG_2PI + z**2)[:, None]
    joint = log_px_z + log_prior
    top = joint.max(0)
    log_px = top + np.log(np.exp(joint - top).sum(0) * dz)                          # (B,)
    mu = (x @ inputs["enc_w_mu"].astype(np.float64) + inputs["enc_b_mu"])[:, 0]
    log_var = (x @ inputs["enc_w_lv"].astype(np.float64) + inputs["enc_b_lv"])[:, 0]
    q = np.exp(-0.5 * (LOG_2PI + log_var + (z[:, None] - mu) ** 2 / np.exp(log_var)))  # (G, B)
    expected_log_px_z = (q * log_px_z).sum(0) * dz
    kl = 0.5 * (mu**2 + np.exp(log_var) - 1 - log_var)
    return log_px, expected_log_px_z, kl


def _repeat_calls(fn, inputs, n_repeats: int, **kwargs) -> np.ndarray:
    """Call fn on x repeated n_repeats times (one batch): returns (N, B) independent estimates."""
    x = as_tensor(inputs["x"])
    with torch.no_grad():
        values = fn(x.repeat(n_repeats, 1), **kwargs)                               # (N * B,)
    return as_array(values, "result").reshape(n_repeats, len(x))


# ---- q3: elbo(x, encoder, decoder, generator=None) -> (B,) ---------------------------------

def q3_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    return {**tiny_model_inputs(generator), "n_repeats": np.array(20000), "seed": np.array(99)}


def q3_probe(namespace, inputs):
    elbo = student_function(namespace, "elbo")
    encoder, decoder = tiny_networks(inputs)
    x = as_tensor(inputs["x"])
    with torch.no_grad():
        one = elbo(x, encoder, decoder, _generator(inputs))
        again = elbo(x, encoder, decoder, _generator(inputs))
    repeats = _repeat_calls(lambda xs: elbo(xs, encoder, decoder, _generator(inputs)), inputs, int(inputs["n_repeats"]))
    enc0, dec0 = tiny_networks(inputs, ignore_z=True)
    with torch.no_grad():
        ignoring_z = elbo(x, enc0, dec0, _generator(inputs))
    return {"elbo": as_array(one, "elbo"), "elbo_again": as_array(again, "elbo"), "repeats": repeats,
            "ignoring_z": as_array(ignoring_z, "elbo")}


def _q3_shape(inputs, outputs):
    expect_shape(outputs["elbo"], (inputs["x"].shape[0],), "ELBO for x of shape (B, D)")


def _q3_exact_mean(inputs, outputs):
    log_px, expected_log_px_z, kl = exact_terms(inputs)
    repeats = outputs["repeats"]
    tolerance = 5 * repeats.std(0).max() / math.sqrt(len(repeats)) + 1e-3
    expect_close(repeats.mean(0), expected_log_px_z - kl, "mean of many one-sample ELBOs vs the exact ELBO "
                 "E_q[log p(x|z)] - KL by quadrature (tolerance: 5 standard errors)", rtol=0, atol=float(tolerance))


def _q3_below_log_px(inputs, outputs):
    log_px, _, _ = exact_terms(inputs)
    expect_less(float(np.max(outputs["repeats"].mean(0) - log_px)), 0.0,
                "largest (mean ELBO - exact log p(x)) over the batch: a lower bound stays below")


def _q3_ignoring_z(inputs, outputs):
    _, expected_log_px_z, kl = exact_terms(inputs, ignore_z=True)
    expect_close(outputs["ignoring_z"], expected_log_px_z - kl,
                 "with a decoder that ignores z, the ELBO is exactly log p(x|z) - KL(q || p)", rtol=1e-4, atol=1e-3)


def _q3_seeded(inputs, outputs):
    expect_close(outputs["elbo_again"], outputs["elbo"], "two calls with generators of the same seed")


Q3 = Question(
    id="q3", functions=("elbo",), make_inputs=q3_inputs, probe=q3_probe,
    checks=(Check("returns shape (B,)", _q3_shape),
            Check("its average is the exact ELBO", _q3_exact_mean),
            Check("stays below log p(x)", _q3_below_log_px),
            Check("reconstruction minus KL when the decoder ignores z", _q3_ignoring_z),
            Check("uses the generator (same seed, same value)", _q3_seeded)))


# ---- q4: iwae_bound(x, encoder, decoder, k, generator=None) -> (B,) -------------------------

def q4_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    return {**tiny_model_inputs(generator), "ks": np.array([1, 10, 1000]), "n_repeats": np.array(2000),
            "seed": np.array(5), "big_scale": np.array(60.0)}


def q4_probe(namespace, inputs):
    iwae_bound = student_function(namespace, "iwae_bound")
    encoder, decoder = tiny_networks(inputs)
    n_repeats = int(inputs["n_repeats"])
    out = {}
    for k in inputs["ks"]:
        k = int(k)
        out[f"k{k}"] = _repeat_calls(lambda xs: iwae_bound(xs, encoder, decoder, k, _generator(inputs)),
                                     inputs, max(1, n_repeats // max(1, k // 10)))
    enc_big, dec_big = tiny_networks(inputs, scale=float(inputs["big_scale"]))
    with torch.no_grad():
        x = as_tensor(inputs["x"])
        out["big_logits"] = as_array(iwae_bound(x, enc_big, dec_big, 10, _generator(inputs)), "iwae")
    return out


def _q4_mean(outputs, k):
    return outputs[f"k{k}"].mean(0), outputs[f"k{k}"].std(0) / math.sqrt(len(outputs[f"k{k}"]))


def _q4_shape(inputs, outputs):
    for k in inputs["ks"]:
        expect_shape(outputs[f"k{int(k)}"][0], (inputs["x"].shape[0],), f"IWAE bound with k = {int(k)} for x (B, D)")


def _q4_k1_is_elbo(inputs, outputs):
    _, expected_log_px_z, kl = exact_terms(inputs)
    mean, se = _q4_mean(outputs, 1)
    expect_close(mean, expected_log_px_z - kl, "mean of L_1 vs the exact ELBO (tolerance: 5 standard errors)",
                 rtol=0, atol=float(5 * se.max() + 1e-3))


def _q4_tightens(inputs, outputs):
    ks = [int(k) for k in inputs["ks"]]
    for small, large in zip(ks[:-1], ks[1:]):
        m_small, se_small = _q4_mean(outputs, small)
        m_large, se_large = _q4_mean(outputs, large)
        expect_less(float(np.max(m_small - m_large - 5 * (se_small + se_large))), 0.0,
                    f"largest mean L_{small} - mean L_{large} (allowing 5 standard errors): L_k grows with k")


def _q4_converges(inputs, outputs):
    log_px, _, _ = exact_terms(inputs)
    k = int(inputs["ks"][-1])
    mean, se = _q4_mean(outputs, k)
    expect_close(mean, log_px, f"mean L_{k} vs the exact log p(x) by quadrature", rtol=0,
                 atol=float(0.02 + 5 * se.max()))
    expect_less(float(np.max(mean - log_px - 5 * se)), 0.0, f"mean L_{k} - log p(x): still a lower bound")


def _q4_stable(inputs, outputs):
    expect_finite(outputs["big_logits"], "L_10 when log p(x|z) is about -1000 (use logsumexp, not log of a sum of exp)")
    log_px, _, _ = exact_terms(inputs, scale=float(inputs["big_scale"]))
    if not np.all(outputs["big_logits"] <= log_px + 1e-2):
        raise CheckFailed("L_10 with large logits should stay below the exact log p(x)",
                          expected=log_px, actual=outputs["big_logits"])


Q4 = Question(
    id="q4", functions=("iwae_bound",), make_inputs=q4_inputs, probe=q4_probe,
    checks=(Check("returns shape (B,) for every k", _q4_shape),
            Check("k = 1 is the ELBO", _q4_k1_is_elbo),
            Check("tightens as k grows", _q4_tightens),
            Check("the largest k approaches the exact log p(x)", _q4_converges),
            Check("stable when the weights underflow", _q4_stable)))


QUESTIONS = (Q1, Q2, Q3, Q4)
