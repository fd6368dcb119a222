"""The pieces of lecture 05 (exported to gmcourse.models.ebm), each against what it must satisfy:
the quadrature of eq. (3) against closed forms, Langevin dynamics (eq. (7)) against the stationary
law of a Gaussian, the replay buffer, the contrastive-divergence loss (eq. (8)) and its gradient,
and both energy networks and the EBM against the course's model interface."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmcourse.models import check_interface
from gmcourse.models.ebm import (EBM, EnergyCNN, EnergyMLP, ReplayBuffer, contrastive_divergence_loss, grid_2d,
                                 langevin, log_partition_2d)

SETTINGS = settings(max_examples=10, deadline=None)


@SETTINGS
@given(s=st.floats(0.15, 1.2), shift=st.floats(-500, 500), centre=st.floats(-1.0, 1.0))
def test_log_partition_of_a_gaussian_energy_is_exact(s, shift, centre):
    """E(x) = ||x - c||^2 / (2 s^2) + shift has log Z = log(2 pi s^2) - shift in 2D."""
    def energy(x):
        return ((x - centre) ** 2).sum(-1) / (2 * s**2) + shift
    expected = math.log(2 * math.pi * s**2) - shift
    assert log_partition_2d(energy, lim=4.5 + abs(centre), n_grid=200).item() == pytest.approx(expected, abs=2e-3)


def test_grid_is_row_major_with_the_stated_spacing():
    grid, h = grid_2d(2.0, 5)
    assert grid.shape == (25, 2) and h == pytest.approx(1.0)
    assert torch.equal(grid[:5, 1], torch.full((5,), -2.0)) and torch.equal(grid[:5, 0], torch.linspace(-2, 2, 5))


def test_log_partition_is_differentiable_and_its_gradient_is_minus_the_model_mean_of_grad_energy():
    """Eq. (5): d log Z / d theta = -E_p[dE/d theta]; here theta is a mean vector of a Gaussian energy."""
    mu = torch.tensor([0.3, -0.2], requires_grad=True)
    log_z = log_partition_2d(lambda x: ((x - mu) ** 2).sum(-1) / 2, lim=6.0, n_grid=200)
    (grad,) = torch.autograd.grad(log_z, mu)
    assert torch.allclose(grad, torch.zeros(2), atol=1e-4)  # Z does not depend on the mean


def test_langevin_samples_a_gaussian_with_the_bias_of_the_unadjusted_algorithm():
    """On E = ||x||^2 / (2 s^2), eq. (7)'s stationary std is s / sqrt(1 - eps / (2 s^2))."""
    s, eps = 0.5, 0.05
    start = 3 + torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    x = langevin(lambda x: (x**2).sum(-1) / (2 * s**2), start, 300, eps, generator=torch.Generator().manual_seed(1))
    predicted = s / math.sqrt(1 - eps / (2 * s**2))
    assert x.mean(0).abs().max() < 0.05
    assert x.std(0).numpy() == pytest.approx([predicted, predicted], rel=0.04)


def test_langevin_is_repeatable_keeps_its_chain_and_clamps():
    energy = EnergyMLP(hidden=8)
    start = torch.rand(5, 2)
    a = langevin(energy, start, 4, 0.1, generator=torch.Generator().manual_seed(3), keep_chain=True)
    b = langevin(energy, start, 4, 0.1, generator=torch.Generator().manual_seed(3))
    assert a.shape == (5, 5, 2) and torch.equal(a[0], start) and torch.equal(a[-1], b)
    assert not a.requires_grad
    with torch.no_grad():  # the sampler needs gradients and turns them on itself
        c = langevin(energy, start, 4, 10.0, clamp=(0.0, 1.0), generator=torch.Generator().manual_seed(3))
    assert c.min() >= 0 and c.max() <= 1
    assert torch.equal(langevin(energy, start, 3, 0.1, noise_scale=0.0), langevin(energy, start, 3, 0.1, noise_scale=0.0))


def test_replay_buffer_restarts_the_stated_share_and_writes_back():
    torch.manual_seed(0)
    buffer = ReplayBuffer(100, (2,), low=10.0, high=11.0, reinit_prob=0.3)
    buffer.x.zero_()  # stored states at 0; fresh ones in [10, 11]
    x, index = buffer.draw(4000)
    fresh = x[:, 0] >= 10
    assert x.shape == (4000, 2) and index.shape == (4000,)
    assert fresh.float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert (x[fresh] <= 11).all() and (x[~fresh] == 0).all()
    buffer.update(index[:3], torch.full((3, 2), 5.0))
    assert (buffer.x[index[:3]] == 5.0).all()
    assert "x" in buffer.state_dict()  # the chains travel with a checkpoint


def test_contrastive_divergence_loss_is_eq_8_and_pushes_data_down_and_samples_up():
    e_data = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    e_samples = torch.tensor([3.0, 0.0, 1.0], requires_grad=True)
    loss = contrastive_divergence_loss(e_data, e_samples, alpha=0.1)
    assert loss.item() == pytest.approx((-0.5 / 3) - (4 / 3) + 0.1 * (1 + 4 + 0.25) / 3)
    loss.backward()
    assert (e_samples.grad == -1 / 3).all()  # raising a sample's energy lowers the loss
    assert torch.allclose(e_data.grad, (1 + 0.2 * e_data.detach()) / 3)


@pytest.mark.parametrize("shape,net", [((2,), lambda: EnergyMLP(hidden=16)), ((1, 28, 28), lambda: EnergyCNN(4))])
def test_ebm_honours_the_model_interface(shape, net):
    torch.manual_seed(0)
    model = EBM(net(), shape, n_steps=3, step_size=0.01, buffer_size=32, low=0.0, high=1.0,
                clamp=(0.0, 1.0) if len(shape) == 3 else None)
    report = check_interface(model, torch.rand(6, *shape))
    assert report["likelihood"] == "unnormalised"
    assert not hasattr(model, "log_prob")


def test_ebm_loss_moves_its_chains_and_leaves_no_gradient_in_the_sampler():
    torch.manual_seed(0)
    model = EBM(EnergyMLP(hidden=16), (2,), n_steps=5, step_size=0.05, buffer_size=16, reinit_prob=0.0)
    before = model.buffer.x.clone()
    loss = model.loss(torch.randn(16, 2))
    loss.backward()
    assert not torch.equal(before, model.buffer.x)
    assert not model.buffer.x.requires_grad
    assert all(p.grad is not None for p in model.energy_net.parameters())
    assert model.training  # the sampler runs in eval mode and gives the mode back


def test_energy_mlp_is_integrable_through_its_quadratic_term():
    """Eq. (4): far from the origin the energy grows like beta ||x||^2 / 2 whatever the MLP does."""
    torch.manual_seed(0)
    energy = EnergyMLP(hidden=16, beta=0.5)
    far = torch.tensor([[30.0, 0.0], [0.0, -40.0]])
    with torch.no_grad():
        assert (energy(far) > 0.5 * 0.5 * (far**2).sum(-1) * 0.8).all()
