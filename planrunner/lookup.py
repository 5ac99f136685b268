"""Looking entries up on the service (contract sections 5, 11 and 12) and the instance states
``status`` and ``cancel`` show (section 10).

:func:`look_up_many` finds the instances of many entries at once: per flow, Search over
windows of at most a day that cover the wanted trigger times, every page, scheduling type
0, then 2, then 1 for the entries still unmatched; Get by the recorded id only for the
entries the searches did not return; "not found" only when every search covering the entry
answered. A result matches an entry when its flowId and its trigger time, read in the
server's zone, are the entry's to the second; a result that could be the entry read in
another daylight-saving offset (or in the hour a zone repeats) is settled by a Search over
the entry's own minute, where the flowId and the seconds decide (:func:`protocol.same_second`).

:func:`find_instance` answers "is there an instance of this flow at this trigger time?" for
one entry, as apply's send path asks it: Get by the derived id (verified to the second) is a
fast path; Search over the entry's minute decides "absent". :func:`look_up` is the batch of
one. Every call goes through the client, hence through its one limiter.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, tzinfo
from typing import Any, NamedTuple

from planrunner import enos, protocol
from planrunner.errors import ServiceError
from planrunner.outcome import Entry

MAX_SEARCH_PAGES = 1000  # pages of one window and type (100,000 instances) before giving up
DAY_MS = 86_400_000
# Differences (s) between an instant and the same wall time read in another offset of a
# daylight-saving zone (half hours, up to two hours): a result this far from a wanted entry
# may be that entry.
SHIFTS = tuple(k * 1800 for k in range(-4, 5))
_DERIVED = re.compile(r"([0-9]+)-([0-9]{12})(?:[0-9]{2})?")  # {flowId}-{yyyyMMddHHmm}[ss]
ABSENT = "the service has no instance for this trigger"
STOPPED = "stopped"


class Wanted(NamedTuple):
    """One entry to look up: its flow and trigger time, and the instance id the ledger
    recorded for it (None when it recorded none)."""

    flow_id: int
    trigger_time: int
    recorded_id: str | None = None


class _SearchFailed(Exception):
    """A search page could not be read; its text says why."""


def _minute(ms: int) -> int:
    return ms - ms % protocol.MINUTE_MS


def _iid(inst: dict[str, Any]) -> str | None:
    iid = inst.get("instanceId") or inst.get("flowInstanceId")
    return iid if isinstance(iid, str) else None


def _page(client: enos.Client, flow_id: int, lo: int, hi: int, type_: int, page_no: int) -> enos.Answer:
    return client.search_instances(lo, hi, type_=type_, page_no=page_no, expression=f"{flow_id}-")


def _insts(answer: enos.Answer, client: enos.Client) -> list[dict[str, Any]]:
    """The instances of a search page, or :class:`_SearchFailed`."""
    if answer.kind is not enos.Kind.OK or not isinstance(answer.data, dict):
        raise _SearchFailed(client.clean(answer.msg) or f"code {answer.code}")
    insts = answer.data.get("flowInsts") or []
    if not isinstance(insts, list):
        raise _SearchFailed("search answer has no flowInsts list")
    return [i for i in insts if isinstance(i, dict)]


def _origin_shown(first: list[dict[str, Any]] | None, second: list[dict[str, Any]]) -> int | None:
    """Which ``pageNo`` a v2.1 service counts from, from its answers to pages 0 and 1
    (``first`` None: page 0 was refused); None while it has not shown it."""
    ids0 = {_iid(i) for i in first or []}
    ids1 = {_iid(i) for i in second}
    if first is None or (not ids0 and ids1) or (ids0 and ids0 == ids1):
        return 1  # page 0 refused, empty before a full page 1, or the same as page 1
    if ids0 and (not ids1 or not ids0 & ids1):
        return 0  # page 1 is what follows page 0
    return None


def _pages(
    client: enos.Client, flow_id: int, lo: int, hi: int, type_: int, halt: threading.Event
) -> Iterator[list[dict[str, Any]]]:
    """Every page of a Search of ``flow_id``'s instances in ``[lo, hi)`` of ``type_``, each
    instance once; :class:`_SearchFailed` when a page cannot be read. On v2.1, until the
    service has shown where its pages start, pages 0 and 1 are both read (the vendor's
    pages disagree) and the origin they show is kept on the client."""
    seen: set[str | None] = set()
    page_no = client.page_origin
    if page_no is None:
        zero = _page(client, flow_id, lo, hi, type_, 0)
        # A definite refusal of page 0 shows where the pages start; a failure shows nothing.
        first = None if zero.kind is enos.Kind.PERMANENT else _insts(zero, client)
        second = _insts(_page(client, flow_id, lo, hi, type_, 1), client)
        shown = _origin_shown(first, second)
        if shown is not None:
            client.page_origin = shown
        pages = [second] if shown == 1 else [first or [], second]
        page_no, last = 2, second
    else:
        last = _insts(_page(client, flow_id, lo, hi, type_, page_no), client)
        pages, page_no = [last], page_no + 1
    for _ in range(MAX_SEARCH_PAGES):
        for insts in pages:
            fresh = [i for i in insts if _iid(i) not in seen or _iid(i) is None]
            seen.update(_iid(i) for i in fresh)
            yield fresh
        if len(last) < protocol.PAGE_SIZE:
            return
        if halt.is_set():
            raise _SearchFailed(STOPPED)
        last = _insts(_page(client, flow_id, lo, hi, type_, page_no), client)
        if last and all(_iid(i) in seen for i in last):
            raise _SearchFailed(f"the service answers page {page_no} with instances already read")
        pages, page_no = [last], page_no + 1
    raise _SearchFailed(f"more than {MAX_SEARCH_PAGES} pages of {protocol.PAGE_SIZE}")


def _search_minute(
    client: enos.Client, flow_id: int, trigger_time: int, halt: threading.Event
) -> tuple[dict[str, Any] | None, str]:
    """(the instance, "") or (None, why the search failed) or (None, "") when absent: a
    Search of the trigger time's minute, types 0, 2, 1; the flowId and the seconds decide."""
    minute = _minute(trigger_time)
    why = ""
    for type_ in protocol.SEARCH_TYPES:
        try:
            for insts in _pages(client, flow_id, minute, minute + protocol.MINUTE_MS, type_, halt):
                for inst in insts:
                    if protocol.same_second(inst, flow_id, trigger_time):
                        return inst, ""
        except _SearchFailed as e:
            why = why or str(e)
    return None, why


