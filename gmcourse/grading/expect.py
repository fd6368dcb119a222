"""Property assertions for checks: each raises CheckFailed naming expected and actual values.

They run wherever the checks run: in the student's kernel for ``check("q1")`` feedback, and in the
grader's own process for batch grading, never trusting anything from the student's kernel.
"""
from __future__ import annotations

import numpy as np

from gmcourse.grading.question import CheckFailed


def expect_shape(actual: np.ndarray, shape: tuple, what: str) -> None:
    """``actual`` has exactly ``shape``."""
    actual_shape = tuple(np.shape(actual))
    if actual_shape != tuple(shape):
        raise CheckFailed(f"{what} has the wrong shape", expected=tuple(shape), actual=actual_shape)


def expect_finite(actual: np.ndarray, what: str) -> None:
    """Every entry of ``actual`` is finite (no nan, no inf)."""
    actual = np.asarray(actual, dtype=np.float64)
    if not np.all(np.isfinite(actual)):
        raise CheckFailed(f"{what} should be finite everywhere", expected="finite values",
                          actual=actual)


def expect_close(actual, expected, what: str, rtol: float = 1e-4, atol: float = 1e-4) -> None:
    """``actual`` and ``expected`` have the same shape and agree within ``atol + rtol*|expected|``."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    expect_shape(actual, expected.shape, what)
    ok = np.abs(actual - expected) <= atol + rtol * np.abs(expected)
    if not np.all(ok & np.isfinite(actual)):
        worst = float(np.nanmax(np.abs(actual - expected))) if np.any(np.isfinite(actual)) else np.nan
        raise CheckFailed(f"{what} (largest difference {worst:.3g}, tolerance {atol:g} + {rtol:g}*|expected|)",
                          expected=expected, actual=actual)


def expect_less(actual: float, bound: float, what: str) -> None:
    """``actual < bound`` (both scalars)."""
    actual = float(np.asarray(actual, dtype=np.float64))
    if not actual < float(bound):
        raise CheckFailed(what, expected=f"< {float(bound):.5g}", actual=actual)
