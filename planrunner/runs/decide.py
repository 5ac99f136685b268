"""The answer table of docs/apply.md as code: what an answer to Trigger Flow calls for
(:func:`on_answer`), and what follows a lookup (:func:`after_lookup`). Pure functions,
tested as a table (tests/test_engine.py)."""

from __future__ import annotations

from enum import StrEnum

from planrunner import enos

ALREADY_THERE = (
    "already on the service: instances are keyed by flow and minute, so Trigger Flow cannot "
    "run this entry again (use the EnOS console's rerun, or another trigger time)"
)


class Act(StrEnum):
    """What to do with an answer to Trigger Flow."""

    DONE = "done"  # record triggered
    RETRY = "retry"  # nothing was created: back off, send again under the same intent
    REFUSE_FLOW = "refuse-flow"  # record failed; the rest of the flow is not sent this run
    LOOK_UP = "look-up"  # record unknown; look the instance up before anything else
    LOOK_UP_DUPLICATE = "look-up-duplicate"  # 62102: look the instance up
    STOP = "stop"  # auth or TLS: record failed, stop the run


def on_answer(kind: enos.Kind) -> Act:
    """The first column of the answer table: what an answer of ``kind`` calls for."""
    return {
        enos.Kind.OK: Act.DONE,
        enos.Kind.RETRYABLE: Act.RETRY,
        enos.Kind.PERMANENT: Act.REFUSE_FLOW,
        enos.Kind.UNKNOWN: Act.LOOK_UP,
        enos.Kind.DUPLICATE: Act.LOOK_UP_DUPLICATE,
        enos.Kind.AUTH: Act.STOP,
        enos.Kind.FATAL: Act.STOP,
        enos.Kind.STOPPED: Act.STOP,  # never sent; the sender closes its intent aborted first
    }[kind]


class Cause(StrEnum):
    """Why a key is being looked up."""

    CRASHED = "crashed"  # an earlier run left the attempt open
    UNKNOWN = "unknown"  # this run's send had no definite answer
    DUPLICATE = "duplicate"  # this run's send was answered 62102
    DUPLICATE_AGAIN = "duplicate-again"  # 62102 again after waiting out the one-minute rule


FOUND_WHY = {
    Cause.CRASHED: "found on the service after an earlier run's unanswered request",
    Cause.UNKNOWN: "created despite the unanswered request (found by lookup)",
    Cause.DUPLICATE: ALREADY_THERE,
    Cause.DUPLICATE_AGAIN: ALREADY_THERE,
}


class Then(StrEnum):
    """What follows a lookup."""

    RECONCILED = "reconciled"  # found: record reconciled found=true; the key is done
    RESEND = "resend"  # not found: close the attempt, send again
    WAIT_RESEND = "wait-resend"  # not found after 62102: wait out the minute, send once more
    FAIL = "fail"  # not found and no more sends this run: record failed
    KEEP_UNKNOWN = "keep-unknown"  # the lookup failed: the attempt stays open


def after_lookup(
    cause: Cause, found: bool | None, *, may_resend: bool, retry_unknown: bool
) -> Then:
    """The lookup column of the answer table. Only a lookup that answered decides."""
    if found:
        return Then.RECONCILED
    if found is None:
        if retry_unknown and cause in (Cause.CRASHED, Cause.UNKNOWN):
            return Then.RESEND
        return Then.KEEP_UNKNOWN
    if cause is Cause.CRASHED:
        return Then.RESEND
    if cause is Cause.UNKNOWN:
        return Then.RESEND if may_resend else Then.FAIL
    if cause is Cause.DUPLICATE:
        return Then.WAIT_RESEND
    return Then.FAIL
