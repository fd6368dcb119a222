"""IDX and CIFAR-10 readers on generated files, good and corrupt, and the CIFAR-10 loader on a
generated tarball in the exact CIFAR-10 python format (Python 2 pickles, protocol 2)."""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gmcourse.data import images
from gmcourse.data.download import DownloadError, Resource
from gmcourse.data.formats import IDX_DTYPES, read_cifar10, read_idx, write_idx

# --- IDX ------------------------------------------------------------------------------------


def test_reads_hand_built_bytes_in_the_documented_layout(tmp_path):
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2, 2, 3)
    (tmp_path / "u8").write_bytes(header + bytes(range(12)))
    x = read_idx(tmp_path / "u8")
    assert x.dtype == np.uint8 and x.shape == (2, 2, 3)
    assert x[1, 0, 2] == 8  # C order
    (tmp_path / "i4").write_bytes(bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 2) + struct.pack(">ii", -7, 2**30))
    assert read_idx(tmp_path / "i4").tolist() == [-7, 2**30]  # big-endian on disk


def test_gzip_is_detected_by_content_not_by_name(tmp_path):
    raw = bytes([0, 0, 0x08, 1]) + struct.pack(">I", 3) + b"\x01\x02\x03"
    (tmp_path / "labels").write_bytes(gzip.compress(raw))
    (tmp_path / "labels.gz").write_bytes(raw)
    assert read_idx(tmp_path / "labels").tolist() == [1, 2, 3]
    assert read_idx(tmp_path / "labels.gz").tolist() == [1, 2, 3]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    array=st.sampled_from(sorted(IDX_DTYPES)).flatmap(
        lambda code: hnp.arrays(IDX_DTYPES[code].newbyteorder("="),
                                hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5))),
    compress=st.booleans(),
)
def test_write_then_read_is_the_identity(tmp_path, array, compress):
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    back = read_idx(path)
    assert back.shape == array.shape and back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def _idx_bytes(shape=(2, 3), code=0x08, n_values=None):
    n = int(np.prod(shape)) if n_values is None else n_values
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + bytes(n)


@pytest.mark.parametrize("raw, expected", [
    (b"\x00\x00", "expected at least a 4-byte IDX header, got 2 bytes"),
    (b"\x12\x34" + _idx_bytes()[2:], "expected an IDX magic number starting with bytes 00 00, got 12 34"),
    (_idx_bytes(code=0x0A), "expected an IDX type code in .*, got 0x0A"),
    (bytes([0, 0, 8, 0]), "expected at least 1 dimension"),
    (bytes([0, 0, 8, 3]) + struct.pack(">I", 5), "expected a 16-byte header for 3 dimensions, got a 8-byte file"),
    (_idx_bytes(n_values=5), r"expected 18 bytes for shape \(2, 3\) of uint8, got 17 bytes"),
    (_idx_bytes(n_values=7), r"expected 18 bytes for shape \(2, 3\) of uint8, got 19 bytes"),
    (_idx_bytes(code=0x0B, n_values=6), r"expected 24 bytes for shape \(2, 3\) of int16, got 18 bytes"),
    (gzip.compress(_idx_bytes())[:-6], "expected a valid gzip stream, got a corrupt one"),
])
def test_corrupt_idx_files_raise_value_error_naming_expected_and_received(tmp_path, raw, expected):
    (tmp_path / "bad").write_bytes(raw)
    with pytest.raises(ValueError, match=expected):
        read_idx(tmp_path / "bad")


def test_write_idx_refuses_types_the_format_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="expected an array of dtype in .*, got int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


# --- CIFAR-10 ------------------------------------------------------------------------------


class _Python2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for CIFAR-10: every str as a byte string."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def _py2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    # NumPy 2 names its private module; the 2009 files name numpy.core.multiarray
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _tar_add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_cifar10_tarball(path: Path, n_per_batch=4, seed=0, batches=None):
    """A cifar-10-python.tar.gz with the real member names, keys, dtypes and layout."""
    rng = np.random.default_rng(seed)
    if batches is None:
        batches = {}
        for i, member in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            label = f"training batch {i + 1} of 5" if i < 5 else "testing batch 1 of 1"
            batches[member] = {
                "batch_label": label,
                "labels": [int(v) for v in rng.integers(0, 10, n_per_batch)],
                "data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                "filenames": [f"img_{i}_{j}.png" for j in range(n_per_batch)],
            }
    meta = {"label_names": list(images.CIFAR10_CLASSES), "num_cases_per_batch": n_per_batch, "num_vis": 3072}
    with tarfile.open(path, "w:gz") as tar:
        for member, batch in {**batches, "batches.meta": meta}.items():
            payload = batch if isinstance(batch, bytes) else _py2_pickle(batch)
            _tar_add(tar, f"cifar-10-batches-py/{member}", payload)
        _tar_add(tar, "cifar-10-batches-py/readme.html", b"<meta HTTP-EQUIV=\"REFRESH\">")
    return batches


