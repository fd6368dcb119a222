"""Readers for the two on-disk formats behind the course's image data sets.

Shapes: N images, C H W channels/height/width; MNIST-style IDX files hold (N, H, W) images or
(N,) labels; CIFAR-10 python batches hold (N, 3072) rows, returned as (N, 3, 32, 32).

IDX (LeCun's format for MNIST and Fashion-MNIST): a 4-byte magic number ``00 00 t d`` with
``t`` a type code and ``d`` the number of dimensions, then ``d`` big-endian uint32 sizes, then
the values, big-endian, in C order. Files may be gzip-compressed (detected by content).

CIFAR-10 python version: ``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/data_batch_1``
... ``data_batch_5`` and ``test_batch``, each a Python 2 pickle of a dict with keys
``b"data"`` ((N, 3072) uint8: 1024 red, then 1024 green, then 1024 blue values, row by row)
and ``b"labels"`` (N ints in 0..9).
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np

# IDX type code -> NumPy dtype (big-endian, as the format stores values).
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(
            f"{path}: expected a valid gzip stream, got a corrupt one ({error})"
        ) from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian array of the shape in its header.

    Checks the magic number, type code, dimension count and that the file holds exactly as
    many bytes as the header promises; raises ``ValueError`` naming expected and received.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: expected at least a 4-byte IDX header, got {len(raw)} bytes")
    zero, code, n_dims = struct.unpack(">HBB", raw[:4])
    if zero != 0:
        raise ValueError(
            f"{path}: expected an IDX magic number starting with bytes 00 00, "
            f"got {raw[:2].hex(' ')}"
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{path}: expected an IDX type code in ({known}), got 0x{code:02X}")
    if n_dims == 0:
        raise ValueError(f"{path}: expected at least 1 dimension in the IDX header, got 0")
    header_size = 4 + 4 * n_dims
    if len(raw) < header_size:
        raise ValueError(
            f"{path}: expected a {header_size}-byte header for {n_dims} dimensions, "
            f"got a {len(raw)}-byte file"
        )
    shape = struct.unpack(f">{n_dims}I", raw[4:header_size])
    dtype = IDX_DTYPES[code]
    n_expected = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != n_expected:
        raise ValueError(
            f"{path}: expected {n_expected} bytes for shape {shape} of {dtype.name}, "
            f"got {len(raw)} bytes"
        )
    values = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzip it when ``compress`` (default: name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _IDX_CODES:
        allowed = ", ".join(d.name for d in IDX_DTYPES.values())
        raise ValueError(f"expected an array of dtype in ({allowed}), got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"expected an array with 1 to 255 dimensions, got shape {array.shape}")
    header = struct.pack(f">HBB{array.ndim}I", 0, _IDX_CODES[native], array.ndim, *array.shape)
    body = header + np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        body = gzip.compress(body, mtime=0)
    path.write_bytes(body)
    return path


CIFAR10_MEMBERS = {
    "train": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
    "test": ("cifar-10-batches-py/test_batch",),
}

# The only globals a CIFAR batch pickle may name; anything else is refused, never imported.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("codecs").encode,
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _CIFAR_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"expected only NumPy arrays in a CIFAR batch, got a reference to {module}.{name}"
            ) from None


def read_cifar_batch(data: bytes, name: str = "batch") -> tuple[np.ndarray, np.ndarray]:
    """Decode one pickled CIFAR-10 batch: images (N, 3, 32, 32) uint8, labels (N,) int64."""
    try:
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{name}: expected a CIFAR-10 batch pickle, got an unreadable one ({error})"
        ) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{name}: expected a dict with keys b'data' and b'labels', got {keys}")
    x, y = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        got = (f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray)
               else type(x).__name__)
        raise ValueError(
            f"{name}: expected b'data' to be a uint8 array of shape (N, 3072), got {got}"
        )
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"{name}: expected {len(x)} integer labels, got shape {y.shape} of {y.dtype}"
        )
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{name}: expected labels in 0..9, got range {y.min()}..{y.max()}")
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64)  # (N, C, H, W), (N,)


def read_cifar10(path: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read the ``split`` ("train" or "test") of ``cifar-10-python.tar.gz``.

    Returns images (N, 3, 32, 32) uint8 and labels (N,) int64, batches in file order.
    """
    if split not in CIFAR10_MEMBERS:
        raise ValueError(f"split must be one of {sorted(CIFAR10_MEMBERS)}, got {split!r}")
    path = Path(path)
    xs, ys = [], []
    try:
        with tarfile.open(path, "r:*") as tar:
            names = set(tar.getnames())
            for member in CIFAR10_MEMBERS[split]:
                if member not in names:
                    raise ValueError(
                        f"{path}: expected a member {member}, got none "
                        f"(members: {sorted(names)[:8]})"
                    )
                x, y = read_cifar_batch(tar.extractfile(member).read(), f"{path}:{member}")
                xs.append(x)
                ys.append(y)
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise ValueError(
            f"{path}: expected a readable .tar.gz, got a corrupt one ({error})"
        ) from None
    return np.concatenate(xs), np.concatenate(ys)  # (N, 3, 32, 32), (N,)
