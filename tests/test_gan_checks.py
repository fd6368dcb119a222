"""Exercise 03's checks: the reference solution passes every public and hidden check, and each
typical mistake fails the check meant for it (wrong targets, sums for means, a naive D* that
divides two underflowed densities, a one-sided or squared-norm penalty, a penalty without its
graph, a metric that forgets points beyond the grid, a GAN trained too briefly); q5's threshold
keeps its margin over the reference."""
import nbformat
import pytest
import torch
import torch.nn.functional as F

from exercise_helpers import ROOT, failed, graded_answers, hidden_checks, one_thread  # noqa: F401 (fixture)
from gmcourse.checks import gan
from gmcourse.grading import Checker

QUESTION_IDS = ["q1", "q2", "q3", "q4", "q5"]


@pytest.fixture(scope="module")
def namespace():
    """The reference's graded answers, after the cells they need (the imports, make_mlp)."""
    nb = nbformat.read(ROOT / "solutions" / "03_gan.ipynb", as_version=4)
    found = {"__name__": "__main__"}
    for cell in nb.cells:
        if cell.get("id") in ("g03-setup", "g03-mlp"):
            exec(cell.source, found)
    return graded_answers("03_gan", found, QUESTION_IDS)


HIDDEN = hidden_checks("03_gan")


@pytest.mark.parametrize("qid", ["q1", "q2", "q3", "q4"])
def test_reference_passes_public_and_hidden_checks(namespace, qid):
    assert failed(gan, namespace, qid) == []
    assert failed(HIDDEN, namespace, qid) == []


def with_answer(namespace, **answers):
    return {**namespace, **answers}


# ---- q1 -------------------------------------------------------------------------------------

def lsgan_sum(scores_real, scores_fake, a=-1.0, b=1.0, c=0.0):
    return (0.5 * ((scores_real - b) ** 2).sum() + 0.5 * ((scores_fake - a) ** 2).sum(),
            0.5 * ((scores_fake - c) ** 2).sum())


def lsgan_no_half(scores_real, scores_fake, a=-1.0, b=1.0, c=0.0):
    return ((scores_real - b) ** 2).mean() + ((scores_fake - a) ** 2).mean(), ((scores_fake - c) ** 2).mean()


def hinge_generator_hinged(scores_real, scores_fake):
    return F.relu(1 - scores_real).mean() + F.relu(1 + scores_fake).mean(), F.relu(1 - scores_fake).mean()


def hinge_without_relu(scores_real, scores_fake):
    return (1 - scores_real).mean() + (1 + scores_fake).mean(), -scores_fake.mean()


def detached(loss):
    def answer(*args, **kwargs):
        return tuple(v.detach() for v in loss(*args, **kwargs))
    return answer


@pytest.mark.parametrize("name, answer, check", [
    ("lsgan_losses", lsgan_sum, "means over the batch"),
    ("lsgan_losses", lsgan_no_half, "known values"),
    ("hinge_losses", hinge_generator_hinged, "known values"),
    ("hinge_losses", hinge_without_relu, "gradients"),
])
def test_q1_mistakes(namespace, name, answer, check):
    fails = failed(gan, with_answer(namespace, **{name: answer}), "q1")
    assert any(check in f for f in fails), fails


def test_q1_losses_must_keep_the_graph(namespace):
    fails = failed(gan, with_answer(namespace, lsgan_losses=detached(namespace["lsgan_losses"])), "q1")
    assert any("keep the graph" in f for f in fails), fails


# ---- q2 -------------------------------------------------------------------------------------

def naive_d_star(log_p_data, log_p_g, a=-1.0, b=1.0):
    p, q = log_p_data.exp(), log_p_g.exp()
    return (b * p + a * q) / (p + q)


def standard_gan_d_star(log_p_data, log_p_g, a=-1.0, b=1.0):
    return torch.sigmoid(log_p_data - log_p_g)


def unmasked_d_star(log_p_data, log_p_g, a=-1.0, b=1.0):
    return a + (b - a) * torch.sigmoid(log_p_data - log_p_g)


def test_q2_mistakes(namespace):
    for answer, check in ((naive_d_star, "finite everywhere"), (standard_gan_d_star, "first-order condition"),
                          (unmasked_d_star, "finite everywhere")):
        fails = failed(gan, with_answer(namespace, lsgan_optimal_discriminator=answer), "q2")
        assert any(check in f for f in fails), (answer.__name__, fails)


def test_q2_value_that_multiplies_nan_by_zero_fails(namespace):
    def value(log_p_data, log_p_g, dx, a=-1.0, b=1.0, c=0.0):
        weight = log_p_data.exp() + log_p_g.exp()
        return 0.5 * (weight * (unmasked_d_star(log_p_data, log_p_g, a, b) - c) ** 2).sum() * dx
    fails = failed(gan, with_answer(namespace, lsgan_value=value), "q2")
    assert any("finite everywhere" in f for f in fails), fails


def test_q2_value_without_the_half_fails(namespace):
    value = namespace["lsgan_value"]
    fails = failed(gan, with_answer(namespace, lsgan_value=lambda *args, **kw: 2 * value(*args, **kw)), "q2")
    assert any("generator's loss at D*" in f for f in fails), fails


