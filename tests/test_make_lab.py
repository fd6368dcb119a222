"""`make lab` as a newcomer meets it: the whole course, as root too, and where to point the browser.

* A real start: ``make lab`` on a free port, as the current user (root in a container), without
  a display; the server must answer on 127.0.0.1 with the token it printed, and its contents API
  must list lectures/, exercises/ and solutions/. The process group is always killed.
* The flags, with ``jupyter`` and ``id`` replaced by stand-ins: ``--allow-root`` exactly when
  ``id -u`` is 0, ``--no-browser`` exactly when there is no display.

``make -o <stamp>`` keeps make from re-running the set-up (pip installs) when pyproject.toml or
the lock is newer than the set-up stamp.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
STAMP = ".venv/.gmcourse-installed"  # the Makefile's $(STAMP) for VENV=.venv

pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    # no user configuration (a password, another root_dir) may change what is tested
    env.update(JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), **extra)
    env.pop("JUPYTER_TOKEN", None)
    return env


def _stop(proc: subprocess.Popen) -> None:
    """Terminate make and everything it started (one process group), then kill what is left."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # any straggler of the group
    except ProcessLookupError:
        pass
    proc.wait(timeout=5)


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "jupyter").exists(), reason="no .venv/bin/jupyter")
def test_make_lab_serves_the_whole_course(tmp_path):
    port = _free_port()
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([MAKE, "-C", str(ROOT), "-o", STAMP, "lab", f"LAB_PORT={port}"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=_env(tmp_path), start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        token = listing = None
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            assert proc.poll() is None, f"make lab exited ({proc.returncode}):\n{text}"
            m = re.search(rf"http://127\.0\.0\.1:{port}/lab\?token=(\w+)", text)
            if m:
                token = m[1]
                try:
                    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/contents",
                                                 headers={"Authorization": f"token {token}"})
                    with urllib.request.urlopen(req, timeout=2) as r:
                        listing = json.load(r)
                    break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
            time.sleep(0.3)
        text = log.read_text(errors="replace")
        assert token, f"no URL with a token for port {port} printed within 30 s:\n{text}"
        assert listing is not None, f"the server did not answer on 127.0.0.1:{port}:\n{text}"
        dirs = {item["name"] for item in listing["content"] if item["type"] == "directory"}
        assert {"lectures", "exercises", "solutions"} <= dirs, dirs
        # make's own lines: where to point the browser, and why --allow-root / --no-browser
        assert f"point your browser at http://127.0.0.1:{port}/lab" in text, text
        assert "no browser opens" in text, text
        assert ("running as root" in text) == (os.geteuid() == 0), text
    finally:
        _stop(proc)
    assert proc.returncode is not None


def _fake_tools(tmp_path: Path, uid: int) -> tuple[Path, Path]:
    """A venv whose jupyter prints its arguments, and an `id` that says `uid`."""
    venv, bin_dir = tmp_path / "venv", tmp_path / "bin"
    (venv / "bin").mkdir(parents=True)
    bin_dir.mkdir()
    jupyter = venv / "bin" / "jupyter"
    jupyter.write_text('#!/bin/sh\nfor a in "$@"; do echo "ARG $a"; done\n')
    fake_id = bin_dir / "id"
    fake_id.write_text(f'#!/bin/sh\n[ "$1" = -u ] && echo {uid} && exit 0\nexit 1\n')
    for f in (jupyter, fake_id):
        f.chmod(0o755)
    (venv / ".gmcourse-installed").touch()
    return venv, bin_dir


@pytest.mark.parametrize("uid", [0, 1000])
@pytest.mark.parametrize("display", [None, ":0"])
def test_make_lab_flags(tmp_path, uid, display):
    venv, bin_dir = _fake_tools(tmp_path, uid)
    extra = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    if display:
        extra["DISPLAY"] = display
    result = subprocess.run(
        [MAKE, "-C", str(ROOT), "-o", str(venv / ".gmcourse-installed"), "lab",
         f"VENV={venv}", "LAB_PORT=8765"],
        capture_output=True, text=True, env=_env(tmp_path, **extra), timeout=30)
    assert result.returncode == 0, result.stderr
    args = re.findall(r"^ARG (.*)$", result.stdout, re.M)
    assert args[0] == "lab"
    assert f"--ServerApp.root_dir={ROOT}" in args  # the repository root, not lectures/
    assert "--ServerApp.ip=127.0.0.1" in args and "--ServerApp.port=8765" in args
    assert ("--allow-root" in args) == (uid == 0), args
    headless = display is None and os.uname().sysname != "Darwin"
    assert ("--no-browser" in args) == headless, args
    assert "point your browser at http://127.0.0.1:8765/lab" in result.stdout
