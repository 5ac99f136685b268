"""Issue 23: the markdown plan's mermaid gantt, checked by the gantt grammar's basic rules.

The checker below follows mermaid's gantt lexer (packages/mermaid/src/diagrams/gantt/parser/
gantt.jison): a `gantt` line first, `dateFormat`, `section` lines, and task lines
`text :[tags,] [id,] start, end|duration` whose text holds none of the characters that end or
break it and does not start with a word the lexer takes for a statement.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from planrunner import checking, report
from planrunner.outcome import Outcome, Status
from planrunner.report import gantt
from testing import DATA, ROOT, write_plan

EXAMPLE = ROOT / "plans" / "example.yaml"
BERLIN = DATA / "golden" / "berlin.yaml"

TAGS = {"active", "done", "crit", "milestone"}
DURATION = re.compile(r"\d+(\.\d+)?(ms|s|m|h|d|w|M|y)")
FORBIDDEN = set(":;#%<>&\"'`{}\\") | {chr(c) for c in range(32)} | {"\x7f"}
# Statement words of the lexer (case-insensitive, the first rule that matches wins).
STATEMENT = re.compile(
    r"(?i)(gantt|inclusiveenddates|topaxis|acctitle|accdescr|\d{4}-\d\d-\d\d|"
    r"(dateformat|axisformat|tickinterval|includes|excludes|todaymarker|weekday|weekend|title|"
    r"accdescription|section|click|call|href)\s)"
)
# dayjs tokens the charts use, as strptime directives.
DAYJS = {"YYYY": "%Y", "MM": "%m", "DD": "%d", "HH": "%H", "mm": "%M"}


@dataclasses.dataclass
class Task:
    section: str
    name: str
    tags: list[str]
    id: str
    start: datetime
    end: datetime | None  # None: a duration


def parse_gantt(markdown: str) -> list[Task]:
    """The tasks of the one ```mermaid block in ``markdown``; AssertionError on any rule broken."""
    blocks = re.findall(r"^```mermaid\n(.*?)^```$", markdown, re.S | re.M)
    assert len(blocks) == 1, f"{len(blocks)} mermaid blocks"
    lines = [line.strip() for line in blocks[0].splitlines() if line.strip()]
    assert lines[0] == "gantt", lines[0]
    fmt: str | None = None
    section: str | None = None
    tasks: list[Task] = []
    ids: set[str] = set()
    for line in lines[1:]:
        if m := re.fullmatch(r"dateFormat\s([^#\n;]+)", line):
            assert fmt is None and not tasks, "one dateFormat, before the tasks"
            fmt = m[1].strip()
            for token, directive in DAYJS.items():
                fmt = fmt.replace(token, directive)
            assert not re.search(r"[A-Za-z]", re.sub(r"%[YmdHM]", "", fmt)), (
                f"unknown token in {fmt}"
            )
            continue
        if re.fullmatch(r"(title|axisFormat)\s[^#\n;]+", line):
            continue
        if m := re.fullmatch(r"section\s([^#:\n;]+)", line):
            section = m[1]
            continue
        m = re.fullmatch(r"([^#:\n;]+):([^#\n;]+)", line)
        assert m, f"not a task line: {line!r}"
        name = m[1].strip()
        assert name and not (set(name) & FORBIDDEN), f"forbidden character in {name!r}"
        assert not STATEMENT.match(name + " "), f"{name!r} reads as a statement"
        assert fmt is not None, "a task before dateFormat"
        assert section is not None, "a task outside a section"
        data = [x.strip() for x in m[2].split(",")]
        tags = []
        while data and data[0] in TAGS:
            tags.append(data.pop(0))
        assert len(data) == 3, f"want id, start, end: {line!r}"
        task_id, start, end = data
        assert re.fullmatch(r"[A-Za-z][\w-]*", task_id) and task_id not in ids, task_id
        ids.add(task_id)
        begin = datetime.strptime(start, fmt)
        if DURATION.fullmatch(end):
            finish = None
        else:
            finish = datetime.strptime(end, fmt)
            assert finish > begin, line
        tasks.append(Task(section, name, tags, task_id, begin, finish))
    assert fmt is not None
    return tasks


def result_of(path: Path | str, outcomes: dict[str, Outcome] | None = None) -> report.PlanResult:
    plan, entries = checking.load_entries(str(path), 0, 100_000)
    return report.PlanResult(plan, "l.jsonl", 0, entries, outcomes or {})


def minute(dt: datetime) -> datetime:
    return dt.replace(second=0, microsecond=0, tzinfo=None)


def test_issue_23_gantt_of_the_example_plan_one_bar_per_flow_above_the_table(run) -> None:
    r = run("plan", str(EXAMPLE), "--format", "markdown")
    assert r.code == 0
    tasks = parse_gantt(r.out)
    assert r.out.index("```mermaid") < r.out.index("| flow | flowId |")  # the table stays below
    # Two zones: the axis is UTC, and each bar runs from the flow's first entry to its last.
    assert "title Flow windows, times in UTC" in r.out
    result = result_of(EXAMPLE)
    groups = result.by_flow()
    assert [t.name for t in tasks] == [f"{f.name} ({len(groups[f.name])})" for f in result.flows()]
    for task, flow in zip(tasks, result.flows(), strict=True):
        assert task.section == "pending" and task.tags == ["active"]
        first = datetime.fromtimestamp(groups[flow.name][0][0].trigger_time / 1000, UTC)
        last = datetime.fromtimestamp(groups[flow.name][-1][0].trigger_time / 1000, UTC)
        assert task.start == minute(first)
        assert task.end is not None and task.end >= minute(last)


