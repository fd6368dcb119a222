"""The export step, the one grader helper that runs in a student's kernel (inside the sandbox).

The grader appends one cell per (question, public|hidden) after the student's cells::

    from gmcourse.grading.export import export
    export(globals(), "gmcourse.checks.intro", "q1_probe", "/job/inputs/public-q1.npz",
           "/work/.export/public-q1.npz")

It calls the public probe, which calls the student's functions on the inputs and returns their
raw values, and saves them as float64 arrays (``np.savez``, no pickle). Nothing here is
trusted: a notebook can replace the probe, this function or NumPy, and then it has only chosen
the values its own functions "returned". The grader derives everything else (Jacobians,
finite-difference gradients, held-out likelihoods) and every verdict from those values, in its
own process.
"""
from __future__ import annotations

import importlib

import numpy as np


def export(namespace, module: str, probe: str, inputs_path: str, outputs_path: str) -> None:
    if not module.startswith("gmcourse.checks."):
        raise ValueError(f"probes come from gmcourse.checks, got {module!r}")
    function = getattr(importlib.import_module(module), probe)
    with np.load(inputs_path, allow_pickle=False) as data:
        inputs = {key: data[key] for key in data.files}
    outputs = function(namespace, inputs)
    np.savez(outputs_path, **{key: np.asarray(value, dtype=np.float64) for key, value in outputs.items()})
