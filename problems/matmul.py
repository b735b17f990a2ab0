"""Matrix multiplication: the traced block product that every backend must use."""

from __future__ import annotations

import numpy as np

from problems import trace


def multiply(a_rows: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Return ``a_rows @ B`` and trace it (work units: multiply-adds, rows*k*n)."""
    a_rows = np.asarray(a_rows)
    B = np.asarray(B)
    units = a_rows.shape[0] * B.size if a_rows.ndim == 2 else a_rows.size
    with trace.record("matmul.multiply", task=list(a_rows.shape), units=float(units)):
        return np.dot(a_rows, B)


def random_pair(m: int, k: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A reproducible float64 pair A (m, k), B (k, n)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)), rng.standard_normal((k, n))
