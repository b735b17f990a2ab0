"""Why a returned array differs from the expected one: the likely cause, with numbers.

``explain_array`` names the cause the data shows, in one line a student can act on. It never
raises, and never guesses against the data: if no pattern fits, it says only what differs.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from parakit.controller.verdicts.mismatch_picture import draw

RTOL = ATOL = 1e-9  # the product's tolerance (np.isclose)


def ranges(indices: Iterable[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"`` (at most 8 ranges shown)."""
    spans: list[list[int]] = []
    for i in map(int, indices):
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    parts = [f"{a}-{b}" if a != b else f"{a}" for a, b in spans]
    return ", ".join(parts[:8]) + (", ..." if len(parts) > 8 else "")


def explain_array(value: object, expected: np.ndarray, *, what: str, workers: int,
                  exact: bool, picture: Path | None = None) -> str | None:
    """None when value equals expected; else a message (no leading context, caller prefixes it)."""
    p = int(workers) if isinstance(workers, (int, np.integer)) and workers >= 1 else 1
    try:
        expected = np.asarray(expected)
        message = _explain(value, expected, what, p, exact)
    except Exception as exc:  # the last guard: a message, never an exception
        return f"{what} differs from the expected {what} (not analysed: {type(exc).__name__})"
    if (message is not None and picture is not None and isinstance(value, np.ndarray)
            and value.shape == expected.shape and value.dtype.kind in "iuf"):
        with contextlib.suppress(Exception):  # a picture is a bonus, never an error
            draw(np.asarray(value), expected, _agree(value, expected, exact), exact,
                 message.splitlines()[0], Path(picture))
            message += f"\npicture: {picture}"
    return message


def _explain(value: object, expected: np.ndarray, what: str, p: int, exact: bool) -> str | None:
    if value is None:
        return (f"returned None (expected the {'x'.join(map(str, expected.shape))} {what}); "
                "return the result on rank 0 / in the calling process")
    if not isinstance(value, np.ndarray):
        return _not_array(value, expected)
    value = np.asarray(value)  # a plain array, also for subclasses (np.matrix)
    if value.shape != expected.shape:
        return _wrong_shape(value, expected, what, p, exact)
    if value.dtype.kind not in "iuf":
        return (f"{what} has dtype {value.dtype}, expected {expected.dtype}: not a real-number "
                "dtype")
    if not exact and value.dtype != expected.dtype:
        return _wrong_dtype(value, expected, what)
    fraction = np.isfinite(value) & (value != np.round(np.nan_to_num(value)))
    if exact and fraction.any():
        return (f"the {what} has dtype {value.dtype} with non-integer entries; expected the "
                f"integer iteration counts from compute_rows\n  {fraction.sum()} entries are "
                f"not whole numbers (rows {ranges(np.flatnonzero(fraction.any(axis=1)))})")
    same = _agree(value, expected, exact)
    if same.all():
        return None
    notes = [f"{mask.sum()} entries are {name} (rows {ranges(np.flatnonzero(mask.any(axis=1)))})"
             for name, mask in (("NaN", np.isnan(value)), ("inf", np.isinf(value))) if mask.any()]
    cause, extra = _rows(value, expected, same, what, p, exact)
    return "; ".join(notes + [cause]) + extra


def _agree(value: np.ndarray, expected: np.ndarray, exact: bool) -> np.ndarray:
    """The entries that agree: equal (an image), or within RTOL/ATOL (a product)."""
    with np.errstate(all="ignore"):
        return value == expected if exact else np.isclose(value, expected, rtol=RTOL, atol=ATOL)


def _not_array(value: object, expected: np.ndarray) -> str:
    """The type (the wire delivers None, str, numbers, dict or arrays: lists are arrays)."""
    return f"returned {_a(type(value).__name__)}, expected a numpy array"


