"""What a graded question is: check inputs, a probe, and property checks.

A question is split in two halves so that a student's kernel can never grade itself:

- ``make_inputs(generator)`` builds the check inputs (plain NumPy arrays) and ``probe(namespace,
  inputs)`` calls the student's functions on them and returns plain NumPy arrays. The probe is the
  only part that ever runs next to the student's code.
- each :class:`Check` looks at ``(inputs, outputs)`` and raises :class:`CheckFailed` with the
  expected and the actual value. In batch grading the checks run in the grader's own process, on
  outputs read back with ``np.load(allow_pickle=False)``, so monkeypatching ``torch.allclose``,
  ``numpy.testing`` or these helpers inside the student's kernel changes nothing.

Points do not live here: they sit in the graded cell's metadata (see ``docs/authoring.md``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch

Arrays = dict[str, np.ndarray]


class CheckFailed(AssertionError):
    """A property did not hold; carries what was expected and what the student's code gave."""

    def __init__(self, message: str, expected=None, actual=None):
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.actual = actual

    def describe(self) -> str:
        text = self.message
        if self.expected is not None or self.actual is not None:
            text += f"\n    expected: {_short(self.expected)}\n    actual:   {_short(self.actual)}"
        return text


def _short(value, limit: int = 300) -> str:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        text = f"{float(value):.6g}"
    elif isinstance(value, np.ndarray):
        with np.printoptions(precision=5, threshold=12, edgeitems=3, linewidth=100):
            text = f"array{list(value.shape)} {value}"
    else:
        text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Check:
    """One property: ``run(inputs, outputs)`` returns None or raises :class:`CheckFailed`."""

    name: str
    run: Callable[[Arrays, Arrays], None]


@dataclass(frozen=True)
class Question:
    """A graded question: ``id`` matches the graded cell's ``metadata.gmcourse.question``."""

    id: str
    functions: tuple[str, ...]
    make_inputs: Callable[[torch.Generator], Arrays]
    probe: Callable[[Mapping, Arrays], Arrays]
    checks: tuple[Check, ...] = field(default_factory=tuple)
    seed: int = 0

    def inputs(self, seed: int | None = None) -> Arrays:
        generator = torch.Generator().manual_seed(self.seed if seed is None else seed)
        return {key: np.asarray(value) for key, value in self.make_inputs(generator).items()}


def student_function(namespace: Mapping, name: str) -> Callable:
    """The student's function ``name`` from a notebook's globals, with a clear error if absent."""
    function = namespace.get(name)
    if function is None:
        raise NameError(
            f"function {name!r} is not defined: run its cell, and keep the name the exercise uses"
        )
    if not callable(function):
        raise TypeError(f"{name!r} should be a function, got {type(function).__name__}")
    return function


def as_tensor(array: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
    """A float32 tensor copy of a check input (the dtype the course uses everywhere)."""
    return torch.tensor(np.asarray(array), dtype=torch.float32, requires_grad=requires_grad)


def as_array(value, name: str) -> np.ndarray:
    """A float64 NumPy copy of what the student's function returned, detached."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy().copy()
    if isinstance(value, (float, int, np.ndarray, np.floating, np.integer)):
        return np.asarray(value, dtype=np.float64)
    raise TypeError(f"{name} should be a torch.Tensor, got {type(value).__name__}")
