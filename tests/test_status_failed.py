"""Why a day failed (issue 20, contract section 10): each failed instance's failed task and
the tail of its log, in text, JSON and markdown; the markdown within a comment's size."""

from __future__ import annotations

import json
import re
from pathlib import Path

from planrunner import checking
from planrunner.lookup import Seen
from planrunner.report import MARKDOWN_LIMIT
from planrunner.report.status import as_json, render_markdown, render_text
from planrunner.runs.watch import Result, Tail
from planrunner.select import Selection
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
