"""Time forms of the plan language (docs/plans.md)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from planrunner import times

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("value", "zone", "expected"),
    [
        (1772409600000, None, 1772409600000),
        ("1772409600000", None, 1772409600000),
        ("2026-03-01T08:00:00+08:00", None, 1772323200000),
        ("2026-03-01T00:00:00Z", None, 1772323200000),
        ("2026-03-01t00:00:00z", None, 1772323200000),
        ("2026-03-01 00:00", "UTC", 1772323200000),
        ("2026-03-01T08:00", "Asia/Shanghai", 1772323200000),
        ("2026-03-01T00:00:00.250Z", None, 1772323200250),
        ("2026-03-01T05:30:00+0530", None, 1772323200000),
        ("2026-03-01", "Asia/Shanghai", 1772294400000),
        # Spring-forward gap: a naive wall time in it means the first instant after it.
        ("2025-03-30T02:30", "Europe/Berlin", 1743296400000),
        # Fall-back overlap: the first occurrence.
        ("2025-10-26T02:30", "Europe/Berlin", 1761438600000),
    ],
)
def test_time_forms(value: object, zone: str | None, expected: int) -> None:
    tz = ZoneInfo(zone) if zone else None
    assert times.parse(value).resolve(tz) == expected


def test_only_integers_must_be_after_2000() -> None:
    # The 2000 rule catches seconds-for-milliseconds; a written-out date-time means what it says.
    assert times.parse("1988-06-01T00:00:00+08:00").resolve(None) == 581097600000
    with pytest.raises(times.TimeError, match="not seconds"):
        times.parse(581097600).resolve(None)


def test_date_only_end_covers_the_whole_day() -> None:
    end = times.parse("2026-01-31").end_of(SHANGHAI)
    assert end == times.parse("2026-02-01T00:00:00+08:00").resolve(None) - 1


def test_naive_time_without_zone_is_an_error() -> None:
    with pytest.raises(times.TimeError, match="no timezone is in scope"):
        times.parse("2026-01-01 06:00").resolve(None)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1772409600, "not seconds"),
        (10**25, "after year 9999"),
        ("2026-02-30", "day is out of range"),
        ("2026-01-01T24:00", "out of range"),
        ("next tuesday", "is not a time"),
        (True, "expected a time"),
        ("2026-01-01T00:00+25:00", "invalid UTC offset"),
    ],
)
def test_bad_times(value: object, message: str) -> None:
    with pytest.raises(times.TimeError, match=message):
        times.parse(value).resolve(BERLIN)


def test_unknown_zone_suggests_the_closest() -> None:
    with pytest.raises(times.TimeError, match='did you mean "Europe/Berlin"'):
        times.zone("Europe/Berln")


@pytest.mark.parametrize("ms", [1767204000000, 1743296400000, 1761442200000, 1767204000123])
def test_format_local_matches_datetime(ms: int) -> None:
    from datetime import datetime

    dt = datetime.fromtimestamp(ms / 1000, BERLIN)
    text = times.format_in_zone(ms, BERLIN)
    assert datetime.fromisoformat(text).timestamp() == dt.timestamp()
    assert text.endswith(dt.isoformat()[-6:])


def test_now_accepts_naive_as_utc() -> None:
    assert (
        times.parse_now("2026-01-01T00:00") == times.parse_now("2026-01-01T00:00Z") == 1767225600000
    )
    assert times.parse_now("1767225600000") == 1767225600000
