"""The engines of runs/ in milliseconds: apply's Runner and the canceller driven by a scripted
client and an in-memory ledger (no socket, no timer), and the one worker pool's rule that a
bug on a worker thread of apply, status or cancel exits 70 with one line."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from planrunner import enos, ledger, lookup, protocol, runs
from planrunner.outcome import Entry, Status
from planrunner.runs import apply as engine
from planrunner.runs import cancel
from planrunner.sim import SimFlow, Simulator
from testing import cron_flows, write_plan

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
OK = enos.Answer(enos.Kind.OK, 0, "ok", {"flowInstanceId": "1-20260101000000"})
UNKNOWN = enos.Answer(enos.Kind.UNKNOWN, None, "read timeout after sending")
DUPLICATE = enos.Answer(enos.Kind.DUPLICATE, 62102, "Incorrect parameter")
FAST = engine.Options(in_flight=0.0, duplicate_wait=0.0, backoff_cap=0.0, concurrency=2)


class Memory:
    """An in-memory ledger session: appended records, in order."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.fsyncs = 0

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        self.records.extend(records)
        self.fsyncs += 1

    def events(self, key: str) -> list[str]:
        return [r["event"] for r in self.records if r["key"] == key]


FLOW = {"flowId": 1, "flowName": "f1", "graph": '{"tasks": [{"taskName": "t1"}]}'}


class Scripted:
    """A client whose answers come from functions of the call's arguments."""

    where = "scripted"
    stopped: str | None = None
    org_id = "o1"

    def __init__(
        self,
        trigger: Callable[[Entry], enos.Answer] = lambda e: OK,
        find: Callable[[Entry], enos.Lookup] = lambda e: enos.Lookup(False, None),
        state: Callable[[Entry], str] = lambda e: "SUCCESS",
        flow: Callable[[int], enos.Answer] | None = None,
    ) -> None:
        self._trigger, self._find, self._state = trigger, find, state
        self._flow = flow
        self.sent: list[int] = []
        self.looked: list[int] = []
        self.flows: list[int] = []
        self.batched: list[int] = []

    def _entry(self, flow_id: int, trigger_time: int) -> Entry:
        return Entry(trigger_time, flow_id, f"f{flow_id}", "o1", 0)

    def trigger(self, flow_id: int, trigger_time: int) -> enos.Answer:
        self.sent.append(trigger_time)
        return self._trigger(self._entry(flow_id, trigger_time))

    def find_instance(self, flow_id: int, trigger_time: int) -> enos.Lookup:
        self.looked.append(trigger_time)
        return self._find(self._entry(flow_id, trigger_time))

    def look_up_many(
        self, client: Any, wanted: Any, stop: threading.Event | None = None
    ) -> dict[tuple[int, int], lookup.Seen]:
        """The batched lookup, from the same script as find_instance (found: ``state``)."""
        out = {}
        for w in wanted:
            self.batched.append(w.trigger_time)
            found = self._find(self._entry(w.flow_id, w.trigger_time))
            state = (
                self._state(self._entry(w.flow_id, w.trigger_time))
                if found.found
                else lookup.NOT_FOUND
                if found.found is False
                else lookup.LOOKUP_FAILED
            )
            out[(w.flow_id, w.trigger_time)] = lookup.Seen(
                state, found.flow_instance_id or w.recorded_id, reason=found.reason
            )
        return out

    def get_flow(self, flow_id: int) -> enos.Answer:
        self.flows.append(flow_id)
        if self._flow is not None:
            return self._flow(flow_id)
        return enos.Answer(enos.Kind.OK, 0, "ok", {**FLOW, "flowId": flow_id}, http_status=200)

    def clean(self, text: str) -> str:
        return text

    def close(self) -> None:
        pass


def entries(n: int, flow_id: int = 1) -> list[Entry]:
    return [Entry(T0 + i * 60_000, flow_id, f"f{flow_id}", "o1", 0) for i in range(n)]


def runner(
    client: Scripted, folded: ledger.Folded | None = None, options: engine.Options = FAST
) -> tuple[engine.Runner, Memory]:
    sink = Memory()
    r = engine.Runner(
        client,  # type: ignore[arg-type]
        sink,
        folded or ledger.Folded(),
        options,
        "r1",
        gateway="gw",
        look_up_many=client.look_up_many,
    )
    return r, sink


