"""What the course provides: problem definitions, serial baselines and traced work kernels.

Imported by student code, reference solutions and the grader alike; depends on nothing of theirs.
"""
