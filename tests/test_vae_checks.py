"""Checks of exercise 02 (VAE): the solution passes public and hidden checks, and each typical
mistake fails the check written for it (so no check passes whatever the answer).

The trained model of q3 is not trained here (the grading tests run the whole reference solution);
its checks are tested on models that are cheap to make."""
import copy
import math

import nbformat
import numpy as np
import pytest
import torch
from torch import nn

from gmcourse.checks import vae
from gmcourse.gaussian import LOG_2PI
from gmcourse.grading import Checker
from gmcourse.grading.evaluate import run_checks

from exercise_helpers import ROOT, failed, hidden_checks

QUESTIONS = ["q1", "q2", "q3", "q4"]


def answer_cells(question_ids):
    """The sources of the graded cells of solutions/02_vae.ipynb for ``question_ids``."""
    nb = nbformat.read(ROOT / "solutions" / "02_vae.ipynb", as_version=4)
    graded = {cell.metadata["gmcourse"]["question"]: cell.source for cell in nb.cells
              if "question" in cell.metadata.get("gmcourse", {})}
    assert list(graded) == QUESTIONS
    return [graded[q] for q in question_ids]


@pytest.fixture(scope="module")
def solution():
    """The answers of q1, q2 and q4 (q3's cell trains a model: the grading tests run it)."""
    namespace = {"math": math, "torch": torch, "nn": nn, "LOG_2PI": LOG_2PI}
    for source in answer_cells(["q1", "q2", "q4"]):
        exec(source, namespace)
    return namespace


@pytest.fixture(scope="module")
def hidden():
    return hidden_checks("02_vae")


@pytest.mark.parametrize("qid", ["q1", "q2", "q4"])
def test_solution_passes_public_and_hidden_checks(solution, hidden, qid):
    assert failed(vae, solution, qid) == []
    assert failed(hidden, solution, qid) == []


def test_hidden_questions_match_public_ones(hidden):
    assert [q.id for q in hidden.QUESTIONS] == [q.id for q in vae.QUESTIONS] == QUESTIONS


def test_exact_kls_agree_with_torch_distributions():
    inputs = vae.Q1.inputs()
    mu, std = torch.as_tensor(inputs["mu"], dtype=torch.float64), torch.as_tensor(inputs["log_var"], dtype=torch.float64).mul(0.5).exp()
    q = torch.distributions.Normal(mu, std)
    normal = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1).numpy()
    assert vae.exact_kl(inputs, "normal") == pytest.approx(normal, rel=1e-10)
    z = q.sample((200_000,))   # no closed form in torch for Laplace: Monte Carlo, 5 standard errors
    scale = float(inputs["laplace_scale"])
    log_ratio = q.log_prob(z).sum(-1) - torch.distributions.Laplace(0.0, scale).log_prob(z).sum(-1)
    se = log_ratio.std(0) / math.sqrt(len(z))
    assert np.all(np.abs(vae.exact_kl(inputs, "laplace") - log_ratio.mean(0).numpy()) < 5 * se.numpy())


# ---- q1 -----------------------------------------------------------------------------------------

def test_closed_form_entropy_variant_fails_only_the_zero_variance_check(solution):
    def kl_monte_carlo(mu, log_var, log_prior, n_samples, generator=None):  # -H(q) - E log p: unbiased, noisy at p = q
        eps = torch.randn((n_samples, *mu.shape), generator=generator)
        z = mu + torch.exp(0.5 * log_var) * eps
        return -0.5 * (1 + LOG_2PI + log_var).sum(-1) - log_prior(z).mean(0)
    assert failed(vae, {"kl_monte_carlo": kl_monte_carlo}, "q1") == ["exactly zero at every draw when the prior is q"]


def test_standard_normal_closed_form_fails_the_laplace_prior(solution):
    def kl_monte_carlo(mu, log_var, log_prior, n_samples, generator=None):  # ignores the prior it is given
        return 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(-1)
    result = failed(vae, {"kl_monte_carlo": kl_monte_carlo}, "q1")
    assert "unbiased: the closed-form KL to a Laplace prior" in result
    assert "exactly zero at every draw when the prior is q" in result


