"""Public checks for exercises/00_intro: log-sum-exp, EM for a Gaussian mixture, a histogram.

Shapes: B batch, N data points, D data dim, K mixture components, L levels per axis, G grid points.
Every check tests a property (known values, normalisation, invariances, finite differences,
monotone likelihood, an outcome on held-out data) of the raw values the probes return, so
reading this file does not give the answers away. While a probe runs, ``torch.logsumexp`` (and
its ``Tensor`` and ``torch.special`` twins) raise: the exercise asks for your own.
"""
from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch

from gmcourse.gaussian import LOG_2PI
from gmcourse.grading.expect import expect_close, expect_finite, expect_less, expect_shape
from gmcourse.grading.question import CheckFailed, Check, Question, as_array, as_tensor, student_function

# q4's outcome: held-out NLL of EM on the two rings, for every one of the probe's seeds. The
# reference's spread over 10 seeds (measured by tests/test_intro_checks.py, which fails if the
# margin shrinks below 0.02 nats) and the origin of this number: instructor/hidden/00_intro.py.
EM_TEST_NLL_TARGET = 2.68
EM_SECONDS_BUDGET = 20.0   # per fit, on one core (the reference takes well under one second)


@contextlib.contextmanager
def own_logsumexp():
    """``torch.logsumexp``, ``Tensor.logsumexp`` and ``torch.special.logsumexp`` raise inside."""
    def forbidden(*args, **kwargs):
        raise RuntimeError("this exercise asks for your own logsumexp (q1): torch.logsumexp is off "
                           "while the checks run")
    saved = torch.logsumexp, torch.Tensor.logsumexp, torch.special.logsumexp
    torch.logsumexp = torch.Tensor.logsumexp = torch.special.logsumexp = forbidden
    try:
        yield
    finally:
        torch.logsumexp, torch.Tensor.logsumexp, torch.special.logsumexp = saved


def _float64_logsumexp(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """log sum exp along ``axis`` in float64 (NumPy's logaddexp), for the checks' own sums."""
    return np.logaddexp.reduce(np.asarray(a, dtype=np.float64), axis=axis)


def grid_2d(half_width: float = 7.0, n: int = 141) -> tuple[np.ndarray, float]:
    """(G, 2) points of a square grid and the area of one cell, for Riemann sums."""
    axis = np.linspace(-half_width, half_width, n)
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1), float((axis[1] - axis[0]) ** 2)


def gaussian_at_mean(log_var: np.ndarray) -> float:
    """log N(mu; mu, diag(exp(log_var))) = -D/2 log(2 pi) - 1/2 sum(log_var)."""
    return float(-0.5 * log_var.shape[-1] * LOG_2PI - 0.5 * np.sum(log_var))


def _float32_tensor(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} should be a torch.Tensor, got {type(value).__name__}")
    return value


# ---- q1: logsumexp(a, dim=-1) ----------------------------------------------------------------

FD_STEP_Q1 = 1e-2


def q1_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    a = 3.0 * torch.randn(5, 7, generator=generator)                               # (B, n)
    inf = float("inf")
    extreme = np.array([[1e4, 1e4 - 1.0, 1e4 - 2.0, -1e4],       # exp overflows
                        [-1e4, -1e4, -1e4 - 3.0, -1e4 - 5.0],      # exp underflows
                        [3e38, 3e38, -3e38, 0.0],                  # near float32's largest
                        [-inf, -inf, -inf, -inf],                  # log 0 = -inf, not nan
                        [0.0, -inf, -inf, 1.0],                    # -inf entries add nothing
                        [inf, 0.0, 1.0, -inf]], dtype=np.float32)  # +inf stays +inf
    return {"a": a.numpy(), "shift": np.array(1e3, dtype=np.float32), "extreme": extreme,
            "cube": torch.randn(2, 3, 4, generator=generator).numpy(), "equal": np.full((1, 9), -2.5)}


