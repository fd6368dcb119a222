"""Public checks for exercises/02_vae: a Monte Carlo KL to any prior, a VAE with a
mixture-of-Gaussians prior, that VAE trained on digits, and a per-image refinement of q that
tightens the encoder's ELBO.

Shapes: B batch, Z latent dim, D data dim, K prior components, N Monte Carlo repeats,
S samples per estimate, G grid (quadrature) points.

Every property is tested against an exact value: closed-form KLs to a standard normal and to a
Laplace prior, and, for models with a one-dimensional latent, the ELBO, log p(x) and the best
Gaussian q by quadrature on a dense grid of z, computed here from the raw values the probes
return (the student's encoder outputs, decoder logits and prior log-density on the grid). The
trained VAE is evaluated on test digits the notebook never loads, from its exported weights.
Reading this file does not give the answers away: no check holds the mixture's log-density.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from gmcourse.checks._held_out import held_out_digits
from gmcourse.gaussian import LOG_2PI
from gmcourse.grading.expect import expect_close, expect_finite, expect_less, expect_shape
from gmcourse.grading.question import Check, CheckFailed, Question, as_array, as_tensor, student_function


def _generator(inputs, key: str = "seed") -> torch.Generator:
    return torch.Generator().manual_seed(int(inputs[key]))


def _standard_normal(z):
    """log N(z; 0, I) over the last axis: (..., Z) -> (...)."""
    return -0.5 * (z**2 + LOG_2PI).sum(-1)


def _laplace(scale: float):
    """log prod_j Laplace(z_j; 0, scale): (..., Z) -> (...)."""
    return lambda z: (-z.abs() / scale - math.log(2 * scale)).sum(-1)


def _gaussian(mu, log_var):
    """log N(z; mu, diag exp(log_var)) over the last axis, for one fixed (Z,) mean and log-variance."""
    return lambda z: -0.5 * (LOG_2PI + log_var + (z - mu) ** 2 / log_var.exp()).sum(-1)


def _entropy(log_var: np.ndarray) -> np.ndarray:
    """Entropy of N(mu, diag exp(log_var)), summed over the last axis."""
    return 0.5 * (1 + LOG_2PI + log_var).sum(-1)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


# ---- q1: kl_monte_carlo(mu, log_var, log_prior, n_samples, generator=None) -> (B,) --------

def q1_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    return {"mu": (1.5 * torch.randn(4, 2, generator=generator)).numpy(),             # (B, Z)
            "log_var": (0.7 * torch.randn(4, 2, generator=generator)).numpy(),       # (B, Z)
            "laplace_scale": np.array(0.8), "n_samples": np.array(2000), "n_repeats": np.array(40),
            "n_single": np.array(4000), "n_many": np.array(100), "seed": np.array(11)}


def q1_probe(namespace, inputs):
    kl_monte_carlo = student_function(namespace, "kl_monte_carlo")
    mu, log_var = as_tensor(inputs["mu"]), as_tensor(inputs["log_var"])
    n_samples, n_repeats = int(inputs["n_samples"]), int(inputs["n_repeats"])
    b = len(mu)

    def repeats(log_prior, n, times):  # (times, B): independent estimates in one call
        estimate = kl_monte_carlo(mu.repeat(times, 1), log_var.repeat(times, 1), log_prior, n, _generator(inputs))
        return as_array(estimate, "kl_monte_carlo").reshape(times, b)

    with torch.no_grad():
        out = {"normal": repeats(_standard_normal, n_samples, n_repeats),
               "laplace": repeats(_laplace(float(inputs["laplace_scale"])), n_samples, n_repeats),
               "single": repeats(_standard_normal, 1, int(inputs["n_single"])),
               "many": repeats(_standard_normal, int(inputs["n_many"]), int(inputs["n_single"]) // int(inputs["n_many"])),
               "again": as_array(kl_monte_carlo(mu, log_var, _standard_normal, 3, _generator(inputs)), "again"),
               "first": as_array(kl_monte_carlo(mu, log_var, _standard_normal, 3, _generator(inputs)), "first"),
               "prior_is_q": as_array(kl_monte_carlo(mu[:1], log_var[:1], _gaussian(mu[0], log_var[0]), 5,
                                                     _generator(inputs)), "prior_is_q")}
    return out


def exact_kl(inputs, prior: str) -> np.ndarray:
    """(B,) KL(q || p) in closed form, p standard normal or Laplace(0, laplace_scale) per dimension."""
    mu, log_var = inputs["mu"].astype(np.float64), inputs["log_var"].astype(np.float64)
    std = np.exp(0.5 * log_var)
    if prior == "normal":
        return 0.5 * (mu**2 + std**2 - 1 - log_var).sum(-1)
    scale = float(inputs["laplace_scale"])
    mean_abs = std * math.sqrt(2 / math.pi) * np.exp(-mu**2 / (2 * std**2)) + mu * (1 - 2 * _normal_cdf(-mu / std))
    return -_entropy(log_var) + (mean_abs / scale + math.log(2 * scale)).sum(-1)


def _q1_shape(inputs, outputs):
    expect_shape(outputs["first"], (len(inputs["mu"]),), "kl_monte_carlo for mu of shape (B, Z)")


def _q1_against(prior: str, what: str):
    def check(inputs, outputs):
        estimates = outputs[prior]                                                     # (N, B)
        tolerance = 5 * estimates.std(0).max() / math.sqrt(len(estimates)) + 1e-4
        expect_close(estimates.mean(0), exact_kl(inputs, prior), f"mean of {len(estimates)} estimates vs the "
                     f"closed-form KL to {what} (tolerance: 5 standard errors)", rtol=0, atol=float(tolerance))
    return check


def _q1_prior_is_q(inputs, outputs):
    expect_close(outputs["prior_is_q"], np.zeros(1), "with p = q, log q(z) - log p(z) is 0 at every sample", atol=1e-4)


def _q1_variance(inputs, outputs):
    n_many = int(inputs["n_many"])
    with np.errstate(divide="ignore", invalid="ignore"):  # an estimate with no spread fails below
        ratio = outputs["single"].std(0) / outputs["many"].std(0)                         # (B,)
    n_groups = len(outputs["many"])
    tolerance = 4 * math.sqrt(n_many) / math.sqrt(2 * n_groups)  # 4 standard errors of a std ratio
    expect_close(ratio, np.full(len(ratio), math.sqrt(n_many)), f"std of 1-sample estimates / std of "
                 f"{n_many}-sample estimates (averaging n samples divides the std by sqrt(n))", rtol=0, atol=tolerance)


def _q1_seeded(inputs, outputs):
    expect_close(outputs["again"], outputs["first"], "two calls with generators of the same seed")


Q1 = Question(
    id="q1", functions=("kl_monte_carlo",), make_inputs=q1_inputs, probe=q1_probe,
    checks=(Check("returns shape (B,)", _q1_shape),
            Check("unbiased: the closed-form KL to N(0, I)", _q1_against("normal", "N(0, I)")),
            Check("unbiased: the closed-form KL to a Laplace prior", _q1_against("laplace", "Laplace(0, 0.8)")),
            Check("exactly zero at every draw when the prior is q", _q1_prior_is_q),
            Check("n samples divide the spread by sqrt(n)", _q1_variance),
            Check("uses the generator (same seed, same value)", _q1_seeded)))


# ---- quadrature over a one-dimensional latent ------------------------------------------------

def z_grid(half_width: float = 12.0, n: int = 4801) -> np.ndarray:
    return np.linspace(-half_width, half_width, n)


def _log_integral(log_f: np.ndarray, z: np.ndarray) -> np.ndarray:
    """log of the integral over the grid (first axis) of exp(log_f), stably: (G, ...) -> (...)."""
    top = log_f.max(0)
    return top + np.log(np.exp(log_f - top).sum(0) * (z[1] - z[0]))


def gaussian_expectation(mu: np.ndarray, log_var: np.ndarray, z: np.ndarray, f: np.ndarray) -> np.ndarray:
    """E_{N(mu, exp(log_var))}[f(z)] by quadrature: mu, log_var (B,), f (G, B) -> (B,)."""
    q = np.exp(-0.5 * (LOG_2PI + log_var + (z[:, None] - mu) ** 2 / np.exp(log_var)))
    return (q * f).sum(0) * (z[1] - z[0])


def exact_elbo(mu, log_var, z, log_joint) -> np.ndarray:
    """ELBO of q = N(mu, exp(log_var)) (1D) for log p(x, z) on the grid (G, B): E_q[log p(x, z)] + H(q)."""
    return gaussian_expectation(mu, log_var, z, log_joint) + 0.5 * (1 + LOG_2PI + log_var)


def best_gaussian_elbo(mu, log_var, z, log_joint, n_steps: int = 200) -> np.ndarray:
    """The largest ELBO over 1D Gaussians q, per example, by L-BFGS on the quadrature from (mu, log_var)."""
    z_t = torch.as_tensor(z, dtype=torch.float64)[:, None]
    joint = torch.as_tensor(log_joint, dtype=torch.float64)
    m = torch.tensor(np.asarray(mu, dtype=np.float64), requires_grad=True)
    v = torch.tensor(np.asarray(log_var, dtype=np.float64), requires_grad=True)
    optimizer = torch.optim.LBFGS([m, v], max_iter=n_steps, tolerance_grad=1e-10, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def elbo():
        q = torch.exp(-0.5 * (LOG_2PI + v + (z_t - m) ** 2 / v.exp()))
        return (q * joint).sum(0) * (z[1] - z[0]) + 0.5 * (1 + LOG_2PI + v)

    def closure():
        optimizer.zero_grad()
        loss = -elbo().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return np.maximum(elbo().numpy(), exact_elbo(np.asarray(mu), np.asarray(log_var), z, log_joint))


def _log_bernoulli(x, logits):
    """(B, D) and (G, D) -> (G, B) log prod_d Bernoulli(x_d; sigmoid(logits_d))."""
    return (x[None] * logits[:, None] - np.logaddexp(0.0, logits[:, None])).sum(-1)


# ---- q2: class MixturePriorVAE(d, z_dim, n_components, n_hidden, seed=0) ------------------
# encoder = Sequential(Linear(D, H), ReLU, Linear(H, 2Z)) -> mu, log_var; decoder =
# Sequential(Linear(Z, H), ReLU, Linear(H, D)) -> logits; prior_logits (K,), prior_means (K, Z),
# prior_log_vars (K, Z); encode(x), log_prior(z), elbo(x, generator), forward = elbo.

PRIOR_NAMES = ("prior_logits", "prior_means", "prior_log_vars")
STATE_KEYS = {"encoder.0.weight": "enc_w1", "encoder.0.bias": "enc_b1", "encoder.2.weight": "enc_w2",
              "encoder.2.bias": "enc_b2", "decoder.0.weight": "dec_w1", "decoder.0.bias": "dec_b1",
              "decoder.2.weight": "dec_w2", "decoder.2.bias": "dec_b2", "prior_logits": "prior_logits",
              "prior_means": "prior_means", "prior_log_vars": "prior_log_vars"}


def _export_state(model) -> dict[str, np.ndarray]:
    state = model.state_dict()
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise KeyError(f"the model's state_dict lacks {missing}: keep the names encoder, decoder, "
                       "prior_logits, prior_means, prior_log_vars and the layers of the exercise")
    return {name: as_array(state[key], key) for key, name in STATE_KEYS.items()}


def _set_prior(model, inputs, prefix: str) -> None:
    with torch.no_grad():
        for name in PRIOR_NAMES:
            getattr(model, name).copy_(as_tensor(inputs[prefix + name]))


def rebuilt_encoder(state, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mu, log_var (B, Z) of the exported encoder at x (B, D)."""
    h = np.maximum(x @ state["enc_w1"].T + state["enc_b1"], 0.0)
    out = h @ state["enc_w2"].T + state["enc_b2"]
    z_dim = out.shape[-1] // 2
    return out[:, :z_dim], out[:, z_dim:]


