"""Logging: structlog to stderr, as text on a terminal or one JSON object per line."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(fmt: str | None, verbosity: int) -> None:
    """Set up structlog; ``fmt`` None means text on a terminal, else JSON; -v adds debug."""
    if fmt is None:
        fmt = "text" if sys.stderr.isatty() else "json"
    level = logging.INFO if verbosity <= 0 else logging.DEBUG
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
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


def _stderr_logger(*args: object) -> structlog.PrintLogger:
    return structlog.PrintLogger(file=sys.stderr)


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to ``component=name``."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger().bind(component=name)
    return logger
