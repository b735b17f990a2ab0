"""The controller side: everything of the grader outside the graded processes, in three rooms.

- ``session``: a grading session: settings and runtime, the jobs that run graded functions in
  children and bring back their outcomes, the pytest-facing API, the source checks, reports.
- ``processes``: processes seen from outside: launching, watching (CPU time and waiting),
  process trees and their cleanup, shared memory, other hosts and their probe.
- ``verdicts``: the rules that turn what was observed into verdicts and messages: answers,
  evidence of where the work ran, balance, diagnoses of hangs, crashes and wrong results.

The session uses the other two and is handed its backends (``session.backend``); the rules
read what the processes' side observed. Nothing here imports ``parakit.backends``.
"""
