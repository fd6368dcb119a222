"""The committed lecture 05 (energy-based models): its printed
tables are those of its results file, and its figures meet the issue's targets where they do (the
ones that do not are strict xfails that name the figure). Reads the committed outputs; runs nothing
heavy (the pieces themselves: tests/test_ebm.py).
That it is executed top to bottom, small and prose first: tests/test_lectures_committed.py."""
import re
from pathlib import Path

import pytest

from lecture_helpers import lecture_fixtures, outputs_text

LECTURE = Path(__file__).resolve().parents[1] / "lectures" / "05_ebm.ipynb"
DETECTORS = {"EBM energy": "EBM_energy", "EBM flatness": "EBM_flatness", "Glow bits/dim": "Glow_bits_per_dim",
             "share of pixels > 0.1 (best sign)": "share_of_pixels_above_01",
             "mean brightness (best sign)": "mean_brightness"}
CORRECTED = {"Glow bits/dim - L": "Glow_bits_per_dim_minus_L", "z(energy) - z(L)": "z_energy_minus_z_L",
             "L alone": "L_alone"}
TRIVIAL = ("share_of_pixels_above_01", "mean_brightness")


nb, figures = lecture_fixtures(LECTURE)


def test_printed_2d_table_is_the_results_file(nb, figures):
    text = outputs_text(nb)
    for label, key in (("contrastive divergence (Langevin)", "toy_cd_kl_8_gaussians"),
                       ("exact ML (Z on a grid)", "toy_grid_ml_kl_8_gaussians"),
                       ("denoising score matching", "toy_dsm_kl_8_gaussians")):
        line = re.search(re.escape(label) + r"\s+(-?\d+\.\d+)\s+\d+", text)
        assert line, f"the 2D table has no row {label!r}"
        assert float(line.group(1)) == pytest.approx(figures[key], abs=6e-5)


def test_printed_ood_table_is_the_results_file(nb, figures):
    text = outputs_text(nb)
    for label, key in (DETECTORS | CORRECTED).items():
        line = re.search(re.escape(label) + r"\s+(\d\.\d{4})\s+(\d\.\d{4})", text)
        assert line, f"the AUROC table has no row {label!r}"
        assert float(line.group(1)) == pytest.approx(figures[f"auroc_{key}_mnist_in"], abs=6e-5)
        assert float(line.group(2)) == pytest.approx(figures[f"auroc_{key}_fashion_in"], abs=6e-5)


def test_kls_are_kls_and_the_best_is_the_minimum(figures):
    kls = [figures[f"toy_{m}_kl_8_gaussians"] for m in ("cd", "grid_ml", "dsm")]
    assert all(kl > -0.02 for kl in kls)  # eq. (2) is >= 0 up to the Monte Carlo error of the test points
    assert figures["best_kl_8_gaussians"] == min(kls)


def test_regulariser_holds_the_energy_that_drifts_without_it(figures):
    assert abs(figures["ablation_no_regulariser_data_energy"]) > 3 * abs(figures["ablation_full_recipe_data_energy"])


def test_samples_are_scored_against_the_floor(figures):
    assert figures["real_fd_floor"] < min(figures["sample_fd_buffer"], figures["sample_fd_fresh"])
    assert figures["sampling_seconds_buffer"] > 0


def test_2d_target_of_the_issue_by_exact_likelihood(figures):
    """Issue 22: KL to the true density <= 0.15 nats on 8 gaussians, with Z by quadrature."""
    assert figures["toy_grid_ml_kl_8_gaussians"] <= 0.15


@pytest.mark.xfail(strict=True, reason="issue 22's 2D target (KL <= 0.15 nats) is not reached by the EBM trained "
                   "by contrastive divergence within the lecture's budget (lectures/05_ebm.results.json, "
                   "toy_cd_kl_8_gaussians; the per-mode masses show why): see the issue's closing note")
def test_2d_target_of_the_issue_by_contrastive_divergence(figures):
    assert figures["toy_cd_kl_8_gaussians"] <= 0.15


def test_energy_detects_fashion_among_digits(figures):
    """Issue 22: MNIST in, Fashion-MNIST out: energy AUROC >= 0.99, above every trivial detector."""
    energy = figures["auroc_EBM_energy_mnist_in"]
    assert energy >= 0.99
    assert all(energy > figures[f"auroc_{key}_mnist_in"] for key in TRIVIAL)


def test_likelihood_prefers_the_outliers_trained_on_fashion(figures):
    """Nalisnick et al.: the flow trained on Fashion-MNIST gives MNIST digits the higher likelihood."""
    assert figures["auroc_Glow_bits_per_dim_fashion_in"] < 0.5


@pytest.mark.xfail(strict=True, reason="issue 22's target (energy AUROC >= 0.90 with Fashion-MNIST in and MNIST "
                   "out) is not reached: the energy fails like the flow's likelihood (the lecture measures why and "
                   "what separates them instead); see the issue's closing note")
def test_energy_detects_digits_among_fashion(figures):
    assert figures["auroc_EBM_energy_fashion_in"] >= 0.90


def test_complexity_correction_rescues_the_hard_direction_and_breaks_the_easy_one(figures):
    """Eq. (10): subtracting a compressor's bits turns the failure around for the flow and the energy,
    and costs the direction in which the raw scores worked."""
    for score in ("Glow_bits_per_dim_minus_L", "z_energy_minus_z_L"):
        assert figures[f"auroc_{score}_fashion_in"] >= 0.90
    assert figures["auroc_Glow_bits_per_dim_minus_L_mnist_in"] < 0.6
    assert figures["auroc_z_energy_minus_z_L_mnist_in"] < figures["auroc_EBM_energy_mnist_in"]
