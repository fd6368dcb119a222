"""Public checks for exercises/06_diffusion: the cosine schedule and the forward process in closed
form, the denoising loss measured in three parameterisations, the DDPM posterior and one reverse
update, one DDIM update for any eta, classifier-free guidance in one network call, and a velocity
field trained by flow matching on eight Gaussians, graded on its samples.

Shapes: B batch (rows), D data dim, C cases of (alpha_bar_t, alpha_bar_prev), T steps, N samples.

Every property is tested on the raw values the probes return, against something computed here:
moments of many noised points, the one-step transition of eq. (2) composed with your closed form,
a model that predicts the noise exactly (or off by a known constant), central differences of your
loss, the posterior of eq. (5) estimated by least squares on simulated pairs (x_{t-1}, x_t), the
marginals of a whole reverse chain with the exact noise predictor of a Gaussian, an update run
backwards, a network whose two halves of the batch the check can tell apart, and the share of
samples that land on a mode. Reading this file does not give the answers away: no check holds the
posterior's closed form, the update rules or the guidance combination (the hidden checks do).
"""
from __future__ import annotations

import functools
import math
import time

import numpy as np
import torch

from gmcourse.grading.expect import expect_close, expect_finite, expect_less, expect_shape
from gmcourse.grading.question import Check, CheckFailed, Question, as_array, student_function

F64 = torch.float64


def _t(array) -> torch.Tensor:
    """A float64 tensor copy of a check input (these checks run your code in float64)."""
    return torch.tensor(np.asarray(array), dtype=F64)


def _cosine_f(u, s):
    """Nichol and Dhariwal's f(u) = cos^2((u + s) / (1 + s) pi / 2), eq. (3)."""
    return np.cos((np.asarray(u, np.float64) + s) / (1 + s) * math.pi / 2) ** 2


# ---- q1: cosine_alpha_bars(n_steps, s, max_beta) -> (T,); noised(x0, alpha_bar, noise) -> (B, D) ----

Q1_SCHEDULES = ((1000, 0.008, 0.999), (50, 0.008, 0.999), (20, 0.02, 0.3))   # (T, s, max_beta)


def q1_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    g = dict(generator=generator, dtype=F64)
    n_rep = 5000
    x0 = torch.tensor([[1.5, -0.5], [0.0, 2.0], [-1.0, -1.0], [3.0, 0.5]], dtype=F64)     # (4, 2)
    alpha_bar = torch.tensor([0.9, 0.5, 0.1, 0.01], dtype=F64)                            # (4,), one per x0
    return {"schedules": np.array(Q1_SCHEDULES),
            "x0": x0.repeat(n_rep, 1).numpy(), "alpha_bar": alpha_bar.repeat(n_rep).numpy(),   # (4 n_rep, ...)
            "noise": torch.randn(4 * n_rep, 2, **g).numpy(),
            "noise_2": torch.randn(4 * n_rep, 2, **g).numpy(),
            "noise_3": torch.randn(4 * n_rep, 2, **g).numpy(),
            "alpha_bar_s": np.array(0.6), "alpha_bar_t": np.array(0.15)}


def q1_probe(namespace, inputs):
    schedule = student_function(namespace, "cosine_alpha_bars")
    noised = student_function(namespace, "noised")
    out = {}
    for i, (n_steps, s, max_beta) in enumerate(inputs["schedules"]):
        out[f"alpha_bars_{i}"] = as_array(schedule(int(n_steps), s=float(s), max_beta=float(max_beta)),
                                          f"cosine_alpha_bars({int(n_steps)})").reshape(-1)
    x0, alpha_bar = _t(inputs["x0"]), _t(inputs["alpha_bar"])
    out["x_t"] = as_array(noised(x0, alpha_bar, _t(inputs["noise"])), "noised")
    out["x_t_zero_noise"] = as_array(noised(x0, alpha_bar, torch.zeros_like(x0)), "noised with zero noise")
    # the same x0 to two levels: alpha_bar_s, then (in the check) on to alpha_bar_t by eq. (2); and directly to t
    n = len(x0)
    out["x_s"] = as_array(noised(x0, torch.full((n,), float(inputs["alpha_bar_s"]), dtype=F64), _t(inputs["noise_2"])),
                          "noised to alpha_bar_s")
    out["x_t_direct"] = as_array(noised(x0, torch.full((n,), float(inputs["alpha_bar_t"]), dtype=F64),
                                        _t(inputs["noise_3"])), "noised to alpha_bar_t")
    return out


def _q1_schedule_shape(inputs, outputs):
    for i, (n_steps, _, _) in enumerate(inputs["schedules"]):
        expect_shape(outputs[f"alpha_bars_{i}"], (int(n_steps),), f"cosine_alpha_bars({int(n_steps)}): one value a step")
        expect_finite(outputs[f"alpha_bars_{i}"], "alpha_bars")
    for i, _ in enumerate(inputs["schedules"]):
        a = outputs[f"alpha_bars_{i}"]
        if not (np.all(a > 0) and np.all(a < 1) and np.all(np.diff(a) < 0)):
            raise CheckFailed("alpha_bar_t in (0, 1), strictly decreasing in t", expected="1 > a_1 > a_2 > ... > 0",
                              actual=a)


def _betas(alpha_bars: np.ndarray) -> np.ndarray:
    return 1 - alpha_bars / np.concatenate([[1.0], alpha_bars[:-1]])


