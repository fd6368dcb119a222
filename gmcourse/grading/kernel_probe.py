"""The one grader helper that runs inside a student's kernel: call a public probe, save arrays.

The grader appends cells ``run_probe(globals(), module, probe, inputs_path, outputs_path)``
after the student's cells. Inputs come from the grader; outputs are written with ``np.savez``
and read back by the grader with ``np.load(allow_pickle=False)``. Nothing here decides a grade,
so patching it from the student's code can only break the student's own probe.
"""
from __future__ import annotations

import importlib

import numpy as np


def run_probe(namespace, module: str, probe: str, inputs_path: str, outputs_path: str) -> None:
    if not module.startswith("gmcourse.checks."):
        raise ValueError(f"probes come from gmcourse.checks, got {module!r}")
    function = getattr(importlib.import_module(module), probe)
    with np.load(inputs_path, allow_pickle=False) as data:
        inputs = {key: data[key] for key in data.files}
    outputs = function(namespace, inputs)
    np.savez(outputs_path, **{key: np.asarray(value, dtype=np.float64) for key, value in outputs.items()})
