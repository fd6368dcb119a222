"""The pieces of lecture 06 (exported to gmcourse.models.diffusion), each against what it must satisfy:
the schedules and the closed form of eq. (6), the posterior of eq. (9) against Gaussian conditioning,
the reverse step of eq. (20) against DDPM's eq. (16) and against an exact noise oracle, the bound of
eq. (10) where its value is known, the loss's step distribution and weights, the networks' shapes and
labels, the model interface, and the samplers against diffusers' DDPM and DDIM schedulers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gmcourse.models import check_interface
from gmcourse.models.diffusion import (DenoiserMLP, Diffusion, NoiseSchedule, SelfAttention, UNet,
                                       timestep_embedding)

SETTINGS = settings(max_examples=10, deadline=None)
T = 100


class Oracle(nn.Module):
    """An 'eps network' that knows the data is one fixed point x_star: eps = (x_t - sqrt(a) x_star) / sqrt(1 - a)."""

    def __init__(self, schedule, x_star):
        super().__init__()
        self.schedule, self.x_star = schedule, x_star
        self.dummy = nn.Parameter(torch.zeros(()))  # so that the model has a device and a parameter

    def forward(self, x_t, t, y=None):
        a = self.schedule.at(self.schedule.alpha_bar, t.round().long(), x_t)
        return (x_t - a.sqrt() * self.x_star) / (1 - a).sqrt() + 0 * self.dummy


@pytest.mark.parametrize("make", [NoiseSchedule.linear, NoiseSchedule.cosine])
def test_schedules_shrink_the_signal_monotonically_to_almost_nothing(make):
    s = make(1000)
    assert s.T == 1000 and s.alpha_bar.dtype == torch.float64
    assert bool((s.alpha_bar[1:] < s.alpha_bar[:-1]).all()) and 0 < s.alpha_bar[-1] < 1e-4 < s.alpha_bar[0] < 1
    assert torch.allclose(s.alpha_bar, torch.cumprod(1 - s.betas, 0))  # eq. (5)
    assert torch.equal(s.alpha_bar_prev[1:], s.alpha_bar[:-1]) and s.alpha_bar_prev[0] == 1


def test_cosine_schedule_is_its_closed_form():
    s, t = NoiseSchedule.cosine(1000), torch.arange(1, 1000, dtype=torch.float64)  # the clamp acts only at t = T
    f = torch.cos((torch.cat([torch.zeros(1), t]) / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
    assert torch.allclose(s.alpha_bar[:-1], f[1:] / f[0], rtol=1e-10)


@pytest.mark.parametrize("betas", [torch.tensor([0.1]), torch.tensor([0.1, 1.0]), torch.tensor([[0.1, 0.2]]),
                                   torch.tensor([0.0, 0.1])])
def test_bad_betas_are_refused_with_what_was_expected(betas):
    with pytest.raises(ValueError, match=r"1D tensor of T >= 2 values in \(0, 1\)"):
        NoiseSchedule(betas)


@SETTINGS
@given(t=st.integers(0, 999), x0=st.floats(-2, 2))
def test_q_sample_has_the_moments_of_eq_6_and_predict_x0_inverts_it(t, x0):
    s = NoiseSchedule.cosine(1000)
    eps = torch.randn(20000, 1, generator=torch.Generator().manual_seed(t))
    x_t = s.q_sample(torch.full((20000, 1), x0), torch.full((20000,), t), eps)
    a = s.alpha_bar[t].item()
    assert x_t.mean().item() == pytest.approx(math.sqrt(a) * x0, abs=4 * math.sqrt((1 - a) / 20000) + 1e-6)
    assert x_t.var().item() == pytest.approx(1 - a, rel=0.05, abs=1e-6)
    back = s.predict_x0(x_t[:5], torch.full((5,), t), eps[:5])
    assert torch.allclose(back, torch.full((5, 1), x0), atol=1e-3 / math.sqrt(a))


@SETTINGS
@given(t=st.integers(1, 999), x0=st.floats(-1, 1), x_t=st.floats(-3, 3))
def test_posterior_is_gaussian_conditioning_of_eqs_4_and_6(t, x0, x_t):
    """x_{t-1} = sqrt(ab_{t-1}) x0 + sqrt(1 - ab_{t-1}) e1, x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) e2:
    E[x_{t-1} | x_t] and Var[x_{t-1} | x_t] by the formulas for a jointly Gaussian pair."""
    s = NoiseSchedule.cosine(1000)
    ab_prev, alpha, beta = s.alpha_bar_prev[t].item(), s.alphas[t].item(), s.betas[t].item()
    var_prev = 1 - ab_prev
    cov = math.sqrt(alpha) * var_prev  # Cov(x_{t-1}, x_t)
    var_t = alpha * var_prev + beta
    mean = math.sqrt(ab_prev) * x0 + cov / var_t * (x_t - math.sqrt(alpha * ab_prev) * x0)
    ours = s.posterior_mean(torch.tensor([[x_t]]), torch.tensor([t]), torch.tensor([[x0]])).item()
    assert ours == pytest.approx(mean, abs=1e-5)
    assert s.posterior_variance[t].item() == pytest.approx(var_prev - cov ** 2 / var_t, rel=1e-6)


def test_timestep_embedding_is_sines_and_cosines_of_t():
    e = timestep_embedding(torch.tensor([0, 5, 999]), 16)
    assert e.shape == (3, 16)
    assert torch.equal(e[0], torch.cat([torch.zeros(8), torch.ones(8)]))
    assert e[1, 0].item() == pytest.approx(math.sin(5.0)) and e[1, 8].item() == pytest.approx(math.cos(5.0))


def test_networks_keep_the_input_shape_and_the_unet_reads_its_label():
    mlp = DenoiserMLP(hidden=16)
    assert mlp(torch.randn(7, 2), torch.randint(0, 1000, (7,))).shape == (7, 2)
    torch.manual_seed(0)
    unet = UNet((8, 16), n_classes=10)
    for p in unet.parameters():  # leave the zero initialisation, so that the output depends on everything
        nn.init.normal_(p, std=0.1)
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([0, 500, 999])
    out = unet(x, t, torch.tensor([1, 2, 3]))
    assert out.shape == (3, 1, 28, 28)
    assert not torch.allclose(out, unet(x, t, torch.tensor([4, 5, 6])))
    assert torch.equal(unet(x, t), unet(x, t, torch.full((3,), 10)))  # None means "no label" (index n_classes)
    attention = SelfAttention(16)
    assert attention(torch.randn(2, 16, 7, 7)).shape == (2, 16, 7, 7)


def test_a_fresh_unet_outputs_zero_and_its_blocks_start_as_the_identity():
    unet = UNet((8, 16), n_classes=10)
    assert torch.equal(unet(torch.randn(2, 1, 28, 28), torch.tensor([3, 4])), torch.zeros(2, 1, 28, 28))


def test_timesteps_are_trailing_and_must_divide_t():
    model = Diffusion(DenoiserMLP(hidden=8), NoiseSchedule.cosine(1000), (2,))
    assert model.timesteps(10).tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert model.timesteps(1000).tolist() == list(range(999, -1, -1))
    for bad in (0, 3, 2.0, True):
        with pytest.raises(ValueError, match="divides T = 1000"):
            model.timesteps(bad)


@SETTINGS
@given(t=st.integers(1, T - 1), seed=st.integers(0, 1000))
def test_eta_one_on_consecutive_steps_is_the_ddpm_step_of_eq_16(t, seed):
    s = NoiseSchedule.cosine(T)
    model = Diffusion(DenoiserMLP(hidden=8), s, (2,))
    x_t, eps = torch.randn(6, 2), torch.randn(6, 2)
    ours, _ = model.step(x_t, t, t - 1, eps, eta=1.0, generator=torch.Generator().manual_seed(seed))
    mean = (x_t - s.betas[t].item() / math.sqrt(1 - s.alpha_bar[t].item()) * eps) / math.sqrt(s.alphas[t].item())
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(ours, mean + math.sqrt(s.posterior_variance[t].item()) * z, atol=1e-5)


@SETTINGS
@given(t=st.integers(1, T - 1), jump=st.integers(1, 30))
def test_ddim_with_the_true_noise_stays_on_the_path_of_x0(t, jump):
    """eta = 0 and the noise that made x_t: the step lands on sqrt(ab') x0 + sqrt(1 - ab') eps, exactly."""
    s = NoiseSchedule.cosine(T)
    model = Diffusion(DenoiserMLP(hidden=8), s, (2,))
    x0, eps = torch.randn(5, 2), torch.randn(5, 2)
    t_prev = max(t - jump, -1)
    x_t = s.q_sample(x0, torch.full((5,), t), eps)
    x_prev, x0_hat = model.step(x_t, t, t_prev, eps)
    a_prev = s.alpha_bar[t_prev].item() if t_prev >= 0 else 1.0
    assert torch.allclose(x0_hat, x0, atol=1e-4)
    assert torch.allclose(x_prev, math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps, atol=1e-4)


def test_images_clip_the_predicted_x0_and_reread_the_noise():
    s = NoiseSchedule.cosine(T)
    model = Diffusion(DenoiserMLP(hidden=8), s, (1, 2, 2), bins=256)
    x_t, eps = torch.full((1, 1, 2, 2), 3.0), torch.zeros(1, 1, 2, 2)
    x_prev, x0_hat = model.step(x_t, 50, 40, eps)
    assert torch.equal(x0_hat, torch.ones(1, 1, 2, 2))
    a, a_prev = s.alpha_bar[50].item(), s.alpha_bar[40].item()
    eps_clipped = (3.0 - math.sqrt(a)) / math.sqrt(1 - a)
    assert torch.allclose(x_prev, torch.full_like(x_prev, math.sqrt(a_prev) + math.sqrt(1 - a_prev) * eps_clipped))


def test_the_oracle_samples_its_point_and_its_bound_is_the_last_terms_alone():
    """With eps exact for a one-point data set, every KL of eq. (12) vanishes: the bound is log N(x*; x*, beta_1)
    minus the prior's KL (points); sampling lands on x*."""
    s, x_star = NoiseSchedule.cosine(T), torch.tensor([0.7, -1.2])
    model = Diffusion(Oracle(s, x_star), s, (2,))
    samples = model.sample(50, torch.Generator().manual_seed(0), steps=20)
    assert torch.allclose(samples, x_star.expand(50, 2), atol=1e-4)
    elbo = model.elbo(x_star.expand(4, 2), generator=torch.Generator().manual_seed(1))
    a_T, beta_1 = s.alpha_bar[-1].item(), s.betas[0].item()
    prior = 0.5 * (a_T * x_star.pow(2).sum().item() + 2 * (-a_T - math.log(1 - a_T)))
    expected = -math.log(2 * math.pi * beta_1) - prior
    assert torch.allclose(elbo, torch.full((4,), expected, dtype=elbo.dtype), rtol=1e-4)


