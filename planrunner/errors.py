"""Expected failures, each carrying its documented exit code (README, "Exit codes").

Library code raises these; only ``cli.py`` turns them into text and an exit code.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_LEDGER = 3
EXIT_PENDING = 4
EXIT_INTERNAL = 70  # a bug: the last-resort handler in cli.py
EXIT_INTERRUPTED = 130


class PlanrunnerError(Exception):
    """Base of every expected failure; ``str(err)`` is the one-line message."""

    exit_code = EXIT_FAILED


class UsageError(PlanrunnerError):
    """Bad command-line use or an unusable plan file; nothing was sent."""

    exit_code = EXIT_INVALID


class PlanInvalid(PlanrunnerError):
    """A plan failed validation; ``lines`` holds every problem, one per line."""

    exit_code = EXIT_INVALID

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class LedgerError(PlanrunnerError):
    """The ledger is unreadable, corrupt or locked by another apply."""

    exit_code = EXIT_LEDGER


class LedgerLocked(LedgerError):
    """Another apply holds the ledger lock."""


class ServiceError(PlanrunnerError):
    """A run-stopping failure talking to the service (network, authentication)."""

    exit_code = EXIT_FAILED
