"""Why a word count differs from the serial count, in a student's words.

The grader holds each document's own count, so a wrong total can often be traced to its cause:
documents left out (which ones, and whether they are the remainder of a block split), documents
counted twice, every count multiplied (each worker counted everything), counts added from
outside the call (state kept between calls), words not case-folded, or words cut by another
rule than the kit's. A cause is named only when the data fits it
exactly; otherwise the message says what differs, and no guess.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from problems.wordcount import tokenize

RULE = "count each document with problems.wordcount.count_file(path)"


def explain_counts(value: object, expected: Counter, documents: Sequence[tuple[str, Counter]],
                   workers: int) -> str | None:
    """None when ``value`` has exactly the ``expected`` counts; else what is wrong.

    ``documents`` are the graded paths in the order given, with each one's own count;
    ``workers`` the process count of the run.
    """
    if value is None:
        return (f"returned None (expected a Counter of {len(expected)} words); return the total "
                "on rank 0 / in the calling process")
    if not isinstance(value, Mapping):  # the wire delivers None, str, numbers, dict, arrays
        return f"returned a {type(value).__name__}, expected a collections.Counter"
    got = {w: n for w, n in value.items() if n != 0}  # words to int or float (parakit.wire)
    want = {w: n for w, n in expected.items() if n != 0}
    if got == want:
        return None
    head = (f"the counts differ from the serial count ({len(got)} words returned, "
            f"{len(want)} expected)")
    cause = (_multiple(got, want) or _documents(got, want, documents, workers)
             or _added(got, want) or _case(got, want) or _tokens(got, want))
    return f"{head}: {cause}" if cause else head + "\n" + _differences(got, want)


def _multiple(got: dict, want: dict) -> str:
    """Every count k times the expected one: each document counted k times."""
    if set(got) != set(want) or not want:
        return ""
    word = next(iter(want))
    k = got[word] // want[word]
    if k < 2 or any(got[w] != k * n for w, n in want.items()):
        return ""
    times = "twice" if k == 2 else f"{k} times"
    return (f"every count is exactly {k} times the expected one: each document was counted "
            f"{times} (did every worker count every document, or were partial counts added "
            "more than once?)")


def _documents(got: dict, want: dict, documents: Sequence[tuple[str, Counter]],
               workers: int) -> str:
    """The difference is exactly the counts of some documents: left out, or counted twice."""
    less, more = Counter(want), Counter(got)
    less.subtract(got)
    more.subtract(want)
    missing = Counter({w: n for w, n in less.items() if n > 0})
    extra = Counter({w: n for w, n in more.items() if n > 0})
    if missing and not extra and (found := _covering(missing, documents)):
        return (f"{_which(found, documents)} {_were(found)} not counted"
                + _remainder(found, len(documents), workers))
    if extra and not missing and (found := _covering(extra, documents)):
        return (f"{_which(found, documents)} {_were(found)} counted twice; each document must "
                "be counted exactly once")
    return ""


def _covering(diff: Counter, documents: Sequence[tuple[str, Counter]]) -> list[int]:
    """Indices of documents whose counts add up to exactly ``diff`` (greedy, then checked)."""
    left, found = Counter(diff), []
    for i, (_, counts) in enumerate(documents):
        if counts and all(left[w] >= n for w, n in counts.items()):
            left.subtract(counts)
            found.append(i)
    return found if found and not +left else []


def _which(found: list[int], documents: Sequence[tuple[str, Counter]]) -> str:
    names = ", ".join(documents[i][0] for i in found[:3]) + (", ..." if len(found) > 3 else "")
    return f"{len(found)} of the {len(documents)} documents ({names})"


def _remainder(found: list[int], n: int, workers: int) -> str:
    """What a left-out tail of the list says: the remainder of a block split, or nothing."""
    if found != list(range(n - len(found), n)) or workers < 2 or n % workers != len(found):
        return ""
    return (f": the last {len(found)} of the list, the remainder of {n} documents split into "
            f"{workers} blocks ({n} % {workers} = {n % workers}); give them to some worker")


def _were(found: list[int]) -> str:
    return "was" if len(found) == 1 else "were"


def _added(got: dict, want: dict) -> str:
    """Every expected count, and more on top that no document of this call explains: counts
    kept from elsewhere (an earlier call's, in state that outlives a call)."""
    if not want or any(not isinstance(got.get(w), (int, float)) or got[w] < n
                       for w, n in want.items()):
        return ""
    extra = {w: n - want.get(w, 0) for w, n in got.items()
             if isinstance(n, (int, float)) and n > want.get(w, 0)}
    if not extra:
        return ""
    new = sorted((w for w in extra if w not in want), key=lambda w: -extra[w])
    if len(new) < 3:  # a count or two off, a stray word: no cause to name
        return ""
    elsewhere = f" ({len(new)} of them in none of these documents, e.g. {new[0]!r})"
    return (f"every expected count is there, plus {sum(extra.values()):g} more counts of "
            f"{len(extra)} words{elsewhere}: counts from outside this call were added (an "
            "earlier call's, kept in a module-level list, Counter or cache that is never "
            "emptied?); start every call from an empty count")


def _case(got: dict, want: dict) -> str:
    """The same words up to case: the counts were not case-folded."""
    folded: Counter = Counter()
    for w, n in got.items():
        folded[str(w).casefold()] += n
    if dict(folded) != want:
        return ""
    example = next(w for w in got if str(w).casefold() != w)
    return (f"words are not case-folded: got {example!r} ({got[example]}), expected "
            f"{str(example).casefold()!r}; {RULE} (it folds case with str.casefold())")


def _tokens(got: dict, want: dict) -> str:
    """A returned word the kit's rule would cut otherwise (punctuation kept, '_' joined...)."""
    for word in sorted((w for w in got if w not in want), key=lambda w: -got[w]):
        if not isinstance(word, str):
            return (f"the keys are {type(word).__name__}, e.g. {word!r}; expected str words: "
                    f"{RULE}")
        parts = tokenize(word)
        if parts != [word]:
            cut = ", ".join(map(repr, parts)) or "no word at all"
            return (f"the words are cut differently from the kit's rule: got {word!r} "
                    f"({got[word]}), which the rule reads as {cut}; {RULE}")
    return ""


def _differences(got: dict, want: dict) -> str:
    """What differs, with examples: wrong counts, missing words, extra words, the totals."""
    missing = [w for w in want if w not in got]
    extra = [w for w in got if w not in want]
    wrong = [w for w in want if w in got and got[w] != want[w]]
    lines = []
    if wrong:
        shown = ", ".join(f"{w!r}: expected {want[w]}, got {got[w]}"
                          for w in sorted(wrong, key=lambda w: -want[w])[:5])
        lines.append(f"  {len(wrong)} words with a wrong count, e.g. {shown}")
    if missing:
        shown = ", ".join(f"{w!r} ({want[w]})" for w in sorted(missing, key=lambda w: -want[w])[:5])
        lines.append(f"  {len(missing)} words missing, e.g. {shown}")
    if extra:
        shown = ", ".join(f"{w!r} ({got[w]})" for w in sorted(extra, key=lambda w: -got[w])[:5])
        lines.append(f"  {len(extra)} words that should not be there, e.g. {shown}")
    total_got, total_want = sum(got.values()), sum(want.values())
    if total_got != total_want:
        ratio = f" ({total_got / total_want:.2f}x)" if total_want else ""
        lines.append(f"  total words: expected {total_want}, got {total_got}{ratio}")
    return "\n".join(lines)
