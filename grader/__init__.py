"""The kit's grader: a pytest suite (``pytest grader``) and the harness that runs graded code.

Parent side (pytest process): ``plugin`` (options, points, score table), ``harness`` (runs a
graded call in a child and reads its results back), ``proctree`` (process trees, stacks, kills),
``ipp_cluster`` (the session's ipyparallel cluster), ``checks`` (verdicts from results and traces).
Child side: ``child`` only; of this package it imports only ``wire``, the data format of
results and arguments that both sides share.
"""
