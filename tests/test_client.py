"""The client's additions: Get Flow read as a FlowInfo, a failed instance's task, lenient
token and Get answers (W8, W10), one limiter for every signed call, the calls it counts,
and the stop once the gateway's quota is used up or it refuses this client (W4, W6)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from planrunner import answers, enos, protocol, transport
from planrunner.rate import RateLimiter
from planrunner.sim import Faults, SimFlow, Simulator
from testing import cron_flows, make_client, write_plan

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z

# -- Get Flow and the instance graph ------------------------------------------------------------

GRAPH = {"tasks": [{"taskId": "t1", "taskName": "load", "nodeId": "n1"}, {"taskId": "t2", "taskName": "sum"}]}


@pytest.mark.parametrize(
    "graph", [json.dumps(GRAPH), GRAPH], ids=["graph-as-json-string", "graph-as-object"]
)
def test_w3_read_flow_takes_owners_as_usernames_and_tasks_from_the_graph(graph: object) -> None:
    data = {
        "flowId": 3377,
        "flowName": "daily",
        "owner": ";alice;bob;",
        "locked": False,
        "isUserLocked": False,
        "active": 1,
        "type": 0,
        "graph": graph,
    }
    info = protocol.read_flow(data)
    assert info == protocol.FlowInfo(3377, "daily", ("alice", "bob"), False, False, 1, 0, ("load", "sum"))
    assert protocol.read_flow([data]) == info  # a one-element list is read as its element
    assert protocol.flow_refusal(info) is None


@pytest.mark.parametrize("data", [None, {}, [], "", {"flowName": "x"}, {"flowId": True}, [{}, {}]])
def test_w1_read_flow_is_none_for_missing_or_empty_data(data: object) -> None:
    assert protocol.read_flow(data) is None
    assert protocol.flow_refusal(None) == "does not exist or is not visible"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"locked": True}, "flow is locked"),
        ({"isUserLocked": "true"}, "user is locked"),
        ({"graph": json.dumps({"tasks": []})}, "flow has no task"),
        ({"graph": "not json"}, "flow has no task"),
    ],
)
def test_w1_flow_refusal_names_why_a_flow_is_refused(changes: dict[str, object], reason: str) -> None:
    data = {"flowId": 1, "flowName": "f", "owner": ";a;", "graph": json.dumps(GRAPH), **changes}
    assert protocol.flow_refusal(protocol.read_flow(data)) == reason


def test_read_flow_takes_top_level_tasks_when_there_is_no_graph() -> None:
    info = protocol.read_flow({"flowId": "12", "tasks": [{"taskName": "only"}], "owner": None})
    assert info is not None and info.flow_id == 12 and info.tasks == ("only",) and info.owners == ()


def test_failed_task_is_the_first_task_whose_status_failed() -> None:
    tasks = [
        {"taskId": "a", "taskName": "load", "task_inst_id": "ti-1", "status": "SUCCESS"},
        {"taskId": "b", "taskName": "sum", "task_inst_id": "ti-2", "status": "TIMEOUT"},
        {"taskId": "c", "taskName": "push", "task_inst_id": "ti-3", "status": "FAIL"},
    ]
    assert protocol.failed_task({"graph": json.dumps({"tasks": tasks})}) == ("ti-2", "sum")
    assert protocol.failed_task({"graph": {"tasks": [{**tasks[0], "status": -1}]}}) == ("ti-1", "load")
    assert protocol.failed_task({"graph": {"tasks": tasks[:1]}}) is None
    assert protocol.failed_task({"graph": None}) is None
    assert protocol.failed_task({}) is None


# -- lenient answers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"msg": "SUCCESS", "data": {"accessToken": "tok", "expire": 7200}},
        {"stauts": 0, "msg": "SUCCESS", "data": {"accessToken": "tok", "expire": 7200}},
    ],
    ids=["no-status", "stauts"],
)
def test_w10_a_token_answer_with_an_access_token_and_no_status_is_accepted(body: dict[str, object]) -> None:
    reply = transport.Reply(200, None, json.dumps(body).encode())
    answer = answers.classify(reply, "token", str)
    assert answer.kind is enos.Kind.OK and answer.data["accessToken"] == "tok"
    # Only token answers are read so leniently: a service answer without a code is unknown.
    assert answers.classify(reply, "lookup", str).kind is enos.Kind.UNKNOWN


def test_w10_a_misspelt_token_error_keeps_its_code() -> None:
    reply = transport.Reply(200, None, json.dumps({"stauts": 1003, "msg": "bad"}).encode())
    answer = answers.classify(reply, "token", str)
    assert answer.kind is enos.Kind.AUTH and answer.code == 1003


def test_no_log_found_is_a_final_answer_to_get_task_log() -> None:
    reply = transport.Reply(200, None, json.dumps({"status": 62109, "msg": "No log found"}).encode())
    assert answers.classify(reply, "log", str).kind is enos.Kind.PERMANENT
    assert answers.classify(reply, "lookup", str).kind is enos.Kind.RETRYABLE


# -- counting and pacing every signed call ------------------------------------------------------


def test_calls_are_counted_per_operation(sim) -> None:
    client = make_client(sim.url)
    assert client.trigger(3377, T0).kind is enos.Kind.OK
    client.get_instance(protocol.instance_id(3377, T0))
    client.search_instances(T0, T0 + 60_000)
    client.search_instances(T0, T0 + 60_000, type_=protocol.TYPE_TEMPORARY)
    client.get_time_zone()
    assert client.calls == {
        "flows.trigger": 1,
        "flowInstances.get": 1,
        "flowInstances.search": 2,
        "time.getTimeZone": 1,
    }


def test_w4_lookups_wait_for_the_one_limiter_and_feed_its_429s_back() -> None:
    with Simulator(rate_limit=20) as s:
        client = make_client(s.url, lookup_backoff_cap=0.01)
        results = []
        threads = [
            threading.Thread(target=lambda: results.append(client.search_instances(T0, T0 + 60_000)))
            for _ in range(60)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert all(r.kind is enos.Kind.OK for r in results), {r.msg for r in results}
    assert client.limiter.throttles > 0 and client.limiter.rate is not None  # it learned a rate
    assert client.calls["flowInstances.search"] == 60 + client.limiter.throttles


def test_a_slot_waited_for_is_taken_by_the_threads_next_call() -> None:
    limiter = RateLimiter(10.0)
    stop = threading.Event()
    waited = limiter.wait(stop)
    assert limiter.take(stop) is waited  # the call after the wait does not wait again
    later = limiter.take(stop)
    assert later is not None and waited is not None and later.at > waited.at


# -- stopping: the quota is used up, or the gateway refuses this client -------------------------


def test_w6_403_on_every_call_stops_the_client_and_nothing_more_is_sent() -> None:
    with Simulator([SimFlow(1)], faults=Faults(rates={"http-403": 1.0})) as s:
        client = make_client(s.url, not_allowed_seconds=0.3)
        answer = client.trigger(1, T0)
        while answer.kind is not enos.Kind.STOPPED:
            assert answer.http_status == 403
            answer = client.trigger(1, T0)
        sent = len(s.triggers())
        assert client.stopped == (
            "gateway refuses this client: HTTP 403 (IP address not allowed) on every call for 0.3 s"
        )
        assert answer.msg == client.stopped
        later = [client.trigger(1, T0), client.search_instances(T0, T0 + 60_000), client.get_flow(1)]
        assert {a.kind for a in later} == {enos.Kind.STOPPED}
        assert len(s.triggers()) == sent  # nothing left the machine once stopped


def test_w4_only_429_at_the_floor_rate_stops_the_client_as_quota_exhausted() -> None:
    with Simulator([SimFlow(1)], faults=Faults(rates={"http-429": 1.0})) as s:
        client = make_client(s.url, quota_seconds=0.3, limiter=RateLimiter(40.0, floor=20.0))
        kinds = []
        answer = client.trigger(1, T0)
        while answer.kind is not enos.Kind.STOPPED:
            kinds.append((answer.http_status, answer.adapting))
            answer = client.trigger(1, T0)
        assert set(kinds) <= {(429, True), (429, False)} and (429, True) in kinds
        assert client.stopped is not None and client.stopped.startswith(
            "gateway quota exhausted: only HTTP 429 for 0.3 s at the lowest rate; apply again"
        )
        sent = len(s.triggers())
        assert client.get_instance("1-20260101000000").kind is enos.Kind.STOPPED
        assert len(s.triggers()) == sent


def test_a_429_that_clears_never_stops_the_client() -> None:
    # 429 on every other trigger: the rate floors, but the gateway keeps admitting requests.
    with Simulator([SimFlow(1)], faults=Faults(schedule={"http-429": set(range(1, 80, 2))})) as s:
        client = make_client(s.url, quota_seconds=0.05, limiter=RateLimiter(40.0, floor=20.0))
        got = [client.trigger(1, T0 + i * 60_000).kind for i in range(40)]
    assert client.stopped is None and enos.Kind.STOPPED not in got


def test_stop_set_while_waiting_for_a_slot_answers_stopped_unsent() -> None:
    with Simulator() as s:
        client = make_client(s.url, limiter=RateLimiter(0.01))  # one slot per 100 s
        assert client.get_time_zone().kind is enos.Kind.OK
        stop = threading.Event()
        stop.set()
        with client.stopping(stop):
            answer = client.search_instances(T0, T0 + 60_000)
        assert answer.kind is enos.Kind.STOPPED and answer.msg == enos.STOPPED_WAITING
        assert client.calls == {"time.getTimeZone": 1}


def test_w4_apply_stops_on_an_exhausted_quota_leaving_entries_pending(
    tmp_path: Path, run, sim_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(enos.QUOTA_ENV, "0.5")
    plan = write_plan(tmp_path, cron_flows(2, 5))
    with Simulator([SimFlow(1), SimFlow(2)], faults=Faults(rates={"http-429": 1.0})) as s:
        r = run("apply", str(plan), "--gateway", s.url, "--yes", "--format", "json", "--rate", "8")
    assert r.code == 1, r.err[-2000:]
    assert "gateway quota exhausted" in r.err
    summary = json.loads(r.out)["summary"]
    assert summary == {"pending": 10}, summary  # never failed because of 429
