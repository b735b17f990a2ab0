"""A run's score for a GitHub Actions job summary, from its Gradescope ``results.json``: the
points per exercise, then every failure with its message and the pictures it names (they
travel in the job's artifact, whose name the summary gives).

    python -m parakit.controller.session.summary RESULTS.json [--artifact NAME]
        [--require-full-marks] >> "$GITHUB_STEP_SUMMARY"

GitHub shows at most 1 MiB of a step's summary: messages are shortened until it fits, the
score table never. With ``--require-full-marks`` the exit status is 1 unless every point was
scored (the job's check then shows a cross), 2 if the file cannot be read.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from parakit.controller.session.pictures import PICTURE

SUMMARY_BYTES = 900_000  # GitHub's limit is 1 MiB a step


def in_words(test: dict, where: str) -> str:
    """A test's message with each picture it names told by where the reader finds it
    (``where`` formats the file name), whether the message is text with the picture's path on
    the grading machine, or html that shows it (``reports.gradescope``)."""
    message = test.get("output", "")
    if test.get("output_format") == "html":
        pre = re.search(r"<pre>(.*?)</pre>", message, re.S)
        text = html.unescape(pre.group(1)) if pre else ""
        for name in re.findall(r'<p>([^<]+?):(?: not shown here[^<]*)?</p>', message):
            name = html.unescape(name)
            text = text.replace(f"{name} (below)", where.format(name=name))
        return text
    return PICTURE.sub(lambda m: where.format(name=m.group(2)), message)


def markdown(data: dict, artifact: str = "grading-reports", limit: int = SUMMARY_BYTES) -> str:
    """The summary of one run's ``results.json``, at most ``limit`` bytes."""
    tests = data.get("tests", [])
    by_exercise: dict[str, list[float]] = {}
    for t in tests:
        exercise = (t.get("tags") or ["-"])[0]
        points = by_exercise.setdefault(exercise, [0.0, 0.0])
        points[0] += float(t.get("score", 0))
        points[1] += float(t.get("max_score", 0))
    score = float(data.get("score", 0))
    possible = sum(p[1] for p in by_exercise.values())
    head = [f"## Score: {score:g} / {possible:g}", ""]
    if data.get("output"):
        head += [data["output"].strip(), ""]
    if by_exercise:
        head += ["| exercise | points |", "|---|---|"]
        head += [f"| {name} | {got:g} / {of:g} |" for name, (got, of) in by_exercise.items()]
        head.append("")
    failed = [t for t in tests if t.get("status") == "failed"]
    cap = 4000
    while True:
        body = []
        if failed:
            body += [f"### {len(failed)} failed", ""]
        for t in failed:
            message = in_words(t, f"{{name}} (in the artifact {artifact}, pictures/)")
            if len(message) > cap:
                message = message[:cap] + "\n[... shortened to fit the summary]"
            body += [f"**{t.get('name', '?')}** ({float(t.get('score', 0)):g} / "
                     f"{float(t.get('max_score', 0)):g})", "", "```", message.replace("```", "'''"),
                     "```", ""]
        text = "\n".join(head + body) + "\n"
        if len(text.encode()) <= limit or cap < 100:
            return text
        cap //= 2


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m parakit.controller.session.summary",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("results", help="the run's results.json (pytest grader --grade-json)")
    p.add_argument("--artifact", default="grading-reports",
                   help="the name of the artifact that holds the pictures")
    p.add_argument("--require-full-marks", action="store_true",
                   help="exit status 1 unless every point was scored")
    args = p.parse_args(argv)
    try:
        data = json.loads(Path(args.results).read_text())
    except (OSError, ValueError) as exc:
        print(f"## No score\n\nThe grading left no readable report ({args.results}: {exc}).")
        return 2
    print(markdown(data, args.artifact), end="")
    if args.require_full_marks:
        possible = sum(float(t.get("max_score", 0)) for t in data.get("tests", []))
        return 0 if possible and float(data.get("score", 0)) >= possible else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
