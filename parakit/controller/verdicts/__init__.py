"""The rules that turn what was observed into verdicts: answers against the expected ones
(``checks``, ``mismatch*``), the evidence of where the work ran (``evidence``, ``cpurule``),
how evenly it ran (``balance``, ``balance_report``), and what a hang or a crash says
(``diagnose``).
"""