def q1_probe(namespace, inputs):
    logsumexp = student_function(namespace, "logsumexp")
    a, cube = as_tensor(inputs["a"]), as_tensor(inputs["cube"])
    steps = FD_STEP_Q1 * torch.eye(a.shape[1])                                     # (n, n)
    with torch.no_grad(), own_logsumexp():
        out = {"lse": logsumexp(a, dim=-1), "shifted": logsumexp(a + float(inputs["shift"]), dim=-1),
               "extreme": logsumexp(as_tensor(inputs["extreme"]), dim=-1),
               "dim0": logsumexp(cube, dim=0), "dim1": logsumexp(cube, dim=1), "last": logsumexp(cube),
               "equal": logsumexp(as_tensor(inputs["equal"]), dim=-1),
               # (n, B): the value with entry j of every row moved by +-h
               "plus": torch.stack([logsumexp(a + e, dim=-1) for e in steps]),
               "minus": torch.stack([logsumexp(a - e, dim=-1) for e in steps])}
        out = {key: _float32_tensor(value, f"logsumexp(...) for {key}") for key, value in out.items()}
    arrays = {key: as_array(value, key) for key, value in out.items()}
    arrays["float32"] = np.array(float(out["lse"].dtype == torch.float32))
    return arrays


def _q1_shapes(inputs, outputs):
    expect_shape(outputs["lse"], (5,), "logsumexp(a) for a of shape (5, 7), dim=-1")
    expect_shape(outputs["dim0"], (3, 4), "logsumexp(cube, dim=0) for a cube of shape (2, 3, 4)")
    expect_shape(outputs["dim1"], (2, 4), "logsumexp(cube, dim=1)")
    expect_shape(outputs["last"], (2, 3), "logsumexp(cube) (dim=-1 by default)")
    expect_close(outputs["float32"], 1.0, "a float32 input gives a float32 result (1 = yes)")


def _q1_bounds(inputs, outputs):
    a, lse = inputs["a"].astype(np.float64), outputs["lse"]
    top = a.max(axis=1)
    if not (np.all(lse >= top - 1e-4) and np.all(lse <= top + math.log(a.shape[1]) + 1e-4)):
        raise CheckFailed("max(a) <= logsumexp(a) <= max(a) + log n should hold row by row",
                          expected=f"between {top} and {top + math.log(a.shape[1])}", actual=lse)


def _q1_equal(inputs, outputs):
    n = inputs["equal"].shape[1]
    expect_close(outputs["equal"], inputs["equal"][:, 0] + math.log(n), "n equal entries v give v + log n",
                 rtol=1e-5, atol=1e-5)


def _q1_shift(inputs, outputs):
    expect_close(outputs["shifted"], outputs["lse"] + float(inputs["shift"]),
                 "logsumexp(a + c) = logsumexp(a) + c for c = 1000", rtol=1e-6, atol=2e-3)


def _q1_extreme(inputs, outputs):
    expected = _float64_logsumexp(inputs["extreme"].astype(np.float64))
    expected = expected.astype(np.float32).astype(np.float64)    # what float32 can hold
    got = outputs["extreme"]
    same_inf = np.isinf(expected) == np.isinf(got)
    with np.errstate(invalid="ignore"):    # inf - inf where both are infinite: compared by equality
        close = np.where(np.isinf(expected), got == expected,
                         np.abs(got - expected) <= 1e-6 * np.abs(expected) + 1e-3)
    if not np.all(same_inf & close):
        raise CheckFailed("rows with entries near +-1e4, +-3e38 and +-inf (float32): finite where the "
                          "sum is, -inf for an all -inf row, +inf with a +inf entry, never nan",
                          expected=expected, actual=got)


def _q1_dims(inputs, outputs):
    cube = inputs["cube"].astype(np.float64)
    for dim, key in ((0, "dim0"), (1, "dim1"), (-1, "last")):
        expect_close(outputs[key], _float64_logsumexp(cube, axis=dim), f"logsumexp(cube, dim={dim})",
                     rtol=1e-5, atol=1e-5)


def _q1_gradient(inputs, outputs):
    gradient = (outputs["plus"] - outputs["minus"]).T / (2 * FD_STEP_Q1)    # (B, n)
    expect_close(gradient.sum(axis=1), np.ones(len(gradient)),
                 "the gradient (central differences of your values) is a distribution: sums to 1",
                 rtol=0, atol=2e-2)
    if np.any(gradient < -2e-2):
        raise CheckFailed("every partial derivative of logsumexp is >= 0", expected=">= 0", actual=gradient)


