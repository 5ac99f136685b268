"""The flows the simulator knows, shaped like the vendor's Flow struct, and their tasks.

A :class:`SimFlow` carries what Get Flow answers (``owner`` usernames, ``locked``,
``isUserLocked``, ``active``, ``type``, ``cycle``, ``freq``, the tasks in ``graph``) and
what the simulator decides for its instances (who may trigger, how long they run, which
end FAIL). Who may trigger is ``users`` (userIds): the vendor's ``owner`` holds usernames,
which no API maps to a userId.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from planrunner import protocol

DEFAULT_RUN_SECONDS = 1.0
DEFAULT_CYCLE = "D"  # daily
DEFAULT_FREQ = "0 0 0 * * ? *"  # its 7-field Quartz cron
MAX_TASKS = 99  # task ids are flowId * 100 + n
MS = 1000
SCHEDULING_TYPES = (protocol.TYPE_MANUAL, protocol.TYPE_PERIODIC, protocol.TYPE_TEMPORARY)
CYCLES = ("M", "W", "D", "H", "mi")


def epoch_ms(value: object) -> int:
    """A trigger time from epoch ms (an integer) or an ISO 8601 time with an offset;
    ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    else:
        raise ValueError(f"not a time: {value!r}")
    if moment.utcoffset() is None:
        raise ValueError(f"an ISO 8601 time needs an offset (Z, +08:00): {value!r}")
    return int(moment.timestamp() * MS)


def owner_names(value: object) -> tuple[str, ...]:
    """Owner usernames from the vendor's ``";alice;bob;"`` string or a list of names."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(n.strip() for n in value.split(";") if n.strip())
    if isinstance(value, list | tuple) and all(isinstance(n, str) and n for n in value):
        return tuple(n.strip() for n in value)
    raise ValueError(f'owner must be usernames, ";alice;bob;" or a list, not {value!r}')


@dataclass(frozen=True, slots=True)
class SimFlow:
    """A flow the simulator knows.

    ``owners``: the usernames Get Flow's ``owner`` shows (``";alice;bob;"``); Search's
    ``owner`` filter matches one of them. ``users``: the userIds that may trigger (62103 for
    another); None: any user. ``org_id`` None: any org. ``tasks``: how many tasks its graph
    has (0: no task, a trigger gets 62104). ``locked`` / ``user_locked``: the flow / the
    user is locked (62105). ``active`` (0 paused, 1 scheduled), ``type`` (0 manual,
    1 periodic, 2 temporary; its instances carry it), ``cycle`` and ``freq`` (7-field
    Quartz) are information Get Flow returns. ``fails``/``timeouts``: the probability an
    instance ends FAIL / TIMEOUT (seeded); ``fails`` may instead be a list of trigger times
    (epoch ms or ISO 8601 with an offset): an instance triggered at exactly one of them
    ends FAIL, every other succeeds. ``bad_parameter``: every trigger is answered 62102
    "Incorrect parameter", nothing created. ``name`` defaults to ``flow-{flowId}``.
    """

    flow_id: int
    owners: tuple[str, ...] = ()
    users: tuple[str, ...] | None = None
    org_id: str | None = None
    locked: bool = False
    user_locked: bool = False
    tasks: int = 1
    run_seconds: float = DEFAULT_RUN_SECONDS
    type: int = protocol.TYPE_MANUAL
    active: int = 1
    cycle: str = DEFAULT_CYCLE
    freq: str = DEFAULT_FREQ
    fails: float | Sequence[int | str] = 0.0
    timeouts: float = 0.0
    name: str | None = None
    bad_parameter: bool = False
    fail_at: frozenset[int] = field(default=frozenset(), init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.fails, int | float):
            times = frozenset(epoch_ms(t) for t in self.fails)
            object.__setattr__(self, "fail_at", times)
            object.__setattr__(self, "fails", 0.0)
        if not 0 <= self.run_seconds < math.inf:
            raise ValueError(f"flow {self.flow_id}: run_seconds must be >= 0")
        if self.type not in SCHEDULING_TYPES:
            raise ValueError(f"flow {self.flow_id}: type must be 0, 1 or 2")
        if not 0 <= self.tasks <= MAX_TASKS:
            raise ValueError(f"flow {self.flow_id}: tasks must be within 0..{MAX_TASKS}")
        rate = self.fail_rate
        if not (0 <= rate <= 1 and 0 <= self.timeouts <= 1 and rate + self.timeouts <= 1):
            raise ValueError(
                f"flow {self.flow_id}: fails and timeouts must be within 0..1, together <= 1"
            )

    @property
    def fail_rate(self) -> float:
        """``fails`` as a probability (0 when it is a list of times)."""
        return float(self.fails) if isinstance(self.fails, int | float) else 0.0

    @property
    def flow_name(self) -> str:
        """The name the service shows."""
        return self.name if self.name is not None else f"flow-{self.flow_id}"

    @property
    def owner_text(self) -> str:
        """Get Flow's ``owner``: ``";alice;bob;"`` (``""`` when it has none)."""
        return f";{';'.join(self.owners)};" if self.owners else ""

    def may_trigger(self, user: str) -> bool:
        """Whether ``user`` (a userId) may trigger it."""
        return self.users is None or user in self.users

    def task_ids(self) -> list[int]:
        """Its task ids, in graph order."""
        return [self.flow_id * (MAX_TASKS + 1) + n for n in range(1, self.tasks + 1)]

    def graph(self) -> str:
        """Get Flow's ``graph``: a JSON string whose ``tasks`` list its tasks."""
        tasks = [task_node(self, n) for n in range(self.tasks)]
        return json.dumps({"flowId": str(self.flow_id), "tasks": tasks})


def task_node(flow: SimFlow, index: int) -> dict[str, Any]:
    """Task ``index`` (0-based) of ``flow`` as the graph lists it."""
    return {
        "taskId": str(flow.task_ids()[index]),
        "taskName": f"task-{index + 1}",
        "nodeId": f"node_{index + 1}",
    }
