"""Exercise 06's checks: the reference solution passes every public and hidden check, each typical
mistake fails the check meant for it (an unclipped or shifted schedule, eq. (1) with a variance for
a standard deviation, loss weights inverted or summed over coordinates, a posterior with its weights
swapped or DDPM's beta for its variance, noise on the last step, a DDIM sigma without its first
factor or a direction that ignores it, a sigma computed at eta = 0, two network calls for guidance,
a sign or a null label wrong, a velocity field trained too briefly or blind to time), and q6's
threshold keeps its margin.

q6's threshold comes from ten trainings (seeds 0-4 on the public and the hidden data, recorded in
instructor/hidden/06_diffusion.py). Every run of this file keeps the margin over the reference's
public graded run (seed 0; the hidden one is graded by tests/test_grading_exercises.py); the ten are
re-measured only with GMCOURSE_MEASURE=1 (about a minute of one core), so that this file stays fast.
"""
import math
import os

import numpy as np
import pytest
import torch

from exercise_helpers import cached_solution_namespace, failed, hidden_checks, one_thread  # noqa: F401 (fixture)
from gmcourse.checks import diffusion
from gmcourse.grading import Checker
from gmcourse.toy import EightGaussians

HIDDEN = hidden_checks("06_diffusion")
HIDDEN_Q6 = {q.id: q for q in HIDDEN.QUESTIONS}["q6"]
Q6_MARGIN = 0.02   # the reference's share on a mode must stay this far above diffusion.ON_MODE_MIN


@pytest.fixture(scope="module")
def solution():
    return cached_solution_namespace("06_diffusion")


def answer(solution, **answers):
    return {**solution, **answers}


def all_failures(namespace, qid):
    return failed(diffusion, namespace, qid) + failed(HIDDEN, namespace, qid)


@pytest.mark.parametrize("qid", ["q1", "q2", "q3", "q4", "q5"])
def test_reference_passes_public_and_hidden_checks(solution, qid):
    assert failed(diffusion, solution, qid) == []
    assert failed(HIDDEN, solution, qid) == []


def test_missing_answer_prints_fail_and_does_not_raise(capsys):
    def ddim_update(x_t, eps_hat, alpha_bar_t, alpha_bar_prev, eta, noise):
        raise NotImplementedError("q4: write your answer here")
    Checker(diffusion, {"ddim_update": ddim_update})("q4")
    out = capsys.readouterr().out
    assert out.startswith("q4: FAIL") and "not answered yet" in out


def test_the_checks_data_has_the_law_of_the_toy_eight_gaussians():
    """q6 draws its own data (so that the checks do not move with gmcourse.toy); same centres and std."""
    toy = EightGaussians()
    assert np.allclose(diffusion.mode_centres(0.0), toy.mu.numpy(), atol=1e-6)
    assert diffusion.STD == toy.std
    x = diffusion.eight_gaussians_sample(20_000, torch.Generator().manual_seed(0)).double()
    assert abs(toy.log_prob(x).mean().item() - toy.log_prob(toy.sample(20_000, torch.Generator().manual_seed(1))
                                                            .double()).mean().item()) < 0.05


# ---- q1 -----------------------------------------------------------------------------------------

def schedule_variant(variant):
    def cosine_alpha_bars(n_steps, s=0.008, max_beta=0.999):
        u = torch.arange(n_steps + 1, dtype=torch.float64) / n_steps
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        if variant == "unclipped":
            return f[1:] / f[0]
        if variant == "shifted":             # alpha_bar_t = f((t - 1) / T) / f(0): starts at 1
            return torch.cumprod(1 - (1 - f[1:] / f[:-1]).clamp(max=max_beta), 0) / (1 - (1 - f[1] / f[0]))
        return torch.cumprod(1 - (1 - f[1:] / f[:-1]).clamp(max=max_beta), 0)
    return cosine_alpha_bars


