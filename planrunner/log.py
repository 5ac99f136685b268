"""Logging: structlog to stderr, as short text on a terminal or one JSON object per line."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import structlog

# Fields a person at a terminal does not need on every line (JSON logs keep them).
_QUIET_KEYS = ("timestamp", "component", "run")


_pending: list[tuple[str | None, int]] = []  # what configure() asked, applied on first use


class LineOwner(Protocol):
    """What holds stderr's last line (the progress bar): log lines go around it."""

    def clear(self) -> None:
        """Wipe the line (before a log line is written)."""

    def redraw(self) -> None:
        """Draw the line again (after the log line)."""

    def note(self, event: MutableMapping[str, Any]) -> None:
        """See each log event before it is written (a wait it announces, say)."""


_owner: list[LineOwner] = []


def own_line(owner: LineOwner | None) -> None:
    """Give stderr's last line to ``owner`` (None: to nobody): each log line then clears it
    first and has it redrawn after, so a log line never lands on the bar."""
    _owner[:] = [owner] if owner is not None else []


def _tell_owner(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for owner in _owner:
        owner.note(event)
    return event


class _AroundTheLine:
    """stderr for log lines: the owned line is cleared before a line and redrawn after it."""

    def write(self, text: str) -> int:
        owners = list(_owner)
        for owner in owners:
            owner.clear()
        written = sys.stderr.write(text)
        if text.endswith("\n"):
            for owner in owners:
                owner.redraw()
        return written

    def flush(self) -> None:
        sys.stderr.flush()


def configure(fmt: str | None, verbosity: int) -> None:
    """Set up logging; ``fmt`` None means text on a terminal, else JSON; -v adds debug.

    structlog is imported and configured when the first logger is made, so a command that
    logs nothing does not pay for it.
    """
    _pending[:] = [(fmt, verbosity)]


def _apply(fmt: str | None, verbosity: int) -> None:
    import structlog

    if fmt is None:
        fmt = "text" if sys.stderr.isatty() else "json"
    level = logging.INFO if verbosity <= 0 else logging.DEBUG
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    elif sys.stderr.isatty() and verbosity <= 0:
        renderer = _short_line
    else:
        colour = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
        renderer = structlog.dev.ConsoleRenderer(colors=colour)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _tell_owner,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Look sys.stderr up when a logger is made, not now: it may be replaced meanwhile.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


def _short_line(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
    """``planrunner: message (key=value ...)``, cut to the terminal's width."""
    level = event.pop("level", "info")
    message = str(event.pop("event", ""))
    for key in _QUIET_KEYS:
        event.pop(key, None)
    details = " ".join(f"{k}={v}" for k, v in event.items() if v is not None)
    prefix = "planrunner: " if level == "info" else f"planrunner: {level}: "
    line = prefix + message + (f" ({details})" if details else "")
    try:
        width = os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        width = 0
    if width <= 0:
        width = shutil.get_terminal_size((160, 24)).columns
    return line if len(line) < width else line[: max(width - 2, 20)] + "…"


def _stderr_logger(*args: object) -> structlog.PrintLogger:
    import structlog

    return structlog.PrintLogger(file=_AroundTheLine())  # type: ignore[arg-type]


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to ``component=name`` (configuring logging on first use)."""
    import structlog

    if _pending:
        _apply(*_pending.pop())
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger().bind(component=name)
    return logger
