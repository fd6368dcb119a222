"""Start a student's ipykernel behind an audit hook that refuses and records out-of-bounds access.

Run by file path in place of ``python -m ipykernel_launcher`` (standard library only):

    python kernel_guard.py -f {connection_file}

with ``GMCOURSE_GUARD_LOG`` (a file the grader reads afterwards), ``GMCOURSE_GUARD_READ``
(JSON list of paths a submission may not touch at all: solutions, hidden checks, the gradebook,
other submissions) and ``GMCOURSE_GUARD_WRITE`` (JSON list of paths it may read but not write:
the course and the Python environment). A Python audit hook cannot be removed once added
(PEP 578), so code in the notebook cannot switch it off; each refused attempt raises
``PermissionError`` in the student's cell and appends a JSON line to the log, and the grader
gives such a submission zero. The mount namespace of :mod:`sandbox` hides the same paths from
child processes, which the hook does not see.
"""
from __future__ import annotations

import json
import os
import runpy
import sys

PATH_EVENTS = {"open": 1, "os.listdir": 1, "os.scandir": 1, "os.remove": 1, "os.rmdir": 1,
               "os.rename": 2, "os.truncate": 1, "os.chmod": 1, "os.mkdir": 1, "shutil.rmtree": 1,
               "os.symlink": 2, "os.link": 2, "os.utime": 1}
COMMAND_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def _under(path: str, roots: tuple[str, ...]) -> str | None:
    for root in roots:
        if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
            return root
    return None


def _writes(event: str, args: tuple) -> bool:
    if event != "open":
        return event not in ("os.listdir", "os.scandir")
    mode, flags = (args[1] if len(args) > 1 else "r"), (args[2] if len(args) > 2 else 0)
    return any(c in str(mode or "") for c in "wax+") or bool((flags or 0) & WRITE_FLAGS)


def install(log_path: str, no_access: list[str], read_only: list[str]) -> None:
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    no_access_roots = tuple(os.path.realpath(p) for p in [*no_access, log_path])
    read_only_roots = tuple(os.path.realpath(p) for p in read_only)
    busy = []

    def refuse(event: str, root: str) -> None:
        try:
            os.write(log_fd, (json.dumps({"event": event, "path": root}) + "\n").encode())
        except OSError:
            pass
        raise PermissionError(f"the grader does not allow {event} on {root}")

    def hook(event: str, args: tuple) -> None:
        if busy or (event not in PATH_EVENTS and event not in COMMAND_EVENTS):
            return
        busy.append(1)
        try:
            if event in COMMAND_EVENTS:
                text = " ".join(os.fsdecode(a) if isinstance(a, (str, bytes)) else str(a) for a in args)
                hit = next((r for r in no_access_roots if r in text), None)
                if hit:
                    refuse(event, hit)
                return
            for value in args[:PATH_EVENTS[event]]:
                if isinstance(value, int) or value is None:
                    continue
                try:
                    path = os.path.realpath(os.fsdecode(value))
                except (TypeError, ValueError):
                    continue
                hit = _under(path, no_access_roots)
                if hit is None and _writes(event, args):
                    hit = _under(path, read_only_roots)
                if hit:
                    refuse(event, hit)
        finally:
            busy.clear()

    sys.addaudithook(hook)


def main() -> None:
    install(os.environ.pop("GMCOURSE_GUARD_LOG"),
            json.loads(os.environ.pop("GMCOURSE_GUARD_READ", "[]")),
            json.loads(os.environ.pop("GMCOURSE_GUARD_WRITE", "[]")))
    sys.argv = ["ipykernel_launcher", *sys.argv[1:]]
    runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
