"""Reruns of failed entries (DESIGN 13): which entries get another round, and when.

Pure functions over a folded :class:`~planrunner.ledger.KeyState` and what a lookup saw;
the engines (``apply``, ``plan --refresh``) ask them and write the rounds through
:class:`~planrunner.ledger.Send`.

- :func:`rerun_due`: whether an entry is a rerun candidate;
- :func:`free_minute`: the minute a rerun is sent at (the service keeps one instance per
  flow and minute; the flow must see the same date and hour);
- :func:`next_round`: both together, as the :class:`~planrunner.ledger.Send` to make;
- :func:`newest_send`: the :class:`~planrunner.ledger.Send` of the key's newest round
  (to look it up, send a failed round again, reconcile or cancel it);
- :class:`Reruns`: apply's side, finding the failed instances (batched lookups) and the
  rounds to send, each run and on every poll with ``--wait``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from planrunner import enos, log, protocol
from planrunner.errors import ServiceError
from planrunner.ledger import DONE, Folded, KeyState, Ref, Send
from planrunner.lookup import LOOKUP_FAILED, Wanted, look_up_many, minutes_taken
from planrunner.outcome import Entry
from planrunner.runs.pace import LookUpMany, poll_delay

if TYPE_CHECKING:
    from planrunner.plan import Flow
    from planrunner.runs.flow import FlowWork

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
# The instance states a rerun follows (never CANCEL: cancelling is deliberate).
RERUN_AFTER = frozenset(
    protocol.STATUS_NAMES[s] for s in (protocol.FAIL, protocol.TIMEOUT, protocol.INTERNAL_ERROR)
)


def limits(flows: Iterable[Flow], option: int | None) -> dict[int, int]:
    """``rerunFailed`` per flowId: the option when given, else the plan's (the flow's over
    the top level, merged by the plan; the most of a flowId's plan flows)."""
    out: dict[int, int] = {}
    for f in flows:
        out[f.flow_id] = max(out.get(f.flow_id, 0), f.rerun_failed if option is None else option)
    return out


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


# -- apply's side: finding failed instances and the rounds to send -------------------------------


