"""Checked, atomic downloads into the course's data cache.

Shapes: none here; this module moves bytes. Images and labels come out of ``formats``.

Every dataset file is a :class:`Resource`: a file name, the mirrors that serve it (tried in
order) and its MD5 or SHA-256. :func:`download` streams one URL into a temporary file *in the
same folder* as the destination, checks the byte count against ``Content-Length`` and the
checksum, and only then moves it into place with :func:`os.replace` (atomic on one file
system). Whatever goes wrong, no partial or corrupt file is left at the final path.

The cache lives in ``DATA_DIR / "cache"``. ``DATA_DIR`` is the repository's ``data/`` folder,
found relative to this package, unless the environment variable ``GMCOURSE_DATA`` names
another folder.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

_CHECKOUT = Path(__file__).resolve().parents[2]
# In a clone (editable install), downloads go to the repository's data/ folder; from an
# installed wheel, to the user's cache folder (site-packages is no place for 200 MB of data).
REPO_DATA_DIR = (_CHECKOUT / "data" if (_CHECKOUT / "pyproject.toml").is_file()
                 else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gmcourse")


def data_dir_from_env(environ: Mapping[str, str] = os.environ) -> Path:
    """``$GMCOURSE_DATA`` if set and non-empty, else the repository's ``data/`` folder (a clone)
    or ``~/.cache/gmcourse`` (an installed wheel)."""
    return Path(environ.get("GMCOURSE_DATA") or REPO_DATA_DIR).expanduser()


DATA_DIR = data_dir_from_env()
CACHE_DIR = DATA_DIR / "cache"

_CHUNK = 1 << 16
_USER_AGENT = "gmcourse (+https://github.com/; python urllib)"


class DownloadError(OSError):
    """A file could not be fetched from any mirror; the message says how to get it by hand.

    ``failures`` holds one ``(url, reason)`` pair per mirror tried.
    """

    def __init__(self, message: str, failures: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.failures = tuple(failures)


@dataclass(frozen=True)
class Resource:
    """One dataset file: its name on disk, the mirrors serving it, and its checksum."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None

    def __post_init__(self):
        _expected_digests(self.md5, self.sha256)  # raises ValueError on a missing or bad one
        if not self.urls or isinstance(self.urls, str):
            raise ValueError(f"expected a tuple of mirror URLs, got {self.urls!r}")


def file_digest(path: str | os.PathLike, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in chunks (``algorithm`` is ``"md5"`` or ``"sha256"``)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _expected_digests(md5: str | None, sha256: str | None) -> dict[str, str]:
    expected = {}
    for name, value, length in (("md5", md5, 32), ("sha256", sha256, 64)):
        if value is None:
            continue
        if not isinstance(value, str) or len(value) != length:
            raise ValueError(
                f"{name} must be a hex string of {length} characters, got {value!r}"
            )
        try:
            int(value, 16)
        except ValueError:
            raise ValueError(f"{name} must be hexadecimal, got {value!r}") from None
        expected[name] = value.lower()
    if not expected:
        raise ValueError("download needs a checksum: expected md5=... or sha256=..., got neither")
    return expected


def check_file(
    path: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None
) -> bool:
    """True when ``path`` exists and matches every checksum given."""
    path = Path(path)
    if not path.is_file():
        return False
    expected = _expected_digests(md5, sha256)
    return all(file_digest(path, name) == value for name, value in expected.items())


def manual_instructions(resources: Sequence[Resource], folder: str | os.PathLike) -> str:
    """How to fetch ``resources`` by hand: each file's URLs, checksum and where to save it."""
    folder = Path(folder)
    lines = [f"To get the files by hand, download each one and save it in {folder}/ :"]
    for r in resources:
        checksum = f"md5 {r.md5}" if r.md5 else f"sha256 {r.sha256}"
        lines.append(f"  {folder / r.filename}   ({checksum})")
        lines.extend(f"      from {url}" for url in r.urls)
    lines.append(
        "Any one mirror per file is enough; keep the file names as shown. "
        "Set GMCOURSE_DATA to use another data folder."
    )
    return "\n".join(lines)


def _fetch(url: str, tmp: Path, expected: dict[str, str], timeout: float) -> None:
    """Stream ``url`` into the file ``tmp``, hashing as it goes; raise on any fault."""
    hashes = {name: hashlib.new(name) for name in expected}
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    n_bytes = 0
    with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as f:
        length = response.headers.get("Content-Length")
        n_expected = int(length) if length is not None and length.isdigit() else None
        for chunk in iter(lambda: response.read(_CHUNK), b""):
            f.write(chunk)
            n_bytes += len(chunk)
            for h in hashes.values():
                h.update(chunk)
        f.flush()
        os.fsync(f.fileno())
    if n_expected is not None and n_bytes != n_expected:
        raise DownloadError(
            f"transfer cut off: expected {n_expected} bytes (Content-Length), received {n_bytes}"
        )
    for name, h in hashes.items():
        if h.hexdigest() != expected[name]:
            raise DownloadError(
                f"checksum mismatch: expected {name} {expected[name]}, "
                f"received {h.hexdigest()} ({n_bytes} bytes)"
            )


def _describe(error: BaseException) -> str:
    """One line saying what went wrong with one mirror."""
    if isinstance(error, DownloadError):
        return str(error)
    if isinstance(error, http.client.IncompleteRead):
        return f"transfer cut off: {error}"
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"could not connect ({error.reason})"
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}"


