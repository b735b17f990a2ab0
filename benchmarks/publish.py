"""The published figures: every table of measurements in the docs, written from the results the
benchmark scripts stored in ``docs/figures/``, never typed by hand.

    python benchmarks/publish.py           # rewrite each figure's block in the docs
    python benchmarks/publish.py --check   # exit 1, naming them, if a block differs

A figure's block in a document is the text between ``<!-- figure NAME -->`` and
``<!-- /figure -->``; NAME is a renderer below, fed by ``docs/figures/NAME.json``. A benchmark
stores its results there (``parakit bench --out DIR`` writes ``DIR/bench.json``;
``benchmarks/feedback_times.py --json docs/figures/feedback.json``), then this script
publishes them. ``tests/test_docs.py`` runs the check: a table edited by hand, or results
stored and not published, fail the kit's tests.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))  # run as a script from anywhere

from parakit.bench import report  # noqa: E402

FIGURES = KIT / "docs" / "figures"
DOCS = [KIT / "README.md", *sorted((KIT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- figure ([\w-]+) -->\n)(.*?)(<!-- /figure -->)", re.S)


def _minutes(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60} s" if seconds >= 60 else f"{seconds:.1f} s"


def feedback(data: dict) -> str:
    """How long each audience waits: a table of medians (benchmarks/feedback_times.py)."""
    m = data["machine"]
    lines = ["| command | runs | median | range |", "|---|---:|---:|---:|"]
    for row in data["commands"]:
        secs = row["seconds"]
        lines.append(f"| `{row['command']}` ({row['who']}) | {len(secs)} | "
                     f"**{_minutes(sorted(secs)[len(secs) // 2])}** | "
                     f"{_minutes(min(secs))} - {_minutes(max(secs))} |")
    lines.append("")
    lines.append(f"({m['cpus']} CPUs, Python {m['python']}, {m['date']}; "
                 "`python benchmarks/feedback_times.py` wrote it)")
    return "\n".join(lines) + "\n"


CONDITIONS = {"idle": "idle", "busy": "busy (two loops beside it)", "one-cpu": "one CPU",
              "half-cpu": "half a CPU, 768 MiB", "jobs-2": "`--jobs 2` (two at once)"}


def worst_case(data: dict) -> str:
    """A submission in which every function hangs, per condition (benchmarks/worst_case.py)."""
    lines = ["| condition | wall time | peak memory | score | failed tests | processes left |",
             "|---|---:|---:|---|---:|---:|"]
    for name, c in data["conditions"].items():
        peak = f"{c['peak_mib']} MiB" if c["peak_mib"] else "(no cgroup to read)"
        lines.append(f"| {CONDITIONS.get(name, name)} | **{_minutes(c['seconds'])}** | "
                     f"{peak} | {c['score']} | {c['failed']} of {c['tests']} | {c['left']} |")
    lines += ["", f"({data['cpus']} CPUs, {data['date']}, grader options: "
              f"{' '.join(data['options'])}; `python benchmarks/worst_case.py` wrote it)"]
    return "\n".join(lines) + "\n"


def class_on_slurm(data: dict) -> str:
    """A class as one job array against one by one (benchmarks/class_on_slurm.py)."""
    same = "**yes**" if data["same_gradebook"] else f"**no**: {', '.join(data['differ'])}"
    rows = [("submissions", str(data["size"])),
            ("the same gradebook (points and failed tests of each)", same),
            ("one by one, wall time", f"{_minutes(data['one_by_one_wall_s'])} (median grading "
             f"{data['graded_seconds_median']:.1f} s)"),
            ("the array, wall time", f"{_minutes(data['array_wall_s'])} (a task's median "
             f"{data['elapsed_median_s']:g} s by Slurm's accounting)"),
            ("Slurm's cost per task (its elapsed time less its grading's own seconds)",
             f"{data['overhead_per_task_s']:g} s"),
            ("from submitting to the first task's start", f"{data['first_start_s']:g} s")]
    lines = ["| what | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows), "",
             f"({data['nodes']} nodes of this machine's {data['cores']} cores, {data['date']}, "
             f"`-k \"{data['k']}\"`; `python benchmarks/class_on_slurm.py` wrote it)"]
    return "\n".join(lines) + "\n"


def stability(data: dict) -> str:
    """The reference and the balance entries graded again and again in each condition
    (benchmarks/stability.py)."""
    lines = ["| condition | reference gradings at full marks | seconds a grading, median / max "
             "| peak memory | entries with their expected verdicts |",
             "|---|---|---:|---:|---|"]
    for name, row in data["conditions"].items():
        secs = sorted(row["seconds"])
        good = sum(g for g, _ in row["entries"].values())
        runs = sum(n for _, n in row["entries"].values())
        lost = "; lost: " + ", ".join(f"{t} {n}x" for t, n in row["lost"].items()) \
            if row["lost"] else ""
        peak = f"{row['peak_mib']} MiB" if row["peak_mib"] else ""
        lines.append(f"| {CONDITIONS.get(name, name)} | **{row['full']} of "
                     f"{row['gradings']}**{lost} | {secs[len(secs) // 2]:.1f} / {secs[-1]:.1f} | "
                     f"{peak} | "
                     f"**{good} of {runs}** |")
    r = data["runs"]
    lines += ["", f"({data['cpus']} CPUs, {data['date']}; `--idle-runs {r['idle']} --runs "
              f"{r['other']} --entry-runs {r['entries']}`; `python benchmarks/stability.py` "
              "wrote it)"]
    return "\n".join(lines) + "\n"


def _spread(values: list[float]) -> str:
    """min / median / max, or the one value where they are all the same."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f} / {mid:.2f} / {high:.2f}"


