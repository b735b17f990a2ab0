"""The grading session: its settings and runtime (``settings``, ``runtime``), the jobs that run
graded functions (``jobs``, ``outcome``), the pytest-facing API (``grading``), the source
checks (``source``) and the reports it writes (``reports``).
"""