def find_instance(client: enos.Client, flow_id: int, trigger_time: int) -> enos.Lookup:
    """Does the service have an instance of ``flow_id`` triggered at ``trigger_time``?

    Get by the derived id is only a fast path whose answer is verified to the second in
    the server's zone (its digits are UTC, unless the client's :attr:`id_zone` was
    established as the server's); Search over the entry's minute decides "absent", and
    only when every search answered.
    """
    try:
        zone = client.server_zone()
    except ServiceError as e:
        return enos.Lookup(None, None, str(e))
    derived = protocol.instance_id(flow_id, trigger_time, zone if client.id_zone == "server" else UTC)
    got = client.get_instance(derived)
    if got.kind in (enos.Kind.AUTH, enos.Kind.FATAL, enos.Kind.STOPPED):
        return enos.Lookup(None, None, f"get flow instance: {client.clean(got.msg)}")
    if (
        got.kind is enos.Kind.OK
        and isinstance(got.data, dict)
        and protocol.same_trigger(got.data, flow_id, trigger_time, zone, ambiguous=False)
    ):
        return enos.Lookup(True, got.data.get("instanceId") or derived)
    # Anything else ("not found" as 62102, null or {}, a different instance, or a time in
    # the hour a DST zone repeats) falls through to Search: only Search decides "absent".
    inst, why = _search_minute(client, flow_id, trigger_time, threading.Event())
    if inst is not None:
        return enos.Lookup(True, _iid(inst) or protocol.instance_id(flow_id, trigger_time))
    if why:
        return enos.Lookup(None, None, f"search flow instances: {why}")
    return enos.Lookup(False, None)


# planrunner's own states, lower case to tell them from the service's statuses.
NOT_TRIGGERED = "not-triggered"  # the ledger does not say the entry was triggered
NOT_FOUND = "not-found"  # done in the ledger, but the service has no such instance
LOOKUP_FAILED = "lookup-failed"  # the service could not be asked (network, auth, errors)
NOT_LOOKED_UP = "done"  # --sim: done in the ledger; the embedded simulator is gone