Q1 = Question(
    id="q1", functions=("logsumexp",), make_inputs=q1_inputs, probe=q1_probe,
    checks=(Check("shapes and dtype for dim = 0, 1, -1", _q1_shapes),
            Check("max <= logsumexp <= max + log n", _q1_bounds),
            Check("n equal entries: v + log n", _q1_equal),
            Check("shifting every entry by c shifts the result by c", _q1_shift),
            Check("stable at extreme float32 inputs (+-1e4, +-3e38, +-inf)", _q1_extreme),
            Check("reduces over the dim it is given", _q1_dims),
            Check("gradient is a probability vector (finite differences)", _q1_gradient)))


# ---- q2: e_step(x, log_pi, mu, log_var) -> (log_resp (B, K), log_px (B,)) -----------------------

def q2_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    logits = torch.randn(3, generator=generator)
    log_pi = logits - torch.log(torch.exp(logits).sum())                     # (K,), normalised
    mu = 2.0 * torch.randn(3, 2, generator=generator)                        # (K, D)
    log_var = 0.3 * torch.randn(3, 2, generator=generator) - 0.5             # (K, D)
    grid, cell_area = grid_2d(half_width=9.0, n=181)
    return {"x": torch.randn(7, 2, generator=generator).numpy(), "log_pi": log_pi.numpy(),
            "mu": mu.numpy(), "log_var": log_var.numpy(), "x_far": np.array([[1e3, 1e3], [-1e3, 5.0]]),
            "grid": grid, "cell_area": np.array(cell_area), "permutation": np.array([2, 0, 1])}


def q2_probe(namespace, inputs):
    e_step = student_function(namespace, "e_step")
    x, log_pi = as_tensor(inputs["x"]), as_tensor(inputs["log_pi"])
    mu, log_var = as_tensor(inputs["mu"]), as_tensor(inputs["log_var"])
    perm = torch.as_tensor(inputs["permutation"], dtype=torch.long)
    out = {}
    with torch.no_grad(), own_logsumexp():
        calls = {"": (x, log_pi, mu, log_var), "permuted_": (x, log_pi[perm], mu[perm], log_var[perm]),
                 "far_": (as_tensor(inputs["x_far"]), log_pi, mu, log_var),
                 "one_": (mu[:1], torch.zeros(1), mu[:1], log_var[:1]),
                 "grid_": (as_tensor(inputs["grid"]), log_pi, mu, log_var)}
        for prefix, args in calls.items():
            result = e_step(*args)
            if not isinstance(result, tuple) or len(result) != 2:
                raise TypeError("e_step should return a tuple (log_resp, log_px)")
            out[prefix + "log_resp"], out[prefix + "log_px"] = result
    return {key: as_array(value, key) for key, value in out.items()}


def _q2_shapes(inputs, outputs):
    expect_shape(outputs["log_resp"], (7, 3), "log_resp for x (7, 2) and K = 3")
    expect_shape(outputs["log_px"], (7,), "log_px for x (7, 2)")


def _q2_responsibilities(inputs, outputs):
    for prefix, what in (("", "x near the components"), ("far_", "x = (1000, 1000) and (-1000, 5)")):
        expect_finite(outputs[prefix + "log_resp"], f"log_resp at {what}")
        expect_close(np.exp(outputs[prefix + "log_resp"]).sum(axis=1), np.ones(len(outputs[prefix + "log_resp"])),
                     f"responsibilities sum to 1 over the components, at {what}", rtol=0, atol=1e-4)


def _q2_integrates(inputs, outputs):
    total = np.exp(outputs["grid_log_px"]).sum() * inputs["cell_area"]
    expect_close(total, 1.0, "exp(log_px) summed over a fine 2D grid (x cell area)", atol=1e-2)


def _q2_far(inputs, outputs):
    expect_finite(outputs["far_log_px"], "log_px far from every component, where exp() underflows")


