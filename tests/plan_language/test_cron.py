"""Cron resolution: named DST cases, cronsim as an oracle, and a brute-force oracle over
every zone whose offset changes at local midnight, by 30 or 45 minutes, or twice over."""

from __future__ import annotations

import functools
import importlib.resources
import itertools
import os
import re
import struct
import zoneinfo
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from planrunner import cron, times

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Shanghai", "UTC"]


def iso(ms: int, zone: str) -> str:
    return times.format_in_zone(ms, ZoneInfo(zone))


def fire(expr: str, zone: str, start: str, end: str) -> list[str]:
    tz = ZoneInfo(zone)
    ms, offs = cron.expand(
        cron.parse(expr),
        tz,
        times.parse(start).resolve(tz),
        times.parse(end).end_of(tz),
        None,
        10**6,
    )
    assert [times.format_local(m, o) for m, o in zip(ms, offs, strict=True)] == [
        iso(m, zone) for m in ms
    ]
    return [iso(m, zone) for m in ms]


# --- named cases -----------------------------------------------------------------------


def test_design_example_berlin_fixed_time_gap_and_overlap() -> None:
    assert fire("30 2 * * *", "Europe/Berlin", "2025-03-30", "2025-03-30") == [
        "2025-03-30T03:00:00+02:00"
    ]
    assert fire("30 2 * * *", "Europe/Berlin", "2025-10-26", "2025-10-26") == [
        "2025-10-26T02:30:00+02:00"
    ]


def test_design_example_berlin_wildcard_overlap_fires_twice() -> None:
    got = fire("*/30 * * * *", "Europe/Berlin", "2025-10-26T01:30+02:00", "2025-10-26T02:30+01:00")
    assert got == [
        "2025-10-26T01:30:00+02:00",
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:30:00+02:00",
        "2025-10-26T02:00:00+01:00",
        "2025-10-26T02:30:00+01:00",
    ]


def test_wildcard_in_a_gap_does_not_fire() -> None:
    got = fire("*/30 * * * *", "Europe/Berlin", "2025-03-30T01:00+01:00", "2025-03-30T03:30+02:00")
    assert got == [
        "2025-03-30T01:00:00+01:00",
        "2025-03-30T01:30:00+01:00",
        "2025-03-30T03:00:00+02:00",
        "2025-03-30T03:30:00+02:00",
    ]


def test_several_fixed_times_in_one_gap_fire_once() -> None:
    got = fire("0,30 2,3 * * *", "Europe/Berlin", "2025-03-30", "2025-03-30")
    assert got == ["2025-03-30T03:00:00+02:00", "2025-03-30T03:30:00+02:00"]


def test_new_york() -> None:
    assert fire("30 2 * * *", "America/New_York", "2025-03-09", "2025-03-09") == [
        "2025-03-09T03:00:00-04:00"
    ]
    assert fire("30 1 * * *", "America/New_York", "2025-11-02", "2025-11-02") == [
        "2025-11-02T01:30:00-04:00"
    ]
    assert fire(
        "*/30 * * * *", "America/New_York", "2025-11-02T01:00-04:00", "2025-11-02T02:00-05:00"
    ) == [
        "2025-11-02T01:00:00-04:00",
        "2025-11-02T01:30:00-04:00",
        "2025-11-02T01:00:00-05:00",
        "2025-11-02T01:30:00-05:00",
        "2025-11-02T02:00:00-05:00",
    ]


def test_lord_howe_half_hour_shifts() -> None:
    # Spring: 02:00 (+10:30) jumps to 02:30 (+11:00).
    assert fire("15 2 * * *", "Australia/Lord_Howe", "2025-10-05", "2025-10-05") == [
        "2025-10-05T02:30:00+11:00"
    ]
    # Autumn: 02:00 (+11:00) falls back to 01:30 (+10:30); 01:45 happens twice.
    assert fire("45 1 * * *", "Australia/Lord_Howe", "2025-04-06", "2025-04-06") == [
        "2025-04-06T01:45:00+11:00"
    ]
    got = fire(
        "*/15 * * * *", "Australia/Lord_Howe", "2025-04-06T01:00+11:00", "2025-04-06T02:15+10:30"
    )
    assert got == [
        "2025-04-06T01:00:00+11:00",
        "2025-04-06T01:15:00+11:00",
        "2025-04-06T01:30:00+11:00",
        "2025-04-06T01:45:00+11:00",
        "2025-04-06T01:30:00+10:30",
        "2025-04-06T01:45:00+10:30",
        "2025-04-06T02:00:00+10:30",
        "2025-04-06T02:15:00+10:30",
    ]


def test_shanghai_daylight_saving_of_1986() -> None:
    # China kept DST from 1986 to 1991: 02:00 -> 03:00 on 1986-05-04, 02:00 -> 01:00 on 1986-09-14.
    assert fire("30 2 * * *", "Asia/Shanghai", "1986-05-04", "1986-05-04") == [
        "1986-05-04T03:00:00+09:00"
    ]
    assert fire("30 1 * * *", "Asia/Shanghai", "1986-09-14", "1986-09-14") == [
        "1986-09-14T01:30:00+09:00"
    ]
    got = fire("30 * * * *", "Asia/Shanghai", "1986-09-14T00:00+09:00", "1986-09-14T02:00+08:00")
    assert got == [
        "1986-09-14T00:30:00+09:00",
        "1986-09-14T01:30:00+09:00",
        "1986-09-14T01:30:00+08:00",
    ]


