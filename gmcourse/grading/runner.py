"""Inside the sandbox: run one prepared notebook in a kernel, then hand its exports to the grader.

Run by the grader as ``python -I runner.py /job/job.json`` *inside* the sandbox of
:mod:`gmcourse.grading.sandbox`, as the sandbox's unprivileged uid: the notebook runner (this
script, with nbclient) and the kernel both live there, talking over IPC sockets in ``/work``.
The notebook is the student's code cells followed by export cells
(:mod:`gmcourse.grading.export`), which call the student's functions on ``/job/inputs/*.npz``
and save their raw values in ``/work/.export``. At the end this script gathers those values into
``/out/outputs.npz`` and writes per-cell status to ``/out/result.json``.

Nothing here is trusted: the student's code shares this uid and can rewrite both files. The
grader reads them as capped plain data (never a pickle), recomputes every derived quantity and
every verdict itself, and enforces time and memory limits from outside.
"""
from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import nbformat
import numpy as np
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

EXPORT_NAME = re.compile(r"(public|hidden)-[A-Za-z0-9_.-]+\.npz")
OUTPUT_KEY = re.compile(r"[A-Za-z0-9_]+")


class CappedClient(NotebookClient):
    """Keeps at most ``output_limit`` bytes of cell outputs and widget messages in memory."""

    output_limit = 1_000_000
    output_bytes = 0
    output_truncated = False

    def _count(self, msg) -> bool:
        self.output_bytes += len(json.dumps(msg.get("content", {}), default=str))
        for buffer in msg.get("buffers") or ():
            self.output_bytes += len(buffer)
        if self.output_bytes > self.output_limit:
            self.output_truncated = True
        return not self.output_truncated

    def output(self, outs, msg, display_id, cell_index):
        if not self._count(msg):
            return None
        return super().output(outs, msg, display_id, cell_index)

    def handle_comm_msg(self, outs, msg, cell_index):
        if self._count(msg):
            super().handle_comm_msg(outs, msg, cell_index)


# Run by the kernel at start-up, before the student's first cell. A cell that fails keeps its
# exception, and with it the traceback's frames and every local of them, alive in IPython
# (sys.last_value, the last execution result, the frames' cached locals): a cell that allocated
# until its address-space limit stopped it would then hold all that memory, and every later cell
# would fail for want of it. Dropping a failed cell's frames hands the memory back: only that cell
# is lost. (The error itself was already sent to the notebook.)
RELEASE_FAILED_CELLS = """
def _gmcourse_release_failed_cell(result):
    import gc, sys, traceback
    error, seen = result.error_in_exec, set()
    if error is None:
        return
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        tb = error.__traceback__
        traceback.clear_frames(tb)
        while tb is not None:
            tb.tb_frame.f_locals  # re-syncs the frame's cached dict of locals with the cleared frame
            tb = tb.tb_next
        error.__traceback__ = None
        error = error.__cause__ or error.__context__
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            setattr(sys, name, None)
    gc.collect()
get_ipython().events.register("post_run_cell", _gmcourse_release_failed_cell)
del _gmcourse_release_failed_cell
"""


