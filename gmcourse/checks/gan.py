"""Public checks for exercises/03_gan: least-squares and hinge losses, the least-squares game at
its optimal discriminator, WGAN-GP's gradient penalty, mode coverage on a grid, a GAN that covers
every mode.

Shapes: B batch, N grid points, K modes, Z code dim, H hidden width.
Every check tests a property (known values, central differences of your values, a first-order
condition checked by quadrature, invariances, gradients by finite differences of a critic the
check builds, constructed point sets with known answers, an outcome measured in the grader's own
process) of the raw values the probes return, so reading this file does not give the answers away.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from gmcourse.grading.expect import expect_close, expect_finite, expect_less, expect_shape
from gmcourse.grading.question import CheckFailed, Check, Question, as_array, as_tensor, student_function

# The 5 x 5 grid of Gaussians of q4: centres at (i - 2, j - 2) * GRID_SPACING, i, j = 0..4.
GRID_SIDE, GRID_SPACING, GRID_STD = 5, 1.0, 0.05
# q5 trains on the small mixture: the 3 x 3 grid, same spacing and std (9 modes, one in the middle).
GAN_GRID_SIDE = 3
# q5's outcome, for the generator you return, on 2,000 samples the grader draws itself: every one
# of the 9 modes covered and at least this share of high-quality samples. The reference's spread
# over seeds, and where this number comes from: instructor/hidden/03_gan.py (tests/test_gan_checks.py
# fails if the margin shrinks).
GAN_MIN_HQ_SHARE = 0.80
GAN_SECONDS_BUDGET = 20.0   # CPU seconds of one train_grid_gan call (one core; the sandbox runs one thread)


def grid_centres(n_side: int = GRID_SIDE, spacing: float = GRID_SPACING) -> np.ndarray:
    """(n_side^2, 2) centres of an n_side x n_side grid centred at 0, row-major in (i, j)."""
    axis = (np.arange(n_side) - (n_side - 1) / 2) * spacing
    return np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)


def grid_gaussians(n: int, generator: torch.Generator, n_side: int = GRID_SIDE, spacing: float = GRID_SPACING,
                   std: float = GRID_STD) -> torch.Tensor:
    """(n, 2) points of the equal-weight mixture of n_side^2 Gaussians (std ``std``) on the grid."""
    centres = torch.as_tensor(grid_centres(n_side, spacing), dtype=torch.float32)
    mode = torch.randint(0, n_side**2, (n,), generator=generator)
    return centres[mode] + std * torch.randn(n, 2, generator=generator)


def _scalar(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} should be a torch.Tensor, got {type(value).__name__}")
    return value


def _pair(result, name: str):
    if not isinstance(result, tuple) or len(result) != 2:
        raise TypeError(f"{name} should return a tuple (loss_d, loss_g)")
    return _scalar(result[0], f"{name}'s loss_d"), _scalar(result[1], f"{name}'s loss_g")


# ---- q1: lsgan_losses(scores_real, scores_fake, a, b, c), hinge_losses(scores_real, scores_fake)

FD_STEP_Q1 = 1e-2
LSGAN_SETTINGS = ((-1.0, 1.0, 0.0), (0.0, 1.0, 1.0))     # (a, b, c): Mao et al.'s two choices


def q1_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    real = 2.0 * torch.randn(6, generator=generator)                      # (B,)
    fake = 2.0 * torch.randn(9, generator=generator)                      # (B',): another batch size
    # hinge: keep every score at least 2h away from the kinks at +-1 so that central differences hold
    for scores in (real, fake):
        near = (scores.abs() - 1).abs() < 3 * FD_STEP_Q1
        scores[near] += 0.1
    return {"real": real.numpy(), "fake": fake.numpy(), "settings": np.array(LSGAN_SETTINGS),
            "constant": np.array([0.3, -0.7]), "order_real": torch.randperm(6, generator=generator).numpy(),
            "order_fake": torch.randperm(9, generator=generator).numpy()}


def _moved(scores: torch.Tensor, step: float) -> torch.Tensor:
    """(n, n) batches: row j is ``scores`` with entry j moved by ``step``."""
    return scores + step * torch.eye(len(scores))


def q1_probe(namespace, inputs):
    lsgan = student_function(namespace, "lsgan_losses")
    hinge = student_function(namespace, "hinge_losses")
    real, fake = as_tensor(inputs["real"]), as_tensor(inputs["fake"])
    order_real = torch.as_tensor(inputs["order_real"], dtype=torch.long)
    order_fake = torch.as_tensor(inputs["order_fake"], dtype=torch.long)
    r0, f0 = (float(v) for v in inputs["constant"])
    out = {}
    for name, loss in [("hinge", lambda r, f: hinge(r, f))] + [
            (f"ls{i}", lambda r, f, s=s: lsgan(r, f, float(s[0]), float(s[1]), float(s[2])))
            for i, s in enumerate(inputs["settings"])]:
        with torch.no_grad():
            out[f"{name}_d"], out[f"{name}_g"] = _pair(loss(real, fake), name)
            out[f"{name}_perm_d"], out[f"{name}_perm_g"] = _pair(loss(real[order_real], fake[order_fake]), name)
            out[f"{name}_twice_d"], out[f"{name}_twice_g"] = _pair(loss(real.repeat(2), fake.repeat(3)), name)
            out[f"{name}_const_d"], out[f"{name}_const_g"] = _pair(loss(torch.full((4,), r0), torch.full((5,), f0)), name)
            for which, scores in (("real", real), ("fake", fake)):
                for sign, label in ((1, "plus"), (-1, "minus")):
                    moved = _moved(scores, sign * FD_STEP_Q1)
                    values = [loss(m, fake) if which == "real" else loss(real, m) for m in moved]
                    out[f"{name}_{which}_{label}_d"] = torch.stack([_pair(v, name)[0] for v in values])
                    out[f"{name}_{which}_{label}_g"] = torch.stack([_pair(v, name)[1] for v in values])
        r, f = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
        loss_d, loss_g = _pair(loss(r, f), name)
        out[f"{name}_graph"] = torch.tensor(float(loss_d.requires_grad and loss_g.requires_grad))
    return {key: as_array(value, key) for key, value in out.items()}


def _losses(outputs):
    """(name, (a, b, c) or None) for the hinge and the two least-squares settings."""
    return [("hinge", None)] + [(f"ls{i}", s) for i, s in enumerate(LSGAN_SETTINGS)]


def _label(name, setting):
    return "hinge_losses" if setting is None else f"lsgan_losses with (a, b, c) = {setting}"


def _q1_shapes(inputs, outputs):
    for name, setting in _losses(outputs):
        for player in "dg":
            expect_shape(outputs[f"{name}_{player}"], (), f"loss_{player} of {_label(name, setting)} (a scalar)")
            expect_finite(outputs[f"{name}_{player}"], f"loss_{player} of {_label(name, setting)}")
        expect_close(outputs[f"{name}_graph"], 1.0, f"{_label(name, setting)}: both losses keep the graph "
                     "of scores that require grad (1 = yes)")


def _q1_known(inputs, outputs):
    r0, f0 = (float(v) for v in inputs["constant"])
    for name, setting in _losses(outputs):
        if setting is None:
            d, g = max(0.0, 1 - r0) + max(0.0, 1 + f0), -f0
        else:
            a, b, c = setting
            d, g = 0.5 * (r0 - b) ** 2 + 0.5 * (f0 - a) ** 2, 0.5 * (f0 - c) ** 2
        expect_close(outputs[f"{name}_const_d"], d, f"{_label(name, setting)}: loss_d for every real score "
                     f"{r0} and every fake score {f0}", rtol=1e-5, atol=1e-5)
        expect_close(outputs[f"{name}_const_g"], g, f"{_label(name, setting)}: loss_g for every fake score {f0}",
                     rtol=1e-5, atol=1e-5)


def _q1_batch(inputs, outputs):
    for name, setting in _losses(outputs):
        for player in "dg":
            expect_close(outputs[f"{name}_perm_{player}"], outputs[f"{name}_{player}"],
                         f"{_label(name, setting)}: loss_{player} of a shuffled batch", rtol=1e-5, atol=1e-5)
            expect_close(outputs[f"{name}_twice_{player}"], outputs[f"{name}_{player}"],
                         f"{_label(name, setting)}: loss_{player} of the batch repeated (a mean, not a sum)",
                         rtol=1e-5, atol=1e-5)


def central_difference(outputs, key: str) -> np.ndarray:
    """(n,) central differences of a loss along each score, from the values at +-h."""
    return (outputs[key.format("plus")] - outputs[key.format("minus")]) / (2 * FD_STEP_Q1)


def _q1_gradients(inputs, outputs):
    real, fake = inputs["real"].astype(np.float64), inputs["fake"].astype(np.float64)
    n_real, n_fake = len(real), len(fake)
    for name, setting in _losses(outputs):
        if setting is None:   # slopes of the hinge: -1 below the margin for real, +1 above it for fake
            expected = {"real_d": -(real < 1).astype(float) / n_real, "fake_d": (fake > -1).astype(float) / n_fake,
                        "real_g": np.zeros(n_real), "fake_g": -np.ones(n_fake) / n_fake}
        else:                 # a quadratic: the slope is the distance to the target, over the batch size
            a, b, c = setting
            expected = {"real_d": (real - b) / n_real, "fake_d": (fake - a) / n_fake,
                        "real_g": np.zeros(n_real), "fake_g": (fake - c) / n_fake}
        for key, slope in expected.items():
            which, player = key.split("_")
            expect_close(central_difference(outputs, f"{name}_{which}_{{}}_{player}"), slope,
                         f"{_label(name, setting)}: d loss_{player} / d score_{which}, by central differences "
                         f"of your values (h = {FD_STEP_Q1})", rtol=0, atol=2e-3)


Q1 = Question(
    id="q1", functions=("lsgan_losses", "hinge_losses"), make_inputs=q1_inputs, probe=q1_probe,
    checks=(Check("two scalars that keep the graph", _q1_shapes),
            Check("known values on constant batches", _q1_known),
            Check("means over the batch: shuffling or repeating it changes nothing", _q1_batch),
            Check("gradients with respect to every score (central differences)", _q1_gradients)))


# ---- q2: lsgan_optimal_discriminator(log_p_data, log_p_g, a, b), lsgan_value(..., dx, a, b, c)

def _normal_log_prob(x, mu, std):
    return -0.5 * ((x - mu) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


def q2_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    x = np.linspace(-60.0, 60.0, 120_001)                   # (N,), dx = 0.001; far tails where exp underflows
    mu, std = (2 * torch.rand(2, generator=generator) - 1).numpy(), (0.4 + torch.rand(2, generator=generator)).numpy()
    mu[1] += 1.5
    with np.errstate(divide="ignore"):
        uniform_data = np.where((x >= -2) & (x < -1), 0.0, -np.inf)                   # U[-2, -1)
        uniform_g = np.where((x >= 1) & (x < 3), math.log(0.5), -np.inf)             # U[1, 3): disjoint
    return {"x": x, "dx": np.array(x[1] - x[0]), "mu": mu, "std": std,
            "log_p_data": _normal_log_prob(x, mu[0], std[0]), "log_p_g": _normal_log_prob(x, mu[1], std[1]),
            "uniform_data": uniform_data, "uniform_g": uniform_g,
            "scale": np.array(2.5), "settings": np.array(LSGAN_SETTINGS)}


def q2_probe(namespace, inputs):
    d_star = student_function(namespace, "lsgan_optimal_discriminator")
    value = student_function(namespace, "lsgan_value")
    log_p, log_q = (torch.tensor(inputs[k], dtype=torch.float64) for k in ("log_p_data", "log_p_g"))
    uniform_p, uniform_q = (torch.tensor(inputs[k], dtype=torch.float64) for k in ("uniform_data", "uniform_g"))
    dx, scale = float(inputs["dx"]), float(inputs["scale"])
    out = {}
    with torch.no_grad():
        for i, (a, b, c) in enumerate(inputs["settings"]):
            a, b, c = float(a), float(b), float(c)
            out[f"d_star_{i}"] = d_star(log_p, log_q, a, b)
            out[f"value_{i}"] = value(log_p, log_q, dx, a, b, c)
            out[f"equal_d_star_{i}"] = d_star(log_p, log_p.clone(), a, b)
            out[f"equal_value_{i}"] = value(log_p, log_p.clone(), dx, a, b, c)
            out[f"disjoint_d_star_{i}"] = d_star(uniform_p, uniform_q, a, b)
            out[f"disjoint_value_{i}"] = value(uniform_p, uniform_q, dx, a, b, c)
            # the same two densities on the grid x' = scale * x: p'(x') = p(x) / scale
            out[f"scaled_value_{i}"] = value(log_p - math.log(scale), log_q - math.log(scale), dx * scale, a, b, c)
        out["swapped_value"] = value(log_q, log_p, dx)
    for key, result in out.items():
        _scalar(result, key)
    return {key: as_array(v, key) for key, v in out.items()}


def _settings(inputs):
    return [(i, *(float(v) for v in s)) for i, s in enumerate(inputs["settings"])]


def _q2_shapes(inputs, outputs):
    n = len(inputs["x"])
    for i, a, b, c in _settings(inputs):
        expect_shape(outputs[f"d_star_{i}"], (n,), "D* on the grid")
        expect_shape(outputs[f"value_{i}"], (), "lsgan_value (a scalar)")
        expect_finite(outputs[f"d_star_{i}"], f"D* with (a, b) = ({a}, {b}) on [-60, 60], where both densities "
                      "underflow far out")
        expect_finite(outputs[f"disjoint_d_star_{i}"], f"D* with (a, b) = ({a}, {b}) for two uniform densities, "
                      "also where both are zero (any finite value there)")
        for key in ("value", "equal_value", "disjoint_value", "scaled_value"):
            expect_finite(outputs[f"{key}_{i}"], f"{key} with (a, b, c) = ({a}, {b}, {c})")


def _q2_first_order(inputs, outputs):
    """D* minimises p_data (D - b)^2 + p_g (D - a)^2 at every x: (D* - a) / (b - D*) = p_data / p_g."""
    log_ratio = inputs["log_p_data"] - inputs["log_p_g"]
    inside = np.abs(log_ratio) < 15
    for i, a, b, c in _settings(inputs):
        d = outputs[f"d_star_{i}"][inside]
        if np.any((d - a) * (b - d) <= 0):
            raise CheckFailed(f"D* lies strictly between a = {a} and b = {b} where both densities are positive",
                              expected=f"in ({min(a, b)}, {max(a, b)})", actual=d)
        expect_close(np.log((d - a) / (b - d)), log_ratio[inside], f"(D* - a) / (b - D*) = p_data / p_g "
                     f"(the first-order condition), as logs, with (a, b) = ({a}, {b})", rtol=0, atol=1e-4)


def _lsgan_d_objective(inputs, d, a, b):
    p, q = np.exp(inputs["log_p_data"]), np.exp(inputs["log_p_g"])
    return 0.5 * float(np.sum(p * (d - b) ** 2 + q * (d - a) ** 2) * inputs["dx"])


def _q2_minimum(inputs, outputs):
    for i, a, b, c in _settings(inputs):
        d = outputs[f"d_star_{i}"]
        best = _lsgan_d_objective(inputs, d, a, b)
        for shift in (-0.05, 0.05):
            moved = _lsgan_d_objective(inputs, d + shift * np.exp(-0.5 * inputs["x"] ** 2), a, b)
            expect_less(best, moved, f"the discriminator's loss (quadrature) at your D* is below its value at "
                        f"D* + {shift} exp(-x^2/2), with (a, b) = ({a}, {b})")


def _q2_consistent(inputs, outputs):
    p, q = np.exp(inputs["log_p_data"]), np.exp(inputs["log_p_g"])
    for i, a, b, c in _settings(inputs):
        expected = 0.5 * float(np.sum((p + q) * (outputs[f"d_star_{i}"] - c) ** 2) * inputs["dx"])
        expect_close(outputs[f"value_{i}"], expected, f"lsgan_value = 1/2 int (p_data + p_g)(D* - c)^2 dx, with "
                     f"your D* (quadrature), (a, b, c) = ({a}, {b}, {c})", rtol=1e-4, atol=1e-6)


def _q2_known(inputs, outputs):
    uniform_data = np.isfinite(inputs["uniform_data"])
    uniform_g = np.isfinite(inputs["uniform_g"])
    for i, a, b, c in _settings(inputs):
        expect_close(outputs[f"equal_d_star_{i}"], np.full(len(inputs["x"]), (a + b) / 2),
                     f"p_g = p_data: D* = (a + b) / 2 everywhere, (a, b) = ({a}, {b})", rtol=0, atol=1e-6)
        expect_close(outputs[f"equal_value_{i}"], ((a + b) / 2 - c) ** 2,
                     f"p_g = p_data: the value is ((a + b)/2 - c)^2, (a, b, c) = ({a}, {b}, {c})", atol=1e-4)
        expect_close(outputs[f"disjoint_d_star_{i}"][uniform_data], np.full(uniform_data.sum(), b),
                     f"disjoint supports: D* = b = {b} where only data lives", rtol=0, atol=1e-6)
        expect_close(outputs[f"disjoint_d_star_{i}"][uniform_g], np.full(uniform_g.sum(), a),
                     f"disjoint supports: D* = a = {a} where only the generator's samples live", rtol=0, atol=1e-6)
        expect_close(outputs[f"disjoint_value_{i}"], 0.5 * ((b - c) ** 2 + (a - c) ** 2),
                     f"disjoint supports: the value is ((b - c)^2 + (a - c)^2) / 2, (a, b, c) = ({a}, {b}, {c})",
                     atol=2e-3)


def _q2_divergence(inputs, outputs):
    """With b - c = 1 and b - a = 2 the value is half an f-divergence: in [0, 1], symmetric, and
    unchanged when both densities are rescaled to another unit of x."""
    value = float(outputs["value_0"])
    if not 0 < value < 1:
        raise CheckFailed("(a, b, c) = (-1, 1, 0): 0 < value < 1 for two different, overlapping densities",
                          expected="in (0, 1)", actual=value)
    expect_close(outputs["swapped_value"], value, "(a, b, c) = (-1, 1, 0) (the defaults): the value is symmetric "
                 "in p_data and p_g", rtol=1e-6, atol=1e-8)
    for i, a, b, c in _settings(inputs):
        expect_close(outputs[f"scaled_value_{i}"], outputs[f"value_{i}"], f"the same densities in another unit "
                     f"of x (x' = {float(inputs['scale'])} x): same value, (a, b, c) = ({a}, {b}, {c})",
                     rtol=1e-6, atol=1e-8)


Q2 = Question(
    id="q2", functions=("lsgan_optimal_discriminator", "lsgan_value"), make_inputs=q2_inputs, probe=q2_probe,
    checks=(Check("shapes; finite everywhere, also where both densities underflow", _q2_shapes),
            Check("first-order condition of the discriminator's loss at every x", _q2_first_order),
            Check("D* minimises the discriminator's loss (quadrature)", _q2_minimum),
            Check("the value is the generator's loss at D* (quadrature)", _q2_consistent),
            Check("known values: equal densities, disjoint supports", _q2_known),
            Check("a divergence: bounded, symmetric, free of the unit of x", _q2_divergence)))


# ---- q3: wgan_gp_penalty(critic, x_real, x_fake, eps) -----------------------------------------
# The critics are built here from plain arrays: linear, and D(x) = w2 . tanh(W1 flat(x) + b1) + b2.

FD_STEP_X = 1e-5       # the check's own central differences of its float64 critic
FD_STEP_PARAM = 1e-3   # the probe's move of one critic parameter


class _LinearCritic(nn.Module):
    def __init__(self, w, bias):
        super().__init__()
        self.w, self.bias = nn.Parameter(as_tensor(w)), nn.Parameter(as_tensor(bias))

    def forward(self, x):                                         # (B, D) -> (B,)
        return x @ self.w + self.bias


class _TanhCritic(nn.Module):
    def __init__(self, w1, b1, w2, b2, keepdim):
        super().__init__()
        self.w1, self.b1 = nn.Parameter(as_tensor(w1)), nn.Parameter(as_tensor(b1))
        self.w2, self.b2 = nn.Parameter(as_tensor(w2)), nn.Parameter(as_tensor(b2))
        self.keepdim = keepdim

    def forward(self, x):                                         # (B, ...) -> (B, 1) or (B,)
        h = torch.tanh(x.flatten(1) @ self.w1.T + self.b1)        # (B, H)
        out = h @ self.w2 + self.b2                               # (B,)
        return out[:, None] if self.keepdim else out


def _tanh_critic_np(params, x):
    """The check's float64 copy of _TanhCritic: x (B, D) -> (B,)."""
    w1, b1, w2, b2 = params
    return np.tanh(x @ w1.T + b1) @ w2 + b2


