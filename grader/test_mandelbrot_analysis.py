"""Exercise 3, the analysis: block costs, the imbalance measure, per-pixel times and the plot of
their distribution. Plain functions (no pool, view or communicator), each called in a child of
its own like every graded function; their points count towards ``mandelbrot``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from parakit.controller.session.outcome import Outcome
from parakit.controller.verdicts.checks import fail, require_ok
from parakit.controller.verdicts.cpurule import serial_cpu
from problems.mandelbrot import (
    GRADING,
    Spec,
    block_rows,
    chunk_costs,
    compute_rows,
    imbalance,
    row_work,
    serial_image,
)


def _call(grading, function: str, cases: list[tuple]) -> list[Outcome]:
    """Outcomes of a plain function (no pool, view or comm), called in a child process."""
    return grading.run("plain", "mandelbrot", function, [{"args": args} for args in cases], 1,
                       key="analysis")


_rng = np.random.default_rng(3)
COST_INPUTS = [  # (pixel costs, nchunks)
    (row_work(GRADING)[:, None] / 150 + np.zeros((1, 150)), 4),
    (_rng.integers(0, 1000, (100, 150)).astype(float), 3),
    (_rng.integers(0, 1000, (37, 11)).astype(float), 4),  # 37 rows: blocks 10, 9, 9, 9
    (_rng.random((37, 11)) * 1e-5, 5),
    (_rng.random((10, 3)), 10),  # one row per block
    (_rng.random((23, 4)), 1),
]
IMBALANCE_INPUTS = [[1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 6.0], [5.0], [0.1, 0.3],
                    list(_rng.random(7) + 0.5)]


@pytest.mark.points(1)
def test_mandelbrot_chunk_costs(grading):
    """chunk_costs sums pixel costs over the numpy.array_split row blocks."""
    outcomes = _call(grading, "chunk_costs", COST_INPUTS)
    for (costs, nchunks), outcome in zip(COST_INPUTS, outcomes, strict=True):
        h, w = costs.shape
        context = f"chunk_costs(pixel_costs of shape ({h}, {w}), nchunks={nchunks})"
        require_ok(outcome, context)
        expected = chunk_costs(costs, nchunks)
        value = np.asarray(outcome.value, dtype=float) if outcome.value is not None else None
        if value is None or value.shape != expected.shape:
            fail(f"{context}: returned {None if value is None else value.shape}, expected an "
                 f"array of shape {expected.shape}: one cost per block")
        if not np.allclose(value, expected, rtol=1e-9, atol=0):
            sizes = [len(b) for b in block_rows(h, nchunks)]
            fail(f"{context}: returned {np.array2string(value, precision=4)}, expected "
                 f"{np.array2string(expected, precision=4)} (blocks of {sizes} rows, as "
                 f"numpy.array_split(range({h}), {nchunks}) makes them)")


@pytest.mark.points(1)
def test_mandelbrot_imbalance(grading):
    """imbalance(costs) is max/mean."""
    outcomes = _call(grading, "imbalance", [(np.array(c),) for c in IMBALANCE_INPUTS])
    for costs, outcome in zip(IMBALANCE_INPUTS, outcomes, strict=True):
        context = f"imbalance({np.array2string(np.array(costs), precision=3)})"
        require_ok(outcome, context)
        expected = imbalance(costs)
        try:
            value = float(outcome.value)
        except (TypeError, ValueError):
            fail(f"{context}: returned {outcome.value!r}, expected a number")
        if not np.isclose(value, expected, rtol=1e-9, atol=0):
            fail(f"{context}: returned {value:.6g}, expected max/mean = {expected:.6g}")


PIXEL_SPEC = Spec(w=60, h=40)  # the course viewport, coarser: about 0.15 s of timing
MIN_RANK_CORRELATION = 0.6  # measured 0.9+, also with two busy loops (docs/mandelbrot.md)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties get their mean rank), numpy only."""
    def ranks(x):
        x = np.asarray(x, dtype=float).ravel()
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=r)
        return (sums / counts)[inverse]
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


@pytest.mark.points(1)
def test_mandelbrot_pixel_times(grading):
    """pixel_times has one time per pixel that follows the iteration counts."""
    spec = PIXEL_SPEC
    context = f"pixel_times(Spec(w={spec.w}, h={spec.h}))"
    outcome = _call(grading, "pixel_times", [(spec,)])[0]
    require_ok(outcome, context)
    times = np.asarray(outcome.value, dtype=float) if outcome.value is not None else None
    if times is None or times.shape != (spec.h, spec.w):
        fail(f"{context}: returned {None if times is None else times.shape}, expected an array "
             f"of shape ({spec.h}, {spec.w}): one time per pixel, rows first")
    if not np.isfinite(times).all() or (times < 0).any() or times.max() <= 0:
        fail(f"{context}: times must be finite, non-negative seconds, not all zero")
    if times.max() > 1.0:
        fail(f"{context}: a pixel took {times.max():.3g} s; expected seconds per pixel "
             "(microseconds): did you time a whole row or accumulate?")
    rho = rank_correlation(times, serial_image(spec))
    if rho < MIN_RANK_CORRELATION:
        fail(f"{context}: the times hardly follow the iteration counts (rank correlation "
             f"{rho:.2f}, expected at least {MIN_RANK_CORRELATION}); time each pixel's call "
             "of mandelbrot(x, y, maxit) on its own")
    _require_measured(times, outcome, spec, context)


