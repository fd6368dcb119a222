"""Public checks for exercises/05_ebm: a Metropolis-adjusted Langevin step, a contrastive loss with
importance weights, log Z by the trapezoid rule with an error bound, a reservoir replay buffer,
and an energy trained by denoising score matching on a banana-shaped density.

Shapes: B batch (chains), D data dim, K ladder of log u values, P energy parameters, M negatives,
N pushed points, R repeated buffers, G grid points.

Every property is tested on the raw values the probes return, against something computed here:
the Langevin proposal at log u = -inf (eq. (1), the check's own gradient), the threshold form and
the min(1, r) form of the acceptance, the moments of many chains started at N(mu, Sigma),
central differences of your loss, known partition functions of Gaussian energies (and their
integrals over the box, by erf), inclusion frequencies of pushed points over many buffers, and the
KL between the check's own density and your energy's, both normalised by quadrature here. Reading
this file does not give the answers away: no check holds the acceptance ratio, the loss, the error
bound or the sampling rule (the hidden checks do).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from gmcourse.gaussian import LOG_2PI
from gmcourse.grading.expect import expect_close, expect_finite, expect_less, expect_shape
from gmcourse.grading.question import Check, CheckFailed, Question, as_array, student_function

F64 = torch.float64


def _t(array) -> torch.Tensor:
    """A float64 tensor copy of a check input (these checks run your code in float64)."""
    return torch.tensor(np.asarray(array), dtype=F64)


def _flags(value, name: str) -> np.ndarray:
    """A returned mask as float64 0/1 (bool or 0/1 tensors both accepted)."""
    return as_array(value.to(F64) if isinstance(value, torch.Tensor) else value, name)


# ---- q1: mala_step(energy, x, step_size, noise, log_u) -> (x_new (B, D), accepted (B,)) ----------
# The check's energy for the single-step properties: E(x) = sum_k v_k tanh(a_k . x + b_k) + |x|^2 / 4.

def _tanh_energy(inputs, prefix: str = "e"):
    a, b, v = _t(inputs[f"{prefix}_a"]), _t(inputs[f"{prefix}_b"]), _t(inputs[f"{prefix}_v"])
    return lambda x: torch.tanh(x @ a + b) @ v + 0.25 * (x**2).sum(-1)   # (B, D) -> (B,)


def tanh_energy_gradient(inputs, x: np.ndarray, prefix: str = "e") -> np.ndarray:
    """The gradient of the check's tanh energy at x, in closed form: (B, D) -> (B, D)."""
    a, b, v = inputs[f"{prefix}_a"], inputs[f"{prefix}_b"], inputs[f"{prefix}_v"]
    t = np.tanh(x @ a + b)                                   # (B, H)
    return ((1 - t**2) * v) @ a.T + 0.5 * x


def _gaussian_energy(mu, precision):
    """E(x) = (x - mu)^T P (x - mu) / 2: (B, D) -> (B,)."""
    return lambda x: 0.5 * (((x - mu) @ precision) * (x - mu)).sum(-1)


def q1_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    b, d, h = 6, 2, 8
    n_chains, n_steps = 20000, 10
    mu, sigma = 0.5, 1.5                                     # the chains' target N(mu, sigma^2), D = 1
    g = dict(generator=generator, dtype=F64)
    return {"x": (1.2 * torch.randn(b, d, **g)).numpy(),
            "e_a": torch.randn(d, h, **g).numpy(), "e_b": torch.randn(h, **g).numpy(),
            "e_v": (0.8 * torch.randn(h, **g)).numpy(),
            "noise": torch.randn(b, d, **g).numpy(), "step_size": np.array(0.3),
            "log_u_ladder": np.linspace(-5.0, -0.005, 200),
            "chain_mu": np.array([mu]), "chain_precision": np.array([[1 / sigma**2]]),
            "chain_step_size": np.array(0.6 * sigma**2),  # a large step: the unadjusted chain inflates the variance
            "chain_x0": (mu + sigma * torch.randn(n_chains, 1, **g)).numpy(),
            "chain_noise": torch.randn(n_steps, n_chains, 1, **g).numpy(),
            "chain_log_u": torch.rand(n_steps, n_chains, **g).log().numpy()}


def _call_mala(mala_step, energy, x, step_size, noise, log_u, what):
    x_new, accepted = mala_step(energy, x, step_size=step_size, noise=noise, log_u=log_u)
    return as_array(x_new, f"x_new ({what})"), _flags(accepted, f"accepted ({what})")