def test_shanghai_and_utc_have_no_transitions() -> None:
    for zone in ("Asia/Shanghai", "UTC"):
        got = fire("30 2 * * *", zone, "2026-01-01", "2026-12-31")
        assert len(got) == 365
        assert all("T02:30:00" in t for t in got)


# --- offset changes at local midnight -----------------------------------------------------

# Fall-backs at 24:00: the last hour of the wall date repeats after the next date's midnight
# has come and gone once (zone, that date, offset before, offset after).
MIDNIGHT_FALL_BACKS = [
    ("America/Santiago", "2025-04-05", "-03:00", "-04:00"),
    ("Africa/Cairo", "2025-10-30", "+03:00", "+02:00"),
    ("Asia/Beirut", "2025-10-25", "+03:00", "+02:00"),
    ("America/Nuuk", "2025-10-25", "-01:00", "-02:00"),
]


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def test_santiago_fall_back_at_midnight_fires_both_2300_and_both_2330() -> None:
    got = fire("*/30 * * * *", "America/Santiago", "2025-04-05", "2025-04-05")
    assert len(got) == 50
    assert got[-4:] == [
        "2025-04-05T23:00:00-03:00",
        "2025-04-05T23:30:00-03:00",
        "2025-04-05T23:00:00-04:00",
        "2025-04-05T23:30:00-04:00",
    ]
    utc = [times.format_utc(times.parse(t).resolve(None)) for t in got[-4:]]
    assert utc == [
        "2025-04-06T02:00:00.000Z",
        "2025-04-06T02:30:00.000Z",
        "2025-04-06T03:00:00.000Z",
        "2025-04-06T03:30:00.000Z",
    ]


@pytest.mark.parametrize(
    ("zone", "day", "before", "after"),
    MIDNIGHT_FALL_BACKS,
    ids=[z for z, *_ in MIDNIGHT_FALL_BACKS],
)
def test_fall_back_at_midnight_repeats_the_last_hour_for_wildcards_only(
    zone: str, day: str, before: str, after: str
) -> None:
    got = fire("*/30 * * * *", zone, day, day)
    assert len(got) == 50
    assert got[-4:] == [
        f"{day}T23:00:00{before}",
        f"{day}T23:30:00{before}",
        f"{day}T23:00:00{after}",
        f"{day}T23:30:00{after}",
    ]
    # A wildcard hour with a fixed minute is a wildcard expression too.
    assert fire("30 * * * *", zone, day, day)[-2:] == [
        f"{day}T23:30:00{before}",
        f"{day}T23:30:00{after}",
    ]
    # Fixed times fire once, at the first occurrence.
    assert fire("0,30 23 * * *", zone, day, day) == [
        f"{day}T23:00:00{before}",
        f"{day}T23:30:00{before}",
    ]
    # The next date happens once, after the repeated hour.
    nxt = _next_day(day)
    got = fire("*/30 * * * *", zone, nxt, nxt)
    assert len(got) == 48
    assert got[0] == f"{nxt}T00:00:00{after}"


def test_spring_forward_at_midnight() -> None:
    # America/Santiago 2025-09-07: 00:00 (-04:00) is 01:00 (-03:00).
    got = fire(
        "*/30 * * * *", "America/Santiago", "2025-09-06T23:00-04:00", "2025-09-07T01:30-03:00"
    )
    assert got == [
        "2025-09-06T23:00:00-04:00",
        "2025-09-06T23:30:00-04:00",
        "2025-09-07T01:00:00-03:00",
        "2025-09-07T01:30:00-03:00",
    ]
    assert fire("0,30 0 * * *", "America/Santiago", "2025-09-07", "2025-09-07") == [
        "2025-09-07T01:00:00-03:00"
    ]


def test_three_hour_fall_back_across_midnight() -> None:
    # Antarctica/Casey 2010-03-05 02:00 (+11:00) was 2010-03-04 23:00 (+08:00): three wall
    # hours of two dates repeat.
    got = fire(
        "*/30 * * * *", "Antarctica/Casey", "2010-03-04T23:00+11:00", "2010-03-05T00:30+08:00"
    )
    assert got == [
        "2010-03-04T23:00:00+11:00",
        "2010-03-04T23:30:00+11:00",
        "2010-03-05T00:00:00+11:00",
        "2010-03-05T00:30:00+11:00",
        "2010-03-05T01:00:00+11:00",
        "2010-03-05T01:30:00+11:00",
        "2010-03-04T23:00:00+08:00",
        "2010-03-04T23:30:00+08:00",
        "2010-03-05T00:00:00+08:00",
        "2010-03-05T00:30:00+08:00",
    ]
    assert fire("30 23 * * *", "Antarctica/Casey", "2010-03-04", "2010-03-05") == [
        "2010-03-04T23:30:00+11:00",
        "2010-03-05T23:30:00+08:00",
    ]


