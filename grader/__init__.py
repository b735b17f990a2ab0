"""The grader: the pytest suite that grades an exercise package (``pytest grader``).

It holds only what pytest collects: one test module per exercise, the plugin (options,
fixtures) and the scores (table, CI reports). The machinery behind it (jobs, backends, the
worker-side runners, the verdict rules) is the ``parakit`` package; docs/architecture.md draws
the picture. From a notebook: ``from grader import check; check("mandelbrot")``.
"""

from parakit.check import check

__all__ = ["check"]