def test_the_generated_batch_looks_like_a_python2_pickle():
    raw = _py2_pickle({"data": np.zeros((1, 3072), np.uint8), "labels": [3]})
    assert raw.startswith(b"\x80\x02}") and b"U\x04data" in raw  # protocol 2, py2 str keys
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"X\x04\x00\x00\x00data" not in raw


def test_cifar10_reader_returns_every_batch_in_order_in_chw_layout(tmp_path):
    batches = make_cifar10_tarball(tmp_path / "c.tar.gz", n_per_batch=4)
    x, y = read_cifar10(tmp_path / "c.tar.gz", "train")
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    expected_y = sum((batches[f"data_batch_{k}"]["labels"] for k in range(1, 6)), [])
    assert y.tolist() == expected_y
    row = batches["data_batch_2"]["data"][1]  # 1024 red, 1024 green, 1024 blue, row-major
    np.testing.assert_array_equal(x[5, 0], row[:1024].reshape(32, 32))
    np.testing.assert_array_equal(x[5, 2, 31], row[2048 + 31 * 32: 3072])
    x_test, y_test = read_cifar10(tmp_path / "c.tar.gz", "test")
    assert x_test.shape == (4, 3, 32, 32) and y_test.tolist() == batches["test_batch"]["labels"]


def _good_batch(n=2, **override):
    batch = {"batch_label": "b", "labels": [1] * n, "data": np.zeros((n, 3072), np.uint8),
             "filenames": ["f"] * n}
    return {**batch, **override}


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("test_batch, expected", [
    (_good_batch(data=np.zeros((2, 3072), np.float32)), r"uint8 array of shape \(N, 3072\), got float32"),
    (_good_batch(data=np.zeros((2, 1024), np.uint8)), r"got uint8 array of shape \(2, 1024\)"),
    (_good_batch(labels=[1, 2, 3]), r"expected 2 integer labels, got shape \(3,\)"),
    (_good_batch(labels=[1, 10]), "expected labels in 0..9, got range 1..10"),
    ({"data": np.zeros((1, 3072), np.uint8)}, "expected a dict with keys b'data' and b'labels'"),
    (b"not a pickle", "expected a CIFAR-10 batch pickle, got an unreadable one"),
    (pickle.dumps({b"data": _Evil()}, protocol=2), "expected only NumPy arrays .* reference to __builtin__.print"),
])
def test_corrupt_cifar_batches_raise_value_error(tmp_path, capsys, test_batch, expected):
    batches = {f"data_batch_{k}": _good_batch() for k in range(1, 6)}
    batches["test_batch"] = test_batch
    make_cifar10_tarball(tmp_path / "c.tar.gz", batches=batches)
    with pytest.raises(ValueError, match=expected):
        read_cifar10(tmp_path / "c.tar.gz", "test")
    assert "must never run" not in capsys.readouterr().out


def test_missing_members_truncated_tarballs_and_bad_splits_are_rejected(tmp_path):
    make_cifar10_tarball(tmp_path / "c.tar.gz", batches={"test_batch": _good_batch()})
    with pytest.raises(ValueError, match="expected a member cifar-10-batches-py/data_batch_1"):
        read_cifar10(tmp_path / "c.tar.gz", "train")
    make_cifar10_tarball(tmp_path / "full.tar.gz", n_per_batch=50)
    raw = (tmp_path / "full.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        read_cifar10(tmp_path / "cut.tar.gz", "train")
    with pytest.raises(ValueError, match=r"split must be one of \['test', 'train'\], got 'val'"):
        read_cifar10(tmp_path / "full.tar.gz", "val")


def test_load_cifar10_checks_the_md5_then_returns_tensors(tmp_path, monkeypatch):
    batches = make_cifar10_tarball(tmp_path / "cifar-10-python.tar.gz", n_per_batch=3)
    with pytest.raises(DownloadError, match="wrong checksum"):  # the real md5 does not match
        images.load_cifar10("train", root=tmp_path, download=False)
    md5 = hashlib.md5((tmp_path / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    real = images.CIFAR10_RESOURCE
    monkeypatch.setattr(images, "CIFAR10_RESOURCE", Resource(real.filename, real.urls, md5))
    x, y = images.load_cifar10("test", root=tmp_path, download=False)
    assert isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and x.shape == (3, 3, 32, 32)
    assert y.dtype == torch.int64 and y.tolist() == batches["test_batch"]["labels"]
    x_train, _ = images.load_cifar10("train", root=tmp_path, download=False)
    x_val, _ = images.load_cifar10("val", root=tmp_path, download=False)
    assert x_train.shape == (13, 3, 32, 32) and x_val.shape == (2, 3, 32, 32)  # the last sixth