def test_count_waits_for_the_next_date_when_a_fall_back_crosses_midnight() -> None:
    # America/Goose_Bay 2010-11-07 00:01 (-03:00) was 2010-11-06 23:01 (-04:00): the first
    # 00:00 of the 7th comes before the second 23:30 of the 6th.
    tz = ZoneInfo("America/Goose_Bay")
    start = times.parse("2010-11-06T22:30-03:00").resolve(tz)
    ms, _ = cron.expand(cron.parse("0,30 * * * *"), tz, start, None, 4, 10)
    assert [iso(m, "America/Goose_Bay") for m in ms] == [
        "2010-11-06T22:30:00-03:00",
        "2010-11-06T23:00:00-03:00",
        "2010-11-06T23:30:00-03:00",
        "2010-11-07T00:00:00-03:00",
    ]


def test_leap_days() -> None:
    tz = ZoneInfo("Europe/Berlin")
    ms, _ = cron.expand(
        cron.parse("0 12 29 2 *"), tz, times.parse("2024-01-01").resolve(tz), None, 3, 10
    )
    assert [iso(m, "Europe/Berlin")[:10] for m in ms] == ["2024-02-29", "2028-02-29", "2032-02-29"]


def test_day_of_month_or_day_of_week() -> None:
    # Neither starts with "*": a day matches when either does.
    got = fire("0 0 13 * FRI", "UTC", "2026-02-01", "2026-02-28")
    assert [t[:10] for t in got] == ["2026-02-06", "2026-02-13", "2026-02-20", "2026-02-27"]
    # One starts with "*": both must match (odd days that are Fridays).
    got = fire("0 0 */2 * 5", "UTC", "2026-02-01", "2026-02-28")
    assert [t[:10] for t in got] == ["2026-02-13", "2026-02-27"]


def test_sunday_is_0_and_7_and_names_are_case_insensitive() -> None:
    assert fire("0 0 * * 0", "UTC", "2026-03-01", "2026-03-31") == fire(
        "0 0 * * 7", "UTC", "2026-03-01", "2026-03-31"
    )
    assert fire("0 0 * mar sun", "UTC", "2026-03-01", "2026-03-31") == fire(
        "0 0 * 3 0", "UTC", "2026-03-01", "2026-03-31"
    )


def test_macros() -> None:
    assert fire("@daily", "UTC", "2026-01-01", "2026-01-03") == fire(
        "0 0 * * *", "UTC", "2026-01-01", "2026-01-03"
    )
    assert len(fire("@hourly", "UTC", "2026-01-01", "2026-01-01")) == 24


def test_limit_is_enforced() -> None:
    tz = ZoneInfo("UTC")
    with pytest.raises(cron.TooMany):
        cron.expand(
            cron.parse("* * * * *"), tz, 1767225600000, 1767225600000 + 86_400_000 * 10, None, 1000
        )


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", 'bad minute field "61" (0-59)'),
        ("0 24 * * *", 'bad hour field "24" (0-23)'),
        ("0 0 0 * *", 'bad day-of-month field "0" (1-31)'),
        ("0 0 * 13 *", 'bad month field "13" (1-12)'),
        ("0 0 * * 8", 'bad day-of-week field "8" (0-7)'),
        ("0 0 * * MON#2", '"#" is not Debian cron syntax'),
        ("0 0 LW * *", '"L" is not Debian cron syntax'),
        ("0 0 * * 5L", '"L" is not Debian cron syntax'),
        ("0 0 ? * *", '"?" is not Debian cron syntax'),
        ("0 0 0 1 * *", "got 6; a seconds or year field is not supported"),
        ("0 0 31 4 *", "never occurs in APR"),
        ("*/0 * * * *", "step must be a number >= 1"),
        ("*/5/2 * * * *", 'bad minute field "*/5/2" (step must be a number >= 1)'),
        ("*/-1 * * * *", "step must be a number >= 1"),
        ("*/1.5 * * * *", "step must be a number >= 1"),
        ("5/* * * * *", "step must be a number >= 1"),
        ("1,,2 * * * *", "empty list item"),
        ("10-5 * * * *", 'bad minute field "10-5" (range end before its start)'),
        ("0 0 * * FRI-MON", 'bad day-of-week field "FRI-MON" (range end before its start)'),
        ("0 0 * * SAT-SUN", 'bad day-of-week field "SAT-SUN" (range end before its start)'),
        ("0 0 * DEC-JAN *", 'bad month field "DEC-JAN" (range end before its start)'),
        ("0 0 20-1/2 * *", 'bad day-of-month field "20-1/2" (range end before its start)'),
        ("5- * * * *", 'bad minute field "5-": incomplete range'),
        ("0 -5 * * *", 'bad hour field "-5": incomplete range'),
        ("/5 * * * *", 'bad minute field "/5": no value before "/"'),
        ("1-2-3 * * * *", 'bad minute field "2-3"'),
        ("*-5 * * * *", 'bad minute field "*"'),
        ("** * * * *", 'bad minute field "**"'),
        ("@reboot", "unknown macro"),
        ("0 0 * FOO *", "or a name (JAN-DEC)"),
    ],
)
def test_bad_expressions_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(cron.CronError) as e:
        cron.parse(expr)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("expr", "field", "term"),
    [
        ("*/ * * * *", "minute", "*/"),
        ("0-10/ * * * *", "minute", "0-10/"),
        ("2/ * * * *", "minute", "2/"),
        ("0 0 * JAN-2/ *", "month", "JAN-2/"),
        ("0 */ * * *", "hour", "*/"),
        ("0 0 1,*/ * *", "day-of-month", "*/"),
        ("0 0 * * MON-FRI/", "day-of-week", "MON-FRI/"),
        ("0 0 * * 6/", "day-of-week", "6/"),
    ],
)
def test_empty_step_is_an_error_naming_the_field(expr: str, field: str, term: str) -> None:
    with pytest.raises(cron.CronError) as e:
        cron.parse(expr)
    assert str(e.value) == f'bad {field} field "{term}": empty step'


