"""Business dates (issue 22): `dates:` + `time:` flows, `times.cal_dt`, the pacing and rerun
keys on `plan.Flow`, and parameters with their placeholders (`plan.entry_parameters`)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from planrunner import plan as planlib
from planrunner import times
from planrunner.resolve import resolve
from testing import write_plan

NOW = "2026-12-03T00:00Z"
JANUARY = "    dates: {from: 2026-01-01, to: 2026-01-31}\n    time: \"02:00\"\n"


def _read(path: Path) -> planlib.Plan:
    reading = planlib.read(str(path))
    assert not reading.problems, reading.problems
    assert reading.plan is not None
    return reading.plan


def _errors(run, path: Path) -> list[str]:
    r = run("validate", "--now", NOW, str(path))
    assert r.code == 2, r.out
    assert "Traceback" not in r.err
    return [line.split(": error: ", 1)[1] for line in r.err.splitlines()]


@pytest.mark.parametrize(
    ("zone", "ms", "expected"),
    [
        ("GMT+8", 1767290400000, "2026-01-01"),  # 2026-01-02T02:00+08:00
        ("UTC", 1767290400000, "2025-12-31"),  # 2026-01-01T18:00Z
        ("GMT+8", 1767283199000, "2025-12-31"),  # 2026-01-01T23:59:59+08:00
        ("America/New_York", 1767243600000, "2025-12-31"),  # 2026-01-01T00:00-05:00
    ],
)
def test_i22_cal_dt_is_the_trigger_date_in_the_server_zone_minus_one_day(
    zone: str, ms: int, expected: str
) -> None:
    assert times.cal_dt(ms, times.server_zone(zone)) == expected


@pytest.mark.parametrize(("zone", "offset"), [("GMT+8", "+08:00"), ("UTC", "+00:00")])
def test_i22_a_january_of_business_dates_triggers_february_first_last(
    tmp_path: Path, zone: str, offset: str
) -> None:
    p = _read(write_plan(tmp_path, "  - name: sales\n    flowId: 3377\n" + JANUARY, server_zone=zone))
    entries, problems = resolve(p, 0)
    assert problems == []
    assert p.target.server_zone is not None
    cal = [times.cal_dt(e.trigger_time, p.target.server_zone) for e in entries]
    assert cal == [f"2026-01-{d:02d}" for d in range(1, 32)]
    assert entries[0].local_time == f"2026-01-02T02:00:00{offset}"
    assert entries[-1].local_time == f"2026-02-01T02:00:00{offset}"
    flow = p.flows[0]
    assert flow.dates and flow.dates_window == (date(2026, 1, 1), date(2026, 1, 31))
    assert flow.zone_name == zone


def test_i22_a_list_of_dates_with_seconds_in_the_time(tmp_path: Path) -> None:
    flows = '  - name: s\n    flowId: 1\n    dates: [2026-01-09, 2026-01-03]\n    time: "23:59:30"\n'
    p = _read(write_plan(tmp_path, flows, server_zone="GMT+8"))
    entries, problems = resolve(p, 0)
    assert problems == []
    assert [e.local_time for e in entries] == [
        "2026-01-04T23:59:30+08:00",
        "2026-01-10T23:59:30+08:00",
    ]


def test_i22_an_unquoted_time_of_day_is_not_a_base_60_integer(tmp_path: Path) -> None:
    flows = "  - name: s\n    flowId: 1\n    dates: [2026-01-09]\n    time: 12:30\n"
    p = _read(write_plan(tmp_path, flows, server_zone="GMT+8"))
    assert p.flows[0].time_of_day == (12 * 60 + 30) * 60_000


def test_i22_dst_gap_time_fires_at_the_first_instant_after_and_overlap_at_the_first(
    tmp_path: Path,
) -> None:
    # Europe/Berlin: 2025-03-30 02:00 -> 03:00 (gap); 2025-10-26 03:00 -> 02:00 (overlap).
    flows = (
        '  - name: gap\n    flowId: 1\n    dates: [2025-03-29]\n    time: "02:30"\n'
        '  - name: overlap\n    flowId: 2\n    dates: [2025-10-25]\n    time: "02:30"\n'
    )
    p = _read(write_plan(tmp_path, flows, server_zone="Europe/Berlin"))
    entries, problems = resolve(p, 0)
    assert [p.message for p in problems] == []
    by_flow = {e.flow: e.local_time for e in entries}
    assert by_flow == {"gap": "2025-03-30T03:00:00+02:00", "overlap": "2025-10-26T02:30:00+02:00"}


def test_i22_dates_without_server_timezone_is_one_error_naming_the_flow(
    tmp_path: Path, run
) -> None:
    path = write_plan(tmp_path, "  - name: sales\n    flowId: 3377\n" + JANUARY)
    assert _errors(run, path) == [
        'flows[0].dates: flow "sales" uses dates:, which need target.serverTimezone (the zone '
        "in which the service computes ${cal_dt}), e.g. serverTimezone: GMT+8"
    ]


def test_i22_dates_with_calDt_parameters_and_no_server_timezone_is_still_one_error(
    tmp_path: Path, run
) -> None:
    flows = "  - name: sales\n    flowId: 3377\n" + JANUARY + '    parameters: {out: "{calDt}"}\n'
    assert [m.split(":", 1)[0] for m in _errors(run, write_plan(tmp_path, flows))] == ["flows[0].dates"]


@pytest.mark.parametrize(
    ("flow", "message"),
    [
        ('    dates: [2026-01-01]\n', 'flows[0]: "dates" needs "time"'),
        ('    at: [2026-01-01]\n    time: "02:00"\n', 'flows[0]: "time" goes with "dates" (a time of day for business dates)'),
        ('    dates: [2026-01-01]\n    cron: "0 2 * * *"\n    time: "02:00"\n', 'flows[0]: needs exactly one of "at", "cron" or "dates"'),
        ('    dates: []\n    time: "02:00"\n', "flows[0].dates: must not be empty"),
        ('    dates: [2026-01-01, 2026-01-02, 2026-01-01]\n    time: "02:00"\n', 'flows[0].dates[2]: "2026-01-01" is listed more than once'),
        ('    dates: {form: 2026-01-01, to: 2026-01-02}\n    time: "02:00"\n', 'flows[0].dates: unknown key "form" (did you mean "from"?)'),
        ('    dates: ["2026-1-1"]\n    time: "02:00"\n', "flows[0].dates[0]: must be a date YYYY-MM-DD"),
        ('    dates: [2026-01-01]\n    time: "02:00"\n    from: 2026-01-01\n', 'flows[0]: "from", "to" and "count" go with "cron"; a dates window is written dates: {from: DATE, to: DATE}'),
        ('    dates: 2026-01-01\n    time: "02:00"\n', "flows[0].dates: expected a mapping or a list, got a string; write dates: {from: DATE, to: DATE} or dates: [DATE, ...]"),
        ('    dates: {from: 2026-01-01}\n    time: "02:00"\n', 'flows[0].dates: missing required key "to"'),
        ('    dates: {from: 2026-01-31, to: 2026-01-01}\n    time: "02:00"\n', 'flows[0].dates.from: "from" (2026-01-31) is after "to" (2026-01-01)'),
        ('    dates: [2026-02-30]\n    time: "02:00"\n', 'flows[0].dates[0]: "2026-02-30" is not a valid date (day is out of range for month)'),
        ('    dates: [2026-01-01]\n    time: "24:00"\n', 'flows[0].time: "24:00" is not a time of day (00:00 .. 23:59:59)'),
        ('    dates: [2026-01-01]\n    time: "2am"\n', 'flows[0].time: must be a time of day "HH:MM" or "HH:MM:SS"'),
        ('    dates: [1999-12-31]\n    time: "02:00"\n', 'flows[0].dates[0]: "1999-12-31" is out of range (2000-01-01 .. 9999-12-30)'),
        ('    timezone: UTC\n    dates: [2026-01-01]\n    time: "02:00"\n', 'flows[0].timezone: flow "s": a dates flow runs in target.serverTimezone, where the service computes ${cal_dt}: remove "timezone"'),
    ],
)
def test_i22_dates_and_time_mistakes_are_one_located_error_each(
    tmp_path: Path, run, flow: str, message: str
) -> None:
    path = write_plan(tmp_path, "  - name: s\n    flowId: 1\n" + flow, server_zone="GMT+8")
    assert _errors(run, path) == [message]


def test_i21_pacing_keys_flow_value_wins_over_the_plan(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\ntarget: {gateway: https://g.example.com, orgId: o1, userId: u1}\n"
        "timezone: UTC\nmaxUnfinished: 2\nhaltOnFailure: true\nrerunFailed: 1\nflows:\n"
        "  - {name: a, flowId: 1, at: [2026-01-01]}\n"
        "  - {name: b, flowId: 2, at: [2026-01-01], maxUnfinished: 5, haltOnFailure: false, rerunFailed: 0}\n"
    )
    a, b = _read(path).flows
    assert (a.max_unfinished, a.halt_on_failure, a.rerun_failed) == (2, True, 1)
    assert (b.max_unfinished, b.halt_on_failure, b.rerun_failed) == (5, False, 0)


def test_i21_pacing_keys_default_to_none_false_zero(tmp_path: Path) -> None:
    flow = _read(write_plan(tmp_path, "  - {name: a, flowId: 1, at: [2026-01-01]}\n")).flows[0]
    assert (flow.max_unfinished, flow.halt_on_failure, flow.rerun_failed) == (None, False, 0)
    assert flow.parameters == () and not flow.dates


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("maxUnfinished", "0", "maxUnfinished: must be at least 1, got 0"),
        ("rerunFailed", "-1", "rerunFailed: must be at least 0, got -1"),
        ("haltOnFailure", "yes", 'haltOnFailure: expected true or false, got a string; "yes" is a string in YAML 1.2: write true'),
    ],
)
def test_i21_pacing_key_values_are_checked(
    tmp_path: Path, run, key: str, value: str, message: str
) -> None:
    path = write_plan(tmp_path, f"  - {{name: a, flowId: 1, at: [2026-01-01], {key}: {value}}}\n")
    assert _errors(run, path) == [f"flows[0].{message}"]


def test_i22_entry_parameters_fill_every_placeholder(tmp_path: Path) -> None:
    flows = (
        "  - name: s\n    flowId: 1\n" + JANUARY + "    parameters:\n"
        '      out: "/data/{calDt}/x"\n      day: "{date}"\n      at: "{triggerTime}"\n'
        '      literal: "{{calDt}} and }}"\n      plain: "true"\n'
    )
    p = _read(write_plan(tmp_path, flows, server_zone="GMT+8"))
    entries, _ = resolve(p, 0)
    got = planlib.entry_parameters(p.flows[0], entries[0], p.target.server_zone)
    assert got == {
        "out": "/data/2026-01-01/x",
        "day": "2026-01-02",
        "at": "1767290400000",
        "literal": "{calDt} and }",
        "plain": "true",
    }


def test_i22_entry_parameters_is_none_for_a_flow_without_them(tmp_path: Path) -> None:
    p = _read(write_plan(tmp_path, "  - {name: a, flowId: 1, at: [2026-01-01]}\n"))
    entries, _ = resolve(p, 0)
    assert planlib.entry_parameters(p.flows[0], entries[0], None) is None


def test_i22_date_placeholder_is_the_local_date_in_the_flow_zone(tmp_path: Path) -> None:
    flows = '  - {name: a, flowId: 1, at: ["2026-01-01 23:30"], parameters: {d: "{date}"}}\n'
    p = _read(write_plan(tmp_path, flows, zone="Asia/Shanghai"))
    entries, _ = resolve(p, 0)
    assert planlib.entry_parameters(p.flows[0], entries[0], None) == {"d": "2026-01-01"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{cal_dt}", "unknown placeholder {cal_dt}: the known ones are {date}, {calDt} and {triggerTime} (for literal braces write {{ and }})"),
        ("${cal_dt}", "unknown placeholder {cal_dt}: the known ones are {date}, {calDt} and {triggerTime} (to pass ${cal_dt} through to the flow, write ${{cal_dt}})"),
        ("a{b", 'a lone "{": for a literal brace write {{'),
        ("a}b", 'a lone "}": for a literal brace write }}'),
        ("{calDt}", "{calDt} needs target.serverTimezone (the zone in which the service computes ${cal_dt}), e.g. serverTimezone: GMT+8"),
    ],
)
def test_i22_bad_parameter_templates_are_named(
    tmp_path: Path, run, value: str, message: str
) -> None:
    path = write_plan(tmp_path, f"  - {{name: a, flowId: 1, at: [2026-01-01], parameters: {{p: '{value}'}}}}\n")
    assert _errors(run, path) == [f"flows[0].parameters.p: {message}"]


def test_i22_parameter_values_must_be_strings_with_a_hint(tmp_path: Path, run) -> None:
    path = write_plan(tmp_path, "  - {name: a, flowId: 1, at: [2026-01-01], parameters: {overwrite: true, n: 3}}\n")
    assert _errors(run, path) == [
        'flows[0].parameters.overwrite: expected a string, got a boolean; quote it: "true"',
        'flows[0].parameters.n: expected a string, got an integer; quote it: "3"',
    ]


def test_i22_a_gap_that_swallows_the_day_is_an_error_naming_the_date(tmp_path: Path, run) -> None:
    # Samoa skipped 2011-12-30 entirely: 12:00 that day would fire on the 31st, computing
    # the 30th instead of the 29th.
    flows = '  - name: s\n    flowId: 1\n    dates: [2011-12-29]\n    time: "12:00"\n'
    path = write_plan(tmp_path, flows, server_zone="Pacific/Apia")
    assert _errors(run, path) == [
        "flows[0].dates[0]: 2011-12-29: 2011-12-31T00:00:00+14:00 is the first time after the "
        "DST gap that skips the time of day on 2011-12-30, a day later: choose another time"
    ]


def test_i22_two_dates_flows_of_one_flowId_in_one_minute_are_refused(tmp_path: Path, run) -> None:
    flows = (
        '  - name: a\n    flowId: 1\n    dates: {from: 2026-01-01, to: 2026-01-05}\n    time: "02:00"\n'
        '  - name: b\n    flowId: 1\n    dates: [2026-01-03]\n    time: "02:00:30"\n'
    )
    errors = _errors(run, write_plan(tmp_path, flows, server_zone="GMT+8"))
    assert errors == [
        'flows[1].dates[0]: two entries of flowId 1 in the UTC minute 2026-01-03T18:00Z (also in '
        'flow "a"); the service refuses a second trigger of a flow within one minute'
    ]


def test_i22_a_dates_window_over_max_triggers_says_how_many(tmp_path: Path, run) -> None:
    flows = '  - name: s\n    flowId: 1\n    dates: {from: 2000-01-01, to: 2099-12-31}\n    time: "02:00"\n'
    path = write_plan(tmp_path, flows, server_zone="GMT+8")
    r = run("validate", "--now", NOW, str(path), "--max-triggers", "1000")
    assert r.code == 2
    assert r.err.splitlines()[0].endswith(
        'flows[0].dates: flow "s" yields 36,525 entries, more than --max-triggers 1,000 '
        "(use --max-triggers 36,525 if this is intended)"
    )
