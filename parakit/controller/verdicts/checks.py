"""Verdicts for the grader's tests: turn outcomes and traces into one clear failure line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from parakit.controller.session.outcome import FINAL, Outcome
from parakit.controller.verdicts.mismatch import explain_array


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


def require_array(value, expected: np.ndarray, context: str, *, what: str, workers: int,
                  exact: bool, picture: Path | None = None, alone: str = "") -> None:
    """Fail unless ``value`` equals ``expected`` (``exact``, else allclose), naming the likely
    cause (parakit.controller.verdicts.mismatch) and drawing expected, returned and difference to
    ``picture``. ``alone`` is added when no row holds a result at one process (what a lone
    rank must do)."""
    message = explain_array(value, expected, what=what, workers=workers, exact=exact,
                            picture=picture)
    if message is None:
        return
    if alone and workers == 1 and "no row holds a result" in message.splitlines()[0]:
        message = message.replace("no row holds a result", f"no row holds a result; {alone}", 1)
    fail(f"{context}: {message}")


def require_product(value, expected: np.ndarray, context: str, workers: int,
                    picture: Path | None = None) -> None:
    """The product within 1e-9 (float64 rounding), else the likely cause and a picture."""
    require_array(value, expected, context, what="product", workers=workers, exact=False,
                  picture=picture)


def picture_name(function: str, workers: int, case: str) -> str:
    """The file name of a mismatch's picture: one per function, process count and case."""
    return f"mismatch-{function}-P{workers}-{case}.png"
