"""gmcourse.gaussian: properties against torch.distributions, Monte Carlo and autograd."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmcourse.gaussian import normal_kl, normal_log_prob, reparameterize

Normal = torch.distributions.Normal


def _params(seed, shape=(4, 3)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), 0.8 * torch.randn(shape, generator=g)


def test_reparameterized_samples_have_the_right_moments():
    mu = torch.tensor([[1.5, -2.0]]).expand(200_000, 2)
    log_var = torch.tensor([[0.0, math.log(0.25)]]).expand(200_000, 2)
    z = reparameterize(mu, log_var, generator=torch.Generator().manual_seed(0))
    assert z.mean(0) == pytest.approx(torch.tensor([1.5, -2.0]), abs=0.01)
    assert z.std(0) == pytest.approx(torch.tensor([1.0, 0.5]), abs=0.01)


def test_reparameterized_sample_is_differentiable_and_seeded():
    mu, log_var = _params(0)
    mu.requires_grad_(True)
    log_var.requires_grad_(True)
    z = reparameterize(mu, log_var, generator=torch.Generator().manual_seed(3))
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones_like(mu))  # dz/dmu = 1
    assert torch.allclose(log_var.grad, 0.5 * (z - mu).detach())  # dz/dlog_var = sigma * eps / 2
    again = reparameterize(mu, log_var, generator=torch.Generator().manual_seed(3))
    assert torch.equal(z, again)


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 10_000))
def test_log_prob_matches_torch_distributions(seed):
    mu, log_var = _params(seed)
    x = torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed + 1))
    expected = Normal(mu, (0.5 * log_var).exp()).log_prob(x).sum(1)
    assert torch.allclose(normal_log_prob(x, mu, log_var), expected, atol=1e-5)
    assert torch.allclose(normal_log_prob(x), Normal(0.0, 1.0).log_prob(x).sum(1), atol=1e-5)


def test_log_prob_sums_over_image_axes():
    x = torch.zeros(2, 1, 28, 28)
    assert normal_log_prob(x) == pytest.approx(torch.full((2,), -0.5 * 784 * math.log(2 * math.pi)))


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 10_000))
def test_kl_matches_torch_distributions_and_is_nonnegative(seed):
    mu_q, log_var_q = _params(seed)
    mu_p, log_var_p = _params(seed + 7)
    q, p = Normal(mu_q, (0.5 * log_var_q).exp()), Normal(mu_p, (0.5 * log_var_p).exp())
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    kl = normal_kl(mu_q, log_var_q, mu_p, log_var_p)
    assert torch.allclose(kl, expected, atol=1e-5)
    assert (kl >= -1e-6).all()
    standard = torch.distributions.kl_divergence(q, Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(normal_kl(mu_q, log_var_q), standard, atol=1e-5)


def test_kl_is_zero_for_equal_distributions_and_matches_monte_carlo():
    mu, log_var = _params(1, (1, 3))
    assert normal_kl(mu, log_var, mu, log_var) == pytest.approx(torch.zeros(1), abs=1e-6)
    z = reparameterize(mu.expand(100_000, 3), log_var.expand(100_000, 3), torch.Generator().manual_seed(0))
    monte_carlo = (normal_log_prob(z, mu.expand_as(z), log_var.expand_as(z)) - normal_log_prob(z)).mean()
    assert float(monte_carlo) == pytest.approx(float(normal_kl(mu, log_var)), abs=0.03)


@pytest.mark.parametrize("call", [
    lambda: reparameterize(torch.zeros(3), torch.zeros(3)),
    lambda: reparameterize(torch.zeros(2, 3), torch.zeros(2, 4)),
    lambda: normal_log_prob(torch.zeros(2, 3), torch.zeros(3)),
    lambda: normal_kl(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 2)),
])
def test_shape_errors_name_the_shapes(call):
    with pytest.raises(ValueError, match=r"\("):
        call()