def test_day_of_week_step_from_a_value_runs_through_7() -> None:
    # "N/step" is "N-7/step" in the day-of-week field, and 7 is Sunday.
    assert cron.parse("0 0 * * 6/1").weekdays == {6, 0}
    assert cron.parse("0 0 * * 1/3").weekdays == {1, 4, 0}
    assert cron.parse("0 0 * * 0/3").weekdays == {0, 3, 6}
    assert cron.parse("0 0 * * */7").weekdays == {0}
    got = fire("0 0 * * 6/1", "UTC", "2026-03-01", "2026-03-15")
    assert [t[:10] for t in got] == [
        "2026-03-01",
        "2026-03-07",
        "2026-03-08",
        "2026-03-14",
        "2026-03-15",
    ]
    assert got == fire("0 0 * * SAT,SUN", "UTC", "2026-03-01", "2026-03-15")
    assert got == fire("0 0 * * 6-7", "UTC", "2026-03-01", "2026-03-15")


# --- cronsim as an oracle --------------------------------------------------------------

# cronsim reads a one-value range with a step ("5-5/2", "SUN-SUN/1") as "5/2", i.e. from 5
# to the end of the field; Debian cron reads it as the one value. We follow Debian.
_DEGENERATE = re.compile(r"(?:^|[ ,])(\w+)-(\w+)/")


def _has_degenerate_range(expr: str) -> bool:
    return any(a == b for a, b in _DEGENERATE.findall(expr))


def test_one_value_range_with_step_is_that_value() -> None:
    assert fire("0 0 * * SUN-SUN/1", "UTC", "2026-03-01", "2026-03-14") == fire(
        "0 0 * * SUN", "UTC", "2026-03-01", "2026-03-14"
    )


def _lord_howe_fall_backs() -> list[int]:
    tz = ZoneInfo("Australia/Lord_Howe")
    out = []
    ms = times.parse("2023-01-01T00:00Z").resolve(None)
    prev = times.offset_at(tz, ms)
    while ms < times.parse("2029-01-01T00:00Z").resolve(None):
        ms += 1_800_000
        off = times.offset_at(tz, ms)
        if off < prev:
            out.append(ms)
        prev = off
    return out


# cronsim advances wildcard expressions by whole hours (and, for a single minute, by
# "minutes to go" of real time), which assumes offset changes of whole hours. Around Lord
# Howe's half-hour shifts it skips real instants whose wall time matches (the second 01:30
# after the fall-back, 02:00-02:29 after it, 00:00-00:29 the next day). docs/plans.md says every
# such instant fires; named tests pin those cases, and the oracle is asked only about
# fixed-time expressions there, which it steps through in wall time.
LORD_HOWE_FALL_BACKS = _lord_howe_fall_backs()


def _cronsim_is_reliable(parsed: cron.Cron, zone: str) -> bool:
    return zone != "Australia/Lord_Howe" or parsed.fixed


def test_lord_howe_hour_after_fall_back_fires_at_every_real_instant() -> None:
    got = fire("* 2 * * *", "Australia/Lord_Howe", "2027-04-04", "2027-04-04")
    assert len(got) == 60
    assert got[0] == "2027-04-04T02:00:00+10:30"
    assert got[-1] == "2027-04-04T02:59:00+10:30"
    assert (
        times.parse("2027-04-04T02:00+10:30").resolve(None) - LORD_HOWE_FALL_BACKS[-2] == 1_800_000
    )


def test_lord_howe_repeated_half_hour_fires_twice() -> None:
    got = fire(
        "30 * * * *", "Australia/Lord_Howe", "2025-04-06T00:00+11:00", "2025-04-06T03:00+10:30"
    )
    assert got == [
        "2025-04-06T00:30:00+11:00",
        "2025-04-06T01:30:00+11:00",
        "2025-04-06T01:30:00+10:30",
        "2025-04-06T02:30:00+10:30",
    ]


