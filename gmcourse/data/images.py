"""Image data sets as tensors: MNIST (subset or full), Fashion-MNIST and CIFAR-10.

Shapes: N images, C channels, H W height/width. Every loader returns ``(x, y)`` with
``x`` uint8 of shape (N, C, H, W) (values 0..255) and ``y`` int64 of shape (N,) (0..9).
Turn ``x`` into what a model needs with :mod:`gmcourse.data.transforms`.

The lectures use :func:`load_mnist` with ``full=False``: 10,000 real MNIST digits shipped inside
the package (``gmcourse/data/files/mnist_subset.npz``, see ``data/README.md``), so every notebook
runs the same on any CPU without a network, from a clone or from an installed wheel.

Every loader gives the same three honest splits (:data:`SPLITS`): ``"train"`` to fit on,
``"val"`` to monitor and tune on, ``"test"`` to report once. For the subset they are digits
0..6,999 / 7,000..7,999 / 8,000..9,999; for the full MNIST and Fashion-MNIST files, the first
50,000 training images / the last 10,000 training images / the official 10,000 test images. Everything else comes from the cache
``DATA_DIR / "cache"``, downloaded on first use with checksums (see :mod:`.download`).
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from gmcourse.data.download import CACHE_DIR, DownloadError, Resource, ensure_files
from gmcourse.data.formats import read_cifar10, read_idx

SPLITS = ("train", "val", "test")
PACKAGE_FILES_DIR = Path(__file__).resolve().parent / "files"  # package data, in the wheel too
MNIST_SUBSET_PATH = PACKAGE_FILES_DIR / "mnist_subset.npz"
# Rows of the subset in each split: 7,000 to fit on, 1,000 to validate on, 2,000 to test on.
SUBSET_ROWS = {"train": slice(0, 7000), "val": slice(7000, 8000), "test": slice(8000, 10000)}
N_FULL_VAL = 10_000  # the full sets' "val" is the last 10,000 of the official training images

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
    part = SUBSET_ROWS[split]
    return _as_tensors(x[part], y[part], MNIST_SUBSET_PATH.name)  # (N, 1, 28, 28), (N,)


def _official_file_split(split: str) -> str:
    """The official file a split is read from: "val" is carved out of "train"."""
    return "test" if split == "test" else "train"


def _carve(x: torch.Tensor, y: torch.Tensor, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut "train" / "val" out of the official training images; "test" is kept whole."""
    if split == "test":
        return x, y
    # the real files hold 60,000 (50,000) training images; a small hand-made file (the tests')
    # gives its last sixth
    n_val = N_FULL_VAL if len(x) > 2 * N_FULL_VAL else len(x) // 6
    if n_val < 1:
        raise ValueError(f"expected at least 6 training images to carve a validation split from, "
                         f"got {len(x)}")
    part = slice(None, len(x) - n_val) if split == "train" else slice(len(x) - n_val, None)
    return x[part], y[part]


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

    split: "train", "val" (monitor and tune on it) or "test" (report on it once).
    ``full=False`` (the lectures' default): the subset of 10,000 real digits shipped with the
    package, N = 7,000 / 1,000 / 2,000. ``full=True``: the official files from ``root``
    (default ``CACHE_DIR / "mnist"``), downloaded there if missing and ``download``,
    N = 50,000 / 10,000 / 10,000. If they cannot be had, this warns loudly and returns the
    subset's split.
    """
    _check_split(split)
    if not full:
        return _load_subset(split)
    folder = Path(root) if root is not None else CACHE_DIR / "mnist"
    try:
        images, labels = ensure_files(MNIST_RESOURCES[_official_file_split(split)], folder,
                                      download_missing=download)
    except DownloadError as error:
        _shout(
            f"FULL MNIST IS NOT AVAILABLE: falling back to the 10,000-digit subset "
            f"(gmcourse/data/files/mnist_subset.npz), split {split!r} = "
            f"{len(range(10000)[SUBSET_ROWS[split]])} digits.\n{error}"
        )
        return _load_subset(split)
    return _carve(*_read_idx_pair(images, labels), split)


def load_fashion_mnist(
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST: ``x`` (N, 1, 28, 28) uint8, ``y`` (N,) int64; N = 50,000 / 10,000 / 10,000.

    split: "train", "val" (the last 10,000 official training images) or "test".
    Looks in ``root`` (default ``CACHE_DIR / "fashion-mnist"``, files checked by MD5), then in
    Debian's ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``),
    then downloads into ``root`` if ``download``. Class names: ``FASHION_MNIST_CLASSES``.
    """
    _check_split(split)
    folder = Path(root) if root is not None else CACHE_DIR / "fashion-mnist"
    resources = FASHION_MNIST_RESOURCES[_official_file_split(split)]
    try:
        images, labels = ensure_files(resources, folder, download_missing=False)
        return _carve(*_read_idx_pair(images, labels), split)
    except DownloadError:
        pass
    system = [SYSTEM_FASHION_MNIST_DIR / r.filename for r in resources]
    if all(p.is_file() for p in system):
        return _carve(*_read_idx_pair(*system), split)
    images, labels = ensure_files(resources, folder, download_missing=download)
    return _carve(*_read_idx_pair(images, labels), split)


def load_cifar10(
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10: ``x`` (N, 3, 32, 32) uint8, ``y`` (N,) int64; N = 40,000 / 10,000 / 10,000.

    split: "train", "val" (the last 10,000 official training images) or "test".
    Reads ``cifar-10-python.tar.gz`` (163 MiB) from ``root`` (default
    ``CACHE_DIR / "cifar-10"``), downloading it if missing and ``download``.
    Class names: ``CIFAR10_CLASSES``.
    """
    _check_split(split)
    folder = Path(root) if root is not None else CACHE_DIR / "cifar-10"
    (tarball,) = ensure_files([CIFAR10_RESOURCE], folder, download_missing=download)
    x, y = read_cifar10(tarball, _official_file_split(split))
    return _carve(*_as_tensors(x, y, tarball.name), split)  # (N, 3, 32, 32), (N,)