class Reruns:
    """One apply run's reruns (DESIGN 13), flow by flow.

    :meth:`begin` looks up, in one batch per flow (:func:`lookup.look_up_many`, at each
    key's newest round's sent time), the done keys that may still be rerun; each whose
    instance ended FAIL, TIMEOUT or INTERNAL_ERROR gets its next round (:meth:`due`), at the
    first free minute of its hour: free of the plan's entries of the flow, of the ledger's
    rerun rounds, of this run's reruns and of every instance a Search of that hour finds
    (one Search per flow and hour). With ``wait`` (``apply --wait``), instances not final
    yet are watched (:attr:`FlowWork.watched`) and looked at again on every poll
    (:meth:`poll`), and so is each rerun this run makes while rounds are left.
    """

    def __init__(
        self,
        client: enos.Client,
        folded: Folded,
        allowed: Callable[[int], int],
        many: LookUpMany,
        stop: threading.Event,
        *,
        parameters: Callable[[Entry], Mapping[str, str] | None] | None = None,
        wait: bool = False,
        interval: float | None = None,
    ) -> None:
        self.client = client
        self.folded = folded
        self.allowed = allowed  # flowId -> rerunFailed in force (the option over the plan)
        self.many = many
        self.stop = stop
        self.parameters = parameters
        self.wait = wait
        self.interval = interval
        self._due: dict[str, Send | str] = {}  # key -> the round to send, or why none can be
        self._current: dict[str, Send] = {}  # key -> the rerun this run made (its newest round)
        self._hours: dict[tuple[int, int], set[int] | str] = {}  # (flowId, hour start) -> minutes taken
        self._made: dict[int, set[int]] = {}  # flowId -> minutes of this run's reruns
        self._lock = threading.Lock()

    def begin(self, work: FlowWork) -> None:
        """Once per flow and run: look up its done keys that may be rerun."""
        limit = self.allowed(work.flow_id)
        if limit <= 0:
            return
        watch: dict[str, tuple[Entry, Send]] = {}
        for e in work.entries:
            if self.folded.status(e.key) != DONE:
                continue
            state = self.folded.state(e.key)
            if state.round < limit and not any(r.cancelled for r in state.rounds.values()):
                watch[e.key] = (e, newest_send(e, state))
        self._look(work, watch, limit)

    def poll(self, work: FlowWork) -> None:
        """With ``--wait``, once the flow's entries are through: look again, after the
        poll delay, at the watched instances that were not final; a failed one is queued
        again (``work.entries``) with its next round."""
        now = time.monotonic()
        if now < work.not_before:
            return
        watch = {k: (e, self._current.get(k) or newest_send(e, self.folded.state(k))) for k, e in work.watched.items()}
        work.watched.clear()
        self._look(work, watch, self.allowed(work.flow_id), requeue=True)
        if work.watched:
            work.not_before = time.monotonic() + poll_delay(work.polls, self.interval)
            work.polls += 1

    def _look(
        self,
        work: FlowWork,
        watch: Mapping[str, tuple[Entry, Send]],
        limit: int,
        requeue: bool = False,
    ) -> None:
        """Look the instances of ``watch`` up (one batch); a failed one's next round is due
        (its entry queued again when ``requeue``: the flow's loop went past it)."""
        if not watch or self.stop.is_set():
            return
        wanted = [
            Wanted(e.flow_id, s.sends_at, self.folded.instance_id(e.key) if s.key not in self._current else None)
            for e, s in watch.values()
        ]
        seen = self.many(self.client, wanted, self.stop)
        for key, (e, s) in watch.items():
            got = seen.get((e.flow_id, s.sends_at))
            state = None if got is None else got.state
            if state in RERUN_AFTER and s.round < limit:
                self._due[key] = self.next_for(e, s, work)
                if requeue:
                    work.entries.append(e)  # the flow's loop went past it: it comes again
            elif self.wait and (got is None or not got.final):
                work.watched[key] = e
            elif got is None or got.state == LOOKUP_FAILED:
                log.get("apply").warning(
                    "could not look up the instance: not rerun this run (apply again)",
                    key=key,
                    reason=got.reason if got is not None else "not looked up",
                )

    def next_for(self, e: Entry, s: Send, work: FlowWork) -> Send | str:
        """The round after ``s`` at its hour's first free minute (taken from then on, so two
        reruns of one flow never share a minute), or why there is none."""
        try:
            zone = self.client.server_zone()
        except ServiceError as err:
            return f"cannot rerun: {err}"
        last = s.sends_at
        minute = last - last % MINUTE_MS
        hour_start = minute - _wall(last, zone)[4] * MINUTE_MS
        taken = self._taken(work, hour_start)
        if isinstance(taken, str):
            return f"cannot rerun now: the search of {hour_text(last, zone)} for free minutes failed: {taken}"
        at = free_minute(e.trigger_time, last, taken, zone)
        if at is None:
            return f"cannot rerun: no free minute in {hour_text(last, zone)}"
        with self._lock:
            self._made.setdefault(e.flow_id, set()).add(at)
        params = self.parameters(e) if self.parameters is not None else None
        return Send(e, s.round + 1, at, params)

    def _taken(self, work: FlowWork, hour_start: int) -> set[int] | str:
        """The minutes of the hour a rerun of the flow may not use (searched once per hour)."""
        fid = work.flow_id
        found = self._hours.get((fid, hour_start))
        if found is None:
            found = minutes_taken(self.client, fid, hour_start, hour_start + HOUR_MS, self.stop)
            self._hours[fid, hour_start] = found
        if isinstance(found, str):
            return found
        org = work.entries[0].org_id if work.entries else ""
        with self._lock:
            made = set(self._made.get(fid, ()))
        return found | made | {e.trigger_time for e in work.entries} | self.folded.sent_times(org, fid)

    def due(self, e: Entry) -> Send | str | None:
        """The rerun round to send for a done entry, why it cannot be rerun, or None."""
        return self._due.get(e.key)

    def made(self, work: FlowWork, e: Entry, s: Send) -> None:
        """A rerun round was created (or found made): its minute is taken from now on, and
        with ``--wait`` its instance is watched while rounds are left. A first instance
        (round 0) made by this run is watched too, with ``--wait`` and rounds allowed."""
        if not s.round and not (self.wait and self.allowed(e.flow_id) > 0):
            return
        self._due.pop(e.key, None)
        self._current[e.key] = s
        with self._lock:
            self._made.setdefault(e.flow_id, set()).add(s.sends_at)
        if self.wait and s.round < self.allowed(e.flow_id):
            work.watched[e.key] = e


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What ``plan --refresh`` learned of one done entry: its newest round's instance and
    whether the next apply reruns it (``rerun``, the round it would send) or cannot (``why``)."""

    instance: str  # the instance's status name, or lookup's not-found / lookup-failed
    flow_instance_id: str | None
    round: int  # the newest round (0: the entry's first instance)
    rerun: Send | None = None
    why: str | None = None


def refresh(
    client: enos.Client,
    entries: Sequence[Entry],
    folded: Folded,
    allowed: Mapping[int, int],
    *,
    stop: threading.Event | None = None,
    many: LookUpMany = look_up_many,
) -> dict[str, Refreshed]:
    """Read-only: each done entry's newest instance (one batch per flow, at each round's
    sentTime), and the rerun the next apply would make of it (the same rule as apply's,
    :class:`Reruns`); nothing is written, nothing is triggered."""
    from planrunner.runs.flow import FlowWork

    halt = stop or threading.Event()
    reruns = Reruns(client, folded, lambda fid: allowed.get(fid, 0), many, halt)
    groups: dict[int, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.flow_id, []).append(e)
    out: dict[str, Refreshed] = {}
    for fid, group in groups.items():
        work, limit = FlowWork(group), allowed.get(fid, 0)
        done = [(e, folded.state(e.key)) for e in group if folded.is_done(e.key)]
        sends = {e.key: newest_send(e, st) for e, st in done}
        wanted = [Wanted(fid, sends[e.key].sends_at, folded.instance_id(e.key)) for e, _ in done]
        seen = many(client, wanted, halt) if wanted else {}
        for e, st in done:
            s = sends[e.key]
            got = seen.get((fid, s.sends_at))
            name = got.state if got is not None else LOOKUP_FAILED
            iid = got.flow_instance_id if got is not None else None
            due: Send | str | None = None
            if folded.status(e.key) == DONE and rerun_due(st, name, limit):
                due = reruns.next_for(e, s, work)
            out[e.key] = Refreshed(
                name, iid, s.round, due if isinstance(due, Send) else None, due if isinstance(due, str) else None
            )
    return out