def rebuilt_decoder(state, z: np.ndarray) -> np.ndarray:
    """Logits (B, D) of the exported decoder at z (B, Z)."""
    return np.maximum(z @ state["dec_w1"].T + state["dec_b1"], 0.0) @ state["dec_w2"].T + state["dec_b2"]


def q2_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    """Two small models: z_dim = 2 (its prior on a 2D grid) and z_dim = 1 (its ELBO by quadrature)."""
    axis = np.linspace(-9, 9, 181)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    return {"x": (torch.rand(4, 6, generator=generator) < 0.5).float().numpy(),                   # (B, D)
            "grid_2d": grid, "cell_2d": np.array((axis[1] - axis[0]) ** 2),
            # a 2D mixture of 3 components, one of them far from the others and narrow
            "p2_prior_logits": np.array([0.3, -0.5, 0.1]),
            "p2_prior_means": np.array([[-1.5, 0.5], [1.0, -1.0], [5.0, 5.0]]),
            "p2_prior_log_vars": np.array([[0.2, -0.3], [-0.5, 0.4], [-3.0, -3.0]]),
            "far": np.array([[40.0, -40.0], [-60.0, 0.0]]),
            "permutation": np.array([2, 0, 1]),
            # the 1D model's prior: 3 components
            "p1_prior_logits": np.array([0.0, 0.5, -0.5]),
            "p1_prior_means": np.array([[-2.0], [0.5], [2.5]]),
            "p1_prior_log_vars": np.array([[-0.5], [0.0], [-1.0]]),
            "z_grid": z_grid(), "n_repeats": np.array(20000), "seed": np.array(3)}


