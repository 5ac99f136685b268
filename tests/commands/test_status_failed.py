"""Why a day failed (issue 20, contract section 10): each failed instance's failed task and
the tail of its log, in text, JSON and markdown; the markdown within a comment's size."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from planrunner import checking
from planrunner.lookup import Seen
from planrunner.report import MARKDOWN_LIMIT
from planrunner.report.status import as_json, render_markdown, render_text
from planrunner.runs.watch import Result, Tail
from planrunner.select import Selection
from planrunner.sim import Dialect, SimFlow, Simulator
from testing import cron_flows, write_plan

NOW = 1_800_000_000_000  # after every entry of cron_flows (2026-01-01 on)


def failed_result(tmp_path: Path, flows: int, per_flow: int, lines: int) -> Result:
    """Every entry FAIL in task "load", each with a log tail of ``lines`` lines."""
    plan, entries = checking.load_entries(
        str(write_plan(tmp_path, cron_flows(flows, per_flow))), NOW, 100_000
    )
    seen = {
        e.key: Seen("FAIL", f"{e.flow_id}-{e.trigger_time}", failed_task="load", failed_task_id="t")
        for e in entries
    }
    tails = {
        e.key: Tail(tuple(f"{e.trigger_time} line {i} <b>{'x' * 60}</b>" for i in range(lines)))
        for e in entries
    }
    return Result(plan, "l.jsonl", "gw", Selection(), entries, seen, set(), tails=tails)


def test_i20_text_names_the_failed_task_and_its_log_tail(tmp_path: Path) -> None:
    r = failed_result(tmp_path, 1, 2, 3)
    first = r.entries[0]
    r.tails[r.entries[1].key] = Tail(None, "62109: No log found")
    text = render_text(r)
    block = text.split(str(first.trigger_time), 1)[1].split("  ! ", 1)[0]
    assert "failed task: load" in block
    assert block.count(f"| {first.trigger_time} line ") == 3
    assert "(no log: 62109: No log found)" in text


def test_i20_json_carries_failed_task_and_log_tail(tmp_path: Path) -> None:
    r = failed_result(tmp_path, 1, 3, 2)
    r.tails[r.entries[1].key] = Tail(None, "62109: No log found")
    del r.tails[r.entries[2].key]
    doc = json.loads(json.dumps(as_json(r)))
    items = doc["flows"][0]["failed"]
    assert [i["failedTask"] for i in items] == ["load"] * 3
    assert items[0]["logTail"] == [
        f"{r.entries[0].trigger_time} line {i} <b>{'x' * 60}</b>" for i in range(2)
    ]
    assert items[1]["logTail"] is None and items[2]["logTail"] is None


def test_i20_markdown_folds_each_log_escaped(tmp_path: Path) -> None:
    r = failed_result(tmp_path, 2, 2, 4)
    md = render_markdown(r)
    assert "| time | triggerTime | status | failed task | instance | ran |" in md
    assert md.count("| FAIL | load |") == 4
    blocks = re.findall(r"<details><summary><code>.*?</details>", md, re.S)
    assert len(blocks) == 4
    for block in blocks:
        assert "in task <b>load</b> (last 4 log lines)" in block
        assert block.count("&lt;b&gt;") == 4 and "<b>x" not in block  # the log is escaped
        assert "<pre>" in block and "</pre>" in block


def test_i20_markdown_many_failed_days_show_what_fits_and_say_how_many_left_out(
    tmp_path: Path,
) -> None:
    flows, per_flow = 3, 60  # 180 failed days of 20 log lines each: far over a comment
    r = failed_result(tmp_path, flows, per_flow, 20)
    md = render_markdown(r)
    assert len(md) <= MARKDOWN_LIMIT
    shown = len(re.findall(r"<details><summary><code>", md))
    left = re.search(r"_(\d+) failed instances' logs left out to fit a comment", md)
    assert left is not None and shown > 0
    assert shown + int(left.group(1)) == flows * per_flow
    assert md.count("failed</summary>") == flows  # every flow's failed table is kept


# -- over loopback, against the simulator's task graphs and logs --------------------------

ERROR_LINE = "[ERROR] task-2 ended FAIL: exit code 1"


def failing_backfill(tmp_path: Path, api: str = "v2.0") -> tuple[list[SimFlow], Path, list[int]]:
    """One flow of 6 entries, two tasks; the 2nd and 5th days fail in task-2."""
    plan = write_plan(tmp_path, cron_flows(1, 6), api=api)
    _, entries = checking.load_entries(str(plan), NOW, 100)
    failing = [entries[1].trigger_time, entries[4].trigger_time]
    return [SimFlow(1, tasks=2, run_seconds=0.01, fails=failing)], plan, failing


def until_final(run, plan: Path, url: str) -> None:
    r = run("status", str(plan), "--gateway", url, "--watch", "--interval", "0.05", "--logs", "0")
    assert r.code == 1, r.out + r.err  # two failed


@pytest.mark.parametrize("api", ["v2.0", "v2.1"])
def test_i20_status_names_the_failed_task_and_shows_its_log_tail_over_loopback(
    tmp_path: Path, run, sim_env, api: str
) -> None:
    flows, plan, failing = failing_backfill(tmp_path, api)
    with Simulator(flows, dialect=Dialect(api=api)) as s:
        assert run("apply", str(plan), "--gateway", s.url, "--yes", "--quiet").code == 0
        until_final(run, plan, s.url)
        r = run("status", str(plan), "--gateway", s.url, "--format", "json", "--logs", "3")
        text = run("status", str(plan), "--gateway", s.url).out
        md = run("status", str(plan), "--gateway", s.url, "--format", "markdown").out
    assert r.code == 1
    failed = json.loads(r.out)["flows"][0]["failed"]
    assert [f["triggerTime"] for f in failed] == failing
    for f in failed:
        assert f["failedTask"] == "task-2"
        assert f["logTail"] == ["[INFO] task-2: reading input", "[INFO] task-2: processing", ERROR_LINE]
    assert text.count("      failed task: task-2") == 2
    assert text.count(f"      | {ERROR_LINE}") == 2
    assert md.count("in task <b>task-2</b>") == 2
    assert md.count(ERROR_LINE) == 2
    assert md.count("| FAIL | task-2 |") == 2


def test_i20_logs_0_reads_no_log_and_still_names_the_task(tmp_path: Path, run, sim_env) -> None:
    flows, plan, _ = failing_backfill(tmp_path)
    with Simulator(flows) as s:
        assert run("apply", str(plan), "--gateway", s.url, "--yes", "--quiet").code == 0
        until_final(run, plan, s.url)
        off = run("status", str(plan), "--gateway", s.url, "--format", "json", "--logs", "0",
                  "--log-format", "json", "-v")  # fmt: skip
        on = run("status", str(plan), "--gateway", s.url, "--format", "json",
                 "--log-format", "json", "-v")  # fmt: skip
    assert [f["failedTask"] for f in json.loads(off.out)["flows"][0]["failed"]] == ["task-2"] * 2
    assert [f["logTail"] for f in json.loads(off.out)["flows"][0]["failed"]] == [None, None]
    assert '"read logs"' not in off.err  # not one log request
    tails = [f["logTail"] for f in json.loads(on.out)["flows"][0]["failed"]]
    assert all(t[-1] == ERROR_LINE and len(t) <= 20 for t in tails)
    (read,) = [json.loads(x) for x in on.err.splitlines() if '"read logs"' in x]
    assert read["logs"] == 2 and read["shown"] == 2


def test_i20_a_hostile_task_log_is_redacted_and_cleaned(sim_env) -> None:
    from planrunner.runs.watch import log_tail
    from planrunner.sim import DEFAULT_SECRET_KEY
    from testing import make_client

    t0 = 1_767_225_600_000
    with Simulator([SimFlow(5, run_seconds=0.01, fails=[t0])], dialect=Dialect(hostile=True)) as s:
        client = make_client(s.url)
        token = client.token()
        client.trigger(5, t0)
        with s.state.lock:
            (task_id,) = list(s.state.service.tasks)
        deadline = time.monotonic() + 30
        while (tail := log_tail(client, task_id, 50)).lines is None or not any(
            "exit code" in line for line in tail.lines
        ):
            assert time.monotonic() < deadline, tail
            time.sleep(0.02)
        client.close()
    assert tail.lines
    for line in tail.lines:
        assert DEFAULT_SECRET_KEY not in line and token not in line
        assert "\x1b" not in line and "\r" not in line and not line.startswith("::")
        assert len(line) <= 500
    assert any("***" in line for line in tail.lines)  # the secrets were there, and redacted
