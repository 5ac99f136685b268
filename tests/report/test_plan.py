"""The report package: hand-built JSON stays JSON, and plan problems have one wording."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from planrunner import checking, report, saved
from planrunner.outcome import Outcome, Status
from planrunner.select import Selection
from planrunner.sim import Faults, Simulator
from testing import ROOT, apply_json, cron_flows, write_plan

# Names no plan file can hold (the schema allows [A-Za-z0-9._-]), but an orgId from ${VAR},
# a plan's file name or a service's error text can: quotes, backslashes, unicode, controls.
AWKWARD = ['say "hi"', "back\\slash\\", "ünïcødé ✓ 中文", "nul\x00 bell\x07 tab\t nl\n del\x7f", "\u2028sep"]


def _awkward_result(tmp_path: Path, name: str) -> tuple[report.PlanResult, list[Any]]:
    plan_path = write_plan(tmp_path, '  - {name: f, flowId: 7, at: ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]}\n')
    odd = tmp_path / f"{name.replace('/', '_').replace(chr(0), '_')}.yaml"
    odd.write_bytes(plan_path.read_bytes())
    plan, entries = checking.load_entries(str(plan_path), 0, 100)
    plan = plan.__class__(str(odd), plan.target, plan.flows, plan.raw_target)
    entries = [e._replace(flow=name, org_id=name) for e in entries]
    outcomes = {entries[0].key: Outcome(Status.FAILED, name, name)}
    r = report.PlanResult(plan, name, 0, entries, outcomes, orphans=[(name, name, name)], error=name)
    return r, entries


@pytest.mark.parametrize("name", AWKWARD)
def test_cleanup_10_render_json_is_what_json_dumps_says_for_awkward_names(tmp_path: Path, name: str) -> None:
    r, entries = _awkward_result(tmp_path, name)
    expected = {
        "formatVersion": report.FORMAT_VERSION,
        "plan": r.plan.path,
        "ledger": name,
        "now": 0,
        "selection": Selection().as_json(),
        "entries": [
            {
                "flow": name,
                "flowId": 7,
                "orgId": name,
                "triggerTime": e.trigger_time,
                "time": e.local_time,
                "calDt": None,
                "key": f"{name}/7/{e.trigger_time}",
                "parameters": None,
                "status": status,
                "flowInstanceId": iid,
                "error": iid,
            }
            for e, (status, iid) in zip(entries, [("failed", name), ("pending", None)], strict=True)
        ],
        "orphans": [{"key": name, "status": name, "flowInstanceId": name}],
        "summary": {"pending": 1, "failed": 1, "future": 2},  # now is 0: both are ahead
        "error": name,
    }
    text = report.render_json(r)
    assert json.loads(text) == json.loads(json.dumps(expected))
    assert list(json.loads(text)) == list(expected)  # the same fields, in the same order


@pytest.mark.parametrize("name", AWKWARD)
def test_cleanup_10_saved_dumps_is_what_json_dumps_says_for_awkward_names(tmp_path: Path, name: str) -> None:
    r, entries = _awkward_result(tmp_path, name)
    rows = [(e, Status.PENDING) for e in entries]
    data = saved.dumps(r.plan, "ab" * 32, 5, Selection(), 100, rows)
    expected = {
        "kind": saved.KIND,
        "formatVersion": saved.FORMAT_VERSION,
        "plan": r.plan.path,
        "sha256": "ab" * 32,
        "now": 5,
        "target": {
            "gateway": "https://apigw.example.com",
            "orgId": "o1",
            "userId": "u1",
            "api": r.plan.target.api,
        },
        "selection": Selection().as_json(),
        "maxTriggers": 100,
        "flows": saved.flow_settings(r.plan),
        "entries": [
            {
                "key": e.key,
                "flow": name,
                "flowId": 7,
                "triggerTime": e.trigger_time,
                "time": e.local_time,
                "calDt": None,
                "parameters": None,
                "status": "pending",
            }
            for e in entries
        ],
    }
    doc = json.loads(data.decode("utf-8"))
    assert doc == json.loads(json.dumps(expected))
    assert list(doc) == list(expected)
    assert hashlib.sha256(data).hexdigest() == saved.write(str(tmp_path / "s.json"), data)


def test_cleanup_6_doctor_and_ledger_log_word_plan_problems_as_validate_does(run: Any, tmp_path: Path) -> None:
    # One problem renderer: a plan's problems read the same whichever command found them.
    flows = (
        "  - {name: a, flowId: 1, cron: '61 * * * *', from: 2026-01-01, count: 1}\n"
        "  - {name: b, flowId: 2, at: ['2026-01-01T00:00:00Z'], colour: red}\n"
    )
    plan = write_plan(tmp_path, flows)
    checked = run("validate", str(plan))
    assert checked.code == 2
    expected = checked.err.strip().splitlines()
    assert len(expected) == 2 and all(line.startswith(f"{plan}:") for line in expected)
    doctor = run("doctor", str(plan), "--gateway", "http://127.0.0.1:9")
    log = run("ledger", "log", str(plan), "--flow", "a")
    for r in (doctor, log):
        assert r.code == 2
        assert r.err.strip().splitlines() == expected


EXAMPLE = str(ROOT / "plans" / "example.yaml")


@pytest.mark.parametrize("flows", [1, 40])
def test_markdown_stays_under_60000_characters(tmp_path: Path, run, flows: int) -> None:
    text = "".join(
        f'  - {{name: flow-with-a-long-name-{i:05d}, flowId: {i + 1}, cron: "*/5 * * * *", from: 2026-01-01, to: 2026-01-02}}\n'
        for i in range(flows)
    )
    plan = write_plan(tmp_path, text)
    r = run("plan", str(plan), "--format", "markdown", "--max-triggers", "1000")
    assert r.code == 0
    assert len(r.out) < 60_000
    assert f"{flows * 576} entries" in r.out
    assert "| flow-with-a-long-name-00000 |" in r.out


@pytest.mark.parametrize("limit", [2_000, 5_000, 20_000])
def test_the_markdown_renderer_drops_details_then_rows_to_fit_any_limit(
    tmp_path: Path, limit: int
) -> None:
    # The renderer itself, with small limits, instead of a plan of thousands of flows.
    from planrunner import checking, report

    text = "".join(
        f'  - {{name: flow-with-a-long-name-{i:05d}, flowId: {i + 1}, cron: "*/5 * * * *", from: 2026-01-01, to: 2026-01-02}}\n'
        for i in range(40)
    )
    plan, entries = checking.load_entries(str(write_plan(tmp_path, text)), 0, 1000)
    result = report.PlanResult(plan, "l.jsonl", 0, entries, {})
    out = report.render_markdown(result, limit=limit)
    assert len(out) < limit
    assert out.startswith("<!-- planrunner:")
    assert f"{40 * 576} entries" in out
    full = report.render_markdown(result)
    if limit < len(full):
        assert "entry lists left out to fit a comment" in out or "more flows; see" in out
    if limit == 2_000:
        assert "more flows; see `planrunner plan --format json`" in out


def test_markdown_folds_long_runs(run) -> None:
    r = run("plan", EXAMPLE, "--format", "markdown")
    assert "| | … 26 more pending … | | |" in r.out
    assert '<details><summary>sales-daily-backfill: 31 entries, cron "0 2 * * *" from ' in r.out
    assert r.out.startswith("<!-- planrunner:")


# --- 13, 14: a run that ends interrupted or with unknown entries says what to do -------------


def test_finding_14_unknown_entries_end_with_what_to_do(tmp_path: Path, run: Any, sim_env: None) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    with Simulator(faults=Faults.parse(["504-after-create=1", "lookup-503=1"]), accept_unknown_flows=True) as sim:
        r, doc = apply_json(run, plan, sim.url)
    assert r.code == 1
    assert doc["summary"] == {"unknown": 2}
    assert "apply again to look them up, or add --retry-unknown" in r.err


# --- 16, 17: output a reviewer can check ------------------------------------------------------


def test_finding_16_headers_show_the_schedule_offsets_stay_visible_and_gap_moves_are_marked(
    tmp_path: Path, run: Any
) -> None:
    plan = write_plan(
        tmp_path,
        '  - {name: berlin, flowId: 1, cron: "30 2 * * *", from: 2026-03-20, to: 2026-04-05}\n',
        zone="Europe/Berlin",
    )
    out = run("plan", str(plan)).out
    assert 'cron "30 2 * * *" from 2026-03-20T00:00:00+01:00' in out
    # The lines on both sides of the +01:00 -> +02:00 change are shown, not folded away.
    assert "2026-03-28T02:30:00+01:00" in out
    assert "2026-03-29T03:00:00+02:00" in out and "(moved by a DST gap)" in out
    assert "2026-03-30T02:30:00+02:00" in out


def test_finding_17_orphans_are_counted_and_listed(tmp_path: Path, run: Any, sim_env: None) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 4))
    with Simulator(accept_unknown_flows=True) as sim:
        assert apply_json(run, plan, sim.url)[0].code == 0
    plan.write_text(plan.read_text().replace("count: 4", "count: 2"))
    doc = json.loads(run("plan", str(plan), "--format", "json").out)
    assert len(doc["orphans"]) == 2 and {o["status"] for o in doc["orphans"]} == {"done"}
    assert "2 ledger entries no longer in the plan" in run("plan", str(plan)).out
