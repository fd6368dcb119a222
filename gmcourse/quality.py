"""One sample-quality score for every family: Fréchet distance, precision/recall, confidence.

Likelihoods cannot compare a GAN with a flow; a score computed on *samples* can. Every score
here looks at images through the features of a small CNN that the course trains itself on the
same data (``scripts/train_classifier.py``; weights shipped as package data in
``gmcourse/data/files/classifier_{mnist,fashion_mnist}.pt``). How to read the numbers, the
classifiers' accuracies and a reference ladder are in ``docs/sample_quality.md``.

Shapes: images ``x`` are floats in [0, 1] of shape (N, 1, 28, 28) (``to_unit`` of the loaders'
uint8); features ``f`` are (N, D) with D = :data:`FEATURE_DIM` = 64, the classifier's
penultimate layer (the output of its first linear layer, before the ReLU).

With features of the samples ``f_g`` (mean mu_g, covariance S_g) and of the reference ``f_r``
(mu_r, S_r), each modelled as a Gaussian, the Fréchet distance (Heusel et al., 2017; the FID
computed with this classifier instead of Inception) is

    FD = ||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 (S_g S_r)^{1/2})                        (1)

Precision and recall (Kynkäänniemi et al., 2019) approximate each set's manifold by the union
of balls around its points, radius the distance to the k-th nearest neighbour in the same set:

    precision = 1/N_g sum_g 1[ exists r: ||f_g - f_r|| <= rho_k(f_r) ]                (2)
    recall    = 1/N_r sum_r 1[ exists g: ||f_r - f_g|| <= rho_k(f_g) ]                (3)

(precision: the share of samples inside the real manifold; recall: the share of real
images inside the samples' manifold). The confident share is

    confident share = 1/N sum_n 1[ max_c p(c | x_n) >= threshold ]                    (4)

with p(c | x) the classifier's softmax: the share of samples the classifier would label. The
classifiers were trained to give uniform noise a uniform p(c | x) (outlier exposure), so noise
is not counted as confident.

Sample counts: eq. (1) needs a covariance that can have full rank, so each set needs at least
:data:`MIN_SAMPLES` = D + 1 = 65 images; fewer raise ``ValueError`` naming the numbers. FD is
biased upwards at small N, so compare scores only at the same N: the reference ladder and the
lectures use 2,000 samples against the first 2,000 test images (:func:`reference_images`).

Reproducible: the classifier runs in eval mode (no dropout, fixed batch-norm statistics) under
``torch.no_grad``; the same images give the same features and scores.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from gmcourse.data import load_fashion_mnist, load_mnist, to_unit
from gmcourse.data.images import PACKAGE_FILES_DIR

__all__ = [
    "DATASETS",
    "FEATURE_DIM",
    "MIN_SAMPLES",
    "N_REFERENCE",
    "QualityClassifier",
    "SampleQuality",
    "classifier_accuracy",
    "classifier_features",
    "classifier_path",
    "confident_share",
    "frechet_distance",
    "gaussian_frechet_distance",
    "ladder_sets",
    "load_classifier",
    "load_reference_ladder",
    "measure_reference_ladder",
    "precision_recall",
    "reference_images",
    "sample_quality",
]

DATASETS = ("mnist", "fashion_mnist")
FEATURE_DIM = 64  # D: width of the feature layer
MIN_SAMPLES = FEATURE_DIM + 1  # eq. (1) needs N > D for a full-rank covariance
N_REFERENCE = 2000  # the ladder and the lectures: 2,000 samples vs the first 2,000 test images
IMAGE_SHAPE = (1, 28, 28)
REFERENCE_LADDER_PATH = PACKAGE_FILES_DIR / "quality_reference.json"
LADDER_ROWS = ("real", "binarised", "blurred", "halves", "noise")  # the ladder, in the order
_BATCH = 500


def _check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    return dataset


def classifier_path(dataset: str = "mnist") -> Path:
    """Where the weights of the course classifier for ``dataset`` live (package data)."""
    return PACKAGE_FILES_DIR / f"classifier_{_check_dataset(dataset)}.pt"


class QualityClassifier(nn.Module):
    """A small CNN (93,642 parameters, 375 KB of weights) whose penultimate layer gives the features.

    x (B, 1, 28, 28) in [0, 1] -> features (B, 64) -> logits (B, 10).
    """

    def __init__(self, n_classes: int = 10, feature_dim: int = FEATURE_DIM, dropout: float = 0.3):
        super().__init__()
        self.body = nn.Sequential(  # strided convolutions: cheap enough to score 10,000 images in seconds
            nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),  # (B, 64, 7, 7)
            nn.Conv2d(64, 64, 3, stride=2), nn.BatchNorm2d(64), nn.ReLU(),  # (B, 64, 3, 3)
            nn.Flatten(),  # (B, 576)
            nn.Linear(64 * 3 * 3, feature_dim),  # (B, D): the features
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(feature_dim, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x - 0.5)  # (B, D); centring the pixels helps the first layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, n_classes) logits


@lru_cache(maxsize=None)
def _cached_classifier(dataset: str, device: str) -> QualityClassifier:
    path = classifier_path(dataset)
    if not path.is_file():
        raise FileNotFoundError(
            f"expected the course classifier's weights at {path}, found nothing; they ship with "
            f"gmcourse (regenerate: python scripts/train_classifier.py)"
        )
    model = QualityClassifier()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()  # deterministic: no dropout, running batch-norm statistics
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device)


def load_classifier(dataset: str = "mnist", device: str | torch.device | None = None) -> QualityClassifier:
    """The course classifier for ``dataset`` ("mnist" or "fashion_mnist"), in eval mode.

    Loaded once per process and device (cached); ``device=None`` means the CPU.
    """
    device = torch.device("cpu" if device is None else device)
    return _cached_classifier(_check_dataset(dataset), str(device))


def _check_images(x, name: str, min_count: int = 1) -> torch.Tensor:
    """Images as float32 (N, 1, 28, 28) in [0, 1]; ValueError naming what was expected."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of floats in [0, 1] with shape (N, 1, 28, 28), "
                         f"got {type(x).__name__}")
    if x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"{name} must have shape (N, 1, 28, 28), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must hold floats in [0, 1] (use gmcourse.data.to_unit on uint8 images), "
                         f"got dtype {x.dtype}")
    if len(x) < min_count:
        raise ValueError(f"{name} must hold at least {min_count} images, got {len(x)}")
    lo, hi = x.min().item(), x.max().item()
    if not (0.0 <= lo and hi <= 1.0):  # also catches NaN
        raise ValueError(f"{name} must hold values in [0, 1], got range [{lo}, {hi}]")
    return x.float()