def _q2_one_component(inputs, outputs):
    expect_close(outputs["one_log_px"][0], gaussian_at_mean(inputs["log_var"][0]),
                 "with K = 1, log p at the mean is -D/2 log(2 pi) - 1/2 sum(log_var)")
    expect_close(outputs["one_log_resp"], np.zeros((1, 1)), "with K = 1 the responsibility is 1 (log 0)")


def _q2_permutation(inputs, outputs):
    perm = inputs["permutation"].astype(int)
    expect_close(outputs["permuted_log_px"], outputs["log_px"], "reordering components keeps log_px")
    expect_close(outputs["permuted_log_resp"], outputs["log_resp"][:, perm],
                 "reordering components reorders the responsibilities' columns")


Q2 = Question(
    id="q2", functions=("e_step",), make_inputs=q2_inputs, probe=q2_probe,
    checks=(Check("returns (log_resp (B, K), log_px (B,))", _q2_shapes),
            Check("responsibilities sum to 1, also far away", _q2_responsibilities),
            Check("p(x) integrates to 1 on a 2D grid", _q2_integrates),
            Check("log_px finite far from every component", _q2_far),
            Check("K = 1: a single Gaussian, responsibility 1", _q2_one_component),
            Check("equivariant to reordering components", _q2_permutation)))


# ---- q3: m_step(x, log_resp, min_var) -> (log_pi, mu, log_var) ----------------------------------

MIN_VAR = 1e-3


def q3_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    x = torch.randn(60, 2, generator=generator) + torch.tensor([1.0, -2.0])          # (N, D)
    labels = torch.arange(60) % 3                                                     # (N,)
    one_hot = torch.full((60, 3), -float("inf"))
    one_hot[torch.arange(60), labels] = 0.0
    soft = torch.log_softmax(2.0 * torch.randn(60, 3, generator=generator), dim=1)   # (N, K)
    single_labels = torch.where(labels == 2, 0, labels)
    single_labels[0] = 2                                            # component 2 holds x_0 alone
    single = torch.full((60, 3), -float("inf"))
    single[torch.arange(60), single_labels] = 0.0
    empty = soft.clone()
    empty[:, 1] = -float("inf")                                     # component 1 holds nothing
    empty = empty - torch.logsumexp(empty, dim=1, keepdim=True)
    return {"x": x.numpy(), "labels": labels.numpy(), "one_hot": one_hot.numpy(), "soft": soft.numpy(),
            "single": single.numpy(), "empty": empty.numpy(), "min_var": np.array(MIN_VAR),
            "permutation": np.array([1, 2, 0])}


def q3_probe(namespace, inputs):
    m_step = student_function(namespace, "m_step")
    x, min_var = as_tensor(inputs["x"]), float(inputs["min_var"])
    perm = torch.as_tensor(inputs["permutation"], dtype=torch.long)
    out = {}
    with torch.no_grad(), own_logsumexp():
        for name in ("one_hot", "soft", "single", "empty"):
            result = m_step(x, as_tensor(inputs[name]), min_var=min_var)
            if not isinstance(result, tuple) or len(result) != 3:
                raise TypeError("m_step should return a tuple (log_pi, mu, log_var)")
            out.update({f"{name}_{key}": value for key, value in zip(("log_pi", "mu", "log_var"), result)})
        result = m_step(x, as_tensor(inputs["soft"])[:, perm], min_var=min_var)
        out.update({f"permuted_{key}": value for key, value in zip(("log_pi", "mu", "log_var"), result)})
        result = m_step(x, torch.zeros(len(x), 1), min_var=min_var)
        out.update({f"k1_{key}": value for key, value in zip(("log_pi", "mu", "log_var"), result)})
    return {key: as_array(value, key) for key, value in out.items()}


def _q3_shapes(inputs, outputs):
    for name in ("one_hot", "soft"):
        expect_shape(outputs[f"{name}_log_pi"], (3,), "log_pi for K = 3")
        expect_shape(outputs[f"{name}_mu"], (3, 2), "mu for K = 3, D = 2")
        expect_shape(outputs[f"{name}_log_var"], (3, 2), "log_var for K = 3, D = 2")