def _q1_schedule_values(inputs, outputs):
    for i, (n_steps, s, max_beta) in enumerate(inputs["schedules"]):
        a, t = outputs[f"alpha_bars_{i}"], np.arange(1, int(n_steps) + 1)
        betas = _betas(a)
        if np.any(betas > max_beta + 1e-12):
            raise CheckFailed(f"beta_t = 1 - alpha_bar_t / alpha_bar_(t-1) never above max_beta = {max_beta:g}",
                              expected=f"<= {max_beta:g}", actual=betas)
        expect_close(betas[-1], max_beta, f"the last beta (f(1) = 0, so unclipped it would be 1) is clipped to "
                     f"max_beta = {max_beta:g}", rtol=0, atol=1e-9)
        if i < 2:   # these schedules clip only the last step: before it, eq. (3) holds exactly
            expect_close(a[:-1], _cosine_f(t[:-1] / n_steps, s) / _cosine_f(0.0, s),
                         f"T = {int(n_steps)}: alpha_bar_t = f(t / T) / f(0), eq. (3), wherever beta is not clipped",
                         rtol=1e-9, atol=1e-12)


def _q1_zero_noise(inputs, outputs):
    expect_close(outputs["x_t_zero_noise"], np.sqrt(inputs["alpha_bar"])[:, None] * inputs["x0"],
                 "noise = 0: x_t is the mean of q(x_t | x_0), eq. (1)", rtol=1e-9, atol=1e-12)


def _q1_moments(inputs, outputs):
    x_t, x0, a = outputs["x_t"], inputs["x0"], inputs["alpha_bar"]
    expect_shape(x_t, x0.shape, "noised(x0, alpha_bar, noise)")
    for level in np.unique(a):
        rows = a == level
        n = int(rows.sum())
        mean, var = np.sqrt(level) * x0[rows][0], 1 - level
        expect_close(x_t[rows].mean(0), mean, f"alpha_bar = {level:g}: mean of {n} noised copies of one x0 "
                     "(5 standard errors)", rtol=0, atol=5 * math.sqrt(var / n))
        expect_close(x_t[rows].var(0), np.full(2, var), f"alpha_bar = {level:g}: variance of the noised copies, "
                     "1 - alpha_bar (5 standard errors)", rtol=0, atol=5 * var * math.sqrt(2 / n))


def _q1_markov(inputs, outputs):
    """Noising to s by eq. (1), then from s to t by the chain's own steps (composed: eq. (2)), must
    give the law of noising to t directly."""
    a_s, a_t = float(inputs["alpha_bar_s"]), float(inputs["alpha_bar_t"])
    rng = np.random.default_rng(0)
    x_s = outputs["x_s"]
    x_t_chain = math.sqrt(a_t / a_s) * x_s + math.sqrt(1 - a_t / a_s) * rng.standard_normal(x_s.shape)
    direct = outputs["x_t_direct"]
    rows = inputs["alpha_bar"] == inputs["alpha_bar"][0]            # the rows of one x0
    n = int(rows.sum())
    for what, f, scale in (("mean", lambda v: v.mean(0), math.sqrt((1 - a_t) / n)),
                           ("variance", lambda v: v.var(0), (1 - a_t) * math.sqrt(2 / n))):
        expect_close(f(direct[rows]), f(x_t_chain[rows]), f"x0 noised to alpha_bar_t directly, or to alpha_bar_s and on "
                     f"by the transitions of eq. (2): the same {what} (7 standard errors of the difference)",
                     rtol=0, atol=7 * math.sqrt(2) * scale)


Q1 = Question(
    id="q1", functions=("cosine_alpha_bars", "noised"), make_inputs=q1_inputs, probe=q1_probe,
    checks=(Check("alpha_bars: one per step, in (0, 1), decreasing", _q1_schedule_shape),
            Check("alpha_bars: eq. (3), betas clipped at max_beta", _q1_schedule_values),
            Check("noised with zero noise is the mean of eq. (1)", _q1_zero_noise),
            Check("noised: moments of q(x_t | x_0)", _q1_moments),
            Check("noised: consistent with the Markov chain of eq. (2)", _q1_markov)))


# ---- q2: eps_loss(eps_model, x0, t, alpha_bars, noise, space) -> scalar, eq. (4) ---------------------

SPACES = ("eps", "x0", "v")


def q2_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    g = dict(generator=generator, dtype=F64)
    n_steps, b = 50, 64
    alpha_bars = np.cumprod(1 - np.linspace(1e-3, 0.2, n_steps))
    return {"alpha_bars": alpha_bars, "x0": torch.randn(b, 2, **g).numpy(),
            "t": torch.randint(0, n_steps, (b,), generator=generator).numpy().astype(np.float64),
            "noise": torch.randn(b, 2, **g).numpy(), "offset": np.array(0.3),
            "w": (0.5 * torch.randn(2, 2, **g)).numpy(), "bias": (0.1 * torch.randn(2, **g)).numpy()}


H_DIFF = 1e-6


