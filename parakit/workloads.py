"""The three benchmarked problems: their sizes, inputs, serial baselines and result checks.

Used on both sides: the parent (``parakit.bench``) parses sizes and prepares data; each child
(``parakit.worker.bench``) builds the inputs, runs the serial baseline or a parallel function,
and checks results against the serial one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("mpi", "ipp", "pool")


@dataclass(frozen=True)
class Variant:
    """One timed function: a target's ``{module}.{function}`` or a contrast of the kit's."""

    backend: str  # serial, mpi, ipp, pool
    scheme: str  # "" (one scheme), chunked, balanced, or a contrast's name
    module: str = ""  # "" for the serial baseline; "reference.contrasts" for a contrast
    function: str = ""
    view: str = "direct"  # ipyparallel: "direct" (DirectView) or "balanced" (LoadBalancedView)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.scheme}".strip()


@dataclass(frozen=True)
class Workload:
    """One problem of the sheet, as the benchmark sees it."""

    name: str
    sizes: tuple[str, ...]  # defaults
    size_help: str
    nargs: int  # arguments of a call, without the comm, view or pool
    everywhere: bool  # MPI: the inputs are given on every rank (else on rank 0 only)
    variants: tuple[Variant, ...]  # the target's parallel functions
    contrasts: tuple[Variant, ...] = ()  # the kit's worse versions (reference.contrasts)

    def check_size(self, size: str) -> str:
        """The size, or ValueError saying what a size of this problem looks like."""
        if self.name == "wordcount":  # bytes, as the corpus generator reads them
            from argparse import ArgumentTypeError

            from problems.wordcount import parse_size

            try:
                valid = parse_size(size) > 0
            except ArgumentTypeError:
                valid = False
        else:
            valid = bool(re.fullmatch(_SIZE_PATTERNS[self.name], size))
        if not valid:
            raise ValueError(f"{self.name}: size {size!r} is not {self.size_help}")
        return size


def _variants(name: str, schemes: tuple[str, ...]) -> tuple[Variant, ...]:
    out = []
    for backend in BACKENDS:
        for scheme in schemes:
            function = f"{name}_{backend}" + (f"_{scheme}" if scheme else "")
            view = "balanced" if backend == "ipp" and scheme == "balanced" else "direct"
            out.append(Variant(backend, scheme, name, function, view))
    return tuple(out)


_SIZE_PATTERNS = {"matmul": r"[1-9]\d*", "mandelbrot": r"[1-9]\d*x[1-9]\d*(:[1-9]\d*)?"}

WORKLOADS = {
    "matmul": Workload(
        "matmul", ("1024", "2048"), "N (square N x N matrices, e.g. 2048)", 2, False,
        _variants("matmul", ("",)),
        (Variant("mpi", "pickle", "reference.contrasts", "matmul_mpi_pickle"),
         Variant("pool", "ship-b", "reference.contrasts", "matmul_pool_ship_b"),
         Variant("pool", "per-worker", "reference.contrasts", "matmul_pool_per_worker"))),
    "mandelbrot": Workload(
        "mandelbrot", ("150x100", "600x400"),
        "WxH or WxH:MAXIT on the course viewport (150x100 is the grading spec)", 1, True,
        _variants("mandelbrot", ("chunked", "balanced")),
        (Variant("mpi", "master-only", "reference.contrasts", "mandelbrot_mpi_master_only"),)),
    "wordcount": Workload(
        "wordcount", ("20MB",), "a corpus size such as 20MB (generated, seeded)", 1, False,
        _variants("wordcount", ("",))),
}


# -- inputs, baselines and checks (child side; heavy imports inside) ---------------------------

def expected_file(folder: str | os.PathLike, workload: str, size: str) -> Path:
    """Where the serial job leaves its result for the parallel jobs to compare with: data
    (``parakit.wire``), never a pickle, since graded code runs beside it and may write there."""
    return Path(folder, f"{workload}-{size.replace(':', '-')}.json")


def store_expected(path: Path, result) -> None:
    from parakit import wire

    wire.write_json(path, wire.encode(result, path.with_suffix(".npy")))


def load_expected(path: Path):
    """The stored serial result (``None`` if there is none); WireError if it is malformed."""
    from parakit import wire

    if not path.exists():
        return None
    return wire.decode(wire.read_json(path), path.parent)


def corpus_dir(datadir: str | os.PathLike, size: str) -> Path:
    return Path(datadir, f"corpus-{size}")


def prepare(workload: str, size: str, datadir: str | os.PathLike) -> None:
    """Create data a size needs before any child runs (the word-count corpus, cached)."""
    if workload != "wordcount":
        return
    from problems.wordcount import generate_corpus, parse_size

    folder = corpus_dir(datadir, size)
    nbytes = parse_size(size)
    docs = max(8, nbytes // 500_000)  # documents of about 500 kB
    stamp = folder / "corpus.json"
    wanted = {"bytes": nbytes, "docs": docs, "seed": 0}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return
    print(f"generating a {size} corpus of {docs} documents in {folder} ...", flush=True)
    generate_corpus(folder, docs, nbytes, seed=0)
    stamp.write_text(json.dumps(wanted))


def inputs(workload: str, size: str, datadir: str | os.PathLike) -> tuple:
    """The arguments of one call (without the comm, view or pool)."""
    if workload == "matmul":
        from problems.matmul import random_pair

        n = int(size)
        return random_pair(n, n, n, seed=0)
    if workload == "mandelbrot":
        from problems.mandelbrot import Spec

        shape, _, maxit = size.partition(":")
        w, h = (int(v) for v in shape.split("x"))
        return (Spec(w=w, h=h, maxit=int(maxit) if maxit else Spec.maxit),)
    return (sorted(str(p) for p in corpus_dir(datadir, size).glob("doc-*.txt")),)


def serial(workload: str) -> Callable:
    """The serial baseline: single-threaded numpy, the scalar Mandelbrot loop, serial_count."""
    if workload == "matmul":
        import numpy as np

        return np.dot
    if workload == "mandelbrot":
        from problems.mandelbrot import compute_rows

        return lambda spec: compute_rows(spec, range(spec.h))
    from problems.wordcount import serial_count

    return serial_count


def same(workload: str, result, expected) -> bool:
    """Whether a parallel result equals the serial one (matmul: up to rounding)."""
    import numpy as np

    if workload == "matmul":
        return (isinstance(result, np.ndarray) and result.shape == expected.shape
                and bool(np.allclose(result, expected, rtol=1e-10, atol=1e-10 * len(expected))))
    if workload == "mandelbrot":
        return isinstance(result, np.ndarray) and np.array_equal(result, expected)
    return dict(result) == dict(expected)