def q2_probe(namespace, inputs):
    vae_class = student_function(namespace, "MixturePriorVAE")
    out = {}
    plane = vae_class(6, 2, 3, 8, seed=0)           # d, z_dim, n_components, n_hidden
    line = vae_class(6, 1, 3, 8, seed=1)
    _set_prior(plane, inputs, "p2_")
    _set_prior(line, inputs, "p1_")
    x, z = as_tensor(inputs["x"]), as_tensor(inputs["z_grid"])[:, None]
    with torch.no_grad():
        out["elbo_repeats"] = line(x.repeat(int(inputs["n_repeats"]), 1), _generator(inputs))     # (N * B,)
        out["plane_log_prior"] = plane.log_prior(as_tensor(inputs["grid_2d"]))                    # (G,)
        out["plane_far"] = plane.log_prior(as_tensor(inputs["far"]))
        out["plane_means"] = plane.log_prior(as_tensor(inputs["p2_prior_means"]))
        out["plane_batched"] = plane.log_prior(as_tensor(inputs["grid_2d"][:60]).view(3, 20, 2))   # (3, 20)
        permutation = torch.as_tensor(inputs["permutation"], dtype=torch.long)
        for name in PRIOR_NAMES:
            getattr(plane, name).copy_(getattr(plane, name)[permutation])
        out["plane_permuted"] = plane.log_prior(as_tensor(inputs["grid_2d"][:400]))
        mu, log_var = line.encode(x)
        out.update(line_mu=mu, line_log_var=log_var, line_log_prior=line.log_prior(z), line_logits=line.decoder(z),
                   elbo_one=line.elbo(x, _generator(inputs)), elbo_again=line.elbo(x, _generator(inputs)))
    out = {key: as_array(value, key) for key, value in out.items()}
    out.update({f"line_{key}": value for key, value in _export_state(line).items()})
    return out


