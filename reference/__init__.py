"""Reference solutions (instructors only; not part of the student release)."""