def test_q2_hidden_value_is_the_triangular_discrimination(namespace):
    """The closed form the student derives: 2 V = int (p - q)^2 / (p + q), also at known extremes."""
    x = torch.linspace(-30, 30, 60_001, dtype=torch.float64)
    dx = (x[1] - x[0]).item()
    log_p = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0).log_prob(x)
    far = torch.distributions.Normal(torch.tensor(20.0, dtype=torch.float64), 1.0).log_prob(x)
    assert namespace["lsgan_value"](log_p, far, dx).item() == pytest.approx(1.0, abs=1e-6)   # disjoint: 2 V = 2
    assert namespace["lsgan_value"](log_p, log_p, dx).item() == pytest.approx(0.0, abs=1e-12)


# ---- q3 -------------------------------------------------------------------------------------

def _gp(critic, x_real, x_fake, eps, shape="per_example", create_graph=True):
    eps = eps.reshape(-1, *([1] * (x_real.dim() - 1)))
    x_hat = (eps * x_real.detach() + (1 - eps) * x_fake.detach()).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=create_graph)
    norm = grad.flatten(1).norm(dim=1)
    if shape == "one_sided":
        return F.relu(norm - 1).pow(2).mean()
    if shape == "squared":
        return (norm.pow(2) - 1).pow(2).mean()
    if shape == "batch_norm":
        return (grad.norm() - 1).pow(2)
    if shape == "last_dim":
        return (grad.norm(dim=-1) - 1).pow(2).mean()
    return (norm - 1).pow(2).mean()


@pytest.mark.parametrize("kwargs, check", [
    ({"shape": "one_sided"}, "linear critic"),
    ({"shape": "squared"}, "linear critic"),
    ({"shape": "batch_norm"}, "finite differences"),
    ({"shape": "last_dim"}, "finite differences"),
    ({"create_graph": False}, "differentiable"),
])
def test_q3_mistakes(namespace, kwargs, check):
    answer = lambda critic, x_real, x_fake, eps: _gp(critic, x_real, x_fake, eps, **kwargs)  # noqa: E731
    assert failed(gan, with_answer(namespace, wgan_gp_penalty=_gp), "q3") == []
    fails = failed(gan, with_answer(namespace, wgan_gp_penalty=answer), "q3")
    assert any(check in f for f in fails), fails


# ---- q4 -------------------------------------------------------------------------------------

def scores_without_clamp(x, n_side=5, spacing=1.0, std=0.05, min_share=None):
    """Nearest centre by rounding, without clamping to the grid: points beyond it get no mode."""
    k = n_side**2
    min_share = 1 / (6 * k) if min_share is None else min_share
    index = (x / spacing + (n_side - 1) / 2).round()
    inside = ((index >= 0) & (index < n_side)).all(1)
    centre = (index - (n_side - 1) / 2) * spacing
    high = ((x - centre).norm(dim=1) <= 3 * std) & inside
    mode = (index[inside, 0] * n_side + index[inside, 1]).long()
    q = torch.bincount(mode, minlength=k).double() / len(x)
    kl = torch.where(q > 0, q * (k * q).log(), torch.zeros_like(q)).sum()
    share = torch.bincount((index[high, 0] * n_side + index[high, 1]).long(), minlength=k) / len(x)
    return (share >= min_share).sum(), high.double().mean(), kl


def test_q4_mistakes(namespace):
    scores = namespace["grid_mode_scores"]

    def scores_fixed_share(x, n_side=5, spacing=1.0, std=0.05, min_share=None):
        return scores(x, n_side, spacing, std, 0.02)    # the lecture's 2%, whatever K and min_share

    for answer, check in ((scores_without_clamp, "beyond the grid"), (scores_fixed_share, "min_share")):
        fails = failed(gan, with_answer(namespace, grid_mode_scores=answer), "q4")
        assert any(check in f for f in fails), (answer.__name__, fails)


# ---- q5: the outcome and its margin -----------------------------------------------------------

Q5_MARGIN = 0.02   # the reference's worst high-quality share must stay this far above the target


@pytest.fixture(scope="module")
def q5_outcome(namespace):
    """The reference trained once on the public inputs, in this process (one thread)."""
    inputs = gan.Q5.inputs()
    return inputs, gan.q5_probe(namespace, inputs)


def test_q5_reference_passes_with_margin(q5_outcome):
    inputs, outputs = q5_outcome
    fails = [c.name for c in gan.Q5.checks if not _passes(c, inputs, outputs)]
    assert fails == []
    modes, hq = gan._grid_scores(gan.generator_samples(inputs, outputs), n_side=gan.GAN_GRID_SIDE)
    assert modes == gan.GAN_GRID_SIDE**2
    assert hq >= gan.GAN_MIN_HQ_SHARE + Q5_MARGIN, hq


def _passes(check, inputs, outputs):
    try:
        check.run(inputs, outputs)
        return True
    except AssertionError:
        return False


def test_q5_a_gan_trained_too_briefly_fails(namespace):
    train = namespace["train_grid_gan"]
    brief = with_answer(namespace, train_grid_gan=lambda x, seed=0: train(x, seed, n_steps=200))
    fails = failed(gan, brief, "q5")
    assert any("covers every mode" in f for f in fails), fails


def test_q5_rejects_a_generator_that_is_not_a_relu_mlp(namespace):
    odd = with_answer(namespace, train_grid_gan=lambda x, seed=0: torch.nn.Sequential(torch.nn.Linear(2, 2),
                                                                                       torch.nn.Tanh(),
                                                                                       torch.nn.Linear(2, 2)))
    outcomes = Checker(gan, odd).results("q5")
    assert not any(o.passed for o in outcomes)
    assert any("nn.Sequential(Linear, ReLU" in o.detail for o in outcomes)