def _q3_one_component(inputs, outputs):
    x = inputs["x"]
    expect_close(outputs["k1_log_pi"], np.zeros(1), "K = 1: log pi = log 1")
    expect_close(outputs["k1_mu"], x.mean(0, keepdims=True), "K = 1: mu is the sample mean", rtol=1e-4, atol=1e-4)
    expect_close(outputs["k1_log_var"], np.log(x.var(0, keepdims=True)),
                 "K = 1: log_var is the log of the (biased, 1/N) sample variance", rtol=1e-4, atol=1e-4)


def _q3_hard_assignments(inputs, outputs):
    x, labels = inputs["x"], inputs["labels"].astype(int)
    for k in range(3):
        members = x[labels == k]
        expect_close(outputs["one_hot_mu"][k], members.mean(0), f"one-hot responsibilities: mu_{k} is "
                     "the mean of component k's points", rtol=1e-4, atol=1e-4)
        expect_close(outputs["one_hot_log_var"][k], np.log(members.var(0)),
                     f"one-hot responsibilities: log_var_{k} from component k's points", rtol=1e-4, atol=1e-4)
    expect_close(outputs["one_hot_log_pi"], np.log(np.bincount(labels) / len(labels)),
                 "one-hot responsibilities: pi_k is the share of points in component k", atol=1e-5)


def _q3_normalised(inputs, outputs):
    for name in ("soft", "empty"):
        expect_close(_float64_logsumexp(outputs[f"{name}_log_pi"]), 0.0,
                     f"log_pi is normalised (logsumexp = 0), {name} responsibilities", atol=1e-5)


def _q3_floor(inputs, outputs):
    expect_close(outputs["single_log_var"][2], np.full(2, math.log(float(inputs["min_var"]))),
                 "a component holding one point has variance min_var (the floor), not 0", rtol=1e-5, atol=1e-5)
    for name in ("one_hot", "soft", "single", "empty"):
        if np.any(outputs[f"{name}_log_var"] < math.log(float(inputs["min_var"])) - 1e-5):
            raise CheckFailed("no variance below min_var", expected=f">= log({float(inputs['min_var'])})",
                              actual=outputs[f"{name}_log_var"])


def _q3_empty(inputs, outputs):
    x = inputs["x"]
    for key in ("log_pi", "mu", "log_var"):
        expect_finite(outputs[f"empty_{key}"][1] if key != "log_pi" else np.exp(outputs["empty_log_pi"]),
                      f"{key} of a component with no responsibility at all")
    expect_close(outputs["empty_mu"][1], x.mean(0), "an empty component restarts at the data mean", atol=1e-4)
    expect_close(outputs["empty_log_var"][1], np.log(x.var(0)), "an empty component restarts with the "
                 "data variance", atol=1e-4)


def _q3_permutation(inputs, outputs):
    perm = inputs["permutation"].astype(int)
    for key in ("log_pi", "mu", "log_var"):
        expect_close(outputs[f"permuted_{key}"], outputs[f"soft_{key}"][perm],
                     f"reordering responsibility columns reorders {key}", rtol=1e-4, atol=1e-4)


Q3 = Question(
    id="q3", functions=("m_step",), make_inputs=q3_inputs, probe=q3_probe,
    checks=(Check("returns (log_pi (K,), mu (K, D), log_var (K, D))", _q3_shapes),
            Check("K = 1: sample mean and variance", _q3_one_component),
            Check("one-hot responsibilities: per-component statistics", _q3_hard_assignments),
            Check("weights normalised", _q3_normalised),
            Check("variance floor min_var", _q3_floor),
            Check("an empty component restarts at the data's mean and variance", _q3_empty),
            Check("equivariant to reordering components", _q3_permutation)))


# ---- q4: fit_em(x, n_components, n_iters, seed) -> (log_pi, mu, log_var, log_likelihoods) ------

def two_rings(n: int, generator: torch.Generator, radii=(1.0, 2.5), std: float = 0.1) -> torch.Tensor:
    """(n, 2) points on two concentric rings with Gaussian noise; the outer ring has more."""
    outer = torch.rand(n, generator=generator) < 0.6
    radius = torch.where(outer, torch.tensor(radii[1]), torch.tensor(radii[0]))
    angle = 2 * math.pi * torch.rand(n, generator=generator)
    points = radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return points + std * torch.randn(n, 2, generator=generator)