def _a(name: str) -> str:
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _wrong_shape(value: np.ndarray, expected: np.ndarray, what: str, p: int, exact: bool) -> str:
    m, n = expected.shape
    head = f"{what} has shape {value.shape}, expected {expected.shape}"
    if value.dtype.kind not in "iuf":
        return f"{head} (and dtype {value.dtype}, expected {expected.dtype})"
    if value.size == expected.size and value.size:
        if value.shape == expected.shape[::-1] and _same(value.T, expected, exact):
            return head + f": it is the transpose of the expected {what}"
        if _same(value.reshape(expected.shape), expected, exact):
            return head + f": its entries are right, reshape it to {m}x{n}"
    k = value.shape[0] if value.ndim == 2 and value.shape[1] == n else 0
    for a in _finder(expected, exact)(value[0]) if 0 < k < m else ():
        if a + k <= m and _same(value, expected[a:a + k], exact):
            held = head + f": it holds only rows {ranges(range(a, a + k))} of the expected {what}"
            r = m % p
            if a == 0 and p > 1 and r and k == m - r:  # whatever the backend: the commonest bug
                return (held + f"; the last {r} row{'s' * (r > 1)}, the remainder of {m} rows "
                        f"split into {p} blocks ({m} % {p} = {r}), {'is' if r == 1 else 'are'} "
                        "missing: give the remainder to some worker")
            w = _worker_of(a, a + k, m, p)
            return held + (f" (the block of worker {w} of {p}): every worker's rows must reach "
                           "the result" if w is not None else "")
    return head + (": it is empty" if value.size == 0 else "")


def _wrong_dtype(value: np.ndarray, expected: np.ndarray, what: str) -> str:
    text = f"{what} has dtype {value.dtype}, expected {expected.dtype}"
    with np.errstate(all="ignore"):
        v, e = value.astype(np.float64), expected.astype(np.float64)
        err, scale = float(np.abs(v - e).max()), float(np.abs(e).max())
        if err == 0:
            return text + f" (its values are right: convert it with .astype(np.{expected.dtype}))"
        if (value.dtype.kind == "f" and value.dtype.itemsize < expected.dtype.itemsize
                and scale > 0 and np.allclose(v, e, rtol=1e-5, atol=1e-5 * scale)):
            return text + (f" (the values agree to about {int(round(-np.log10(err / scale)))} "
                           "digits: the computation ran in lower precision)")
    return text


def _same(a: np.ndarray, b: np.ndarray, exact: bool) -> bool:
    """Equal (exact) or np.isclose everywhere; False for anything that cannot be compared."""
    with contextlib.suppress(Exception), np.errstate(all="ignore"):
        return a.shape == b.shape and bool(
            np.array_equal(a, b) if exact else np.allclose(a, b, rtol=RTOL, atol=ATOL))
    return False


def _finder(expected: np.ndarray, exact: bool):
    """A function: a row -> indices of expected rows it equals (some of them, if many do)."""
    e = expected.astype(np.float64)
    n, scale = e.shape[1], float(np.abs(e).sum(axis=1).max(initial=0.0))
    weights = np.random.default_rng(0).uniform(0.5, 1.5, n)  # equal rows: (nearly) equal sums
    order = np.argsort(sums := e @ weights, kind="stable")
    keys = sums[order]
    tolerance = 3 * (n * (0 if exact else ATOL) + scale * ((0 if exact else RTOL) + 1e-14 * n))

    def find(row: np.ndarray) -> list[int]:
        with np.errstate(all="ignore"):
            s = float(np.asarray(row, dtype=np.float64) @ weights)
        lo = np.searchsorted(keys, s - tolerance, side="left")  # NaN, inf: none found
        hi = np.searchsorted(keys, s + tolerance, side="right")
        return [int(j) for j in order[lo:hi][:32] if _same(row, expected[j], exact)]
    return find


