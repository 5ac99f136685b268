"""The Data Flow batch service's rules, testable without a socket.

Flows, instances, Trigger Flow with its owner/org/lock/task checks, one running instance
per flow with later ones queued and statuses moving over time, Get/Search/Cancel Flow
Instance, Get Flow, Get Time Zone and Get Current Time. Every method returns a
:class:`~planrunner.sim.reply.Reply` holding the envelope of the dialect's API version.

Statuses are computed lazily: each flow's queue is advanced to "now" whenever an answer
depends on it, so instances start and end at the exact times a real scheduler would give
them, without a background thread.
"""

from __future__ import annotations

import functools
import heapq
import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from planrunner import protocol
from planrunner.sim.faults import Dialect
from planrunner.sim.reply import Reply, json_reply

DEFAULT_RUN_SECONDS = 1.0
INIT_SECONDS = 0.05  # a new instance shows INIT this long before WAIT, READY or RUNNING
MS = 1000
CYCLE = "D"  # every simulated flow is daily
FREQ = "0 0 0 * * ? *"  # its 7-field cron
ALERT_MODE = 3
PARAMETERS = "[]"
TIME_OK_MSG_V20 = "Success"  # v2.0 time APIs say "Success", without the leading space
SCHEDULING_TYPES = (protocol.TYPE_MANUAL, protocol.TYPE_PERIODIC, protocol.TYPE_TEMPORARY)

MSG_USER_ORG = "userId does not exist, or it does not match to orgId."
MSG_NO_PRIVILEGE = "User has no privilege."
MSG_NO_TASK = "This workflow has no task. You cannot trigger it."
MSG_LOCKED = "Your account has been locked"
MSG_SERVER_ERROR = {"v2.0": "Server internal exception", "v2.1": "Internal server exception"}
MSG_BAD_PARAMETER = "Incorrect parameter"
MSG_DUPLICATE = "Do not trigger the same workflow repeatedly in 1 minute"
MSG_NOT_FOUND = "Instance not found"
MSG_FLOW_NOT_FOUND = "Flow not found"
MSG_NOT_CANCELLABLE = "instance status does not allow cancel"
MSG_SEARCH_REQUIRED = "param: type/owner cannot be empty"
MSG_WINDOW_REQUIRED = "param: fromTriggerTime/toTriggerTime cannot be empty"
MSG_BAD_SORTER = "illegal sorted by field"

# Sort fields Search accepts (documented camelCase, and the snake_case vendor samples send).
SORT_FIELDS = {
    "triggerTime": "trigger",
    "trigger_time": "trigger",
    "startTime": "start",
    "start_time": "start",
    "endTime": "end",
    "end_time": "end",
    "createTime": "create",
    "create_time": "create",
    "updateTime": "update",
    "update_time": "update",
}


@dataclass(frozen=True, slots=True)
class SimFlow:
    """A flow the simulator knows: who owns it and how its instances behave.

    ``owner``/``org_id`` None: any user and org (a flow the fixture did not list).
    ``type``: the scheduling type its instances carry (0 manual, 1 periodic, 2 temporary).
    ``fails``/``timeouts``: the probability an instance ends FAIL / TIMEOUT instead of
    SUCCESS, decided at creation with a seeded RNG. ``name`` defaults to ``flow-{flowId}``.
    ``bad_parameter``: every trigger is answered 62102 "Incorrect parameter" (a flow whose
    configuration the service rejects), nothing created.
    """

    flow_id: int
    owner: str | None = None
    org_id: str | None = None
    locked: bool = False
    has_task: bool = True
    run_seconds: float = DEFAULT_RUN_SECONDS
    type: int = protocol.TYPE_MANUAL
    fails: float = 0.0
    timeouts: float = 0.0
    name: str | None = None
    bad_parameter: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.run_seconds < math.inf:
            raise ValueError(f"flow {self.flow_id}: run_seconds must be >= 0")
        if self.type not in SCHEDULING_TYPES:
            raise ValueError(f"flow {self.flow_id}: type must be 0, 1 or 2")
        if not (
            0 <= self.fails <= 1 and 0 <= self.timeouts <= 1 and self.fails + self.timeouts <= 1
        ):
            raise ValueError(
                f"flow {self.flow_id}: fails and timeouts must be within 0..1, together <= 1"
            )

    @property
    def flow_name(self) -> str:
        """The name the service shows."""
        return self.name if self.name is not None else f"flow-{self.flow_id}"