MEASURED_SHARE = 0.3  # of the kernel's CPU time for the spec, here: used, and timed
VARYING = 0.2  # share of pixels whose time differs from others' of the same iteration count


def _require_measured(times: np.ndarray, outcome: Outcome, spec: Spec, context: str) -> None:
    """Times that were measured, not made up. The call (from the runner's mark that it began
    to its result) used at least MEASURED_SHARE of the CPU time the kernel takes for these
    pixels, by the operating system's count (the reference: 29 ms, the kernel alone 14-25 ms):
    numbers made before the call, at import, fail. The times add up to that share at least.
    And they vary as measurements do: pixels of equal iteration count do not all get the same
    time, as any function of the counts would give.

    The limit: numbers made up inside the call at a cost like the kernel's (counts from a
    vectorised loop, 20 ms here, with noise added) pass; that is no easier than measuring.
    """
    kernel = serial_cpu(compute_rows, spec, range(spec.h))
    used = outcome.seen.call_cpu
    hint = "time each pixel's call of mandelbrot(x, y, maxit) with time.perf_counter()"
    if used is None:
        fail(f"{context}: the grader could not measure the call's CPU time (the runner's "
             "mark that the call began never came)")
    if used < MEASURED_SHARE * kernel:
        fail(f"{context}: the call used {used * 1e3:.0f} ms of CPU time (measured by the "
             f"operating system), while running mandelbrot(x, y, maxit) once per pixel takes "
             f"about {kernel * 1e3:.0f} ms here: the times were not measured in the call "
             f"(made up, or computed before it, at import); {hint}")
    if times.sum() < MEASURED_SHARE * kernel:
        fail(f"{context}: the times add up to {times.sum() * 1e3:.1f} ms, while running "
             f"mandelbrot(x, y, maxit) once per pixel takes about {kernel * 1e3:.0f} ms here; "
             f"{hint}")
    counts = serial_image(spec).ravel()
    flat = times.ravel()
    shared = 0
    varied = 0
    for count in np.unique(counts):
        group = flat[counts == count]
        if group.size > 1:
            shared += group.size
            varied += int((group != np.median(group)).sum())
    if shared and varied < VARYING * shared:
        fail(f"{context}: pixels with the same iteration count got the same time ({varied} of "
             f"{shared} differ): the times are a function of the iteration counts, not "
             f"measurements; {hint}")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_BYTES = 20 << 20


@pytest.mark.points(1)
def test_mandelbrot_plot_distribution(grading, outputs):
    """plot_distribution writes a real, non-blank PNG."""
    path = Path(outputs, f"distribution-{time.time_ns()}.png")  # a folder graded code may write
    times = (serial_image(GRADING) * 1.2e-7 + 3e-7)
    context = "plot_distribution(pixel_times, 4, path)"
    outcome = _call(grading, "plot_distribution", [(times, 4, str(path))])[0]
    require_ok(outcome, context)
    if path.is_symlink():  # never read, as the grader, whatever a link points to
        fail(f"{context}: path is a symbolic link, not the PNG file written there")
    if not path.is_file():
        fail(f"{context}: no file was written at path")
    if path.stat().st_size > MAX_PNG_BYTES:  # decoded in this process: keep it bounded
        fail(f"{context}: the PNG is {path.stat().st_size / 2**20:.0f} MiB; a plot takes well "
             f"under {MAX_PNG_BYTES >> 20} MiB")
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        fail(f"{context}: the file is not a PNG (it starts with {data[:8]!r}); "
             "use savefig(path) with a .png path or format='png'")
    import matplotlib.image

    try:
        pixels = matplotlib.image.imread(path)
    except Exception as exc:  # noqa: BLE001
        fail(f"{context}: the PNG cannot be decoded: {exc}")
    if pixels.ndim < 2 or min(pixels.shape[:2]) < 50:
        fail(f"{context}: the image is only {pixels.shape[1]}x{pixels.shape[0]} pixels")
    flat = pixels.reshape(pixels.shape[0] * pixels.shape[1], -1)
    if (flat == flat[0]).all():
        fail(f"{context}: the PNG is a single colour: nothing was drawn")