def write_kernel_spec(work: Path) -> Path:
    spec_dir = work / ".kernels" / "kernels" / "gmcourse-sandbox"
    spec_dir.mkdir(parents=True, exist_ok=True)
    start_up = spec_dir / "release_failed_cells.py"
    start_up.write_text(RELEASE_FAILED_CELLS)
    spec = {"argv": [sys.executable, "-I", "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     f"--IPKernelApp.exec_files={json.dumps([str(start_up)])}"],
            "display_name": "gmcourse sandbox", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return spec_dir.parent


def cell_seconds(cell) -> float | None:
    """How long the kernel took on the cell (execute_input to execute_reply, both stamped by the
    kernel), or None when it never replied (the cell that ran over its limit, or never ran)."""
    timing = cell.get("metadata", {}).get("execution", {})
    try:
        start, end = (datetime.fromisoformat(timing[key].replace("Z", "+00:00"))
                      for key in ("iopub.execute_input", "shell.execute_reply"))
    except (KeyError, ValueError, AttributeError):
        return None
    return round(max(0.0, (end - start).total_seconds()), 3)


def cell_record(index: int, cell) -> dict:
    seconds = cell_seconds(cell)
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        error = f"{errors[-1].get('ename', 'Error')}: {errors[-1].get('evalue', '')}"[:500]
        return {"index": index, "status": "error", "error": error, "seconds": seconds}
    ran = cell.get("execution_count") is not None
    return {"index": index, "status": "ok" if ran else "not run", "error": "", "seconds": seconds}


def gather_exports(export_dir: Path, out_path: Path) -> None:
    """``public-q1.npz`` with key ``log_prob`` -> ``public__q1__log_prob`` in one ``.npz``."""
    arrays = {}
    for path in sorted(export_dir.glob("*.npz")) if export_dir.is_dir() else []:
        if not EXPORT_NAME.fullmatch(path.name):
            continue
        source, qid = path.stem.split("-", 1)
        try:
            with np.load(path, allow_pickle=False) as data:
                for key in data.files:
                    if OUTPUT_KEY.fullmatch(key):
                        arrays[f"{source}__{qid}__{key}"] = np.asarray(data[key], dtype=np.float64)
        except Exception:  # an unreadable export counts as missing; the grader says so
            continue
    with open(out_path, "wb") as f:
        np.savez(f, **arrays)


def run(job: dict) -> dict:
    work = Path(job["work"])
    Path(job["export_dir"]).mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(job["notebook"], as_version=4)
    (work / ".ipc").mkdir(exist_ok=True)
    km = AsyncKernelManager(kernel_name="gmcourse-sandbox", transport="ipc", ip=str(work / ".ipc" / "k"),
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(write_kernel_spec(work))]),
                            connection_file=str(work / ".ipc" / "connection.json"))
    client = CappedClient(nb, km=km, timeout=job["cell_timeout"], allow_errors=True,
                          interrupt_on_timeout=False, startup_timeout=60,
                          resources={"metadata": {"path": str(work)}})
    client.output_limit = job["output_limit_bytes"]
    stopped = {"reason": ""}
    start = time.monotonic()

    def report() -> dict:
        return {"reason": stopped["reason"][:500], "elapsed": round(time.monotonic() - start, 2),
                "output_truncated": client.output_truncated,
                "cells": [cell_record(i, cell) for i, cell in enumerate(nb.cells)]}

    def finish(result: dict) -> None:
        gather_exports(Path(job["export_dir"]), Path(job["outputs"]))
        Path(job["result"]).write_text(json.dumps(result))

    def on_total_timeout():
        stopped["reason"] = f"notebook ran over its total time limit of {job['total_timeout']} s"
        finish(report())
        os._exit(0)   # the sandbox, and the kernel in it, end with this process

    watchdog = threading.Timer(job["total_timeout"], on_total_timeout)
    watchdog.daemon = True
    watchdog.start()
    try:
        client.execute()
    except CellTimeoutError:
        stopped["reason"] = stopped["reason"] or (
            f"a cell ran over the per-cell time limit of {job['cell_timeout']} s; the kernel was stopped")
    except DeadKernelError:
        stopped["reason"] = stopped["reason"] or "the kernel died (memory limit or a crash)"
    except Exception as error:
        stopped["reason"] = stopped["reason"] or f"execution failed: {type(error).__name__}: {error}"
    watchdog.cancel()
    return report()


if __name__ == "__main__":
    job = json.loads(Path(sys.argv[1]).read_text())
    result = run(job)
    gather_exports(Path(job["export_dir"]), Path(job["outputs"]))
    Path(job["result"]).write_text(json.dumps(result))
    os._exit(0)   # do not wait for a kernel that refuses to stop: the sandbox ends with us
