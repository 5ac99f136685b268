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


def test_w4_a_lookup_answered_only_429_waits_for_the_limiter_until_the_quota_stop() -> None:
    with Simulator() as s:
        client = make_client(
            s.url, quota_seconds=0.3, limiter=RateLimiter(40.0, floor=20.0), lookup_tries=2
        )
        client.token()
        s.state.rate_limit = 0.001  # from now on the gateway admits nothing: only 429
        answer = client.search_instances(T0, T0 + 60_000)
    assert answer.kind is enos.Kind.STOPPED
    assert answer.msg == client.stopped and "gateway quota exhausted" in answer.msg
    assert client.calls["flowInstances.search"] > 2  # more 429s than the lookup's two tries


# -- against the simulator's tasks, logs, parameters, instance data and quotas --------------------


def until_final(client: enos.Client, iid: str) -> dict[str, object]:
    import time

    deadline = time.monotonic() + 10
    while True:
        got = client.get_instance(iid)
        if got.data["status"] in protocol.FINAL_STATUSES or time.monotonic() > deadline:
            return dict(got.data)
        time.sleep(0.05)


def test_i21_update_and_trigger_sends_the_list_form_and_is_classified_like_trigger() -> None:
    with Simulator([SimFlow(7, run_seconds=0.05)]) as s:
        client = make_client(s.url)
        answer = client.update_and_trigger(7, T0, {"REPLACE": "ddee", "calDt": "2025-12-31"})
        assert answer.kind is enos.Kind.OK and answer.flow_instance_id == protocol.instance_id(7, T0)
        # The same minute again: 62102 on a trigger is a possible duplicate, as for Trigger Flow.
        assert client.update_and_trigger(7, T0 + 1_000, {"REPLACE": "x"}).kind is enos.Kind.DUPLICATE
        got = client.get_instance(answer.flow_instance_id)
        log = s.triggers()
    assert json.loads(got.data["parameters"]) == [
        {"key": "REPLACE", "value": "ddee"}, {"key": "calDt", "value": "2025-12-31"}
    ]  # fmt: skip
    assert log[0]["parameters"] == {"REPLACE": "ddee", "calDt": "2025-12-31"}
    assert client.calls["flows.updateAndTrigger"] == 2


def test_i20_the_failed_task_of_an_instance_and_its_log() -> None:
    with Simulator([SimFlow(7, tasks=2, run_seconds=0.1, fails=[T0])]) as s:
        client = make_client(s.url)
        iid = client.trigger(7, T0).flow_instance_id
        assert iid is not None
        inst = until_final(client, iid)
        failed = protocol.failed_task(inst)
        assert failed is not None and failed[1] == "task-2"
        log = client.get_task_log(failed[0], 10_000)
        assert log.kind is enos.Kind.OK
        assert log.data["log"].splitlines()[-1] == "[ERROR] task-2 ended FAIL: exit code 1"
        assert client.get_task_log("7-19990101000000", 100).kind is enos.Kind.PERMANENT  # 62102
        assert client.calls["taskInstances.getLog"] == 2  # neither retried


def test_w8_get_flow_instance_data_as_a_one_element_list_is_read_as_the_instance() -> None:
    from planrunner import lookup
    from planrunner.sim import Dialect

    with Simulator([SimFlow(7)], dialect=Dialect(instance_data="list")) as s:
        client = make_client(s.url)
        iid = client.trigger(7, T0).flow_instance_id
        got = client.get_instance(iid or "")
        assert got.kind is enos.Kind.OK and got.data["instanceId"] == iid
        assert lookup.find_instance(client, 7, T0) == enos.Lookup(True, iid)
        assert client.calls.get("flowInstances.search", 0) == 0  # Get sufficed


def test_w1_get_flow_of_the_simulator_reads_as_a_flow_info() -> None:
    with Simulator([SimFlow(7, tasks=2), SimFlow(8, tasks=0), SimFlow(9, locked=True)]) as s:
        client = make_client(s.url)
        infos = {f: protocol.read_flow(client.get_flow(f).data) for f in (7, 8, 9, 10)}
    assert infos[7] is not None and infos[7].tasks == ("task-1", "task-2")
    assert protocol.flow_refusal(infos[7]) is None
    assert protocol.flow_refusal(infos[8]) == "flow has no task"
    assert protocol.flow_refusal(infos[9]) == "flow is locked"
    assert protocol.flow_refusal(infos[10]) == "does not exist or is not visible"


def test_w4_an_hourly_quota_used_up_stops_the_client() -> None:
    from planrunner.sim import Quota

    with Simulator([SimFlow(7)], quotas=[Quota(5, 3600)]) as s:
        client = make_client(s.url, quota_seconds=0.3, limiter=RateLimiter(40.0, floor=20.0))
        answers = [client.trigger(7, T0 + i * 60_000) for i in range(8)]
        while answers[-1].kind is not enos.Kind.STOPPED:
            answers.append(client.trigger(7, T0))
    assert [a.kind for a in answers[:5]] == [enos.Kind.OK] * 5  # the hour's 5 signed calls
    assert {a.http_status for a in answers[5:-1]} == {429}
    assert client.stopped is not None and client.stopped.startswith("gateway quota exhausted")