@torch.no_grad()
def _forward(x: torch.Tensor, dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, D) and softmax probabilities (N, 10), float64 on the CPU, in batches."""
    model = load_classifier(dataset, x.device)  # the samples' device
    feats, probs = [], []
    for batch in x.split(_BATCH):
        f = model.features(batch)  # (B, D)
        feats.append(f.double().cpu())
        probs.append(model.head(f).softmax(-1).double().cpu())  # (B, 10)
    return torch.cat(feats), torch.cat(probs)


def classifier_features(x, dataset: str = "mnist") -> torch.Tensor:
    """Features (N, D) float64 of images ``x`` (N, 1, 28, 28) in [0, 1], on the CPU."""
    x = _check_images(x, "x")
    return _forward(x, _check_dataset(dataset))[0]


def gaussian_frechet_distance(mu_1, sigma_1, mu_2, sigma_2) -> float:
    """Fréchet distance between N(mu_1, sigma_1) and N(mu_2, sigma_2), eq. (1).

    mu: (D,), sigma: (D, D) symmetric positive semi-definite. The matrix square root is
    ``scipy.linalg.sqrtm``; its tiny imaginary round-off is dropped.
    """
    mu_1, mu_2 = np.asarray(mu_1, dtype=np.float64), np.asarray(mu_2, dtype=np.float64)
    sigma_1, sigma_2 = np.asarray(sigma_1, dtype=np.float64), np.asarray(sigma_2, dtype=np.float64)
    d = mu_1.shape[0] if mu_1.ndim == 1 else -1
    for name, value, shape in (("mu_2", mu_2, (d,)), ("sigma_1", sigma_1, (d, d)), ("sigma_2", sigma_2, (d, d))):
        if d < 1 or value.shape != shape:
            raise ValueError(f"expected mu_1 of shape (D,) and {name} of shape {shape}, "
                             f"got mu_1 {mu_1.shape} and {name} {value.shape}")
    root = scipy.linalg.sqrtm(sigma_1 @ sigma_2)  # (S_1 S_2)^{1/2}, (D, D)
    if not np.isfinite(root).all():  # singular product: nudge both covariances (as pytorch-fid does)
        eps = 1e-6 * np.eye(d)
        root = scipy.linalg.sqrtm((sigma_1 + eps) @ (sigma_2 + eps))
    root = np.real(root)
    diff = mu_1 - mu_2
    fd = diff @ diff + np.trace(sigma_1) + np.trace(sigma_2) - 2 * np.trace(root)  # eq. (1)
    return float(max(fd, 0.0))  # FD >= 0; round-off can give -1e-12


def _gaussian(f: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    f = f.numpy()  # (N, D) float64
    return f.mean(0), np.cov(f, rowvar=False)  # (D,), (D, D)


def _fd_from_features(f_samples: torch.Tensor, f_reference: torch.Tensor) -> float:
    return gaussian_frechet_distance(*_gaussian(f_samples), *_gaussian(f_reference))  # eq. (1)


def _knn_radii(f: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest neighbour in the same set (itself excluded)."""
    d = torch.cdist(f, f)  # (N, N)
    return d.topk(k + 1, dim=1, largest=False).values[:, k]  # (N,); the nearest is the point itself


