"""The throwaway OS sandbox a submission runs in: bubblewrap (``bwrap``), built from nothing.

Every submission gets its own sandbox, made fresh and thrown away after it:

- a root filesystem that is an empty tmpfs, into which only what Python needs is bound
  read-only: ``/usr`` (and the ``/bin``, ``/lib`` links), a few files of ``/etc``, the base
  interpreter (``sys.base_prefix``), the virtual environment (``sys.prefix``) and the ``gmcourse``
  package. ``solutions/``, ``instructor/``, the gradebook, the other students' notebooks and the
  grader's scratch folders are not hidden there: they do not exist there;
- ``/job`` (read-only): the prepared notebook and the inputs generated for this submission;
- ``/work``, ``/tmp`` and ``/dev/shm``: size-capped tmpfs, the only writable places, lost with
  the sandbox;
- ``/out/result.json`` and ``/out/outputs.npz``: two files of the grader's, the only way out,
  each capped by the file-size limit and read back by the grader as plain data;
- new PID, network (loopback only), IPC, UTS and cgroup namespaces; ``--new-session`` (no
  terminal injection); ``--die-with-parent`` and PID namespace teardown (nothing outlives it);
  ``--clearenv``;
- an unprivileged uid: as root, ``setpriv`` switches to the uid for real (65534, *nobody*, for
  the first parallel slot, 65533 for the second, ...) with every capability and the bounding set
  dropped and ``no_new_privs``; without root, a user namespace maps that uid to the caller's,
  with capabilities dropped and further user namespaces disabled;
- rlimits set by ``prlimit`` inside (address space, file size, processes, open files, no core
  files); the grader enforces the wall-clock and total-memory limits from outside by killing
  ``bwrap`` (see :mod:`gmcourse.grading.batch`).

:func:`detect` proves all this with a trial run before any grading: it runs Python inside and
checks the uid, the capabilities, the PID namespace, the network and that the course is absent.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import gmcourse

NOBODY = 65534
PACKAGE = Path(gmcourse.__file__).resolve().parent
ETC_FILES = ("ld.so.cache", "ld.so.conf", "passwd", "group", "nsswitch.conf", "hosts", "localtime", "fonts")
SANDBOX_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/work", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/work/.matplotlib",
               "PYTHONDONTWRITEBYTECODE": "1", "JUPYTER_RUNTIME_DIR": "/work/.jupyter/runtime",
               "JUPYTER_DATA_DIR": "/work/.jupyter/data", "JUPYTER_CONFIG_DIR": "/work/.jupyter/config",
               "IPYTHONDIR": "/work/.ipython", "TMPDIR": "/tmp"}


@dataclass(frozen=True)
class SandboxLimits:
    memory_mb: int = 3000      # address space per process (RLIMIT_AS); the grader also kills the
    file_mb: int = 64          # whole sandbox when its processes together hold more resident memory
    processes: int = 256       # RLIMIT_NPROC of the sandbox's own uid (threads count)
    open_files: int = 1024
    tmpfs_mb: int = 256        # /work and /tmp, each


@dataclass(frozen=True)
class Isolation:
    """How submissions are run: ``mode`` is "setpriv" (root), "userns" (no root) or "none"."""

    mode: str
    description: str
    bwrap: str = ""

    @property
    def sandboxed(self) -> bool:
        return self.mode != "none"


NONE = Isolation("none", "NO SANDBOX: student code runs as the grader's user, with network, and can "
                         "read solutions, hidden checks and the gradebook")


def _ancestors(path: Path) -> list[Path]:
    return [p for p in reversed(path.parents) if p != Path("/")]


def _system_binds() -> list[str]:
    """bwrap arguments for /usr, the /bin-/lib links, a few /etc files and Python itself."""
    args: list[str] = []
    args += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_FILES:
        path = Path("/etc") / name
        if path.exists():
            args += ["--ro-bind", str(path.resolve()), str(path)]
    made, bound = {Path("/usr"), Path("/etc")}, [Path("/usr")]
    trees = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(),
             Path(sys.executable).resolve().parent, PACKAGE]  # PACKAGE: an editable install
    for tree in sorted(set(trees), key=lambda p: len(p.parts)):
        if any(b == tree or b in tree.parents for b in bound):
            continue                # already inside a bound tree
        for parent in _ancestors(tree):
            if parent not in made:
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        args += ["--ro-bind", str(tree), str(tree)]
        made.add(tree)
        bound.append(tree)
    return args


def command(isolation: Isolation, argv: list[str], job_dir: Path, out_files: dict[str, Path],
            uid: int, limits: SandboxLimits) -> list[str]:
    """The full command line: bwrap, the uid switch, prlimit, then ``argv`` inside the sandbox.

    ``job_dir`` appears read-only at ``/job``; each ``out_files[name]`` (a host file the grader
    created) appears writable at ``/out/<name>``."""
    limits_argv = ["prlimit", f"--as={limits.memory_mb * 2**20}", f"--fsize={limits.file_mb * 2**20}",
                   f"--nproc={limits.processes}", f"--nofile={limits.open_files}", "--core=0", "--"]
    if isolation.mode == "none":
        return [*limits_argv, *argv]
    tmpfs = str(limits.tmpfs_mb * 2**20)
    args = [isolation.bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", str(64 * 2**20), "--tmpfs", "/dev/shm",   # multiprocessing locks
            "--perms", "1777", "--size", tmpfs, "--tmpfs", "/tmp",
            "--perms", "0777", "--size", tmpfs, "--tmpfs", "/work",
            *_system_binds(),
            "--ro-bind", str(job_dir), "/job",
            "--perms", "0755", "--dir", "/out"]
    for name, path in out_files.items():
        args += ["--bind", str(path), f"/out/{name}"]
    args += ["--remount-ro", "/"]
    for key, value in SANDBOX_ENV.items():
        args += ["--setenv", key, value]
    args += ["--chdir", "/work"]
    if isolation.mode == "setpriv":
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                 "--cap-add", "CAP_SETPCAP", "--",
                 "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                 "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"]
    else:
        args += ["--unshare-user", "--uid", str(uid), "--gid", str(uid), "--disable-userns",
                 "--cap-drop", "ALL", "--"]
    return [*args, *limits_argv, *argv]


def prepare_out_file(path: Path, uid: int, isolation: Isolation) -> None:
    """An empty host file the sandbox may write (its owner is the sandbox's uid when root)."""
    path.write_bytes(b"")
    if isolation.mode == "setpriv":
        os.chown(path, uid, uid)
    path.chmod(0o600)


TRIAL = r'''
import json, os, socket, sys
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
links = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1).close()
    network = True
except OSError:
    network = False
print(json.dumps({"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
                  "cap_eff": status["CapEff"].strip(), "cap_prm": status["CapPrm"].strip(),
                  "cap_bnd": status["CapBnd"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
                  "pid": os.getpid(), "links": links, "network": network,
                  "visible": [p for p in sys.argv[1:] if os.path.exists(p)],
                  "writable_root": os.access("/", os.W_OK), "job": os.listdir("/job")}))
'''


def trial(isolation: Isolation, must_be_absent: list[Path] = ()) -> tuple[bool, str]:
    """Run Python in a sandbox of this kind; return whether every promise held, and why not."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="gmcourse-trial-") as tmp:
        job = Path(tmp) / "job"
        job.mkdir()
        (job / "marker").write_text("x")
        job.chmod(0o755)
        out = Path(tmp) / "result.json"
        prepare_out_file(out, NOBODY, isolation)
        argv = command(isolation, [sys.executable, "-I", "-c", TRIAL, *map(str, must_be_absent)], job,
                       {"result.json": out}, NOBODY, SandboxLimits())
        try:
            run = subprocess.run(argv, capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            return False, f"{type(error).__name__}: {error}"
        if run.returncode != 0:
            return False, run.stderr.decode(errors="replace")[-300:]
        try:
            seen = json.loads(run.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            return False, f"unreadable trial output {run.stdout[-200:]!r}"
    problems = []
    if (seen["uid"], seen["euid"], seen["gid"]) != (NOBODY, NOBODY, NOBODY):
        problems.append(f"uid {seen['uid']} instead of {NOBODY}")
    if int(seen["cap_eff"], 16) or int(seen["cap_prm"], 16) or int(seen["cap_bnd"], 16):
        problems.append(f"capabilities left: {seen['cap_eff']}/{seen['cap_bnd']}")
    if seen["no_new_privs"] != "1":
        problems.append("no_new_privs is not set")
    if seen["pid"] > 10:
        problems.append(f"no PID namespace (pid {seen['pid']})")
    if seen["network"] or set(seen["links"]) - {"lo"}:
        problems.append(f"network reachable (links {seen['links']})")
    if seen["visible"]:
        problems.append(f"visible inside: {seen['visible']}")
    if seen["writable_root"] or seen["job"] != ["marker"]:
        problems.append(f"unexpected filesystem (/ writable: {seen['writable_root']}, /job: {seen['job']})")
    return not problems, "; ".join(problems)


def detect(must_be_absent: list[Path] = ()) -> tuple[Isolation, str]:
    """The sandbox this machine can make (proven by a trial run), and why others failed."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return NONE, "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    failures = []
    modes = (["setpriv"] if os.geteuid() == 0 and shutil.which("setpriv") else []) + ["userns"]
    for mode in modes:
        description = {"setpriv": "bubblewrap as root, then setpriv to an unprivileged uid",
                       "userns": "bubblewrap in a user namespace"}[mode]
        isolation = Isolation(mode, f"{description}: uid {NOBODY} (one uid per parallel slot), no "
                                    "capabilities, no network, own PID namespace, only the submission "
                                    "and Python in its filesystem", bwrap)
        ok, why = trial(isolation, must_be_absent)
        if ok:
            return isolation, ""
        failures.append(f"{mode}: {why}")
    return NONE, "bubblewrap cannot make a sandbox here: " + " | ".join(failures)