def _q2_shapes(inputs, outputs):
    b = len(inputs["x"])
    expect_shape(outputs["line_mu"], (b, 1), "encode(x)[0] for z_dim = 1")
    expect_shape(outputs["plane_log_prior"], (len(inputs["grid_2d"]),), "log_prior(z) for z of shape (G, 2)")
    expect_shape(outputs["plane_batched"], (3, 20), "log_prior(z) for z of shape (3, 20, 2)")
    expect_shape(outputs["elbo_one"], (b,), "elbo(x) for x of shape (B, D)")
    expect_shape(outputs["line_prior_means"], (3, 1), "prior_means for z_dim = 1, n_components = 3")


def _q2_architecture(inputs, outputs):
    state = {key[len("line_"):]: value for key, value in outputs.items() if key.startswith("line_")}
    mu, log_var = rebuilt_encoder(state, inputs["x"])
    expect_close(np.concatenate([outputs["line_mu"], outputs["line_log_var"]], 1), np.concatenate([mu, log_var], 1),
                 "encode(x) vs Linear-ReLU-Linear from your encoder's weights, chunked into mu, log_var", atol=1e-4)
    expect_close(outputs["line_logits"], rebuilt_decoder(state, inputs["z_grid"][:, None]),
                 "decoder(z) vs Linear-ReLU-Linear from your decoder's weights", atol=1e-4)


