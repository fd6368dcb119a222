"""gmcourse.quality: the course classifiers, the sample scores, the reference ladder, bad input.

The ladder is measured here (2,000 vs 2,000 images, as in docs/sample_quality.md) and compared
with the committed gmcourse/data/files/quality_reference.json.

Tolerance against the json: everything is deterministic (fixed images, seeded noise, the
classifier in eval mode), so measured and committed numbers differ only by float32 round-off
of the convolutions across CPUs and thread counts, which moves FD by far less than 1e-3 of its
value. We allow 1% of FD (plus 0.05 for the near-zero floor), and 0.005 for precision, recall
and confident share (10 of 2,000 images crossing a k-NN radius or the 0.9 threshold). Neighbouring
rungs of the ladder differ by 19% or more (MNIST's blurred vs halves), most by factors of 1.4 to
20, so a retrained classifier, a changed distortion or an edited json still fails.
"""
from __future__ import annotations

import fnmatch
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmcourse.data.images import SYSTEM_FASHION_MNIST_DIR
from gmcourse.quality import (
    FEATURE_DIM,
    LADDER_ROWS,
    MIN_SAMPLES,
    N_REFERENCE,
    QualityClassifier,
    _manifold_coverage,
    _precision_recall,
    classifier_accuracy,
    classifier_features,
    classifier_path,
    confident_share,
    frechet_distance,
    gaussian_frechet_distance,
    ladder_sets,
    load_classifier,
    load_reference_ladder,
    measure_reference_ladder,
    precision_recall,
    reference_images,
    sample_quality,
)

ROOT = Path(__file__).resolve().parents[1]
FD_REL, FD_ABS, SHARE_ABS = 0.01, 0.05, 0.005

fashion_installed = all((SYSTEM_FASHION_MNIST_DIR / f).is_file() for f in (
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))
needs_fashion = pytest.mark.skipif(
    not fashion_installed,
    reason=f"Fashion-MNIST is not installed at {SYSTEM_FASHION_MNIST_DIR} "
           "(apt-get install dataset-fashion-mnist, or bash .ci/install-fashion-mnist)")


@pytest.fixture(scope="module")
def reference():
    return reference_images("mnist")  # (2000, 1, 28, 28): the first 2,000 test digits


@pytest.fixture(scope="module")
def sets():
    return ladder_sets("mnist")  # real training digits and their distortions, 2,000 each


@pytest.fixture(scope="module")
def mnist_ladder():
    return measure_reference_ladder("mnist")


# --- the classifiers ----------------------------------------------------------------------

def test_mnist_classifier_reaches_98_percent_on_the_2000_test_digits():
    accuracy = classifier_accuracy("mnist", "test")
    assert accuracy >= 0.98, f"expected >= 0.98 test accuracy, got {accuracy:.4f}"
    assert accuracy == pytest.approx(load_reference_ladder("mnist")["test_accuracy"], abs=1e-3)


@needs_fashion
def test_fashion_classifier_accuracy_is_the_documented_one():
    accuracy = classifier_accuracy("fashion_mnist", "test")
    assert accuracy >= 0.85, f"expected a working Fashion-MNIST classifier, got {accuracy:.4f}"
    assert accuracy == pytest.approx(load_reference_ladder("fashion_mnist")["test_accuracy"], abs=1e-3)


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_weights_are_a_small_plain_state_dict_shipped_as_package_data(dataset):
    path = classifier_path(dataset)
    assert path.stat().st_size < 500 * 1024, f"{path.name}: {path.stat().st_size} bytes"
    state = torch.load(path, weights_only=True)
    QualityClassifier().load_state_dict(state)  # strict: every key and shape matches
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    globs = package_data["gmcourse.data"]
    for shipped in (path, ROOT / "gmcourse/data/files/quality_reference.json"):
        assert any(fnmatch.fnmatch(f"files/{shipped.name}", g) for g in globs), (shipped.name, globs)


def test_classifier_is_cached_in_eval_mode_and_features_are_deterministic(reference):
    model = load_classifier("mnist")
    assert model is load_classifier("mnist", device="cpu")
    assert not model.training
    f1, f2 = classifier_features(reference[:300]), classifier_features(reference[:300])
    assert f1.shape == (300, FEATURE_DIM)
    assert torch.equal(f1, f2)


def test_scores_are_re_exported_from_metrics():
    import gmcourse.metrics as metrics
    import gmcourse.quality as quality
    for name in ("frechet_distance", "precision_recall", "confident_share", "sample_quality"):
        assert getattr(metrics, name) is getattr(quality, name)


# --- the reference ladder -----------------------------------------------------------------

def _assert_matches_json(measured, committed, dataset):
    assert committed["n"] == N_REFERENCE
    assert list(committed["rows"]) == list(LADDER_ROWS)
    for name in LADDER_ROWS:
        got, want = measured[name], committed["rows"][name]
        assert got.fd == pytest.approx(want["fd"], rel=FD_REL, abs=FD_ABS), (dataset, name, "fd")
        for key in ("precision", "recall", "confident_share"):
            assert getattr(got, key) == pytest.approx(want[key], abs=SHARE_ABS), (dataset, name, key)
        assert (got.n_samples, got.n_reference) == (N_REFERENCE, N_REFERENCE)