def _manifold_coverage(f_query: torch.Tensor, f_set: torch.Tensor, k: int) -> float:
    """Share of query points inside the union of k-NN balls around ``f_set``, eqs. (2)-(3)."""
    inside = torch.cdist(f_query, f_set) <= _knn_radii(f_set, k)[None, :]  # (N, M)
    return inside.any(dim=1).double().mean().item()


def _precision_recall(f_g: torch.Tensor, f_r: torch.Tensor, k: int,
                      radii_r: torch.Tensor | None = None) -> tuple[float, float]:
    """Eqs. (2) and (3) from one cross-distance matrix; ``radii_r`` may be precomputed."""
    radii_r = _knn_radii(f_r, k) if radii_r is None else radii_r  # (N_r,)
    radii_g = _knn_radii(f_g, k)  # (N_g,)
    d = torch.cdist(f_g, f_r)  # (N_g, N_r)
    precision = (d <= radii_r[None, :]).any(dim=1).double().mean().item()  # eq. (2)
    recall = (d <= radii_g[:, None]).any(dim=0).double().mean().item()  # eq. (3)
    return precision, recall


def _check_k(k, n_samples: int, n_reference: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int (3 in Kynkäänniemi et al., 2019), got {k!r}")
    if min(n_samples, n_reference) <= k:
        raise ValueError(f"k-NN precision/recall with k={k} needs more than {k} images in each set, "
                         f"got {n_samples} samples and {n_reference} reference images")
    return k


def _check_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be a probability in (0, 1], got {threshold!r}")
    return float(threshold)


def frechet_distance(samples, reference, dataset: str = "mnist") -> float:
    """Fréchet distance, eq. (1), between ``samples`` and ``reference`` in classifier features.

    samples, reference: (N, 1, 28, 28) floats in [0, 1], each N >= MIN_SAMPLES (65).
    0 for identical sets; lower is better. Compare only at equal N (2,000 in the course).
    """
    dataset = _check_dataset(dataset)
    f_g = _forward(_check_images(samples, "samples", MIN_SAMPLES), dataset)[0]  # (N_g, D)
    f_r = _forward(_check_images(reference, "reference", MIN_SAMPLES), dataset)[0]  # (N_r, D)
    return _fd_from_features(f_g, f_r)


def precision_recall(samples, reference, k: int = 3, dataset: str = "mnist") -> tuple[float, float]:
    """k-NN precision and recall, eqs. (2)-(3), in classifier features; each in [0, 1].

    Precision: share of samples that look real (fidelity). Recall: share of real images the
    samples cover (diversity). samples, reference: (N, 1, 28, 28) floats in [0, 1], N > k.
    """
    dataset = _check_dataset(dataset)
    x_g, x_r = _check_images(samples, "samples"), _check_images(reference, "reference")
    k = _check_k(k, len(x_g), len(x_r))
    return _precision_recall(_forward(x_g, dataset)[0], _forward(x_r, dataset)[0], k)  # eqs. (2)-(3)


def confident_share(samples, threshold: float = 0.9, dataset: str = "mnist") -> float:
    """Share of ``samples`` (N, 1, 28, 28) the classifier labels with probability >= threshold, eq. (4)."""
    dataset, threshold = _check_dataset(dataset), _check_threshold(threshold)
    probs = _forward(_check_images(samples, "samples"), dataset)[1]  # (N, 10)
    return (probs.max(dim=1).values >= threshold).double().mean().item()  # eq. (4)


@dataclass(frozen=True)
class SampleQuality:
    """All sample scores of one set of samples against one reference set."""

    fd: float  # eq. (1), lower is better, 0 for identical sets
    precision: float  # eq. (2), in [0, 1], higher is better
    recall: float  # eq. (3), in [0, 1], higher is better
    confident_share: float  # eq. (4), in [0, 1]; real test images: see the ladder
    n_samples: int
    n_reference: int
    dataset: str

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"FD {self.fd:.1f}, precision {self.precision:.3f}, recall {self.recall:.3f}, "
                f"confident share {self.confident_share:.3f} "
                f"({self.n_samples} samples vs {self.n_reference} reference, {self.dataset})")


