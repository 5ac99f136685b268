"""Logging: structlog to stderr, as short text on a terminal or one JSON object per line."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import structlog

# Fields a person at a terminal does not need on every line (JSON logs keep them).
_QUIET_KEYS = ("timestamp", "component", "run")


_pending: list[tuple[str | None, int]] = []  # what configure() asked, applied on first use


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

    return structlog.PrintLogger(file=sys.stderr)


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to ``component=name`` (configuring logging on first use)."""
    import structlog

    if _pending:
        _apply(*_pending.pop())
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger().bind(component=name)
    return logger