def noised_variant(variant):
    def noised(x0, alpha_bar, noise):
        a = torch.as_tensor(alpha_bar, dtype=x0.dtype).reshape(-1, 1)
        if variant == "variance_for_std":
            return a.sqrt() * x0 + (1 - a) * noise
        return a * x0 + (1 - a).sqrt() * noise   # "no_sqrt_on_mean"
    return noised


@pytest.mark.parametrize("variant, check", [
    ("unclipped", "alpha_bars: eq. (3), betas clipped at max_beta"),
    ("shifted", "alpha_bars: one per step, in (0, 1), decreasing"),
])
def test_q1_schedule_mistakes_fail_their_check(solution, variant, check):
    assert check in all_failures(answer(solution, cosine_alpha_bars=schedule_variant(variant)), "q1")


@pytest.mark.parametrize("variant, check", [
    ("variance_for_std", "noised: moments of q(x_t | x_0)"),
    ("no_sqrt_on_mean", "noised with zero noise is the mean of eq. (1)"),
])
def test_q1_noised_mistakes_fail_their_check(solution, variant, check):
    assert check in failed(diffusion, answer(solution, noised=noised_variant(variant)), "q1")


# ---- q2 -----------------------------------------------------------------------------------------

def loss_variant(solution, variant):
    noised = solution["noised"]

    def eps_loss(eps_model, x0, t, alpha_bars, noise, space="eps"):
        a = alpha_bars.to(x0)[t]
        x_in = x0 if variant == "model_sees_x0" else noised(x0, a, noise)
        eps_hat = eps_model(x_in, t)
        a = a[:, None]
        weights = {"eps": torch.ones_like(a), "x0": (1 - a) / a, "v": 1 / a}
        if variant == "snr_for_inverse":
            weights.update(x0=a / (1 - a), v=1 + a / (1 - a))
        if variant == "x0_only_inverted":
            weights["x0"] = a / (1 - a)
        squared = weights[space] * (eps_hat - noise) ** 2
        return squared.sum(1).mean() if variant == "sum_over_coordinates" else squared.mean()
    return eps_loss


@pytest.mark.parametrize("variant, check", [
    ("snr_for_inverse", "the weights of eq. (4b)"),
    ("x0_only_inverted", "a constant error: its cost in each space"),
    ("sum_over_coordinates", "a constant error: its cost in each space"),
    ("model_sees_x0", "the model sees x_t of eq. (1) and t"),
])
def test_q2_mistakes_fail_their_check(solution, variant, check):
    assert check in all_failures(answer(solution, eps_loss=loss_variant(solution, variant)), "q2")


def test_q2_a_detached_loss_fails(solution):
    reference = solution["eps_loss"]
    detached = lambda *args, **kwargs: reference(*args, **kwargs).detach()  # noqa: E731
    assert "the gradient is that of the value" in failed(diffusion, answer(solution, eps_loss=detached), "q2")


# ---- q3 -----------------------------------------------------------------------------------------

def posterior_variant(variant):
    def ddpm_posterior(x_t, x0, alpha_bar_t, alpha_bar_prev):
        alpha = alpha_bar_t / alpha_bar_prev
        beta = 1 - alpha
        w_x0, w_xt = math.sqrt(alpha_bar_prev) * beta / (1 - alpha_bar_t), math.sqrt(alpha) * (1 - alpha_bar_prev) / (
            1 - alpha_bar_t)
        if variant == "swapped":
            w_x0, w_xt = w_xt, w_x0
        var = beta if variant == "beta_variance" else beta * (1 - alpha_bar_prev) / (1 - alpha_bar_t)
        return w_x0 * x0 + w_xt * x_t, var
    return ddpm_posterior


