"""plan --refresh (issue 22, DESIGN 13): read-only lookups of each done entry's instance and
the reruns the next apply will make, in text, JSON and markdown; and "applied with other
parameters" in plain plan."""

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
FLOW = '  - {{name: daily, flowId: 7, cron: "0 2 * * *", from: 2026-01-05, count: 4{extra}}}\n'


def test_i22_plan_refresh_shows_the_reruns_the_next_apply_makes_and_writes_nothing(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    failed = [T0 + DAY, T0 + 2 * DAY]
    plan = write_plan(tmp_path, FLOW.format(extra=""), server_zone="GMT+8")
    ledger = plan.with_suffix(".ledger.jsonl")
    with Simulator([SimFlow(7, run_seconds=0.05, fails=failed)]) as sim:
        assert apply_json(run, plan, sim.url)[0].code == 0
        time.sleep(1.0)
        before, sent = ledger.read_bytes(), len(sim.triggers())
        r = run("plan", str(plan), "--refresh", "--rerun-failed", "1", "--gateway", sim.url, "--format", "json")
        assert r.code == 0, r.err
        doc = json.loads(r.out)
        assert ledger.read_bytes() == before and len(sim.triggers()) == sent  # read-only
        byt = {e["triggerTime"]: e for e in doc["entries"]}
        assert [t for t, e in byt.items() if e["status"] == "rerun"] == failed
        for t in failed:
            assert byt[t]["refresh"]["instance"] == "FAIL"
            assert byt[t]["refresh"]["rerun"]["sentTime"] == t + MIN
            assert byt[t]["refresh"]["rerun"]["round"] == 1
        assert byt[T0]["refresh"] == {
            "instance": "SUCCESS", "flowInstanceId": "7-20260105020000", "round": 0,
            "rerun": None, "cannotRerun": None,
        }  # fmt: skip
        assert doc["summary"] == {"done": 2, "rerun": 2}
        text = run("plan", str(plan), "--refresh", "--rerun-failed", "1", "--gateway", sim.url)
        assert "the next apply reruns 2." in text.out
        assert "FAIL, rerun at 2026-01-06T02:01:00+00:00 (round 1)" in text.out
        md = run("plan", str(plan), "--refresh", "--rerun-failed", "1", "--gateway", sim.url, "--format", "markdown")
        assert "the next apply reruns **2**" in md.out and "rerun at 2026-01-07T02:01:00+00:00" in md.out
        # Without --rerun-failed (and no rerunFailed in the plan) nothing would be rerun.
        none = json.loads(run("plan", str(plan), "--refresh", "--gateway", sim.url, "--format", "json").out)
        assert none["summary"] == {"done": 4}
        # What plan --refresh showed is what apply does.
        r, _doc = apply_json(run, plan, sim.url, "--rerun-failed", "1")
        assert r.code == 0, r.err
        made = [(t["triggerTime"]) for t in sim.triggers() if t["flowInstanceId"]][4:]
        assert made == [t + MIN for t in failed]


def test_i22_refresh_options_are_refused_without_refresh(tmp_path: Path, run: Any) -> None:
    plan = write_plan(tmp_path, FLOW.format(extra=""), server_zone="GMT+8")
    r = run("plan", str(plan), "--rerun-failed", "1")
    assert r.code == 2 and "only with --refresh" in r.err
    r = run("plan", str(plan), "--refresh", "--out", str(tmp_path / "saved.json"))
    assert r.code == 2 and "--refresh: not with --out" in r.err


def test_i22_plan_lists_entries_applied_with_other_parameters(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    extra = ', parameters: {out: "/data/{calDt}"}'
    plan = write_plan(tmp_path, FLOW.format(extra=extra), server_zone="GMT+8")
    with Simulator([SimFlow(7, run_seconds=0.01)]) as sim:
        assert apply_json(run, plan, sim.url)[0].code == 0
    records = [json.loads(x) for x in plan.with_suffix(".ledger.jsonl").read_text().splitlines()]
    intents = [rec for rec in records if rec["event"] == "intent"]
    # The intent (durable before its request) carries what Update And Trigger sends.
    assert intents[0]["parameters"] == {"out": "/data/2026-01-04"} and len(intents) == 4
    same = json.loads(run("plan", str(plan), "--format", "json").out)
    assert "changedParameters" not in same  # only when some entries were
    plan.write_text(plan.read_text().replace("/data/{calDt}", "/v2/{calDt}"))
    doc = json.loads(run("plan", str(plan), "--format", "json").out)
    assert doc["changedParameters"] == [f"o1/7/{T0 + d * DAY}" for d in range(4)]
    text = run("plan", str(plan)).out
    assert "4 entries were applied with other parameters than the plan's now" in text
