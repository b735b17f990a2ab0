"""Verdicts for the grader's tests: turn outcomes and traces into one clear failure line."""

from __future__ import annotations

import numpy as np
import pytest

from parakit.controller.outcome import FINAL, Outcome


def fail(message: str) -> None:
    """Fail the current test with ``message`` only: no traceback of the grader's code."""
    pytest.fail(message, pytrace=False)


def require_ok(outcome: Outcome, context: str) -> None:
    """Fail with the outcome's message (and details) unless the graded call returned."""
    if outcome.ok:
        return
    if outcome.status in FINAL:  # a stub or a broken package: one line says it all
        fail(outcome.message)
    message = f"{context}: {outcome.message}" if context else outcome.message
    if outcome.details:
        message += "\n" + outcome.details.rstrip()
    fail(message)


def require_array(value, expected: np.ndarray, context: str, what: str = "result") -> None:
    """Fail unless ``value`` is an array of the expected shape whose entries are allclose."""
    if value is None:
        fail(f"{context}: returned None (expected the {_shape(expected)} {what}); "
             "return the result on rank 0 / in the calling process")
    if not isinstance(value, np.ndarray):
        fail(f"{context}: returned a {type(value).__name__}, expected a numpy array")
    if value.shape != expected.shape:
        fail(f"{context}: {what} has shape {value.shape}, expected {expected.shape}")
    if value.dtype != expected.dtype:
        fail(f"{context}: {what} has dtype {value.dtype}, expected {expected.dtype}")
    close = np.isclose(value, expected, rtol=1e-9, atol=1e-9)
    if not close.all():
        bad_rows = np.flatnonzero(~close.all(axis=tuple(range(1, close.ndim))))
        error = float(np.max(np.abs(value - expected)))
        fail(f"{context}: {len(bad_rows)} of {expected.shape[0]} rows differ from the expected "
             f"{what} (rows {_ranges(bad_rows)}; largest error {error:.3g})")


def _shape(a: np.ndarray) -> str:
    return "x".join(map(str, a.shape))


def _ranges(indices) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"`` (at most 8 ranges shown)."""
    spans: list[list[int]] = []
    for i in map(int, indices):
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    parts = [f"{a}-{b}" if a != b else f"{a}" for a, b in spans]
    return ", ".join(parts[:8]) + (", ..." if len(parts) > 8 else "")