def test_the_image_bound_is_the_bin_masses_for_the_oracle():
    s = NoiseSchedule.cosine(T)
    x = torch.tensor([0.0, 1.0, 128 / 255, 3 / 255]).view(1, 1, 2, 2)  # both end bins and two inner ones
    model = Diffusion(Oracle(s, 2 * x - 1), s, (1, 2, 2), bins=256)
    elbo = model.elbo(x, generator=torch.Generator().manual_seed(0)).item()
    std, half = math.sqrt(s.betas[0].item()), 1 / 255
    phi = 0.5 * (1 + math.erf(half / std / math.sqrt(2)))  # the mass of a bin of half-width 1/255 around its mean
    a_T = s.alpha_bar[-1].item()
    prior = 0.5 * (a_T * (2 * x - 1).pow(2).sum().item() + 4 * (-a_T - math.log(1 - a_T)))
    expected = 2 * math.log(phi) + 2 * math.log(2 * phi - 1) - prior
    assert elbo == pytest.approx(expected, rel=1e-4)


def test_loss_is_the_noise_regression_and_its_options_move_the_steps_and_weights():
    s = NoiseSchedule.cosine(1000)
    x = torch.randn(4096, 2)
    zero = Diffusion(DenoiserMLP(hidden=8), s, (2,))
    for p in zero.parameters():
        nn.init.zeros_(p)  # eps_theta = 0: the loss is E||eps||^2 / D = 1
    assert zero.loss(x, generator=torch.Generator().manual_seed(0)).item() == pytest.approx(1.0, abs=0.05)
    weighted = Diffusion(zero.network, s, (2,), min_snr=5.0)
    uniform_weight = torch.minimum(s.alpha_bar / (1 - s.alpha_bar), torch.tensor(5.0)) / (s.alpha_bar / (1 - s.alpha_bar))
    expected = uniform_weight.mean().item()  # E over uniform t of min(SNR, 5) / SNR
    assert weighted.loss(x, generator=torch.Generator().manual_seed(0)).item() == pytest.approx(expected, abs=0.05)
    steps = []
    logit = Diffusion(Recorder(steps), s, (2,), t_std=1.0)
    logit.loss(x, generator=torch.Generator().manual_seed(0))
    t = torch.cat(steps).float()
    assert abs(t.mean().item() - 500) < 20 and t.std().item() < 0.8 * 1000 / math.sqrt(12)  # concentrated mid-way