def test_log_q_with_the_std_instead_of_the_variance_fails(solution):
    def kl_monte_carlo(mu, log_var, log_prior, n_samples, generator=None):
        eps = torch.randn((n_samples, *mu.shape), generator=generator)
        z = mu + torch.exp(0.5 * log_var) * eps
        log_q = -0.5 * (LOG_2PI + 0.5 * log_var + eps**2).sum(-1)  # log sigma instead of log sigma^2
        return (log_q - log_prior(z)).mean(0)
    assert "unbiased: the closed-form KL to N(0, I)" in failed(vae, {"kl_monte_carlo": kl_monte_carlo}, "q1")


def test_one_draw_whatever_n_samples_fails_the_spread(solution):
    def kl_monte_carlo(mu, log_var, log_prior, n_samples, generator=None):
        return solution["kl_monte_carlo"](mu, log_var, log_prior, 1, generator)
    assert "n samples divide the spread by sqrt(n)" in failed(vae, {"kl_monte_carlo": kl_monte_carlo}, "q1")


# ---- q2 -----------------------------------------------------------------------------------------

def subclass(solution, **methods):
    return type("MixturePriorVAE", (solution["MixturePriorVAE"],), methods)


def test_log_of_a_sum_of_densities_underflows(solution):
    def log_prior(self, z):
        z = z.unsqueeze(-2)
        density = torch.exp(-0.5 * (LOG_2PI + self.prior_log_vars
                                    + (z - self.prior_means) ** 2 / self.prior_log_vars.exp()).sum(-1))
        return torch.log((torch.softmax(self.prior_logits, 0) * density).sum(-1))
    result = failed(vae, {"MixturePriorVAE": subclass(solution, log_prior=log_prior)}, "q2")
    assert result == ["stable far from every component"]


def test_unnormalised_weights_fail(solution):
    def log_prior(self, z):  # the logits used as log-weights without the softmax
        z = z.unsqueeze(-2)
        log_normal = -0.5 * (LOG_2PI + self.prior_log_vars
                             + (z - self.prior_means) ** 2 / self.prior_log_vars.exp()).sum(-1)
        return torch.logsumexp(self.prior_logits + log_normal, -1)
    result = failed(vae, {"MixturePriorVAE": subclass(solution, log_prior=log_prior)}, "q2")
    assert "the prior integrates to one over the plane" in result
    assert "known value at an isolated component's mean" in result


def test_std_for_variance_in_the_prior_fails(solution):
    def log_prior(self, z):
        z = z.unsqueeze(-2)
        log_normal = -0.5 * (LOG_2PI + self.prior_log_vars
                             + (z - self.prior_means) ** 2 / (0.5 * self.prior_log_vars).exp()).sum(-1)
        return torch.logsumexp(torch.log_softmax(self.prior_logits, 0) + log_normal, -1)
    assert "the prior integrates to one over the plane" in failed(
        vae, {"MixturePriorVAE": subclass(solution, log_prior=log_prior)}, "q2")


def test_elbo_with_the_closed_form_normal_kl_fails(solution):
    def elbo(self, x, generator=None):  # the lecture's KL to N(0, I), not to the mixture
        mu, log_var = self.encode(x)
        z = mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape, generator=generator)
        log_px_z = -nn.functional.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(-1)
        return log_px_z - 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(-1)
    result = failed(vae, {"MixturePriorVAE": subclass(solution, elbo=elbo, forward=elbo)}, "q2")
    assert "the mean ELBO is the exact ELBO of your model (quadrature)" in result


def test_elbo_without_the_entropy_fails(solution):
    def elbo(self, x, generator=None):
        mu, log_var = self.encode(x)
        z = mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape, generator=generator)
        log_px_z = -nn.functional.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(-1)
        return log_px_z + self.log_prior(z)
    result = failed(vae, {"MixturePriorVAE": subclass(solution, elbo=elbo, forward=elbo)}, "q2")
    assert "the mean ELBO is the exact ELBO of your model (quadrature)" in result


def test_other_architecture_fails(solution):
    def __init__(self, d, z_dim, n_components, n_hidden, seed=0):
        solution["MixturePriorVAE"].__init__(self, d, z_dim, n_components, n_hidden, seed)
        self.encoder[1] = nn.Tanh()
    result = failed(vae, {"MixturePriorVAE": subclass(solution, __init__=__init__)}, "q2")
    assert "encoder and decoder are the exercise's Linear-ReLU-Linear networks" in result


