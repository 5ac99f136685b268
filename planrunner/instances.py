"""Looking up the instances of done entries, concurrently and rate-capped (status, cancel).

One lookup per entry: Get Flow Instance by the ``flowInstanceId`` the ledger recorded,
taken only when its flowId and trigger time match the entry (as :func:`protocol.same_trigger`
checks); otherwise :meth:`enos.Client.find_instance`, then Get of the id it found. What
comes back is a :class:`Seen`: the service's status, or one of planrunner's own states
(lower case) when there is no status to show.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from planrunner import enos, protocol
from planrunner.outcome import Entry
from planrunner.plan import Plan
from planrunner.rate import RateLimiter

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
    found = client.find_instance(entry.flow_id, entry.trigger_time)
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


def look_up_all(
    client: enos.Client,
    items: Sequence[tuple[Entry, str | None]],
    zone: tzinfo,
    *,
    concurrency: int,
    rate: float | None,
    stop: threading.Event | None = None,
    on_seen: Callable[[Entry, Seen], None] | None = None,
) -> dict[str, Seen]:
    """Look up every (entry, recorded id) with ``concurrency`` threads, at most ``rate``/s.

    Entries left when ``stop`` is set are :data:`LOOKUP_FAILED` ("stopped").
    """
    stop = stop or threading.Event()
    limiter = RateLimiter(rate)
    out: dict[str, Seen] = {}
    lock = threading.Lock()

    def one(item: tuple[Entry, str | None]) -> None:
        entry, recorded = item
        if limiter.wait(stop) is None:
            seen = Seen(LOOKUP_FAILED, recorded, reason="stopped")
        else:
            try:
                seen = look_up(client, entry, recorded, zone)
            except Exception as e:  # one lookup's surprise must not lose the others
                seen = Seen(LOOKUP_FAILED, recorded, reason=f"{type(e).__name__}: {e}")
        with lock:
            out[entry.key] = seen
        if on_seen is not None:
            on_seen(entry, seen)

    if not items:
        return out
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items))) as pool:
        for f in [pool.submit(one, item) for item in items]:
            f.result()
    return out


# -- building a client from a plan ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A client for the plan's target, and how to name the gateway."""

    client: enos.Client
    where: str  # scheme://host[:port], for output
    gateway_id: str  # what ledger records carry in ``gateway``


def connect(plan: Plan, gateway: str | None) -> Target:
    """The plan's client: ``--gateway`` or ``target.gateway``, credentials from the environment."""
    target = plan.target
    url = enos.check_gateway(gateway or target.gateway)
    zone = protocol.server_zone(target.server_timezone) if target.server_timezone else None
    where = shown_gateway(plan, gateway, url)
    client = enos.Client(
        url,
        target.org_id,
        target.user_id,
        enos.Credentials.from_env(),
        api=protocol.api(target.api),
        server_zone=zone,
        shown=where,
    )
    return Target(client, where, protocol.origin(url))


def shown_gateway(plan: Plan, override: str | None, url: str) -> str:
    """How output and logs name the gateway: ``--gateway`` as given, else the plan's
    target.gateway as written when it holds ``${VAR}`` (never the expanded value)."""
    written = None if override else plan.raw_target.get("gateway")
    return protocol.shown_gateway(written if isinstance(written, str) else None, url)


def counts(states: Iterable[str]) -> dict[str, int]:
    """Counts by state, in :data:`ORDER` (unknown codes last)."""
    raw: dict[str, int] = {}
    for s in states:
        raw[s] = raw.get(s, 0) + 1
    ordered = {s: raw[s] for s in ORDER if s in raw}
    ordered.update({s: n for s, n in sorted(raw.items()) if s not in ordered})
    return ordered


def duration(seconds: float | None) -> str:
    """``12.3 s``, ``4:05`` or ``1:02:03``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