def sample_quality(samples, reference, dataset: str = "mnist", k: int = 3,
                   threshold: float = 0.9) -> SampleQuality:
    """FD, precision, recall and confident share of ``samples`` against ``reference``.

    samples, reference: (N, 1, 28, 28) floats in [0, 1], each N >= MIN_SAMPLES (65); the course
    compares 2,000 samples with :func:`reference_images` (the first 2,000 test images). The
    classifier runs once per set.
    """
    dataset, threshold = _check_dataset(dataset), _check_threshold(threshold)
    x_g = _check_images(samples, "samples", MIN_SAMPLES)
    x_r = _check_images(reference, "reference", MIN_SAMPLES)
    k = _check_k(k, len(x_g), len(x_r))
    return _scores(_forward(x_g, dataset), _forward(x_r, dataset)[0], k, threshold, dataset)


def _scores(forward_g: tuple[torch.Tensor, torch.Tensor], f_r: torch.Tensor, k: int,
            threshold: float, dataset: str, radii_r: torch.Tensor | None = None) -> SampleQuality:
    (f_g, p_g) = forward_g  # (N_g, D), (N_g, 10)
    precision, recall = _precision_recall(f_g, f_r, k, radii_r)  # eqs. (2)-(3)
    return SampleQuality(
        fd=_fd_from_features(f_g, f_r),  # eq. (1)
        precision=precision,
        recall=recall,
        confident_share=(p_g.max(dim=1).values >= threshold).double().mean().item(),  # eq. (4)
        n_samples=len(f_g),
        n_reference=len(f_r),
        dataset=dataset,
    )


# --- data, accuracy and the reference ladder ----------------------------------------------