def q3_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    w = torch.randn(2, generator=generator)
    w = 0.6 * w / w.norm()                                        # |grad| = 0.6 < 1 everywhere
    d_img = 1 * 3 * 3
    return {"lin_w": w.numpy(), "lin_b": np.array(0.3),
            "lin_real": torch.randn(5, 2, generator=generator).numpy(),
            "lin_fake": torch.randn(5, 2, generator=generator).numpy(),
            "w1": 0.8 * torch.randn(6, d_img, generator=generator).numpy(), "b1": 0.3 * torch.randn(6, generator=generator).numpy(),
            "w2": torch.randn(6, generator=generator).numpy(), "b2": np.array(-0.2),
            "img_real": torch.randn(4, 1, 3, 3, generator=generator).numpy(),
            "img_fake": torch.randn(4, 1, 3, 3, generator=generator).numpy(),
            "eps": torch.rand(4, generator=generator).numpy(), "lin_eps": torch.rand(5, generator=generator).numpy()}


def _critic(inputs, keepdim=False, moved=None):
    params = {key: inputs[key].copy() for key in ("w1", "b1", "w2", "b2")}
    if moved is not None:
        name, index, step = moved
        params[name][index] += step
    return _TanhCritic(params["w1"], params["b1"], params["w2"], params["b2"], keepdim)