def test_runner_records_intent_before_each_trigger_and_triggered_after() -> None:
    client = Scripted()
    r, sink = runner(client)
    outcomes = r.run(entries(3))
    assert {o.status for o in outcomes.values()} == {Status.TRIGGERED}
    assert all(sink.events(e.key) == ["intent", "triggered"] for e in entries(3))
    assert len(client.sent) == 3 and not client.looked


def test_runner_unknown_outcome_found_by_lookup_is_reconciled_not_resent() -> None:
    client = Scripted(lambda e: UNKNOWN, lambda e: enos.Lookup(True, "1-x"))
    r, sink = runner(client)
    (e,) = entries(1)
    out = r.run([e])
    assert out[e.key].status == Status.RECONCILED and out[e.key].flow_instance_id == "1-x"
    assert client.sent == [e.trigger_time]  # sent once, never again
    assert sink.events(e.key) == ["intent", "unknown", "reconciled"]


def test_runner_unknown_outcome_not_found_is_resent_at_most_max_resends_times() -> None:
    client = Scripted(lambda e: UNKNOWN, lambda e: enos.Lookup(False, None))
    r, _ = runner(client)
    (e,) = entries(1)
    out = r.run([e])
    assert len(client.sent) == 1 + FAST.max_resends
    assert out[e.key].status == Status.FAILED


def test_runner_unknown_outcome_whose_lookup_fails_stays_unknown_and_is_not_resent() -> None:
    client = Scripted(lambda e: UNKNOWN, lambda e: enos.Lookup(None, None, "lookup 503"))
    r, sink = runner(client)
    (e,) = entries(1)
    out = r.run([e])
    assert out[e.key].status == Status.UNKNOWN and "lookup 503" in (out[e.key].error or "")
    assert client.sent == [e.trigger_time]
    assert sink.events(e.key) == ["intent", "unknown"]


def test_runner_62102_with_an_instance_there_is_reconciled() -> None:
    client = Scripted(lambda e: DUPLICATE, lambda e: enos.Lookup(True, "1-y"))
    r, _ = runner(client)
    (e,) = entries(1)
    assert r.run([e])[e.key].status == Status.RECONCILED
    assert client.sent == [e.trigger_time]


def test_runner_crashed_attempt_is_looked_up_in_one_batch_before_anything_is_sent() -> None:
    (e,) = entries(1)
    folded = ledger.Folded()
    folded.open[e.key] = ledger.KeyState(intents={"old.1": "2026-01-01T00:00:00+00:00"})
    client = Scripted(find=lambda e: enos.Lookup(True, "1-z"))
    r, sink = runner(client, folded)
    assert r.run([e])[e.key].status == Status.RECONCILED
    assert client.sent == [] and client.batched == [e.trigger_time] and client.looked == []
    assert sink.events(e.key) == ["reconciled"]


def test_finding_1_a_bug_in_an_apply_worker_halts_with_internal_error_and_no_thread_traceback() -> None:
    def boom(e: Entry) -> enos.Answer:
        raise ZeroDivisionError("division by zero")

    died: list[Any] = []
    previous, threading.excepthook = threading.excepthook, died.append
    try:
        r, _ = runner(Scripted(boom))
        out = r.run(entries(4))
    finally:
        threading.excepthook = previous
    assert not died
    assert isinstance(r.fatal, runs.InternalError) and r.fatal.exit_code == 70
    assert "ZeroDivisionError" in str(r.fatal)
    assert {o.status for o in out.values()} <= {Status.PENDING, Status.UNKNOWN}


# -- a good citizen: Get Flow first, pacing, halting, the client stopping (issue 21) ----------


def flow_answer(**fields: Any) -> Callable[[int], enos.Answer]:
    return lambda fid: enos.Answer(
        enos.Kind.OK, 0, "ok", {**FLOW, "flowId": fid, **fields}, http_status=200
    )


def test_w1_a_flow_get_flow_does_not_know_is_never_triggered() -> None:
    missing = enos.Answer(enos.Kind.PERMANENT, 62102, "Flow not found", http_status=200)
    client = Scripted(flow=lambda fid: missing)
    r, sink = runner(client)
    out = r.run(entries(5))
    assert client.sent == [] and client.flows == [1] and sink.records == []
    assert {(o.status, o.error) for o in out.values()} == {
        (
            Status.PENDING,
            "flow refused: does not exist or is not visible (Get Flow answered 62102: Flow not found)",
        )
    }


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"locked": True}, "flow is locked"),
        ({"isUserLocked": True}, "user is locked"),
        ({"graph": '{"tasks": []}'}, "flow has no task"),
    ],
)
def test_w1_a_locked_or_taskless_flow_is_refused_before_any_trigger(
    fields: dict[str, Any], reason: str
) -> None:
    client = Scripted(flow=flow_answer(**fields))
    r, _ = runner(client)
    out = r.run(entries(3))
    assert client.sent == []
    assert {o.error for o in out.values()} == {f"flow refused: {reason}"}


