"""Exercise 4: map-reduce word count on three backends.

Correctness: one test per backend and document collection, each checked at every process count
against ``problems.wordcount.serial_count``, plus, from the trace, that every document was
counted exactly once and none in the calling process. Parallelism: one test per backend, judged
from the trace of the generated corpus at the largest process count. A missing path: one test
per backend. All collections of one backend and process count run in one child (``Grading``
caches the run); the corpora are written once per session, a few MB in all.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from parakit.controller.processes import observe
from parakit.controller.verdicts.checks import fail, require_ok
from parakit.controller.verdicts.cpurule import CpuTally, serial_cpu
from parakit.controller.verdicts.evidence import (
    graded_document,
    sort_records,
    wordcount_binding,
)
from parakit.controller.verdicts.mismatch_counts import explain_counts
from problems.wordcount import (
    KERNEL,
    count_file,
    generate_corpus,
    make_vocabulary,
    serial_count,
    stdlib_corpus,
)

BACKENDS = ["mpi", "ipp", "pool"]
COLLECTIONS = [
    "generated",  # 24 Zipf documents, 1.5 MB: enough work for every worker
    "stdlib",  # real text: 30 .py files of Python's standard library
    "empty-document",  # a 0-byte document among others
    "one-document",
    "more-workers-than-documents",  # 2 documents: fewer than the workers at P=3 and P=4
    "unicode-crlf",  # accents, other scripts, apostrophes, case folding, CRLF line ends
    "large-document",  # one 1 MB document and 15 of 10 kB
]
MISSING = "missing-path"
CASES = [*COLLECTIONS, MISSING]

UNICODE_TEXT = [
    "Straße STRASSE strasse — Ünïcödé naïve Café CAFÉ café.\r\n"
    "Don't DON'T don’t l'été L’ÉTÉ o'clock 'tis dogs' rock'n'roll a''b\r\n",
    "日本語のテキスト 東京 Москва москва МОСКВА Ελληνικά ΣΊΣΥΦΟΣ σίσυφος\r\n"
    "numbers: 42 ４２ 3.14 x² ½ snake_case under_score_ İstanbul ﬁne\r\n",
    "\ufeffmixed\rline\nendings\r\n\r\nemoji 🙂 are not words; tab\tseparated\u00a0nbsp\r\n",
]


@pytest.fixture(scope="session")
def collections(inputs) -> dict[str, list[str]]:
    """Every case's list of paths (str), written once for the session."""
    root = inputs / "wordcount"  # readable by graded code that runs as another user (--run-as)
    root.mkdir()
    words = make_vocabulary(5000, seed=1)

    def generate(folder: str, ndocs: int, size: int, seed: int, **kw) -> list[Path]:
        return generate_corpus(root / folder, ndocs, size, seed=seed, vocabulary=words, **kw)

    out: dict[str, list[Path]] = {
        "generated": generate("generated", 24, 1_500_000, 1),
        "stdlib": stdlib_corpus(30),
        "one-document": generate("one", 1, 60_000, 3),
        "more-workers-than-documents": generate("two", 2, 30_000, 4),
    }
    empty = root / "empty" / "empty.txt"
    out["empty-document"] = [*generate("empty", 3, 40_000, 2), empty]
    empty.write_bytes(b"")
    unicode_dir = root / "unicode"
    unicode_dir.mkdir()
    out["unicode-crlf"] = []
    for i, text in enumerate(UNICODE_TEXT):
        path = unicode_dir / f"unicode-{i}.txt"
        path.write_bytes(text.encode("utf-8"))
        out["unicode-crlf"].append(path)
    out["large-document"] = [*generate("large", 1, 1_000_000, 5, prefix="big"),
                             *generate("large", 15, 150_000, 6, size_spread=0)]
    existing = out["one-document"][0]
    out[MISSING] = [existing, root / "no-such-dir" / "missing.txt"]
    return {name: [str(p) for p in paths] for name, paths in out.items()}


@pytest.fixture(scope="session")
def documents(collections) -> dict[str, list[tuple[str, Counter]]]:
    """Each collection's documents (parent folder/name) with their own serial counts, in the
    order the graded function gets them: the oracle, and what a wrong total is traced to."""
    return {name: [(f"{Path(p).parent.name}/{Path(p).name}", count_file(p))
                   for p in collections[name]] for name in COLLECTIONS}


@pytest.fixture(scope="session")
def expected(documents) -> dict[str, Counter]:
    """The serial counts (the oracle): the sum of the documents' counts."""
    return {name: sum((c for _, c in docs), Counter()) for name, docs in documents.items()}


def _outcomes(grading, collections, backend: str, workers: int):
    # The missing path goes last: on MPI a failed case aborts the job, and the harness would
    # have to start a new one for any case after it.
    cases = [{"args": (collections[name],)} for name in CASES]
    return dict(zip(CASES, grading.run(backend, "wordcount", f"wordcount_{backend}", cases,
                                       workers, key="all-collections"), strict=True))


def _describe(name: str, paths: list[str]) -> str:
    return f"{len(paths)} document{'s' * (len(paths) != 1)} ({name})"


def require_counts(value, expected: Counter, context: str,
                   documents: list[tuple[str, Counter]], workers: int) -> None:
    """Fail unless ``value`` is a mapping with exactly the expected counts, naming the cause
    (parakit.controller.verdicts.mismatch_counts)."""
    message = explain_counts(value, expected, documents, workers)
    if message:
        fail(f"{context}: {message}")


