"""Reruns of failed entries end to end (issue 22, DESIGN 13): apply against the simulator,
whose fixture ``fails`` names the trigger times whose instances end FAIL."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from planrunner.sim import SimFlow, Simulator
from testing import apply_json, write_plan

DAY = 86_400_000
MIN = 60_000
T0 = 1767578400000  # 2026-01-05T02:00:00Z
FLOW = '  - {{name: daily, flowId: 7, cron: "0 2 * * *", from: 2026-01-05, count: {n}{extra}}}\n'


def plan_of(tmp_path: Path, n: int = 5, extra: str = "") -> Path:
    return write_plan(tmp_path, FLOW.format(n=n, extra=extra), server_zone="GMT+8")


def settle(sim: Simulator, count: int, timeout: float = 20.0) -> None:
    """Wait until the simulator's ``count`` instances have all ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flows = sim.flows()
        if flows and all(f["instances"] >= count for f in flows.values()):
            time.sleep(0.3)
            return
        time.sleep(0.05)


def created(sim: Simulator) -> list[tuple[int, int]]:
    """(flowId, triggerTime) of every instance the simulator created, in order."""
    return [(t["flowId"], t["triggerTime"]) for t in sim.triggers() if t["flowInstanceId"]]


def statuses(doc: Any) -> dict[int, tuple[str, str | None]]:
    return {e["triggerTime"]: (e["status"], e["error"]) for e in doc["entries"]}