def _q2_normalised(inputs, outputs):
    expect_finite(outputs["plane_log_prior"], "log_prior on the grid")
    mass = float(np.exp(outputs["plane_log_prior"]).sum() * inputs["cell_2d"])
    expect_close(mass, 1.0, "integral of exp(log_prior) over the plane (a Riemann sum on a 181 x 181 grid)", atol=2e-3)


def _q2_narrow_component(inputs, outputs):
    """At the mean of the narrow, far-away component the others contribute nothing: log pi_3 + log N(m; m, s^2)."""
    logits, log_vars = inputs["p2_prior_logits"], inputs["p2_prior_log_vars"]
    log_pi = logits - np.log(np.exp(logits).sum())
    expected = log_pi[2] - 0.5 * (2 * LOG_2PI + log_vars[2].sum())
    expect_close(outputs["plane_means"][2], expected, "log_prior at the mean of the narrow component (5, 5), far "
                 "from the others: log pi_3 - log(2 pi) - (log var_1 + log var_2) / 2", atol=1e-3)


def _q2_stable(inputs, outputs):
    expect_finite(outputs["plane_far"], "log_prior at z = (40, -40) and (-60, 0), far from every component "
                  "(a log of a sum of underflowing densities gives -inf)")
    if not np.all(outputs["plane_far"] < -100):
        raise CheckFailed("log_prior far from every component should be very negative", expected="< -100",
                          actual=outputs["plane_far"])


def _q2_invariances(inputs, outputs):
    expect_close(outputs["plane_permuted"], outputs["plane_log_prior"][:400],
                 "log_prior with the components in another order (a mixture does not care)", atol=1e-4)
    expect_close(outputs["plane_batched"], outputs["plane_log_prior"][:60].reshape(3, 20),
                 "log_prior on z of shape (3, 20, 2) vs the same points as (60, 2)", atol=1e-4)


def _q2_line_terms(inputs, outputs):
    """log p(x, z) (G, B) of the 1D model on the grid, from the student's own decoder and prior values."""
    return _log_bernoulli(inputs["x"], outputs["line_logits"]) + outputs["line_log_prior"][:, None]


def _q2_exact_elbo(inputs, outputs):
    z = inputs["z_grid"]
    repeats = outputs["elbo_repeats"].reshape(int(inputs["n_repeats"]), len(inputs["x"]))
    expected = exact_elbo(outputs["line_mu"][:, 0], outputs["line_log_var"][:, 0], z, _q2_line_terms(inputs, outputs))
    tolerance = 5 * repeats.std(0).max() / math.sqrt(len(repeats)) + 1e-3
    expect_close(repeats.mean(0), expected, "mean of many one-sample ELBOs vs the exact ELBO of your model "
                 "(quadrature over z, with your decoder and log_prior)", rtol=0, atol=float(tolerance))


def _q2_below_log_px(inputs, outputs):
    z = inputs["z_grid"]
    log_px = _log_integral(_q2_line_terms(inputs, outputs), z)
    repeats = outputs["elbo_repeats"].reshape(int(inputs["n_repeats"]), len(inputs["x"]))
    se = repeats.std(0) / math.sqrt(len(repeats))
    expect_less(float(np.max(repeats.mean(0) - log_px - 5 * se)), 0.0,
                "largest (mean ELBO - log p(x)) over the batch, log p(x) by quadrature: the ELBO is a lower bound")


def _q2_seeded(inputs, outputs):
    expect_close(outputs["elbo_again"], outputs["elbo_one"], "two calls with generators of the same seed")