def update_variant(solution, variant):
    posterior = solution["ddpm_posterior"]

    def ddpm_update(x_t, eps_hat, alpha_bar_t, alpha_bar_prev, noise, variance="posterior"):
        scale = (1 - alpha_bar_t) if variant == "variance_in_x0_hat" else math.sqrt(1 - alpha_bar_t)
        x0_hat = (x_t - scale * eps_hat) / math.sqrt(alpha_bar_t)
        mean, posterior_var = posterior(x_t, x0_hat, alpha_bar_t, alpha_bar_prev)
        if alpha_bar_prev == 1 and variant != "noise_on_last_step":
            return mean
        beta = 1 - alpha_bar_t / alpha_bar_prev
        var = beta if (variance == "beta" or variant == "always_beta") else posterior_var
        if variant == "noise_on_last_step" and alpha_bar_prev == 1:
            var = beta
        return mean + math.sqrt(var) * noise
    return ddpm_update


@pytest.mark.parametrize("variant, check", [
    ("swapped", "the posterior of eq. (5) against simulated pairs"),
    ("beta_variance", "the posterior of eq. (5) against simulated pairs"),
])
def test_q3_posterior_mistakes_fail_their_check(solution, variant, check):
    assert check in failed(diffusion, answer(solution, ddpm_posterior=posterior_variant(variant)), "q3")


@pytest.mark.parametrize("variant, check", [
    ("noise_on_last_step", "alpha_bar_prev = 1: x0, exactly"),
    ("always_beta", "the update's noise: sigma_t for both choices"),
    ("variance_in_x0_hat", "the update's mean with the exact noise"),
    ("variance_in_x0_hat", "a whole chain samples N(m, s^2)"),
])
def test_q3_update_mistakes_fail_their_check(solution, variant, check):
    assert check in failed(diffusion, answer(solution, ddpm_update=update_variant(solution, variant)), "q3")


# ---- q4 -----------------------------------------------------------------------------------------

def ddim_variant(variant):
    def ddim_update(x_t, eps_hat, alpha_bar_t, alpha_bar_prev, eta, noise):
        x0_hat = (x_t - math.sqrt(1 - alpha_bar_t) * eps_hat) / math.sqrt(alpha_bar_t)
        if variant == "sigma_always":
            sigma = eta * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev))
        elif eta == 0:
            sigma = 0.0
        elif variant == "sigma_without_first_factor":
            sigma = eta * math.sqrt(1 - alpha_bar_t / alpha_bar_prev)
        else:
            sigma = eta * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev))
        direction = math.sqrt(1 - alpha_bar_prev) if variant == "direction_ignores_sigma" else math.sqrt(
            max(1 - alpha_bar_prev - sigma**2, 0.0))
        return math.sqrt(alpha_bar_prev) * x0_hat + direction * eps_hat + sigma * noise
    return ddim_update


@pytest.mark.parametrize("variant, check", [
    ("sigma_without_first_factor", "sigma proportional to eta; eta = 1 is DDPM's posterior"),
    ("direction_ignores_sigma", "any eta keeps the marginals of eq. (1)"),
    ("sigma_always", "eta = 0 inverts exactly, run backwards"),
])
def test_q4_mistakes_fail_their_check(solution, variant, check):
    assert check in all_failures(answer(solution, ddim_update=ddim_variant(variant)), "q4")


# ---- q5 -----------------------------------------------------------------------------------------

def guidance_variant(variant):
    def guided_eps(eps_model, x_t, t, cond, null_cond, w):
        null = torch.full_like(cond, 0 if variant == "null_is_zero" else null_cond)
        if variant == "two_calls":
            eps_cond, eps_uncond = eps_model(x_t, t, cond), eps_model(x_t, t, null)
        else:
            eps_cond, eps_uncond = eps_model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, null])).chunk(2)
        w = torch.as_tensor(w, dtype=x_t.dtype)
        w = w.mean() if variant == "one_w" else (w[:, None] if w.dim() else w)
        if variant == "sign":
            return (1 - w) * eps_cond + w * eps_uncond
        return (1 + w) * eps_cond - w * eps_uncond
    return guided_eps