def test_i22_rerun_failed_1_makes_one_more_instance_per_failed_entry_at_the_next_free_minute(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    failed = [T0 + DAY, T0 + 3 * DAY]
    plan = plan_of(tmp_path)
    with Simulator([SimFlow(7, run_seconds=0.05, fails=failed)]) as sim:
        r, doc = apply_json(run, plan, sim.url)
        assert r.code == 0, r.err
        time.sleep(1.0)  # the instances end (two of them FAIL)
        r, doc = apply_json(run, plan, sim.url, "--rerun-failed", "1")
        assert r.code == 0, r.err
        assert doc["summary"] == {"rerun": 2, "skipped": 3}
        got = statuses(doc)
        assert [t for t, (st, _) in got.items() if st == "rerun"] == failed
        first = [(7, T0 + d * DAY) for d in range(5)]
        # One more instance per failed entry, at the minute after its trigger time (free).
        assert created(sim) == [*first, (7, failed[0] + MIN), (7, failed[1] + MIN)]
        time.sleep(1.0)
        r, doc = apply_json(run, plan, sim.url, "--rerun-failed", "1")
        assert r.code == 0, r.err
        assert doc["summary"] == {"skipped": 5}
        assert len(created(sim)) == 7  # a second apply creates none
    records = [json.loads(line) for line in plan.with_suffix(".ledger.jsonl").read_text().splitlines()]
    reruns = [(rec["event"], rec["round"], rec["sentTime"]) for rec in records if "round" in rec]
    assert sorted(reruns) == sorted(
        [(ev, 1, t + MIN) for t in failed for ev in ("intent", "triggered")]
    )


def test_i22_a_rerun_that_fails_again_gets_the_next_round_only_while_rounds_are_left(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    plan = plan_of(tmp_path, n=2, extra=", rerunFailed: 2")
    bad = T0 + DAY
    with Simulator([SimFlow(7, run_seconds=0.05, fails=[bad, bad + MIN, bad + 2 * MIN])]) as sim:
        for _ in range(4):
            r, _doc = apply_json(run, plan, sim.url)
            assert r.code == 0, r.err
            time.sleep(1.0)
        # The plan's rerunFailed 2: rounds 1 and 2 at the next minutes, then none.
        assert created(sim) == [(7, T0), (7, bad), (7, bad + MIN), (7, bad + 2 * MIN)]
        # The option wins over the plan's key: one more round.
        r, doc = apply_json(run, plan, sim.url, "--rerun-failed", "3")
        assert r.code == 0, r.err
        assert created(sim)[-1] == (7, bad + 3 * MIN)
        assert statuses(doc)[bad][0] == "rerun"


def test_i22_no_free_minute_in_the_hour_is_reported_and_nothing_is_sent(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    # Every minute of 10:00-10:59 UTC (18:00-18:59 in the server zone, GMT+8) is an entry of
    # the plan: a failed one has no free minute.
    hour = T0 + 8 * 3_600_000  # 2026-01-05T10:00Z
    flows = '  - {name: busy, flowId: 9, cron: "* 10 * * *", from: 2026-01-05, count: 60}\n'
    plan = write_plan(tmp_path, flows, server_zone="GMT+8")
    with Simulator([SimFlow(9, run_seconds=0.01, fails=[hour + 30 * MIN])]) as sim:
        r, _doc = apply_json(run, plan, sim.url, "--concurrency", "1")
        assert r.code == 0, r.err
        time.sleep(2.0)
        r, doc = apply_json(run, plan, sim.url, "--rerun-failed", "1")
        assert len(created(sim)) == 60
    assert r.code == 1, r.err
    assert statuses(doc)[hour + 30 * MIN] == ("failed", "cannot rerun: no free minute in 18:00-18:59")
    assert doc["summary"] == {"skipped": 59, "failed": 1}


def test_i22_status_follows_each_entrys_newest_round(tmp_path: Path, run: Any, sim_env: None) -> None:
    bad = T0 + DAY
    plan = plan_of(tmp_path, n=3)
    with Simulator([SimFlow(7, run_seconds=0.05, fails=[bad])]) as sim:
        assert apply_json(run, plan, sim.url)[0].code == 0
        time.sleep(1.0)
        before = run("status", str(plan), "--gateway", sim.url, "--format", "json")
        assert before.code == 1  # round 0 of one entry ended FAIL
        r, _doc = apply_json(run, plan, sim.url, "--rerun-failed", "1")
        assert r.code == 0, r.err
        time.sleep(1.0)
        after = run("status", str(plan), "--gateway", sim.url, "--format", "json")
    assert after.code == 0, after.out[-2000:]  # the rerun (round 1) succeeded: that is what counts
    assert json.loads(after.out)["summary"] == {"SUCCESS": 3}
    assert json.loads(before.out)["summary"] == {"SUCCESS": 2, "FAIL": 1}


def test_i22_cancel_cancels_the_newest_rounds_instance_and_it_is_never_rerun(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    plan = plan_of(tmp_path, n=1)
    with Simulator([SimFlow(7, run_seconds=2.0, fails=[T0])]) as sim:
        assert apply_json(run, plan, sim.url)[0].code == 0
        time.sleep(2.6)  # round 0 ends FAIL
        r, doc = apply_json(run, plan, sim.url, "--rerun-failed", "2")
        assert statuses(doc)[T0][0] == "rerun", r.err
        rerun_id = doc["entries"][0]["flowInstanceId"]
        assert rerun_id and rerun_id != "7-20260105020000"
        c = run("cancel", str(plan), "--gateway", sim.url, "--yes")
        assert c.code == 0, c.err
        assert "1 cancelled" in c.out
        time.sleep(0.5)
        r, doc = apply_json(run, plan, sim.url, "--rerun-failed", "2")
        assert r.code == 0, r.err
        assert doc["summary"] == {"skipped": 1}  # cancelled: never rerun, rounds left or not
        assert created(sim) == [(7, T0), (7, T0 + MIN)]
    records = [json.loads(line) for line in plan.with_suffix(".ledger.jsonl").read_text().splitlines()]
    cancels = [rec for rec in records if rec["event"] == "cancelled"]
    assert [(c.get("round"), c.get("sentTime"), c["flowInstanceId"]) for c in cancels] == [
        (1, T0 + MIN, rerun_id)
    ]


def test_i22_with_wait_one_apply_reruns_failures_as_the_instances_end(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    failed = [T0 + DAY, T0 + 3 * DAY]
    plan = plan_of(tmp_path, n=4)
    with Simulator([SimFlow(7, run_seconds=0.2, fails=[*failed, failed[0] + MIN])]) as sim:
        r, doc = apply_json(run, plan, sim.url, "--rerun-failed", "2", "--wait", "--interval", "0.2")
        assert r.code == 0, r.err
        # Polled until final: each failure rerun at the next minute, and the first one's
        # rerun failed too, so it got its second round in the same apply.
        assert created(sim) == [
            *[(7, T0 + d * DAY) for d in range(4)],
            (7, failed[0] + MIN), (7, failed[1] + MIN), (7, failed[0] + 2 * MIN),
        ]  # fmt: skip
        assert statuses(doc)[failed[0]][0] == "rerun" and doc["summary"] == {"triggered": 2, "rerun": 2}


def test_i22_two_reruns_in_one_hour_never_share_a_minute(tmp_path: Path, run: Any, sim_env: None) -> None:
    # Entries at 10:00 and 10:01 both fail: 10:01 is an entry, so the first rerun takes 10:02,
    # and the second one, whose next minute is now taken by that rerun, 10:03.
    flows = '  - {name: pair, flowId: 5, cron: "0,1 10 * * *", from: 2026-01-05, count: 2}\n'
    plan = write_plan(tmp_path, flows, server_zone="GMT+8")
    ten = T0 + 8 * 3_600_000
    with Simulator([SimFlow(5, run_seconds=0.01, fails=[ten, ten + MIN])]) as sim:
        assert apply_json(run, plan, sim.url)[0].code == 0
        time.sleep(1.0)
        r, doc = apply_json(run, plan, sim.url, "--rerun-failed", "1")
        assert r.code == 0, r.err
        assert created(sim)[2:] == [(5, ten + 2 * MIN), (5, ten + 3 * MIN)]
        assert doc["summary"] == {"rerun": 2}


def test_i22_an_instance_of_the_flow_on_the_service_takes_its_minute_other_flows_do_not(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    from testing import make_client

    plan = plan_of(tmp_path, n=1)
    # Other flows' instances whose ids share the flow's prefix, in the next minute: not taken.
    with Simulator([SimFlow(7, run_seconds=0.01, fails=[T0, T0 + MIN])], crowd=[(7, T0 + MIN, 5)]) as sim:
        assert apply_json(run, plan, sim.url)[0].code == 0
        # Another runner (or the flow's own schedule) made an instance of flow 7 at 02:02.
        assert make_client(sim.url).trigger(7, T0 + 2 * MIN + 5_000).flow_instance_id
        time.sleep(1.0)
        r, _doc = apply_json(run, plan, sim.url, "--rerun-failed", "1")
        assert r.code == 0, r.err
        assert [t for f, t in created(sim) if f == 7][-1] == T0 + MIN  # 02:01: the crowd is not flow 7
        time.sleep(1.0)  # the rerun at 02:01 fails too
        r, _doc = apply_json(run, plan, sim.url, "--rerun-failed", "2")
        assert r.code == 0, r.err
        # The second round skips 02:02 (flow 7's instance there) and takes 02:03.
        assert [t for f, t in created(sim) if f == 7][-1] == T0 + 3 * MIN


def test_i22_apply_that_may_rerun_wants_yes_when_stdin_is_not_a_terminal(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    plan = plan_of(tmp_path, n=2)
    with Simulator([SimFlow(7, run_seconds=0.01, fails=[T0])]) as sim:
        assert apply_json(run, plan, sim.url)[0].code == 0
        time.sleep(0.5)
        # Every entry is done: without reruns there is nothing to do (exit 0, no question)...
        assert run("apply", str(plan), "--gateway", sim.url).code == 0
        # ...with them, done entries may be sent again: apply asks, or wants --yes.
        r = run("apply", str(plan), "--gateway", sim.url, "--rerun-failed", "1")
        assert r.code == 2 and "refusing to apply without --yes" in r.err
        assert len(created(sim)) == 2