# FD from lowest to highest, as docs/sample_quality.md reports it: binarising costs a digit
# little but a garment its texture, so the two ladders differ in the middle
EXPECTED_ORDER = {
    "mnist": ["real", "binarised", "blurred", "halves", "noise"],
    "fashion_mnist": ["real", "blurred", "binarised", "halves", "noise"],
}


def _assert_ordered(ladder, dataset):
    fd = {name: ladder[name].fd for name in LADDER_ROWS}
    order = sorted(fd, key=fd.get)
    assert order == EXPECTED_ORDER[dataset], f"expected FD increasing along {EXPECTED_ORDER[dataset]}, got {fd}"
    steps = [fd[name] for name in order]
    for lower, higher in zip(steps, steps[1:]):
        assert higher > 1.15 * lower, f"rungs too close to tell apart: {fd}"
    assert fd["real"] < 0.3 * steps[1] and fd["noise"] > 10 * steps[-2], fd


def test_mnist_ladder_matches_the_committed_json(mnist_ladder):
    _assert_matches_json(mnist_ladder, load_reference_ladder("mnist"), "mnist")


def test_mnist_ladder_is_ordered_from_real_to_noise(mnist_ladder):
    _assert_ordered(mnist_ladder, "mnist")
    real, noise = mnist_ladder["real"], mnist_ladder["noise"]
    assert real.precision > 0.7 and real.recall > 0.7, real
    assert noise.precision < 0.01 and noise.recall < 0.01, noise
    assert real.confident_share > 0.9 and noise.confident_share < 0.1


@needs_fashion
def test_fashion_ladder_matches_the_committed_json_and_is_ordered():
    ladder = measure_reference_ladder("fashion_mnist")
    _assert_matches_json(ladder, load_reference_ladder("fashion_mnist"), "fashion_mnist")
    _assert_ordered(ladder, "fashion_mnist")


# --- properties of the scores -------------------------------------------------------------

def test_fd_of_a_set_with_itself_is_zero_symmetric_and_order_invariant(reference, sets):
    samples, reference = sets["binarised"][:500], reference[:500]  # 500 each: properties, not figures
    assert frechet_distance(reference, reference) == pytest.approx(0.0, abs=1e-3)
    forward, backward = frechet_distance(samples, reference), frechet_distance(reference, samples)
    assert forward > 1.0
    assert forward == pytest.approx(backward, rel=1e-6)
    shuffled = samples[torch.randperm(len(samples), generator=torch.Generator().manual_seed(1))]
    assert frechet_distance(shuffled, reference) == pytest.approx(forward, rel=1e-6)


def test_sample_quality_agrees_with_the_single_scores(reference, sets):
    samples, reference = sets["halves"][:500], reference[:400]
    q = sample_quality(samples, reference)
    assert q.fd == pytest.approx(frechet_distance(samples, reference), rel=1e-9)
    assert (q.precision, q.recall) == pytest.approx(precision_recall(samples, reference))
    assert q.confident_share == pytest.approx(confident_share(samples))
    assert (q.n_samples, q.n_reference, q.dataset) == (500, 400, "mnist")
    assert set(q.as_dict()) >= {"fd", "precision", "recall", "confident_share"}
    assert np.asarray(samples).shape == (500, 1, 28, 28)
    assert frechet_distance(samples.numpy(), reference) == pytest.approx(q.fd, rel=1e-9)  # numpy arrays work too


def test_precision_recall_of_real_high_of_noise_zero(reference, sets):
    precision, recall = precision_recall(sets["real"][:500], reference[:500])
    assert precision > 0.7 and recall > 0.7
    precision, recall = precision_recall(sets["noise"][:500], reference[:500])
    assert precision < 0.01 and recall < 0.01


def test_confident_share_of_real_digits_high_of_noise_low(reference, sets):
    real = reference[:500]
    assert confident_share(real) > 0.9
    assert confident_share(sets["noise"][:500]) < 0.1
    assert confident_share(real, threshold=1.0) <= confident_share(real, threshold=0.9) <= confident_share(real, threshold=0.5)


@st.composite
def gaussians(draw):
    d = draw(st.integers(1, 6))
    floats = st.floats(-3, 3, allow_nan=False)
    mu_1 = np.array(draw(st.lists(floats, min_size=d, max_size=d)))
    mu_2 = np.array(draw(st.lists(floats, min_size=d, max_size=d)))
    var_1 = np.array(draw(st.lists(st.floats(0.01, 4), min_size=d, max_size=d)))
    var_2 = np.array(draw(st.lists(st.floats(0.01, 4), min_size=d, max_size=d)))
    rotation = np.linalg.qr(np.random.default_rng(draw(st.integers(0, 2**32 - 1))).normal(size=(d, d)))[0]
    return mu_1, var_1, mu_2, var_2, rotation