MOVED = (("w1", (0, 0)), ("w1", (2, 5)), ("b1", (3,)), ("w2", (1,)))   # parameters the probe moves


def q3_probe(namespace, inputs):
    penalty = student_function(namespace, "wgan_gp_penalty")
    real, fake, eps = as_tensor(inputs["img_real"]), as_tensor(inputs["img_fake"]), as_tensor(inputs["eps"])
    out = {}

    def value(critic, x_real, x_fake, e):
        return _scalar(penalty(critic, x_real, x_fake, e), "wgan_gp_penalty(...)")

    linear = _LinearCritic(inputs["lin_w"], inputs["lin_b"])
    out["linear"] = value(linear, as_tensor(inputs["lin_real"]), as_tensor(inputs["lin_fake"]),
                          as_tensor(inputs["lin_eps"])).detach()
    out["images"] = value(_critic(inputs), real, fake, eps).detach()
    out["images_keepdim"] = value(_critic(inputs, keepdim=True), real, fake, eps).detach()
    out["at_real"] = value(_critic(inputs), real, fake, torch.ones(len(real))).detach()
    out["at_fake"] = value(_critic(inputs), real, fake, torch.zeros(len(real))).detach()
    # fakes fresh from a generator carry a graph (requires_grad): the penalty still works
    out["fake_with_graph"] = value(_critic(inputs), real, fake.clone().requires_grad_(True), eps).detach()
    # the gradient of your penalty with respect to the critic's parameters, by autograd...
    critic = _critic(inputs)
    result = value(critic, real, fake, eps)
    out["keeps_graph"] = torch.tensor(float(result.requires_grad))
    if result.requires_grad:
        result.backward()
    for k, (name, index) in enumerate(MOVED):
        grad = getattr(critic, name).grad
        out[f"autograd_{k}"] = grad[index].detach() if grad is not None else torch.tensor(0.0)
        # ...and your penalty's values with that parameter moved by +-h
        for sign, label in ((1, "plus"), (-1, "minus")):
            out[f"{label}_{k}"] = value(_critic(inputs, moved=(name, index, sign * FD_STEP_PARAM)),
                                        real, fake, eps).detach()
    return {key: as_array(v, key) for key, v in out.items()}


