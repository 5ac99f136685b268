"""Flow instances, each flow's queue, and the tasks inside an instance (statuses and logs).

An instance's tasks run one after another, each an equal share of its run time; a FAIL or
TIMEOUT instance ends at its last task, which takes that status (the others SUCCESS before
it), so its failed task is named. A task's log grows as it runs and is deterministic.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from planrunner import protocol

INIT_SECONDS = 0.05  # a new instance shows INIT this long before WAIT, READY or RUNNING
MS = 1000
NOT_STARTED = protocol.STATUS_NAMES[protocol.INIT]  # a task that has not started yet
LOG_RULE = "=" * 72
WAITING = frozenset({protocol.INIT, protocol.WAIT, protocol.READY})  # no task has started


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
    tasks: list[dict[str, Any]] = field(default_factory=list)  # taskId, taskName, nodeId
    parameters: dict[str, str] | None = None  # Update And Trigger's, for this instance only
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

    def task_inst_id(self, index: int) -> str:
        """Task ``index``'s instance id: ``{taskId}-{the instance id's digits}``."""
        return f"{self.tasks[index]['taskId']}-{self.instance_id.rsplit('-', 1)[-1]}"

    def _task_begin(self, index: int) -> float | None:
        """When task ``index`` started or would start; None if it never will."""
        if self.start is None:
            return None
        begin = self.start + index * self.run_seconds / len(self.tasks)
        if self.cancelled and self.end is not None and begin >= self.end:
            return None  # the instance was cancelled before this task's turn
        return begin

    def task_status(self, index: int, now: float) -> str:
        """Task ``index``'s status name at ``now``."""
        begin = self._task_begin(index)
        if begin is None or now < begin or self.status(now) in WAITING:
            return NOT_STARTED
        finish = begin + self.run_seconds / len(self.tasks)
        if self.cancelled and self.end is not None and finish > self.end:
            return protocol.STATUS_NAMES[protocol.CANCEL]  # it was running when cancelled
        if now < finish:
            return protocol.STATUS_NAMES[protocol.RUNNING]
        if index == len(self.tasks) - 1 and self.outcome != protocol.SUCCESS:
            return protocol.STATUS_NAMES[self.outcome]
        return protocol.STATUS_NAMES[protocol.SUCCESS]

    def graph(self, now: float) -> dict[str, Any]:
        """The FlowInstance's ``graph`` (before JSON): tasks with ids and statuses."""
        tasks = [
            {**node, "task_inst_id": self.task_inst_id(i), "status": self.task_status(i, now)}
            for i, node in enumerate(self.tasks)
        ]
        return {"flowId": str(self.flow_id), "instId": self.instance_id, "tasks": tasks}

    def task_log(self, index: int, now: float, zone: tzinfo) -> str | None:
        """Task ``index``'s log at ``now`` (deterministic lines), None before it starts."""
        begin = self._task_begin(index)
        if begin is None or now < begin or self.status(now) in WAITING:
            return None
        node = self.tasks[index]
        began = datetime.fromtimestamp(begin, zone).strftime("%Y-%m-%d %H:%M:%S")
        lines = [
            LOG_RULE,
            "run num:\t1",
            f"instance:\t{self.task_inst_id(index)}",
            f"task:\t{node['taskName']} ({node['taskId']}) of flow {self.flow_id}",
            f"start time:\t{began}",
            LOG_RULE,
            f"[INFO] {node['taskName']}: reading input",
            f"[INFO] {node['taskName']}: processing",
        ]
        status = self.task_status(index, now)
        if status == protocol.STATUS_NAMES[protocol.SUCCESS]:
            lines += [f"[INFO] {node['taskName']}: wrote output", "[INFO] exit code 0"]
        elif status == protocol.STATUS_NAMES[protocol.CANCEL]:
            lines.append("[WARN] killed: the instance was cancelled")
        elif status != protocol.STATUS_NAMES[protocol.RUNNING]:
            lines.append(f"[ERROR] {node['taskName']} ended {status}: exit code 1")
        return "\n".join(lines) + "\n"


@dataclass
class Queue:
    """One flow's scheduler: queued instances by (due, arrival), at most one running."""

    pending: list[tuple[float, int, Instance]] = field(default_factory=list)
    running: Instance | None = None
    free_at: float = 0.0
    cancelled_waiting: int = 0  # cancelled instances still in ``pending`` (removed lazily)

    def unfinished(self) -> int:
        """How many of its instances are not final (advance it to now first)."""
        return len(self.pending) - self.cancelled_waiting + (self.running is not None)

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
                self.cancelled_waiting -= 1
            if not self.pending:
                return
            due, _, inst = self.pending[0]
            start = max(due, self.free_at)
            if start > now:
                return
            heapq.heappop(self.pending)
            inst.start, inst.end = start, start + inst.run_seconds
            self.running = inst


def by_time_key(inst: Instance) -> tuple[int, int]:
    """Search's order: trigger time, then creation."""
    return inst.trigger_time, inst.seq


class TimeIndex:
    """Instances sorted by (trigger time, creation), with their trigger times for bisecting."""

    def __init__(self) -> None:
        self.items: list[Instance] = []
        self.times: list[int] = []

    def add(self, insts: list[Instance]) -> None:
        self.items.extend(insts)
        self.items.sort(key=by_time_key)  # nearly sorted: cheap
        self.times = [i.trigger_time for i in self.items]

    def window(self, lo: int, hi: int) -> list[Instance]:
        return self.items[bisect.bisect_left(self.times, lo) : bisect.bisect_left(self.times, hi)]


class SearchIndex:
    """The service's instances indexed for Search: by (trigger time, creation), overall and
    per flow, so a search reads its window (and, for an id-prefix ``expression`` such as
    "3377-", only the flows whose ids can contain it), not every instance it holds."""

    def __init__(self) -> None:
        self._indexed = 0  # how many of the history the indexes hold
        self._all = TimeIndex()
        self._by_flow: dict[int, TimeIndex] = {}
        self._names: dict[int, set[str]] = {}

    def window(self, history: list[Instance], lo: int, hi: int, expression: str) -> list[Instance]:
        """The instances in ``[lo, hi)`` that ``expression`` may match, in Search's order
        (a superset: the caller still applies the filter itself)."""
        fresh = history[self._indexed :]
        if fresh:
            self._indexed = len(history)
            self._all.add(fresh)
            by_flow: dict[int, list[Instance]] = {}
            for inst in fresh:
                by_flow.setdefault(inst.flow_id, []).append(inst)
                self._names.setdefault(inst.flow_id, set()).add(inst.flow_name)
            for flow_id, insts in by_flow.items():
                self._by_flow.setdefault(flow_id, TimeIndex()).add(insts)
        prefix = expression[:-1]
        if not expression.endswith("-") or "-" in prefix:
            return self._all.window(lo, hi)
        # An instance id is "{flowId}-{digits}": "X-" is in it only when flowId ends with X.
        hits = [
            inst
            for flow_id, index in self._by_flow.items()
            if str(flow_id).endswith(prefix) or any(expression in n for n in self._names[flow_id])
            for inst in index.window(lo, hi)
        ]
        hits.sort(key=by_time_key)
        return hits
