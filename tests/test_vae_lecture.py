"""The committed lecture 02 (VAE) is executed top to bottom in full mode and reaches the issue's
quality on held-out digits. Reads the committed outputs; runs nothing heavy."""
import re
from pathlib import Path

import nbformat
import pytest

from gmcourse.results import load_results
from lecture_helpers import assert_executed_top_to_bottom, lecture_definitions, outputs_text

LECTURE = Path(__file__).resolve().parents[1] / "lectures" / "02_vae.ipynb"


@pytest.fixture(scope="module")
def nb():
    return nbformat.read(LECTURE, as_version=4)


def test_executed_top_to_bottom_without_errors(nb):
    assert_executed_top_to_bottom(nb)


@pytest.fixture(scope="module")
def figures():
    record = load_results("02_vae", LECTURE.with_name("02_vae.results.json"))
    assert record["mode"] == "full", "commit the results of a full-mode run"
    return record["figures"]


def test_executed_in_full_mode(nb, figures):
    assert "7000 training, 1000 validation and 2000 test digits" in outputs_text(nb)
    assert figures["epochs_conv"] >= 100


def test_small_enough_to_commit():
    assert LECTURE.stat().st_size < 4 * 2**20


def test_quality_targets_on_test_digits(figures):
    """The issue's targets, read from the results file the lecture wrote (-L_k on the 2,000 test digits)."""
    assert figures["mlp_vae_test_nll_bound_k1"] <= 103, "MLP VAE test -ELBO > 103 nats"
    assert figures["conv_vae_test_nll_bound_k1"] <= 98, "conv VAE test -ELBO > 98 nats"
    assert figures["conv_vae_test_nll_bound_k100"] <= 93, "conv VAE IWAE-100 > 93 nats"
    for model in ("mlp_vae", "conv_vae"):  # the bound tightens with k
        k1, k10, k100 = (figures[f"{model}_test_nll_bound_k{k}"] for k in (1, 10, 100))
        assert k1 > k10 > k100


def test_printed_table_is_the_results_file(nb, figures):
    table = re.search(r"k\s+MLP VAE\s+conv VAE\n((?:\s+\d+\s+[\d.]+\s+[\d.]+\n)+)", outputs_text(nb))
    assert table, "the table of test bounds is missing"
    for k, mlp, conv in re.findall(r"(\d+)\s+([\d.]+)\s+([\d.]+)", table.group(1)):
        assert float(mlp) == pytest.approx(figures[f"mlp_vae_test_nll_bound_k{k}"], abs=0.006)
        assert float(conv) == pytest.approx(figures[f"conv_vae_test_nll_bound_k{k}"], abs=0.006)


def test_sampling_is_timed(nb, figures):
    assert re.search(r"64 samples in [\d.]+ ms", outputs_text(nb)) and figures["mlp_vae_sampling_ms_64"] > 0


@pytest.fixture(scope="module")
def definitions(nb):
    """The lecture's imports, functions, classes and constants (not its training code), on the CPU."""
    return lecture_definitions(nb)


def test_cifar_gpu_cell_code_runs_on_cpu_sized_down(definitions):
    """The CIFAR-10 cell only trains on a GPU; its model code must still work (shapes, loss, grads)."""
    torch = definitions["torch"]
    model = definitions["colour_conv_vae"](z_dim=8, channels=4)
    x = torch.rand(3, 3, 32, 32)
    loss = model.loss(x)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.sigmoid(model.decoder(torch.randn(2, 8))).shape == (2, 3, 32, 32)


def test_lecture_iwae_bound_tightens_with_k(definitions):
    torch = definitions["torch"]
    torch.manual_seed(0)
    vae = definitions["VAE"](definitions["MLPEncoder"](4, 16), definitions["MLPDecoder"](4, 16), 4)
    x = (torch.rand(8, 1, 28, 28) < 0.3).float()
    bounds = [definitions["iwae_log_px"](vae, x.repeat(50, 1, 1, 1), k).mean().item() for k in (1, 10, 100)]
    assert bounds[0] < bounds[1] < bounds[2]
