"""The grader: the pytest suite that grades an exercise package (``pytest grader``).

It holds only what pytest collects: one test module per exercise, and the plugin (points, the
score table, CI reports, fixtures). The machinery behind it (jobs, backends, the worker-side
runners, the verdict rules) is the ``parakit`` package; docs/architecture.md draws the picture.
"""
