"""Reruns of failed entries (DESIGN 13): which entries get another round, and when.

Pure functions over a folded :class:`~planrunner.ledger.KeyState` and what a lookup saw;
the engines (``apply``, ``plan --refresh``) ask them and write the rounds through
:class:`~planrunner.ledger.Send`.

- :func:`rerun_due`: whether an entry is a rerun candidate;
- :func:`free_minute`: the minute a rerun is sent at (the service keeps one instance per
  flow and minute; the flow must see the same date and hour);
- :func:`next_round`: both together, as the :class:`~planrunner.ledger.Send` to make;
- :func:`newest_send`: the :class:`~planrunner.ledger.Send` of the key's newest round
  (to look it up, send a failed round again, reconcile or cancel it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, tzinfo

from planrunner import protocol
from planrunner.ledger import KeyState, Ref, Send

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
# The instance states a rerun follows (never CANCEL: cancelling is deliberate).
RERUN_AFTER = frozenset(
    protocol.STATUS_NAMES[s] for s in (protocol.FAIL, protocol.TIMEOUT, protocol.INTERNAL_ERROR)
)


def rerun_due(state: KeyState, instance: str | None, rerun_failed: int) -> bool:
    """Whether an entry gets another round: its newest round is done, its instance
    (``instance``, the looked-up status name) ended FAIL, TIMEOUT or INTERNAL_ERROR, fewer
    than ``rerun_failed`` reruns were made, and no round of it was ever cancelled."""
    if rerun_failed <= 0 or instance not in RERUN_AFTER or not state.done:
        return False
    if any(r.cancelled for r in state.rounds.values()):
        return False
    return state.round < rerun_failed


def _wall(at: int, zone: tzinfo) -> tuple[int, int, int, int, int]:
    """The server-zone wall-clock minute of an instant: what an instance id is made of."""
    local = datetime.fromtimestamp(at // 1000, zone)
    return (local.year, local.month, local.day, local.hour, local.minute)


def free_minute(
    trigger_time: int, last_sent: int, taken: Collection[int], server_zone: tzinfo
) -> int | None:
    """The first minute after ``last_sent``'s, within ``last_sent``'s server-zone hour, that
    is not in ``taken`` (minute starts, epoch ms), at the same seconds as ``trigger_time``;
    None when no minute is free.

    Within the hour means: the same local date and hour in ``server_zone`` (what a flow's
    ``${cal_dt}`` and hour read) and less than an hour after that hour's start, so where a
    DST change repeats an hour only the occurrence ``last_sent`` is in counts. The service
    names an instance by its server-zone wall-clock minute, so a taken minute also takes its
    twin in the other occurrence of a repeated hour.
    """
    seconds = trigger_time % MINUTE_MS
    last_minute = last_sent - last_sent % MINUTE_MS
    hour = _wall(last_sent, server_zone)[:4]
    hour_start = last_minute - _wall(last_sent, server_zone)[4] * MINUTE_MS
    near = [t for t in taken if abs(t - last_sent) <= 3 * HOUR_MS]
    busy = {t - t % MINUTE_MS for t in near}
    busy_walls = {_wall(t, server_zone) for t in near}
    minute = last_minute + MINUTE_MS
    while minute < hour_start + HOUR_MS:
        wall = _wall(minute + seconds, server_zone)
        if wall[:4] == hour and minute not in busy and wall not in busy_walls:
            return minute + seconds
        minute += MINUTE_MS
    return None


def hour_text(last_sent: int, server_zone: tzinfo) -> str:
    """``HH:00-HH:59`` of ``last_sent``'s server-zone hour, for "cannot rerun: no free
    minute in HH:00-HH:59"."""
    hour = datetime.fromtimestamp(last_sent / 1000, server_zone).hour
    return f"{hour:02d}:00-{hour:02d}:59"


def next_round(
    ref: Ref,
    state: KeyState,
    taken: Collection[int],
    server_zone: tzinfo,
    parameters: Mapping[str, str] | None = None,
) -> Send | str:
    """The rerun to send for a due entry (:func:`rerun_due`): round ``state.round + 1`` at
    the first free minute after its newest round's sent time; or, when none is free, the
    reason to report ("cannot rerun: no free minute in HH:00-HH:59")."""
    last = state.sent_time if state.sent_time is not None else ref.trigger_time
    minute = free_minute(ref.trigger_time, last, taken, server_zone)
    if minute is None:
        return f"cannot rerun: no free minute in {hour_text(last, server_zone)}"
    return Send(ref, state.round + 1, minute, parameters)


def newest_send(ref: Ref, state: KeyState, attempt: str | None = None) -> Send:
    """The key's newest round as a :class:`~planrunner.ledger.Send`: the round and sent time
    to look it up at and to write its records with. With ``attempt`` (one of the round's
    attempts), the parameters its intent carried (a reconciled record repeats them);
    without, the parameters of the attempt that made the round done."""
    params = state.asked(attempt) if attempt is not None else state.parameters
    if not state.round:
        return Send(ref, 0, None, params)
    sent = state.sent_at(attempt) if attempt is not None else None
    return Send(ref, state.round, sent if sent is not None else state.sent_time, params)
