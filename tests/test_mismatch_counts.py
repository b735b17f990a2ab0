"""A wrong word count is traced to its cause when the data fits one exactly, and to no cause
otherwise (parakit.controller.verdicts.mismatch_counts)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from parakit.controller.verdicts.mismatch_counts import explain_counts
from problems.wordcount import count_text

TEXTS = ["the cat sat on the mat", "The dog, the cat. A bird!", "l'été est là",
         "one two three four", "five six seven", "eight nine", "ten eleven twelve"]
DOCS = [(f"docs/d{i}.txt", count_text(t)) for i, t in enumerate(TEXTS)]
TOTAL = sum((c for _, c in DOCS), Counter())
GUESSES = ("not counted", "counted twice", "case-folded", "cut differently", "times the expected",
           "from outside this call")


def explain(value, workers: int = 2, docs=DOCS) -> str | None:
    return explain_counts(value, sum((c for _, c in docs), Counter()), docs, workers)


def test_the_right_counts_need_no_explanation():
    assert explain(dict(TOTAL)) is None
    assert explain({**TOTAL, "absent": 0}) is None  # a zero count is no word
    assert explain({w: float(n) for w, n in TOTAL.items()}) is None


def test_nothing_or_another_type_is_named():
    assert explain(None).startswith("returned None (expected a Counter of ")
    assert explain(np.zeros(3)) == "returned a ndarray, expected a collections.Counter"


def test_every_count_multiplied_means_every_document_counted_that_often():
    message = explain({w: 3 * n for w, n in TOTAL.items()})
    assert "every count is exactly 3 times the expected one" in message, message


def test_a_document_left_out_is_named():
    got = TOTAL - DOCS[1][1]
    message = explain(dict(got))
    assert "1 of the 7 documents (docs/d1.txt) was not counted" in message, message
    assert "remainder" not in message


def test_the_remainder_of_a_block_split_is_recognised():
    got = TOTAL - DOCS[4][1] - DOCS[5][1] - DOCS[6][1]  # 7 documents, 4 workers: 3 left over
    message = explain(dict(got), workers=4)
    assert "3 of the 7 documents (docs/d4.txt, docs/d5.txt, docs/d6.txt) were not counted" \
        in message, message
    assert "the remainder of 7 documents split into 4 blocks (7 % 4 = 3)" in message, message


def test_a_document_counted_twice_is_named():
    message = explain(dict(TOTAL + DOCS[3][1]))
    assert "1 of the 7 documents (docs/d3.txt) was counted twice" in message, message


def test_counts_kept_from_an_earlier_call_are_named():
    # a module-level list of partial counts never emptied: this call's total has the last
    # call's counts in it, words of documents this call never saw (e.g. the kit's own
    # 'i̇stanbul', which the rule's case folding makes: never "cut differently")
    earlier = count_text("İstanbul zebra yak xylophone zebra the")
    message = explain(dict(TOTAL + earlier))
    assert "every expected count is there, plus 6 more counts of 5 words (4 of them in none " \
        "of these documents, e.g. 'zebra')" in message, message
    assert "module-level list, Counter or cache that is never emptied" in message
    assert "cut differently" not in message


def test_words_not_case_folded():
    got = Counter()
    for _, counts in DOCS:
        got.update(counts)
    got["the"] -= 1
    got["The"] += 1
    message = explain(dict(got))
    assert "words are not case-folded: got 'The' (1), expected 'the'" in message, message


def test_words_cut_by_another_rule():
    got = Counter()
    for text in TEXTS:
        got.update(w.lower() for w in text.split())  # str.split keeps the punctuation
    message = explain(dict(got))
    assert "cut differently from the kit's rule" in message, message
    assert "problems.wordcount.count_file(path)" in message


def test_no_pattern_no_guess():
    got = dict(TOTAL)
    got["cat"] += 1  # one count off, and a word that is no document's
    got["zebra"] = 2
    message = explain(got)
    assert message.startswith("the counts differ from the serial count"), message
    assert not any(guess in message for guess in GUESSES), message
    assert "'cat': expected 2, got 3" in message and "'zebra' (2)" in message, message
