"""Issue 20-22, simulator: unknown flows refused, the vendor's Flow struct, the pacing record
(``/__sim__/flows``) and failures at given trigger times.

Over loopback HTTP against the real simulator, requests built by hand.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from planrunner import protocol as P
from planrunner.errors import UsageError
from planrunner.sim import SimFlow, Simulator, load_flows
from testing import cron_flows, write_plan
from tests.sim.test_protocol import KEY, SECRET, T0, Api, sim_process, simulator
from tests.sim.test_tasks import graph_tasks, until_final

NO_FLOW = (
    "Cannot create workflow instance. Please check if the workflow or task exist, "
    "and do not trigger the same workflow repeatedly in 1 minute"
)


# --- item 3: unknown flows --------------------------------------------------------------------


def test_w1_an_unlisted_flow_is_refused_with_62102_and_get_flow_finds_nothing() -> None:
    with simulator([SimFlow(7)]) as (sim, api):
        assert api.trigger(8, T0).json() == {"status": 62102, "msg": NO_FLOW, "data": None}
        assert api.trigger(8, T0 + 60_000).json()["status"] == 62102  # every time
        assert api.get_flow(8)["status"] == 62102
        assert api.code(api.trigger(7, T0)) == 0
        log = sim.triggers()
    assert [(t["flowId"], t["status"], t["flowInstanceId"]) for t in log] == [
        (8, 62102, None), (8, 62102, None), (7, 0, "7-20260101000000"),
    ]  # fmt: skip


def test_w1_accept_unknown_flows_in_process_and_on_the_command_line() -> None:
    with simulator([], accept_unknown_flows=True) as (_sim, api):
        assert api.code(api.trigger(8, T0, user="anyone", org="any")) == 0
        flow = api.get_flow(8)["data"]
        assert flow["flowId"] == 8 and json.loads(flow["graph"])["tasks"]
    env = {**os.environ, "ENOS_ACCESS_KEY": KEY, "ENOS_SECRET_KEY": SECRET}
    with sim_process(env=env) as url:
        assert Api(url).login().trigger(8, T0).json()["status"] == 62102
    with sim_process("--accept-unknown-flows", env=env) as url:
        assert Api(url).login().trigger(8, T0).json()["status"] == 0


# --- item 4: the vendor's Flow struct ---------------------------------------------------------


def test_w3_get_flow_is_the_vendors_flow_struct(tmp_path: Path) -> None:
    path = tmp_path / "flows.yaml"
    path.write_text(
        "- flowId: 7\n  name: nightly\n  owner: ';alice;bob;'\n  users: [u1, u9]\n"
        "  orgId: o1\n  tasks: 2\n  active: 0\n  type: 1\n  cycle: H\n"
        "  freq: '0 30 * ? * MON-FRI *'\n"
        "- {flowId: 8, owner: [carol], isUserLocked: true}\n"
    )
    flows = load_flows(str(path))
    assert flows[0].owners == ("alice", "bob") and flows[0].users == ("u1", "u9")
    with simulator(flows) as (_sim, api):
        data = api.get_flow(7)["data"]
        assert set(data) >= {
            "flowId", "flowName", "type", "active", "cycle", "freq", "owner", "locked",
            "isUserLocked", "hasEditPri", "hasReadPri", "graph",
        }  # fmt: skip
        assert "hasTask" not in data and "tasks" not in data
        assert (data["owner"], data["active"], data["type"]) == (";alice;bob;", 0, 1)
        assert (data["cycle"], data["freq"], data["locked"]) == ("H", "0 30 * ? * MON-FRI *", False)
        graph = json.loads(data["graph"])
        assert [(t["taskName"], t["nodeId"]) for t in graph["tasks"]] == [
            ("task-1", "node_1"), ("task-2", "node_2"),
        ]  # fmt: skip
        assert all(t["taskId"].isdigit() for t in graph["tasks"])
        other = api.get_flow(8)["data"]
        assert other["owner"] == ";carol;" and other["isUserLocked"] is True
        assert api.trigger(8, T0).json()["status"] == 62105
        assert api.code(api.trigger(7, T0, user="u9")) == 0
        assert api.code(api.trigger(7, T0 + 60_000, user="u2")) == 62103


def test_w3_flow_fixture_refuses_bad_struct_values(tmp_path: Path) -> None:
    path = tmp_path / "flows.yaml"
    for text, message in [
        ("- {flowId: 7, owner: {a: 1}}\n", "1:22: owner must be usernames"),
        ("- {flowId: 7, active: 2}\n", "1:23: active must be an integer 0..1"),
        ("- {flowId: 7, cycle: Y}\n", "1:22: cycle must be one of M, W, D, H, mi"),
        ("- {flowId: 7, freq: '0 0 * * *'}\n", "1:21: freq must be a 7-field Quartz cron"),
        ("- {flowId: 7, tasks: 100}\n", "1:22: tasks must be an integer 0..99"),
        ("- {flowId: 7, fails: [2026-01-01T00:00:00]}\n", "1:22: fails: an ISO 8601 time needs"),
    ]:
        path.write_text(text)
        with pytest.raises(UsageError, match=message):
            load_flows(str(path))


# --- item 5: the pacing record ----------------------------------------------------------------


def test_i22_sim_flows_counts_the_peak_of_unfinished_instances_under_a_queued_backlog() -> None:
    flows = [SimFlow(7, run_seconds=30), SimFlow(8, run_seconds=0.01), SimFlow(9)]
    with simulator(flows) as (sim, api):
        backlog = [api.created(7, T0 + n * 60_000) for n in range(4)]  # one runs, 3 wait
        for iid in reversed(backlog):
            assert api.cancel(iid)["status"] == 0
        for n in range(3):  # each ends before the next is sent
            api.created(8, T0 + n * 60_000)
            until_final(api, P.instance_id(8, T0 + n * 60_000))
        api.created(7, T0 + 10 * 60_000)  # after the backlog is gone
        stats = sim.flows()
    assert stats[7] == {"flowId": 7, "maxUnfinished": 4, "instances": 5}
    assert stats[8] == {"flowId": 8, "maxUnfinished": 1, "instances": 3}
    assert stats[9] == {"flowId": 9, "maxUnfinished": 0, "instances": 0}


# --- item 6: failures at given trigger times --------------------------------------------------


def test_i22_fails_at_listed_trigger_times_only_so_a_rerun_at_another_minute_succeeds(
    tmp_path: Path,
) -> None:
    path = tmp_path / "flows.yaml"
    path.write_text(
        f"- {{flowId: 7, tasks: 2, runSeconds: 0.05, fails: [{T0}, '2026-01-02T08:00:00+08:00']}}\n"
    )
    flows = load_flows(str(path))
    assert flows[0].fail_at == {T0, T0 + 86_400_000}
    with simulator(flows) as (_sim, api):
        failed = api.created(7, T0)
        rerun = api.created(7, T0 + 60_000)
        second_day = api.created(7, T0 + 86_400_000)
        assert until_final(api, failed)["status"] == P.FAIL
        assert until_final(api, rerun)["status"] == P.SUCCESS
        assert until_final(api, second_day)["status"] == P.FAIL
        assert [t["status"] for t in graph_tasks(api, failed)] == ["SUCCESS", "FAIL"]


def test_i22_fails_as_a_list_in_process_and_a_probability_still_works() -> None:
    flow = SimFlow(7, fails=["2026-01-01T00:00:00Z"])
    assert flow.fail_at == {T0} and flow.fail_rate == 0
    with Simulator([SimFlow(7, fails=1.0, run_seconds=0)]) as sim:
        sim.state.service.trigger("u1", "o1", 7, T0)
        time.sleep(0.06)
        assert sim.state.instances["7-20260101000000"].status(time.time()) == P.FAIL


def test_w1_apply_sim_seeds_the_plans_flows_so_none_is_refused(tmp_path: Path, run) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 3, first_id=91_234), zone="UTC")
    r = run("apply", str(plan), "--sim", "--yes", "--format", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["summary"] == {"triggered": 6}
    r = run("status", str(plan), "--sim", "--format", "json")
    assert r.code in (0, 4), r.err


def test_i22_sim_flows_peak_leaves_out_cancelled_instances() -> None:
    with simulator([SimFlow(7, run_seconds=30)]) as (sim, api):
        ids = [api.created(7, T0 + n * 60_000) for n in range(3)]  # one runs, two wait
        assert api.cancel(ids[2])["status"] == 0  # a waiting one
        assert api.cancel(ids[0])["status"] == 0  # the running one
        api.created(7, T0 + 3 * 60_000)
        api.created(7, T0 + 4 * 60_000)
        assert sim.flows()[7] == {"flowId": 7, "maxUnfinished": 3, "instances": 5}
        api.created(7, T0 + 5 * 60_000)
        assert sim.flows()[7]["maxUnfinished"] == 4