def q1_probe(namespace, inputs):
    mala_step = student_function(namespace, "mala_step")
    energy = _tanh_energy(inputs)
    x, noise, eps = _t(inputs["x"]), _t(inputs["noise"]), float(inputs["step_size"])
    b, k = len(x), len(inputs["log_u_ladder"])
    out = {}
    out["x_minus_inf"], out["accepted_minus_inf"] = _call_mala(
        mala_step, energy, x, eps, noise, torch.full((b,), -math.inf, dtype=F64), "log u = -inf")
    out["x_plus_inf"], out["accepted_plus_inf"] = _call_mala(
        mala_step, energy, x, eps, noise, torch.full((b,), math.inf, dtype=F64), "log u = +inf")
    # every chain once per log u of the ladder, in one batch: (K * B, D)
    ladder = _t(inputs["log_u_ladder"]).repeat_interleave(b)
    x_k, accepted_k = _call_mala(mala_step, energy, x.repeat(k, 1), eps, noise.repeat(k, 1), ladder, "ladder")
    out["ladder_x"], out["ladder_accepted"] = x_k.reshape(k, b, -1), accepted_k.reshape(k, b)
    # the reverse move: from the proposal x' with the noise that proposes x again (eq. (1) solved for xi)
    x_prop = out["x_minus_inf"]
    reverse_noise = (inputs["x"] - x_prop + eps * tanh_energy_gradient(inputs, x_prop)) / math.sqrt(2 * eps)
    _, accepted_r = _call_mala(mala_step, energy, _t(x_prop).repeat(k, 1), eps, _t(reverse_noise).repeat(k, 1),
                               ladder, "reverse moves")
    out["reverse_ladder_accepted"] = accepted_r.reshape(k, b)
    out["reverse_noise"] = reverse_noise
    _, accepted_f = _call_mala(mala_step, lambda v: 0.0 * v.sum(-1), x.repeat(k, 1), eps, noise.repeat(k, 1), ladder,
                               "flat energy")
    out["flat_ladder_accepted"] = accepted_f.reshape(k, b)
    # many chains started at the target, a few steps each
    chain_energy = _gaussian_energy(_t(inputs["chain_mu"]), _t(inputs["chain_precision"]))
    chain_x = _t(inputs["chain_x0"])
    rates = []
    for noise_t, log_u_t in zip(inputs["chain_noise"], inputs["chain_log_u"]):
        x_next, accepted = mala_step(chain_energy, chain_x, step_size=float(inputs["chain_step_size"]),
                                     noise=_t(noise_t), log_u=_t(log_u_t))
        chain_x = x_next.detach().to(F64)
        rates.append(float(_flags(accepted, "accepted (chains)").mean()))
    out["chain_x"] = as_array(chain_x, "x after the chains' last step")
    out["chain_rates"] = np.array(rates)
    return out


def _q1_shapes(inputs, outputs):
    b, d = inputs["x"].shape
    expect_shape(outputs["x_minus_inf"], (b, d), "x_new")
    expect_shape(outputs["accepted_minus_inf"], (b,), "accepted: one flag per chain")
    for key in ("accepted_minus_inf", "accepted_plus_inf", "ladder_accepted"):
        if not np.isin(outputs[key], (0.0, 1.0)).all():
            raise CheckFailed("accepted is a mask: True/False (or 1/0) per chain", expected="0 or 1",
                              actual=outputs[key])
    expect_finite(outputs["ladder_x"], "x_new")


def _q1_proposal(inputs, outputs):
    eps = float(inputs["step_size"])
    x = inputs["x"]
    expected = x - eps * tanh_energy_gradient(inputs, x) + math.sqrt(2 * eps) * inputs["noise"]   # eq. (1)
    expect_close(outputs["accepted_minus_inf"], np.ones(len(x)), "log u = -inf: every proposal accepted", atol=0)
    expect_close(outputs["x_minus_inf"], expected, "log u = -inf: x_new is the Langevin proposal of eq. (1)",
                 rtol=1e-6, atol=1e-8)


def _q1_reject(inputs, outputs):
    expect_close(outputs["accepted_plus_inf"], np.zeros(len(inputs["x"])), "log u = +inf: nothing accepted", atol=0)
    expect_close(outputs["x_plus_inf"], inputs["x"], "a rejected chain stays where it was", rtol=0, atol=0)


def _q1_threshold(inputs, outputs):
    accepted = outputs["ladder_accepted"]                       # (K, B), log u increasing along K
    if np.any(np.diff(accepted, axis=0) > 0):
        raise CheckFailed("accepted exactly when log u is below a threshold: once rejected at some log u, rejected "
                          "at every larger one", expected="1...1 0...0 along the increasing log u",
                          actual=accepted.T)
    k, b = accepted.shape
    moved = np.where(accepted[:, :, None] > 0, outputs["x_minus_inf"][None], inputs["x"][None])
    expect_close(outputs["ladder_x"], moved, "x_new: the proposal where accepted, x where rejected",
                 rtol=1e-6, atol=1e-8)


def _q1_min_one(inputs, outputs):
    forward, reverse = outputs["ladder_accepted"], outputs["reverse_ladder_accepted"]   # (K, B)
    one_side = forward.all(0) | reverse.all(0)
    if not one_side.all():
        raise CheckFailed("alpha = min(1, r): of a move x -> x' and its reverse x' -> x, one is accepted at every "
                          "log u < 0 (r and 1/r cannot both be below 1)", expected="True for every chain",
                          actual=one_side)
    if not outputs["flat_ladder_accepted"].all():
        raise CheckFailed("with a flat energy, E = 0, the proposal is symmetric and every move is accepted",
                          expected="every flag 1", actual=outputs["flat_ladder_accepted"].T)


