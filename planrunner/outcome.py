"""Entries, their statuses and the outcome of one entry: the vocabulary every layer shares.

``StrEnum`` members compare and serialize as their plain strings, so JSON output and the
ledger keep exactly the bytes they had when these were bare strings.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from planrunner import times


class KeyStatus(StrEnum):
    """What the ledger says of a key (the fold of docs/apply.md)."""

    DONE = "done"
    UNKNOWN = "unknown"
    FAILED = "failed"
    PENDING = "pending"
    CANCELLED = "cancelled"


class Event(StrEnum):
    """The ``event`` of a ledger record (docs/apply.md, "The ledger")."""

    INTENT = "intent"
    TRIGGERED = "triggered"
    FAILED = "failed"
    UNKNOWN = "unknown"
    RECONCILED = "reconciled"
    ABORTED = "aborted"
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
    RERUN = "rerun"  # a new instance for an entry whose instance ended failed (DESIGN 13)


class InstanceState(StrEnum):
    """What ``status`` and ``cancel`` show for an entry when it is not the service's own
    status of an instance (``SUCCESS``, ``RUNNING``, ...: protocol.STATUS_NAMES); lower case
    to tell them apart."""

    NOT_TRIGGERED = "not-triggered"  # the ledger does not say the entry was triggered
    NOT_FOUND = "not-found"  # done in the ledger, but the service has no such instance
    LOOKUP_FAILED = "lookup-failed"  # the service could not be asked (network, auth, errors)
    NOT_LOOKED_UP = "done"  # --sim: done in the ledger; the embedded simulator is gone


class Outcome(NamedTuple):
    """What is known of one key beyond its default status (a NamedTuple: cheap to make)."""

    status: Status
    flow_instance_id: str | None = None
    error: str | None = None


class Entry(NamedTuple):
    """One trigger: a flow at an instant. Sorts by trigger time, then flowId."""

    trigger_time: int
    flow_id: int
    flow: str
    org_id: str
    offset: int  # the flow zone's UTC offset at trigger_time, in ms, for display

    @property
    def key(self) -> str:
        """The ledger key, ``orgId/flowId/triggerTime`` (made when asked: a plan of
        millions of entries would spend a fifth of its memory on stored keys)."""
        return f"{self.org_id}/{self.flow_id}/{self.trigger_time}"

    @property
    def local_time(self) -> str:
        """RFC 3339 time in the flow's zone."""
        return times.format_local(self.trigger_time, self.offset)