Q2 = Question(
    id="q2", functions=("MixturePriorVAE",), make_inputs=q2_inputs, probe=q2_probe,
    checks=(Check("shapes of encode, log_prior, elbo and the prior's parameters", _q2_shapes),
            Check("encoder and decoder are the exercise's Linear-ReLU-Linear networks", _q2_architecture),
            Check("the prior integrates to one over the plane", _q2_normalised),
            Check("known value at an isolated component's mean", _q2_narrow_component),
            Check("stable far from every component", _q2_stable),
            Check("invariant to the order of the components and to leading axes", _q2_invariances),
            Check("the mean ELBO is the exact ELBO of your model (quadrature)", _q2_exact_elbo),
            Check("the mean ELBO stays below log p(x)", _q2_below_log_px),
            Check("uses the generator (same seed, same value)", _q2_seeded)))


# ---- q3: the trained model, mixture_vae ----------------------------------------------------

D_MNIST = 784
MAX_Z, MAX_HIDDEN, MAX_COMPONENTS = 32, 512, 50
# The reference solution (its q3 budget), trained with seeds 0..4, gave a held-out reconstruction
# term of 93.67-94.95 nats on digits 0-999 (this module's inputs) and 95.55-96.63 on digits
# 1000-1999 (the hidden check's); the threshold sits 2.4 nats beyond the worst of the ten.
RECONSTRUCTION_MAX = 99.0   # nats, E_q[-log p(x | z)] on held-out digits, 8 draws of z per digit


def q3_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    return {"x": torch.randint(0, 2, (5, D_MNIST), generator=generator).float().numpy(),
            "z": (2 * torch.randn(7, generator=generator)).numpy(),
            "test_rows": np.array([0, 1000]), "test_seed": np.array(0), "n_samples": np.array(8), "seed": np.array(0)}


def q3_probe(namespace, inputs):
    """The trained model's ELBO, encoder, decoder and prior on a few probe points, and its weights."""
    mixture_vae = student_function(namespace, "mixture_vae")
    x = as_tensor(inputs["x"])
    with torch.no_grad():
        elbo = mixture_vae(x, _generator(inputs))
        state = _export_state(mixture_vae)
        z_dim = state["prior_means"].shape[1]
        if z_dim > MAX_Z or state["enc_w1"].shape[0] > MAX_HIDDEN or len(state["prior_logits"]) > MAX_COMPONENTS:
            raise ValueError(f"mixture_vae should have at most {MAX_Z} latent dimensions, {MAX_HIDDEN} hidden units "
                             f"and {MAX_COMPONENTS} components")
        z = as_tensor(inputs["z"])[:, None].expand(-1, z_dim)                               # (7, Z)
        mu, log_var = mixture_vae.encode(x)
        out = {"elbo": elbo, "mu": mu, "log_var": log_var, "logits": mixture_vae.decoder(z),
               "log_prior": mixture_vae.log_prior(z)}
    return {**{key: as_array(value, key) for key, value in out.items()}, **state}


def held_out_reconstruction(inputs, outputs) -> float:
    """E_q[-log p(x | z)] in nats on the held-out digits, n_samples draws of z per digit, exported weights."""
    start, stop = (int(v) for v in inputs["test_rows"])
    x = held_out_digits(start, stop, int(inputs["test_seed"]))
    mu, log_var = rebuilt_encoder(outputs, x)
    rng = np.random.default_rng(int(inputs["seed"]))
    total = 0.0
    for _ in range(int(inputs["n_samples"])):
        z = mu + np.exp(0.5 * log_var) * rng.standard_normal(mu.shape)
        logits = rebuilt_decoder(outputs, z)
        total += float(-(x * logits - np.logaddexp(0.0, logits)).sum(1).mean())
    return total / int(inputs["n_samples"])


def _q3_structure(inputs, outputs):
    k, z_dim = outputs["prior_means"].shape
    expect_shape(outputs["enc_w1"], (outputs["enc_w1"].shape[0], D_MNIST), "the encoder's first weight (H, 784)")
    expect_shape(outputs["prior_log_vars"], (k, z_dim), "prior_log_vars (K, Z)")
    if k < 2:
        raise CheckFailed("a mixture prior needs at least 2 components", expected=">= 2", actual=k)
    for key in STATE_KEYS.values():
        expect_finite(outputs[key], key)