class Recorder(nn.Module):
    def __init__(self, steps):
        super().__init__()
        self.steps, self.dummy = steps, nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y=None):
        self.steps.append(t)
        return x * self.dummy


def test_label_dropout_and_guidance_combine_the_two_estimates_as_eq_21():
    seen = []

    class Labelled(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, x, t, y):
            seen.append(y.clone())
            return self.w * (x + y.float().view(-1, 1))  # a different estimate per label

    model = Diffusion(Labelled(), NoiseSchedule.cosine(T), (2,), n_classes=10, p_uncond=0.3)
    model.loss(torch.randn(2000, 2), torch.full((2000,), 4), generator=torch.Generator().manual_seed(0))
    assert (seen[-1] == 10).double().mean().item() == pytest.approx(0.3, abs=0.04) and set(seen[-1].tolist()) == {4, 10}
    x, t, y = torch.randn(3, 2), torch.tensor([5, 6, 7]), torch.tensor([1, 2, 3])
    eps_y, eps_null = model.eps(x, t, y), model.eps(x, t)
    for w in (0.0, 1.5, 4.0):
        assert torch.allclose(model.eps(x, t, y, guidance=w), (1 + w) * eps_y - w * eps_null)


@pytest.mark.parametrize("bins, shape, network", [(None, (2,), lambda: DenoiserMLP(hidden=16)),
                                                   (256, (1, 28, 28), lambda: UNet((8, 16), n_classes=10))])
