"""Grading worker: run one prepared notebook in a fresh, sandboxed kernel and record what happened.

Run as ``python execute.py job.json`` (by file path: it needs only nbclient, not gmcourse or
torch). ``job.json`` is written by :mod:`gmcourse.grading.batch`; this script writes
``job["result"]``: per-cell status and error, total time, and why the run stopped early. It
never evaluates a check: the probe cells write arrays that the grader reads and judges itself.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

SANDBOX = Path(__file__).with_name("sandbox.py")
GUARD = Path(__file__).with_name("kernel_guard.py")


class CappedClient(NotebookClient):
    """A NotebookClient that keeps at most ``output_limit`` bytes of outputs in memory."""

    output_limit = 1_000_000
    output_bytes = 0
    output_truncated = False

    def output(self, outs, msg, display_id, cell_index):
        self.output_bytes += len(json.dumps(msg.get("content", {}), default=str))
        if self.output_bytes > self.output_limit:
            self.output_truncated = True
            return None
        return super().output(outs, msg, display_id, cell_index)


def write_kernel_spec(job: dict) -> Path:
    """A kernel spec whose command is the sandbox launcher in front of ipykernel."""
    spec_dir = Path(job["kernel_dir"]) / "kernels" / "gmcourse-sandbox"
    spec_dir.mkdir(parents=True, exist_ok=True)
    sandbox = [sys.executable, "-I", str(SANDBOX), "--memory-mb", str(job["memory_mb"]),
               "--file-mb", str(job["file_mb"])]
    if job["mount_private"]:
        sandbox.append("--mount-private")
    for path in job["readonly"]:
        sandbox += ["--readonly", path]
    for path in job["hide"]:
        sandbox += ["--hide", path]
    argv = [*job["prefix"], *sandbox, "--", sys.executable, str(GUARD), "-f", "{connection_file}"]
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "HOME": job["cwd"], "PYTHONDONTWRITEBYTECODE": "1", "GMCOURSE_GUARD_LOG": job["guard_log"],
           "GMCOURSE_GUARD_READ": json.dumps(job["hide"]), "GMCOURSE_GUARD_WRITE": json.dumps(job["readonly"])}
    spec = {"argv": argv, "display_name": "gmcourse sandbox", "language": "python", "env": env}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return spec_dir.parent


def kill_kernel(km) -> None:
    """SIGKILL the kernel's whole process group (``unshare``, the kernel, anything it started).

    Killing only ``unshare`` is not enough: the kernel is PID 1 of its namespace, and a parent
    death signal does not reach it."""
    pgid = getattr(km.provisioner, "pgid", None) if km.provisioner else None
    if pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def cell_record(index: int, cell) -> dict:
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        error = f"{errors[-1].get('ename', 'Error')}: {errors[-1].get('evalue', '')}"[:500]
        return {"index": index, "status": "error", "error": error}
    ran = cell.get("execution_count") is not None
    return {"index": index, "status": "ok" if ran else "not run", "error": ""}


def run(job: dict) -> dict:
    nb = nbformat.read(job["notebook"], as_version=4)
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": job["cwd"]})
    ipc_dir = Path(job["kernel_dir"]) / "ipc"
    ipc_dir.mkdir(exist_ok=True)
    km = AsyncKernelManager(kernel_name="gmcourse-sandbox", transport="ipc", ip=str(ipc_dir / "k"),
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(write_kernel_spec(job))]),
                            connection_file=str(Path(job["kernel_dir"]) / "connection.json"))
    client = CappedClient(nb, km=km, timeout=job["cell_timeout"], allow_errors=True,
                          interrupt_on_timeout=False, startup_timeout=60,
                          resources={"metadata": {"path": job["cwd"]}})
    client.output_limit = job["output_limit_bytes"]
    stopped = {"reason": ""}

    def kill_on_total_timeout():
        """Kill the kernel; if nbclient still waits on a dead channel, report and exit."""
        stopped["reason"] = f"notebook ran over its total time limit of {job['total_timeout']} s"
        kill_kernel(km)
        time.sleep(10)
        Path(job["result"]).write_text(json.dumps(report(time.monotonic() - start)))
        os._exit(0)

    def report(elapsed):
        return {"reason": stopped["reason"][:500], "elapsed": round(elapsed, 2),
                "output_truncated": client.output_truncated,
                "cells": [cell_record(i, cell) for i, cell in enumerate(nb.cells)]}

    watchdog = threading.Timer(job["total_timeout"], kill_on_total_timeout)
    start = time.monotonic()
    watchdog.start()
    try:
        client.execute()
    except CellTimeoutError:
        stopped["reason"] = stopped["reason"] or (
            f"a cell ran over the per-cell time limit of {job['cell_timeout']} s; the kernel was stopped")
    except DeadKernelError:
        stopped["reason"] = stopped["reason"] or "the kernel died (memory limit or a crash)"
    except Exception as error:  # the grader records it and goes on with the next submission
        stopped["reason"] = stopped["reason"] or f"execution failed: {type(error).__name__}: {error}"
    finally:
        watchdog.cancel()
        kill_kernel(km)
    return report(time.monotonic() - start)


if __name__ == "__main__":
    job = json.loads(Path(sys.argv[1]).read_text())
    result = run(job)
    Path(job["result"]).write_text(json.dumps(result))