def _load(dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    loader = load_mnist if _check_dataset(dataset) == "mnist" else load_fashion_mnist
    return loader(split)


def reference_images(dataset: str = "mnist", n: int = N_REFERENCE) -> torch.Tensor:
    """The first ``n`` test images of ``dataset`` as floats (n, 1, 28, 28): what samples are scored against."""
    x, _ = _load(dataset, "test")
    if not isinstance(n, int) or not 1 <= n <= len(x):
        raise ValueError(f"n must be an int in 1..{len(x)} (the {dataset} test split), got {n!r}")
    return to_unit(x[:n])


def classifier_accuracy(dataset: str = "mnist", split: str = "test") -> float:
    """Accuracy of the course classifier on a whole split of ``dataset`` (the test split: reported once)."""
    x, y = _load(dataset, split)
    probs = _forward(to_unit(x), dataset)[1]  # (N, 10)
    return (probs.argmax(dim=1) == y).double().mean().item()


def _blur3x3(x: torch.Tensor) -> torch.Tensor:
    kernel = torch.full((1, 1, 3, 3), 1 / 9)  # 3x3 box filter, zero padding
    return F.conv2d(x, kernel, padding=1).clamp(0, 1)  # (N, 1, 28, 28)


def _swap_halves(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Top half of image n above the bottom half of image perm(n), perm a derangement-like shift."""
    shift = torch.randint(1, len(x), (), generator=generator).item()
    other = x.roll(shift, dims=0)  # image n + shift: always a different image
    return torch.cat([x[:, :, :14], other[:, :, 14:]], dim=2)  # (N, 1, 28, 28)


def ladder_sets(dataset: str = "mnist", n: int = N_REFERENCE, seed: int = 0) -> dict[str, torch.Tensor]:
    """The "generated" sets of the reference ladder, each (n, 1, 28, 28) in [0, 1].

    real: the first n training images (vs the first n test images: the floor); binarised: them
    thresholded at 0.5; blurred: a 3x3 box blur; halves: the top half of one image above the
    bottom half of another; noise: uniform noise U[0, 1] per pixel (seeded).
    """
    x_train, _ = _load(dataset, "train")
    if not isinstance(n, int) or not MIN_SAMPLES <= n <= len(x_train):
        raise ValueError(f"n must be an int in {MIN_SAMPLES}..{len(x_train)}, got {n!r}")
    real = to_unit(x_train[:n])  # (n, 1, 28, 28)
    generator = torch.Generator().manual_seed(seed)
    halves = _swap_halves(real, generator)
    noise = torch.rand(real.shape, generator=generator)
    return {"real": real, "binarised": (real > 0.5).float(), "blurred": _blur3x3(real),
            "halves": halves, "noise": noise}  # in LADDER_ROWS order


def measure_reference_ladder(dataset: str = "mnist", n: int = N_REFERENCE) -> dict[str, SampleQuality]:
    """Measure every rung of the ladder against :func:`reference_images` (``n`` vs ``n``)."""
    f_r = _forward(reference_images(dataset, n), dataset)[0]  # (n, D), computed once
    radii_r = _knn_radii(f_r, 3)  # (n,), k = 3 as in sample_quality
    return {name: _scores(_forward(x, dataset), f_r, 3, 0.9, dataset, radii_r)
            for name, x in ladder_sets(dataset, n).items()}


def load_reference_ladder(dataset: str = "mnist") -> dict:
    """The committed ladder of ``dataset`` (``scripts/quality_reference.py`` writes it).

    Returns ``{"n": 2000, "test_accuracy": ..., "rows": {name: {"fd", "precision", "recall",
    "confident_share", ...}}}``; rows in :data:`LADDER_ROWS` order.
    """
    dataset = _check_dataset(dataset)
    if not REFERENCE_LADDER_PATH.is_file():
        raise FileNotFoundError(f"expected the reference ladder at {REFERENCE_LADDER_PATH}; "
                                f"regenerate: python scripts/quality_reference.py")
    ladders = json.loads(REFERENCE_LADDER_PATH.read_text())
    if dataset not in ladders:
        raise ValueError(f"{REFERENCE_LADDER_PATH.name} has no ladder for {dataset!r}; it has {sorted(ladders)}")
    return ladders[dataset]
