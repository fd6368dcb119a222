"""Checks of exercise 02 (VAE): the solution passes public and hidden checks, and each typical
mistake fails the check written for it (so no check passes whatever the answer)."""
import math

import pytest
import torch

from gmcourse.checks import vae
from gmcourse.metrics import bernoulli_nll

from exercise_helpers import failed, graded_answers, hidden_checks


@pytest.fixture(scope="module")
def solution():
    """The functions of solutions/02_vae.ipynb, taken from its graded cells."""
    namespace = {"math": math, "torch": torch, "bernoulli_nll": bernoulli_nll, "LOG_2PI": math.log(2 * math.pi)}
    return graded_answers("02_vae", namespace, ["q1", "q2", "q3", "q4"])


@pytest.fixture(scope="module")
def hidden():
    return hidden_checks("02_vae")


@pytest.mark.parametrize("qid", ["q1", "q2", "q3", "q4"])
def test_solution_passes_public_and_hidden_checks(solution, hidden, qid):
    assert failed(vae, solution, qid) == []
    assert failed(hidden, solution, qid) == []


def test_hidden_questions_match_public_ones(hidden):
    assert [q.id for q in hidden.QUESTIONS] == [q.id for q in vae.QUESTIONS]


def test_std_instead_of_variance_fails_moment_and_gradient_checks(solution):
    def reparameterize(mu, log_var, generator=None):  # uses exp(log_var) as the std
        return mu + log_var.exp() * torch.randn(mu.shape, generator=generator)
    assert failed(vae, {"reparameterize": reparameterize}, "q1") == [
        "sample std matches exp(log_var / 2)", "gradient w.r.t. log_var is (z - mu) / 2"]


def test_global_rng_fails_the_generator_check(solution):
    def reparameterize(mu, log_var, generator=None):
        return mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
    # the gradients are central differences of z taken with one seed, so they need the generator too
    assert failed(vae, {"reparameterize": reparameterize}, "q1") == [
        "gradient w.r.t. mu is 1", "gradient w.r.t. log_var is (z - mu) / 2",
        "uses the generator (same seed, same sample)"]


def test_uniform_noise_passes_public_but_fails_hidden(hidden):
    def reparameterize(mu, log_var, generator=None):  # right mean and std, wrong distribution
        u = torch.rand(mu.shape, generator=generator)
        return mu + torch.exp(0.5 * log_var) * (u - 0.5) * math.sqrt(12)
    assert failed(hidden, {"reparameterize": reparameterize}, "q1") == [
        "noise is standard normal, also at extreme variances"]


def test_kl_without_the_minus_one_fails(solution):
    def gaussian_kl(mu, log_var):
        return 0.5 * (mu**2 + log_var.exp() - log_var).sum(1)
    assert set(failed(vae, {"gaussian_kl": gaussian_kl}, "q2")) == {
        "matches a Monte Carlo estimate", "is zero when q is the prior"}


def test_kl_per_dimension_fails_the_shape_check(solution):
    def gaussian_kl(mu, log_var):
        return 0.5 * (mu**2 + log_var.exp() - 1 - log_var)  # forgets the sum over dims
    assert "returns shape (B,)" in failed(vae, {"gaussian_kl": gaussian_kl}, "q2")


def test_elbo_at_the_posterior_mean_is_not_the_elbo(solution):
    def elbo(x, encoder, decoder, generator=None):  # decodes mu instead of a sample
        mu, log_var = encoder(x)
        return -bernoulli_nll(decoder(mu), x) - solution["gaussian_kl"](mu, log_var)
    assert "its average is the exact ELBO" in failed(vae, {**solution, "elbo": elbo}, "q3")


def test_elbo_with_a_plus_kl_fails(solution):
    def elbo(x, encoder, decoder, generator=None):
        mu, log_var = encoder(x)
        z = solution["reparameterize"](mu, log_var, generator)
        return -bernoulli_nll(decoder(z), x) + solution["gaussian_kl"](mu, log_var)
    assert {"its average is the exact ELBO", "reconstruction minus KL when the decoder ignores z"} <= set(
        failed(vae, {**solution, "elbo": elbo}, "q3"))


def test_mean_of_elbos_is_not_an_iwae_bound(solution):
    def iwae_bound(x, encoder, decoder, k, generator=None):  # averages outside the log
        return torch.stack([solution["elbo"](x, encoder, decoder, generator) for _ in range(k)]).mean(0)
    assert failed(vae, {**solution, "iwae_bound": iwae_bound}, "q4") == [
        "the largest k approaches the exact log p(x)"]


def test_log_of_mean_weight_underflows(solution):
    def iwae_bound(x, encoder, decoder, k, generator=None):  # exp before the average: underflows
        mu, log_var = encoder(x)
        eps = torch.randn((k, *mu.shape), generator=generator)
        z = mu + torch.exp(0.5 * log_var) * eps
        log_px_z = -bernoulli_nll(decoder(z.flatten(0, 1)), x.repeat(k, 1)).view(k, len(x))
        log_w = log_px_z - 0.5 * (z**2).sum(-1) + 0.5 * (eps**2 + log_var).sum(-1)
        return torch.log(log_w.exp().mean(0))
    assert failed(vae, {**solution, "iwae_bound": iwae_bound}, "q4") == ["stable when the weights underflow"]


def test_exact_terms_of_the_tiny_model_are_consistent():
    """The quadrature behind the q3/q4 checks: log p(x) >= ELBO, with equality only if q is the posterior."""
    inputs = vae.tiny_model_inputs(torch.Generator().manual_seed(0))
    log_px, expected_log_px_z, kl = vae.exact_terms(inputs)
    assert (log_px >= expected_log_px_z - kl).all()
    assert (kl >= 0).all()
    fine, _, _ = vae.exact_terms(inputs, n_grid=32001)
    assert fine == pytest.approx(log_px, abs=1e-6)