FAILED_TASK_NAMES = frozenset(protocol.STATUS_NAMES[s] for s in protocol.FAILED_STATUSES)
FAILED_NAMES = frozenset(
    protocol.STATUS_NAMES[s]
    for s in (protocol.FAIL, protocol.INTERNAL_ERROR, protocol.TIMEOUT, protocol.CANCEL)
)
SUCCEEDED_NAMES = frozenset(protocol.STATUS_NAMES[s] for s in protocol.SUCCEEDED_STATUSES)
FINAL_NAMES = frozenset(protocol.STATUS_NAMES[s] for s in protocol.FINAL_STATUSES)
CANCELLABLE_NAMES = frozenset(protocol.STATUS_NAMES[s] for s in protocol.CANCELLABLE_STATUSES)
# Order in counts: the service's statuses as a run moves, then planrunner's states.
ORDER = (
    "SUCCESS",
    "SKIP",
    "FAIL",
    "INTERNAL_ERROR",
    "TIMEOUT",
    "CANCEL",
    "INIT",
    "READY",
    "WAIT",
    "RUNNING",
    "SUSPEND",
    "RERUN",
    NOT_FOUND,
    LOOKUP_FAILED,
    NOT_LOOKED_UP,
    NOT_TRIGGERED,
)


@dataclass(frozen=True, slots=True)
class Seen:
    """What is known of one entry's instance."""

    state: str  # a service status name (``SUCCESS``) or one of planrunner's states above
    flow_instance_id: str | None = None
    start: int | None = None  # epoch ms, from the service's startTime in its zone
    end: int | None = None
    reason: str = ""
    failed_task: str | None = None  # the name of the task that failed (FAIL, INTERNAL_ERROR, TIMEOUT)
    failed_task_id: str | None = None  # its task_inst_id (for Get Task Instance Log)

    @property
    def final(self) -> bool:
        """Whether watching it again can change nothing (lookup failures are retried)."""
        return self.state in FINAL_NAMES or self.state in (NOT_FOUND, NOT_TRIGGERED, NOT_LOOKED_UP)

    @property
    def failed(self) -> bool:
        """Ended FAIL, INTERNAL_ERROR, TIMEOUT or CANCEL."""
        return self.state in FAILED_NAMES

    @property
    def cancellable(self) -> bool:
        """INIT, WAIT, READY, RUNNING or SUSPEND."""
        return self.state in CANCELLABLE_NAMES

    @property
    def seconds(self) -> float | None:
        """How long it ran, when the service gave both its start and its end."""
        if self.start is None or self.end is None:
            return None
        return max(0, self.end - self.start) / 1000


def status_name(code: object) -> str:
    """The name of an instance status code; an unknown code is ``STATUS_<code>`` (not final)."""
    try:
        value = int(str(code))
    except ValueError:
        return f"STATUS_{code}"
    return protocol.STATUS_NAMES.get(value, f"STATUS_{value}")


def seen_from(inst: dict[str, Any], fallback_id: str, zone: tzinfo) -> Seen:
    """A :class:`Seen` from a FlowInstance answer (its failed task, when it names one)."""
    iid = inst.get("instanceId") or inst.get("flowInstanceId") or fallback_id
    task = protocol.failed_task(inst)
    return Seen(
        status_name(inst.get("status")),
        str(iid),
        protocol.parse_time(inst.get("startTime"), zone),
        protocol.parse_time(inst.get("endTime"), zone),
        failed_task=task[1] if task else None,
        failed_task_id=task[0] or None if task else None,
    )


def look_up(client: enos.Client, entry: Entry, recorded_id: str | None, zone: tzinfo) -> Seen:
    """The instance of one triggered entry, by its recorded id, else by :func:`find_instance`
    (one entry's lookup; many entries are looked up by :func:`look_up_many`)."""
    key = (entry.flow_id, entry.trigger_time)
    if recorded_id:
        got = client.get_instance(recorded_id)
        if got.kind in (enos.Kind.AUTH, enos.Kind.FATAL, enos.Kind.STOPPED):
            return Seen(LOOKUP_FAILED, recorded_id, reason=f"get flow instance: {got.msg}")
        if got.kind is enos.Kind.OK and isinstance(got.data, dict) and protocol.same_trigger(got.data, *key, zone):
            return seen_from(got.data, recorded_id, zone)
        # Not found by that id, or another instance: look it up as apply does.
    found = find_instance(client, *key)
    if found.found is None:
        return Seen(LOOKUP_FAILED, recorded_id, reason=found.reason)
    if not found.found or not found.flow_instance_id:
        return Seen(NOT_FOUND, recorded_id, reason=ABSENT)
    got = client.get_instance(found.flow_instance_id)
    if got.kind is enos.Kind.OK and isinstance(got.data, dict) and protocol.int_of(got.data.get("flowId")) == entry.flow_id:
        return seen_from(got.data, found.flow_instance_id, zone)
    return Seen(
        LOOKUP_FAILED,
        found.flow_instance_id,
        reason=f"found by search, but get flow instance answered: {got.msg or got.code}",
    )