def require_trace(outcome, paths: list[str], backend: str, context: str) -> Counter:
    """Every document counted exactly once by count_file, none in the calling process; only
    records bound to the graded documents' content, from the run's own processes, count.

    Returns the number of documents counted per process id.
    """
    ev = sort_records(outcome, KERNEL, backend, wordcount_binding(paths))
    counted = Counter(graded_document(r.task, paths) for r in ev.valid)
    rejected = f" ({ev.rejections()})" if ev.rejected else ""
    where = {"mpi": "on the MPI ranks", "ipp": "on the engines", "pool": "in the pool workers"}
    if paths and not ev.valid:
        fail(f"{context}: no document was counted by problems.wordcount.count_file(path) "
             f"{where[backend]}" + (rejected or ": the documents were counted in the calling "
                                    "process, or without count_file; the map step must run in "
                                    "the workers, through count_file"))
    never = [p for p in paths if p not in counted]
    twice = {p: n for p, n in counted.items() if n > 1}
    if never:
        fail(f"{context}: {len(never)} of {len(paths)} documents were not counted by "
             f"count_file {where[backend]} (e.g. {never[0]}): counted in the calling process, "
             "without count_file, or not at all" + rejected)
    if twice:
        path, n = next(iter(twice.items()))
        fail(f"{context}: {len(twice)} documents were counted more than once, e.g. {path} "
             f"{n} times; every document must be counted exactly once")
    per_pid = Counter(r.where for r in ev.valid)
    if ev.caller is not None and per_pid.get(ev.caller):
        fail(f"{context}: {per_pid[ev.caller]} of {len(ev.valid)} documents were counted in the "
             f"calling process ({observe.describe(ev.caller)}); the map step must run "
             f"{where[backend]}")
    return per_pid


@pytest.mark.points(1)
@pytest.mark.parametrize("collection", COLLECTIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_wordcount(grading, settings, collections, documents, expected, backend,
                   collection):
    """The total equals the serial count at every process count; each document counted once."""
    paths = collections[collection]
    for workers in settings.worker_counts:
        outcome = _outcomes(grading, collections, backend, workers)[collection]
        context = f"wordcount_{backend} with {workers} workers on {_describe(collection, paths)}"
        require_ok(outcome, context)
        require_counts(outcome.value, expected[collection], context, documents[collection],
                       workers)
        require_trace(outcome, paths, backend, context)


# The reduce runs in the calling process or rank 0 by design: its CPU time is theirs (measured:
# about 40% of the serial count on the generated corpus, given 60% here).
REDUCE_SHARE = 0.6


@pytest.mark.points(2)
@pytest.mark.parametrize("backend", BACKENDS)
def test_wordcount_parallel(grading, settings, collections, documents, expected,
                            backend):
    """From the trace of the generated corpus: documents counted in at least two workers; for
    pool and ipyparallel, by the CPU times of every run on it, in the workers."""
    workers = settings.workers
    paths = collections["generated"]
    outcome = _outcomes(grading, collections, backend, workers)["generated"]
    context = f"wordcount_{backend} with {workers} workers on {_describe('generated', paths)}"
    require_ok(outcome, context)
    require_counts(outcome.value, expected["generated"], context, documents["generated"],
                   workers)
    per_pid = require_trace(outcome, paths, backend, context)
    cpu = CpuTally()  # first: if the work ran elsewhere, where the trace puts it is moot
    serial = serial_cpu(serial_count, paths)
    size = float(sum(os.path.getsize(p) for p in paths))
    for n in settings.worker_counts:
        run = _outcomes(grading, collections, backend, n)["generated"]
        if run.ok:
            ev = sort_records(run, KERNEL, backend, wordcount_binding(paths))
            cpu.add(run, ev, serial, size, backend, reduce=REDUCE_SHARE)
    if cpu.verdict():
        fail(f"wordcount_{backend} on {_describe('generated', paths)}: {cpu.verdict()}")
    if workers >= 2 and len(per_pid) < 2:
        proc = next(iter(per_pid))
        who = "rank 0" if backend == "mpi" and proc == outcome.pids.get(0) else "one process"
        fail(f"{context}: all {len(paths)} documents were counted in {who} "
             f"({observe.describe(proc)}); "
             f"share them out among the {workers} workers")


@pytest.mark.points(1)
@pytest.mark.parametrize("backend", BACKENDS)
def test_wordcount_missing_path(grading, settings, collections, backend):
    """A path that does not exist raises FileNotFoundError naming it (no hang, no result)."""
    paths = collections[MISSING]
    missing = paths[-1]
    for workers in settings.worker_counts:
        outcome = _outcomes(grading, collections, backend, workers)[MISSING]
        context = (f"wordcount_{backend} with {workers} workers on {len(paths)} paths, one of "
                   f"which does not exist ({missing})")
        if outcome.ok:  # a Counter arrives as a plain mapping: name what it held, not a type
            value = outcome.value
            what = (f"counts of {len(value)} words" if isinstance(value, dict)
                    else f"a {type(value).__name__}")
            fail(f"{context}: returned {what} instead of raising FileNotFoundError; a path "
                 "that cannot be read must fail the call (count_file raises it: let it reach "
                 "the caller, neither skip the path nor catch the error)")
        if outcome.status != "error":
            require_ok(outcome, context)  # not implemented, timeout, crash: report as such
        if "FileNotFoundError" not in outcome.message or missing not in outcome.message:
            fail(f"{context}: expected FileNotFoundError naming the path, got: "
                 f"{outcome.message}")
