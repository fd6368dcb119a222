"""The committed lecture 04 (normalizing flows): its figures are those of its results file; the continuous flow's code is checked against a closed form.
Reads the committed outputs; runs nothing heavy (the layers themselves: tests/test_flows.py).
That it is executed top to bottom, small and prose first: tests/test_lectures_committed.py."""
import math
import re
from pathlib import Path

import pytest

from lecture_helpers import lecture_definitions, lecture_fixtures, outputs_text

LECTURE = Path(__file__).resolve().parents[1] / "lectures" / "04_flows.ipynb"
DATA_SETS = ("8_gaussians", "checkerboard", "rings")
FLOWS = ("nice", "realnvp", "glow", "maf", "nsf")


nb, figures = lecture_fixtures(LECTURE)


def test_printed_kl_table_is_the_results_file(nb, figures):
    table = re.search(r"KL \(nats\)\s+NICE\s+RealNVP\s+Glow\s+MAF\s+NSF\n((?:.+\n){3})", outputs_text(nb))
    assert table, "the table of KLs is missing"
    for line, data_set in zip(table.group(1).splitlines(), DATA_SETS):
        values = [float(v) for v in re.findall(r"-?\d+\.\d+", line)]
        expected = [figures[f"{flow}_kl_{data_set}"] for flow in FLOWS]
        assert values == pytest.approx(expected, abs=6e-5), line


def test_kl_is_a_kl(figures):
    """Eq. (1) cannot be negative beyond the Monte Carlo error of the test points and the entropy."""
    for data_set in DATA_SETS:
        for flow in FLOWS:
            assert figures[f"{flow}_kl_{data_set}"] > -0.02
        assert figures[f"best_kl_{data_set}"] == min(figures[f"{flow}_kl_{data_set}"] for flow in FLOWS)


def test_autoregressive_flows_trade_speed_one_way_for_the_other(figures):
    assert figures["maf_sampling_ms_16"] > 20 * figures["maf_density_ms_16"]
    assert figures["iaf_density_ms_16"] > 20 * figures["iaf_sampling_ms_16"]


def test_hutchinson_rademacher_has_less_variance(figures):
    assert 0 < figures["hutchinson_rademacher_variance"] < figures["hutchinson_gaussian_variance"]


def test_bits_per_dim_are_corrected_and_sampling_is_scored(nb, figures):
    text = outputs_text(nb)
    assert "the dequantisation correction: D log 256 = 4347.4 nats per digit" in text
    assert 0.5 < figures["glow_best_test_bpd"] < 8  # corrected: below 8 bits (raw bytes), above any published flow
    assert re.search(r"2000 samples in [\d.]+ s", text)
    assert figures["real_fd_floor"] < figures["sample_fd_t1"]


@pytest.fixture(scope="module")
def definitions(nb):
    """The lecture's imports, functions, classes and constants (not its training code), on the CPU."""
    return lecture_definitions(nb)


def test_continuous_flow_matches_the_closed_form_of_a_linear_field(definitions):
    """With g(z, t) = A z the ODE gives z(1) = exp(A) x and eq. (14) gives log N(exp(A) x) + tr(A)."""
    torch = definitions["torch"]
    a = torch.tensor([[0.3, -0.5], [0.2, -0.1]])

    class Linear(torch.nn.Module):
        def forward(self, t, z):
            return z @ a.T

    cnf = definitions["CNF"](hidden=4, n_steps=20)
    cnf.field = Linear()
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    z = x @ torch.linalg.matrix_exp(a).T
    expected = -0.5 * (z**2).sum(1) - math.log(2 * math.pi) + torch.trace(a)
    assert torch.allclose(cnf.log_prob(x).detach(), expected, atol=1e-5)
    cnf.eps = torch.randint(0, 2, (5, 2), generator=torch.Generator().manual_seed(1)).float() * 2 - 1
    hutchinson = cnf.log_prob(x).detach()  # unbiased per draw; for Rademacher noise eps^T A eps = tr(A) + off-diagonal
    off_diagonal = (a[0, 1] + a[1, 0]) * cnf.eps[:, 0] * cnf.eps[:, 1]
    assert torch.allclose(hutchinson, expected + off_diagonal, atol=1e-5)


def test_2d_targets_of_the_issue(figures):
    """Issue 21: the best flow's KL (held-out NLL minus the true entropy) on each data set."""
    assert figures["best_kl_8_gaussians"] <= 0.05
    assert figures["best_kl_checkerboard"] <= 0.10
    assert figures["best_kl_rings"] <= 0.10


@pytest.mark.xfail(strict=True, reason="issue 21's target of 1.25 bits/dim is not reached within the lecture's "
                   "10-minute budget: the committed run's figure is in lectures/04_flows.results.json "
                   "(glow_best_test_bpd); see the issue's closing note")
def test_mnist_target_of_the_issue(figures):
    """Issue 21: at most 1.25 bits per dimension on the 2,000 test digits, the best flow of the lecture."""
    assert figures["glow_best_test_bpd"] <= 1.25
