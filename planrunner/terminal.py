"""What a person at a terminal sees: the progress bar, the live line of ``status --watch``,
the confirmation prompt, colour."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, MutableMapping, Sequence
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

    def __init__(
        self, total: int, enabled: bool, stream: TextIO | None = None, label: str = ""
    ) -> None:
        self.total = total
        self.label = label  # what is counted, before the bar ("looking up")
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
        self.tally({status: 1})

    def tally(self, counts: Mapping[str, int]) -> None:
        """Count settled entries by status, then draw once."""
        with self._lock:
            for status, n in counts.items():
                if status != Status.SKIPPED:
                    self.counts[status] = self.counts.get(status, 0) + n
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
        head = f"{self.label} " if self.label else ""
        text = f"{head}[{'#' * filled}{'-' * (bar_width - filled)}]{tail}"
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

    def close(self, keep: bool = True) -> None:
        """Draw the final state and end the line; without ``keep``, wipe it instead (a
        passing phase such as looking up, whose result the report shows)."""
        if self.enabled:
            log.own_line(None)
            with self._lock:
                if keep:
                    self._draw()
                    self.stream.write("\n")
                else:
                    self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._drawn = False


class Live:
    """The one-line live summary of ``status --watch`` on a terminal (stderr), rewritten
    with ``\\r``.

    It owns stderr's last line while it is drawn: a log line clears it and it is drawn again
    below, so the two never share a line.
    """

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.colour = enabled and use_colour(stream)
        self._drawn = False
        self._text = ""

    def line(
        self, ended: int, watched: int, counts: dict[str, int], failed: bool, interval: float,
        width: int,
    ) -> str:  # fmt: skip
        """The summary, at most ``width - 1`` characters (red when any instance failed)."""
        parts = ", ".join(f"{n} {st}" for st, n in counts.items())
        text = f"watching: {ended}/{watched} ended; {parts}; next look in {interval:g}s"
        text = text[: max(width - 1, 1)]
        if self.colour:
            text = ("\x1b[31m" if failed else "\x1b[32m") + text + "\x1b[0m"
        return text

    def show(
        self, ended: int, watched: int, counts: dict[str, int], failed: bool, interval: float
    ) -> None:
        """Draw (or redraw) the line."""
        if not self.enabled:
            return
        width = shutil.get_terminal_size((80, 24)).columns
        self._text = self.line(ended, watched, counts, failed, interval, width)
        log.own_line(self)
        self.redraw()

    def redraw(self) -> None:
        """Draw the last summary again (after a log line)."""
        if self.enabled and self._text:
            self.stream.write(f"\r{self._text}\x1b[K")
            self.stream.flush()
            self._drawn = True

    def clear(self) -> None:
        """Wipe the line (before a log line)."""
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def note(self, event: object) -> None:
        """Log events change nothing on this line."""

    def close(self) -> None:
        """Leave a clean line for the report."""
        log.own_line(None)
        self.clear()
        self._text = ""


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


class Lookups:
    """The progress line of looking entries up (``status``, ``cancel``): on a terminal
    only, counting entries by the state found, wiped when the lookups end (the report that
    follows says what was found)."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self._bar: Progress | None = None

    def start(self, total: int) -> None:
        """``total`` entries are about to be looked up."""
        self._bar = Progress(total, self.enabled, self.stream, label="looking up")

    def add(self, states: Sequence[str]) -> None:
        """A batch was looked up."""
        if self._bar is not None:
            self._bar.tally(Counter(states))

    def stop(self) -> None:
        """The lookups ended: wipe the line."""
        if self._bar is not None:
            self._bar.close(keep=False)
            self._bar = None
