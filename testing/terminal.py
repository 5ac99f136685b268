"""Driving planrunner on a pseudo-terminal as a person would, for the newcomer trial's
terminal findings: a process on a pty that reacts to what it shows (Ctrl-C once a count of
requests was sent, answers to the prompt).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from planrunner.sim import Simulator
from testing import FAST_ENV, ROOT, SIM_ENV

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def in_pty(argv: list[str], react: Any, *, stdin_tty: bool = True, timeout: float = 60) -> tuple[int, str]:
    """`python -m planrunner ARGV` with stderr (and stdin) on a pseudo-terminal.

    ``react(screen, proc)`` is called after each chunk the terminal shows; it may signal the
    process. Returns (exit code, the whole screen).
    """
    import os
    import pty
    import select
    import subprocess
    import sys

    controller, term = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "planrunner", *argv],
        stdin=term if stdin_tty else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=term,
        cwd=ROOT,
        env={**os.environ, **SIM_ENV, **FAST_ENV},
    )
    os.close(term)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            # Never block past the deadline: a child that stops writing but does not exit
            # must fail the test, not hang the suite.
            ready, _, _ = select.select([controller], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                data = os.read(controller, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
            react(b"".join(chunks).decode(errors="replace"), proc)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def interrupt_once_sent(sim: Simulator, count: int, times: int = 1) -> Any:
    """A ``react`` that sends SIGINT ``times`` times once ``count`` triggers reached the sim."""
    import signal

    sent: list[int] = []

    def react(screen: str, proc: Any) -> None:
        while not sent and len(sim.state.triggers) < count and proc.poll() is None:
            time.sleep(0.01)
        while len(sent) < times and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            sent.append(1)
            time.sleep(0.2)

    return react


def log_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in err.splitlines() if x.startswith("{")]
