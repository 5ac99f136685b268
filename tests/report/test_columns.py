"""What plan (and apply) show of business dates, parameters, pacing keys and entries ahead of
now (issues 21 and 22; newcomer-trial finding 30)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from planrunner.outcome import Entry
from planrunner.report.columns import count_future, future_note
from testing import write_plan

JANUARY = '  - name: sales\n    flowId: 3377\n    dates: {from: 2026-01-01, to: 2026-01-31}\n    time: "02:00"\n'
JANUARY_DAYS = [f"2026-01-{d:02d}" for d in range(1, 32)]


def _plan(run, path: Path, now: str, fmt: str = "text", *more: str):
    r = run("plan", str(path), "--now", now, "--ledger", str(path.with_suffix(".jsonl")), "--format", fmt, *more)
    assert r.code == 0, r.err
    return r.out


@pytest.mark.parametrize("zone", ["GMT+8", "UTC"])
def test_i22_january_by_business_dates_calDt_reads_the_first_to_the_31st(
    tmp_path: Path, run, zone: str
) -> None:
    path = write_plan(tmp_path, JANUARY, server_zone=zone)
    doc = json.loads(_plan(run, path, "2026-03-01T00:00Z", "json"))
    assert [e["calDt"] for e in doc["entries"]] == JANUARY_DAYS
    assert [e["time"][:10] for e in doc["entries"]] == [*JANUARY_DAYS[1:], "2026-02-01"]
    text = _plan(run, path, "2026-03-01T00:00Z", "text", "--flow", "sales")
    assert "  dates 2026-01-01 .. 2026-01-31 (31 business dates) at 02:00 in the server zone" in text
    assert re.search(r"  first 2026-01-02T02:00:00\S+  \d+  calDt 2026-01-01\n", text), text
    assert re.search(r"  last  2026-02-01T02:00:00\S+  \d+  calDt 2026-01-31\n", text), text
    shown = re.findall(r"  \+ \S+  \d+  calDt (\S+)  pending\n", text)
    assert shown == [*JANUARY_DAYS[:3], *JANUARY_DAYS[-2:]]  # the run between is folded


def test_i22_every_flow_shows_calDt_when_the_server_zone_is_known(tmp_path: Path, run) -> None:
    flows = '  - {name: a, flowId: 1, at: ["2026-01-01T01:00:00+08:00", "2026-01-01T23:00:00+08:00"]}\n'
    known = write_plan(tmp_path, flows, server_zone="GMT+8", name="known.yaml")
    doc = json.loads(_plan(run, known, "2026-03-01T00:00Z", "json"))
    assert [e["calDt"] for e in doc["entries"]] == ["2025-12-31", "2025-12-31"]
    assert "calDt 2025-12-31  pending" in _plan(run, known, "2026-03-01T00:00Z")
    unknown = write_plan(tmp_path, flows, name="unknown.yaml")
    doc = json.loads(_plan(run, unknown, "2026-03-01T00:00Z", "json"))
    assert [e["calDt"] for e in doc["entries"]] == [None, None]
    assert "calDt" not in _plan(run, unknown, "2026-03-01T00:00Z")
    assert "calDt" not in _plan(run, unknown, "2026-03-01T00:00Z", "markdown")


def test_i22_markdown_has_a_calDt_column_and_the_dates_window(tmp_path: Path, run) -> None:
    path = write_plan(tmp_path, JANUARY, server_zone="GMT+8")
    md = _plan(run, path, "2026-03-01T00:00Z", "markdown")
    assert "sales: 31 entries, dates 2026-01-01 .. 2026-01-31 (31 business dates) at 02:00 in the server zone</summary>" in md
    assert "| | time | triggerTime | calDt | status |" in md
    assert "| + | `2026-01-02T02:00:00+08:00` | 1767290400000 | 2026-01-01 | pending |" in md
    assert "| + | `2026-02-01T02:00:00+08:00` | 1769882400000 | 2026-01-31 | pending |" in md


def test_f30_future_entries_are_counted_marked_and_never_folded_across_now(tmp_path: Path, run) -> None:
    path = write_plan(tmp_path, JANUARY, server_zone="GMT+8")
    now = "2026-01-10T00:00Z"  # 2026-01-10T08:00+08:00: the entries of Jan 11th and later are ahead
    text = _plan(run, path, now)
    assert "22 entries are scheduled ahead: the service will hold them until their time.\nPlan: 31 entries (31 pending)." in text
    assert "  + 2026-01-10T02:00:00+08:00  1767981600000  calDt 2026-01-09  pending\n" in text
    assert "  + 2026-01-11T02:00:00+08:00  1768068000000  calDt 2026-01-10  pending (future)\n" in text
    assert "    ... 17 more pending (future) ...\n" in text
    doc = json.loads(_plan(run, path, now, "json"))
    assert doc["summary"] == {"pending": 31, "future": 22}
    md = _plan(run, path, now, "markdown")
    assert "\n22 entries are scheduled ahead: the service will hold them until their time.\n" in md
    assert "| 2026-01-10 | pending (future) |" in md


def test_f30_nothing_ahead_says_nothing(tmp_path: Path, run) -> None:
    path = write_plan(tmp_path, JANUARY, server_zone="GMT+8")
    assert "scheduled ahead" not in _plan(run, path, "2026-03-01T00:00Z")
    assert "(future)" not in _plan(run, path, "2026-03-01T00:00Z")
    assert json.loads(_plan(run, path, "2026-03-01T00:00Z", "json"))["summary"] == {"pending": 31}


def test_f30_future_note_helper_counts_after_now_only() -> None:
    entries = [Entry(t, 1, "a", "o", 0) for t in (100, 200, 300)]
    assert count_future(entries, 200) == 1
    assert future_note(entries, 200) == "1 entry is scheduled ahead: the service will hold it until its time"
    assert future_note(entries, 50) == "3 entries are scheduled ahead: the service will hold them until their time"
    assert future_note(entries, 300) is None


PARAMETERS = JANUARY + '    parameters:\n      out: "s3://sales/{calDt}/"\n      overwrite: "true"\n      brace: "{{x}}"\n'


def test_i22_parameters_are_folded_in_text_and_filled_per_entry_in_json(tmp_path: Path, run) -> None:
    path = write_plan(tmp_path, PARAMETERS + '  - {name: plain, flowId: 9, at: ["2026-01-05T00:00:00Z"]}\n', server_zone="GMT+8")
    text = _plan(run, path, "2026-03-01T00:00Z")
    assert (
        "  parameters (sent with each entry):\n"
        '    out: "s3://sales/{calDt}/"  filled per entry: "s3://sales/2026-01-01/" .. "s3://sales/2026-01-31/"\n'
        '    overwrite: "true"\n'
        '    brace: "{x}"\n'
    ) in text
    assert text.count("parameters (sent with each entry)") == 1  # not for the flow without
    doc = json.loads(_plan(run, path, "2026-03-01T00:00Z", "json"))
    sales = [e for e in doc["entries"] if e["flow"] == "sales"]
    assert [e["parameters"] for e in sales] == [
        {"out": f"s3://sales/{d}/", "overwrite": "true", "brace": "{x}"} for d in JANUARY_DAYS
    ]
    assert [e["parameters"] for e in doc["entries"] if e["flow"] == "plain"] == [None]
    md = _plan(run, path, "2026-03-01T00:00Z", "markdown")
    assert "Parameters: `out` = `s3://sales/{calDt}/` (filled per entry: " in md


def test_i21_pacing_keys_are_shown_under_the_flow(tmp_path: Path, run) -> None:
    flows = JANUARY + "    maxUnfinished: 1\n    haltOnFailure: true\n    rerunFailed: 2\n"
    path = write_plan(tmp_path, flows, server_zone="GMT+8")
    assert "\n  pacing maxUnfinished 1, haltOnFailure, rerunFailed 2\n" in _plan(run, path, "2026-03-01T00:00Z")
    assert "Pacing: maxUnfinished 1, haltOnFailure, rerunFailed 2" in _plan(run, path, "2026-03-01T00:00Z", "markdown")


def test_i22_apply_json_entries_carry_calDt(tmp_path: Path, run, sim_env: None) -> None:
    path = write_plan(tmp_path, JANUARY, server_zone="GMT+8")
    r = run("apply", str(path), "--sim", "--yes", "--now", "2026-03-01T00:00Z", "--format", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert [e["calDt"] for e in doc["entries"]] == JANUARY_DAYS
    assert {e["status"] for e in doc["entries"]} == {"triggered"}