def look_up_many(
    client: enos.Client, wanted: Sequence[Wanted], stop: threading.Event | None = None
) -> dict[tuple[int, int], Seen]:
    """What the service has for each wanted entry, keyed by (flow_id, trigger_time).

    ``Seen.state`` is the instance's status name, :data:`NOT_FOUND` (only when every search
    covering the entry answered, and Get by its recorded id found nothing), or
    :data:`LOOKUP_FAILED` (the reason says why; "stopped" for entries left once ``stop``
    was set). Every call goes through the client's limiter; a window's instances are read
    page by page and never held beyond it.
    """
    halt = stop or threading.Event()
    out: dict[tuple[int, int], Seen] = {}  # by (flow_id, epoch second): one instance per second
    by_flow: dict[int, dict[int, Wanted]] = {}
    for w in wanted:
        by_flow.setdefault(w.flow_id, {}).setdefault(w.trigger_time // 1000, w)
    with client.stopping(halt):
        try:
            zone = client.server_zone() if by_flow else UTC
        except ServiceError as e:
            return {(w.flow_id, w.trigger_time): _failed(w, str(e)) for w in wanted}
        for flow_id, times in by_flow.items():
            ordered = sorted(times)
            while ordered:
                start = _minute(ordered[0] * 1000)
                window = [times[t] for t in ordered if t * 1000 < start + DAY_MS]
                ordered = ordered[len(window) :]
                if halt.is_set():
                    found = {w.trigger_time // 1000: _failed(w, STOPPED) for w in window}
                else:
                    found = _Window(client, flow_id, window, zone, halt).look_up()
                out.update({(flow_id, sec): seen for sec, seen in found.items()})
    return {(w.flow_id, w.trigger_time): out[w.flow_id, w.trigger_time // 1000] for w in wanted}


def _failed(w: Wanted, why: str) -> Seen:
    return Seen(LOOKUP_FAILED, w.recorded_id, reason=why)


class _Window:
    """The wanted entries of one flow within a day, looked up together."""

    def __init__(
        self, client: enos.Client, flow_id: int, window: list[Wanted], zone: tzinfo, halt: threading.Event
    ) -> None:
        self.client, self.flow_id, self.zone, self.halt = client, flow_id, zone, halt
        self.lo = _minute(window[0].trigger_time)
        self.hi = _minute(window[-1].trigger_time) + protocol.MINUTE_MS
        self.unmatched = {w.trigger_time // 1000: w for w in window}  # by epoch second
        self.suspects: set[int] = set()  # epoch seconds a result read in another offset may be
        self.failure = ""  # why a search of the window failed (then nothing here is absent)
        self.out: dict[int, Seen] = {}

    def look_up(self) -> dict[int, Seen]:
        for type_ in protocol.SEARCH_TYPES:
            if not self.unmatched:
                break
            try:
                for insts in _pages(self.client, self.flow_id, self.lo, self.hi, type_, self.halt):
                    for inst in insts:
                        self._match(inst)
            except _SearchFailed as e:
                self.failure = self.failure or f"search flow instances: {e}"
        for second in sorted(self.suspects & self.unmatched.keys()):
            w = self.unmatched[second]
            hit, why = _search_minute(self.client, self.flow_id, w.trigger_time, self.halt)
            if hit is not None:
                self._take(second, hit)
            elif why:
                self.out[second] = _failed(w, f"search flow instances: {why}")
        for w in list(self.unmatched.values()):
            self._by_recorded_id(w)
        return self.out

    def _match(self, inst: dict[str, Any]) -> None:
        """Take ``inst`` for the entry it is, to the second; note the entries it may be."""
        if protocol.int_of(inst.get("flowId")) != self.flow_id:
            return  # the expression is a fuzzy match: others' instances come too
        seconds = [ms // 1000 for ms in protocol.parse_times(inst.get("triggerTime"), self.zone)]
        if len(seconds) == 1 and seconds[0] in self.unmatched and self._id_agrees(inst, seconds[0]):
            self._take(seconds[0], inst)
            return
        # Two readings (the hour a zone repeats), an id of another minute (a time string in
        # another daylight-saving offset than the reported one), or no wanted entry: the
        # entries it could be are settled by a search of their own minute.
        for sec in seconds:
            self.suspects.update(sec + d for d in SHIFTS if sec + d in self.unmatched)

    def _id_agrees(self, inst: dict[str, Any], second: int) -> bool:
        """Whether the instance's id, when it has the derived shape, names the minute of
        ``second`` in the id zone (UTC unless the client established the server's)."""
        m = _DERIVED.fullmatch(_iid(inst) or "")
        if m is None or int(m[1]) != self.flow_id:
            return True  # nothing to check it by
        zone = self.zone if self.client.id_zone == "server" else UTC
        return protocol.instance_id(self.flow_id, second * 1000, zone)[:-2].endswith(m[2])

    def _take(self, second: int, inst: dict[str, Any]) -> None:
        w = self.unmatched.pop(second)
        iid = _iid(inst) or protocol.instance_id(self.flow_id, w.trigger_time)
        seen = seen_from(inst, iid, self.zone)
        if seen.state in FAILED_TASK_NAMES and seen.failed_task is None and "graph" not in inst:
            got = self.client.get_instance(iid)  # a search page without graphs: ask for it
            data = got.data if got.kind is enos.Kind.OK and isinstance(got.data, dict) else {}
            task = protocol.failed_task(data)
            if task:
                seen = replace(seen, failed_task=task[1], failed_task_id=task[0] or None)
        self.out[second] = seen

    def _by_recorded_id(self, w: Wanted) -> None:
        """Get by the recorded id for an entry no search returned; else absent or failed."""
        second = w.trigger_time // 1000
        del self.unmatched[second]
        failed = self.out.get(second)
        why = failed.reason if failed is not None else self.failure
        if w.recorded_id and not self.halt.is_set():
            got = self.client.get_instance(w.recorded_id)
            if (
                got.kind is enos.Kind.OK
                and isinstance(got.data, dict)
                and protocol.same_trigger(got.data, self.flow_id, w.trigger_time, self.zone)
            ):
                self.out[second] = seen_from(got.data, w.recorded_id, self.zone)
                return
        if self.halt.is_set() and not why:
            why = STOPPED
        self.out[second] = _failed(w, why) if why else Seen(NOT_FOUND, w.recorded_id, reason=ABSENT)


def counts(states: Iterable[str]) -> dict[str, int]:
    """Counts by state, in :data:`ORDER` (unknown codes last)."""
    raw: dict[str, int] = {}
    for s in states:
        raw[s] = raw.get(s, 0) + 1
    ordered = {s: raw[s] for s in ORDER if s in raw}
    ordered.update({s: n for s, n in sorted(raw.items()) if s not in ordered})
    return ordered


def minutes_taken(
    client: enos.Client, flow_id: int, lo: int, hi: int, stop: threading.Event | None = None
) -> set[int] | str:
    """The minutes (their starts, epoch ms) in ``[lo, hi)`` that hold an instance of
    ``flow_id``, of any scheduling type (a Search of the window, every page, types 0, 2, 1),
    or why a search failed: a rerun's free minute (DESIGN 13) is one no instance holds."""
    halt = stop or threading.Event()
    taken: set[int] = set()
    with client.stopping(halt):
        try:
            zone = client.server_zone()
            for type_ in protocol.SEARCH_TYPES:
                for insts in _pages(client, flow_id, lo, hi, type_, halt):
                    for inst in insts:
                        if protocol.int_of(inst.get("flowId")) == flow_id:
                            # Both readings of a wall time a daylight-saving zone repeats.
                            taken.update(_minute(at) for at in protocol.parse_times(inst.get("triggerTime"), zone))
        except (_SearchFailed, ServiceError) as e:
            return str(e) or "search failed"
    return taken