def _q1_stationary(inputs, outputs):
    mu, precision = inputs["chain_mu"], inputs["chain_precision"]
    covariance = np.linalg.inv(precision)
    x = outputs["chain_x"]
    n = len(x)
    expect_shape(x, inputs["chain_x0"].shape, "x after the chains")
    expect_finite(x, "x after the chains")
    sd = np.sqrt(np.diag(covariance))
    # 5 standard errors: of the mean, sd / sqrt(n); of a (co)variance, about sd_i sd_j sqrt(2 / n)
    expect_close(x.mean(0), mu, f"mean of {n} chains after {len(outputs['chain_rates'])} steps started at the target "
                 "(a Metropolis-adjusted chain leaves it invariant)", rtol=0, atol=float(5 * sd.max() / math.sqrt(n)))
    expect_close(np.cov(x.T).reshape(covariance.shape), covariance,
                 "covariance of the chains after the steps (the unadjusted chain inflates it)", rtol=0,
                 atol=float(5 * sd.max() ** 2 * math.sqrt(2 / n)))
    rates = outputs["chain_rates"]
    if not (0.2 < rates.mean() < 0.999):
        raise CheckFailed("a share of the chains' proposals is rejected at this large step", expected="in (0.2, 0.999)",
                          actual=float(rates.mean()))


Q1 = Question(
    id="q1", functions=("mala_step",), make_inputs=q1_inputs, probe=q1_probe,
    checks=(Check("shapes; accepted is a mask", _q1_shapes),
            Check("log u = -inf accepts the Langevin proposal of eq. (1)", _q1_proposal),
            Check("log u = +inf rejects every move", _q1_reject),
            Check("accepted exactly when log u is below a threshold", _q1_threshold),
            Check("acceptance min(1, r): a move or its reverse is always accepted", _q1_min_one),
            Check("chains started at N(mu, sigma^2) stay there", _q1_stationary)))


# ---- q2: weighted_cd_loss(energy, x_pos, x_neg, log_q_neg) -> scalar, eq. (6) ------------------
# The check's network: E_theta(x) = w2 . tanh(x W1 + b1) + b2 + |x|^2 / 4, theta = (W1, b1, w2, b2).

H_DIFF = 1e-5   # central differences in float64


class _TanhNet(torch.nn.Module):
    def __init__(self, inputs):
        super().__init__()
        self.w1 = torch.nn.Parameter(_t(inputs["w1"]))
        self.b1 = torch.nn.Parameter(_t(inputs["b1"]))
        self.w2 = torch.nn.Parameter(_t(inputs["w2"]))
        self.b2 = torch.nn.Parameter(_t(inputs["b2"]))

    def forward(self, x):                                     # (B, 2) -> (B,)
        return torch.tanh(x @ self.w1 + self.b1) @ self.w2 + self.b2 + 0.25 * (x**2).sum(-1)


def q2_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    g = dict(generator=generator, dtype=F64)
    q_scale, gauss_q_scale = 1.5, 2.0
    x_neg = q_scale * torch.randn(128, 2, **g)
    gauss_neg = gauss_q_scale * torch.randn(20000, 2, **g)
    m, s = torch.tensor([0.5, -0.3], dtype=F64), 0.7
    return {"w1": torch.randn(2, 8, **g).numpy(), "b1": torch.randn(8, **g).numpy(),
            "w2": torch.randn(8, **g).numpy(), "b2": np.array(0.3),
            "x_pos": (0.8 * torch.randn(64, 2, **g) + 0.5).numpy(), "x_neg": x_neg.numpy(),
            "log_q_neg": (-0.5 * (x_neg / q_scale).pow(2).sum(1) - LOG_2PI - 2 * math.log(q_scale)).numpy(),
            "sampler_step": np.array(0.05),
            "constants": np.array([0.0, 800.0, -800.0]),
            "gauss_m": m.numpy(), "gauss_s": np.array(s),
            "gauss_pos": (m + s * torch.randn(500, 2, **g)).numpy(), "gauss_neg": gauss_neg.numpy(),
            "gauss_log_q": (-0.5 * (gauss_neg / gauss_q_scale).pow(2).sum(1) - LOG_2PI
                            - 2 * math.log(gauss_q_scale)).numpy()}