def q2_probe(namespace, inputs):
    loss_fn = student_function(namespace, "eps_loss")
    x0, noise, alpha_bars = _t(inputs["x0"]), _t(inputs["noise"]), _t(inputs["alpha_bars"])
    t = torch.tensor(inputs["t"], dtype=torch.long)
    a = alpha_bars[t][:, None]                                     # the check's own alpha_bar per row
    seen = {}

    def oracle(offset):
        def eps_model(x_t, t_given):
            seen["x_t"], seen["t"] = x_t, t_given
            return (x_t - a.sqrt() * x0) / (1 - a).sqrt() + offset   # the noise in x_t, exactly (+ offset)
        return eps_model

    out = {}
    for space in SPACES:
        out[f"exact_{space}"] = as_array(loss_fn(oracle(0.0), x0, t, alpha_bars, noise, space=space),
                                         f"eps_loss (exact model, space={space!r})")
        out[f"offset_{space}"] = as_array(loss_fn(oracle(float(inputs["offset"])), x0, t, alpha_bars, noise,
                                                  space=space), f"eps_loss (offset model, space={space!r})")
    out["seen_x_t"] = as_array(seen["x_t"], "the x_t your loss gave the model")
    out["seen_t"] = as_array(seen["t"], "the t your loss gave the model")
    # a linear model eps = x_t W + b + t / T: the gradient of the loss in its parameters, and central differences
    linear = torch.nn.Linear(2, 2).to(F64)
    with torch.no_grad():
        linear.weight.copy_(_t(inputs["w"]))
        linear.bias.copy_(_t(inputs["bias"]))

    def model(x_t, t_given):
        return linear(x_t) + t_given.to(F64)[:, None] / len(alpha_bars)

    loss = loss_fn(model, x0, t, alpha_bars, noise, space="v")
    n_params = sum(p.numel() for p in linear.parameters())
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        linear.zero_grad()
        loss.backward()
        out["gradient"] = np.concatenate([as_array(p.grad, "a gradient").ravel() for p in linear.parameters()])
    else:                            # no graph: the gradient check fails, the others still decide
        out["gradient"] = np.full(n_params, np.nan)
    shifted = []
    with torch.no_grad():
        for p in linear.parameters():
            flat = p.view(-1)
            for i in range(flat.numel()):
                pair = []
                for sign in (1.0, -1.0):
                    flat[i] += sign * H_DIFF
                    pair.append(float(as_array(loss_fn(model, x0, t, alpha_bars, noise, space="v"), "the loss")))
                    flat[i] -= sign * H_DIFF
                shifted.append(pair)
    out["shifted_losses"] = np.array(shifted)
    return out


def _q2_scalars(inputs, outputs):
    for space in SPACES:
        expect_shape(outputs[f"offset_{space}"], (), f"eps_loss(space={space!r}): a scalar")
        expect_finite(outputs[f"offset_{space}"], f"eps_loss(space={space!r})")


def _q2_model_inputs(inputs, outputs):
    expect_close(outputs["seen_t"], inputs["t"], "the model is called with the step t given", rtol=0, atol=0)
    a = inputs["alpha_bars"][inputs["t"].astype(int)][:, None]
    expect_close((outputs["seen_x_t"] - np.sqrt(a) * inputs["x0"]) / np.sqrt(1 - a), inputs["noise"],
                 "the model sees x_t of eq. (1) made with the given noise and alpha_bars[t]", rtol=1e-8, atol=1e-10)


def _q2_exact(inputs, outputs):
    for space in SPACES:
        expect_close(outputs[f"exact_{space}"], 0.0, f"a model that predicts the noise exactly: zero loss in "
                     f"space {space!r}", rtol=0, atol=1e-18)


def _q2_offset(inputs, outputs):
    c = float(inputs["offset"])
    expect_close(outputs["offset_eps"], c**2, f"a model off by {c:g} in every coordinate: the eps loss (a mean "
                 "over rows and coordinates) is its square", rtol=1e-9, atol=0)
    # the errors of x0_hat and of v_hat are multiples of the eps error: the multiples are yours to derive
    # (eq. (4b)); the hidden checks hold their values, here only what any right pair of weights satisfies
    w_x0, w_v = float(outputs["offset_x0"]) / c**2, float(outputs["offset_v"]) / c**2
    if not (math.isfinite(w_x0) and w_x0 > 0):
        raise CheckFailed("a nonzero eps error costs a positive x0 loss", expected="> 0", actual=w_x0)
    expect_close(w_v - w_x0, 1.0, "the same constant error costs exactly c^2 more in the v loss than in the x0 loss "
                 "(compare your two weights of eq. (4b))", rtol=0, atol=1e-9)


def _q2_gradient(inputs, outputs):
    if np.isnan(outputs["gradient"]).all():
        raise CheckFailed("eps_loss returns a tensor that autograd can differentiate (keep the graph to the model)",
                          expected="a loss with requires_grad", actual="no graph")
    shifted = outputs["shifted_losses"]
    differences = (shifted[:, 0] - shifted[:, 1]) / (2 * H_DIFF)
    expect_close(outputs["gradient"], differences, "autograd's gradient of the v loss in a linear model's parameters "
                 "against central differences of its values", rtol=1e-5, atol=1e-7)


Q2 = Question(
    id="q2", functions=("eps_loss",), make_inputs=q2_inputs, probe=q2_probe,
    checks=(Check("a finite scalar in every space", _q2_scalars),
            Check("the model sees x_t of eq. (1) and t", _q2_model_inputs),
            Check("an exact noise predictor costs nothing", _q2_exact),
            Check("a constant error: its cost in each space", _q2_offset),
            Check("the gradient is that of the value", _q2_gradient)))


# ---- q3: ddpm_posterior(x_t, x0, alpha_bar_t, alpha_bar_prev) -> (mean, variance);
#          ddpm_update(x_t, eps_hat, alpha_bar_t, alpha_bar_prev, noise, variance) -> x_prev ------------
# The posterior is estimated here by least squares on simulated pairs: x0 ~ N(0, 1), x_{t-1} from eq. (1),
# x_t from x_{t-1} by eq. (2); the regression of x_{t-1} on (x_t, x0) is exact for Gaussians.

CASES = ((0.5, 0.6), (0.05, 0.07), (0.9, 0.95), (0.3, 0.9), (0.2, 1.0))   # (alpha_bar_t, alpha_bar_prev)
N_SIM = 400_000
N_CHAINS = 20_000