@dataclass(slots=True)
class Instance:
    """One flow instance: its schedule (wall-clock seconds) and its decided outcome."""

    instance_id: str
    flow_id: int
    flow_name: str
    owner: str
    type: int
    trigger_time: int  # epoch ms, as requested
    created: float
    due: float  # the earliest it may start: its trigger time, or its creation if later
    seq: int
    run_seconds: float
    outcome: int  # SUCCESS, FAIL or TIMEOUT
    start: float | None = None
    end: float | None = None
    cancelled: bool = False

    def status(self, now: float) -> int:
        """The status at ``now`` (its flow's queue advanced to ``now`` first)."""
        if self.cancelled:
            return protocol.CANCEL
        if self.end is not None and now >= self.end:
            return self.outcome
        if now < self.created + INIT_SECONDS:
            return protocol.INIT
        if self.start is not None:
            return protocol.RUNNING
        # Due but behind another instance of the flow: WAIT; its trigger time still ahead: READY.
        return protocol.WAIT if self.due <= now else protocol.READY

    def updated(self, now: float) -> float:
        """When its status last changed (what ``timestamp`` shows, as the samples behave)."""
        marks = [self.created, self.start, self.end]
        return max(m for m in marks if m is not None and m <= now)


@dataclass
class _Queue:
    """One flow's scheduler: queued instances by (due, arrival), at most one running."""

    pending: list[tuple[float, int, Instance]] = field(default_factory=list)
    running: Instance | None = None
    free_at: float = 0.0

    def advance(self, now: float) -> None:
        """Start and finish instances up to ``now``, at the times they would have."""
        while True:
            run = self.running
            if run is not None:
                assert run.end is not None
                if run.end > now:
                    return
                self.free_at, self.running = run.end, None
            while self.pending and self.pending[0][2].cancelled:
                heapq.heappop(self.pending)
            if not self.pending:
                return
            due, _, inst = self.pending[0]
            start = max(due, self.free_at)
            if start > now:
                return
            heapq.heappop(self.pending)
            inst.start, inst.end = start, start + inst.run_seconds
            self.running = inst


class _BadRequest(Exception):
    """A request the service answers with 62102 and ``str(self)`` as the message."""


def _ms(value: object) -> int:
    """Epoch ms from a JSON integer or a string of digits (vendor samples send both)."""
    if isinstance(value, bool):
        raise _BadRequest(MSG_BAD_PARAMETER)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise _BadRequest(MSG_BAD_PARAMETER)


