"""Downloads against a real HTTP server on 127.0.0.1: success, cache, every failure mode,
mirror fallback, atomicity (no partial file ever at the final path) and the manual steps.
Also the loaders' download paths (full MNIST, its loud fallback, Fashion-MNIST, CIFAR-10).
Nothing here touches the internet."""
from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gmcourse.data import download as dl
from gmcourse.data import images
from gmcourse.data.download import DownloadError, Resource, data_dir_from_env, download, ensure_files
from gmcourse.data.formats import write_idx


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (kind, body)``; kind is ok, cut, no-length or hang."""

    def do_GET(self):
        self.server.hits.append(self.path)
        kind, body = self.server.routes.get(self.path, ("missing", b""))
        if kind == "missing":
            self.send_error(404, "Not Found")
            return
        if kind == "hang":
            time.sleep(2.0)
            return
        self.send_response(200)
        if kind == "ok":
            self.send_header("Content-Length", str(len(body)))
        elif kind == "cut":  # promise the whole file, send half, hang up
            self.send_header("Content-Length", str(len(body)))
            body = body[: len(body) // 2]
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


class _Server:
    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.routes, self.httpd.hits = {}, []
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, body: bytes, kind: str = "ok") -> str:
        self.httpd.routes[path] = (kind, body)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    @property
    def hits(self) -> list[str]:
        return self.httpd.hits


@pytest.fixture(scope="module")
def server():
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def dead_url():
    """A URL on a local port with nothing listening (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.gz"


PAYLOAD = bytes(range(256)) * 64 + b"tail"
MD5 = hashlib.md5(PAYLOAD).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_file_is_saved_verified_and_nothing_else_is_left(server, tmp_path):
    url = server.add("/good.bin", PAYLOAD)
    path = download(url, tmp_path / "good.bin", md5=MD5)
    assert path == tmp_path / "good.bin"
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == ["good.bin"]
    assert path.stat().st_mode & 0o777 == 0o644  # readable by all, like any cache file


def test_sha256_is_accepted(server, tmp_path):
    url = server.add("/sha.bin", PAYLOAD)
    download(url, tmp_path / "sha.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert (tmp_path / "sha.bin").read_bytes() == PAYLOAD


def test_a_verified_file_is_a_cache_hit_without_network(server, tmp_path):
    url = server.add("/cached.bin", PAYLOAD)
    download(url, tmp_path / "cached.bin", md5=MD5)
    n_hits = len(server.hits)
    download("http://127.0.0.1:9/unreachable", tmp_path / "cached.bin", md5=MD5)
    assert len(server.hits) == n_hits


def test_wrong_checksum_gives_clear_error_and_no_file(server, tmp_path):
    url = server.add("/tampered.bin", PAYLOAD[:-1] + b"X")
    with pytest.raises(DownloadError) as info:
        download(url, tmp_path / "t.bin", md5=MD5)
    message = str(info.value)
    assert "checksum mismatch" in message and f"expected md5 {MD5}" in message
    assert hashlib.md5(PAYLOAD[:-1] + b"X").hexdigest() in message  # the received digest
    assert _leftovers(tmp_path) == []


def test_cut_off_transfer_gives_clear_error_and_no_file(server, tmp_path):
    url = server.add("/cut.bin", PAYLOAD, kind="cut")
    with pytest.raises(DownloadError, match="cut off") as info:
        download(url, tmp_path / "cut.bin", md5=MD5)
    assert str(len(PAYLOAD)) in str(info.value)
    assert _leftovers(tmp_path) == []


def test_cut_off_without_content_length_is_caught_by_the_checksum(server, tmp_path):
    url = server.add("/nolength.bin", PAYLOAD[:100], kind="no-length")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(url, tmp_path / "n.bin", md5=MD5)
    assert _leftovers(tmp_path) == []


def test_server_down_gives_clear_error_with_manual_steps_and_no_file(dead_url, tmp_path):
    dest = tmp_path / "sub" / "file.gz"
    with pytest.raises(DownloadError) as info:
        download(dead_url, dest, md5=MD5, timeout=5)
    message = str(info.value)
    assert "could not connect" in message
    assert "by hand" in message and dead_url in message and str(dest) in message and MD5 in message
    assert _leftovers(dest.parent) == []


def test_http_404_is_reported(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("/nothing-here"), tmp_path / "x", md5=MD5)
    assert _leftovers(tmp_path) == []


def test_a_server_that_hangs_times_out(server, tmp_path):
    url = server.add("/hang.bin", b"", kind="hang")
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        download(url, tmp_path / "h.bin", md5=MD5, timeout=0.3)
    assert time.monotonic() - start < 1.5
    assert _leftovers(tmp_path) == []


def test_mirrors_are_tried_in_order_until_one_serves_the_file(server, dead_url, tmp_path):
    bad = server.add("/m1.bin", b"wrong bytes")
    cut = server.add("/m2.bin", PAYLOAD, kind="cut")
    good = server.add("/m3.bin", PAYLOAD)
    later = server.add("/m4.bin", PAYLOAD)
    start = len(server.hits)
    download([dead_url, bad, cut, good, later], tmp_path / "m.bin", md5=MD5, timeout=5)
    assert (tmp_path / "m.bin").read_bytes() == PAYLOAD
    assert server.hits[start:] == ["/m1.bin", "/m2.bin", "/m3.bin"]  # /m4 never asked
    assert _leftovers(tmp_path) == ["m.bin"]


def test_every_mirror_failing_names_each_mirror_and_its_reason(server, dead_url, tmp_path):
    bad = server.add("/only-bad.bin", b"wrong bytes")
    with pytest.raises(DownloadError) as info:
        download([bad, dead_url], tmp_path / "f.bin", md5=MD5, timeout=5)
    (url_1, reason_1), (url_2, reason_2) = info.value.failures
    assert (url_1, url_2) == (bad, dead_url)
    assert reason_1.startswith("checksum mismatch") and reason_2.startswith("could not connect")
    assert f"{bad}: checksum mismatch" in str(info.value)
    assert _leftovers(tmp_path) == []


def test_a_corrupt_file_at_the_final_path_is_replaced(server, tmp_path):
    url = server.add("/fix.bin", PAYLOAD)
    (tmp_path / "fix.bin").write_bytes(b"half a file")
    download(url, tmp_path / "fix.bin", md5=MD5)
    assert (tmp_path / "fix.bin").read_bytes() == PAYLOAD


def test_a_corrupt_file_is_removed_even_when_no_mirror_works(dead_url, tmp_path):
    (tmp_path / "bad.bin").write_bytes(b"half a file")
    with pytest.raises(DownloadError):
        download(dead_url, tmp_path / "bad.bin", md5=MD5, timeout=5)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("kwargs, expected", [
    ({}, "expected md5=... or sha256=..., got neither"),
    ({"md5": "abc"}, "32 characters, got 'abc'"),
    ({"md5": "z" * 32}, "hexadecimal"),
    ({"md5": MD5, "timeout": 0}, "positive number of seconds, got 0"),
])
def test_bad_arguments_raise_value_error_naming_expected_and_received(tmp_path, kwargs, expected):
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        download("http://127.0.0.1:9/x", tmp_path / "x", **kwargs)
    with pytest.raises(ValueError, match="non-empty sequence of URLs, got"):
        download([], tmp_path / "x", md5=MD5)


def test_a_resource_needs_mirrors_and_a_valid_checksum():
    with pytest.raises(ValueError, match="got neither"):
        Resource("f.gz", ("http://127.0.0.1:9/f.gz",))
    with pytest.raises(ValueError, match="expected a tuple of mirror URLs, got 'http"):
        Resource("f.gz", "http://127.0.0.1:9/f.gz", MD5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=5000), cut=st.booleans())
def test_the_final_path_only_ever_holds_the_exact_file(server, tmp_path, body, cut):
    name = hashlib.sha256(body + bytes([cut])).hexdigest()[:16]
    url = server.add(f"/p/{name}", body, kind="cut" if cut else "ok")
    dest = tmp_path / name
    truncates = cut and len(body) > 0  # half of an empty body is the whole body
    try:
        download(url, dest, md5=hashlib.md5(body).hexdigest())
    except DownloadError:
        assert truncates and not dest.exists()
    else:
        assert not truncates and dest.read_bytes() == body
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_data_dir_defaults_to_the_repo_and_follows_gmcourse_data(tmp_path):
    repo_data = Path(__file__).resolve().parents[1] / "data"
    assert data_dir_from_env({}) == repo_data
    assert data_dir_from_env({"GMCOURSE_DATA": ""}) == repo_data
    assert data_dir_from_env({"GMCOURSE_DATA": str(tmp_path)}) == tmp_path
    assert (repo_data / "README.md").is_file()


def test_ensure_files_offline_names_every_file_its_urls_and_where_to_put_it(dead_url, tmp_path):
    resources = [Resource("a.gz", (dead_url + "/a.gz",), MD5), Resource("b.gz", (dead_url + "/b.gz",), MD5)]
    with pytest.raises(DownloadError) as info:
        ensure_files(resources, tmp_path / "cache", timeout=5)
    message = str(info.value)
    assert message.startswith("2 file(s) not available: a.gz, b.gz")
    for r in resources:
        assert r.urls[0] in message and str(tmp_path / "cache" / r.filename) in message
    with pytest.raises(DownloadError, match="is missing \\(download=False\\)"):
        ensure_files(resources, tmp_path / "cache", download_missing=False)


# --- the loaders' download paths -------------------------------------------------------------

def _serve_idx_split(server, tmp_path, prefix, n, seed):
    """Generated MNIST-format files for one split, served locally; returns (resources, x, y)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=n, dtype=np.uint8)
    resources = []
    for name, array in ((f"{prefix}-images-idx3-ubyte.gz", x), (f"{prefix}-labels-idx1-ubyte.gz", y)):
        body = write_idx(tmp_path / f"src-{name}", array).read_bytes()
        url = server.add(f"/{seed}/{name}", body)
        resources.append(Resource(name, (server.url("/missing-mirror/" + name), url),
                                  hashlib.md5(body).hexdigest()))
    return tuple(resources), x, y


def test_full_mnist_downloads_into_root_then_reads_from_the_cache(server, tmp_path, monkeypatch):
    resources, x, y = _serve_idx_split(server, tmp_path, "t10k", n=30, seed=1)
    monkeypatch.setitem(images.MNIST_RESOURCES, "test", resources)
    root = tmp_path / "mnist"
    x_t, y_t = images.load_mnist("test", full=True, root=root)
    assert x_t.shape == (30, 1, 28, 28) and y_t.shape == (30,)
    assert np.array_equal(x_t[:, 0].numpy(), x) and np.array_equal(y_t.numpy(), y)
    server.httpd.routes.clear()  # the cache must be enough now
    x_again, _ = images.load_mnist("test", full=True, root=root, download=False)
    assert np.array_equal(x_again.numpy(), x_t.numpy())


def test_full_mnist_offline_falls_back_loudly_to_the_subset(dead_url, tmp_path, monkeypatch, capsys):
    offline = tuple(Resource(r.filename, (dead_url,), r.md5) for r in images.MNIST_RESOURCES["train"])
    monkeypatch.setitem(images.MNIST_RESOURCES, "train", offline)
    with pytest.warns(images.SubsetFallbackWarning, match="FULL MNIST IS NOT AVAILABLE") as record:
        x, y = images.load_mnist("train", full=True, root=tmp_path)
    assert x.shape == (7000, 1, 28, 28) and y.shape == (7000,)
    printed = capsys.readouterr().out
    assert "falling back to the 10,000-digit subset" in printed
    for r in offline:  # the warning and the print both say what to fetch and where
        assert str(tmp_path / r.filename) in printed and r.md5 in str(record[0].message)
    assert _leftovers(tmp_path) == []


def test_full_mnist_with_download_false_and_no_files_falls_back_too(tmp_path):
    with pytest.warns(images.SubsetFallbackWarning, match="download=False"):
        x, _ = images.load_mnist("test", full=True, root=tmp_path, download=False)
    assert x.shape == (2000, 1, 28, 28)


def test_fashion_mnist_downloads_when_neither_cache_nor_debian_has_it(server, tmp_path, monkeypatch):
    resources, x, y = _serve_idx_split(server, tmp_path, "train", n=12, seed=2)
    monkeypatch.setitem(images.FASHION_MNIST_RESOURCES, "train", resources)
    monkeypatch.setattr(images, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "no-debian-here")
    x_t, y_t = images.load_fashion_mnist("train", root=tmp_path / "fashion")
    assert np.array_equal(x_t[:, 0].numpy(), x[:10]) and np.array_equal(y_t.numpy(), y[:10])
    assert sorted(_leftovers(tmp_path / "fashion")) == sorted(r.filename for r in resources)


def test_fashion_mnist_offline_error_names_the_files(dead_url, tmp_path, monkeypatch):
    monkeypatch.setattr(images, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "no-debian-here")
    offline = tuple(Resource(r.filename, (dead_url,), r.md5) for r in images.FASHION_MNIST_RESOURCES["test"])
    monkeypatch.setitem(images.FASHION_MNIST_RESOURCES, "test", offline)
    with pytest.raises(DownloadError, match="t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"):
        images.load_fashion_mnist("test", root=tmp_path / "f")


def test_cifar10_offline_error_names_the_tarball_url_and_md5(dead_url, tmp_path, monkeypatch):
    real = images.CIFAR10_RESOURCE
    monkeypatch.setattr(images, "CIFAR10_RESOURCE", Resource(real.filename, (dead_url,), real.md5))
    with pytest.raises(DownloadError) as info:
        images.load_cifar10("test", root=tmp_path)
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and real.md5 in message and str(tmp_path) in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in real.urls