@functools.lru_cache(maxsize=32)
def _simulated_posterior(a_t: float, a_prev: float, seed: int) -> dict:
    """Least-squares estimates of x_{t-1} = A x_t + B x0 + residual, residual variance, and their
    standard errors, from N_SIM simulated triples (1D)."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(N_SIM)
    x_prev = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * rng.standard_normal(N_SIM)
    alpha = a_t / a_prev
    x_t = math.sqrt(alpha) * x_prev + math.sqrt(1 - alpha) * rng.standard_normal(N_SIM)
    design = np.stack([x_t, x0], 1)
    coef, *_ = np.linalg.lstsq(design, x_prev, rcond=None)
    resid = x_prev - design @ coef
    var = float(resid.var())
    cov = var * np.linalg.inv(design.T @ design)
    return {"coef": coef, "coef_se": np.sqrt(np.diag(cov)), "var": var, "var_se": var * math.sqrt(2 / N_SIM)}


def q3_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    g = dict(generator=generator, dtype=F64)
    b = 16
    x0 = torch.randn(b, 2, **g)
    eps = torch.randn(b, 2, **g)
    # the end-to-end chain: 1D data N(m, s^2), the exact noise predictor, a schedule of the check's own
    n_steps = 200
    alpha_bars = np.cumprod(1 - np.linspace(1e-4, 0.1, n_steps))
    return {"cases": np.array(CASES), "x0": x0.numpy(), "eps": eps.numpy(),
            "x_t_free": (1.3 * torch.randn(b, 2, **g)).numpy(), "z": torch.randn(b, 2, **g).numpy(),
            "chain_alpha_bars": alpha_bars, "chain_m": np.array(0.7), "chain_s": np.array(0.5),
            "chain_n": np.array(N_CHAINS), "chain_seed": np.array(int(torch.randint(0, 2**31 - 1, (1,),
                                                                                    generator=generator)))}


def _as_pair(value, name):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} should return (mean, variance)")
    return as_array(value[0], f"{name}'s mean"), as_array(value[1], f"{name}'s variance")


def exact_gaussian_eps(x_t, a, m, s):
    """E[eps | x_t] for data N(m, s^2) (1D): x_t ~ N(sqrt(a) m, a s^2 + 1 - a)."""
    return math.sqrt(1 - a) * (x_t - math.sqrt(a) * m) / (a * s**2 + 1 - a)


def run_chain(update, inputs, **options):
    """A whole reverse chain with the exact noise predictor of N(m, s^2): the samples it ends at (N, 1)."""
    alpha_bars = inputs["chain_alpha_bars"]
    m, s = float(inputs["chain_m"]), float(inputs["chain_s"])
    generator = torch.Generator().manual_seed(int(inputs["chain_seed"]))
    n = int(inputs["chain_n"])
    x = torch.randn(n, 1, generator=generator, dtype=F64)                    # x_T ~ N(0, 1)
    for i in range(len(alpha_bars) - 1, -1, -1):
        a, a_prev = float(alpha_bars[i]), (float(alpha_bars[i - 1]) if i > 0 else 1.0)
        noise = torch.randn(n, 1, generator=generator, dtype=F64)
        x = update(x, exact_gaussian_eps(x, a, m, s), a, a_prev, noise=noise, **options)
        x = torch.as_tensor(x).detach().to(F64)
    return as_array(x, "x after the whole chain")


def q3_probe(namespace, inputs):
    posterior = student_function(namespace, "ddpm_posterior")
    update = student_function(namespace, "ddpm_update")
    x0, eps, x_free, z = (_t(inputs[k]) for k in ("x0", "eps", "x_t_free", "z"))
    out = {}
    for i, (a_t, a_prev) in enumerate(inputs["cases"]):
        a_t, a_prev = float(a_t), float(a_prev)
        # the posterior at unit inputs (its coefficients) and at free points (linearity)
        unit = torch.zeros(1, 2, dtype=F64)
        one = torch.ones(1, 2, dtype=F64)
        out[f"post_xt_{i}"], out[f"post_var_{i}"] = _as_pair(posterior(one, unit, a_t, a_prev), "ddpm_posterior")
        out[f"post_x0_{i}"], _ = _as_pair(posterior(unit, one, a_t, a_prev), "ddpm_posterior")
        out[f"post_free_{i}"], _ = _as_pair(posterior(x_free, x0, a_t, a_prev), "ddpm_posterior")
        x_t = math.sqrt(a_t) * x0 + math.sqrt(1 - a_t) * eps                 # eq. (1), exact noise known
        for choice in ("posterior", "beta"):
            out[f"upd0_{choice}_{i}"] = as_array(update(x_t, eps, a_t, a_prev, noise=torch.zeros_like(x_t),
                                                        variance=choice), "ddpm_update")
            out[f"updz_{choice}_{i}"] = as_array(update(x_t, eps, a_t, a_prev, noise=z, variance=choice),
                                                 "ddpm_update")
    for choice in ("posterior", "beta"):
        out[f"chain_{choice}"] = run_chain(update, inputs, variance=choice)
    return out


def _q3_posterior(inputs, outputs):
    for i, (a_t, a_prev) in enumerate(inputs["cases"]):
        expect_shape(outputs[f"post_xt_{i}"], (1, 2), "ddpm_posterior's mean: the shape of x_t")
        expect_shape(outputs[f"post_var_{i}"].reshape(-1)[:1], (1,), "ddpm_posterior's variance")
        var = float(outputs[f"post_var_{i}"].reshape(-1)[0])
        coef = np.array([outputs[f"post_xt_{i}"][0, 0], outputs[f"post_x0_{i}"][0, 0]])
        sim = _simulated_posterior(float(a_t), float(a_prev), seed=i)
        what = f"alpha_bar_t = {a_t:g}, alpha_bar_prev = {a_prev:g}"
        expect_close(coef, sim["coef"], f"{what}: the posterior mean's coefficients of x_t and x0, against a "
                     f"least-squares fit to {N_SIM} simulated pairs (6 standard errors)", rtol=0,
                     atol=float(6 * sim["coef_se"].max() + 1e-12))
        expect_close(var, sim["var"], f"{what}: the posterior variance, against the fit's residual variance "
                     "(6 standard errors)", rtol=0, atol=6 * sim["var_se"] + 1e-12)
        expect_close(outputs[f"post_free_{i}"], coef[0] * inputs["x_t_free"] + coef[1] * inputs["x0"],
                     f"{what}: the mean is linear in (x_t, x0), applied coordinate by coordinate", rtol=1e-9,
                     atol=1e-12)


def _q3_last_step(inputs, outputs):
    last = [i for i, (_, a_prev) in enumerate(inputs["cases"]) if a_prev == 1.0][0]
    expect_close(outputs[f"post_free_{last}"], inputs["x0"], "alpha_bar_prev = 1: the posterior is x0 itself",
                 rtol=0, atol=1e-12)
    for choice in ("posterior", "beta"):
        expect_close(outputs[f"updz_{choice}_{last}"], inputs["x0"], f"the last step (alpha_bar_prev = 1) with the "
                     f"exact noise recovers x0 exactly and adds no noise (variance={choice!r})", rtol=0, atol=1e-10)


def _q3_update_mean(inputs, outputs):
    x0, eps = inputs["x0"], inputs["eps"]
    for i, (a_t, a_prev) in enumerate(inputs["cases"]):
        sim = _simulated_posterior(float(a_t), float(a_prev), seed=i)
        x_t = math.sqrt(a_t) * x0 + math.sqrt(1 - a_t) * eps
        expected = sim["coef"][0] * x_t + sim["coef"][1] * x0
        tol = 6 * float(np.abs(x_t).max() * sim["coef_se"][0] + np.abs(x0).max() * sim["coef_se"][1]) + 1e-12
        for choice in ("posterior", "beta"):
            expect_close(outputs[f"upd0_{choice}_{i}"], expected, f"alpha_bar_t = {a_t:g}, alpha_bar_prev = {a_prev:g}"
                         f", the exact noise, noise = 0: the update is the posterior mean at the true x0 "
                         f"(variance={choice!r}; simulated coefficients)", rtol=0, atol=tol)


def _q3_update_noise(inputs, outputs):
    z = inputs["z"]
    for i, (a_t, a_prev) in enumerate(inputs["cases"]):
        if a_prev == 1.0:
            continue
        sim = _simulated_posterior(float(a_t), float(a_prev), seed=i)
        for choice, var, tol in (("beta", 1 - a_t / a_prev, 1e-12), ("posterior", sim["var"], 6 * sim["var_se"])):
            scale = (outputs[f"updz_{choice}_{i}"] - outputs[f"upd0_{choice}_{i}"]) / z
            expect_close(scale, np.full(z.shape, scale.mean()), f"the noise enters as sigma_t * noise, one sigma_t for "
                         "every entry", rtol=1e-7, atol=1e-10)
            expect_close(scale.mean() ** 2, var, f"alpha_bar_t = {a_t:g}, alpha_bar_prev = {a_prev:g}: sigma_t^2 for "
                         f"variance={choice!r}", rtol=0, atol=tol + 1e-12)


def _q3_chain(inputs, outputs):
    m, s = float(inputs["chain_m"]), float(inputs["chain_s"])
    for choice in ("posterior", "beta"):
        x = outputs[f"chain_{choice}"]
        expect_shape(x, (int(inputs["chain_n"]), 1), "the chain's samples")
        n = len(x)
        expect_close(x.mean(), m, f"a {len(inputs['chain_alpha_bars'])}-step chain with the exact noise predictor of "
                     f"N({m:g}, {s:g}^2), variance={choice!r}: the samples' mean (5 standard errors + 0.01)",
                     rtol=0, atol=5 * s / math.sqrt(n) + 0.01)
        expect_close(x.std(), s, f"the samples' standard deviation, variance={choice!r} (5 standard errors + 0.02)",
                     rtol=0, atol=5 * s / math.sqrt(2 * n) + 0.02)


Q3 = Question(
    id="q3", functions=("ddpm_posterior", "ddpm_update"), make_inputs=q3_inputs, probe=q3_probe,
    checks=(Check("the posterior of eq. (5) against simulated pairs", _q3_posterior),
            Check("alpha_bar_prev = 1: x0, exactly", _q3_last_step),
            Check("the update's mean with the exact noise", _q3_update_mean),
            Check("the update's noise: sigma_t for both choices", _q3_update_noise),
            Check("a whole chain samples N(m, s^2)", _q3_chain)))


# ---- q4: ddim_update(x_t, eps_hat, alpha_bar_t, alpha_bar_prev, eta, noise) -> x_prev -----------------

ETAS = {"00": 0.0, "05": 0.5, "10": 1.0}


def q4_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    g = dict(generator=generator, dtype=F64)
    b, n = 16, 20_000
    return {"cases": np.array(CASES), "x0": torch.randn(b, 2, **g).numpy(), "eps": torch.randn(b, 2, **g).numpy(),
            "z": torch.randn(b, 2, **g).numpy(), "eps_hat": torch.randn(b, 2, **g).numpy(),
            "x_t": (1.2 * torch.randn(b, 2, **g)).numpy(), "mc_x0": np.array([1.0, -2.0]),
            "mc_eps": torch.randn(n, 2, **g).numpy(), "mc_z": torch.randn(n, 2, **g).numpy(),
            "mc_case": np.array([0.3, 0.5]), "mc_eta": np.array(0.5)}


def q4_probe(namespace, inputs):
    update = student_function(namespace, "ddim_update")
    x_t, eps_hat, z = _t(inputs["x_t"]), _t(inputs["eps_hat"]), _t(inputs["z"])
    x0, eps = _t(inputs["x0"]), _t(inputs["eps"])
    out = {}
    for i, (a_t, a_prev) in enumerate(inputs["cases"]):
        a_t, a_prev = float(a_t), float(a_prev)
        for tag, eta in ETAS.items():
            key = f"{i}_{tag}"
            out[f"z_{key}"] = as_array(update(x_t, eps_hat, a_t, a_prev, eta=eta, noise=z), "ddim_update")
            out[f"0_{key}"] = as_array(update(x_t, eps_hat, a_t, a_prev, eta=eta, noise=torch.zeros_like(z)),
                                       "ddim_update")
        # eta = 0 backwards: from x_prev up to alpha_bar_t with the same eps_hat
        if a_prev < 1:
            try:                     # a failure here costs only the inversion's check
                back = as_array(update(_t(out[f"z_{i}_00"]), eps_hat, a_prev, a_t, eta=0.0, noise=z),
                                "ddim_update, run backwards")
            except Exception:        # noqa: BLE001  (math.sqrt of a negative number, most often)
                back = np.full(tuple(x_t.shape), np.nan)
            out[f"back_{i}"] = back
        x_t_exact = math.sqrt(a_t) * x0 + math.sqrt(1 - a_t) * eps
        out[f"oracle_{i}"] = as_array(update(x_t_exact, eps, a_t, a_prev, eta=0.0, noise=z), "ddim_update")
        out[f"oracle1_{i}"] = as_array(update(x_t_exact, eps, a_t, a_prev, eta=1.0, noise=torch.zeros_like(z)),
                                       "ddim_update")
    a_t, a_prev = (float(v) for v in inputs["mc_case"])
    mc_x0 = _t(inputs["mc_x0"]).expand(len(inputs["mc_eps"]), 2)
    mc_eps = _t(inputs["mc_eps"])
    out["mc"] = as_array(update(math.sqrt(a_t) * mc_x0 + math.sqrt(1 - a_t) * mc_eps, mc_eps, a_t, a_prev,
                                eta=float(inputs["mc_eta"]), noise=_t(inputs["mc_z"])), "ddim_update (many rows)")
    return out


def _q4_deterministic(inputs, outputs):
    for i, _ in enumerate(inputs["cases"]):
        expect_shape(outputs[f"z_{i}_00"], inputs["x_t"].shape, "ddim_update: the shape of x_t")
        expect_close(outputs[f"z_{i}_00"], outputs[f"0_{i}_00"], "eta = 0: the noise changes nothing", rtol=0, atol=0)


def _q4_inverts(inputs, outputs):
    for i, (a_t, a_prev) in enumerate(inputs["cases"]):
        if a_prev == 1.0:
            continue
        if np.isnan(outputs[f"back_{i}"]).all():
            raise CheckFailed(f"eta = 0, run backwards (alpha_bar {a_prev:g} -> {a_t:g}): your update raised or gave "
                              "nan (compute sigma only when eta > 0)", expected="x_t", actual="an error or nan")
        expect_close(outputs[f"back_{i}"], inputs["x_t"], f"eta = 0, alpha_bar {a_t:g} -> {a_prev:g} and back with the "
                     "same eps_hat: x_t again (DDIM inversion)", rtol=1e-9, atol=1e-10)


def _q4_oracle(inputs, outputs):
    x0, eps = inputs["x0"], inputs["eps"]
    for i, (a_t, a_prev) in enumerate(inputs["cases"]):
        expect_close(outputs[f"oracle_{i}"], math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps,
                     f"eta = 0 with the exact noise: alpha_bar {a_t:g} -> {a_prev:g} stays on x0's path, eq. (1) with "
                     "the same noise", rtol=1e-9, atol=1e-10)


def _q4_ddpm(inputs, outputs):
    z, x0, eps = inputs["z"], inputs["x0"], inputs["eps"]
    for i, (a_t, a_prev) in enumerate(inputs["cases"]):
        what = f"alpha_bar_t = {a_t:g}, alpha_bar_prev = {a_prev:g}"
        scale1 = (outputs[f"z_{i}_10"] - outputs[f"0_{i}_10"]) / z
        scale_half = (outputs[f"z_{i}_05"] - outputs[f"0_{i}_05"]) / z
        expect_close(scale_half, 0.5 * scale1, f"{what}: sigma is proportional to eta (eta = 0.5 against 1)",
                     rtol=1e-7, atol=1e-10)
        if a_prev == 1.0:
            expect_close(scale1, np.zeros_like(z), "alpha_bar_prev = 1: no noise", rtol=0, atol=1e-12)
            continue
        sim = _simulated_posterior(float(a_t), float(a_prev), seed=i)
        expect_close(scale1.mean() ** 2, sim["var"], f"{what}, eta = 1: sigma^2 is the DDPM posterior variance "
                     "(simulated, 6 standard errors)", rtol=0, atol=6 * sim["var_se"])
        x_t = math.sqrt(a_t) * x0 + math.sqrt(1 - a_t) * eps
        tol = 6 * float(np.abs(x_t).max() * sim["coef_se"][0] + np.abs(x0).max() * sim["coef_se"][1])
        expect_close(outputs[f"oracle1_{i}"], sim["coef"][0] * x_t + sim["coef"][1] * x0, f"{what}, eta = 1 with the "
                     "exact noise and noise = 0: the DDPM posterior mean (simulated coefficients)", rtol=0, atol=tol)


def _q4_marginal(inputs, outputs):
    a_t, a_prev = (float(v) for v in inputs["mc_case"])
    x = outputs["mc"]
    n = len(x)
    expect_close(x.mean(0), math.sqrt(a_prev) * inputs["mc_x0"], f"eta = {float(inputs['mc_eta']):g}, exact noise: "
                 f"the mean of {n} updates is that of q(x_prev | x0) (5 standard errors)", rtol=0,
                 atol=5 * math.sqrt((1 - a_prev) / n))
    expect_close(x.var(0), np.full(2, 1 - a_prev), "their variance is 1 - alpha_bar_prev: the marginals are "
                 "those of eq. (1) for any eta (5 standard errors)", rtol=0, atol=5 * (1 - a_prev) * math.sqrt(2 / n))


Q4 = Question(
    id="q4", functions=("ddim_update",), make_inputs=q4_inputs, probe=q4_probe,
    checks=(Check("eta = 0 is deterministic", _q4_deterministic),
            Check("eta = 0 inverts exactly, run backwards", _q4_inverts),
            Check("eta = 0 with the exact noise stays on the path", _q4_oracle),
            Check("sigma proportional to eta; eta = 1 is DDPM's posterior", _q4_ddpm),
            Check("any eta keeps the marginals of eq. (1)", _q4_marginal)))


# ---- q5: guided_eps(eps_model, x_t, t, cond, null_cond, w) -> eps_tilde (B, D), eq. (9) ---------------
# The check's network: eps(x, t, c) = tanh(x W_c + t u) + 0.1 c, row by row; the null label is an input.

def q5_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    g = dict(generator=generator, dtype=F64)
    b, k = 12, 5
    return {"x_t": torch.randn(b, 2, **g).numpy(), "t": torch.randint(0, 100, (b,), generator=generator).numpy()
            .astype(np.float64), "cond": torch.randint(1, k, (b,), generator=generator).numpy().astype(np.float64),
            "w_c": torch.randn(k, 2, 2, **g).numpy(), "u": (0.01 * torch.randn(2, **g)).numpy(),
            "ws": np.array([0.0, -1.0, 1.0, 3.0]), "w_rows": (2 * torch.rand(b, **g)).numpy(), "null_cond": np.array(0)}


def _check_net(inputs, x, t, c):
    """The check's network in NumPy: (B, 2), (B,), (B,) -> (B, 2)."""
    w = inputs["w_c"][c.astype(int)]                                         # (B, 2, 2)
    return np.tanh(np.einsum("bi,bij->bj", x, w) + t[:, None] * inputs["u"]) + 0.1 * c[:, None]