def test_lord_howe_day_after_a_shift_keeps_whole_hours() -> None:
    got = fire("* 0 * * *", "Australia/Lord_Howe", "2025-04-07", "2025-04-07")
    assert len(got) == 60
    assert got[0] == "2025-04-07T00:00:00+10:30"
    got = fire("*/20 3 * * *", "Australia/Lord_Howe", "2025-10-05", "2025-10-06")
    assert got == [f"2025-10-0{d}T03:{m}:00+11:00" for d in (5, 6) for m in ("00", "20", "40")]


def oracle(expr: str, zone: str, start: int, end: int, limit: int) -> list[int]:
    tz = ZoneInfo(zone)
    # One second before ``start`` as an instant (UTC arithmetic): wall-clock arithmetic
    # would land in a spring-forward gap when ``start`` is the first instant after one.
    it = CronSim(expr, datetime.fromtimestamp((start - 1000) / 1000, UTC).astimezone(tz))
    out: list[int] = []
    for dt in it:
        ms = int(dt.astimezone(UTC).timestamp()) * 1000
        if ms > end or len(out) >= limit:
            break
        if ms >= start:
            out.append(ms)
    return out


def _field(lo: int, hi: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    num = st.integers(lo, hi)

    def name_or_num(n: int) -> str:
        if names and n - lo < len(names) and n % 3 == 0:
            return names[n - lo]
        return str(n)

    single = num.map(name_or_num)
    rng = st.tuples(num, num).map(lambda t: f"{name_or_num(min(t))}-{name_or_num(max(t))}")
    step = st.integers(1, max(1, (hi - lo) // 2))
    term = st.one_of(
        st.just("*"),
        single,
        rng,
        st.tuples(st.sampled_from(["*"]), step).map(lambda t: f"{t[0]}/{t[1]}"),
        st.tuples(rng, step).map(lambda t: f"{t[0]}/{t[1]}"),
    )
    return st.lists(term, min_size=1, max_size=3).map(",".join)


MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
expressions = st.tuples(
    _field(0, 59),
    _field(0, 23),
    _field(1, 31),
    _field(1, 12, MONTHS),
    _field(0, 7, DAYS),
).map(" ".join)

# Windows that cross DST changes: start near a transition of each zone, or anywhere.
TRANSITIONS = [
    "2025-03-30T00:00Z",
    "2025-10-26T00:00Z",
    "2025-03-09T06:00Z",
    "2025-11-02T05:00Z",
    "2025-04-05T14:00Z",
    "2025-10-04T15:00Z",
    "2026-03-29T00:00Z",
    "2026-10-25T00:00Z",
    "2024-02-28T00:00Z",
    "1986-05-03T18:00Z",
    "1986-09-13T17:00Z",
    "1991-04-13T18:00Z",
]
starts = st.one_of(
    st.tuples(st.sampled_from(TRANSITIONS), st.integers(-36 * 60, 12 * 60)).map(
        lambda t: times.parse(t[0]).resolve(None) + t[1] * 60_000
    ),
    st.integers(
        times.parse("2024-01-01T00:00Z").resolve(None),
        times.parse("2027-12-31T00:00Z").resolve(None),
    ),
)


# Hypothesis examples per property test: CI runs the default; CRON_EXAMPLES=2000 for more.
EXAMPLES = int(os.environ.get("CRON_EXAMPLES", "300"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    expr=expressions,
    zone=st.sampled_from(ZONES),
    start=starts,
    hours=st.integers(1, 24 * 45),
)
def test_matches_cronsim(expr: str, zone: str, start: int, hours: int) -> None:
    assume(not _has_degenerate_range(expr))
    end = start + hours * 3_600_000
    limit = 3000
    try:
        parsed = cron.parse(expr)
    except cron.CronError:
        with pytest.raises(CronSimError):
            CronSim(expr, datetime.now(UTC))
        return
    assume(_cronsim_is_reliable(parsed, zone))
    expected = oracle(expr, zone, start, end, limit)
    got, _ = cron.expand(parsed, ZoneInfo(zone), start, end, None, 10**7)
    if len(expected) == limit:
        got = [m for m in got if m <= expected[-1]]
    assert got == expected


@settings(max_examples=EXAMPLES // 3, deadline=None)
@given(expr=expressions, zone=st.sampled_from(ZONES), start=starts, count=st.integers(1, 50))
def test_count_matches_cronsim(expr: str, zone: str, start: int, count: int) -> None:
    assume(not _has_degenerate_range(expr))
    try:
        parsed = cron.parse(expr)
    except cron.CronError:
        return
    assume(_cronsim_is_reliable(parsed, zone))
    expected = oracle(expr, zone, start, times.MAX_EPOCH_MS, count)
    got, _ = cron.expand(parsed, ZoneInfo(zone), start, None, count, 10**7)
    assert got == expected


# --- a brute-force oracle, and every zone with an unusual offset change ----------------
#
# The oracle shares no code with planrunner: it parses the fields itself (Debian's grammar,
# plus "N/step" as planrunner reads it), steps through every UTC minute of the window,
# reads the wall clock with zoneinfo, and applies Debian's DST rules minute by minute: a
# wildcard expression fires whenever the wall time matches; a fixed-time expression fires
# when the wall clock first reaches a matching time, or at the first minute after a jump
# forward that skipped one, and not when a fall-back brings a wall time round again.

MINUTE_MS = 60_000
DAY_MS = 86_400_000
_NAMES = {3: MONTHS, 4: DAYS}
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_TERM = re.compile(r"(\*|\w+)(?:-(\w+))?(?:/(\d+))?")


def oracle_matcher(expr: str) -> tuple[Callable[[datetime], bool], bool]:
    """A predicate on naive wall times, and whether the expression is fixed-time."""
    fields = expr.split()
    sets: list[set[int]] = []
    for i, text in enumerate(fields):
        lo, hi = _BOUNDS[i]
        names = _NAMES.get(i, [])

        def num(word: str, lo: int = lo, names: list[str] = names) -> int:
            return names.index(word.upper()) + lo if word.upper() in names else int(word)

        values: set[int] = set()
        for term in text.split(","):
            m = _TERM.fullmatch(term)
            assert m, term
            first, last, step = m.groups()
            a = lo if first == "*" else num(first)
            b = hi if first == "*" else num(last) if last else hi if step else a
            values.update(range(a, b + 1, int(step or 1)))
        sets.append(values)
    minutes, hours, days, months, weekdays = sets
    weekdays = {w % 7 for w in weekdays}
    either = not (fields[2].startswith("*") or fields[4].startswith("*"))

    def matches(w: datetime) -> bool:
        if w.minute not in minutes or w.hour not in hours or w.month not in months:
            return False
        dom, dow = w.day in days, w.isoweekday() % 7 in weekdays
        return (dom or dow) if either else (dom and dow)

    return matches, not fields[0].startswith("*") and not fields[1].startswith("*")


@functools.lru_cache(maxsize=64)
def _walls(zone: str, first: int, last: int) -> tuple[tuple[int, datetime], ...]:
    tz = ZoneInfo(zone)
    return tuple(
        (ms, datetime.fromtimestamp(ms // 1000, tz).replace(tzinfo=None))
        for ms in range(first, last + 1, MINUTE_MS)
    )


def brute_force(expr: str, zone: str, start: int, end: int) -> list[int]:
    """Fire times in [start, end], from two days earlier so that history is known."""
    matches, fixed = oracle_matcher(expr)
    first = (start - 2 * DAY_MS) // MINUTE_MS * MINUTE_MS
    out: list[int] = []
    reached: datetime | None = None  # the latest wall time the clock has shown
    one = timedelta(minutes=1)
    for ms, wall in _walls(zone, first, end // MINUTE_MS * MINUTE_MS):
        if not fixed or reached is None or wall - reached == one:
            hit = matches(wall)
        elif wall <= reached:
            hit = False  # shown again after a fall-back: fired the first time
        else:  # a jump forward: the wall times it skipped fire now
            hit = any(matches(reached + k * one) for k in range(1, (wall - reached) // one + 1))
        if reached is None or wall > reached:
            reached = wall
        if hit and ms >= start:
            out.append(ms)
    return out


@functools.cache
def zone_transitions(zone: str) -> tuple[tuple[int, int, int], ...]:
    """(instant, offset before, offset after) in ms of every offset change 2000-2030.

    Found by probing every two days and bisecting to the second, which sees every change
    as no zone changes its offset twice within two days (test below).
    """
    tz = ZoneInfo(zone)

    def offset(sec: int) -> int:
        off = datetime.fromtimestamp(sec, tz).utcoffset()
        assert off is not None
        return int(off.total_seconds()) * 1000

    sec, last = 946_684_800, 1_924_992_000  # 2000-01-01, 2031-01-01
    prev = offset(sec)
    out = []
    while sec < last:
        nxt = min(sec + 2 * 86_400, last)
        off = offset(nxt)
        if off != prev:
            lo, hi = sec, nxt
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(mid) == prev else (lo, mid)
            out.append((hi * 1000, prev, off))
            prev = off
        sec = nxt
    return tuple(out)


@functools.cache
def unusual_transitions() -> dict[str, dict[str, tuple[tuple[int, int, int], ...]]]:
    """Every zone's unusual changes 2000-2030, by kind, from a scan of the zone database.

    "midnight": the wall times a change skips or repeats touch or cross a local midnight.
    "odd": the change or an offset is not whole hours (30 and 45 minutes: Lord_Howe,
    Chatham, Adelaide, St_Johns, Tehran...). "double": two hours or more at once, or a
    year with more than two changes (daylight saving suspended for Ramadan, for instance).
    """
    kinds: dict[str, dict[str, tuple[tuple[int, int, int], ...]]] = {
        "midnight": {},
        "odd": {},
        "double": {},
    }
    for zone in sorted(zoneinfo.available_timezones()):
        found: dict[str, list[tuple[int, int, int]]] = {k: [] for k in kinds}
        trans = zone_transitions(zone)
        per_year: dict[int, int] = {}
        for t in trans:
            year = datetime.fromtimestamp(t[0] // 1000, UTC).year
            per_year[year] = per_year.get(year, 0) + 1
        for t in trans:
            at, a, b = t
            lo, hi = at + min(a, b), at + max(a, b)
            if lo % DAY_MS == 0 or hi % DAY_MS == 0 or lo // DAY_MS != hi // DAY_MS:
                found["midnight"].append(t)
            if (a - b) % 3_600_000 or a % 3_600_000 or b % 3_600_000:
                found["odd"].append(t)
            if (
                abs(a - b) >= 7_200_000
                or per_year[datetime.fromtimestamp(at // 1000, UTC).year] > 2
            ):
                found["double"].append(t)
        for kind, ts in found.items():
            if ts:
                kinds[kind][zone] = tuple(ts)
    return kinds


def _tzif(zone: str) -> bytes:
    # Where zoneinfo looks: the first TZPATH directory holding the zone, else tzdata.
    for directory in zoneinfo.TZPATH:
        path = Path(directory, zone)
        if path.is_file():
            return path.read_bytes()
    return importlib.resources.files("tzdata").joinpath("zoneinfo", *zone.split("/")).read_bytes()


def tzif_offset_changes(zone: str) -> list[tuple[int, int]]:
    """(second, offset after) of each listed transition that changes the offset (RFC 8536)."""
    data = _tzif(zone)
    assert data[:4] == b"TZif"
    isut, isstd, leap, timecnt, typecnt, charcnt = struct.unpack(">6l", data[20:44])
    base, width = 0, 4
    if data[4:5] >= b"2":  # skip the 32-bit block for the 64-bit one
        base = 44 + timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut
        isut, isstd, leap, timecnt, typecnt, charcnt = struct.unpack(
            ">6l", data[base + 20 : base + 44]
        )
        width = 8
    p = base + 44
    at = struct.unpack(f">{timecnt}{'q' if width == 8 else 'l'}", data[p : p + timecnt * width])
    p += timecnt * width
    kinds = data[p : p + timecnt]
    p += timecnt
    offsets = [struct.unpack(">l", data[p + 6 * i : p + 6 * i + 4])[0] for i in range(typecnt)]
    out: list[tuple[int, int]] = []
    prev = offsets[0]
    for t, k in zip(at, kinds, strict=True):
        if offsets[k] != prev:
            out.append((t, offsets[k]))
            prev = offsets[k]
    return out


@pytest.mark.slow  # sweeps every zone of the database: tens of seconds
def test_zone_database_never_changes_offset_twice_within_two_days() -> None:
    # cron._steady_offset checks a day's first and last wall times only, and the scan
    # above probes every two days: both rely on this. Every listed transition of every
    # zone, any year (the closest are Africa/Freetown's of 1939, four days apart), and the
    # changes of 2000-2030 found by probing (slim files leave those to a rule).
    closest = (float("inf"), "")
    for zone in sorted(zoneinfo.available_timezones()):
        changes = [t for t, _ in tzif_offset_changes(zone)]
        changes += [at // 1000 for at, _, _ in zone_transitions(zone)]
        changes = sorted(set(changes))
        for a, b in itertools.pairwise(changes):
            closest = min(closest, (b - a, f"{zone} {datetime.fromtimestamp(a, UTC)}"))
    assert closest[0] > 2 * 86_400, closest


def test_unusual_transitions_include_the_known_cases() -> None:
    kinds = unusual_transitions()
    assert {"America/Santiago", "Africa/Cairo", "Asia/Beirut", "America/Nuuk"} <= set(
        kinds["midnight"]
    )
    assert {"Australia/Lord_Howe", "Pacific/Chatham", "America/St_Johns"} <= set(kinds["odd"])
    assert {"Antarctica/Casey", "Antarctica/Troll", "Africa/Cairo", "Pacific/Apia"} <= set(
        kinds["double"]
    )
    santiago = times.parse("2025-04-06T03:00Z").resolve(None)
    assert (santiago, -3 * 3_600_000, -4 * 3_600_000) in kinds["midnight"]["America/Santiago"]


# Expressions that probe the edges of a day and of a change.
AROUND_A_CHANGE = [
    "*/30 * * * *",
    "*/15 * * * *",
    "45 * * * *",
    "* 23,0 * * *",
    "*/20 22-23,0-3 * * *",
    "30 2 * * *",
    "0,15,30,45 0-3,23 * * *",
    "59 23 * * *",
    "0 0 * * *",
    "0 0 * * 0",
]


def _unusual_windows(every: bool) -> list[tuple[str, str, int]]:
    """(kind, zone, change) for each zone of each kind: its first and last, or every one."""
    out = []
    for kind, zones in unusual_transitions().items():
        for zone, trans in zones.items():
            for t in trans if every else sorted({trans[0], trans[-1]}):
                out.append((kind, zone, t[0]))
    return out


def _check_windows(windows: list[tuple[str, str, int]]) -> None:
    wrong = []
    for kind, zone, at in windows:
        start, end = at - 30 * 3_600_000, at + 30 * 3_600_000
        tz = ZoneInfo(zone)
        for expr in AROUND_A_CHANGE:
            got, _ = cron.expand(cron.parse(expr), tz, start, end, None, 10**6)
            if got != brute_force(expr, zone, start, end):
                wrong.append(f"{kind} {zone} {times.format_utc(at)} {expr!r}")
    assert not wrong, f"{len(wrong)} wrong, e.g. {wrong[:10]}"


@pytest.mark.slow  # sweeps every zone of the database: tens of seconds
def test_every_zone_with_an_unusual_change_matches_brute_force() -> None:
    """The first and last unusual change of every zone; CRON_TRANSITIONS=all checks all
    2,289 changes of 2000-2030 (about 50 s)."""
    _check_windows(_unusual_windows(every=os.environ.get("CRON_TRANSITIONS") == "all"))


def _unusual_zone_change() -> st.SearchStrategy[tuple[str, int]]:
    zones: dict[str, set[int]] = {}
    for by_zone in unusual_transitions().values():
        for zone, trans in by_zone.items():
            zones.setdefault(zone, set()).update(t[0] for t in trans)
    return st.sampled_from(sorted(zones)).flatmap(
        lambda z: st.tuples(st.just(z), st.sampled_from(sorted(zones[z])))
    )


# Mostly every day, so that windows of a day or two around a change fire at all.
_every_day = st.sampled_from(["*", "*", "*/1"])
dense_expressions = st.one_of(
    st.sampled_from(AROUND_A_CHANGE),
    st.tuples(
        _field(0, 59),
        _field(0, 23),
        st.one_of(_every_day, _field(1, 31)),
        st.one_of(_every_day, _field(1, 12, MONTHS)),
        st.one_of(_every_day, _field(0, 7, DAYS)),
    ).map(" ".join),
)
near_unusual_changes = st.deferred(_unusual_zone_change)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expr=dense_expressions,
    change=near_unusual_changes,
    before=st.integers(0, 30 * 60 * 60_000),
    length=st.integers(0, 48 * 60 * 60_000),
)
def test_matches_brute_force_near_unusual_changes(
    expr: str, change: tuple[str, int], before: int, length: int
) -> None:
    zone, at = change
    try:
        parsed = cron.parse(expr)
    except cron.CronError:
        assume(False)
    start = at - before
    end = start + length
    got, _ = cron.expand(parsed, ZoneInfo(zone), start, end, None, 10**7)
    assert got == brute_force(expr, zone, start, end)


@settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expr=dense_expressions,
    change=near_unusual_changes,
    before=st.integers(0, 30 * 60 * 60_000),
    count=st.integers(1, 60),
)
def test_count_matches_brute_force_near_unusual_changes(
    expr: str, change: tuple[str, int], before: int, count: int
) -> None:
    zone, at = change
    try:
        parsed = cron.parse(expr)
    except cron.CronError:
        assume(False)
    start = at - before
    horizon = start + 3 * DAY_MS
    expected = brute_force(expr, zone, start, horizon)[:count]
    got, _ = cron.expand(parsed, ZoneInfo(zone), start, None, count, 10**7)
    assert [m for m in got if m <= horizon] == expected


@settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(expr="* * * * *", zone="Asia/Shanghai", start=515527200000, hours=1)  # at a gap's end
@given(expr=expressions, zone=st.sampled_from(ZONES), start=starts, hours=st.integers(1, 72))
def test_brute_force_agrees_with_cronsim(expr: str, zone: str, start: int, hours: int) -> None:
    # The oracle checked against the other: where cronsim is reliable, they agree.
    assume(not _has_degenerate_range(expr))
    try:
        parsed = cron.parse(expr)
    except cron.CronError:
        assume(False)
    assume(_cronsim_is_reliable(parsed, zone))
    end = start + hours * 3_600_000
    assert brute_force(expr, zone, start, end) == oracle(expr, zone, start, end, 10**6)


_MALFORMED = st.sampled_from(
    ["*/", "0-10/", "2/", "/5", "5-", "-5", "9-3", "1-2-3", "*/5/2", "*/x", "**", "*-5", "1,", ","]
)


@settings(max_examples=EXAMPLES // 3, deadline=None)
@given(expr=expressions, field=st.integers(0, 4), bad=_MALFORMED, where=st.integers(0, 2))
def test_malformed_terms_are_errors_naming_the_field(
    expr: str, field: int, bad: str, where: int
) -> None:
    parts = expr.split()
    terms = parts[field].split(",")
    terms.insert(min(where, len(terms)), bad)
    parts[field] = ",".join(terms)
    with pytest.raises(cron.CronError) as e:
        cron.parse(" ".join(parts))
    assert str(e.value).startswith(f"bad {cron.FIELDS[field]} field ")
    with pytest.raises(CronSimError):
        CronSim(" ".join(parts), datetime.now(UTC))
