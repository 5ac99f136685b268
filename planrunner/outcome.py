"""Entry statuses and the outcome of one entry: the vocabulary every layer shares.

``StrEnum`` members compare and serialize as their plain strings, so JSON output and the
ledger keep exactly the bytes they had when these were bare strings.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class KeyStatus(StrEnum):
    """What the ledger says of a key (the fold of docs/apply.md)."""

    DONE = "done"
    UNKNOWN = "unknown"
    FAILED = "failed"
    PENDING = "pending"
    CANCELLED = "cancelled"


class Status(StrEnum):
    """What ``plan`` and ``apply`` show for an entry."""

    # plan
    PENDING = "pending"
    RETRY = "retry"
    UNKNOWN = "unknown"
    DONE = "done"
    CANCELLED = "cancelled"
    # apply
    TRIGGERED = "triggered"
    RECONCILED = "reconciled"
    SKIPPED = "skipped"
    FAILED = "failed"


class Outcome(NamedTuple):
    """What is known of one key beyond its default status (a NamedTuple: cheap to make)."""

    status: str
    flow_instance_id: str | None = None
    error: str | None = None