def q5_probe(namespace, inputs):
    guided = student_function(namespace, "guided_eps")
    w_c, u = _t(inputs["w_c"]), _t(inputs["u"])
    calls = []

    def eps_model(x, t, c):
        calls.append(len(x))
        w = w_c[c.long()]
        return torch.tanh(torch.einsum("bi,bij->bj", x, w) + t.to(F64)[:, None] * u) + 0.1 * c.to(F64)[:, None]

    x, t, c = _t(inputs["x_t"]), torch.tensor(inputs["t"], dtype=torch.long), torch.tensor(inputs["cond"],
                                                                                           dtype=torch.long)
    null = int(inputs["null_cond"])
    out = {}
    for j, w in enumerate(inputs["ws"]):
        calls.clear()
        out[f"w_{j}"] = as_array(guided(eps_model, x, t, c, null, float(w)), "guided_eps")
        out[f"calls_{j}"] = np.array(calls, dtype=np.float64)
    out["w_rows"] = as_array(guided(eps_model, x, t, c, null, _t(inputs["w_rows"])), "guided_eps (w per row)")
    return out


def _q5_one_call(inputs, outputs):
    b = len(inputs["x_t"])
    for j, _ in enumerate(inputs["ws"]):
        expect_close(outputs[f"calls_{j}"], np.array([2.0 * b]), f"one network call on a batch of 2B = {2 * b} rows "
                     "(the conditional and the unconditional halves together)", rtol=0, atol=0)


