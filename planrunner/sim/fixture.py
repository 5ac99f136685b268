"""The flows fixture: a YAML list of the flows the simulator knows.

Each item follows the vendor's Flow struct: ``flowId`` (required), ``name``, ``owner``
(usernames: ``";alice;bob;"`` or a list), ``users`` (the userIds that may trigger),
``orgId``, ``locked``, ``isUserLocked``, ``tasks`` (how many; ``hasTask: false`` is the
deprecated spelling of 0), ``active``, ``type``, ``cycle``, ``freq``; and the simulator's
own ``runSeconds``, ``fails`` (a probability or a list of trigger times), ``timeouts``,
``badParameter``. Unknown keys and bad values are one-line errors naming ``file:line:col``.
"""

from __future__ import annotations

import math
from typing import Any

from planrunner.errors import UsageError
from planrunner.sim.flows import (
    CYCLES,
    DEFAULT_CYCLE,
    DEFAULT_FREQ,
    DEFAULT_RUN_SECONDS,
    MAX_TASKS,
    SCHEDULING_TYPES,
    SimFlow,
    epoch_ms,
    owner_names,
)

KEYS = (
    "flowId",
    "name",
    "owner",
    "users",
    "orgId",
    "locked",
    "isUserLocked",
    "tasks",
    "hasTask",
    "active",
    "type",
    "cycle",
    "freq",
    "runSeconds",
    "fails",
    "timeouts",
    "badParameter",
)
QUARTZ_FIELDS = 7


class _Bad(Exception):
    """A bad flow item: ``key`` names where (its value, or the key itself if ``at_key``)."""

    def __init__(self, key: str | None, message: str, *, at_key: bool = False) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.at_key = at_key


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(item: dict[str, Any], key: str, default: float, top: float = math.inf) -> float:
    value = item.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= top:
        limit = f"between 0 and {top:g}" if top < math.inf else ">= 0"
        raise _Bad(key, f"{key} must be a number {limit}, not {value!r}")
    return float(value)


