"""The simulator in its own process (``planrunner sim --port 0``), for benchmarks and the
tests that need a server outside the test's own process."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any

from testing import ROOT


class SimProcess:
    """``planrunner sim --port 0 --accept-unknown-flows ARGS`` as a child process; a context
    manager with ``url``. Benchmarks trigger flows they never list, so unknown flows are
    accepted (the vendor, and the simulator by default, refuse them)."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> SimProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "planrunner", "sim", "--port", "0", "--accept-unknown-flows", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.__exit__()
            raise RuntimeError(f"planrunner sim did not start: {self.url!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait()

    def triggers(self) -> list[dict[str, Any]]:
        """The simulator's trigger log (every trigger request and the status it got)."""
        from planrunner import protocol

        with urllib.request.urlopen(self.url + protocol.SIM_TRIGGERS_PATH, timeout=30) as r:
            result: list[dict[str, Any]] = json.loads(r.read())["triggers"]
        return result
