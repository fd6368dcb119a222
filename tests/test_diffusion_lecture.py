"""The committed lecture 06 (score-based and diffusion models): its printed tables are those of its results file, and its figures meet the issue's targets where they
do (the ones that do not are strict xfails that name the figure). Reads the committed outputs; runs
nothing heavy (the pieces themselves: tests/test_diffusion.py).
That it is executed top to bottom, small and prose first: tests/test_lectures_committed.py."""
import re
from pathlib import Path

import pytest

from lecture_helpers import lecture_fixtures, outputs_text

LECTURE = Path(__file__).resolve().parents[1] / "lectures" / "06_diffusion.ipynb"
NUMBER = r"(-?\d+(?:\.\d+)?)"


nb, figures = lecture_fixtures(LECTURE)


def test_printed_speed_table_is_the_results_file(nb, figures):
    text = outputs_text(nb)
    for name in ("DDIM 10", f"DDIM {int(figures['sample_steps'])}", "DDIM 50"):
        key = name.lower().replace(" ", "_")
        line = re.search(re.escape(name) + r"\s+\d+\s+" + NUMBER + r"\s+FD " + NUMBER, text)
        assert line, f"the speed table has no row {name!r}"
        assert float(line.group(1)) == pytest.approx(figures[f"{key}_seconds_per_64"], abs=0.051)
        assert float(line.group(2)) == pytest.approx(figures[f"{key}_table_fd"], abs=0.051)
    ddpm = re.search(r"DDPM 1000\s+\d+\s+" + NUMBER + r"\s+not measured", text)
    assert ddpm and float(ddpm.group(1)) == pytest.approx(figures["ddpm_1000_seconds_per_64"], abs=0.051)


def test_fewer_steps_are_faster(figures):
    seconds = [figures[f"{k}_seconds_per_64"] for k in ("ddim_10", "ddim_20", "ddim_50", "ddpm_1000")]
    assert seconds == sorted(seconds)


def test_printed_guidance_table_is_the_results_file(nb, figures):
    text = outputs_text(nb)
    for label, key in (("unconditional", "unconditional"), ("0.0", "w0"), ("0.5", "w0_5"), ("1.0", "w1"), ("4.0", "w4")):
        line = re.search(r"\n" + re.escape(label) + r"\s+(-|\d+\.\d%)\s+FD " + NUMBER, text)
        assert line, f"the guidance table has no row {label!r}"
        assert float(line.group(2)) == pytest.approx(figures[f"guidance_{key}_table_fd"], abs=0.051)
        if key != "unconditional":
            assert float(line.group(1)[:-1]) == pytest.approx(100 * figures[f"guidance_{key}_requested_share"], abs=0.051)


def test_the_headline_scale_is_the_smallest_that_reaches_the_requested_share(figures):
    """The lecture's rule, chosen by the classifier alone: the smallest w of the sweep at >= 95%."""
    reaching = [w for w, key in ((0.0, "w0"), (0.5, "w0_5"), (1.0, "w1"), (4.0, "w4"))
                if figures[f"guidance_{key}_requested_share"] >= 0.95]
    assert reaching and figures["guidance"] == min(reaching)


def test_guidance_trades_diversity_for_the_requested_digit(figures):
    """Eq. (21): a larger w gives the requested digit more often and covers less of the real digits."""
    assert figures["guidance_w4_requested_share"] > figures["guidance_w0_requested_share"]
    assert figures["guidance_w4_recall"] < figures["guidance_w0_recall"]


def test_guided_samples_are_the_requested_digit(figures):
    """Issue 15: guided class-conditional samples classified as the requested digit >= 95% of the time."""
    assert figures["sample_requested_share"] >= 0.95


def test_2d_samples_lie_on_the_modes(figures):
    """Issue 15: >= 95% of the 2D samples within 3 sigma of a mode of the 8 gaussians."""
    assert figures["toy_support_share_ddpm"] >= 0.95


def test_learnt_score_is_close_to_the_true_score_at_every_noise_level(figures):
    errors = {k: v for k, v in figures.items() if k.startswith("toy_score_rel_error_t")}
    assert len(errors) == 5 and max(errors.values()) < 0.5


def test_ddim_converges_to_the_probability_flow_ode(figures):
    gaps = [figures[f"toy_ddim_{n}_gap_to_ode"] for n in (10, 20, 50, 100, 1000)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.2 * gaps[0]


def test_likelihoods_are_kls_and_the_bound_is_printed_in_bits(figures, nb):
    """KLs are >= 0 up to the Monte Carlo error of the test points; the bound in bits per dimension is the
    printed one (its value is discussed, not bounded here: this model is not trained for it)."""
    assert figures["toy_kl_bound_8_gaussians"] > -0.02 and figures["toy_ode_kl_8_gaussians"] > -0.02
    line = re.search(r"bound on the test digits: " + NUMBER + r" \+- " + NUMBER, outputs_text(nb))
    assert line and float(line.group(1)) == pytest.approx(figures["test_bpd_bound"], abs=6e-4)
    assert float(line.group(2)) == pytest.approx(figures["test_bpd_bound_se"], abs=6e-4) and figures["test_bpd_bound"] > 0


def test_our_samplers_agree_with_diffusers(figures):
    assert figures["bridge_ddim_max_diff"] < 1e-3 and figures["bridge_ddpm_max_diff"] < 1e-2


def test_samples_are_scored_against_the_floor(figures, nb):
    assert figures["real_fd_floor"] < figures["sample_fd"]
    text = outputs_text(nb)
    line = re.search(r"guidance w = [\d.]+: FD " + NUMBER, text)
    assert line and float(line.group(1)) == pytest.approx(figures["sample_fd"], abs=0.051)


@pytest.mark.xfail(strict=True, reason="issue 15's target (Fréchet distance <= 10 with a DDIM sampler, 2,000 samples "
                   "against the test digits) is not reached within the lecture's CPU budget "
                   "(lectures/06_diffusion.results.json, sample_fd): see the issue's closing note")
def test_fd_target_of_the_issue(figures):
    assert figures["sample_fd"] <= 10