def q2_probe(namespace, inputs):
    loss_fn = student_function(namespace, "weighted_cd_loss")
    net = _TanhNet(inputs)
    x_pos, x_neg0, log_q = _t(inputs["x_pos"]), _t(inputs["x_neg"]), _t(inputs["log_q_neg"])
    # negatives from a sampler that depends on theta (one gradient step on E_theta, graph kept), as
    # they would come out of a chain that was not detached
    start = x_neg0.clone().requires_grad_(True)
    drift = torch.autograd.grad(net(start).sum(), start, create_graph=True)[0]
    x_neg = x_neg0 - float(inputs["sampler_step"]) * drift
    loss = loss_fn(net, x_pos, x_neg, log_q_neg=log_q)
    out = {"loss": as_array(loss, "weighted_cd_loss")}
    if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
        raise TypeError("weighted_cd_loss should return a tensor that autograd can differentiate (keep the graph)")
    net.zero_grad()
    loss.backward()
    params = list(net.parameters())
    out["gradient"] = np.concatenate([as_array(p.grad if p.grad is not None else torch.zeros_like(p), "a gradient")
                                      .ravel() for p in params])
    x_neg_fixed = x_neg.detach()
    values = []
    with torch.no_grad():
        for p in params:
            flat = p.view(-1)
            for i in range(flat.numel()):
                pair = []
                for sign in (1.0, -1.0):
                    flat[i] += sign * H_DIFF
                    pair.append(float(as_array(loss_fn(net, x_pos, x_neg_fixed, log_q_neg=log_q), "the loss")))
                    flat[i] -= sign * H_DIFF
                values.append(pair)
    out["shifted_losses"] = np.array(values)                 # (P, 2): theta_k + h and theta_k - h
    with torch.no_grad():
        out["constant_losses"] = np.array([float(as_array(loss_fn(lambda v, c=c: torch.full((len(v),), float(c),
                                                                                           dtype=F64),
                                                                  x_pos, x_neg_fixed, log_q_neg=log_q), "the loss"))
                                           for c in inputs["constants"]])
        gauss = _gaussian_energy(_t(inputs["gauss_m"]), torch.eye(2, dtype=F64) / float(inputs["gauss_s"]) ** 2)
        out["gauss_loss"] = as_array(loss_fn(gauss, _t(inputs["gauss_pos"]), _t(inputs["gauss_neg"]),
                                             log_q_neg=_t(inputs["gauss_log_q"])), "the loss (Gaussian energy)")
    return out


def _logmeanexp(a: np.ndarray) -> float:
    top = a.max()
    return float(top + np.log(np.mean(np.exp(a - top))))


def _q2_scalar(inputs, outputs):
    expect_shape(outputs["loss"], (), "the loss: a scalar")
    expect_finite(outputs["loss"], "the loss")


def _q2_constant(inputs, outputs):
    expected = np.full(len(inputs["constants"]), _logmeanexp(-inputs["log_q_neg"]))
    expect_close(outputs["constant_losses"], expected, "E = c everywhere, c = 0, 800, -800: the loss is "
                 "log mean_j 1/q(x_j-), whatever c (and finite: exp(800) overflows)", rtol=0, atol=1e-9)


def _q2_gradient(inputs, outputs):
    shifted = outputs["shifted_losses"]
    differences = (shifted[:, 0] - shifted[:, 1]) / (2 * H_DIFF)
    expect_close(outputs["gradient"], differences,
                 "autograd's gradient of your loss against central differences of its values, the negatives held "
                 "fixed (the gradient must not flow back through the sampler)", rtol=1e-5, atol=1e-6)


def _q2_estimates_nll(inputs, outputs):
    s = float(inputs["gauss_s"])
    m, x = inputs["gauss_m"], inputs["gauss_pos"]
    nll = float((0.5 * ((x - m) ** 2).sum(1) / s**2).mean() + LOG_2PI + 2 * math.log(s))   # mean E + log Z
    expect_close(outputs["gauss_loss"], nll, f"a Gaussian energy, {len(inputs['gauss_neg'])} negatives from "
                 "q = N(0, 4 I): the loss estimates the NLL, mean E(x+) + log Z", rtol=0, atol=0.03)


Q2 = Question(
    id="q2", functions=("weighted_cd_loss",), make_inputs=q2_inputs, probe=q2_probe,
    checks=(Check("a finite scalar", _q2_scalar),
            Check("a constant energy: log mean 1/q, in log space", _q2_constant),
            Check("the gradient is that of the value, negatives detached", _q2_gradient),
            Check("the value estimates the NLL", _q2_estimates_nll)))


# ---- q3: log_z_trapezoid(energy, lim, n, c0, c2) -> (log_z, bound) --------------------------------
# Energies of the checks: E(x) = -log sum_k a_k exp(-(x - m_k)^T P_k (x - m_k) / 2) + s, whose
# partition function is exp(-s) sum_k a_k 2 pi / sqrt(det P_k). Each holds E >= c0 + c2 |x|^2.

def gaussian_case(m, p, lim, n, s=0.0, a=None) -> dict[str, np.ndarray]:
    """One q3 case: a mixture energy (a: (K,), m: (K, 2), p: (K, 2, 2)) on [-lim, lim]^2 with n points
    a side, with a valid quadratic lower bound E >= c0 + c2 |x|^2 (see the comment above)."""
    m = np.atleast_2d(np.asarray(m, np.float64))
    p = np.asarray(p, np.float64).reshape(-1, 2, 2)
    a = np.ones(len(m)) if a is None else np.asarray(a, np.float64)
    lam = np.array([np.linalg.eigvalsh(pk).min() for pk in p])
    if np.allclose(m, 0):   # sum_k a_k e^{-q_k} <= (sum_k a_k) e^{-min lam |x|^2 / 2}
        c2, c0 = lam.min() / 2, s - math.log(a.sum())
    else:                   # |x|^2 <= 2 |x - m|^2 + 2 |m|^2, and a sum of K terms <= K times the largest
        c2 = lam.min() / 4
        c0 = s - math.log(len(a)) - float(np.max(lam * (m**2).sum(1) / 2 + np.log(a)))
    return {"a": a, "m": m, "p": p, "s": np.array(float(s)), "lim": np.array(float(lim)), "n": np.array(int(n)),
            "c0": np.array(c0), "c2": np.array(c2)}