def q4_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    return {"x_train": two_rings(2000, generator).numpy(), "x_test": two_rings(2000, generator).numpy(),
            "n_components": np.array(16), "n_iters": np.array(60), "seeds": np.array([0, 1, 2])}


def q4_probe(namespace, inputs):
    fit_em = student_function(namespace, "fit_em")
    e_step = student_function(namespace, "e_step")
    x_train, x_test = as_tensor(inputs["x_train"]), as_tensor(inputs["x_test"])
    k, n_iters = int(inputs["n_components"]), int(inputs["n_iters"])
    out = {}
    with own_logsumexp():
        for i, seed in enumerate(inputs["seeds"]):
            start = time.perf_counter()
            result = fit_em(x_train, k, n_iters=n_iters, seed=int(seed))
            out[f"seconds_{i}"] = torch.tensor(time.perf_counter() - start)
            if not isinstance(result, tuple) or len(result) != 4:
                raise TypeError("fit_em should return a tuple (log_pi, mu, log_var, log_likelihoods)")
            log_pi, mu, log_var, trace = (torch.as_tensor(value).detach() for value in result)
            with torch.no_grad():
                _, test_log_px = e_step(x_test, log_pi, mu, log_var)
            out.update({f"log_pi_{i}": log_pi, f"mu_{i}": mu, f"log_var_{i}": log_var,
                        f"trace_{i}": trace, f"test_log_px_{i}": test_log_px})
    return {key: as_array(value, key) for key, value in out.items()}


def seeds_of(inputs) -> range:
    return range(len(inputs["seeds"]))


def _q4_shapes(inputs, outputs):
    k, d, n_iters = int(inputs["n_components"]), inputs["x_train"].shape[1], int(inputs["n_iters"])
    for i in seeds_of(inputs):
        expect_shape(outputs[f"log_pi_{i}"], (k,), "log_pi")
        expect_shape(outputs[f"mu_{i}"], (k, d), "mu")
        expect_shape(outputs[f"log_var_{i}"], (k, d), "log_var")
        expect_shape(outputs[f"trace_{i}"], (n_iters,), "log_likelihoods (one per iteration)")
        for key in ("log_pi", "mu", "log_var", "trace"):
            expect_finite(outputs[f"{key}_{i}"] if key != "log_pi" else np.exp(outputs[f"log_pi_{i}"]), key)


def _q4_monotone(inputs, outputs):
    for i in seeds_of(inputs):
        trace = outputs[f"trace_{i}"]
        drops = np.diff(trace)
        if np.any(drops < -1e-4):
            j = int(np.argmin(drops))
            raise CheckFailed(f"EM never lowers the training log-likelihood (seed {int(inputs['seeds'][i])}): "
                              f"it fell at iteration {j + 1}", expected=">= the previous value",
                              actual=f"{trace[j]:.6f} -> {trace[j + 1]:.6f}")


def _q4_outcome(inputs, outputs):
    for i in seeds_of(inputs):
        nll = -float(np.mean(outputs[f"test_log_px_{i}"]))
        expect_less(nll, EM_TEST_NLL_TARGET, f"held-out NLL of the two rings after {int(inputs['n_iters'])} "
                    f"EM iterations, K = {int(inputs['n_components'])}, seed {int(inputs['seeds'][i])} (nats)")


def _q4_budget(inputs, outputs):
    for i in seeds_of(inputs):
        expect_less(outputs[f"seconds_{i}"], EM_SECONDS_BUDGET, "seconds for one fit_em call")


Q4 = Question(
    id="q4", functions=("fit_em",), make_inputs=q4_inputs, probe=q4_probe,
    checks=(Check("returns (log_pi, mu, log_var, log_likelihoods) of the right shapes", _q4_shapes),
            Check("the training log-likelihood never decreases", _q4_monotone),
            Check(f"held-out NLL <= {EM_TEST_NLL_TARGET} nats for every seed", _q4_outcome),
            Check(f"each fit within {EM_SECONDS_BUDGET:g} s", _q4_budget)))


