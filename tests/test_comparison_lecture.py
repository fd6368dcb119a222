"""The committed lecture 08 (all families compared on the same digits): the issue's protocol (every
family, the same budget, at least three seeds), its printed tables are those of its results file, and
what its text says of the figures holds. Reads the committed outputs; runs nothing heavy.
That it is executed top to bottom, small and prose first: tests/test_lectures_committed.py."""
import re
from pathlib import Path

import pytest

from lecture_helpers import lecture_fixtures, outputs_text

LECTURE = Path(__file__).resolve().parents[1] / "lectures" / "08_comparison.ipynb"
FAMILIES = ("autoregressive", "vae", "gan", "flow", "ebm", "diffusion")
LABELS = {"autoregressive": "autoregressive", "vae": "VAE", "gan": "GAN", "flow": "flow", "ebm": "EBM",
          "diffusion": "diffusion"}
WITH_LIKELIHOOD = ("autoregressive", "vae", "flow", "diffusion")

nb, figures = lecture_fixtures(LECTURE)


def test_every_family_was_run_under_one_budget_with_three_seeds(figures):
    """Issue 17: each family, the same training budget, at least 3 seeds."""
    assert figures["n_seeds"] >= 3 and figures["train_seconds"] > 0
    for family in FAMILIES:
        assert figures[f"{family}_steps"] > 0
        assert 0 <= figures[f"{family}_failed_runs"] <= figures["n_seeds"]


def test_likelihoods_only_where_there_is_one(figures):
    for family in FAMILIES:
        assert (f"{family}_bits_per_dim" in figures) == (family in WITH_LIKELIHOOD), family
    assert 0 < figures["autoregressive_bits_per_dim"] < 1  # exact, binarised: below the 1 bit a pixel of a coin flip
    assert 0 < figures["flow_bits_per_dim"] < 8  # exact, 8-bit: below the 8 bits a pixel of a uniform model
    for family in ("vae", "diffusion"):  # bounds: positive, but a bound after 20 s may be looser than the trivial code
        assert figures[f"{family}_bits_per_dim"] > 0
    for family in WITH_LIKELIHOOD:
        assert figures[f"{family}_bits_per_image"] == pytest.approx(784 * figures[f"{family}_bits_per_dim"], rel=1e-9)


def test_printed_quality_table_is_the_results_file(nb, figures):
    text = outputs_text(nb)
    for family in FAMILIES:
        line = re.search(rf"\n{re.escape(LABELS[family])}\s+(\d+\.\d) ±\s+(\d+\.\d)\s+(\d\.\d\d)\s+(\d\.\d\d)\s+(\d\.\d\d)\s+([\d,]+)\s+(\d+)",
                         text)
        assert line, f"the sample-quality table has no row for {family}"
        assert float(line.group(1)) == pytest.approx(figures[f"{family}_fd_mean"], abs=0.06)
        assert float(line.group(2)) == pytest.approx(figures[f"{family}_fd_spread"], abs=0.06)
        assert float(line.group(4)) == pytest.approx(figures[f"{family}_recall"], abs=0.006)
        assert int(line.group(7)) == figures[f"{family}_evaluations"]


def test_samples_are_scored_against_the_floors(figures):
    assert figures["floor_fd_real"] < figures["floor_fd_binarised"]
    for family in FAMILIES:
        assert figures[f"{family}_fd_mean"] > figures["floor_fd_real"]
        assert figures[f"{family}_samples_per_second"] > 0


def test_probe_accuracies_are_accuracies(figures):
    for key in ("probe_accuracy_pixels", *(f"{family}_probe_accuracy" for family in FAMILIES)):
        assert 0.1 < figures[key] <= 1.0


def test_the_readme_and_the_lecture_show_one_table(nb):
    from gmcourse.results import COMPARISON_BEGIN, COMPARISON_END, comparison_table

    readme = (LECTURE.parents[1] / "README.md").read_text()
    shown = readme.split(COMPARISON_BEGIN, 1)[1].split(COMPARISON_END, 1)[0].strip()
    assert shown == comparison_table(), "run `python -m gmcourse.results` to refresh the README's comparison table"
    displayed = [output["data"]["text/markdown"] for cell in nb.cells for output in cell.get("outputs", [])
                 if "text/markdown" in output.get("data", {})]
    assert displayed == [comparison_table()]


def test_what_the_text_says_of_the_figures(figures):
    """'Where the words hold, and where they do not': each comparison the text makes."""
    f = figures
    relative = {family: f[f"{family}_fd_spread"] / f[f"{family}_fd_mean"] for family in FAMILIES}
    assert relative["gan"] <= max(relative["vae"], relative["autoregressive"])
    assert max(relative, key=relative.get) == "diffusion"
    assert f["ebm_failed_runs"] == f["n_seeds"] and f["ebm_diversity"] < 0.25
    assert all(f[f"{family}_failed_runs"] == 0 for family in FAMILIES if family != "ebm")
    assert abs(f["autoregressive_bits_per_dim"] - f["vae_bits_per_dim"]) < 0.01
    assert f["flow_bits_per_dim"] < f["diffusion_bits_per_dim"] and f["diffusion_bits_per_dim"] > 8
    assert min(f["vae_samples_per_second"], f["gan_samples_per_second"], f["flow_samples_per_second"]) > 10 * max(
        f["autoregressive_samples_per_second"], f["diffusion_samples_per_second"], f["ebm_samples_per_second"])
    fd = {family: f[f"{family}_fd_mean"] for family in FAMILIES}
    assert sorted(fd, key=fd.get)[:3] == sorted(["autoregressive", "gan", "vae"], key=fd.get)
    assert max(fd["autoregressive"], fd["gan"]) < fd["vae"] < min(fd["flow"], fd["diffusion"]) and fd["ebm"] == max(fd.values())
    assert f["gan_precision"] < f["autoregressive_precision"] and f["gan_recall"] < f["autoregressive_recall"]
    assert max(f["autoregressive_bits_per_image"], f["vae_bits_per_image"]) < f["lzma_bits_binarised"]
    assert f["flow_bits_per_image"] > f["lzma_bits_8bit"]
    probe = {family: f[f"{family}_probe_accuracy"] for family in FAMILIES}
    assert max(probe, key=probe.get) == "diffusion"
    assert min(probe["gan"], probe["autoregressive"]) > probe["vae"] > f["probe_accuracy_pixels"]
    assert min(probe, key=probe.get) == "flow" and probe["flow"] < f["probe_accuracy_pixels"]
