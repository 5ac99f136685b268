"""Issue 20-22, simulator: tasks inside instances, Get Task Instance Log, Update And Trigger.

Over loopback HTTP against the real simulator, requests built by hand (test_sim_protocol's
``Api``), never with planrunner's client.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from planrunner import protocol as P
from planrunner.errors import UsageError
from planrunner.sim import Dialect, SimFlow, load_flows
from tests.sim.test_protocol import T0, Api, simulator

SETTLE = 10.0  # seconds: the longest a test waits for instances to end


def graph_tasks(api: Api, iid: str) -> list[dict[str, Any]]:
    data = api.get(iid)["data"]
    tasks: list[dict[str, Any]] = json.loads(data["graph"])["tasks"]
    return tasks


def until_final(api: Api, iid: str) -> dict[str, Any]:
    deadline = time.monotonic() + SETTLE
    while True:
        data: dict[str, Any] = api.get(iid)["data"]
        if data["status"] in P.FINAL_STATUSES or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


# --- item 1: tasks inside instances -----------------------------------------------------------


def test_i20_tasks_in_the_graph_carry_ids_and_statuses_that_move_with_the_instance() -> None:
    flows = [SimFlow(7, tasks=3, run_seconds=6), SimFlow(8, tasks=2, run_seconds=0.05)]
    with simulator(flows) as (_sim, api):
        iid = api.created(7, T0)
        first = graph_tasks(api, iid)
        assert [t["taskName"] for t in first] == ["task-1", "task-2", "task-3"]
        assert [t["nodeId"] for t in first] == ["node_1", "node_2", "node_3"]
        assert all(t["task_inst_id"] == f"{t['taskId']}-{iid.split('-')[1]}" for t in first)
        assert first[0]["status"] in ("INIT", "RUNNING") and first[2]["status"] == "INIT"
        deadline = time.monotonic() + SETTLE
        statuses: tuple[str, ...] = ()
        while time.monotonic() < deadline and (not statuses or statuses[1] != "RUNNING"):
            statuses = tuple(t["status"] for t in graph_tasks(api, iid))
            time.sleep(0.05)
        assert statuses == ("SUCCESS", "RUNNING", "INIT")  # one task at a time, in order
        assert api.get(iid)["data"]["status"] == P.RUNNING
        done = api.created(8, T0)
        assert until_final(api, done)["status"] == P.SUCCESS
        assert [t["status"] for t in graph_tasks(api, done)] == ["SUCCESS", "SUCCESS"]


def test_i20_a_failed_instance_names_exactly_one_fail_task_after_the_successes() -> None:
    flows = [SimFlow(7, tasks=3, run_seconds=0.15, fails=[T0])]
    with simulator(flows) as (_sim, api):
        failed, other = api.created(7, T0), api.created(7, T0 + 60_000)
        assert until_final(api, failed)["status"] == P.FAIL
        assert [t["status"] for t in graph_tasks(api, failed)] == ["SUCCESS", "SUCCESS", "FAIL"]
        assert until_final(api, other)["status"] == P.SUCCESS
        assert [t["status"] for t in graph_tasks(api, other)] == ["SUCCESS"] * 3


def test_i20_no_task_refuses_with_62104_and_has_task_false_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "flows.yaml"
    path.write_text("- {flowId: 7, hasTask: false}\n- {flowId: 8, tasks: 0}\n- {flowId: 9}\n")
    flows = load_flows(str(path))
    assert [f.tasks for f in flows] == [0, 0, 1]
    with simulator(flows) as (_sim, api):
        assert api.code(api.trigger(7, T0)) == 62104
        assert api.code(api.trigger(8, T0)) == 62104
        assert api.code(api.trigger(9, T0)) == 0
    path.write_text("- {flowId: 7, hasTask: false, tasks: 2}\n")
    with pytest.raises(UsageError, match=r"1:24: hasTask: false \(deprecated\) contradicts tasks"):
        load_flows(str(path))


# --- Get Task Instance Log --------------------------------------------------------------------


def test_i20_get_log_of_a_failed_task_ends_in_an_error_line() -> None:
    flows = [SimFlow(7, tasks=2, run_seconds=0.1, fails=[T0])]
    with simulator(flows) as (_sim, api):
        iid = api.created(7, T0)
        until_final(api, iid)
        ok_task, bad_task = graph_tasks(api, iid)
        good = api.get_log(ok_task["task_inst_id"])
        assert good["status"] == 0
        assert good["data"]["log"].splitlines()[-1] == "[INFO] exit code 0"
        bad = api.get_log(bad_task["task_inst_id"])["data"]["log"]
        assert bad.splitlines()[-1] == "[ERROR] task-2 ended FAIL: exit code 1"
        assert f"instance:\t{bad_task['task_inst_id']}" in bad
        assert api.get_log(bad_task["task_inst_id"]) == api.get_log(bad_task["task_inst_id"])


@pytest.mark.parametrize("keep", ["start", "end"])
def test_i20_get_log_max_length_keeps_the_dialects_end(keep: str) -> None:
    flows = [SimFlow(7, run_seconds=0.05, fails=[T0])]
    with simulator(flows, dialect=Dialect(log_keep=keep)) as (_sim, api):
        iid = api.created(7, T0)
        until_final(api, iid)
        task = graph_tasks(api, iid)[0]["task_inst_id"]
        whole = api.get_log(task)["data"]["log"]
        cut = api.get_log(task, 40)["data"]["log"]
        assert len(cut) == 40 and len(whole) > 40
        assert cut == (whole[:40] if keep == "start" else whole[-40:])


def test_i20_get_log_unknown_id_is_62102_and_a_task_not_started_is_62109() -> None:
    flows = [SimFlow(7, tasks=2, run_seconds=30)]
    with simulator(flows) as (_sim, api):
        iid = api.created(7, T0)
        time.sleep(0.1)
        first, second = graph_tasks(api, iid)
        assert first["status"] == "RUNNING" and second["status"] == "INIT"
        assert api.get_log(second["task_inst_id"]) == {
            "status": 62109, "msg": "No log found", "data": None
        }  # fmt: skip
        running = api.get_log(first["task_inst_id"])["data"]["log"]
        assert running.splitlines()[-1] == "[INFO] task-1: processing"
        assert api.get_log("123-20260101000000") == {
            "status": 62102, "msg": "Instance not found", "data": None
        }  # fmt: skip


def test_i20_a_cancelled_instances_running_task_is_cancel() -> None:
    flows = [SimFlow(7, tasks=2, run_seconds=30)]
    with simulator(flows) as (_sim, api):
        iid = api.created(7, T0)
        time.sleep(0.1)
        assert api.cancel(iid)["status"] == 0
        assert [t["status"] for t in graph_tasks(api, iid)] == ["CANCEL", "INIT"]


# --- item 2: Update And Trigger Flow ----------------------------------------------------------

PAIRS = [{"key": "REPLACE", "value": "ddee"}, {"key": "calDt", "value": "2026-01-01"}]
FORMS: dict[str, Any] = {
    "list": PAIRS,
    "map": {"REPLACE": "ddee", "calDt": "2026-01-01"},
    "string": json.dumps(PAIRS),
}


@pytest.mark.parametrize("form", ["list", "map", "string"])
def test_i21_update_and_trigger_accepts_only_the_dialects_form(form: str) -> None:
    flows = [SimFlow(7, run_seconds=0.05)]
    with simulator(flows, dialect=Dialect(parameters=form)) as (sim, api):
        for n, (other, value) in enumerate(FORMS.items()):
            answer = api.update_and_trigger(7, T0 + n * 60_000, value)
            if other == form:
                assert answer["status"] == 0, answer
                iid = answer["data"]["flowInstanceId"]
            else:
                assert answer == {"status": 62102, "msg": "Incorrect parameter", "data": None}
        missing = api.call(
            "POST", api.v.flows, {"action": "updateAndTrigger", "userId": "u1", "orgId": "o1"},
            {"flowId": 7, "triggerTime": T0 + 600_000},
        ).json()  # fmt: skip
        assert missing["status"] == 62102
        log = sim.triggers()
    wanted = {"REPLACE": "ddee", "calDt": "2026-01-01"}
    assert [t["parameters"] for t in log] == [
        wanted if other == form else None for other in FORMS
    ] + [None]
    assert [bool(t["flowInstanceId"]) for t in log] == [o == form for o in FORMS] + [False]
    assert iid == P.instance_id(7, T0 + list(FORMS).index(form) * 60_000)


def test_i21_update_and_trigger_instance_shows_its_parameters_and_shares_the_minute_rule() -> None:
    flows = [SimFlow(7, run_seconds=0.05)]
    with simulator(flows) as (sim, api):
        answer = api.update_and_trigger(7, T0, PAIRS)
        iid = answer["data"]["flowInstanceId"]
        assert json.loads(api.get(iid)["data"]["parameters"]) == PAIRS
        assert api.code(api.trigger(7, T0 + 5_000)) == 62102  # the same minute
        again = api.update_and_trigger(7, T0 + 1_000, PAIRS)
        assert again["status"] == 62102
        plain = api.created(7, T0 + 60_000)
        assert json.loads(api.get(plain)["data"]["parameters"]) == []
        assert [t["parameters"] for t in sim.triggers()] == [
            {"REPLACE": "ddee", "calDt": "2026-01-01"}, None,
            {"REPLACE": "ddee", "calDt": "2026-01-01"}, None,
        ]  # fmt: skip


def test_i21_update_and_trigger_has_trigger_flows_checks() -> None:
    flows = [SimFlow(7, users=("u1",), org_id="o1"), SimFlow(8, tasks=0), SimFlow(9, locked=True)]
    with simulator(flows) as (_sim, api):
        assert api.update_and_trigger(7, T0, PAIRS, user="u2")["status"] == 62103
        assert api.update_and_trigger(7, T0, PAIRS, org="o2")["status"] == 62101
        assert api.update_and_trigger(8, T0, PAIRS)["status"] == 62104
        assert api.update_and_trigger(9, T0, PAIRS)["status"] == 62105
        assert api.update_and_trigger(10, T0, PAIRS)["msg"].startswith("Cannot create workflow")


def test_i21_update_and_trigger_on_v21() -> None:
    with simulator([SimFlow(7)], dialect=Dialect(api="v2.1")) as (_sim, api):
        answer = api.update_and_trigger(7, T0, PAIRS)
        assert answer["code"] == 0 and answer["data"] == {"flowInstanceId": "7-20260101000000"}
