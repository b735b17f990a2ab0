"""What one case of a graded call produced, as the grader's tests see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from parakit.controller.processes import observe
from parakit.worker import IMPORT_ERROR, MISSING_FUNCTION, MISSING_MODULE, NOT_IMPLEMENTED, OK
from problems import trace

TIMEOUT, CRASHED = "timeout", "crashed"
# Failures that will repeat identically for every later case: no point restarting for them.
FINAL = {NOT_IMPLEMENTED, MISSING_MODULE, MISSING_FUNCTION, IMPORT_ERROR}

@dataclass
class Outcome:
    """What one case of a graded call produced."""

    status: str  # ok, not_implemented, error, missing_*, import_error, crashed, timeout
    message: str = ""
    values: dict[int, Any] = field(default_factory=dict)  # rank (0 for pool/ipp) -> value
    # rank -> its process, as (host, pid) (0: the calling process for pool, ipp and plain)
    pids: dict[int, observe.Proc] = field(default_factory=dict)
    records: list[trace.Record] = field(default_factory=list)
    details: str = ""  # traceback, stacks, output tail: what a student needs to dig in
    seconds: float = 0.0
    seen: observe.Seen = field(default_factory=lambda: observe.Seen())  # from outside

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def value(self) -> Any:
        return self.values.get(0)