def _input_gradient(params, x):
    """(B, D) central differences (h = FD_STEP_X) of the float64 critic at each row of x."""
    steps = FD_STEP_X * np.eye(x.shape[1])
    return np.stack([(_tanh_critic_np(params, x + e) - _tanh_critic_np(params, x - e)) / (2 * FD_STEP_X)
                     for e in steps], axis=1)


def _gp_np(params, x_real, x_fake, eps):
    """The check's float64 gradient penalty at interpolates, the gradient by central differences."""
    x_hat = eps[:, None] * x_real + (1 - eps[:, None]) * x_fake
    norm = np.linalg.norm(_input_gradient(params, x_hat), axis=1)
    return float(np.mean((norm - 1) ** 2))


def _params(inputs):
    return tuple(inputs[key].astype(np.float64) for key in ("w1", "b1", "w2", "b2"))


def _images(inputs):
    return (inputs["img_real"].reshape(len(inputs["img_real"]), -1).astype(np.float64),
            inputs["img_fake"].reshape(len(inputs["img_fake"]), -1).astype(np.float64),
            inputs["eps"].astype(np.float64))


def _q3_shapes(inputs, outputs):
    for key in ("linear", "images", "images_keepdim", "at_real", "at_fake", "fake_with_graph"):
        expect_shape(outputs[key], (), f"the penalty ({key}) is a scalar")
        expect_finite(outputs[key], f"the penalty ({key})")