def _splits(m: int, p: int) -> list[list[tuple[int, int]]]:
    """Row blocks [start, end) of p workers: np.array_split style, and floor + remainder last."""
    q, r = divmod(m, p)
    return [[(k * q + min(k, r), (k + 1) * q + min(k + 1, r)) for k in range(p)],
            [(k * q, (k + 1) * q if k < p - 1 else m) for k in range(p)]]


def _worker_of(a: int, b: int, m: int, p: int) -> int | None:
    """The worker whose block is rows [a, b) under either split, if any (and not all rows)."""
    return next((s.index((a, b)) for s in _splits(m, p) if (a, b) in s and 0 < b - a < m), None)


def _kind(row: np.ndarray, expected_row: np.ndarray, same_row: np.ndarray, big: float,
          exact: bool) -> str:
    """'garbage' (odd values, none right), 'near' (most pixels right / within 1e-3) or 'other'."""
    a = np.abs(row.astype(np.float64))  # np.empty's floats: NaN, denormals, huge exponents
    odd = (~np.isfinite(row) | ((a > 0) & (a < 1e-200)) | (a > 1e15 * (big + 1))
           if row.dtype.kind == "f" else (row < 0) | (a > 1000 * (big + 1)))
    if odd.any() and (odd | (row == 0)).all() and not (same_row & (row != 0)).any():
        return "garbage"
    near = np.isfinite(row).all() and (same_row.mean() > 0.5 if exact else np.abs(
        row - expected_row).max() <= 1e-3 * np.abs(expected_row).max())
    return "near" if near else "other"


def _rows(value: np.ndarray, expected: np.ndarray, same: np.ndarray, what: str, p: int,
          exact: bool) -> tuple[str, str]:
    """The cause (first line) and extra lines, for arrays of the right shape that differ."""
    m, bad = expected.shape[0], [int(i) for i in np.flatnonzero(~same.all(axis=1))]
    k = len(bad)
    if value.shape[0] == value.shape[1] and _same(value.T, expected, exact):
        return f"{what} is the transpose of the expected {what}", ""
    find, big = _finder(expected, exact), float(np.abs(expected).max(initial=0))
    kinds, moved = {}, {}  # row -> its kind; a moved row -> the rows whose values it holds
    for i in bad:
        if not value[i].any():
            kinds[i] = "zero"
        elif js := [j for j in find(value[i]) if j != i]:
            kinds[i], moved[i] = "moved", js
        else:
            kinds[i] = _kind(value[i], expected[i], same[i], big, exact)
    count = Counter(kinds.values())
    if count["zero"] + count["garbage"] == k:
        values = np.unique(value[bad])  # one value: a fill (0, -1, NaN); else np.empty's bytes
        label = "uninitialised memory" if len(values) > 1 else (
            f"all {values[0]:g}" if values[0] else "all zero")
        # "hold no result", not "never written": zeros are also what a worker computes from
        # input it never received (B not broadcast); where the rows are says which worker
        text = f"{k} of {m} rows hold no result (rows {ranges(bad)}: {label})"
        return text + (_where(bad, m, p) or (": no row holds a result" if k == m else "")), ""
    if count["moved"] == k and (order := _block_order(value, expected, p, exact)):
        return order, ""  # whole blocks in another order, rather than rows shifted
    offsets = Counter(j - i for i, js in moved.items() for j in js)
    for d, _ in sorted(offsets.items(), key=lambda o: (-o[1], abs(o[0])))[:3]:  # the commonest
        hit = [i for i in bad if 0 <= i + d < m and _same(value[i], expected[i + d], exact)]
        rest = sorted(set(bad) - set(hit))
        edge = all(i >= m - d if d > 0 else i < -d for i in rest)  # rows the shift left over
        if edge and len(hit) >= max(2, len(rest) + 1):
            return (f"rows are shifted: row {hit[0]} holds row {hit[0] + d}'s values "
                    f"({len(hit)} rows off by {d})"), (
                f"\n  row{'s' * (len(rest) > 1)} {ranges(rest)}, at the edge, "
                f"differ{'s' * (len(rest) == 1)} too" if rest else "")
    if count["moved"] == k:
        return (f"rows are at the wrong index: row {bad[0]} holds row {moved[bad[0]][0]}'s "
                f"values ({k} rows misplaced); store each row at its own index"), ""
    with np.errstate(all="ignore"):
        diff = np.abs(value[bad].astype(np.float64) - expected[bad].astype(np.float64))
    largest = float(np.max(diff, where=np.isfinite(diff) & ~same[bad], initial=-1.0))
    entries, near = int((~same[bad]).sum()), count["near"] == k
    if near and exact:
        return (f"{entries} pixels in {k} rows differ slightly from the serial {what} (largest "
                f"difference {largest:.0f} iteration{'s' * (largest != 1)}); were the inputs "
                "rounded? compute with the spec's float64 values"), ""
    if near:  # near rows have entries that are not 0
        relative = float((diff.max(axis=1) / np.abs(expected[bad]).max(axis=1)).max())
        return (f"{entries} entries in {k} rows differ slightly (largest relative difference "
                f"{relative:.1e}); were the inputs rounded or converted? compute in float64 "
                "with the given A and B"), ""
    counts = [(count["zero"] + count["garbage"], "are zero or garbage"),
              (count["moved"], "hold other rows' values"), (count["near"], "differ slightly"),
              (count["other"], "differ otherwise")]
    extra = f"\n  {entries} of {value.size} entries differ"
    if sum(c > 0 for c, _ in counts) > 1:
        extra += "\n  " + ", ".join(f"{c} rows {label}" for c, label in counts if c)
    return (f"{k} of {m} rows differ from the expected {what} (rows {ranges(bad)}"
            + (f"; largest difference {largest:.3g})" if largest >= 0 else ")")
            + _where(bad, m, p)), extra  # where they are may say more than what they hold