@settings(max_examples=50, deadline=None)
@given(gaussians())
def test_gaussian_fd_matches_the_closed_form_for_commuting_covariances(g):
    # S_1 = R diag(a) R^T, S_2 = R diag(b) R^T commute, so eq. (1) is
    # ||mu_1 - mu_2||^2 + sum (sqrt(a) - sqrt(b))^2; it is symmetric and >= 0
    mu_1, a, mu_2, b, rotation = g
    sigma_1, sigma_2 = rotation @ np.diag(a) @ rotation.T, rotation @ np.diag(b) @ rotation.T
    expected = np.sum((mu_1 - mu_2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    fd = gaussian_frechet_distance(mu_1, sigma_1, mu_2, sigma_2)
    assert fd == pytest.approx(expected, rel=1e-6, abs=1e-8)
    assert gaussian_frechet_distance(mu_2, sigma_2, mu_1, sigma_1) == pytest.approx(fd, rel=1e-6, abs=1e-8)
    assert gaussian_frechet_distance(mu_1, sigma_1, mu_1, sigma_1) == pytest.approx(0.0, abs=1e-8)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(5, 60), d=st.integers(1, 8), k=st.integers(1, 4), seed=st.integers(0, 2**31))
def test_knn_coverage_of_a_set_by_itself_is_one_and_of_a_far_set_zero(n, d, k, seed):
    f = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert _manifold_coverage(f, f, k) == 1.0  # every point lies in its own ball, eq. (2)
    far = f + 1e3 * (f.norm(dim=1).max() + 1)
    assert _manifold_coverage(far, f, k) == 0.0
    assert _manifold_coverage(f[: n // 2 + 1], f, k) == 1.0  # a subset is inside the manifold
    g = torch.randn(n + 3, d, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    assert _precision_recall(g, f, k) == (_manifold_coverage(g, f, k), _manifold_coverage(f, g, k))


# --- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(100, 784), (100, 28, 28), (100, 3, 28, 28), (100, 1, 32, 32)])
def test_wrong_shape_names_the_expected_shape(shape):
    bad = torch.rand(shape)
    for call in (lambda: frechet_distance(bad, torch.rand(100, 1, 28, 28)),
                 lambda: precision_recall(bad, torch.rand(100, 1, 28, 28)),
                 lambda: confident_share(bad),
                 lambda: classifier_features(bad),
                 lambda: sample_quality(torch.rand(100, 1, 28, 28), bad)):
        with pytest.raises(ValueError, match=r"shape \(N, 1, 28, 28\)"):
            call()


@pytest.mark.parametrize("bad", [
    torch.rand(100, 1, 28, 28) * 2,
    torch.rand(100, 1, 28, 28) - 0.5,
    torch.full((100, 1, 28, 28), math.nan),
])
def test_values_outside_unit_interval_name_the_range(bad):
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        frechet_distance(bad, torch.rand(100, 1, 28, 28))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        sample_quality(torch.rand(100, 1, 28, 28), bad)


def test_uint8_images_are_refused_with_a_pointer_to_to_unit():
    with pytest.raises(ValueError, match="floats in \\[0, 1\\].*to_unit"):
        confident_share(torch.zeros(100, 1, 28, 28, dtype=torch.uint8))


def test_fewer_samples_than_feature_dimensions_names_both_numbers():
    few, enough = torch.rand(FEATURE_DIM, 1, 28, 28), torch.rand(MIN_SAMPLES, 1, 28, 28)
    for call in (lambda: frechet_distance(few, enough), lambda: frechet_distance(enough, few),
                 lambda: sample_quality(few, enough)):
        with pytest.raises(ValueError, match=f"at least {MIN_SAMPLES} images, got {FEATURE_DIM}"):
            call()
    frechet_distance(enough, enough)  # the minimum itself is accepted
    with pytest.raises(ValueError, match="more than 3 images in each set, got 3 samples"):
        precision_recall(torch.rand(3, 1, 28, 28), enough, k=3)


@pytest.mark.parametrize("dataset", ["cifar10", "MNIST", "fashion-mnist"])
def test_unknown_dataset_names_the_known_ones(dataset):
    x = torch.rand(MIN_SAMPLES, 1, 28, 28)
    for call in (lambda: load_classifier(dataset), lambda: frechet_distance(x, x, dataset=dataset),
                 lambda: precision_recall(x, x, dataset=dataset), lambda: confident_share(x, dataset=dataset),
                 lambda: sample_quality(x, x, dataset=dataset), lambda: load_reference_ladder(dataset)):
        with pytest.raises(ValueError, match=r"dataset must be one of \('mnist', 'fashion_mnist'\)"):
            call()


@pytest.mark.parametrize("kwargs, message", [
    (dict(k=0), "k must be a positive int"),
    (dict(k=2.5), "k must be a positive int"),
    (dict(threshold=0.0), r"threshold must be a probability in \(0, 1\]"),
    (dict(threshold=1.5), r"threshold must be a probability in \(0, 1\]"),
])
def test_bad_k_or_threshold_is_refused(kwargs, message):
    x = torch.rand(MIN_SAMPLES, 1, 28, 28)
    with pytest.raises(ValueError, match=message):
        sample_quality(x, x, **kwargs)


def test_gaussian_fd_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"mu_1 of shape \(D,\)"):
        gaussian_frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(3))