def _q3_linear(inputs, outputs):
    norm = float(np.linalg.norm(inputs["lin_w"]))
    expect_close(outputs["linear"], (norm - 1) ** 2, f"a linear critic w.x + b with |w| = {norm:.2f}: the penalty "
                 "is (|w| - 1)^2 at every interpolate (two-sided: a gradient norm below 1 is penalised too)",
                 rtol=1e-4, atol=1e-6)


def _q3_finite_differences(inputs, outputs):
    params = _params(inputs)
    x_real, x_fake, eps = _images(inputs)
    ones, zeros = np.ones(len(eps)), np.zeros(len(eps))
    for key, e, where in (("images", eps, "random interpolates"), ("at_real", ones, "eps = 1 (the data)"),
                          ("at_fake", zeros, "eps = 0 (the generator's samples)")):
        expect_close(outputs[key], _gp_np(params, x_real, x_fake, e), f"your penalty at {where}, images (B, 1, 3, 3), "
                     "against the check's own (gradient by central differences of a float64 copy of the critic)",
                     rtol=1e-3, atol=1e-5)
    expect_close(outputs["images_keepdim"], outputs["images"], "a critic returning (B, 1) instead of (B,): same penalty",
                 rtol=1e-5, atol=1e-7)
    expect_close(outputs["fake_with_graph"], outputs["images"], "fakes that carry a generator's graph: same penalty",
                 rtol=1e-5, atol=1e-7)


