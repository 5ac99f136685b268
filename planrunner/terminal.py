"""What a person at a terminal sees: the progress bar, the confirmation prompt, colour."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

from planrunner import log
from planrunner.outcome import Status

REDRAW_SECONDS = 0.1
MIN_BAR = 10
MAX_BAR = 30


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, never with ``NO_COLOR`` set (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A one-line progress bar on a terminal (stderr); silent elsewhere.

    Counts only the entries in ``total`` (entries already done before the run are not
    counted), never passes 100%, shows rate and ETA, and fits the terminal's width.
    """

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled and total > 0
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._last = 0.0
        self._started = time.monotonic()
        self._drawn = False
        self._wait_until = 0.0  # a wait the run announced (the one-minute rule) ends then
        if self.enabled:
            log.own_line(self)

    def add(self, status: str) -> None:
        """Count one settled entry (``skipped`` ones were done before; they are not counted)."""
        if status == Status.SKIPPED:
            return
        with self._lock:
            self.counts[status] = self.counts.get(status, 0) + 1
            if self.enabled and time.monotonic() - self._last > REDRAW_SECONDS:
                self._draw()

    def line(self, width: int) -> str:
        """The bar as text, at most ``width`` characters."""
        done = min(sum(self.counts.values()), self.total)
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = done / elapsed
        left = (self.total - done) / rate if rate > 0 else 0.0
        waiting = self._wait_until - time.monotonic()
        if done >= self.total:
            eta = ""
        elif waiting > left:
            eta = f"waiting {_duration(waiting)}"  # a known wait outlasts what the rate predicts
        else:
            eta = f"ETA {_duration(left)}" if rate > 0 else ""
        parts = " ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        tail = " " + " ".join(x for x in (f"{done}/{self.total}", f"{rate:.0f}/s", eta, parts) if x)
        bar_width = max(MIN_BAR, min(MAX_BAR, width - len(tail) - 2))
        filled = bar_width * done // self.total
        text = f"[{'#' * filled}{'-' * (bar_width - filled)}]{tail}"
        return text[: max(width - 1, 1)]

    def _width(self) -> int:
        """The terminal's width: $COLUMNS, else the size of the terminal drawn on."""
        given = os.environ.get("COLUMNS", "")
        if given.isdigit() and int(given) > 0:
            return int(given)
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 0
        # A terminal that does not know its size (0 columns) gets the usual 80.
        return columns if columns > 0 else shutil.get_terminal_size((80, 24)).columns

    def _draw(self) -> None:
        self._last = time.monotonic()
        width = self._width()
        self.stream.write(f"\r{self.line(width)}\x1b[K")
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        """Leave a clean line (before a message such as "interrupted")."""
        if self.enabled and self._drawn:
            with self._lock:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._drawn = False

    def redraw(self) -> None:
        """Draw the bar again (after a log line took its place)."""
        if self.enabled:
            with self._lock:
                self._draw()

    def note(self, event: MutableMapping[str, Any]) -> None:
        """A log event that says it is waiting ``seconds`` shows on the bar as a wait."""
        seconds = event.get("seconds")
        if "waiting" in str(event.get("event", "")) and isinstance(seconds, (int, float)):
            with self._lock:
                self._wait_until = max(self._wait_until, time.monotonic() + seconds)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            log.own_line(None)
            with self._lock:
                self._draw()
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False


def confirm(question: str) -> bool:
    """Ask on the terminal; only y or yes is yes."""
    try:
        sys.stderr.write(question)
        sys.stderr.flush()
        answer = input()
    except EOFError:
        sys.stderr.write("\n")  # Ctrl-D: end the prompt's line
        return False
    except KeyboardInterrupt:
        # The terminal echoed ^C after the question: end that line before the message.
        # (The try starts before the question: Ctrl-C may land before input() does.)
        sys.stderr.write("\n")
        sys.stderr.flush()
        raise
    return answer.strip().lower() in ("y", "yes")