# ---- q3: the trained model, on cheap stand-ins --------------------------------------------------

def q3_results(hidden, model):
    names = []
    for module in (vae, hidden):
        question = {q.id: q for q in module.QUESTIONS}["q3"]
        inputs = question.inputs()
        outputs = question.probe({"mixture_vae": model}, inputs)
        names += [o.check for o in run_checks(question, inputs, outputs) if not o.passed]
    return names


@pytest.fixture(scope="module")
def untrained(solution):
    torch.manual_seed(0)
    return solution["MixturePriorVAE"](784, 16, 10, 64, seed=0)


def test_untrained_model_fails_the_thresholds_only(hidden, untrained):
    result = q3_results(hidden, untrained)
    assert sorted(result) == sorted([vae.Q3.checks[-1].name, vae.Q3.checks[-1].name, "held-out -ELBO below the threshold"])


def test_prior_that_disagrees_with_its_parameters_fails(hidden, untrained):
    model = copy.deepcopy(untrained)
    model.log_prior = lambda z: -0.5 * (z**2 + LOG_2PI).sum(-1)  # N(0, I) used, mixture exported
    assert "your log_prior is the mixture of your prior's parameters" in q3_results(hidden, model)


def test_one_component_is_refused(solution):
    model = solution["MixturePriorVAE"](784, 4, 1, 16, seed=0)
    inputs = vae.Q3.inputs()
    outputs = vae.q3_probe({"mixture_vae": model}, inputs)
    assert "784 pixels, at least 2 prior components, finite weights" in [
        o.check for o in run_checks(vae.Q3, inputs, outputs) if not o.passed]


def test_held_out_terms_agree_with_the_model(hidden, untrained):
    """The checks' own evaluation from exported weights agrees with the model's forward pass."""
    inputs = hidden.QUESTIONS[2].inputs()
    outputs = vae.q3_probe({"mixture_vae": untrained}, inputs)
    x = torch.as_tensor(vae.held_out_digits(1000, 2000, 1), dtype=torch.float32)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        nelbo = -torch.stack([untrained.elbo(x, generator) for _ in range(64)]).mean().item()
    assert hidden.held_out_nelbo(inputs, outputs) == pytest.approx(nelbo, abs=0.5)


# ---- q4 -----------------------------------------------------------------------------------------

def refine_with(loss_terms):
    def refine_posterior(x, mu, log_var, decoder, log_prior, n_steps, lr, generator=None):
        mu = mu.detach().clone().requires_grad_(True)
        log_var = log_var.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([mu, log_var], lr=lr)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, n_steps))
        for _ in range(n_steps):
            eps = torch.randn(mu.shape, generator=generator)
            z = mu + torch.exp(0.5 * log_var) * eps
            log_px_z = -nn.functional.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(1)
            loss = -loss_terms(log_px_z, log_prior(z), 0.5 * (1 + LOG_2PI + log_var).sum(-1)).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        return mu.detach(), log_var.detach()
    return refine_posterior


def test_refinement_without_the_entropy_fails():
    result = failed(vae, {"refine_posterior": refine_with(lambda rec, prior, entropy: rec + prior)}, "q4")
    assert "the refined q reaches the best Gaussian ELBO" in result


def test_refinement_without_the_prior_fails():
    result = failed(vae, {"refine_posterior": refine_with(lambda rec, prior, entropy: rec + entropy)}, "q4")
    assert "the refined q reaches the best Gaussian ELBO" in result


def test_refinement_in_place_fails(solution):
    def refine_posterior(x, mu, log_var, decoder, log_prior, n_steps, lr, generator=None):
        new_mu, new_log_var = solution["refine_posterior"](x, mu, log_var, decoder, log_prior, n_steps, lr, generator)
        mu.copy_(new_mu)
        return mu, new_log_var
    assert "zero steps change nothing; inputs are not changed" in failed(vae, {"refine_posterior": refine_posterior}, "q4")


def test_unanswered_stubs_fail_every_check_with_a_hint():
    def kl_monte_carlo(mu, log_var, log_prior, n_samples, generator=None):
        raise NotImplementedError("q1")
    results = Checker(vae, {"kl_monte_carlo": kl_monte_carlo}).results("q1")
    assert results and all(not o.passed and "not answered yet" in o.detail for o in results)