def test_w1_an_unanswered_get_flow_is_a_warning_and_the_triggers_decide() -> None:
    client = Scripted(flow=lambda fid: enos.Answer(enos.Kind.UNKNOWN, 504, "HTTP 504 after sending"))
    r, _ = runner(client)
    out = r.run(entries(3))
    assert len(client.sent) == 3 and {o.status for o in out.values()} == {Status.TRIGGERED}


def test_w1_get_flow_is_asked_once_per_flow_and_run() -> None:
    client = Scripted()
    r, _ = runner(client)
    r.run(entries(4, flow_id=1) + entries(4, flow_id=2))
    assert sorted(client.flows) == [1, 2]


def test_w1_62102_twice_on_one_entry_refuses_the_rest_of_the_flow() -> None:
    client = Scripted(lambda e: DUPLICATE)
    r, _ = runner(client)
    es = entries(20)
    out = r.run(es)
    assert client.sent == [es[0].trigger_time] * 2
    assert out[es[0].key].status == Status.FAILED
    rest = {(o.status, (o.error or "")[:40]) for k, o in out.items() if k != es[0].key}
    assert rest == {(Status.PENDING, "flow refused: 62102 twice and no instanc")}


def paced(n: int, wait: bool = False, halt: bool = False) -> engine.Options:
    return engine.Options(
        in_flight=0.0, duplicate_wait=0.0, backoff_cap=0.0, max_unfinished=n, wait=wait,
        interval=0.01, halt_on_failure=halt,
    )  # fmt: skip


class Service:
    """Instances that finish after being looked at ``runs`` times; what was unfinished at
    each send."""

    def __init__(self, runs: int = 2, ends: str = "SUCCESS") -> None:
        self.runs, self.ends = runs, ends
        self.looks: dict[int, int] = {}
        self.at_send: list[int] = []

    def unfinished(self) -> int:
        return sum(1 for n in self.looks.values() if n < self.runs)

    def trigger(self, e: Entry) -> enos.Answer:
        self.at_send.append(self.unfinished())
        self.looks[e.trigger_time] = 0
        return OK

    def find(self, e: Entry) -> enos.Lookup:
        return enos.Lookup(e.trigger_time in self.looks, f"1-{e.trigger_time}")

    def state(self, e: Entry) -> str:
        self.looks[e.trigger_time] += 1
        return "RUNNING" if self.looks[e.trigger_time] <= self.runs else self.ends


@pytest.mark.parametrize("n", [1, 2])
def test_max_unfinished_without_wait_holds_the_rest_back(n: int) -> None:
    service = Service(runs=1000)
    client = Scripted(service.trigger, service.find, service.state)
    r, _ = runner(client, options=paced(n))
    es = entries(6)
    out = r.run(es)
    assert len(client.sent) == n and max(service.at_send) < n
    held = [o for k, o in out.items() if o.status == Status.PENDING]
    assert len(held) == 6 - n and {o.error for o in held} == {f"held back: {n} unfinished"}


@pytest.mark.parametrize("n", [1, 2])
def test_max_unfinished_with_wait_sends_as_instances_finish_never_over_n(n: int) -> None:
    service = Service(runs=2)
    client = Scripted(service.trigger, service.find, service.state)
    r, _ = runner(client, options=paced(n, wait=True))
    out = r.run(entries(6))
    assert {o.status for o in out.values()} == {Status.TRIGGERED}
    assert len(client.sent) == 6 and max(service.at_send) < n


def test_pacing_counts_what_earlier_runs_triggered() -> None:
    es = entries(4)
    folded = ledger.Folded()
    folded.done[es[0].key] = "1-old"  # done before this run, still running on the service
    service = Service(runs=1000)
    service.looks[es[0].trigger_time] = 0
    client = Scripted(service.trigger, service.find, service.state)
    r, _ = runner(client, folded, paced(1))
    out = r.run(es)
    assert client.sent == [] and out[es[0].key].status == Status.SKIPPED
    assert {out[e.key].error for e in es[1:]} == {"held back: 1 unfinished"}


