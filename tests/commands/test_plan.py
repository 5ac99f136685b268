"""`planrunner plan`, `validate`, `schema`, `--version`, help: the read-only commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from planrunner.sim import Simulator
from testing import ROOT, apply_json, cron_flows, run_process, write_plan

EXAMPLE = str(ROOT / "plans" / "example.yaml")


def test_json_output_has_the_documented_shape(run) -> None:
    r = run(
        "plan",
        EXAMPLE,
        "--format",
        "json",
        "--now",
        "1764080000000",
        "--ledger",
        "/nonexistent/l.jsonl",
    )
    assert r.code == 0
    doc = json.loads(r.out)
    assert list(doc) == [
        "formatVersion",
        "plan",
        "ledger",
        "now",
        "selection",
        "entries",
        "orphans",
        "summary",
        "error",
    ]
    assert doc["formatVersion"] == 1 and doc["error"] is None
    assert doc["now"] == 1764080000000
    first = doc["entries"][0]
    assert first == {
        "flow": "sales-daily-backfill",
        "flowId": 3377,
        "orgId": "o15589291262751",
        "triggerTime": 1767204000000,
        "time": "2026-01-01T02:00:00+08:00",
        "calDt": None,  # the example plan gives no target.serverTimezone
        "key": "o15589291262751/3377/1767204000000",
        "parameters": None,
        "status": "pending",
        "flowInstanceId": None,
        "error": None,
    }
    times = [(e["triggerTime"], e["flowId"]) for e in doc["entries"]]
    assert times == sorted(times)
    # --now is before every entry: all are ahead (finding 30)
    assert doc["summary"] == {"pending": len(doc["entries"]), "future": len(doc["entries"])}


def test_default_ledger_path_replaces_yaml_suffix(run) -> None:
    r = run("plan", EXAMPLE, "--format", "json")
    assert json.loads(r.out)["ledger"] == str(ROOT / "plans" / "example.ledger.jsonl")


def test_text_output_reads_like_a_diff(run) -> None:
    r = run("plan", EXAMPLE, "--now", "2026-06-01T00:00Z")
    assert r.code == 0
    lines = r.out.splitlines()
    assert "flow sales-daily-backfill (flowId 3377, Asia/Shanghai): 31 entries" in lines
    assert "  first 2026-01-01T02:00:00+08:00  1767204000000" in lines
    assert "  last  2026-01-31T02:00:00+08:00  1769796000000" in lines
    assert "  + 2026-01-01T02:00:00+08:00  1767204000000  pending" in lines
    assert "    ... 26 more pending ..." in lines
    assert lines[-1] == "Plan: 82 entries (82 pending)."


def test_detailed_exitcode_is_4_when_pending(run) -> None:
    assert run("plan", EXAMPLE, "--detailed-exitcode").code == 4
    assert run("plan", EXAMPLE).code == 0


def test_finding_16_max_triggers_says_how_many_the_flow_yields(tmp_path: Path, run) -> None:
    plan = write_plan(
        tmp_path,
        '  - {name: busy, flowId: 1, cron: "*/5 * * * *", from: 2026-01-01, to: 2026-01-02}\n',
    )
    r = run("plan", str(plan), "--max-triggers", "100")
    assert r.code == 2
    assert 'flow "busy" yields 576 entries, more than --max-triggers 100' in r.err
    assert "(use --max-triggers 576 if this is intended)" in r.err
    assert run("plan", str(plan), "--max-triggers", "576").code == 0
    assert run("plan", str(plan), "--max-triggers", "575").code == 2


def test_to_now_follows_the_now_option(tmp_path: Path, run) -> None:
    plan = write_plan(
        tmp_path, '  - {name: c, flowId: 1, cron: "0 * * * *", from: 2026-01-01, to: now}\n'
    )
    r = run("plan", str(plan), "--format", "json", "--now", "2026-01-01T05:30Z")
    assert [e["time"] for e in json.loads(r.out)["entries"]][-1] == "2026-01-01T05:00:00+00:00"
    assert len(json.loads(r.out)["entries"]) == 6
    r = run("plan", str(plan), "--format", "json", "--now", "2025-12-01T00:00Z")
    assert r.code == 0
    assert json.loads(r.out)["entries"] == []


def test_bad_now_is_a_usage_error(run) -> None:
    r = run("plan", EXAMPLE, "--now", "yesterday")
    assert r.code == 2
    assert r.err.startswith("planrunner: error: --now:")


def test_flow_selection_with_globs_and_excludes(run) -> None:
    r = run("plan", EXAMPLE, "--format", "json", "--flow", "sales-d*", "--now", "1764080000000")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert {e["flow"] for e in doc["entries"]} == {"sales-daily-backfill"}
    assert doc["selection"] == {"flow": ["sales-d*"], "exclude": []}
    r = run("plan", EXAMPLE, "--format", "json", "--exclude", "sales-*", "--now", "1764080000000")
    assert "sales-daily-backfill" not in {e["flow"] for e in json.loads(r.out)["entries"]}
    text = run("plan", EXAMPLE, "--flow", "inventory-fix", "--now", "1764080000000").out
    assert "flows  --flow inventory-fix" in text
    assert "sales-daily-backfill" not in text


def test_a_selection_that_matches_nothing_names_the_flows(run) -> None:
    r = run("plan", EXAMPLE, "--flow", "nope*")
    assert r.code == 2
    assert 'matches no flow of the plan (flows: sales-daily-backfill' in r.err


def test_finding_38_plan_reads_standard_input(tmp_path: Path) -> None:
    import subprocess
    import sys

    plan = write_plan(tmp_path, cron_flows(1, 3))
    led = tmp_path / "l.jsonl"
    led.write_text("")
    p = subprocess.run(
        [sys.executable, "-m", "planrunner", "plan", "-", "--ledger", str(led), "--format", "json"],
        input=plan.read_text(),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["summary"] == {"pending": 3}
    # Without a ledger there is no path to find one by: said, not guessed.
    p = run_process(["plan", "-"])
    assert p.returncode == 2 and "give --ledger" in p.stderr, p.stderr


def test_finding_38_from_to_selects_a_time_window_and_every_output_shows_it(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 6))  # 00:00 .. 00:25 every 5 minutes
    window = ("--from", "2026-01-01T00:05:00Z", "--to", "2026-01-01T00:15")
    doc = json.loads(run("plan", str(plan), *window, "--format", "json").out)
    assert doc["summary"] == {"pending": 6}  # 00:05, 00:10, 00:15 of two flows
    assert doc["selection"]["from"] == 1767225900000 and doc["selection"]["to"] == 1767226500000
    assert "orphans" not in doc or not doc["orphans"]
    text = run("plan", str(plan), *window, "--flow", "f1").out
    assert "flows  --flow f1 --from 2026-01-01T00:05:00.000Z --to 2026-01-01T00:15:00.000Z" in text
    with Simulator(accept_unknown_flows=True) as sim:
        r, done = apply_json(run, plan, sim.url, *window, "--flow", "f1")
        assert r.code == 0, r.err
        assert sorted(t["triggerTime"] for t in sim.triggers()) == [
            1767225900000, 1767226200000, 1767226500000
        ]
        assert done["selection"]["flow"] == ["f1"] and done["selection"]["from"] == 1767225900000
        # The rest of the plan is still pending, not orphaned nor done.
        assert json.loads(run("plan", str(plan), "--format", "json").out)["summary"] == {
            "pending": 9, "done": 3
        }
        status = json.loads(
            run("status", str(plan), "--gateway", sim.url, *window, "--format", "json").out
        )
        assert sum(f["entries"] for f in status["flows"]) == 6
        assert status["selection"]["to"] == 1767226500000
        assert "--from 2026-01-01T00:05:00.000Z" in run(
            "status", str(plan), "--gateway", sim.url, *window
        ).out
    # A bare date as --to covers its day; a window that is empty is refused.
    doc = json.loads(run("plan", str(plan), "--to", "2026-01-01", "--format", "json").out)
    assert doc["summary"] == {"pending": 9, "done": 3}
    r = run("plan", str(plan), "--from", "2026-01-02", "--to", "2026-01-01")
    assert r.code == 2 and "window is empty" in r.err
    r = run("plan", str(plan), "--from", "yesterday")
    assert r.code == 2 and r.err.startswith("planrunner: error: --from:"), r.err
