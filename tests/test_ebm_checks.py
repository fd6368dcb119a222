"""Exercise 05's checks: the reference solution passes every public and hidden check, each typical
mistake fails the check meant for it (an unadjusted or wrongly adjusted Langevin step, a loss that
differentiates through its sampler, forgets log M or leaves log space, a quadrature without its
tail or grid term or its half weights, a FIFO or off-by-one reservoir, an unseeded sampler, an
energy trained at too large a noise or too briefly), and q5's threshold keeps its margin.

q5's threshold comes from ten trainings (seeds 0-4 on the public and the hidden banana, recorded in
instructor/hidden/05_ebm.py). Every run of this file keeps the margin over the reference's public
graded run (seed 0; the hidden one is graded by tests/test_grading_exercises.py); the ten are
re-measured only with GMCOURSE_MEASURE=1 (about 15 s of one core), so that this file stays fast.
"""
import math
import os

import numpy as np
import pytest
import torch

from exercise_helpers import cached_solution_namespace, failed, hidden_checks, one_thread  # noqa: F401 (fixture)
from gmcourse.checks import ebm
from gmcourse.grading import Checker

HIDDEN = hidden_checks("05_ebm")
HIDDEN_Q5 = {q.id: q for q in HIDDEN.QUESTIONS}["q5"]
Q5_MARGIN = 0.01   # the reference's KL must stay this far below ebm.DSM_KL_MAX


@pytest.fixture(scope="module")
def solution():
    return cached_solution_namespace("05_ebm")


def answer(solution, **answers):
    return {**solution, **answers}


def all_failures(namespace, qid):
    return failed(ebm, namespace, qid) + failed(HIDDEN, namespace, qid)


@pytest.mark.parametrize("qid", ["q1", "q2", "q3", "q4"])
def test_reference_passes_public_and_hidden_checks(solution, qid):
    assert failed(ebm, solution, qid) == []
    assert failed(HIDDEN, solution, qid) == []


def test_missing_answer_prints_fail_and_does_not_raise(capsys):
    def mala_step(energy, x, step_size, noise, log_u):
        raise NotImplementedError("q1: write your answer here")
    Checker(ebm, {"mala_step": mala_step})("q1")
    out = capsys.readouterr().out
    assert out.startswith("q1: FAIL") and "not answered yet" in out


# ---- q1 -----------------------------------------------------------------------------------------

def langevin_variant(solution, variant):
    gradient = solution["energy_gradient"]

    def mala_step(energy, x, step_size, noise, log_u):
        e_x, g_x = gradient(energy, x)
        scale = math.sqrt(step_size) if variant == "noise_scale" else math.sqrt(2 * step_size)
        proposal = x - step_size * g_x + scale * noise
        if variant == "unadjusted":
            return proposal, torch.ones(len(x), dtype=torch.bool)
        e_p, g_p = gradient(energy, proposal)
        forward = -((proposal - x + step_size * g_x) ** 2).sum(-1) / (4 * step_size)
        reverse = -((x - proposal + step_size * g_p) ** 2).sum(-1) / (4 * step_size)
        log_alpha = {"symmetric": e_x - e_p, "inverted": e_x - e_p + forward - reverse,
                     "noise_scale": e_x - e_p + reverse - forward}[variant]
        accepted = log_u < log_alpha.clamp(max=0)
        return torch.where(accepted[:, None], proposal, x), accepted
    return mala_step


@pytest.mark.parametrize("variant, check", [
    ("unadjusted", "log u = +inf rejects every move"),
    ("unadjusted", "chains started at N(mu, sigma^2) stay there"),
    ("symmetric", "chains started at N(mu, sigma^2) stay there"),
    ("symmetric", "acceptance against eq. (3)"),
    ("inverted", "chains started at N(mu, sigma^2) stay there"),
    ("noise_scale", "log u = -inf accepts the Langevin proposal of eq. (1)"),
])
def test_q1_mistakes_fail_their_check(solution, variant, check):
    assert check in all_failures(answer(solution, mala_step=langevin_variant(solution, variant)), "q1")