def _q5_limits(inputs, outputs):
    x, t, c = inputs["x_t"], inputs["t"], inputs["cond"]
    expect_shape(outputs["w_0"], x.shape, "guided_eps: the shape of x_t")
    expect_close(outputs["w_0"], _check_net(inputs, x, t, c), "w = 0: the conditional prediction", rtol=1e-9,
                 atol=1e-12)
    null = np.full_like(c, float(inputs["null_cond"]))
    expect_close(outputs["w_1"], _check_net(inputs, x, t, null), "w = -1: the unconditional prediction (the null "
                 f"label, {int(inputs['null_cond'])} here)", rtol=1e-9, atol=1e-12)


def _q5_affine(inputs, outputs):
    ws = inputs["ws"]
    base, unit = outputs["w_0"], outputs["w_2"] - outputs["w_0"]          # w = 0 and the change to w = 1
    expect_close(outputs["w_3"], base + ws[3] * unit, f"affine in w: w = {ws[3]:g} is w = 0 plus {ws[3]:g} times "
                 "the step from w = 0 to w = 1", rtol=1e-9, atol=1e-12)
    rows = inputs["w_rows"]
    expect_close(outputs["w_rows"], base + rows[:, None] * unit, "w given per row, shape (B,): each row guided by "
                 "its own w", rtol=1e-9, atol=1e-12)


