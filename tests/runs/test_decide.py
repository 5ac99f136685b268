"""The engine's decisions (planrunner/runs/decide.py) as a table: every answer and every lookup result, without a socket."""

from __future__ import annotations

import pytest

from planrunner.enos import Kind
from planrunner.runs.decide import Act, Cause, Then, after_lookup, on_answer

# The answer table of docs/apply.md, first column: what each class of answer calls for.
ANSWERS = [
    (Kind.OK, Act.DONE),
    (Kind.PERMANENT, Act.REFUSE_FLOW),  # 62101/62103/62104/62105, HTTP 400/403/413
    (Kind.DUPLICATE, Act.LOOK_UP_DUPLICATE),  # 62102
    (Kind.UNKNOWN, Act.LOOK_UP),  # 62109 on trigger, read timeout, reset, 500/502/504, bad body
    (Kind.RETRYABLE, Act.RETRY),  # 429, 503, refused, connect timeout
    (Kind.AUTH, Act.STOP),  # 401, token error, auth failure in a 200 body (after one refresh)
    (Kind.FATAL, Act.STOP),  # TLS
    (Kind.STOPPED, Act.NOT_SENT),  # quota exhausted / gateway refuses us: never sent, run stops
]


@pytest.mark.parametrize(("kind", "act"), ANSWERS)
def test_every_answer_class_has_its_action(kind: Kind, act: Act) -> None:
    assert on_answer(kind) is act


def test_the_table_covers_every_answer_class() -> None:
    assert {k for k, _ in ANSWERS} == set(Kind)


# (cause, found, may_resend, retry_unknown) -> what follows.
LOOKUPS = [
    # An earlier run's open attempt (a crash): found is done, absent is sent.
    (Cause.CRASHED, True, True, False, Then.RECONCILED),
    (Cause.CRASHED, False, True, False, Then.RESEND),
    (Cause.CRASHED, None, True, False, Then.KEEP_UNKNOWN),
    (Cause.CRASHED, None, True, True, Then.RESEND),  # --retry-unknown
    # This run's unknown outcome.
    (Cause.UNKNOWN, True, True, False, Then.RECONCILED),
    (Cause.UNKNOWN, False, True, False, Then.RESEND),
    (Cause.UNKNOWN, False, False, False, Then.FAIL),  # re-sends spent
    (Cause.UNKNOWN, None, True, False, Then.KEEP_UNKNOWN),
    (Cause.UNKNOWN, None, True, True, Then.RESEND),
    # 62102: found is done; absent waits out the minute rule once; then failed.
    (Cause.DUPLICATE, True, True, False, Then.RECONCILED),
    (Cause.DUPLICATE, False, True, False, Then.WAIT_RESEND),
    (Cause.DUPLICATE, False, False, False, Then.WAIT_RESEND),
    (Cause.DUPLICATE, None, True, True, Then.KEEP_UNKNOWN),  # never re-sent into a 62102 blind
    (Cause.DUPLICATE_AGAIN, True, True, False, Then.RECONCILED),
    (Cause.DUPLICATE_AGAIN, False, True, False, Then.FAIL),
    (Cause.DUPLICATE_AGAIN, None, True, False, Then.KEEP_UNKNOWN),
]


@pytest.mark.parametrize(("cause", "found", "may_resend", "retry_unknown", "then"), LOOKUPS)
def test_every_lookup_result_has_its_follow_up(
    cause: Cause, found: bool | None, may_resend: bool, retry_unknown: bool, then: Then
) -> None:
    assert after_lookup(cause, found, may_resend=may_resend, retry_unknown=retry_unknown) is then


def test_only_a_lookup_that_answered_ever_leads_to_a_send() -> None:
    for cause in Cause:
        for flags in ((True, False), (False, False), (True, True), (False, True)):
            then = after_lookup(cause, None, may_resend=flags[0], retry_unknown=flags[1])
            assert then in (Then.KEEP_UNKNOWN, Then.RESEND)
            if then is Then.RESEND:
                assert flags[1], "only --retry-unknown sends after a failed lookup"