# ---- q2 -----------------------------------------------------------------------------------------

def loss_variant(variant):
    def weighted_cd_loss(energy, x_pos, x_neg, log_q_neg):
        if variant != "through_sampler":
            x_neg = x_neg.detach()
        log_w = -energy(x_neg) - log_q_neg
        if variant == "sum":
            return energy(x_pos).mean() + torch.logsumexp(log_w, 0)
        if variant == "naive":
            return energy(x_pos).mean() + torch.log(torch.exp(log_w).mean())
        if variant == "lecture":
            return energy(x_pos).mean() - energy(x_neg).mean()
        if variant == "detached_weights":
            return energy(x_pos).mean() - (torch.softmax(log_w, 0).detach() * energy(x_neg)).sum()
        return energy(x_pos).mean() + torch.logsumexp(log_w, 0) - math.log(len(x_neg))
    return weighted_cd_loss


@pytest.mark.parametrize("variant, check", [
    ("through_sampler", "the gradient is that of the value, negatives detached"),
    ("sum", "a constant energy: log mean 1/q, in log space"),
    ("naive", "a constant energy: log mean 1/q, in log space"),
    ("lecture", "the value estimates the NLL"),
    ("detached_weights", "the gradient is that of the value, negatives detached"),
])
def test_q2_mistakes_fail_their_check(solution, variant, check):
    assert check in all_failures(answer(solution, weighted_cd_loss=loss_variant(variant)), "q2")


# ---- q3 -----------------------------------------------------------------------------------------

def quadrature_variant(solution, variant):
    reference = solution["log_z_trapezoid"]

    def log_z_trapezoid(energy, lim, n, c0, c2):
        if variant == "no_tail":
            return reference(energy, lim, n, c0, c2=1e6)                       # a tail bound of ~0
        if variant == "midpoint":
            axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
            h = 2 * lim / (n - 1)
            log_f = -energy(torch.cartesian_prod(axis, axis))
            return (torch.logsumexp(log_f, 0) + 2 * math.log(h)).item(), reference(energy, lim, n, c0, c2)[1]
        if variant == "linear_space":
            axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
            w = torch.ones(n, dtype=torch.float64)
            w[[0, -1]] = 0.5
            f = torch.exp(-energy(torch.cartesian_prod(axis, axis))).reshape(n, n) * w[:, None] * w[None, :]
            return torch.log(f.sum() * (2 * lim / (n - 1)) ** 2), reference(energy, lim, n, c0, c2)[1]
        log_z, bound = reference(energy, lim, n, c0, c2)
        outside = math.erfc(lim * math.sqrt(c2))                                 # "no_grid_term": tail only
        return log_z, (math.log1p(math.exp(-c0 + math.log(math.pi / c2 * outside * (2 - outside)) - log_z))
                       if outside > 0 else 0.0)
    return log_z_trapezoid


@pytest.mark.parametrize("variant, check", [
    ("no_tail", "the bound contains the true error"),
    ("no_grid_term", "the bound contains the true error"),
    ("midpoint", "log Z of Gaussians, and the integral over a small box"),
    ("linear_space", "energies shifted by +-800: log space"),
])
def test_q3_mistakes_fail_their_check(solution, variant, check):
    assert check in all_failures(answer(solution, log_z_trapezoid=quadrature_variant(solution, variant)), "q3")


# ---- q4 -----------------------------------------------------------------------------------------

