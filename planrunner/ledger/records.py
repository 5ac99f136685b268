"""The ledger's record format (DESIGN 4): one JSON object per record, the common fields first.

- the constructors, one per event (``intent`` ... ``cancelled``), and :func:`encode`;
- :func:`validate`: the one rule for a valid record, used by the fold of every backend,
  by ``ledger verify``, ``ledger import`` and the PostgreSQL backend;
- :func:`identity`: what makes two records the same (idempotent import, compaction);
- :class:`Send`: what one attempt is about when it is a rerun round or carries parameters.

Rerun rounds (DESIGN 13): every record of a rerun attempt carries ``round`` (1, 2, ...;
absent means 0, the entry's first instance) and ``sentTime`` (the trigger time actually
sent, epoch ms). An intent carries the ``parameters`` it sends, and the record that settles
the attempt (``triggered``, ``reconciled`` with ``found: true``) repeats them, so a done
key's parameters are read from the one record the fold (and compaction) keeps.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from planrunner import times
from planrunner.errors import LedgerError

EVENTS = ("intent", "triggered", "failed", "unknown", "reconciled", "aborted", "cancelled")
_REQUIRED = ("v", "event", "key", "flowId", "orgId", "triggerTime", "attempt", "at")
SIM_GATEWAY = "sim"  # the ``gateway`` of records written by ``--sim`` runs


class Ref(Protocol):
    """What a record is about: one key (an ``Entry`` is one)."""

    @property
    def key(self) -> str: ...
    @property
    def flow_id(self) -> int: ...
    @property
    def org_id(self) -> str: ...
    @property
    def trigger_time(self) -> int: ...

@dataclass(frozen=True, slots=True)
class Send:
    """A :class:`Ref` with what one attempt sends: its ``round`` (0: the entry's first
    instance; 1, 2, ...: reruns), the trigger time it sends (``sent_time``, required from
    round 1; the entry's own for round 0) and its ``parameters`` (None: none). The record
    constructors write them: ``round`` and ``sentTime`` on every record of a rerun attempt,
    ``parameters`` on its intent and on the record that settles it."""

    ref: Ref
    round: int = 0
    sent_time: int | None = None
    parameters: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.round < 0 or (self.round > 0) is not (self.sent_time is not None):
            raise ValueError("a rerun round (>= 1) has a sent time, round 0 has none")

    @property
    def key(self) -> str:
        return self.ref.key

    @property
    def flow_id(self) -> int:
        return self.ref.flow_id

    @property
    def org_id(self) -> str:
        return self.ref.org_id

    @property
    def trigger_time(self) -> int:
        return self.ref.trigger_time

    @property
    def sends_at(self) -> int:
        """The trigger time this attempt sends (and is looked up at)."""
        return self.trigger_time if self.sent_time is None else self.sent_time


def record(
    event: str,
    key: str,
    flow_id: int,
    org_id: str,
    trigger_time: int,
    attempt: str,
    **extra: Any,
) -> dict[str, Any]:
    """A ledger record with the common fields first."""
    rec: dict[str, Any] = {
        "v": 1,
        "event": event,
        "key": key,
        "flowId": flow_id,
        "orgId": org_id,
        "triggerTime": trigger_time,
        "attempt": attempt,
        "at": times.format_utc(time.time_ns() // 1_000_000),
    }
    rec.update(extra)
    return rec


# One constructor per event (docs/apply.md's table); ``record`` writes the common fields.


def _rec(
    event: str, ref: Ref, attempt: str, gateway: str, *, carries: bool = False, **extra: Any
) -> dict[str, Any]:
    """A record of ``ref``; a :class:`Send` adds its round and sent time, and its parameters
    where the record ``carries`` them (intents and settling records)."""
    rec = record(
        event, ref.key, ref.flow_id, ref.org_id, ref.trigger_time, attempt, gateway=gateway, **extra
    )
    if isinstance(ref, Send):
        if ref.round:
            rec["round"], rec["sentTime"] = ref.round, ref.sent_time
        if carries and ref.parameters is not None:
            rec["parameters"] = dict(ref.parameters)
    return rec


def intent(ref: Ref, attempt: str, *, gateway: str, flow: str, run: str) -> dict[str, Any]:
    """Written and made durable before the request is sent."""
    return _rec("intent", ref, attempt, gateway, carries=True, flow=flow, run=run)


def triggered(ref: Ref, attempt: str, *, gateway: str, flow_instance_id: str | None) -> dict[str, Any]:
    """The service answered success."""
    return _rec("triggered", ref, attempt, gateway, carries=True, flowInstanceId=flow_instance_id)


def failed(ref: Ref, attempt: str, *, gateway: str, code: int | None, msg: str) -> dict[str, Any]:
    """The service answered an error; retries are spent."""
    return _rec("failed", ref, attempt, gateway, code=code, msg=msg)


def unknown(ref: Ref, attempt: str, *, gateway: str, reason: str) -> dict[str, Any]:
    """No definite answer: the request may have been acted on."""
    return _rec("unknown", ref, attempt, gateway, reason=reason)


def reconciled(
    ref: Ref, attempt: str, *, gateway: str, found: bool, flow_instance_id: str | None
) -> dict[str, Any]:
    """The attempt was looked up on the service."""
    return _rec(
        "reconciled", ref, attempt, gateway, carries=found, found=found, flowInstanceId=flow_instance_id
    )


def aborted(ref: Ref, attempt: str, *, gateway: str, reason: str) -> dict[str, Any]:
    """The run stopped after the intent and before the request left."""
    return _rec("aborted", ref, attempt, gateway, reason=reason)


def cancelled(ref: Ref, attempt: str, *, gateway: str, flow_instance_id: str) -> dict[str, Any]:
    """``planrunner cancel`` cancelled the key's instance (a :class:`Send` of the round it
    belongs to: the newest round's)."""
    return _rec("cancelled", ref, attempt, gateway, flowInstanceId=flow_instance_id)


def encode(records: Iterable[dict[str, Any]]) -> bytes:
    """Records as compact UTF-8 JSON lines, each ending in a newline."""
    return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)


