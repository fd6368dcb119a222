"""Image data for the course: checked downloads, file formats, loaders and pixel transforms.

Shapes: loaders return ``x`` (N, C, H, W) uint8 and ``y`` (N,) int64.

- :mod:`.download`: ``download``, the cache (``DATA_DIR``, ``CACHE_DIR``) and manual steps
- :mod:`.formats`: IDX and CIFAR-10 python-pickle readers
- :mod:`.images`: ``load_mnist``, ``load_fashion_mnist``, ``load_cifar10``
- :mod:`.transforms`: ``to_unit``, binarisation, dequantisation, [-1, 1] scaling
- :mod:`.graphs` (imported on its own, ``from gmcourse.data.graphs import ...``): the small graph
  data sets of lecture 07, made with ``networkx``, and adjacency tensors
"""
from gmcourse.data.download import CACHE_DIR, DATA_DIR, DownloadError, Resource, download
from gmcourse.data.formats import read_cifar10, read_idx, write_idx
from gmcourse.data.images import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    SubsetFallbackWarning,
    load_cifar10,
    load_fashion_mnist,
    load_mnist,
)
from gmcourse.data.transforms import (
    binarize_dynamic,
    binarize_static,
    dequantize,
    from_symmetric,
    to_symmetric,
    to_unit,
)

__all__ = [
    "CACHE_DIR",
    "DATA_DIR",
    "DownloadError",
    "Resource",
    "download",
    "read_cifar10",
    "read_idx",
    "write_idx",
    "CIFAR10_CLASSES",
    "FASHION_MNIST_CLASSES",
    "SubsetFallbackWarning",
    "load_cifar10",
    "load_fashion_mnist",
    "load_mnist",
    "binarize_dynamic",
    "binarize_static",
    "dequantize",
    "from_symmetric",
    "to_symmetric",
    "to_unit",
]
