"""How much the operating system lets the grader isolate a student's kernel.

Tried in order, each with a trial run of ``true``: as root, ``unshare`` with new network and
mount namespaces (no network, solutions hidden; ``unshare`` execs the kernel, so interrupts and
kills reach it directly, and the grader kills the kernel's whole process group at the end); as a user, the same inside a user namespace (``unshare -r``); else nothing, which
the gradebook records. Resource limits (memory, file size) apply in every case.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

UNSHARE = ("--net", "--mount")  # no --pid: the kernel must be the launched process, to get SIGINT


@dataclass(frozen=True)
class Isolation:
    prefix: tuple[str, ...]   # put in front of the kernel command
    network_off: bool
    mounts_private: bool      # whether --hide paths can be hidden
    description: str


NONE = Isolation((), False, False,
                 "no namespaces available: network on, solutions readable by absolute path")


def detect() -> Isolation:
    """The strongest isolation that works on this machine."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return NONE
    for extra, who in (((), "root"), (("--map-root-user",), "user namespace")):
        prefix = (unshare, *extra, *UNSHARE, "--")
        try:
            trial = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if trial.returncode == 0:
            return Isolation(prefix, True, True,
                             f"unshare ({who}): no network, solutions and gradebook hidden")
    return NONE