@pytest.mark.parametrize("variant, check", [
    ("two_calls", "one network call of 2B rows"),
    ("sign", "w = 0 conditional, w = -1 unconditional"),
    ("one_w", "affine in w, w per row"),
    ("null_is_zero", "against eq. (9), another null label"),
])
def test_q5_mistakes_fail_their_check(solution, variant, check):
    assert check in all_failures(answer(solution, guided_eps=guidance_variant(variant)), "q5")


# ---- q6: the outcome, its margin, and near misses ------------------------------------------------

def on_mode_share(inputs, outputs):
    return diffusion.mode_scores(outputs["samples"], float(inputs["angle"]))


def test_q6_reference_passes_with_margin(solution):
    """The reference trained once on the public data (seed 0), in this process; its hidden run is
    graded by tests/test_grading_exercises.py (full marks), the ten runs by the test below."""
    inputs = diffusion.Q6.inputs()
    outputs = diffusion.q6_probe(solution, inputs)
    for check in diffusion.Q6.checks:
        check.run(inputs, outputs)
    share, _ = on_mode_share(inputs, outputs)
    assert share >= diffusion.ON_MODE_MIN + Q6_MARGIN, share


class TimeBlind(torch.nn.Module):
    """A velocity field that does not see t: the flow of eq. (12) cannot be learnt."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, t):
        return self.net(x, torch.zeros_like(t))


def train_variant(solution, n_steps, time_blind=False):
    def train_velocity_field(x_train, seed=0):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        velocity = solution["VelocityNet"]()
        model = TimeBlind(velocity) if time_blind else velocity
        optimizer = torch.optim.Adam(velocity.parameters(), lr=5e-3)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, n_steps)
        for _ in range(n_steps):
            batch = x_train[torch.randint(0, len(x_train), (512,), generator=generator)]
            loss = solution["flow_matching_loss"](model, batch, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        return model.eval()
    return train_velocity_field


@pytest.mark.parametrize("n_steps, time_blind", [(200, False), (1000, True)])
def test_q6_near_misses_stay_below_the_target(solution, n_steps, time_blind):
    """Stopping after 200 steps, or a field that does not see t, misses."""
    namespace = answer(solution, train_velocity_field=train_variant(solution, n_steps, time_blind))
    inputs = diffusion.Q6.inputs()
    share, _ = on_mode_share(inputs, diffusion.q6_probe(namespace, inputs))
    print(f"{n_steps} steps, time_blind={time_blind}: {share:.4f} on a mode")
    assert share < diffusion.ON_MODE_MIN
    assert f"at least {diffusion.ON_MODE_MIN} of the samples on a mode" in failed(diffusion, namespace, "q6")


@pytest.mark.skipif(not os.environ.get("GMCOURSE_MEASURE"), reason="re-measures q6's ten reference runs "
                    "(about a minute of one core); set GMCOURSE_MEASURE=1")
def test_q6_target_keeps_its_margin_over_the_reference_spread(solution):
    """Seeds 0-4 on the public and the hidden data: the worst stays at least Q6_MARGIN above the
    target (instructor/hidden/06_diffusion.py records the measurement the target was set from)."""
    rows = []
    for name, question in (("public", diffusion.Q6), ("hidden", HIDDEN_Q6)):
        inputs = question.inputs()
        for seed in range(5):
            inputs["seed"] = np.array(seed)
            outputs = diffusion.q6_probe(solution, inputs)
            share, per_mode = on_mode_share(inputs, outputs)
            rows.append((name, seed, share, per_mode.min(), float(outputs["seconds"])))
            print(f"{name} seed {seed}: on a mode {share:.4f}, smallest mode share {per_mode.min():.4f}, "
                  f"{float(outputs['seconds']):.1f} CPU s")
    assert min(r[2] for r in rows) >= diffusion.ON_MODE_MIN + Q6_MARGIN, rows
    assert min(r[3] for r in rows) >= diffusion.MODE_SHARE_MIN + 0.01, rows
    assert max(r[4] for r in rows) <= diffusion.FLOW_SECONDS_BUDGET / 2, rows