def download(
    url_or_urls: str | Sequence[str],
    path: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch a file to ``path`` from the first mirror that serves it intact; return ``path``.

    Mirrors are tried in order. A file already at ``path`` with the right checksum is kept
    (that is the cache); one with a wrong checksum is removed and fetched again. Each transfer
    goes to a temporary file next to ``path``, is checked (byte count, checksum) and then
    moved into place atomically, so ``path`` only ever holds a verified file.

    Raises :class:`DownloadError` naming every mirror's failure and the manual steps.
    """
    urls = (url_or_urls,) if isinstance(url_or_urls, str) else tuple(url_or_urls)
    if not urls or not all(isinstance(u, str) and u for u in urls):
        raise ValueError(f"expected a URL or a non-empty sequence of URLs, got {url_or_urls!r}")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    expected = _expected_digests(md5, sha256)
    path = Path(path)
    if path.is_file():
        if all(file_digest(path, name) == value for name, value in expected.items()):
            return path
        path.unlink()  # a corrupt or stale file must not stay at the final path
    path.parent.mkdir(parents=True, exist_ok=True)

    failures = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _fetch(url, tmp, expected, timeout)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is meant to be shared
            os.replace(tmp, path)
            return path
        except (OSError, ValueError, http.client.HTTPException) as error:  # refused, 404, cut off
            failures.append((url, _describe(error)))
        finally:
            tmp.unlink(missing_ok=True)

    resource = Resource(path.name, urls, expected.get("md5"), expected.get("sha256"))
    raise DownloadError(
        f"could not download {path.name} from any of {len(urls)} mirror(s):\n"
        + "\n".join(f"  {url}: {reason}" for url, reason in failures)
        + "\n"
        + manual_instructions([resource], path.parent),
        failures,
    )


def ensure_files(
    resources: Sequence[Resource],
    folder: str | os.PathLike,
    *,
    download_missing: bool = True,
    timeout: float = 30.0,
) -> list[Path]:
    """Paths of ``resources`` in ``folder``, verified, downloading those missing if allowed.

    Raises :class:`DownloadError` (a subclass of ``OSError``) that names every file still
    missing, with its URLs and the folder to put it in.
    """
    folder = Path(folder)
    paths, missing, reasons = [], [], []
    for r in resources:
        path = folder / r.filename
        paths.append(path)
        if check_file(path, md5=r.md5, sha256=r.sha256):
            continue
        if not download_missing:
            state = "has a wrong checksum" if path.exists() else "is missing"
            missing.append(r)
            reasons.append(f"  {path} {state} (download=False)")
            continue
        try:
            download(r.urls, path, md5=r.md5, sha256=r.sha256, timeout=timeout)
        except DownloadError as error:
            missing.append(r)
            reasons.append(f"  {r.filename}:")
            reasons.extend(f"    {url}: {reason}" for url, reason in error.failures)
    if missing:
        names = ", ".join(r.filename for r in missing)
        raise DownloadError(
            f"{len(missing)} file(s) not available: {names}\n"
            + "\n".join(reasons)
            + "\n"
            + manual_instructions(missing, folder)
        )
    return paths