def _statuses(value: object) -> set[int] | None:
    """Search's ``status``: a comma string (empty: no filter) or a number."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _BadRequest(MSG_BAD_PARAMETER)
    if isinstance(value, int):
        return {value}
    if not isinstance(value, str):
        raise _BadRequest(MSG_BAD_PARAMETER)
    try:
        return {int(s) for s in value.split(",") if s.strip()}
    except ValueError:
        raise _BadRequest(MSG_BAD_PARAMETER) from None


class Service:
    """The simulated service's state and rules; every public method takes the lock."""

    def __init__(
        self,
        flows: Iterable[SimFlow],
        dialect: Dialect,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.flows: dict[int, SimFlow] = {f.flow_id: f for f in flows}
        self.dialect = dialect
        self.version = dialect.version
        self.zone = dialect.zone
        self.id_tz = dialect.id_tz
        self._clock = clock
        self._rng = random.Random(seed)
        self.lock = threading.RLock()
        self.instances: dict[str, Instance] = {}  # id -> the newest instance with that id
        self.history: list[Instance] = []  # every instance, in creation order
        self._queues: dict[int, _Queue] = {}
        self._last_accepted: dict[int, float] = {}  # flow -> wall time of its last new instance
        self._seq = 0
        self.started = clock()

    # -- envelopes -------------------------------------------------------------------------

    def ok(self, data: Any, *, time_api: bool = False) -> Reply:
        """A success envelope (v2.0 time APIs say ``Success`` without the leading space)."""
        v = self.version
        msg = TIME_OK_MSG_V20 if time_api and v is protocol.V20 else v.ok_msg
        return json_reply(protocol.envelope(v, protocol.OK, msg, data))

    def error(self, code: int, msg: str) -> Reply:
        """An error envelope, HTTP 200."""
        return json_reply(protocol.envelope(self.version, code, msg, None))

    def server_error(self) -> Reply:
        """62109, in the version's wording."""
        return self.error(protocol.SERVER_ERROR, MSG_SERVER_ERROR[self.version.name])

    def not_found(self) -> Reply:
        """A missing instance, in the dialect's form."""
        form = self.dialect.not_found
        if form == "null":
            return self.ok(None)
        if form == "empty":
            return self.ok({})
        return self.error(protocol.BAD_PARAMETER_OR_DUPLICATE, MSG_NOT_FOUND)

    def bad_request(self, msg: str = MSG_BAD_PARAMETER) -> Reply:
        """62102 with ``msg``."""
        return self.error(protocol.BAD_PARAMETER_OR_DUPLICATE, msg)

    @staticmethod
    def user_problem(params: Mapping[str, str]) -> bool:
        """Whether ``userId`` or ``orgId`` is missing (62101)."""
        return not params.get("userId") or not params.get("orgId")

    # -- Trigger Flow ----------------------------------------------------------------------

    @staticmethod
    def parse_trigger(body: bytes) -> tuple[int, int] | None:
        """``(flowId, triggerTime)`` of a Trigger Flow body, or None when it is not one."""
        try:
            req = json.loads(body)
        except ValueError:
            return None
        if not isinstance(req, dict):
            return None
        flow_id, trigger_time = req.get("flowId"), req.get("triggerTime")
        for value in (flow_id, trigger_time):
            if not isinstance(value, int) or isinstance(value, bool):
                return None
        assert isinstance(flow_id, int) and isinstance(trigger_time, int)
        return flow_id, trigger_time

    def trigger(
        self, user: str, org: str, flow_id: int, trigger_time: int
    ) -> tuple[Reply, Instance | None]:
        """Trigger Flow: the answer, and the instance when this request created one."""
        flow = self.flows.get(flow_id)
        if not user or not org or (flow and flow.org_id is not None and flow.org_id != org):
            return self.error(protocol.USER_ORG_MISMATCH, MSG_USER_ORG), None
        if flow and flow.owner is not None and flow.owner != user:
            return self.error(protocol.NO_PRIVILEGE, MSG_NO_PRIVILEGE), None
        if flow and flow.locked:
            return self.error(protocol.LOCKED, MSG_LOCKED), None
        if flow and not flow.has_task:
            return self.error(protocol.NO_TASK, MSG_NO_TASK), None
        if flow and flow.bad_parameter:
            return self.bad_request(MSG_BAD_PARAMETER), None
        flow = flow or SimFlow(flow_id)
        iid = protocol.instance_id(flow_id, trigger_time, self.id_tz)
        with self.lock:
            now = self._clock()
            if self._duplicate(flow_id, iid, now):
                return self.bad_request(MSG_DUPLICATE), None
            inst = self._create(flow, user, iid, trigger_time, now)
        return self.ok({"flowInstanceId": iid}), inst

    def _duplicate(self, flow_id: int, iid: str, now: float) -> bool:
        rule = self.dialect.duplicate
        if rule == "minute-key":
            return iid in self.instances
        if rule == "wall-clock":
            last = self._last_accepted.get(flow_id)
            return last is not None and now - last < self.dialect.duplicate_window
        return False

    def _create(
        self, flow: SimFlow, user: str, iid: str, trigger_time: int, now: float
    ) -> Instance:
        draw = self._rng.random()
        if draw < flow.fails:
            outcome = protocol.FAIL
        elif draw < flow.fails + flow.timeouts:
            outcome = protocol.TIMEOUT
        else:
            outcome = protocol.SUCCESS
        self._seq += 1
        inst = Instance(
            instance_id=iid,
            flow_id=flow.flow_id,
            flow_name=flow.flow_name,
            owner=flow.owner if flow.owner is not None else user,
            type=flow.type,
            trigger_time=trigger_time,
            created=now,
            due=max(now, trigger_time / MS),  # a past trigger time runs at once
            seq=self._seq,
            run_seconds=flow.run_seconds,
            outcome=outcome,
        )
        queue = self._queues.setdefault(flow.flow_id, _Queue())
        queue.advance(now)
        heapq.heappush(queue.pending, (inst.due, inst.seq, inst))
        queue.advance(now)
        self.instances[iid] = inst
        self.history.append(inst)
        self._last_accepted[flow.flow_id] = now
        return inst

    # -- instances -------------------------------------------------------------------------

    def _advance_all(self, now: float) -> None:
        for queue in self._queues.values():
            queue.advance(now)

    def _advance(self, flow_id: int, now: float) -> None:
        queue = self._queues.get(flow_id)
        if queue is not None:
            queue.advance(now)

    def _time(self, seconds: float | None, now: float) -> str | None:
        if seconds is None or seconds > now:
            return None
        return protocol.format_time(int(seconds * MS), self.zone)

    def describe(self, inst: Instance, now: float) -> dict[str, Any]:
        """The documented FlowInstance struct (time strings in the server zone)."""
        status = inst.status(now)
        trigger_day = datetime.fromtimestamp(inst.trigger_time / MS, self.zone).date()
        graph = {
            "flowId": str(inst.flow_id),
            "instId": inst.instance_id,
            "tasks": [{"taskId": f"{inst.instance_id}-1", "taskName": "task-1"}],
        }
        return {
            "instanceId": inst.instance_id,
            "flowId": inst.flow_id,
            "flowName": inst.flow_name,
            "freq": FREQ,
            "cycle": CYCLE,
            "parameters": PARAMETERS,
            "doAs": inst.owner,
            "graph": json.dumps(graph),
            "status": status,
            "statusDesc": protocol.STATUS_NAMES[status],
            "triggerTime": protocol.format_time(inst.trigger_time, self.zone),
            "startTime": self._time(inst.start, now),
            "endTime": self._time(inst.end, now),
            "timestamp": protocol.format_time(
                int(inst.updated(now) * MS), self.zone, fraction=True
            ),
            "virtual": False,
            "owner": inst.owner,
            "alertMode": ALERT_MODE,
            "calDt": (trigger_day - timedelta(days=1)).isoformat(),
            "hasEditPri": True,
            "hasReadPri": True,
        }

    def get_instance(self, params: Mapping[str, str]) -> Reply:
        """Get Flow Instance (``flowInstId`` in the query): the newest instance with that id."""
        if self.user_problem(params):
            return self.error(protocol.USER_ORG_MISMATCH, MSG_USER_ORG)
        iid = params.get("flowInstId", "")
        if not iid:
            return self.bad_request("param: flowInstId cannot be empty")
        with self.lock:
            inst = self.instances.get(iid)
            if inst is None:
                return self.not_found()
            now = self._clock()
            self._advance(inst.flow_id, now)
            return self.ok(self.describe(inst, now))

    def search(self, params: Mapping[str, str], body: bytes) -> Reply:
        """Search Flow Instances: type and owner required, window ``[from, to)``, paged."""
        if self.user_problem(params):
            return self.error(protocol.USER_ORG_MISMATCH, MSG_USER_ORG)
        try:
            req = json.loads(body)
        except ValueError:
            return self.bad_request()
        if not isinstance(req, dict):
            return self.bad_request()
        try:
            return self._search(req)
        except _BadRequest as e:
            return self.bad_request(str(e))

    def _search(self, req: dict[str, Any]) -> Reply:
        if req.get("type") in (None, "") or req.get("owner") is None:
            raise _BadRequest(MSG_SEARCH_REQUIRED)
        type_, owner = _ms(req["type"]), req["owner"]
        if type_ not in SCHEDULING_TYPES or not isinstance(owner, str):
            raise _BadRequest(MSG_BAD_PARAMETER)
        if req.get("fromTriggerTime") in (None, "") or req.get("toTriggerTime") in (None, ""):
            raise _BadRequest(MSG_WINDOW_REQUIRED)
        lo, hi = _ms(req["fromTriggerTime"]), _ms(req["toTriggerTime"])
        expression = req.get("expression") or ""
        if not isinstance(expression, str):
            raise _BadRequest(MSG_BAD_PARAMETER)
        wanted = _statuses(req.get("status"))
        page = req.get("pagination") or {}
        if not isinstance(page, dict):
            raise _BadRequest(MSG_BAD_PARAMETER)
        page_no = _ms(page.get("pageNo", self.dialect.first_page))
        page_size = _ms(page.get("pageSize", protocol.PAGE_SIZE))
        if page_size < 1:
            raise _BadRequest(MSG_BAD_PARAMETER)
        sorters = page.get("sorters") or []
        if not isinstance(sorters, list) or not all(isinstance(s, dict) for s in sorters):
            raise _BadRequest(MSG_BAD_PARAMETER)
        with self.lock:
            now = self._clock()
            self._advance_all(now)
            hits = [
                i
                for i in self.history
                if i.type == type_
                and owner in ("", i.owner)
                and lo <= i.trigger_time < hi
                and (expression in i.instance_id or expression in i.flow_name)
                and (wanted is None or i.status(now) in wanted)
            ]
            hits.sort(key=lambda i: (i.trigger_time, i.seq))
            for sorter in reversed(sorters):
                key = SORT_FIELDS.get(str(sorter.get("field")))
                order = str(sorter.get("order") or "ASC").upper()
                if key is None or order not in ("ASC", "DESC"):
                    raise _BadRequest(MSG_BAD_SORTER)
                hits.sort(
                    key=functools.partial(self._sort_key, key=key, now=now), reverse=order == "DESC"
                )
            index = page_no - self.dialect.first_page
            chunk = hits[index * page_size : (index + 1) * page_size] if index >= 0 else []
            insts = [{**self.describe(i, now), "isCancelled": i.cancelled} for i in chunk]
        count = len(hits) if self.dialect.search_count == "total" else len(insts)
        return self.ok({"flowInsts": insts, "count": count})

    @staticmethod
    def _sort_key(inst: Instance, *, key: str, now: float) -> float:
        if key == "trigger":
            return inst.trigger_time / MS
        if key == "start":
            return inst.start if inst.start is not None and inst.start <= now else math.inf
        if key == "end":
            return inst.end if inst.end is not None and inst.end <= now else math.inf
        if key == "update":
            return inst.updated(now)
        return inst.created

    def cancel(self, params: Mapping[str, str], body: bytes) -> Reply:
        """Cancel Flow Instance: a queued or running instance becomes CANCEL; data ``""``."""
        if self.user_problem(params):
            return self.error(protocol.USER_ORG_MISMATCH, MSG_USER_ORG)
        try:
            req = json.loads(body)
        except ValueError:
            return self.bad_request()
        iid = req.get("flowInstId") if isinstance(req, dict) else None
        if not isinstance(iid, str) or not iid:
            return self.bad_request("param: flowInstId cannot be empty")
        with self.lock:
            inst = self.instances.get(iid)
            if inst is None:
                return self.not_found()
            now = self._clock()
            queue = self._queues[inst.flow_id]
            queue.advance(now)
            if inst.status(now) not in protocol.CANCELLABLE_STATUSES:
                return self.bad_request(MSG_NOT_CANCELLABLE)
            # A queued instance leaves the queue when it reaches the head (lazy removal).
            inst.cancelled, inst.end = True, now
            if queue.running is inst:
                queue.running, queue.free_at = None, now  # frees the flow for the next one
            queue.advance(now)
        return self.ok("")

    # -- flows and time --------------------------------------------------------------------

    def get_flow(self, params: Mapping[str, str]) -> Reply:
        """Get Flow (``flowId`` in the query); a flow the fixture does not list is 62102."""
        if self.user_problem(params):
            return self.error(protocol.USER_ORG_MISMATCH, MSG_USER_ORG)
        text = params.get("flowId", "")
        if not text.isascii() or not text.isdigit():
            return self.bad_request()
        flow = self.flows.get(int(text))
        if flow is None:
            return self.bad_request(MSG_FLOW_NOT_FOUND)
        created = protocol.format_time(int(self.started * MS), self.zone, fraction=True)
        return self.ok(
            {
                "flowId": flow.flow_id,
                "flowName": flow.flow_name,
                "owner": flow.owner or "",
                "type": flow.type,
                "locked": flow.locked,
                "isUserLocked": False,
                "cycle": CYCLE,
                "freq": FREQ,
                "hasTask": flow.has_task,
                "tasks": [{"taskName": "task-1"}] if flow.has_task else [],
                "createTime": created,
                "updateTime": created,
            }
        )

    def time_zone(self) -> Reply:
        """Get Time Zone: ``{"timezone": "GMT+8"}`` (the dialect's server zone name; for
        ``server_zone_dst``, that zone's offset now)."""
        return self.ok({"timezone": self.dialect.zone_name(self._clock())}, time_api=True)

    def current_time(self) -> Reply:
        """Get Current Time: epoch ms."""
        return self.ok(int(self._clock() * MS), time_api=True)