def _q3_parameter_gradient(inputs, outputs):
    expect_close(outputs["keeps_graph"], 1.0, "the penalty is differentiable with respect to the critic's parameters "
                 "(it keeps the graph of the input gradient: 1 = yes)")
    params = _params(inputs)
    x_real, x_fake, eps = _images(inputs)
    names = ("w1", "b1", "w2", "b2")
    for k, (name, index) in enumerate(MOVED):
        moved = []
        for sign in (1, -1):
            changed = [p.copy() for p in params]
            changed[names.index(name)][index] += sign * FD_STEP_PARAM
            moved.append(_gp_np(changed, x_real, x_fake, eps))
        expected = (moved[0] - moved[1]) / (2 * FD_STEP_PARAM)
        yours = (outputs[f"plus_{k}"] - outputs[f"minus_{k}"]) / (2 * FD_STEP_PARAM)
        expect_close(yours, expected, f"d penalty / d {name}{list(index)} by central differences of your values",
                     rtol=2e-2, atol=2e-3)
        expect_close(outputs[f"autograd_{k}"], expected, f"d penalty / d {name}{list(index)} by backward() through "
                     "your penalty, against the check's central differences", rtol=2e-2, atol=2e-3)


Q3 = Question(
    id="q3", functions=("wgan_gp_penalty",), make_inputs=q3_inputs, probe=q3_probe,
    checks=(Check("a finite scalar", _q3_shapes),
            Check("a linear critic: (|w| - 1)^2, two-sided", _q3_linear),
            Check("matches finite differences of the critic at interpolates, data and fakes", _q3_finite_differences),
            Check("differentiable in the critic's parameters, with the right gradient", _q3_parameter_gradient)))


# ---- q4: grid_mode_scores(x, n_side, spacing, std, min_share) -> (modes, hq_share, kl) ---------

def _mode_sets(generator: torch.Generator) -> dict[str, np.ndarray]:
    centres = grid_centres()                                      # (25, 2)
    k = len(centres)
    angle = 2 * math.pi * torch.rand(k * 8, generator=generator).numpy()
    ring = np.stack([np.cos(angle), np.sin(angle)], 1)            # (8K, 2) unit directions
    on_centres = np.repeat(centres, 8, axis=0)                    # (8K, 2), 8 per mode
    rare = np.concatenate([np.repeat(centres[:24], 40, axis=0), np.repeat(centres[24:], 3, axis=0)])
    uneven = np.repeat(centres, np.arange(1, k + 1), axis=0)      # mode k holds k + 1 points
    return {"centres": on_centres, "inside": on_centres + 2.9 * GRID_STD * ring,
            "outside": on_centres + 3.1 * GRID_STD * ring, "one_mode": np.repeat(centres[7:8], 50, axis=0),
            "beyond": np.array([[10.0, 10.0], [-7.0, 0.0], [0.0, 30.0], [2.0, -9.0]]),
            "rare": rare, "uneven": uneven}


def q4_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    sets = _mode_sets(generator)
    cloud = grid_gaussians(3000, generator, std=0.12).numpy()    # some within 3 sigma, some not
    return {**{f"set_{key}": value for key, value in sets.items()}, "cloud": cloud,
            "order": torch.randperm(3000, generator=generator).numpy(),
            "small_grid": grid_gaussians(400, generator, n_side=3, spacing=2.0, std=0.1).numpy() + 0.0}