def test_halt_on_failure_sends_no_more_of_a_flow_once_an_instance_failed() -> None:
    service = Service(runs=0, ends="FAIL")
    client = Scripted(service.trigger, service.find, service.state)
    r, _ = runner(client, options=paced(1, wait=True, halt=True))
    es = entries(5)
    out = r.run(es)
    assert client.sent == [es[0].trigger_time]
    assert {out[e.key].error for e in es[1:]} == {f"halted: 1-{es[0].trigger_time} ended FAIL"}


def test_halt_on_failure_alone_does_not_pace() -> None:
    service = Service(runs=1000)
    client = Scripted(service.trigger, service.find, service.state)
    r, _ = runner(client, options=engine.Options(in_flight=0.0, halt_on_failure=True))
    out = r.run(entries(5))
    assert {o.status for o in out.values()} == {Status.TRIGGERED}


def test_halt_on_failure_alone_halts_a_flow_an_earlier_run_saw_fail() -> None:
    es = entries(4)
    folded = ledger.Folded()
    folded.done[es[0].key] = "1-old"
    client = Scripted(find=lambda e: enos.Lookup(True, "1-old"), state=lambda e: "FAIL")
    r, _ = runner(client, folded, engine.Options(in_flight=0.0, halt_on_failure=True))
    out = r.run(es)
    assert client.sent == [] and client.batched == [es[0].trigger_time]
    assert {out[e.key].error for e in es[1:]} == {"halted: 1-old ended FAIL"}


def test_pacing_asks_nothing_while_fewer_instances_than_the_limit_can_be_unfinished() -> None:
    client = Scripted(find=lambda e: enos.Lookup(True, "x"), state=lambda e: "RUNNING")
    r, _ = runner(client, options=paced(3))
    out = r.run(entries(5))
    assert client.batched == [T0, T0 + 60_000, T0 + 120_000]  # one look, before the 4th send
    assert [o.status for o in out.values()].count(Status.TRIGGERED) == 3


def test_earlier_unknown_and_failed_keys_are_looked_up_in_one_batch() -> None:
    es = entries(4)
    folded = ledger.Folded()
    for e in es[:3]:
        folded.open[e.key] = ledger.KeyState(intents={"old.1": "2026-01-01T00:00:00+00:00"})
    failed = ledger.KeyState(intents={"old.2": "2026-01-01T00:00:00+00:00"})
    failed.rounds[0].closed.add("old.2")
    failed.rounds[0].failed = True
    folded.open[es[3].key] = failed
    client = Scripted(find=lambda e: enos.Lookup(e.trigger_time == es[0].trigger_time, "1-x"))
    r, sink = runner(client, folded)
    out = r.run(es)
    assert client.batched == [e.trigger_time for e in es] and client.looked == []
    assert out[es[0].key].status == Status.RECONCILED
    assert client.sent == [e.trigger_time for e in es[1:]]
    assert sink.events(es[0].key) == ["reconciled"]
    assert sink.events(es[1].key) == ["reconciled", "intent", "triggered"]


def test_w4_a_stopped_client_leaves_every_unsent_entry_pending_with_its_reason() -> None:
    why = "gateway quota exhausted: only HTTP 429 for 60 s at the lowest rate; apply again later"
    client = Scripted()

    def trigger(e: Entry) -> enos.Answer:
        if len(client.sent) > 2:
            client.stopped = why
            return enos.Answer(enos.Kind.STOPPED, None, why)
        return OK

    client._trigger = trigger
    r, _ = runner(client)
    out = r.run(entries(3, flow_id=1) + entries(3, flow_id=2))
    statuses = sorted(o.status for o in out.values())
    assert Status.FAILED not in statuses and statuses.count(Status.TRIGGERED) == 2
    assert {o.error for o in out.values() if o.status == Status.PENDING} == {f"not sent: {why}"}
    assert str(r.fatal).endswith(why)


def test_w4_a_429_at_the_lowest_rate_never_spends_an_entrys_retries() -> None:
    # More 429s in a row than the entry has retries: it is still sent, never failed (only a
    # stopped client, after a while of nothing but 429, ends it, and then it stays pending).
    throttled = enos.Answer(enos.Kind.RETRYABLE, 429, "HTTP 429", http_status=429)
    client = Scripted(lambda e: throttled if len(client.sent) <= FAST.max_retries + 3 else OK)
    r, sink = runner(client)
    (e,) = entries(1)
    assert r.run([e])[e.key].status == Status.TRIGGERED
    assert sink.events(e.key).count("aborted") == FAST.max_retries + 3


# -- the canceller ----------------------------------------------------------------------------