def balance(data: dict) -> str:
    """The measures behind the Mandelbrot balance rule, scheme by scheme, one table per
    condition (benchmarks/balance_distributions.py)."""
    lines = []
    for name, schemes in data["conditions"].items():
        lines += [f"**{CONDITIONS.get(name, name)}**", "",
                  "| scheme | R_work | longest wait | R_finish | crowded | largest piece | late "
                  "| batches split alike | batches passing |",
                  "|---|---|---|---|---|---|---|---:|---:|"]
        for scheme, row in schemes.items():
            cells = [_spread(row[c]) for c in ("R_work", "max wait", "R_finish", "crowded",
                                               "piece", "late")]
            lines.append(f"| {scheme} | " + " | ".join(cells) + f" | {row['fixed']} of "
                         f"{row['batches']} | **{row['passing']} of {row['batches']}** |")
        lines.append("")
    lines.append(f"(min / median / max over {data['runs']} runs at P={data['workers']}, "
                 f"{data['cpus']} CPUs, {data['date']}; `python "
                 "benchmarks/balance_distributions.py` wrote it)")
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "bench": ("bench", report.markdown),  # parakit bench --repeat 5: its bench.json
    "feedback": ("feedback", feedback),
    "worst-case": ("worst-case", worst_case),
    "class-on-slurm": ("class-on-slurm", class_on_slurm),
    "stability": ("stability", stability),
    "balance": ("balance", balance),
}


def render(name: str, figures: Path = FIGURES) -> str:
    """The block of figure ``name``, from its stored results; KeyError says why not."""
    if name not in RENDERERS:
        raise KeyError(f"no figure called {name!r} (known: {', '.join(RENDERERS)})")
    source, function = RENDERERS[name]
    path = figures / f"{source}.json"
    try:
        return function(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise KeyError(f"figure {name}: cannot read its results {path} ({exc})") from None


def publish(check: bool = False, docs: list[Path] = DOCS,
            figures: Path = FIGURES) -> tuple[list[str], list[str]]:
    """Rewrite (with ``check``, only compare) every figure block of ``docs``: (the blocks
    that were not their results', the blocks that could not be made), as 'FILE: ...'."""
    stale: list[str] = []
    broken: list[str] = []
    for doc in docs:
        text = doc.read_text()

        def replace(m: re.Match, doc: Path = doc) -> str:
            try:
                fresh = render(m.group(2), figures)
            except KeyError as exc:
                broken.append(f"{doc.name}: {exc.args[0]}")
                return m.group(0)
            if fresh != m.group(3):
                stale.append(f"{doc.name}: figure {m.group(2)} is not what "
                             f"{RENDERERS[m.group(2)][0]}.json holds")
            return m.group(1) + fresh + m.group(4)

        new = BLOCK.sub(replace, text)
        if not check and new != text:
            doc.write_text(new)
    return stale, broken


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a figure's block is not its results'")
    args = parser.parse_args()
    stale, broken = publish(check=args.check)
    for line in broken + (stale if args.check else []):
        print(line, file=sys.stderr)
    if not args.check:
        print(f"published {len(stale)} figure block(s) that had changed", file=sys.stderr)
    elif stale:
        print("publish them with: python benchmarks/publish.py", file=sys.stderr)
    return 1 if broken or (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