def mixture_log_z(case) -> float:
    """log Z over the whole plane, exactly."""
    terms = np.log(case["a"]) + math.log(2 * math.pi) - 0.5 * np.log(np.linalg.det(case["p"]))
    top = terms.max()
    return float(top + np.log(np.exp(terms - top).sum()) - case["s"])


def mixture_log_z_box(case) -> float | None:
    """log of the integral over [-lim, lim]^2, exactly by erf, for axis-aligned components; else None."""
    p = case["p"]
    if not np.allclose(p, p * np.eye(2)):
        return None
    lim, total = float(case["lim"]), 0.0
    for a, m, pk in zip(case["a"], case["m"], p):
        mass = a
        for d in range(2):
            sd = 1 / math.sqrt(pk[d, d])
            mass *= sd * math.sqrt(2 * math.pi) * 0.5 * (math.erf((lim - m[d]) / (sd * math.sqrt(2)))
                                                         - math.erf((-lim - m[d]) / (sd * math.sqrt(2))))
        total += mass
    return math.log(total) - float(case["s"])


def _cases_to_inputs(cases: list[dict]) -> dict[str, np.ndarray]:
    inputs = {"n_cases": np.array(len(cases))}
    for i, case in enumerate(cases):
        inputs.update({f"case{i}_{key}": value for key, value in case.items()})
    return inputs


def _case(inputs, i: int) -> dict:
    prefix = f"case{i}_"
    return {key[len(prefix):]: value for key, value in inputs.items() if key.startswith(prefix)}


def q3_cases() -> list[dict]:
    narrow = np.diag([1 / 0.3**2, 1 / 0.5**2])
    rotation = np.array([[math.cos(0.6), -math.sin(0.6)], [math.sin(0.6), math.cos(0.6)]])
    tilted = rotation @ np.diag([1 / 0.6**2, 1 / 1.1**2]) @ rotation.T
    return [gaussian_case([0, 0], np.eye(2), lim=7, n=61),                      # 0: a fine grid, a large box
            gaussian_case([0, 0], np.eye(2), lim=7, n=61, s=800.0),             # 1, 2: shifted far
            gaussian_case([0, 0], np.eye(2), lim=7, n=61, s=-800.0),
            gaussian_case([0, 0], np.eye(2), lim=2.5, n=101),                   # 3: a small box, the tails count
            *[gaussian_case([0.3, -0.2], narrow, lim=4, n=n) for n in (9, 17, 33, 65)],   # 4-7: coarse to fine
            gaussian_case([0.4, 0.3], tilted, lim=5, n=41, s=1.5)]              # 8: tilted, offset


def q3_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    return _cases_to_inputs(q3_cases())


def _mixture_energy(case):
    a, m, p = _t(case["a"]), _t(case["m"]), _t(case["p"])
    s = float(case["s"])

    def energy(x):                                            # (B, 2) -> (B,)
        diff = x[:, None, :] - m[None]                          # (B, K, 2)
        quad = torch.einsum("bki,kij,bkj->bk", diff, p, diff)
        return -torch.logsumexp(a.log() - 0.5 * quad, dim=1) + s
    return energy


def q3_probe(namespace, inputs):
    log_z_trapezoid = student_function(namespace, "log_z_trapezoid")
    log_z, bound = [], []
    for i in range(int(inputs["n_cases"])):
        case = _case(inputs, i)
        with torch.no_grad():
            value, err = log_z_trapezoid(_mixture_energy(case), lim=float(case["lim"]), n=int(case["n"]),
                                         c0=float(case["c0"]), c2=float(case["c2"]))
        log_z.append(float(as_array(value, "log_z")))
        bound.append(float(as_array(err, "bound")))
    return {"log_z": np.array(log_z), "bound": np.array(bound)}


def _q3_shapes(inputs, outputs):
    n = int(inputs["n_cases"])
    expect_shape(outputs["log_z"], (n,), "one log_z per case")
    expect_finite(outputs["log_z"], "log_z")
    if not np.all(outputs["bound"] >= 0):
        raise CheckFailed("the bound is a non-negative number (inf allowed only when nothing can be said)",
                          expected=">= 0", actual=outputs["bound"])


def _q3_accurate(inputs, outputs):
    big = _case(inputs, 0)
    expect_close(outputs["log_z"][0], mixture_log_z(big), "log Z of N(0, I) (2 pi) on [-7, 7]^2, 61 points a side",
                 rtol=0, atol=1e-8)
    small = _case(inputs, 3)
    expect_close(outputs["log_z"][3], mixture_log_z_box(small), "log of the integral over the small box [-2.5, 2.5]^2 "
                 "(by erf): the trapezoid rule's half weights at the edges", rtol=0, atol=2e-4)


def _q3_log_space(inputs, outputs):
    for i in (1, 2):
        s = float(_case(inputs, i)["s"])
        expect_close(outputs["log_z"][i], outputs["log_z"][0] - s, f"E + {s:g}: log Z shifts by {-s:g} (exp({-s:g}) "
                     "is 0 or inf in float64: work in log space)", rtol=0, atol=1e-8)