def test_issue_23_gantt_splits_done_and_pending_and_marks_each_dst_change() -> None:
    base = result_of(BERLIN)
    entries = base.entries
    # hourly-spring applied, one at-time failed (retry), the rest still to send.
    spring = [e for e in entries if e.flow == "hourly-spring"]
    at_time = next(e for e in entries if e.flow == "at-times")
    outcomes = {e.key: Outcome(Status.DONE) for e in spring} | {at_time.key: Outcome(Status.RETRY)}
    out = report.render_markdown(result_of(BERLIN, outcomes))
    tasks = parse_gantt(out)
    assert "title Flow windows, times in Europe/Berlin" in out  # one zone: its wall times
    by_section: dict[str, list[Task]] = {}
    for t in tasks:
        by_section.setdefault(t.section, []).append(t)
    assert [t.name for t in by_section["done"]] == [f"hourly-spring ({len(spring)})"]
    assert by_section["done"][0].tags == ["done"]
    pending = {t.name.split(" ")[0]: t for t in by_section["pending"]}
    assert set(pending) == {"hourly-autumn", "at-times"}
    assert pending["at-times"].tags == ["crit"] and "1 retry" in pending["at-times"].name
    assert pending["hourly-autumn"].tags == ["active"]
    # A milestone at each change of Berlin's offset inside a flow's window, at the local
    # time just after it (found here from zoneinfo, second by second around each change).
    berlin = ZoneInfo("Europe/Berlin")
    changes = []
    hour = datetime(2026, 1, 1, tzinfo=UTC)
    while hour.year == 2026:
        nxt = hour + timedelta(hours=1)
        if hour.astimezone(berlin).utcoffset() != nxt.astimezone(berlin).utcoffset():
            changes.append(nxt.astimezone(berlin))
        hour = nxt
    marks = by_section["daylight saving"]
    assert [m.tags for m in marks] == [["milestone"], ["milestone"]]
    assert [m.start for m in marks] == [minute(c) for c in changes]
    assert [m.name for m in marks] == [
        "Europe/Berlin UTC+1 to UTC+2",
        "Europe/Berlin UTC+2 to UTC+1",
    ]


def test_issue_23_gantt_escapes_any_flow_name() -> None:
    result = result_of(EXAMPLE)
    hostile = [
        "a: b; c # d %% e \"f\" 'g' <script>alert(1)</script> & `x` {y}\nsection z\r",
        "gantt-daily",
        "section x",
        "2026-01-01 backfill",
        "click here",
        "title of it",
        "%%{init: {'theme': 'dark'}}%%",
        "```",
        "",
        "x" * 200,
    ]
    flows = [
        dataclasses.replace(f, name=n) for f, n in zip(result.flows() * 4, hostile, strict=False)
    ]
    groups = result.by_flow()
    rows = [(f, groups[g.name]) for f, g in zip(flows, result.flows() * 4, strict=False)]
    text = gantt.chart(rows, result.status_of)
    tasks = parse_gantt(text)
    assert len(tasks) == len(hostile)
    assert all(len(t.name) <= gantt.NAME_MAX + 10 for t in tasks)
    assert "```" not in text.removeprefix("```mermaid\n").removesuffix("\n```")
    # Names stay recognisable: unsafe characters become "_", words are kept.
    assert tasks[0].name.startswith("a_ b_ c _ d __ e _f_ _g_ _script_alert(1)_/")
    assert tasks[1].name.startswith("flow gantt-daily")


def many_flows(tmp_path: Path, n: int) -> report.PlanResult:
    text = "".join(
        f'  - {{name: f{i:03d}, flowId: {i + 1}, cron: "0 * * * *", from: 2026-01-01, to: 2026-01-01T03:00}}\n'
        for i in range(n)
    )
    return result_of(write_plan(tmp_path, text))


def test_issue_23_gantt_degrades_to_nothing_beyond_its_flow_limit(tmp_path: Path) -> None:
    at_limit = report.render_markdown(many_flows(tmp_path, gantt.MAX_FLOWS))
    assert len(parse_gantt(at_limit)) == gantt.MAX_FLOWS
    over = report.render_markdown(many_flows(tmp_path, gantt.MAX_FLOWS + 1))
    assert "```mermaid" not in over
    assert "| f040 |" in over  # the table has every flow


def test_issue_23_gantt_is_the_first_thing_dropped_to_fit_the_comment(tmp_path: Path) -> None:
    result = many_flows(tmp_path, 30)
    full = report.render_markdown(result)
    assert "```mermaid" in full and "left out" not in full
    # One character short of room for everything: the picture goes, every table and entry
    # list stays.
    tight = report.render_markdown(result, limit=len(full) + report.NOTE_ROOM)
    assert "```mermaid" not in tight
    assert "left out" not in tight and "more flows" not in tight
    assert tight.count("<details>") == full.count("<details>")
    assert report.render_markdown(result, limit=len(full) + report.NOTE_ROOM + 1) == full
    for limit in (1_000, 3_000, len(full) - 1):
        assert len(report.render_markdown(result, limit=limit)) < limit


@pytest.mark.parametrize("name", ["calls-daily", "titles", "sections", "Gantt2"])
def test_issue_23_gantt_keeps_names_that_only_look_like_keywords(name: str) -> None:
    # Only a lexer statement (a keyword and a space, or gantt/topAxis/a date) gets the prefix.
    expected = f"flow {name}" if name.lower().startswith("gantt") else name
    assert gantt.escape(name) == expected