def test_the_model_honours_the_course_interface(bins, shape, network):
    torch.manual_seed(0)
    n_classes = 10 if bins else 0
    model = Diffusion(network(), NoiseSchedule.cosine(T), shape, n_classes=n_classes, bins=bins)
    x = torch.rand(4, *shape) if bins else torch.randn(4, *shape)
    report = check_interface(model, x)
    assert report["likelihood"] == "bound" and report["sample_shape"] == (3, *shape)
    samples = model.sample(3, torch.Generator().manual_seed(0), steps=10)
    if bins:
        assert samples.min() >= 0 and samples.max() <= 1


def test_sample_path_holds_every_frame_and_the_predictions():
    model = Diffusion(DenoiserMLP(hidden=8), NoiseSchedule.cosine(T), (2,))
    x, path, predictions = model.sample(5, torch.Generator().manual_seed(0), steps=10, return_path=True)
    assert path.shape == predictions.shape == (11, 5, 2)
    assert torch.equal(path[-1], x) and torch.equal(predictions[-1], x)
    assert torch.equal(path[0], torch.randn(5, 2, generator=torch.Generator().manual_seed(0)))  # x_T


@pytest.fixture(scope="module")
def tiny_image_model():
    torch.manual_seed(0)
    unet = UNet((8, 16), n_classes=10)
    for p in unet.parameters():
        nn.init.normal_(p, std=0.05)
    return Diffusion(unet, NoiseSchedule.cosine(T), (1, 28, 28), n_classes=10, bins=256).eval()