def _triple(result, name):
    if not isinstance(result, tuple) or len(result) != 3:
        raise TypeError(f"{name} should return a tuple (modes, hq_share, kl)")
    return tuple(torch.as_tensor(v) for v in result)


def q4_probe(namespace, inputs):
    scores = student_function(namespace, "grid_mode_scores")
    out = {}
    calls = {key[4:]: (inputs[key], {}) for key in inputs if key.startswith("set_")}
    calls["rare_low"] = (inputs["set_rare"], {"min_share": 0.001})
    calls["cloud"] = (inputs["cloud"], {})
    calls["shuffled"] = (inputs["cloud"][inputs["order"].astype(int)], {})
    calls["small_grid"] = (inputs["small_grid"], {"n_side": 3, "spacing": 2.0, "std": 0.1})
    with torch.no_grad():
        for name, (x, kwargs) in calls.items():
            result = _triple(scores(as_tensor(x), **kwargs), "grid_mode_scores")
            for key, value in zip(("modes", "hq", "kl"), result):
                out[f"{name}_{key}"] = value
    return {key: as_array(value, key) for key, value in out.items()}


def _q4_shapes(inputs, outputs):
    for key in outputs:
        expect_shape(outputs[key], (), f"{key} (a scalar)")
        expect_finite(outputs[key], key)


def _expect_scores(outputs, name, modes, hq, kl, what):
    expect_close(outputs[f"{name}_modes"], modes, f"{what}: modes covered", rtol=0, atol=1e-6)
    expect_close(outputs[f"{name}_hq"], hq, f"{what}: share of high-quality samples", rtol=0, atol=1e-6)
    expect_close(outputs[f"{name}_kl"], kl, f"{what}: KL of the mode histogram to uniform (nats)", rtol=0, atol=1e-5)


def _q4_known(inputs, outputs):
    k = GRID_SIDE**2
    _expect_scores(outputs, "centres", k, 1.0, 0.0, "8 points at each of the 25 centres")
    _expect_scores(outputs, "inside", k, 1.0, 0.0, "8 points 2.9 std from each centre")
    _expect_scores(outputs, "outside", 0, 0.0, 0.0, "8 points 3.1 std from each centre")
    _expect_scores(outputs, "one_mode", 1, 1.0, math.log(k), "50 points at one centre")


def _q4_beyond(inputs, outputs):
    _expect_scores(outputs, "beyond", 0, 0.0, math.log(GRID_SIDE**2 / 4), "4 points far outside the grid, each "
                   "nearest to another of its border modes (uniform over 4 of the 25)")


def _q4_threshold(inputs, outputs):
    n = len(inputs["set_rare"])
    q = np.array([40] * 24 + [3]) / n
    kl = float(np.sum(q * np.log(q * 25)))
    _expect_scores(outputs, "rare", 24, 1.0, kl, f"24 modes with 40 points and one with 3 ({3 / n:.4f} of the "
                   f"samples, below the default min_share 1/(6K) = {1 / 150:.4f})")
    _expect_scores(outputs, "rare_low", 25, 1.0, kl, "the same points with min_share = 0.001")
    counts = np.arange(1, 26)
    q = counts / counts.sum()
    covered = int(np.sum(q >= 1 / 150))
    _expect_scores(outputs, "uneven", covered, 1.0, float(np.sum(q * np.log(q * 25))),
                   "mode k (row-major) holds k + 1 points")


def _q4_invariant(inputs, outputs):
    for key in ("modes", "hq", "kl"):
        expect_close(outputs[f"shuffled_{key}"], outputs[f"cloud_{key}"], f"{key} of shuffled samples",
                     rtol=1e-6, atol=1e-6)
    hq = float(outputs["cloud_hq"])
    if not 0.3 < hq < 0.99:
        raise CheckFailed("samples of the grid with std 0.12, scored with std 0.05: a share of them lies within "
                          "3 std = 0.15 of a centre", expected="between 0.3 and 0.99", actual=hq)
    if not 0 <= float(outputs["small_grid_kl"]) < 0.1 or int(outputs["small_grid_modes"]) != 9:
        raise CheckFailed("a 3 x 3 grid, spacing 2, std 0.1, scored with those settings: 9 modes, near-uniform",
                          expected="9 modes, kl < 0.1", actual=(outputs["small_grid_modes"], outputs["small_grid_kl"]))


Q4 = Question(
    id="q4", functions=("grid_mode_scores",), make_inputs=q4_inputs, probe=q4_probe,
    checks=(Check("three finite scalars", _q4_shapes),
            Check("known answers: centres, just inside, just outside, one mode", _q4_known),
            Check("points beyond the grid belong to its border modes, and are not high quality", _q4_beyond),
            Check("the coverage threshold min_share, and the mode histogram", _q4_threshold),
            Check("invariant to order; any grid", _q4_invariant)))


def _grid_scores(x: np.ndarray, n_side: int = GRID_SIDE, spacing: float = GRID_SPACING, std: float = GRID_STD):
    """The check's own modes covered and high-quality share on the grid (for q5's outcome)."""
    centres = grid_centres(n_side, spacing)
    near = np.linalg.norm(x[:, None, :] - centres[None], axis=-1) <= 3 * std      # (B, K)
    share = near.mean(0)                                                            # (K,)
    return int(np.sum(share >= 1 / (6 * len(centres)))), float(near.any(1).mean())


