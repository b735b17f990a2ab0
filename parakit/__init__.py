"""parakit's runtime: everything behind ``pytest grader`` and the ``parakit`` command.

The package is split by which side of the process boundary a module runs on (see
docs/architecture.md):

- ``worker``: runs inside graded processes (MPI ranks, a pool's client, an ipyparallel
  client). It imports nothing of the controller side: only ``parakit.wire`` and
  ``parakit.workloads`` (shared formats), ``problems`` and the graded package.
- ``controller``: the grading process. Jobs and what is observed of them, the verdict rules
  (evidence, balance, checks), settings and reports.
- ``backends``: one interface, one module per backend (mpi, ipp, pool, plain), used by grading
  and by the bench alike.
- ``bench`` and ``cli``: the instructor's commands (``parakit bench``, ``grade``, ``validate``,
  ``release``).

The pytest suite itself (the graded tests, points and score table) is ``grader/``.
"""

from pathlib import Path

KIT_ROOT = Path(__file__).resolve().parent.parent  # the kit's checkout (or the release)
