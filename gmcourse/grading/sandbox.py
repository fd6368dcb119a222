"""Kernel launcher for batch grading: hide paths, set resource limits, then exec the kernel.

Run by file path (standard library only, so it starts fast), usually behind
``unshare --net --mount`` (see :mod:`gmcourse.grading.isolation`):

    python sandbox.py --memory-mb 3000 --file-mb 64 --hide /course/solutions ... -- \
        python -m ipykernel_launcher -f {connection_file}

``--readonly`` paths (the course, the Python environment) are bind-mounted read-only, then
``--hide`` paths get an empty read-only tmpfs mounted over them; this only works inside a
private mount namespace (``--mount-private``), and the launcher refuses to mount otherwise, so it
never touches the host's mounts.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import resource
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (the grading worker) dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def hide(paths: list[str]) -> None:
    for path in paths:
        if os.path.isdir(path):
            subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=4k,mode=0555", "none", path],
                           check=True)
        elif os.path.exists(path):
            subprocess.run(["mount", "--bind", "-o", "ro", "/dev/null", path], check=True)


def make_readonly(paths: list[str]) -> None:
    for path in paths:
        subprocess.run(["mount", "--bind", path, path], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", path], check=True)


def limit(memory_mb: int, file_mb: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 2**20, file_mb * 2**20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main(argv: list[str]) -> None:
    if "--" not in argv:
        raise SystemExit("usage: sandbox.py [options] -- kernel command")
    split = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--file-mb", type=int, default=64)
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("--readonly", action="append", default=[])
    parser.add_argument("--mount-private", action="store_true")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    die_with_parent()
    if args.mount_private:
        make_readonly(args.readonly)
        hide(args.hide)
    limit(args.memory_mb, args.file_mb)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
