"""One host's probe (``parakit.controller.processes.probe serve``), kept open over the remote
shell's pipes for a whole grading and asked questions line by line."""

from __future__ import annotations

import json
import os
import secrets
import select
import subprocess
import threading
import time
from collections.abc import Sequence

from parakit.controller.processes import proctree
from parakit.controller.processes.probe import MARK


class ProbeSession:
    """One host's probe, answering over the remote shell's pipes for a whole grading: a remote
    shell per question costs a connection and a Python start with psutil (50-110 ms), and an
    ipyparallel run asks each engine's host twice per case. Its processes here are the
    grader's own, never a job's (``proctree.spare``)."""

    def __init__(self, argv: list[str]):
        self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL)
        proctree.spare([self.popen.pid])
        self._buffer = b""
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def ask(self, args: Sequence[str], timeout: float) -> dict:
        """The probe's answer to ``ACTION ARGS...``; OSError if the session has ended,
        TimeoutError if no answer comes within ``timeout`` seconds. Only the line that carries
        this question's nonce counts: the others are what a login shell printed, or what a
        process on that host (graded code runs there as the same user) wrote into the pipe."""
        nonce = secrets.token_hex(16)
        with self._lock:
            self.popen.stdin.write((json.dumps([nonce, *args]) + "\n").encode())
            self.popen.stdin.flush()
            deadline = time.monotonic() + timeout
            while True:
                line = self._line(deadline, timeout)
                try:
                    data = json.loads(line.removeprefix(MARK)) if line.startswith(MARK) else None
                except ValueError:
                    continue
                if isinstance(data, dict) and data.get("nonce") == nonce:
                    return data

    def _line(self, deadline: float, timeout: float) -> str:
        fd = self.popen.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer within {timeout:g} s")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise OSError("the remote shell ended")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace")

    def close(self) -> None:
        """Close its input (the probe ends), wait for the remote shell, kill it if it stays."""
        try:
            self.popen.stdin.close()
        except OSError:
            pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self.popen.stdout.close()
        proctree.unspare([self.popen.pid])