def identity(rec: dict[str, Any]) -> bytes:
    """A record's identity: its canonical JSON (sorted keys). Two records are the same record
    exactly when their identities are equal; backends store a digest of it."""
    return orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)


_REQUIRED_SET = frozenset(_REQUIRED)
_EVENT_SET = frozenset(EVENTS)
# The common fields' types (``v`` and ``event`` are checked on their own).
_FIELD_TYPES = {
    "key": str,
    "flowId": int,
    "orgId": str,
    "triggerTime": int,
    "attempt": str,
    "at": str,
}
# Extra fields each event must carry, with the types they may have.
_EXTRAS: dict[str, dict[str, tuple[type, ...]]] = {
    "intent": {"flow": (str,), "run": (str,)},
    "triggered": {"flowInstanceId": (str, type(None))},
    "failed": {"code": (int, type(None)), "msg": (str,)},
    "unknown": {"reason": (str,)},
    "reconciled": {"found": (bool,), "flowInstanceId": (str, type(None))},
    "aborted": {"reason": (str,)},
    "cancelled": {"flowInstanceId": (str,)},
}
UNSUPPORTED = "unsupported"  # how :func:`validate` starts for a record of another version
# Fields the fold reads when present (rerun rounds, parameters): checked with the common ones.
ROUND_FIELDS = ("round", "sentTime", "parameters")


