"""Instructor-only grader tests: added to every run of the whole grader, never released."""