class ScriptedCancels:
    """cancel_instance answers from a list; Get Flow Instance answers with ``state``."""

    where = "scripted"

    def __init__(self, answers: list[enos.Answer], state: int = protocol.CANCEL) -> None:
        self.answers = answers
        self.state = state
        self.cancels: list[str] = []

    def cancel_instance(self, iid: str) -> enos.Answer:
        self.cancels.append(iid)
        return self.answers[min(len(self.cancels), len(self.answers)) - 1]

    def get_instance(self, iid: str) -> enos.Answer:
        flow, _, _ = iid.partition("-")
        tt = protocol.format_time(int(iid.rsplit("-", 1)[1]), UTC)
        data = {"instanceId": iid, "flowId": int(flow), "triggerTime": tt, "status": self.state}
        return enos.Answer(enos.Kind.OK, 0, "", data)

    def clean(self, text: str) -> str:
        return text


def targets(n: int, flow_id: int = 1) -> list[cancel.Target]:
    return [
        cancel.Target(e, lookup.Seen("RUNNING", f"{flow_id}-{e.trigger_time}"))
        for e in entries(n, flow_id)
    ]


def canceller(client: ScriptedCancels) -> tuple[cancel.Canceller, Memory]:
    sink = Memory()
    return cancel.Canceller(client, sink, UTC, "r1", "gw", None, backoff_cap=0.0), sink  # type: ignore[arg-type]


def test_canceller_records_each_confirmed_cancel() -> None:
    client = ScriptedCancels([enos.Answer(enos.Kind.OK, 0, "ok")])
    c, sink = canceller(client)
    ts = targets(3)
    assert c.run(ts, 2) is False
    assert [t.outcome for t in ts] == [cancel.CANCELLED] * 3
    assert [r["event"] for r in sink.records] == ["cancelled"] * 3
    assert [t.entry.trigger_time for t in ts][::-1] == [int(i.rsplit("-", 1)[1]) for i in client.cancels]


def test_canceller_unknown_answer_then_lookup_shows_cancel_is_recorded_cancelled() -> None:
    client = ScriptedCancels([UNKNOWN], state=protocol.CANCEL)
    c, sink = canceller(client)
    (t,) = targets(1)
    c.run([t], 1)
    assert t.outcome == cancel.CANCELLED and len(client.cancels) == cancel.CANCEL_TRIES
    assert [r["event"] for r in sink.records] == ["cancelled"]


def test_canceller_auth_failure_stops_every_other_cancel_unsent() -> None:
    client = ScriptedCancels([enos.Answer(enos.Kind.AUTH, 401, "HTTP 401")], state=protocol.RUNNING)
    c, sink = canceller(client)
    ts = targets(3)
    c.run(ts, 1)
    assert len(client.cancels) == 1 and not sink.records
    assert sorted(t.outcome for t in ts) == [cancel.FAILED, cancel.NOT_SENT, cancel.NOT_SENT]


def test_finding_1_a_bug_in_a_cancel_worker_raises_internal_error() -> None:
    client = ScriptedCancels([enos.Answer(enos.Kind.OK, 0, "ok")])
    c, _ = canceller(client)
    c.record = lambda t: 1 / 0  # type: ignore[method-assign,assignment,return-value]
    with pytest.raises(runs.InternalError, match="ZeroDivisionError"):
        c.run(targets(2), 1)


# -- exit 70 through the command line, one line each ------------------------------------------


@pytest.fixture
def applied(tmp_path: Path, run, sim_env) -> Any:
    with Simulator([SimFlow(1, run_seconds=60)], accept_unknown_flows=True) as s:
        plan = write_plan(tmp_path, cron_flows(1, 2), gateway=s.url)
        assert run("apply", str(plan), "--yes", "--quiet").code == 0
        yield plan


def _one_bug_line(err: str) -> None:
    lines = [x for x in err.splitlines() if "internal error" in x]
    assert len(lines) == 1 and "ZeroDivisionError" in lines[0], err
    assert "Traceback" not in err


def test_finding_1_a_bug_in_a_status_lookup_worker_exits_70(applied: Path, run, monkeypatch) -> None:
    monkeypatch.setattr(lookup, "look_up_many", lambda *a: 1 / 0)
    r = run("status", str(applied))
    assert r.code == 70
    _one_bug_line(r.err)


def test_finding_1_a_bug_in_a_cancel_worker_exits_70(applied: Path, run, monkeypatch) -> None:
    monkeypatch.setattr(cancel.Canceller, "cancel", lambda self, t: 1 / 0)
    r = run("cancel", str(applied), "--yes")
    assert r.code == 70
    _one_bug_line(r.err)