def test_ddim_agrees_with_diffusers_ddim_scheduler(tiny_image_model):
    from diffusers import DDIMScheduler
    model, labels = tiny_image_model, torch.tensor([0, 3, 7])
    scheduler = DDIMScheduler(num_train_timesteps=T, trained_betas=model.schedule.betas.float().numpy(),
                              clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing")
    scheduler.set_timesteps(10)
    assert scheduler.timesteps.tolist() == model.timesteps(10).tolist()
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = model.eps(x, torch.full((3,), int(t)), labels, guidance=2.0)
            x = scheduler.step(eps, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    ours = model.sample(3, torch.Generator().manual_seed(4), steps=10, y=labels, guidance=2.0)
    assert (ours - model.to_data(x)).abs().max().item() < 1e-4


def test_ancestral_sampling_agrees_with_diffusers_ddpm_scheduler_for_the_same_noise(tiny_image_model):
    from diffusers import DDPMScheduler
    model, labels = tiny_image_model, torch.tensor([1, 2])
    scheduler = DDPMScheduler(num_train_timesteps=T, trained_betas=model.schedule.betas.float().numpy(),
                              clip_sample=True, variance_type="fixed_small")
    scheduler.set_timesteps(T)
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 1, 28, 28, generator=generator)
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = model.eps(x, torch.full((2,), int(t)), labels)
            x = scheduler.step(eps, t, x, generator=generator).prev_sample
    ours = model.sample(2, torch.Generator().manual_seed(5), eta=1.0, y=labels)
    assert (ours - model.to_data(x)).abs().max().item() < 1e-3
    assert not np.allclose(ours.numpy(), model.sample(2, torch.Generator().manual_seed(6), eta=1.0, y=labels).numpy())


class OffsetOracle(Oracle):
    """The oracle's noise estimate off by a constant c in every coordinate."""

    def __init__(self, schedule, x_star, c):
        super().__init__(schedule, x_star)
        self.c = c

    def forward(self, x_t, t, y=None):
        return super().forward(x_t, t, y) + self.c


def test_each_step_of_the_bound_costs_eq_12_for_a_noise_error():
    """A noise estimate off by c costs beta_t^2 / (2 beta~_t alpha_t (1 - ab_t)) D c^2 at step t (eq. (12)), and
    (1 - ab_1) / ab_1 D c^2 / (2 beta_1) in the last term; one stratum per step makes the estimate exact."""
    s, x_star, c = NoiseSchedule.cosine(T), torch.tensor([0.3, 0.5]), 0.2
    exact = Diffusion(Oracle(s, x_star), s, (2,)).elbo(x_star.expand(3, 2), n_strata=T - 1)
    off = Diffusion(OffsetOracle(s, x_star, c), s, (2,)).elbo(x_star.expand(3, 2), n_strata=T - 1)
    t = torch.arange(1, T)
    per_step = s.betas[t] ** 2 / (2 * s.posterior_variance[t] * s.alphas[t] * (1 - s.alpha_bar[t])) * 2 * c ** 2
    last = (1 - s.alpha_bar[0]) / s.alpha_bar[0] * 2 * c ** 2 / (2 * s.betas[0])
    assert torch.allclose(exact - off, (per_step.sum() + last).float().expand(3), rtol=1e-3)


def test_ancestral_jumps_agree_with_diffusers_ddpm_scheduler_on_fewer_steps(tiny_image_model):
    """DDPM over jumps of T / steps (eta = 1 in eq. (20)) is DDPMScheduler with as many trailing steps."""
    from diffusers import DDPMScheduler
    model, labels = tiny_image_model, torch.tensor([4, 9])
    scheduler = DDPMScheduler(num_train_timesteps=T, trained_betas=model.schedule.betas.float().numpy(),
                              clip_sample=True, variance_type="fixed_small", timestep_spacing="trailing")
    scheduler.set_timesteps(20)
    assert scheduler.timesteps.tolist() == model.timesteps(20).tolist()
    generator = torch.Generator().manual_seed(9)
    x = torch.randn(2, 1, 28, 28, generator=generator)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(model.eps(x, torch.full((2,), int(t)), labels, 1.5), t, x, generator=generator).prev_sample
    ours = model.sample(2, torch.Generator().manual_seed(9), steps=20, eta=1.0, y=labels, guidance=1.5)
    assert (ours - model.to_data(x)).abs().max().item() < 1e-3