def _q3_consistent(inputs, outputs):
    mu, log_var = rebuilt_encoder(outputs, inputs["x"])
    expect_close(outputs["mu"], mu, "encode(x)[0] vs your exported encoder weights", atol=1e-3)
    expect_close(outputs["log_var"], log_var, "encode(x)[1] vs your exported encoder weights", atol=1e-3)
    z = np.repeat(inputs["z"][:, None], outputs["prior_means"].shape[1], 1)
    expect_close(outputs["logits"], rebuilt_decoder(outputs, z), "decoder(z) vs your exported decoder weights",
                 atol=1e-3)
    expect_finite(outputs["elbo"], "mixture_vae(x)")


def _q3_reconstruction(inputs, outputs):
    expect_less(held_out_reconstruction(inputs, outputs), RECONSTRUCTION_MAX,
                "reconstruction E_q[-log p(x|z)] on held-out test digits, nats")


Q3 = Question(
    id="q3", functions=("mixture_vae",), make_inputs=q3_inputs, probe=q3_probe,
    checks=(Check("784 pixels, at least 2 prior components, finite weights", _q3_structure),
            Check("your encoder and decoder match the exported weights", _q3_consistent),
            Check(f"held-out reconstruction below {RECONSTRUCTION_MAX:g} nats", _q3_reconstruction)))


# ---- q4: refine_posterior(x, mu, log_var, decoder, log_prior, n_steps, lr, generator=None) ----
# The exactly integrable model: a 1D latent, an affine decoder over D pixels, and a deliberately
# poor affine encoder that gives the starting q.

def tiny_model_inputs(generator: torch.Generator, n_pixels: int = 6, batch: int = 4) -> dict[str, np.ndarray]:
    """Binary x (B, D); encoder mu = x @ enc_w_mu + enc_b_mu, log_var = x @ enc_w_lv + enc_b_lv, off
    on purpose (shifted by about 1 and too wide), so that its q is far from the best Gaussian;
    decoder logits = z * dec_w + dec_b."""
    d = n_pixels
    return {"x": (torch.rand(batch, d, generator=generator) < 0.5).float().numpy(),
            "enc_w_mu": (0.3 * torch.randn(d, 1, generator=generator)).numpy(),
            "enc_b_mu": (1.0 + 0.3 * torch.randn(1, generator=generator)).numpy(),
            "enc_w_lv": (0.1 * torch.randn(d, 1, generator=generator)).numpy(),
            "enc_b_lv": np.array([1.0], dtype=np.float32),
            "dec_w": (1.5 * torch.randn(1, d, generator=generator)).numpy(),
            "dec_b": (0.5 * torch.randn(d, generator=generator)).numpy()}


REFINE_STEPS, REFINE_LR = 500, 0.05
# the reference (cosine decay of the learning rate to 0) ends within 0.013 nats of the best
# Gaussian ELBO on seeds 0-3; constant lr 0.05 ends about 0.05 nats short
REFINE_TOLERANCE = 0.03


def q4_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    return {**tiny_model_inputs(generator), "z_grid": z_grid(), "n_steps": np.array(REFINE_STEPS), "lr": np.array(REFINE_LR),
            "seed": np.array(5), "prior": np.array(0), "laplace_scale": np.array(1.0)}


def _q4_prior(inputs):
    return _standard_normal if int(inputs["prior"]) == 0 else _laplace(float(inputs["laplace_scale"]))


def _q4_prior_on_grid(inputs) -> np.ndarray:
    z = inputs["z_grid"]
    if int(inputs["prior"]) == 0:
        return -0.5 * (z**2 + LOG_2PI)
    scale = float(inputs["laplace_scale"])
    return -np.abs(z) / scale - math.log(2 * scale)


