"""Looking an entry up on the service (contract section 5's last paragraph) and the instance
states ``status`` and ``cancel`` show (section 10).

:func:`find_instance` answers "is there an instance of this flow at this trigger time?":
Get by the derived id is a fast path whose answer is verified; Search over the entry's
minute decides "absent". :func:`look_up` finds the instance of a done entry: Get by the
``flowInstanceId`` the ledger recorded, taken only when its flowId and trigger time match
(:func:`protocol.same_trigger`), else :func:`find_instance` and Get of the id it found. It
returns a :class:`Seen`: the service's status, or one of planrunner's own states (lower case)
when there is no status to show.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from planrunner import enos, protocol
from planrunner.errors import ServiceError
from planrunner.outcome import Entry

MAX_SEARCH_PAGES = 50


def find_instance(client: enos.Client, flow_id: int, trigger_time: int) -> enos.Lookup:
    """Does the service have an instance of ``flow_id`` triggered at ``trigger_time``?

    Found means the same flowId and the same trigger time to the second, read in the
    server's zone. Get by the derived id is only a fast path whose answer is verified;
    Search over the entry's minute decides "absent", and only when every search answered.
    """
    try:
        zone = client.server_zone()
    except ServiceError as e:
        return enos.Lookup(None, None, str(e))
    candidates = dict.fromkeys(
        (
            protocol.instance_id(flow_id, trigger_time),
            protocol.instance_id(flow_id, trigger_time, zone),
        )
    )
    for derived in candidates:
        got = client.get_instance(derived)
        if got.kind is enos.Kind.AUTH or got.kind is enos.Kind.FATAL:
            return enos.Lookup(None, None, f"get flow instance: {client.clean(got.msg)}")
        if (
            got.kind is enos.Kind.OK
            and isinstance(got.data, dict)
            and protocol.same_trigger(got.data, flow_id, trigger_time, zone, ambiguous=False)
        ):
            return enos.Lookup(True, got.data.get("instanceId") or derived)
        # Anything else ("not found" as 62102, null or {}, a different instance, or a
        # time in the hour a DST zone repeats) falls through to Search: only Search
        # decides "absent", and its window tells the repeated hour's two instants apart.
    minute = trigger_time - trigger_time % protocol.MINUTE_MS
    failures: list[str] = []
    for type_ in protocol.SEARCH_TYPES:
        found, why = _search_minute(client, flow_id, trigger_time, minute, type_, zone)
        if found is not None:
            return enos.Lookup(True, found)
        if why:
            failures.append(why)
    if failures:
        return enos.Lookup(None, None, f"search flow instances: {failures[0]}")
    return enos.Lookup(False, None)


def _search_minute(
    client: enos.Client, flow_id: int, trigger_time: int, minute: int, type_: int, zone: tzinfo
) -> tuple[str | None, str]:
    """(instance id found, "") or (None, why the search failed) or (None, "")."""
    first = client.api.first_page
    pages = [first]
    seen_any = False
    while pages:
        page_no = pages.pop(0)
        answer = client.search_instances(
            minute, minute + protocol.MINUTE_MS, type_=type_, page_no=page_no
        )
        if answer.kind is not enos.Kind.OK or not isinstance(answer.data, dict):
            return None, client.clean(answer.msg) or f"code {answer.code}"
        insts = answer.data.get("flowInsts") or []
        if not isinstance(insts, list):
            return None, "search answer has no flowInsts list"
        for inst in insts:
            if isinstance(inst, dict) and protocol.same_trigger(inst, flow_id, trigger_time, zone):
                iid = inst.get("instanceId") or inst.get("flowInstanceId")
                return iid or protocol.instance_id(flow_id, trigger_time), ""
        if insts:
            seen_any = True
        if len(insts) >= protocol.PAGE_SIZE and page_no - first + 1 < MAX_SEARCH_PAGES:
            pages.append(page_no + 1)  # a full page: there may be more
        elif not seen_any and page_no == first and first != 0:
            pages.append(0)  # samples disagree on v2.1's first page: ask page 0 too
    return None, ""


# planrunner's own states, lower case to tell them from the service's statuses.
NOT_TRIGGERED = "not-triggered"  # the ledger does not say the entry was triggered
NOT_FOUND = "not-found"  # done in the ledger, but the service has no such instance
LOOKUP_FAILED = "lookup-failed"  # the service could not be asked (network, auth, errors)
NOT_LOOKED_UP = "done"  # --sim: done in the ledger; the embedded simulator is gone

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
    """A :class:`Seen` from a FlowInstance answer."""
    iid = inst.get("instanceId") or inst.get("flowInstanceId") or fallback_id
    return Seen(
        status_name(inst.get("status")),
        str(iid),
        protocol.parse_time(inst.get("startTime"), zone),
        protocol.parse_time(inst.get("endTime"), zone),
    )


def look_up(client: enos.Client, entry: Entry, recorded_id: str | None, zone: tzinfo) -> Seen:
    """The instance of one triggered entry, by its recorded id, else by lookup."""
    if recorded_id:
        got = client.get_instance(recorded_id)
        if got.kind is enos.Kind.AUTH or got.kind is enos.Kind.FATAL:
            return Seen(LOOKUP_FAILED, recorded_id, reason=f"get flow instance: {got.msg}")
        if (
            got.kind is enos.Kind.OK
            and isinstance(got.data, dict)
            and protocol.same_trigger(got.data, entry.flow_id, entry.trigger_time, zone)
        ):
            return seen_from(got.data, recorded_id, zone)
        # Not found by that id, or another instance: look it up as apply does.
    found = find_instance(client, entry.flow_id, entry.trigger_time)
    if found.found is None:
        return Seen(LOOKUP_FAILED, recorded_id, reason=found.reason)
    if not found.found or not found.flow_instance_id:
        return Seen(NOT_FOUND, recorded_id, reason="the service has no instance for this trigger")
    got = client.get_instance(found.flow_instance_id)
    if (
        got.kind is enos.Kind.OK
        and isinstance(got.data, dict)
        and protocol.same_trigger(got.data, entry.flow_id, entry.trigger_time, zone)
    ):
        return seen_from(got.data, found.flow_instance_id, zone)
    return Seen(
        LOOKUP_FAILED,
        found.flow_instance_id,
        reason=f"found by search, but get flow instance answered: {got.msg or got.code}",
    )


def counts(states: Iterable[str]) -> dict[str, int]:
    """Counts by state, in :data:`ORDER` (unknown codes last)."""
    raw: dict[str, int] = {}
    for s in states:
        raw[s] = raw.get(s, 0) + 1
    ordered = {s: raw[s] for s in ORDER if s in raw}
    ordered.update({s: n for s, n in sorted(raw.items()) if s not in ordered})
    return ordered