Q5 = Question(
    id="q5", functions=("guided_eps",), make_inputs=q5_inputs, probe=q5_probe,
    checks=(Check("one network call of 2B rows", _q5_one_call),
            Check("w = 0 conditional, w = -1 unconditional", _q5_limits),
            Check("affine in w, w per row", _q5_affine)))


# ---- q6: train_velocity_field(x_train, seed) -> module v(x (B, 2), t (B,)) -> (B, 2), eq. (11) ----------
# The data: eight Gaussians of std 0.2 on a circle of radius 2 (gmcourse.toy.EightGaussians' law,
# drawn here so that the checks do not move when the toy sampler changes), turned by an angle.
# Graded on samples the probe draws itself: N(0, I) moved by 64 Euler steps of your field, t: 0 -> 1.
RADIUS, STD = 2.0, 0.2
N_EULER = 64
WITHIN = 3 * STD                    # a sample "on a mode": within 3 std of its nearest centre
ON_MODE_MIN = 0.90                  # share of samples on a mode; where the number comes from: instructor/hidden/06_diffusion.py
MODE_SHARE_MIN = 0.08               # every mode's share of all the samples (1/8 = 0.125 when balanced)
FLOW_SECONDS_BUDGET = 15.0          # CPU seconds of one train_velocity_field call (one core, as in the sandbox)