def _text(item: dict[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Bad(key, f"{key} must be a string, not {value!r}")
    return str(value)


def _flag(item: dict[str, Any], key: str, default: bool) -> bool:
    value = item.get(key, default)
    if not isinstance(value, bool):
        raise _Bad(key, f"{key} must be true or false, not {value!r}")
    return value


def _int(item: dict[str, Any], key: str, default: int, allowed: range) -> int:
    value = item.get(key, default)
    if not _is_int(value) or value not in allowed:
        raise _Bad(key, f"{key} must be an integer {allowed.start}..{allowed.stop - 1}, not {value!r}")
    return int(value)


def _names(item: dict[str, Any], key: str) -> tuple[str, ...] | None:
    """A list of names (or one name); None when absent."""
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return (str(value),)
    if isinstance(value, list) and value and all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value
    ):
        return tuple(str(v) for v in value)
    raise _Bad(key, f"{key} must be a userId or a list of userIds, not {value!r}")


def _tasks(item: dict[str, Any]) -> int:
    """``tasks`` (how many), or the deprecated ``hasTask: false`` (no task)."""
    has_task = _flag(item, "hasTask", True)
    if "tasks" not in item:
        return 1 if has_task else 0
    tasks = _int(item, "tasks", 1, range(MAX_TASKS + 1))
    if not has_task and tasks:
        raise _Bad("hasTask", "hasTask: false (deprecated) contradicts tasks; keep tasks only")
    return tasks


def _fails(item: dict[str, Any]) -> float | tuple[int, ...]:
    """``fails``: a probability, or a list of trigger times (epoch ms or ISO 8601)."""
    value = item.get("fails", 0.0)
    if not isinstance(value, list):
        return _number(item, "fails", 0.0, 1.0)
    try:
        return tuple(epoch_ms(v) for v in value)
    except ValueError as e:
        raise _Bad("fails", f"fails: {e} (want a probability or a list of trigger times)") from None


def _flow(item: dict[str, Any]) -> SimFlow:
    unknown = sorted(set(item) - set(KEYS))
    if unknown:
        known = ", ".join(KEYS)
        raise _Bad(unknown[0], f"unknown key(s) {', '.join(unknown)} (known: {known})", at_key=True)
    flow_id = item.get("flowId")
    if not isinstance(flow_id, int) or isinstance(flow_id, bool) or flow_id < 1:
        raise _Bad("flowId" if "flowId" in item else None, "flowId must be an integer >= 1")
    type_ = item.get("type", SCHEDULING_TYPES[0])
    if not _is_int(type_) or type_ not in SCHEDULING_TYPES:
        raise _Bad("type", f"type must be 0 (manual), 1 (periodic) or 2 (temporary), not {type_!r}")
    fails, timeouts = _fails(item), _number(item, "timeouts", 0.0, 1.0)
    if isinstance(fails, float) and fails + timeouts > 1:
        raise _Bad("timeouts", "fails + timeouts must be at most 1")
    try:
        owners = owner_names(item.get("owner"))
    except ValueError as e:
        raise _Bad("owner", str(e)) from None
    cycle = _text(item, "cycle") or DEFAULT_CYCLE
    if cycle not in CYCLES:
        raise _Bad("cycle", f"cycle must be one of {', '.join(CYCLES)}, not {cycle!r}")
    freq = _text(item, "freq") or DEFAULT_FREQ
    if len(freq.split()) != QUARTZ_FIELDS:
        raise _Bad("freq", f'freq must be a 7-field Quartz cron ("0 0 2 * * ? *"), not {freq!r}')
    return SimFlow(
        flow_id=flow_id,
        owners=owners,
        users=_names(item, "users"),
        org_id=_text(item, "orgId"),
        locked=_flag(item, "locked", False),
        user_locked=_flag(item, "isUserLocked", False),
        tasks=_tasks(item),
        run_seconds=_number(item, "runSeconds", DEFAULT_RUN_SECONDS),
        type=type_,
        active=_int(item, "active", 1, range(2)),
        cycle=cycle,
        freq=freq,
        fails=fails,
        timeouts=timeouts,
        name=_text(item, "name"),
        bad_parameter=_flag(item, "badParameter", False),
    )


def load_flows(path: str) -> list[SimFlow]:
    """Read a flows fixture; raise :class:`UsageError` (``file:line:col: message``) if bad."""
    from planrunner import source

    try:
        with open(path, "rb") as f:
            doc = source.load(f.read())
    except OSError as e:
        raise UsageError(f"{path}: cannot read flows file: {e.strerror or e}") from None
    except source.SourceError as e:
        raise UsageError(f"{path}:{e.mark.line}:{e.mark.col}: {e.message}") from None
    if doc.problems:
        p = doc.problems[0]
        mark = p.mark or doc.locate(p.path, key=p.key)
        shown = source.format_path(p.path[:-1] if p.key else p.path)
        where = f"{shown}: " if shown else ""
        raise UsageError(f"{path}:{mark.line}:{mark.col}: {p.severity}: {where}{p.message}")
    if not isinstance(doc.data, list):
        raise UsageError(f"{path}:1:1: expected a list of flows")
    flows: list[SimFlow] = []
    seen: set[int] = set()
    for i, item in enumerate(doc.data):
        if not isinstance(item, dict):
            mark = doc.locate((i,))
            raise UsageError(f"{path}:{mark.line}:{mark.col}: expected a mapping (one flow)")
        try:
            flow = _flow(item)
        except _Bad as e:
            mark = doc.locate((i,) if e.key is None else (i, e.key), key=e.at_key)
            raise UsageError(f"{path}:{mark.line}:{mark.col}: {e.message}") from None
        if flow.flow_id in seen:
            mark = doc.locate((i, "flowId"))
            raise UsageError(
                f"{path}:{mark.line}:{mark.col}: flowId {flow.flow_id} is listed twice"
            )
        seen.add(flow.flow_id)
        flows.append(flow)
    return flows
