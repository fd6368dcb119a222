import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmcourse import toy

DENSITIES = toy.all_densities()
CLOSED_FORM = [d for d in DENSITIES if d.has_log_prob]


@pytest.mark.parametrize("density", DENSITIES, ids=lambda d: d.name)
def test_samplers_are_reproducible_and_shaped(density):
    a = density.sample(100, torch.Generator().manual_seed(3))
    b = density.sample(100, torch.Generator().manual_seed(3))
    c = density.sample(100, torch.Generator().manual_seed(4))
    assert a.shape == (100, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() < 6  # every toy set fits the course's standard [-4, 4]^2 frame, give or take noise


@pytest.mark.parametrize("density", DENSITIES, ids=lambda d: d.name)
@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_samplers_reject_bad_sizes(density, n):
    with pytest.raises(ValueError, match="positive int"):
        density.sample(n)


@pytest.mark.parametrize("density", CLOSED_FORM, ids=lambda d: d.name)
def test_closed_form_densities_integrate_to_one(density):
    axis = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    pts = torch.stack([xx.flatten(), yy.flatten()], dim=1).float()
    mass = density.log_prob(pts).double().exp().sum() * (axis[1] - axis[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("density", CLOSED_FORM, ids=lambda d: d.name)
def test_samples_have_positive_density_and_entropy_matches_monte_carlo(density):
    x = density.sample(20_000, torch.Generator().manual_seed(0))
    log_px = density.log_prob(x)
    assert torch.isfinite(log_px).all()
    assert density.entropy() == pytest.approx(-log_px.mean().item(), abs=0.03)


def test_checkerboard_density_is_zero_on_light_squares():
    light = torch.tensor([[-3.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [4.5, 0.0]])  # cells (0,1), (2,1), (1,2); outside
    assert torch.isneginf(toy.Checkerboard().log_prob(light)).all()
    assert toy.Checkerboard().entropy() == pytest.approx(math.log(32))


def test_eight_gaussians_peak_value_is_analytic():
    d = toy.EightGaussians(radius=10.0, std=0.5)  # blobs far apart: at a mean, one term dominates
    expected = -math.log(8) - math.log(2 * math.pi) - 2 * math.log(0.5)
    assert d.log_prob(d.mu[:1]).item() == pytest.approx(expected, abs=1e-5)


@settings(max_examples=30, deadline=None)
@given(angle=st.floats(0, 2 * math.pi), radius=st.floats(0.05, 4))
def test_rings_density_is_rotation_invariant(angle, radius):
    d = toy.Rings()
    x = torch.tensor([[radius, 0.0]])
    rotated = torch.tensor([[radius * math.cos(angle), radius * math.sin(angle)]])
    assert d.log_prob(rotated).item() == pytest.approx(d.log_prob(x).item(), abs=1e-4)


@pytest.mark.parametrize("density", CLOSED_FORM, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(5,), (5, 3), (2, 5, 2)])
def test_log_prob_rejects_wrong_shapes(density, shape):
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        density.log_prob(torch.zeros(shape))


def test_no_closed_form_means_a_clear_error():
    with pytest.raises(NotImplementedError, match="closed-form"):
        toy.TwoMoons().log_prob(torch.zeros(1, 2))
    with pytest.raises(NotImplementedError, match="closed-form"):
        toy.Pinwheel().entropy()