# ---- q5: histogram_log_prob(x_train, x, n_levels, alpha) -> (B,) -------------------------------

def q5_inputs(generator: torch.Generator) -> dict[str, np.ndarray]:
    n_levels = 12
    x_train = torch.randint(0, 5, (300, 2), generator=generator)            # (N, D), cells 0..4 only
    x_train[:40] = torch.tensor([7, 3])                                       # one crowded cell
    axis = np.arange(n_levels)
    every_cell = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)   # (L^2, D)
    return {"x_train": x_train.numpy(), "every_cell": every_cell, "n_levels": np.array(n_levels),
            "alpha": np.array(0.5), "order": torch.randperm(300, generator=generator).numpy()}


def q5_probe(namespace, inputs):
    histogram = student_function(namespace, "histogram_log_prob")
    x_train = torch.as_tensor(inputs["x_train"], dtype=torch.long)
    cells = torch.as_tensor(inputs["every_cell"], dtype=torch.long)
    n_levels, alpha = int(inputs["n_levels"]), float(inputs["alpha"])
    order = torch.as_tensor(inputs["order"], dtype=torch.long)
    with torch.no_grad():
        out = {"every_cell": histogram(x_train, cells, n_levels, alpha),
               "shuffled": histogram(x_train[order], cells, n_levels, alpha),
               "no_smoothing": histogram(x_train, cells, n_levels, 0.0),
               "huge_alpha": histogram(x_train, cells, n_levels, 1e9),
               "three_dims": histogram(torch.zeros(4, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), 2, 0.0)}
    return {key: as_array(value, key) for key, value in out.items()}


def _q5_shape(inputs, outputs):
    expect_shape(outputs["every_cell"], (len(inputs["every_cell"]),), "log P for every cell of the grid")


def _q5_normalised(inputs, outputs):
    expect_close(_float64_logsumexp(outputs["every_cell"]), 0.0, "P summed over all L^D cells is 1", atol=1e-5)
    unseen = outputs["no_smoothing"][np.isinf(outputs["no_smoothing"])]
    expect_close(_float64_logsumexp(outputs["no_smoothing"]), 0.0, "alpha = 0: P still sums to 1", atol=1e-5)
    if unseen.size == 0 or np.any(unseen > 0):
        raise CheckFailed("alpha = 0: a cell no training point fell in has P = 0 (log P = -inf)",
                          expected="-inf for unseen cells", actual=outputs["no_smoothing"])


def _q5_smoothing(inputs, outputs):
    expect_finite(outputs["every_cell"], "alpha > 0: log P of every cell, seen or not")
    n_cells = len(inputs["every_cell"])
    expect_close(outputs["huge_alpha"], np.full(n_cells, -math.log(n_cells)),
                 "alpha -> infinity: the uniform distribution, log P = -D log L", rtol=1e-5, atol=1e-5)


def _q5_crowded(inputs, outputs):
    n = len(inputs["x_train"])
    crowded = int(7 * int(inputs["n_levels"]) + 3)      # cell (7, 3), which holds 40 points
    expect_close(outputs["no_smoothing"][crowded], math.log(40 / n), "alpha = 0: P(cell) = count / N")


def _q5_order(inputs, outputs):
    expect_close(outputs["shuffled"], outputs["every_cell"], "shuffling the training points changes nothing")


def _q5_dims(inputs, outputs):
    expect_close(outputs["three_dims"], np.zeros(1), "D = 3, L = 2: four points in one cell give P = 1")


Q5 = Question(
    id="q5", functions=("histogram_log_prob",), make_inputs=q5_inputs, probe=q5_probe,
    checks=(Check("returns (B,)", _q5_shape),
            Check("normalised over all L^D cells, with and without smoothing", _q5_normalised),
            Check("smoothing: finite everywhere; uniform as alpha grows", _q5_smoothing),
            Check("no smoothing: count / N", _q5_crowded),
            Check("invariant to the order of the training points", _q5_order),
            Check("any number of dimensions", _q5_dims)))


QUESTIONS = (Q1, Q2, Q3, Q4, Q5)