def _q3_contains(inputs, outputs):
    errors = np.array([abs(mixture_log_z(_case(inputs, i)) - outputs["log_z"][i])
                       for i in range(int(inputs["n_cases"]))])
    if not np.all(errors <= outputs["bound"] + 1e-12):
        raise CheckFailed("the bound holds: |log Z - log_z| <= bound, coarse grids and small boxes included",
                          expected=f"bounds >= the true errors {np.array2string(errors, precision=3)}",
                          actual=outputs["bound"])


def _q3_tight(inputs, outputs):
    bound = outputs["bound"]
    expect_less(bound[0], 1e-6, "the bound where the error is negligible (a fine grid on [-7, 7]^2 for N(0, I))")
    expect_less(bound[3], 0.05, "the bound on the small box (the tails outside [-2.5, 2.5]^2 weigh about 0.025)")
    coarse_to_fine = bound[4:8]
    if not (np.all(np.diff(coarse_to_fine) <= 0) and coarse_to_fine[-1] < 1e-3):
        raise CheckFailed("the bound shrinks as the grid refines (9, 17, 33, 65 points a side), below 1e-3 at 65",
                          expected="decreasing, last < 1e-3", actual=coarse_to_fine)


Q3 = Question(
    id="q3", functions=("log_z_trapezoid",), make_inputs=q3_inputs, probe=q3_probe,
    checks=(Check("finite log_z, non-negative bounds", _q3_shapes),
            Check("log Z of Gaussians, and the integral over a small box", _q3_accurate),
            Check("energies shifted by +-800: log space", _q3_log_space),
            Check("the bound contains the true error", _q3_contains),
            Check("the bound is small where the error is", _q3_tight)))


# ---- q4: ReservoirBuffer(capacity, dim, generator): push(x), sample(n, reinit_prob), contents() -------

def q4_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    n_points = 8
    ids = np.arange(n_points, dtype=np.float64)
    return {"points": np.stack([10 + ids, -10 - ids], 1),      # (N, 2): point i is (10 + i, -10 - i)
            "chunks": np.array([1, 1, 3, 3]), "capacity": np.array(2), "n_buffers": np.array(1000),
            "seed": np.array(int(torch.randint(0, 2**31 - 1, (1,), generator=generator))),
            "n_samples": np.array(20000), "reinit_prob": np.array(0.05)}


def _point_ids(x: np.ndarray, n_points: int) -> np.ndarray:
    """Which pushed point each row is (-1: none of them): (B, 2) -> (B,)."""
    ids = np.rint(x[:, 0] - 10).astype(int)
    ok = (ids >= 0) & (ids < n_points) & np.isclose(x[:, 0], 10 + ids) & np.isclose(x[:, 1], -10 - ids)
    return np.where(ok, ids, -1)


def q4_probe(namespace, inputs):
    Buffer = student_function(namespace, "ReservoirBuffer")
    points, chunks = _t(inputs["points"]).float(), [int(c) for c in inputs["chunks"]]
    capacity, seed = int(inputs["capacity"]), int(inputs["seed"])

    def filled(generator_seed, n_chunks=len(chunks)):
        buffer = Buffer(capacity=capacity, dim=2, generator=torch.Generator().manual_seed(generator_seed))
        start = 0
        for size in chunks[:n_chunks]:
            buffer.push(points[start:start + size])
            start += size
        return buffer

    out = {}
    partial = filled(seed, n_chunks=2)                         # as many points as the capacity: all kept
    out["partial_contents"] = as_array(partial.contents(), "contents() while the buffer fills")
    out["partial_len"] = np.array(len(partial))
    ids = np.zeros((int(inputs["n_buffers"]), len(points)))    # (R, N): which points each buffer kept
    for r in range(len(ids)):
        contents = as_array(filled(seed + 1 + r).contents(), "contents() after every push")
        if r == 0:
            out["full_contents"] = contents
        kept = _point_ids(contents, len(points))
        ids[r, kept[kept >= 0]] = 1
    out["inclusion"] = ids
    buffer = filled(seed)
    before = as_array(buffer.contents(), "contents()")
    n, rho = int(inputs["n_samples"]), float(inputs["reinit_prob"])
    x, from_noise = buffer.sample(n, reinit_prob=rho)
    out["sample_x"], out["sample_from_noise"] = as_array(x, "sample's x"), _flags(from_noise, "sample's from_noise")
    out["contents_before"], out["contents_after"] = before, as_array(buffer.contents(), "contents() after sample")
    for name, prob in (("all", 1.0), ("none", 0.0)):
        x, from_noise = buffer.sample(500, reinit_prob=prob)
        out[f"sample_{name}_x"], out[f"sample_{name}_from_noise"] = as_array(x, "x"), _flags(from_noise, "from_noise")
    empty = Buffer(capacity=capacity, dim=2, generator=torch.Generator().manual_seed(seed))
    x, from_noise = empty.sample(500, reinit_prob=0.0)
    out["empty_x"], out["empty_from_noise"] = as_array(x, "x (empty buffer)"), _flags(from_noise, "from_noise")
    twin = filled(seed)
    out["twin_x"] = as_array(twin.sample(n, reinit_prob=rho)[0], "x (same seed)")
    out["other_x"] = as_array(filled(seed + 10**6).sample(n, reinit_prob=rho)[0], "x (another seed)")
    return out


