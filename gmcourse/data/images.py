"""Image data sets as tensors: MNIST (subset or full), Fashion-MNIST and CIFAR-10.

Shapes: N images, C channels, H W height/width. Every loader returns ``(x, y)`` with
``x`` uint8 of shape (N, C, H, W) (values 0..255) and ``y`` int64 of shape (N,) (0..9).
Turn ``x`` into what a model needs with :mod:`gmcourse.data.transforms`.

The lectures use :func:`load_mnist` with ``full=False``: 10,000 real MNIST digits committed
to the repository (``data/mnist_subset.npz``, see ``data/README.md``), so every notebook runs
the same on any CPU without a network. Everything else comes from the cache
``DATA_DIR / "cache"``, downloaded on first use with checksums (see :mod:`.download`).
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from gmcourse.data.download import CACHE_DIR, REPO_DATA_DIR, DownloadError, Resource, ensure_files
from gmcourse.data.formats import read_cifar10, read_idx

SPLITS = ("train", "test")
MNIST_SUBSET_PATH = REPO_DATA_DIR / "mnist_subset.npz"
N_SUBSET_TRAIN = 8000  # the subset's first 8,000 digits are "train", the last 2,000 "test"

_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)


def _idx_resources(mirrors, files):
    return {
        split: tuple(Resource(name, tuple(m + name for m in mirrors), md5) for name, md5 in pair)
        for split, pair in files.items()
    }


# Canonical files and MD5s (the lists torchvision uses), images first, then labels.
MNIST_RESOURCES = _idx_resources(_MNIST_MIRRORS, {
    "train": (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
              ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432")),
    "test": (("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
             ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")),
})
FASHION_MNIST_RESOURCES = _idx_resources(_FASHION_MIRRORS, {
    "train": (("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
              ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe")),
    "test": (("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
             ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")),
})
CIFAR10_RESOURCE = Resource(
    "cifar-10-python.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    "c58f30108f718f92721af3b95e74349a",
)

# Debian's package `dataset-fashion-mnist` installs the same IDX files here (recompressed, so
# their MD5s differ from Zalando's; they are checked by format and shape instead).
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


class SubsetFallbackWarning(UserWarning):
    """The full MNIST could not be had, so the 10,000-digit subset was returned instead."""


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _as_tensors(x: np.ndarray, y: np.ndarray, source: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Check images (N, H, W) or (N, C, H, W) uint8 and labels (N,) in 0..9; return tensors."""
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise ValueError(f"{source}: expected uint8 images of shape (N, H, W) or (N, C, H, W), "
                         f"got {x.dtype} of shape {x.shape}")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"{source}: expected {len(x)} integer labels, got {y.dtype} of shape {y.shape}"
        )
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{source}: expected labels in 0..9, got range {y.min()}..{y.max()}")
    if x.ndim == 3:
        x = x[:, None]  # (N, 1, H, W)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))


def _read_idx_pair(images: Path, labels: Path) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3:
        raise ValueError(f"{images}: expected images of shape (N, H, W), got shape {x.shape}")
    return _as_tensors(x, y, f"{images.name} + {labels.name}")


def _load_subset(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not MNIST_SUBSET_PATH.is_file():
        raise FileNotFoundError(
            f"expected the committed MNIST subset at {MNIST_SUBSET_PATH}, found nothing; "
            "it ships with the gmcourse repository (data/mnist_subset.npz)"
        )
    with np.load(MNIST_SUBSET_PATH) as npz:
        x, y = npz["x"], npz["y"]
    part = slice(None, N_SUBSET_TRAIN) if split == "train" else slice(N_SUBSET_TRAIN, None)
    return _as_tensors(x[part], y[part], MNIST_SUBSET_PATH.name)  # (N, 1, 28, 28), (N,)


def _shout(message: str) -> None:
    """Warn and print, so that a notebook cannot hide it."""
    banner = "!" * 78
    print(f"{banner}\n{message}\n{banner}", flush=True)
    warnings.warn(message, SubsetFallbackWarning, stacklevel=3)


def load_mnist(
    split: str = "train",
    *,
    full: bool = False,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST digits: ``x`` (N, 1, 28, 28) uint8 and ``y`` (N,) int64.

    ``full=False`` (the lectures' default): the committed subset of 10,000 real digits,
    N = 8,000 for "train" and 2,000 for "test". ``full=True``: the official 60,000 / 10,000
    from ``root`` (default ``CACHE_DIR / "mnist"``), downloaded there if missing and
    ``download``. If they cannot be had, this warns loudly and returns the subset split.
    """
    _check_split(split)
    if not full:
        return _load_subset(split)
    folder = Path(root) if root is not None else CACHE_DIR / "mnist"
    try:
        images, labels = ensure_files(MNIST_RESOURCES[split], folder, download_missing=download)
    except DownloadError as error:
        _shout(
            f"FULL MNIST IS NOT AVAILABLE: falling back to the 10,000-digit subset "
            f"(data/mnist_subset.npz), split {split!r} = "
            f"{N_SUBSET_TRAIN if split == 'train' else 10000 - N_SUBSET_TRAIN} digits.\n{error}"
        )
        return _load_subset(split)
    return _read_idx_pair(images, labels)


def load_fashion_mnist(
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST: ``x`` (N, 1, 28, 28) uint8, ``y`` (N,) int64; N = 60,000 or 10,000.

    Looks in ``root`` (default ``CACHE_DIR / "fashion-mnist"``, files checked by MD5), then in
    Debian's ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``),
    then downloads into ``root`` if ``download``. Class names: ``FASHION_MNIST_CLASSES``.
    """
    _check_split(split)
    folder = Path(root) if root is not None else CACHE_DIR / "fashion-mnist"
    resources = FASHION_MNIST_RESOURCES[split]
    try:
        images, labels = ensure_files(resources, folder, download_missing=False)
        return _read_idx_pair(images, labels)
    except DownloadError:
        pass
    system = [SYSTEM_FASHION_MNIST_DIR / r.filename for r in resources]
    if all(p.is_file() for p in system):
        return _read_idx_pair(*system)
    images, labels = ensure_files(resources, folder, download_missing=download)
    return _read_idx_pair(images, labels)


def load_cifar10(
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10: ``x`` (N, 3, 32, 32) uint8, ``y`` (N,) int64; N = 50,000 or 10,000.

    Reads ``cifar-10-python.tar.gz`` (163 MiB) from ``root`` (default
    ``CACHE_DIR / "cifar-10"``), downloading it if missing and ``download``.
    Class names: ``CIFAR10_CLASSES``.
    """
    _check_split(split)
    folder = Path(root) if root is not None else CACHE_DIR / "cifar-10"
    (tarball,) = ensure_files([CIFAR10_RESOURCE], folder, download_missing=download)
    x, y = read_cifar10(tarball, split)
    return _as_tensors(x, y, tarball.name)  # (N, 3, 32, 32), (N,)
