"""The kit's own tests: under ``pytest -n`` the longest start first, so that the workers finish
together instead of one waiting out a long test that came last (the order of a plain run is
otherwise the files')."""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("long")
        return marker.args[0] if marker else 0.0

    items.sort(key=seconds, reverse=True)  # stable: the rest keep their order
