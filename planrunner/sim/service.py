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
from datetime import datetime, timedelta
from typing import Any

import orjson

from planrunner import protocol
from planrunner.sim.faults import Dialect
from planrunner.sim.flows import DEFAULT_RUN_SECONDS, SCHEDULING_TYPES, SimFlow, task_node
from planrunner.sim.instances import INIT_SECONDS, Instance, Queue, SearchIndex
from planrunner.sim.reply import Reply, json_reply

__all__ = ["DEFAULT_RUN_SECONDS", "INIT_SECONDS", "SCHEDULING_TYPES", "Instance", "Service", "SimFlow"]

MS = 1000
ALERT_MODE = 3
TIME_OK_MSG_V20 = "Success"  # v2.0 time APIs say "Success", without the leading space

MSG_USER_ORG = "userId does not exist, or it does not match to orgId."
MSG_NO_PRIVILEGE = "User has no privilege."
MSG_NO_TASK = "This workflow has no task. You cannot trigger it."
MSG_LOCKED = "Your account has been locked"
MSG_SERVER_ERROR = {"v2.0": "Server internal exception", "v2.1": "Internal server exception"}
MSG_BAD_PARAMETER = "Incorrect parameter"
MSG_DUPLICATE = "Do not trigger the same workflow repeatedly in 1 minute"
# Trigger of a flow the service does not have (the vendor's Trigger Flow From Task page).
MSG_NO_FLOW = (
    "Cannot create workflow instance. Please check if the workflow or task exist, "
    "and do not trigger the same workflow repeatedly in 1 minute"
)
MSG_NO_LOG = "No log found"
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
        *,
        accept_unknown_flows: bool = False,
    ) -> None:
        self.flows: dict[int, SimFlow] = {f.flow_id: f for f in flows}
        self.accept_unknown_flows = accept_unknown_flows
        self.dialect = dialect
        self.version = dialect.version
        self.zone = dialect.zone
        self.id_tz = dialect.id_tz
        self._clock = clock
        self._rng = random.Random(seed)
        self.lock = threading.RLock()
        self.instances: dict[str, Instance] = {}  # id -> the newest instance with that id
        self.history: list[Instance] = []  # every instance, in creation order
        self._index = SearchIndex()  # ``history`` indexed for Search, brought up to date by it
        self._queues: dict[int, Queue] = {}
        self.tasks: dict[str, tuple[Instance, int]] = {}  # task_inst_id -> (instance, index)
        self.peaks: dict[int, int] = {}  # flow -> the most unfinished at once, ever
        self.created_count: dict[int, int] = {}  # flow -> instances created
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

    @staticmethod
    def parse_parameters(body: bytes, form: str) -> dict[str, str] | None:
        """Update And Trigger's ``parameters`` in ``form`` (``list``, ``map`` or ``string``,
        the dialect), as a dict; None when missing or in another form (refused)."""
        try:
            value = json.loads(body).get("parameters")
        except (ValueError, AttributeError):
            return None
        if form == "string":
            if not isinstance(value, str):
                return None
            try:
                value = json.loads(value)
            except ValueError:
                return None
        if form == "map":
            pairs = list(value.items()) if isinstance(value, dict) else None
        elif isinstance(value, list) and all(
            isinstance(p, dict) and set(p) == {"key", "value"} for p in value
        ):
            pairs = [(p["key"], p["value"]) for p in value]
        else:
            pairs = None
        if pairs is None or not all(isinstance(k, str) and k for k, _ in pairs):
            return None
        if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for _, v in pairs):
            return None
        return {k: str(v) for k, v in pairs}

    def flow(self, flow_id: int) -> SimFlow | None:
        """A listed flow, the permissive default when unknown flows are accepted, else None."""
        flow = self.flows.get(flow_id)
        if flow is None and self.accept_unknown_flows:
            return SimFlow(flow_id)
        return flow

    def trigger(
        self,
        user: str,
        org: str,
        flow_id: int,
        trigger_time: int,
        parameters: dict[str, str] | None = None,
    ) -> tuple[Reply, Instance | None]:
        """Trigger Flow (and Update And Trigger Flow with ``parameters``): the answer, and
        the instance when this request created one."""
        flow = self.flow(flow_id)
        if not user or not org or (flow and flow.org_id is not None and flow.org_id != org):
            return self.error(protocol.USER_ORG_MISMATCH, MSG_USER_ORG), None
        if flow is None:
            return self.bad_request(MSG_NO_FLOW), None
        if not flow.may_trigger(user):
            return self.error(protocol.NO_PRIVILEGE, MSG_NO_PRIVILEGE), None
        if flow.locked or flow.user_locked:
            return self.error(protocol.LOCKED, MSG_LOCKED), None
        if not flow.tasks:
            return self.error(protocol.NO_TASK, MSG_NO_TASK), None
        if flow.bad_parameter:
            return self.bad_request(MSG_BAD_PARAMETER), None
        iid = protocol.instance_id(flow_id, trigger_time, self.id_tz)
        with self.lock:
            now = self._clock()
            if self._duplicate(flow_id, iid, now):
                return self.bad_request(MSG_DUPLICATE), None
            inst = self._create(flow, user, iid, trigger_time, now, parameters)
        return self.ok({"flowInstanceId": iid}), inst

    def _duplicate(self, flow_id: int, iid: str, now: float) -> bool:
        rule = self.dialect.duplicate
        if rule == "minute-key":
            return iid in self.instances
        if rule == "wall-clock":
            last = self._last_accepted.get(flow_id)
            return last is not None and now - last < self.dialect.duplicate_window
        return False

    def _outcome(self, flow: SimFlow, trigger_time: int) -> int:
        if flow.fail_at:
            return protocol.FAIL if trigger_time in flow.fail_at else protocol.SUCCESS
        draw = self._rng.random()
        if draw < flow.fail_rate:
            return protocol.FAIL
        if draw < flow.fail_rate + flow.timeouts:
            return protocol.TIMEOUT
        return protocol.SUCCESS

    def _create(
        self,
        flow: SimFlow,
        user: str,
        iid: str,
        trigger_time: int,
        now: float,
        parameters: dict[str, str] | None = None,
    ) -> Instance:
        self._seq += 1
        inst = Instance(
            instance_id=iid,
            flow_id=flow.flow_id,
            flow_name=flow.flow_name,
            owner=flow.owner_text or user,
            type=flow.type,
            trigger_time=trigger_time,
            created=now,
            due=max(now, trigger_time / MS),  # a past trigger time runs at once
            seq=self._seq,
            run_seconds=flow.run_seconds,
            outcome=self._outcome(flow, trigger_time),
            tasks=[task_node(flow, i) for i in range(flow.tasks)],
            parameters=parameters,
        )
        queue = self._queues.setdefault(flow.flow_id, Queue())
        queue.advance(now)
        heapq.heappush(queue.pending, (inst.due, inst.seq, inst))
        queue.advance(now)
        self.instances[iid] = inst
        self.history.append(inst)
        for i in range(len(inst.tasks)):
            self.tasks[inst.task_inst_id(i)] = (inst, i)
        self._last_accepted[flow.flow_id] = now
        # The flow's unfinished instances now (the new one and those queued count): the queue
        # holds exactly them, once advanced to now.
        unfinished = queue.unfinished()
        self.peaks[flow.flow_id] = max(self.peaks.get(flow.flow_id, 0), unfinished)
        self.created_count[flow.flow_id] = self.created_count.get(flow.flow_id, 0) + 1
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
        flow = self.flows.get(inst.flow_id) or SimFlow(inst.flow_id)
        given = inst.parameters or {}
        return {
            "instanceId": inst.instance_id,
            "flowId": inst.flow_id,
            "flowName": inst.flow_name,
            "freq": flow.freq,
            "cycle": flow.cycle,
            "parameters": orjson.dumps([{"key": k, "value": v} for k, v in given.items()]).decode(),
            "doAs": inst.owner,
            "graph": orjson.dumps(inst.graph(now)).decode(),
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
            found = self.describe(inst, now)
            return self.ok([found] if self.dialect.instance_data == "list" else found)

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
                for i in self._index.window(self.history, lo, hi, expression)
                if i.type == type_
                and (owner in ("", i.owner) or f";{owner};" in i.owner)
                and (expression in i.instance_id or expression in i.flow_name)
                and (wanted is None or i.status(now) in wanted)
            ]  # in (trigger time, creation) order
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
            else:
                queue.cancelled_waiting += 1
            queue.advance(now)
        return self.ok("")

    # -- flows and time --------------------------------------------------------------------

    def get_flow(self, params: Mapping[str, str]) -> Reply:
        """Get Flow (``flowId`` in the query): the vendor's Flow struct; a flow the service
        does not have is 62102."""
        if self.user_problem(params):
            return self.error(protocol.USER_ORG_MISMATCH, MSG_USER_ORG)
        text = params.get("flowId", "")
        if not text.isascii() or not text.isdigit():
            return self.bad_request()
        flow = self.flow(int(text))
        if flow is None:
            return self.bad_request(MSG_FLOW_NOT_FOUND)
        created = protocol.format_time(int(self.started * MS), self.zone, fraction=True)
        return self.ok(
            {
                "flowId": flow.flow_id,
                "flowName": flow.flow_name,
                "type": flow.type,
                "active": flow.active,
                "cycle": flow.cycle,
                "freq": flow.freq,
                "owner": flow.owner_text,
                "locked": flow.locked,
                "isUserLocked": flow.user_locked,
                "hasEditPri": flow.may_trigger(params["userId"]),
                "hasReadPri": True,
                "graph": flow.graph(),
                "createTime": created,
                "updateTime": created,
            }
        )

    def task_log(self, params: Mapping[str, str]) -> Reply:
        """Get Task Instance Log (``taskInstId``, ``maxLength`` in the query): 62102 for an
        unknown task instance, 62109 "No log found" before it starts."""
        if self.user_problem(params):
            return self.error(protocol.USER_ORG_MISMATCH, MSG_USER_ORG)
        limit_text = params.get("maxLength", "")
        if limit_text and (not limit_text.isascii() or not limit_text.isdigit()):
            return self.bad_request()
        with self.lock:
            found = self.tasks.get(params.get("taskInstId", ""))
            if found is None:
                return self.bad_request(MSG_NOT_FOUND)
            inst, index = found
            now = self._clock()
            self._advance(inst.flow_id, now)
            log = inst.task_log(index, now, self.zone)
        if log is None:
            return self.error(protocol.SERVER_ERROR, MSG_NO_LOG)
        if limit_text:
            limit = int(limit_text)
            log = log[:limit] if self.dialect.log_keep == "start" else log[len(log) - limit :]
        return self.ok({"log": log})

    def crowd(self, flow_id: int, minute: int, count: int) -> None:
        """Pre-create ``count`` ended instances of other flows (their ids end in
        ``flow_id``'s digits, so an ``expression`` of ``"{flow_id}-"`` matches them too)
        whose trigger times fall in the minute starting at ``minute`` (epoch ms)."""
        listed = self.flows.get(flow_id)
        type_ = listed.type if listed is not None else protocol.TYPE_MANUAL
        scale = 10 ** len(str(flow_id))
        with self.lock:
            now = self._clock()
            for k in range(1, count + 1):
                other = SimFlow(k * scale + flow_id, type=type_, owners=("crowd",))
                trigger_time = minute + (k * 7919) % protocol.MINUTE_MS
                iid = protocol.instance_id(other.flow_id, trigger_time, self.id_tz)
                self._seq += 1
                inst = Instance(
                    iid, other.flow_id, other.flow_name, other.owner_text, type_,
                    trigger_time, now - 1, now - 1, self._seq, 0.0, protocol.SUCCESS,
                    [task_node(other, 0)], start=now - 1, end=now - 1,
                )  # fmt: skip
                self.instances[iid] = inst
                self.history.append(inst)
                self.tasks[inst.task_inst_id(0)] = (inst, 0)

    def flow_stats(self) -> list[dict[str, Any]]:
        """``/__sim__/flows``: per flow, the most instances unfinished at once and how many
        were created (listed flows, and any other that has instances)."""
        with self.lock:
            ids = sorted({*self.flows, *self.created_count})
            return [
                {
                    "flowId": i,
                    "maxUnfinished": self.peaks.get(i, 0),
                    "instances": self.created_count.get(i, 0),
                }
                for i in ids
            ]

    def time_zone(self) -> Reply:
        """Get Time Zone: ``{"timezone": "GMT+8"}`` (the dialect's server zone name; for
        ``server_zone_dst``, that zone's offset now)."""
        return self.ok({"timezone": self.dialect.zone_name(self._clock())}, time_api=True)

    def current_time(self) -> Reply:
        """Get Current Time: epoch ms."""
        return self.ok(int(self._clock() * MS), time_api=True)