def _q4_contents(inputs, outputs):
    points, capacity = inputs["points"], int(inputs["capacity"])
    n_partial = int(inputs["chunks"][:2].sum())
    expect_close(outputs["partial_len"], float(n_partial), f"len(buffer) after {n_partial} pushes", atol=0)
    partial = outputs["partial_contents"]
    expect_shape(partial, (n_partial, 2), f"contents() after {n_partial} pushes into a buffer of capacity {capacity}")
    expect_close(np.sort(_point_ids(partial, len(points))), np.arange(n_partial),
                 "every pushed point kept while there is room", atol=0)
    full = outputs["full_contents"]
    expect_shape(full, (capacity, 2), f"contents() after {len(points)} pushes: capacity rows")
    kept = _point_ids(full, len(points))
    if (kept < 0).any() or len(set(kept)) != len(kept):
        raise CheckFailed("a full buffer holds distinct pushed points", expected=f"distinct ids 0..{len(points) - 1}",
                          actual=kept)


def _q4_uniform(inputs, outputs):
    inclusion = outputs["inclusion"]                            # (R, N)
    r, n = inclusion.shape
    p = int(inputs["capacity"]) / n
    if not np.allclose(inclusion.sum(1), int(inputs["capacity"])):
        raise CheckFailed("every full buffer holds capacity distinct pushed points", expected=int(inputs["capacity"]),
                          actual=inclusion.sum(1))
    expect_close(inclusion.mean(0), np.full(n, p), f"how often each of the {n} pushed points is among the "
                 f"{int(inputs['capacity'])} kept, over {r} buffers (a uniform sample of everything pushed: "
                 f"{p:.3f} each; 5 standard errors)", rtol=0, atol=5 * math.sqrt(p * (1 - p) / r))


def _q4_sample(inputs, outputs):
    n, rho = int(inputs["n_samples"]), float(inputs["reinit_prob"])
    x, noise = outputs["sample_x"], outputs["sample_from_noise"]
    expect_shape(x, (n, 2), "sample's x")
    expect_shape(noise, (n,), "sample's from_noise")
    expect_close(noise.mean(), rho, "share of rows re-initialised from noise", rtol=0,
                 atol=5 * math.sqrt(rho * (1 - rho) / n))
    fresh, kept = x[noise > 0], x[noise == 0]
    if not (np.abs(fresh) <= 1).all():
        raise CheckFailed("re-initialised rows are uniform on [-1, 1]^2", expected="|x| <= 1",
                          actual=fresh[np.abs(fresh).max(1) > 1])
    expect_close(fresh.mean(0), np.zeros(2), "mean of the noise rows (uniform on [-1, 1]^2)", rtol=0,
                 atol=5 * math.sqrt(1 / 3 / len(fresh)))
    expect_close(fresh.var(0), np.full(2, 1 / 3), "variance of the noise rows (1/3)", rtol=0, atol=0.05)
    contents = outputs["contents_before"]
    buffer_ids = _point_ids(contents, len(inputs["points"]))
    ids = _point_ids(kept, len(inputs["points"]))
    if not np.isin(ids, buffer_ids).all():
        raise CheckFailed("rows not from noise are rows of the buffer", expected=f"ids in {buffer_ids}",
                          actual=np.unique(ids))
    shares = np.array([(ids == i).mean() for i in buffer_ids])
    k = len(buffer_ids)
    expect_close(shares, np.full(k, 1 / k), "each buffer row drawn equally often (uniformly, with replacement)",
                 rtol=0, atol=5 * math.sqrt((1 / k) * (1 - 1 / k) / len(ids)))
    expect_close(outputs["contents_after"], contents, "sampling leaves the buffer as it was", rtol=0, atol=0)


def _q4_edges(inputs, outputs):
    expect_close(outputs["sample_all_from_noise"], np.ones(500), "reinit_prob = 1: every row from noise", atol=0)
    expect_close(outputs["sample_none_from_noise"], np.zeros(500), "reinit_prob = 0: no row from noise", atol=0)
    expect_close(outputs["empty_from_noise"], np.ones(500), "an empty buffer: every row from noise", atol=0)
    if not (np.abs(outputs["empty_x"]) <= 1).all():
        raise CheckFailed("an empty buffer samples uniform noise on [-1, 1]^2", expected="|x| <= 1",
                          actual=outputs["empty_x"])


def _q4_seeded(inputs, outputs):
    expect_close(outputs["twin_x"], outputs["sample_x"], "the same pushes and the same generator seed give the same "
                 "samples (draw every random number from the generator)", rtol=0, atol=0)
    if np.array_equal(outputs["other_x"], outputs["sample_x"]):
        raise CheckFailed("another generator seed gives other samples", expected="different", actual="identical")


Q4 = Question(
    id="q4", functions=("ReservoirBuffer",), make_inputs=q4_inputs, probe=q4_probe,
    checks=(Check("contents: every point while there is room, then capacity distinct points", _q4_contents),
            Check("a uniform sample of everything pushed (reservoir)", _q4_uniform),
            Check("sample: a share reinit_prob of uniform noise, the rest uniformly from the buffer", _q4_sample),
            Check("reinit_prob 0 and 1, an empty buffer", _q4_edges),
            Check("reproducible from the generator", _q4_seeded)))