# ---- q5: train_grid_gan(x_train, seed) -> a generator nn.Sequential(Linear, ReLU, ..., Linear) ---

def q5_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    return {"x_train": grid_gaussians(10_000, generator, n_side=GAN_GRID_SIDE).numpy(), "seed": np.array(0),
            "z_seed": np.array(2026), "n_samples": np.array(2000)}


def _generator_layers(model) -> list:
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"train_grid_gan should return an nn.Sequential generator, got {type(model).__name__}")
    layers = list(model)
    kinds = ["Linear" if isinstance(m, nn.Linear) else "ReLU" if isinstance(m, nn.ReLU) else type(m).__name__
             for m in layers]
    expected = ["Linear", "ReLU"] * (len(layers) // 2) + ["Linear"]
    if kinds != expected:
        raise TypeError(f"the generator should be nn.Sequential(Linear, ReLU, Linear, ..., ReLU, Linear), got {kinds}")
    if layers[-1].out_features != 2:
        raise ValueError(f"the generator's last layer should output 2 coordinates, got {layers[-1].out_features}")
    return [m for m in layers if isinstance(m, nn.Linear)]


def q5_probe(namespace, inputs):
    train = student_function(namespace, "train_grid_gan")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)         # as in the grader's sandbox: one core
    try:
        start = time.process_time()  # CPU seconds of this process, whatever else the machine runs
        model = train(as_tensor(inputs["x_train"]), seed=int(inputs["seed"]))
        seconds = time.process_time() - start
    finally:
        torch.set_num_threads(threads)
    out = {"seconds": np.array(seconds)}
    linears = _generator_layers(model)
    out["n_layers"] = np.array(len(linears))
    for i, layer in enumerate(linears):
        out[f"w_{i}"], out[f"b_{i}"] = as_array(layer.weight, f"weight {i}"), as_array(layer.bias, f"bias {i}")
    return out


def rebuilt_generator(outputs, z: np.ndarray) -> np.ndarray:
    """The exported generator's points (B, 2) at codes z (B, Z), computed here in float64."""
    n_layers = int(outputs["n_layers"])
    h = z
    for i in range(n_layers):
        h = h @ outputs[f"w_{i}"].T + outputs[f"b_{i}"]
        if i < n_layers - 1:
            h = np.maximum(h, 0.0)
    return h


def generator_samples(inputs, outputs) -> np.ndarray:
    """(n_samples, 2) samples of the exported generator, z ~ N(0, I_Z) drawn by the check."""
    z_dim = outputs["w_0"].shape[1]
    rng = np.random.default_rng(int(inputs["z_seed"]))
    return rebuilt_generator(outputs, rng.standard_normal((int(inputs["n_samples"]), z_dim)))


def _q5_shapes(inputs, outputs):
    n_layers = int(outputs["n_layers"])
    for i in range(n_layers):
        w, b = outputs[f"w_{i}"], outputs[f"b_{i}"]
        if w.ndim != 2 or b.shape != (w.shape[0],) or (i > 0 and w.shape[1] != outputs[f"w_{i - 1}"].shape[0]):
            raise CheckFailed(f"layer {i} of the generator does not fit the one before it", expected="matching shapes",
                              actual=(w.shape, b.shape))
        expect_finite(w, f"weight of layer {i}")
        expect_finite(b, f"bias of layer {i}")
    expect_shape(outputs[f"w_{n_layers - 1}"][:, 0], (2,), "the last layer's output (2D points)")


def _q5_budget(inputs, outputs):
    expect_less(outputs["seconds"], GAN_SECONDS_BUDGET, "CPU seconds for one train_grid_gan call")


def _q5_outcome(inputs, outputs):
    x = generator_samples(inputs, outputs)
    expect_finite(x, "the generator's samples")
    modes, hq = _grid_scores(x, n_side=GAN_GRID_SIDE)
    k = GAN_GRID_SIDE**2
    if modes != k or not hq >= GAN_MIN_HQ_SHARE:
        raise CheckFailed(f"{len(x)} samples the grader drew from your generator (z ~ N(0, I), seed "
                          f"{int(inputs['z_seed'])}): every one of the {k} modes covered (at least 1/(6K) of the "
                          f"samples within 3 std of it), and at least {GAN_MIN_HQ_SHARE} of them high quality",
                          expected=f"{k} modes, high-quality share >= {GAN_MIN_HQ_SHARE}",
                          actual=f"{modes} modes, high-quality share {hq:.3f}")


Q5 = Question(
    id="q5", functions=("train_grid_gan",), make_inputs=q5_inputs, probe=q5_probe,
    checks=(Check("an MLP generator with 2D output", _q5_shapes),
            Check(f"trained within {GAN_SECONDS_BUDGET:g} CPU seconds", _q5_budget),
            Check("covers every mode, with enough high-quality samples (the grader draws them)", _q5_outcome)))


QUESTIONS = (Q1, Q2, Q3, Q4, Q5)
