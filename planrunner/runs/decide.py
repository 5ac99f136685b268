"""The answer table of docs/apply.md as code: what an answer to Trigger Flow calls for
(:func:`on_answer`), what follows a lookup (:func:`after_lookup`), and what Get Flow's
answer before a flow's first trigger means (:func:`preflight`). Pure functions, tested as
a table (tests/runs/test_decide.py)."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from planrunner import enos, protocol

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
    NOT_SENT = "not-sent"  # the client stopped (quota spent, gateway refuses): close the intent aborted, stop the run


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
        enos.Kind.STOPPED: Act.NOT_SENT,  # never sent; the sender closes its intent aborted first
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


class Preflight(NamedTuple):
    """What Get Flow said of a flow before its first trigger in a run."""

    refused: str | None  # why nothing is sent to the flow; None: send
    warning: str | None = None  # Get Flow could not be answered: the triggers' answers decide


def preflight(answer: enos.Answer) -> Preflight:
    """Get Flow's answer, read as section "Check each flow first" of docs/apply.md says.

    Refused: the service answered with an error code (62102 and the others: the flow does
    not exist or is not visible to this user), or its flow is missing, locked, user-locked
    or has no task. An answer that is no answer (timeouts, 5xx, 429 after retries; an HTTP
    refusal by the gateway; auth) is a warning: the trigger's own answers decide.
    """
    if answer.kind is enos.Kind.OK:
        return Preflight(protocol.flow_refusal(protocol.read_flow(answer.data)))
    if answer.kind is enos.Kind.PERMANENT and answer.http_status == 200:  # the service's code
        return Preflight(f"{protocol.flow_refusal(None)} (Get Flow answered {enos.describe(answer)})")
    return Preflight(None, f"Get Flow could not be answered ({enos.describe(answer)})")
