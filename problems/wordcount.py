"""Word count: the kit's tokenisation rule, the traced per-file count, and two corpora.

Tokenisation rule (the one rule every backend, the serial baseline and the grader share):

1. A file is read as UTF-8 (strictly: invalid UTF-8 raises ``UnicodeDecodeError``). Line
   endings do not matter (CRLF, LF and CR are all whitespace).
2. A *word* is a maximal run of word characters, where a word character is any character for
   which ``str.isalnum()`` is true (Unicode letters and digits of every script; not the
   underscore, not combining marks), optionally joined by single apostrophes (``'`` U+0027 or
   ``’`` U+2019) that stand *between* two such runs: ``don't``, ``l'été`` and ``o’clock`` are one
   word each; a leading or trailing apostrophe (``'tis``, ``dogs'``) is not part of the word;
   ``a''b`` is two words. As a regular expression: ``[^\\W_]+(?:['’][^\\W_]+)*``.
3. Each word is then case-folded with ``str.casefold()`` (``Straße`` -> ``strasse``,
   ``DON'T`` -> ``don't``). The two apostrophes stay distinct (``don't`` != ``don’t``).
   Text is not Unicode-normalised: a decomposed ``é`` (``e`` + U+0301) splits the word.

The count of a document is a ``collections.Counter`` mapping each word to its number of
occurrences; the count of a collection is the sum of its documents' counts (:func:`serial_count`).

Corpora: :func:`generate_corpus` writes a seeded, Zipf-distributed synthetic corpus of any size
(hundreds of MB in seconds); :func:`stdlib_corpus` lists real text that nobody on the team wrote
and that every machine with Python has: the ``.py`` files of the standard library.

Command line::

    python -m problems.wordcount generate DIR --size 200MB --docs 100 [--seed 0]
    python -m problems.wordcount count FILE_OR_DIR... [--top 20]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import sysconfig
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from problems import trace

WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
KERNEL = "wordcount.count_file"


def tokenize(text: str) -> list[str]:
    """The words of ``text`` under the kit's rule, in order, case-folded."""
    return [w.casefold() for w in WORD.findall(text)]


def count_text(text: str) -> Counter:
    """Word counts of ``text`` (untraced; use :func:`count_file` for documents)."""
    raw = Counter(WORD.findall(text))
    if all(w.casefold() == w for w in raw):  # fast path: nothing to fold
        return raw
    folded: Counter = Counter()
    for word, n in raw.items():  # fold distinct words only: far fewer than occurrences
        folded[word.casefold()] += n
    return folded