def mode_centres(angle: float = 0.0) -> np.ndarray:
    a = np.arange(8) * (2 * math.pi / 8) + angle
    return RADIUS * np.stack([np.cos(a), np.sin(a)], 1)


def eight_gaussians_sample(n: int, generator: torch.Generator, angle: float = 0.0) -> torch.Tensor:
    """n points of the eight Gaussians, turned by angle: (n, 2) float32."""
    k = torch.randint(0, 8, (n,), generator=generator)
    centres = torch.from_numpy(mode_centres(angle))
    return (centres[k] + STD * torch.randn(n, 2, generator=generator, dtype=F64)).float()


def q6_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    return {"x_train": eight_gaussians_sample(10_000, generator).numpy(), "seed": np.array(0), "angle": np.array(0.0),
            "z": torch.randn(4000, 2, generator=generator).numpy()}


def euler_samples(velocity, z: np.ndarray, n_steps: int = N_EULER) -> np.ndarray:
    """z moved from t = 0 to t = 1 by n_steps Euler steps of dx/dt = velocity(x, t)."""
    x = torch.tensor(z, dtype=torch.float32)
    with torch.no_grad():
        for i in range(n_steps):
            t = torch.full((len(x),), i / n_steps)
            x = x + _velocity_tensor(velocity(x, t), "velocity(x, t)") / n_steps
    return as_array(x, "samples")


def _velocity_tensor(value, name):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} should return a torch.Tensor, got {type(value).__name__}")
    return value.detach().float()


def q6_probe(namespace, inputs):
    train = student_function(namespace, "train_velocity_field")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)         # as in the grader's sandbox: one core
    try:
        start = time.process_time()  # CPU seconds of this process, whatever else the machine runs
        velocity = train(torch.tensor(inputs["x_train"], dtype=torch.float32), seed=int(inputs["seed"]))
        seconds = time.process_time() - start
    finally:
        torch.set_num_threads(threads)
    if hasattr(velocity, "eval"):
        velocity.eval()
    return {"seconds": np.array(seconds), "samples": euler_samples(velocity, inputs["z"])}


def mode_scores(samples: np.ndarray, angle: float) -> tuple[float, np.ndarray]:
    """The share of samples within WITHIN of their nearest centre, and each mode's share of all samples."""
    d = np.linalg.norm(samples[:, None, :] - mode_centres(angle)[None], axis=-1)   # (N, 8)
    nearest, dist = d.argmin(1), d.min(1)
    on = dist < WITHIN
    return float(on.mean()), np.bincount(nearest[on], minlength=8) / len(samples)


def _q6_samples(inputs, outputs):
    expect_shape(outputs["samples"], inputs["z"].shape, "the samples: the shape of the noise moved")
    expect_finite(outputs["samples"], "the samples")


def _q6_budget(inputs, outputs):
    expect_less(outputs["seconds"], FLOW_SECONDS_BUDGET, "CPU seconds for one train_velocity_field call")


def _q6_on_modes(inputs, outputs):
    on, _ = mode_scores(outputs["samples"], float(inputs["angle"]))
    if not on >= ON_MODE_MIN:
        raise CheckFailed(f"share of {len(outputs['samples'])} samples within {WITHIN:g} (3 std) of a mode, after "
                          f"{N_EULER} Euler steps of your field", expected=f">= {ON_MODE_MIN}", actual=on)


def _q6_balanced(inputs, outputs):
    _, shares = mode_scores(outputs["samples"], float(inputs["angle"]))
    if not shares.min() >= MODE_SHARE_MIN:
        raise CheckFailed("every one of the 8 modes gets its share of the samples (1/8 each when exact)",
                          expected=f">= {MODE_SHARE_MIN} each", actual=shares)


Q6 = Question(
    id="q6", functions=("train_velocity_field",), make_inputs=q6_inputs, probe=q6_probe,
    checks=(Check("finite samples", _q6_samples),
            Check(f"trained within {FLOW_SECONDS_BUDGET:g} CPU seconds", _q6_budget),
            Check(f"at least {ON_MODE_MIN} of the samples on a mode", _q6_on_modes),
            Check(f"every mode at least {MODE_SHARE_MIN} of the samples", _q6_balanced)))


QUESTIONS = (Q1, Q2, Q3, Q4, Q5, Q6)