def buffer_variant(solution, variant):
    reference = solution["ReservoirBuffer"]

    class Buffer(reference):
        def push(self, x):
            if variant not in ("fifo", "off_by_one"):
                return super().push(x)
            for row in x.detach():
                self.n_seen += 1
                if self.n_seen <= self.capacity:
                    self.data[self.n_seen - 1] = row
                elif variant == "fifo":
                    self.data = torch.cat([self.data[1:], row[None]])
                else:   # the slot among i - 1 choices: the first point after the buffer fills always enters
                    slot = int(torch.randint(0, self.n_seen - 1, (1,), generator=self.generator))
                    if slot < self.capacity:
                        self.data[slot] = row

        def sample(self, n, reinit_prob):
            if variant == "unseeded":
                self.generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,))))
            x, from_noise = super().sample(n, reinit_prob)
            if variant == "gaussian_noise":
                x = torch.where(from_noise[:, None], 0.5 * torch.randn(x.shape, generator=self.generator), x)
            return x, from_noise
    return Buffer


@pytest.mark.parametrize("variant, check", [
    ("fifo", "a uniform sample of everything pushed (reservoir)"),
    ("off_by_one", "a uniform sample of everything pushed (reservoir)"),
    ("unseeded", "reproducible from the generator"),
    ("gaussian_noise", "sample: a share reinit_prob of uniform noise, the rest uniformly from the buffer"),
])
def test_q4_mistakes_fail_their_check(solution, variant, check):
    assert check in failed(ebm, answer(solution, ReservoirBuffer=buffer_variant(solution, variant)), "q4")


# ---- q5: the outcome, its margin, and near misses ------------------------------------------------

def kl_of(inputs, outputs):
    grid, weights = ebm.kl_grid()
    return ebm.grid_kl(ebm.banana_log_density(grid, float(inputs["angle"])), -outputs["energy_grid"], weights)


def test_q5_reference_passes_with_margin(solution):
    """The reference trained once on the public banana (seed 0), in this process; its hidden run is
    graded by tests/test_grading_exercises.py (full marks), the ten runs by the test below."""
    inputs = ebm.Q5.inputs()
    outputs = ebm.q5_probe(solution, inputs)
    for check in ebm.Q5.checks:
        check.run(inputs, outputs)
    assert kl_of(inputs, outputs) <= ebm.DSM_KL_MAX - Q5_MARGIN, kl_of(inputs, outputs)


def train_variant(solution, sigma, n_steps):
    def train_energy_dsm(x_train, seed=0):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        energy = solution["EnergyNet"]()
        optimizer = torch.optim.Adam(energy.parameters(), lr=5e-3)
        for _ in range(n_steps):
            batch = x_train[torch.randint(0, len(x_train), (256,), generator=generator)]
            loss = solution["dsm_loss"](energy, batch, sigma, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return energy
    return train_energy_dsm


@pytest.mark.parametrize("sigma, n_steps", [(0.5, 250), (0.1, 100)])
def test_q5_near_misses_stay_above_the_target(solution, sigma, n_steps):
    """Learning the blurred density p_sigma at sigma = 0.5, or stopping after 100 steps, misses."""
    fails = failed(ebm, answer(solution, train_energy_dsm=train_variant(solution, sigma, n_steps)), "q5")
    assert f"KL to the banana below {ebm.DSM_KL_MAX}" in fails


@pytest.mark.skipif(not os.environ.get("GMCOURSE_MEASURE"), reason="re-measures q5's ten reference runs "
                    "(about 15 s of one core); set GMCOURSE_MEASURE=1")
def test_q5_target_keeps_its_margin_over_the_reference_spread(solution):
    """Seeds 0-4 on the public and the hidden banana: the worst stays at least 0.01 nats below the
    target (instructor/hidden/05_ebm.py records the measurement the target was set from)."""
    kls = []
    for question in (ebm.Q5, HIDDEN_Q5):
        inputs = question.inputs()
        for seed in range(5):
            inputs["seed"] = np.array(seed)
            kls.append(kl_of(inputs, ebm.q5_probe(solution, inputs)))
    assert max(kls) + 0.01 <= ebm.DSM_KL_MAX, np.round(kls, 4)