def count_file(path: str | os.PathLike) -> Counter:
    """Word counts of one UTF-8 document; traced (task: ``str(path)``, units: its bytes).

    Every parallel word count must count each document through this function, so that the
    grader can see which process counted which document. A missing file raises
    ``FileNotFoundError`` naming the path.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        with trace.record(KERNEL, task=str(path), units=float(size)) as rec:
            data = f.read()
            if trace.is_on():  # bound to the content counted, not only to the name
                rec.binding = {"content": trace.digest(data)}
            return count_text(data.decode("utf-8"))


def serial_count(paths: Iterable[str | os.PathLike]) -> Counter:
    """The serial baseline (the grader's oracle): the sum of every document's counts."""
    total: Counter = Counter()
    for path in paths:
        total.update(count_file(path))
    return total


# -- generated corpus -------------------------------------------------------------------------

_LETTERS = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
_LETTER_P = np.array([12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4,
                      2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.15, 0.15, 0.1, 0.07])
_ACCENTED = ["é", "ü", "ø", "ß", "ñ", "ł", "ç", "å"]
# separators after a word, with their probabilities: mostly spaces, some punctuation and lines
_SEPARATORS = [" ", ", ", ". ", "; ", "\n"]
_SEP_P = [0.82, 0.07, 0.05, 0.01, 0.05]


def make_vocabulary(size: int = 50_000, seed: int = 0) -> list[str]:
    """``size`` distinct pseudo-words (mostly a-z, a few accented letters and apostrophes).

    Every entry is one word under the tokenisation rule and already case-folded, so a generated
    corpus has exactly the Zipf counts that were drawn (modulo capitalised variants, which fold).
    """
    rng = np.random.default_rng([seed, 1])
    words: dict[str, None] = {}
    p = _LETTER_P / _LETTER_P.sum()
    while len(words) < size:
        n = size - len(words)
        lengths = rng.integers(1, 11, n) + rng.integers(0, 3, n)
        letters = rng.choice(_LETTERS, size=(n, 13), p=p)
        kind, where = rng.random(n), rng.random(n)
        accent = rng.integers(0, len(_ACCENTED), n)
        for i in range(n):
            w = "".join(letters[i, : lengths[i]])
            if kind[i] < 0.01:  # possessive
                w += "'s"
            elif kind[i] < 0.015 and len(w) > 2:  # elision, as in l'été
                w = w[0] + "'" + w[1:]
            elif kind[i] < 0.03:  # one accented letter
                j = int(where[i] * len(w))
                w = w[:j] + _ACCENTED[accent[i]] + w[j + 1:]
            w = w.casefold()
            if WORD.fullmatch(w):
                words[w] = None
    return list(words)[:size]


def _zipf_cdf(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _inverse_cdf_table(probabilities: np.ndarray, bits: int) -> np.ndarray:
    """``table[u]`` for ``u`` uniform in ``[0, 2**bits)`` is ``i`` with probability ~ ``p[i]``.

    The inverse CDF tabulated on ``2**bits`` equal steps: drawing is one integer and one lookup
    (much faster than ``searchsorted``); probabilities are rounded to multiples of ``2**-bits``.
    """
    cdf = np.cumsum(probabilities) / np.sum(probabilities)
    edges = np.round(cdf * (1 << bits)).astype(np.int64)
    edges[-1] = 1 << bits
    return np.repeat(np.arange(len(cdf), dtype=np.int32), np.diff(edges, prepend=0))


_WORD_BITS, _VARIANT_BITS = 22, 10  # 2**22 steps resolve p >= 2.4e-7: every word of 50,000


def generate_corpus(folder: str | os.PathLike, ndocs: int, total_bytes: int, seed: int = 0,
                    vocabulary: Sequence[str] | None = None, exponent: float = 1.1,
                    size_spread: float = 0.5, prefix: str = "doc") -> list[Path]:
    """Write ``ndocs`` UTF-8 documents of about ``total_bytes`` in all; return their sorted paths.

    Words are drawn independently from ``vocabulary`` (default :func:`make_vocabulary` with the
    same seed), the word of rank r (its position in the list) with probability proportional to
    ``1 / r**exponent`` (Zipf's law; probabilities tabulated in steps of 2**-22). About 5% of the
    words are capitalised; separators are mostly spaces, some punctuation and newlines. Document
    sizes vary log-normally (``size_spread`` is the sigma; 0 gives equal sizes) and add up to
    ``total_bytes`` within one word per document. Deterministic for a given seed and numpy.

    Vectorised: each (word, capitalisation, separator) variant is encoded once into a row of a
    zero-padded byte table; a document is one array of random integers, two table lookups, a row
    gather and the removal of the padding (about 100 MB/s on one core).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if vocabulary is None:
        vocabulary = make_vocabulary(seed=seed)
    nwords, nsep = len(vocabulary), len(_SEPARATORS)
    nvar = 2 * nsep  # variant = capitalised * nsep + separator
    encoded = [((w.capitalize() if cap else w) + sep).encode("utf-8")
               for w in vocabulary for cap in (0, 1) for sep in _SEPARATORS]
    lengths = np.array([len(b) for b in encoded], dtype=np.int64)
    table = np.zeros((len(encoded), int(lengths.max())), dtype=np.uint8)  # 0 is never in text
    table[np.arange(table.shape[1]) < lengths[:, None]] = np.frombuffer(b"".join(encoded),
                                                                         dtype=np.uint8)
    word_p = 1.0 / np.arange(1, nwords + 1, dtype=np.float64) ** exponent
    word_of = _inverse_cdf_table(word_p, _WORD_BITS)
    variant_of = _inverse_cdf_table(np.concatenate([np.array(_SEP_P) * 0.95,
                                                    np.array(_SEP_P) * 0.05]), _VARIANT_BITS)
    mean_token = float(np.dot(lengths.reshape(nwords, nvar).mean(axis=1), word_p / word_p.sum()))

    rng = np.random.default_rng([seed, 2])
    weights = rng.lognormal(0.0, size_spread, ndocs) if size_spread > 0 else np.ones(ndocs)
    sizes = np.floor(weights / weights.sum() * total_bytes).astype(np.int64)
    width = max(5, len(str(ndocs - 1)))
    paths = []
    for d, size in enumerate(sizes):
        path = folder / f"{prefix}-{d:0{width}d}.txt"
        remaining = int(size)
        with open(path, "wb") as f:
            while remaining > 0:  # pieces of at most ~16 MB keep the temporaries small
                n = int(min(remaining, 1 << 24) / mean_token * 1.02) + 16
                u = rng.integers(0, 1 << (_WORD_BITS + _VARIANT_BITS), n, dtype=np.uint64)
                idx = (word_of[u >> _VARIANT_BITS].astype(np.int64) * nvar
                       + variant_of[u & ((1 << _VARIANT_BITS) - 1)])
                ends = np.cumsum(lengths[idx])
                take = int(np.searchsorted(ends, remaining, side="right"))
                if take == 0:
                    break  # the next word would overshoot: close enough
                rows = np.take(table, idx[:take], axis=0)
                f.write(rows[rows != 0].tobytes())
                remaining -= int(ends[take - 1])
        paths.append(path)
    return paths


# -- real corpus ------------------------------------------------------------------------------

_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__",
              "lib2to3", "encodings"}


def stdlib_corpus(limit: int | None = 40) -> list[Path]:
    """Real text on every machine: ``.py`` files of Python's standard library, sorted.

    Code, comments and docstrings written by the CPython developers. Test suites, third-party
    packages and files that are not valid UTF-8 are left out. With ``limit``, that many files
    spread evenly over the sorted list (a mix of packages, deterministic for a Python version).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in filenames:
            if name.endswith(".py"):
                found.append(Path(dirpath, name))
    found.sort()
    if limit is not None and len(found) > limit:
        step = len(found) / limit
        found = [found[int(i * step)] for i in range(limit)]
    out = []
    for path in found:
        try:
            path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out.append(path)
    return sorted(out)


# -- command line -----------------------------------------------------------------------------

def parse_size(text: str) -> int:
    """``"200MB"`` -> 200_000_000 (B, KB, MB, GB, decimal; KiB, MiB, GiB binary)."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMG]i?)?B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 200MB)")
    unit = (m[2] or "").upper()
    base = 1024 if unit.endswith("I") else 1000
    power = {"": 0, "K": 1, "M": 2, "G": 3}[unit[:1]]
    return int(float(m[1]) * base**power)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m problems.wordcount", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a Zipf-distributed corpus")
    gen.add_argument("folder")
    gen.add_argument("--size", type=parse_size, default=parse_size("200MB"))
    gen.add_argument("--docs", type=int, default=100)
    gen.add_argument("--seed", type=int, default=0)
    cnt = sub.add_parser("count", help="count words serially and print the most common")
    cnt.add_argument("paths", nargs="+")
    cnt.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    if args.command == "generate":
        start = time.perf_counter()
        paths = generate_corpus(args.folder, args.docs, args.size, seed=args.seed)
        seconds = time.perf_counter() - start
        total = sum(p.stat().st_size for p in paths)
        print(f"wrote {len(paths)} documents, {total / 1e6:.1f} MB in {seconds:.1f} s "
              f"({total / 1e6 / seconds:.0f} MB/s) to {args.folder}")
        return 0
    files = []
    for p in map(Path, args.paths):
        files.extend(sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p])
    start = time.perf_counter()
    counts = serial_count(files)
    seconds = time.perf_counter() - start
    for word, n in counts.most_common(args.top):
        print(f"{n:>10}  {word}")
    print(f"{sum(counts.values())} words, {len(counts)} distinct, {len(files)} files, "
          f"{seconds:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