def _where(bad: list[int], m: int, p: int) -> str:
    """What the wrong rows are, when they are exactly the remainder of a block split (the last
    m % p) or exactly one worker's block, or both (3 rows on 2 workers); '' otherwise."""
    r = m % p
    tail = p > 1 and r and bad == list(range(m - r, m))  # m < p: every row is left over
    w = _worker_of(bad[0], bad[-1] + 1, m, p) if bad == list(range(bad[0], bad[-1] + 1)) else None
    remainder = (f"the last {r} row{'s' * (r > 1)}, the remainder of {m} rows split into {p} "
                 f"blocks ({m} % {p} = {r})")
    block = f"the block of worker {w} of {p}"
    reach = "does that worker get its input, and do its rows reach rank 0 / the caller?"
    if tail and w is not None:
        return f": {remainder}, and {block}; is the remainder given to a worker, {reach}"
    if tail:
        return f": {remainder}; give the remainder to some worker"
    return f": exactly {block}; {reach}" if w is not None else ""


def _block_order(value: np.ndarray, expected: np.ndarray, p: int, exact: bool) -> str | None:
    """The first misplaced block, when the value is the expected blocks in another order."""
    m = expected.shape[0]
    for blocks in _splits(m, p):
        todo = {k: (s, e) for k, (s, e) in enumerate(blocks) if e > s}
        pos, wrong = 0, []
        while pos < m and (k := next((k for k, (s, e) in todo.items() if _same(
                value[pos:pos + e - s], expected[s:e], exact)), None)) is not None:
            s, e = todo.pop(k)
            wrong += [(pos, k, s, e)] if pos != s else []
            pos += e - s
        if pos == m and wrong:
            a, k, s, e = wrong[0]
            return (f"the blocks are in the wrong order: rows {a}-{a + e - s - 1} hold the block "
                    f"of worker {k} (rows {s}-{e - 1}); put each block at its own rows (gather "
                    "in rank order, or by the block's start)")
    return None
