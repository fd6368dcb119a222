"""The loaders without a network: the committed MNIST subset, Fashion-MNIST from the cache
or Debian's package, and the shape and label checks every loader applies."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from gmcourse.data import images, load_fashion_mnist, load_mnist
from gmcourse.data.download import Resource
from gmcourse.data.formats import write_idx


@pytest.fixture(scope="module")
def subset():
    return {split: load_mnist(split) for split in ("train", "val", "test")}


@pytest.mark.parametrize("split, n", [("train", 7000), ("val", 1000), ("test", 2000)])
def test_subset_shapes_dtypes_and_sizes(subset, split, n):
    x, y = subset[split]
    assert x.shape == (n, 1, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (n,) and y.dtype == torch.int64
    assert set(y.unique().tolist()) == set(range(10))  # every digit in both splits
    assert x.float().mean() > 10  # real digits, not blank images


def test_subset_splits_are_the_npz_in_order_and_do_not_overlap(subset):
    with np.load(images.MNIST_SUBSET_PATH) as npz:
        x_all, y_all = npz["x"], npz["y"]
    x = torch.cat([subset[s][0] for s in ("train", "val", "test")])[:, 0].numpy()
    y = torch.cat([subset[s][1] for s in ("train", "val", "test")]).numpy()
    np.testing.assert_array_equal(x, x_all)
    np.testing.assert_array_equal(y, y_all)
    seen = {s: {hashlib.md5(img.tobytes()).digest() for img in subset[s][0].numpy()}
            for s in ("train", "val", "test")}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not seen[a] & seen[b], f"{len(seen[a] & seen[b])} {b} digits also appear in {a}"


def test_subset_is_the_same_every_call(subset):
    x, y = load_mnist("test")
    assert torch.equal(x, subset["test"][0]) and torch.equal(y, subset["test"][1])


@pytest.mark.parametrize("loader", [load_mnist, load_fashion_mnist, images.load_cifar10])
def test_loaders_reject_unknown_splits(loader):
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val', 'test'\), got 'valid'"):
        loader("valid")


def _write_split(folder, prefix, n, seed, n_labels=None):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n if n_labels is None else n_labels, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    paths = (write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x),
             write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y))
    return paths, x, y


def test_fashion_mnist_prefers_a_verified_cache_over_debians_copy(tmp_path, monkeypatch):
    (cache_images, cache_labels), x, y = _write_split(tmp_path / "cache", "t10k", 5, seed=0)
    _write_split(tmp_path / "debian", "t10k", 7, seed=1)
    monkeypatch.setattr(images, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "debian")
    resources = tuple(Resource(p.name, ("http://127.0.0.1:9/" + p.name,), hashlib.md5(p.read_bytes()).hexdigest())
                      for p in (cache_images, cache_labels))
    monkeypatch.setitem(images.FASHION_MNIST_RESOURCES, "test", resources)
    x_t, y_t = load_fashion_mnist("test", root=tmp_path / "cache", download=False)
    assert np.array_equal(x_t[:, 0].numpy(), x) and np.array_equal(y_t.numpy(), y)


def test_fashion_mnist_reads_debians_copy_when_the_cache_is_empty(tmp_path, monkeypatch):
    _, x, y = _write_split(tmp_path / "debian", "train", 6, seed=2)
    monkeypatch.setattr(images, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "debian")
    x_t, y_t = load_fashion_mnist("train", root=tmp_path / "empty", download=False)
    x_v, y_v = load_fashion_mnist("val", root=tmp_path / "empty", download=False)
    # a small file gives its last sixth to "val"; the real one its last 10,000
    assert x_t.shape == (5, 1, 28, 28) and x_t.dtype == torch.uint8 and y_t.dtype == torch.int64
    assert np.array_equal(torch.cat([x_t, x_v])[:, 0].numpy(), x)
    assert np.array_equal(torch.cat([y_t, y_v]).numpy(), y)


def test_idx_pairs_with_mismatched_counts_are_rejected(tmp_path, monkeypatch):
    _write_split(tmp_path / "debian", "train", 6, seed=3, n_labels=5)
    monkeypatch.setattr(images, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "debian")
    with pytest.raises(ValueError, match=r"expected 6 integer labels, got uint8 of shape \(5,\)"):
        load_fashion_mnist("train", root=tmp_path / "empty", download=False)


@pytest.mark.skipif(not (images.SYSTEM_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_test_split_from_debian(tmp_path):
    x, y = load_fashion_mnist("test", root=tmp_path, download=False)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [1000] * 10  # the published test set is balanced
    x_train, _ = load_fashion_mnist("train", root=tmp_path, download=False)
    x_val, _ = load_fashion_mnist("val", root=tmp_path, download=False)
    assert len(x_train) == 50000 and len(x_val) == 10000