# ---- q5: train_energy_dsm(x_train, seed) -> energy (B, 2) -> (B,), trained by eq. (10) -------------
# The banana: x1 ~ N(0, 1), x2 | x1 ~ N(BEND (x1^2 - 1), WIDTH^2), then rotated by an angle. Graded on
# the KL of eq. (11) between it and your model, both normalised on the grid [-5, 5]^2 by the trapezoid
# rule here. The threshold, the reference's spread over seeds and where it comes from:
# instructor/hidden/05_ebm.py (tests/test_ebm_checks.py fails if the margin shrinks).
BEND, WIDTH = 0.4, 0.35
GRID_LIM, GRID_N = 5.0, 161
DSM_KL_MAX = 0.04
DSM_SECONDS_BUDGET = 15.0   # CPU seconds of one train_energy_dsm call (one core, as in the grader's sandbox)


def _rotation(angle: float) -> np.ndarray:
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def banana_sample(n: int, generator: torch.Generator, angle: float = 0.0) -> torch.Tensor:
    """n points of the banana, rotated by angle: (n, 2) float32."""
    x1 = torch.randn(n, generator=generator, dtype=F64)
    x2 = BEND * (x1**2 - 1) + WIDTH * torch.randn(n, generator=generator, dtype=F64)
    return (torch.stack([x1, x2], 1) @ torch.from_numpy(_rotation(angle)).T).float()


def banana_log_density(x: np.ndarray, angle: float = 0.0) -> np.ndarray:
    """The banana's exact log-density at x (G, 2), float64: (G,)."""
    u = np.asarray(x, np.float64) @ _rotation(angle)          # rotate back
    return (-0.5 * u[:, 0] ** 2 - 0.5 * ((u[:, 1] - BEND * (u[:, 0] ** 2 - 1)) / WIDTH) ** 2
            - LOG_2PI - math.log(WIDTH))


def kl_grid(lim: float = GRID_LIM, n: int = GRID_N) -> tuple[np.ndarray, np.ndarray]:
    """The grid points (n^2, 2) and their trapezoid weights h^2 w_i w_j (n^2,)."""
    axis = np.linspace(-lim, lim, n)
    w = np.full(n, axis[1] - axis[0])
    w[[0, -1]] /= 2
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], 1), np.outer(w, w).ravel()


def _log_normalised(log_f: np.ndarray, weights: np.ndarray) -> np.ndarray:
    a = log_f + np.log(weights)
    top = a.max()
    return log_f - (top + np.log(np.exp(a - top).sum()))


def grid_kl(log_p: np.ndarray, log_q: np.ndarray, weights: np.ndarray) -> float:
    """KL(p || q) between two densities given up to constants on a grid, both normalised there (eq. (11))."""
    log_p, log_q = _log_normalised(log_p, weights), _log_normalised(log_q, weights)
    return float(np.sum(weights * np.exp(log_p) * (log_p - log_q)))


def q5_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    return {"x_train": banana_sample(10_000, generator).numpy(), "seed": np.array(0), "angle": np.array(0.0)}


def q5_probe(namespace, inputs):
    train = student_function(namespace, "train_energy_dsm")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)         # as in the grader's sandbox: one core
    try:
        start = time.process_time()  # CPU seconds of this process, whatever else the machine runs
        energy = train(torch.tensor(inputs["x_train"], dtype=torch.float32), seed=int(inputs["seed"]))
        seconds = time.process_time() - start
    finally:
        torch.set_num_threads(threads)
    grid, _ = kl_grid()
    with torch.no_grad():
        values = energy(torch.tensor(grid, dtype=torch.float32))
    return {"seconds": np.array(seconds), "energy_grid": as_array(values, "energy(grid)").reshape(-1)}


def _q5_values(inputs, outputs):
    grid, _ = kl_grid()
    expect_shape(outputs["energy_grid"], (len(grid),), f"the energy at {len(grid)} grid points: one value each")
    expect_finite(outputs["energy_grid"], "the energy on the grid")


def _q5_budget(inputs, outputs):
    expect_less(outputs["seconds"], DSM_SECONDS_BUDGET, "CPU seconds for one train_energy_dsm call")


def _q5_kl(inputs, outputs):
    grid, weights = kl_grid()
    kl = grid_kl(banana_log_density(grid, float(inputs["angle"])), -outputs["energy_grid"], weights)
    expect_less(kl, DSM_KL_MAX, f"KL(banana || your model) on [-{GRID_LIM:g}, {GRID_LIM:g}]^2, eq. (11), nats")


Q5 = Question(
    id="q5", functions=("train_energy_dsm",), make_inputs=q5_inputs, probe=q5_probe,
    checks=(Check("a finite energy at every grid point", _q5_values),
            Check(f"trained within {DSM_SECONDS_BUDGET:g} CPU seconds", _q5_budget),
            Check(f"KL to the banana below {DSM_KL_MAX}", _q5_kl)))


QUESTIONS = (Q1, Q2, Q3, Q4, Q5)