def q4_probe(namespace, inputs):
    refine_posterior = student_function(namespace, "refine_posterior")
    x = as_tensor(inputs["x"])
    w_dec, b_dec = as_tensor(inputs["dec_w"]), as_tensor(inputs["dec_b"])

    def decoder(z):
        return z @ w_dec + b_dec  # (B, D) logits

    mu = x @ as_tensor(inputs["enc_w_mu"]) + as_tensor(inputs["enc_b_mu"])                       # (B, 1)
    log_var = x @ as_tensor(inputs["enc_w_lv"]) + as_tensor(inputs["enc_b_lv"])
    n_steps, lr = int(inputs["n_steps"]), float(inputs["lr"])
    prior = _q4_prior(inputs)
    out = {"mu_start": mu.clone(), "log_var_start": log_var.clone()}
    out["mu"], out["log_var"] = refine_posterior(x, mu, log_var, decoder, prior, n_steps, lr, _generator(inputs))
    out["mu_again"], out["log_var_again"] = refine_posterior(x, mu, log_var, decoder, prior, n_steps, lr,
                                                             _generator(inputs))
    out["mu_zero"], out["log_var_zero"] = refine_posterior(x, mu, log_var, decoder, prior, 0, lr, _generator(inputs))
    out["mu_after"], out["log_var_after"] = mu, log_var
    return {key: as_array(value, key) for key, value in out.items()}


def _q4_log_joint(inputs) -> np.ndarray:
    """log p(x, z) (G, B) of the tiny model on the grid."""
    z = inputs["z_grid"]
    logits = z[:, None] * inputs["dec_w"].astype(np.float64) + inputs["dec_b"].astype(np.float64)
    return _log_bernoulli(inputs["x"].astype(np.float64), logits) + _q4_prior_on_grid(inputs)[:, None]


def _q4_start(inputs) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's mu and log_var (B,) of the tiny model, in float64."""
    x = inputs["x"].astype(np.float64)
    return (x @ inputs["enc_w_mu"] + inputs["enc_b_mu"])[:, 0], (x @ inputs["enc_w_lv"] + inputs["enc_b_lv"])[:, 0]


def _q4_shapes(inputs, outputs):
    b = len(inputs["x"])
    expect_shape(outputs["mu"], (b, 1), "refined mu for mu of shape (B, 1)")
    expect_shape(outputs["log_var"], (b, 1), "refined log_var for log_var of shape (B, 1)")


def _q4_no_steps(inputs, outputs):
    expect_close(outputs["mu_zero"], outputs["mu_start"], "n_steps = 0 returns mu as it was")
    expect_close(outputs["log_var_zero"], outputs["log_var_start"], "n_steps = 0 returns log_var as it was")
    expect_close(outputs["mu_after"], outputs["mu_start"], "the mu passed in is not changed in place")


def _q4_improves(inputs, outputs):
    z, joint = inputs["z_grid"], _q4_log_joint(inputs)
    start = exact_elbo(*_q4_start(inputs), z, joint)
    refined = exact_elbo(outputs["mu"][:, 0], outputs["log_var"][:, 0], z, joint)
    expect_less(float(np.max(start - refined)), -0.01, "largest (exact ELBO of the encoder's q - exact ELBO of the "
                "refined q) over the batch, nats: refining must raise the bound")


def _q4_reaches_best(inputs, outputs):
    z, joint = inputs["z_grid"], _q4_log_joint(inputs)
    best = best_gaussian_elbo(*_q4_start(inputs), z, joint)
    refined = exact_elbo(outputs["mu"][:, 0], outputs["log_var"][:, 0], z, joint)
    expect_close(refined, best, f"exact ELBO of your refined q vs the best Gaussian's (both by quadrature), after "
                 f"{int(inputs['n_steps'])} steps from lr {float(inputs['lr']):g}", rtol=0, atol=REFINE_TOLERANCE)


def _q4_seeded(inputs, outputs):
    expect_close(outputs["mu_again"], outputs["mu"], "two calls with generators of the same seed: mu")


Q4 = Question(
    id="q4", functions=("refine_posterior",), make_inputs=q4_inputs, probe=q4_probe,
    checks=(Check("returns mu and log_var of the input's shape", _q4_shapes),
            Check("zero steps change nothing; inputs are not changed", _q4_no_steps),
            Check("the refined q has a higher ELBO than the encoder's", _q4_improves),
            Check("the refined q reaches the best Gaussian ELBO", _q4_reaches_best),
            Check("uses the generator (same seed, same result)", _q4_seeded)))


QUESTIONS = (Q1, Q2, Q3, Q4)