def round_problem(rec: dict[str, Any]) -> str | None:
    """What is wrong with a record's ``round``, ``sentTime`` and ``parameters``, or None."""
    if "round" in rec:
        rnd = rec["round"]
        if type(rnd) is not int or rnd < 1:
            return f'"round" must be an integer >= 1 (absent for the first instance), not {rnd!r}'[:200]
        if type(rec.get("sentTime")) is not int:
            what = type(rec["sentTime"]).__name__ if "sentTime" in rec else "missing"
            return f'"sentTime" of a rerun record is {what}, not int'
    elif "sentTime" in rec:
        return '"sentTime" without "round" (only rerun records carry it)'
    if "parameters" in rec:
        params = rec["parameters"]
        if not strings(params):
            return '"parameters" must be an object of strings'
    return None


def strings(params: object) -> bool:
    """Whether ``params`` is a dict of strings (JSON object keys are strings already, and
    ``str.join`` checks the values at C speed: this runs for every record with parameters)."""
    if type(params) is not dict:
        return False
    try:
        "".join(params.values())
    except TypeError:
        return False
    return True


def validate(rec: Any, *, full: bool = True) -> str | None:
    """What is wrong with one decoded record, or None: the one definition of a valid record.

    The rule has two levels. The common fields (present, of their types, a known version
    and event) are what the fold, ``import`` and ``log`` rely on and refuse without
    (``full=False``, :func:`check`), with ``round``, ``sentTime`` and ``parameters`` where
    present (they decide a key's state); ``ledger verify`` also checks the rest (``full``): the
    key against orgId/flowId/triggerTime, ``at`` as an RFC 3339 time, the gateway, and each
    event's extra fields. Checking those on every record would cost the fold of a 10^6-record
    ledger several seconds, and the fold reads them defensively anyway (a flowInstanceId that
    is not a string counts as none; only ``found: true`` settles).
    """
    if type(rec) is not dict:
        return "not a record object"
    if not rec.keys() >= _REQUIRED_SET:
        return f"missing fields: {', '.join(f for f in _REQUIRED if f not in rec)}"
    if type(rec["v"]) is not int or type(rec["event"]) is not str:
        return '"v" must be the integer 1 and "event" a string'
    if rec["v"] != 1 or rec["event"] not in _EVENT_SET:
        return f"{UNSUPPORTED} record (v={rec['v']!r}, event={rec['event']!r})"
    for name, kind in _FIELD_TYPES.items():
        if type(rec[name]) is not kind:
            return f'"{name}" is {type(rec[name]).__name__}, not {kind.__name__}'
    if "round" in rec or "sentTime" in rec or "parameters" in rec:
        why = round_problem(rec)
        if why is not None:
            return why
    if not full:
        return None
    if rec["key"] != f"{rec['orgId']}/{rec['flowId']}/{rec['triggerTime']}":
        return f'"key" {rec["key"]!r} does not match orgId/flowId/triggerTime'
    try:
        datetime.fromisoformat(rec["at"])
    except ValueError:
        return f'"at" {rec["at"]!r} is not an RFC 3339 time'
    gateway = rec.get("gateway")
    if gateway is not None and type(gateway) is not str:
        return '"gateway" is not a string'
    for name, kinds in _EXTRAS[rec["event"]].items():
        if name not in rec:
            return f'{rec["event"]} record without "{name}"'
        if type(rec[name]) not in kinds:
            return f'"{name}" of a {rec["event"]} record is {type(rec[name]).__name__}'
    return None


def refusal(where: str, why: str) -> LedgerError:
    """The error for a record :func:`validate` rejects, at ``where`` (``path:line``)."""
    if why.startswith(UNSUPPORTED):
        return LedgerError(f"{where}: {why.replace(UNSUPPORTED, 'unsupported ledger', 1)}")
    return LedgerError(f"{where}: corrupt ledger line ({why}); refusing to guess")


def check(where: str, rec: Any) -> dict[str, Any]:
    """``rec`` when :func:`validate` accepts its common fields, else :func:`refusal` (exit 3)."""
    why = validate(rec, full=False)
    if why is not None:
        raise refusal(where, why)
    return rec  # type: ignore[no-any-return]
