"""Load the grader's pytest plugin, so its options work for `pytest grader` and `pytest tests`."""

pytest_plugins = ["grader.plugin"]
