"""Cron expressions with Debian cron semantics, expanded to epoch milliseconds.

Dense schedules are expanded per matching day: the day's times of day are one list of
offsets added to the day's start, and zone lookups happen once per day. Only days with a
wall time that does not happen exactly once at the day's offset take the slow path, which
applies Debian's DST rules (see docs/plans.md) to each wall time. That includes the
day before a fall-back at local midnight: its last hour is repeated after the next day's
midnight (:func:`_steady_offset`). The rules match the ``cronsim`` library, which the tests
use as an oracle beside a minute-by-minute brute force.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from planrunner import times

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MS = timedelta(milliseconds=1)
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# How far `count:` looks for fire times: one Gregorian cycle covers every pattern.
HORIZON_DAYS = 146_097
HORIZON_YEARS = 400
_LAST_ORDINAL = date(9999, 12, 31).toordinal()


class CronError(ValueError):
    """A cron expression that Debian cron would not accept; the message names the field."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression: the sets each field allows and how days combine."""

    expr: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_and: bool  # either day field starts with "*": both must match
    fixed: bool  # minute and hour both start with something other than "*"

    def matches_day(self, d: date) -> bool:
        """Whether ``d`` is a day this expression fires on."""
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (d.weekday() + 1) % 7 in self.weekdays
        return (dom and dow) if self.day_and else (dom or dow)


def _number(field: int, text: str) -> int:
    name = FIELDS[field]
    upper = text.upper()
    if field == 3 and upper in _MONTHS:
        return _MONTHS.index(upper) + 1
    if field == 4 and upper in _DAYS:
        return _DAYS.index(upper)
    lo, hi = _RANGES[field]
    if not text.isdigit() or not text.isascii():
        for ch in "LW#?":
            if ch in upper and upper not in _MONTHS + _DAYS:
                raise CronError(
                    f'bad {name} field "{text}": "{ch}" is not Debian cron syntax '
                    "(L, W, # and ? are not supported)"
                )
        names = (
            " or a name (JAN-DEC)" if field == 3 else " or a name (SUN-SAT)" if field == 4 else ""
        )
        raise CronError(f'bad {name} field "{text}" (expected a number {lo}-{hi}{names})')
    value = int(text)
    if not lo <= value <= hi:
        raise CronError(f'bad {name} field "{value}" ({lo}-{hi})')
    return value


def _parse_field(field: int, text: str) -> set[int]:
    name = FIELDS[field]
    lo, hi = _RANGES[field]
    out: set[int] = set()
    for term in text.split(","):
        if not term:
            raise CronError(f'bad {name} field "{text}" (empty list item)')
        base, slash, step_text = term.partition("/")
        if slash and not step_text:
            raise CronError(f'bad {name} field "{term}": empty step')
        if not base:
            raise CronError(f'bad {name} field "{term}": no value before "/"')
        if base == "*":
            items = list(range(lo, hi + 1))
            if field == 4 and not slash:
                items = list(range(0, 7))
        elif "-" in base:
            a, _, b = base.partition("-")
            if not a or not b:
                raise CronError(f'bad {name} field "{term}": incomplete range')
            start, end = _number(field, a), _number(field, b)
            if end < start:
                raise CronError(f'bad {name} field "{term}" (range end before its start)')
            items = list(range(start, end + 1))
        else:
            items = [_number(field, base)]
            if slash:
                # As cronsim (and common crons) read "5/15": from 5 to the end, every 15.
                # The end of day-of-week is 7, so "6/1" is Saturday and Sunday.
                items = list(range(items[0], hi + 1))
        if slash:
            if not step_text.isdigit() or not step_text.isascii() or int(step_text) == 0:
                raise CronError(f'bad {name} field "{term}" (step must be a number >= 1)')
            items = items[:: int(step_text)]
        out.update(items)
    return out


def parse(expr: str) -> Cron:
    """Parse a five-field expression or macro, or raise :class:`CronError`."""
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in MACROS:
            known = " ".join(sorted(MACROS))
            raise CronError(f'unknown macro "{text}" (known: {known})')
        text = MACROS[text.lower()]
    parts = text.split()
    if len(parts) != 5:
        more = "; a seconds or year field is not supported" if len(parts) in (6, 7) else ""
        raise CronError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(parts)}{more}"
        )
    minutes, hours, days, months, weekdays = (_parse_field(i, part) for i, part in enumerate(parts))
    day_and = parts[2].startswith("*") or parts[4].startswith("*")
    if day_and and min(days) > max(_DAYS_IN_MONTH[m] for m in months):
        month_names = ",".join(_MONTHS[m - 1] for m in sorted(months))
        raise CronError(f'bad day-of-month field "{parts[2]}": never occurs in {month_names}')
    return Cron(
        expr=expr,
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(w % 7 for w in weekdays),
        day_and=day_and,
        fixed=not parts[0].startswith("*") and not parts[1].startswith("*"),
    )


class TooMany(Exception):
    """Expansion passed its limit; ``count`` is how many fire times there are (at least)."""

    def __init__(self, count: int, exact: bool = True) -> None:
        super().__init__(count)
        self.count = count
        self.exact = exact


# Past the limit, fire times are only counted (for the message), up to this many limits.
COUNT_PAST_LIMIT = 100


def expand(
    cron: Cron,
    tz: ZoneInfo,
    start: int,
    end: int | None,
    count: int | None,
    limit: int,
) -> tuple[list[int], list[int]]:
    """Fire times in ``[start, end]`` (or the first ``count`` at or after ``start``).

    Returns instants and the zone offset at each (for display). Raises :class:`TooMany`
    once more than ``limit`` fire times are found.
    """
    tod = [(h * 60 + m) * 60_000 for h in cron.hours for m in cron.minutes]
    out_ms: list[int] = []
    out_off: list[int] = []
    needs_sort = False
    # Wall dates to visit: a day either side, since offsets move instants across dates.
    first_day = times.date_of_wall(start + times.offset_at(tz, start)).toordinal() - 1
    if end is not None:
        last_day = times.date_of_wall(end + times.offset_at(tz, end)).toordinal() + 1
    else:
        last_day = first_day + HORIZON_DAYS
    last_day = min(last_day, _LAST_ORDINAL)  # the calendar ends with 9999
    upper = end if end is not None else times.MAX_EPOCH_MS
    # With ``count``: once that many are found, the wall date past which no day can add an
    # earlier one (a wall date's instants all come after its midnight less a day).
    stop_wall: int | None = None
    days = _fire_days(cron, tz, first_day, last_day, tod)
    for wall0, day_ms, day_off, transition in days:
        if stop_wall is not None and wall0 > stop_wall:
            break
        needs_sort = needs_sort or transition
        if not day_ms:
            continue
        if day_ms[0] < start or day_ms[-1] > upper:
            keep = [i for i, ms in enumerate(day_ms) if start <= ms <= upper]
            out_ms += [day_ms[i] for i in keep]
            out_off += [day_off[i] for i in keep]
        else:
            out_ms += day_ms
            out_off += day_off
        if count is not None:
            if stop_wall is None and len(out_ms) >= count:
                # A later wall date can still hold earlier instants (a fall-back across
                # midnight repeats the end of one day after the next has begun).
                kth = (sorted(out_ms) if needs_sort else out_ms)[count - 1]
                stop_wall = kth + times.DAY_MS
        elif len(out_ms) > limit + len(tod):
            # The margin covers fire times a transition day's de-duplication may drop.
            # Count the rest (keeping none) so that the message can say how many.
            found, cap = len(out_ms), limit * COUNT_PAST_LIMIT
            del out_ms, out_off
            for _, rest, _, _ in days:
                found += sum(1 for ms in rest if ms <= upper)
                if found > cap:
                    raise TooMany(cap, exact=False)
            raise TooMany(found)
    if needs_sort:
        by_ms = dict(zip(out_ms, out_off, strict=True))
        out_ms = sorted(by_ms)
        out_off = [by_ms[ms] for ms in out_ms]
    if count is not None:
        out_ms, out_off = out_ms[:count], out_off[:count]
    if len(out_ms) > limit:
        raise TooMany(len(out_ms))
    return out_ms, out_off


def _fire_days(
    cron: Cron, tz: ZoneInfo, first_day: int, last_day: int, tod: list[int]
) -> Iterator[tuple[int, list[int], list[int], bool]]:
    """Per matching wall date: its midnight (naive ms), its fire instants and their
    offsets, and whether it is a transition day (its instants may need sorting)."""
    ordinal = first_day
    while ordinal <= last_day:
        d = date.fromordinal(ordinal)
        if d.month not in cron.months:
            # Jump to the first day of the next month.
            ordinal += calendar.monthrange(d.year, d.month)[1] - d.day + 1
            continue
        ordinal += 1
        if not cron.matches_day(d):
            continue
        wall0 = times.wall_ms_of(d)
        off = _steady_offset(tz, d)
        if off is not None:
            base = wall0 - off
            yield wall0, [base + t for t in tod], [off] * len(tod), False
        else:
            yield wall0, *_transition_day(cron, tz, wall0, tod), True


def _steady_offset(tz: ZoneInfo, d: date) -> int | None:
    """The offset (ms) at which every wall time of date ``d`` happens exactly once, if any.

    ``None`` sends the day to the slow path. The test is on wall times, not instants: the
    day's first and last wall-clock microsecond must each happen once (zoneinfo gives fold 0
    and fold 1 different offsets in a gap or an overlap) and at the same offset. A change
    inside the day shows as a different offset at its end; a change at either edge shows as
    a gap or overlap there. Checking the instants of the day's first and last wall times
    instead misses a fall-back at the next local midnight (America/Santiago 2025-04-06 00:00
    back to 23:00): its repeated hour is this day's, but comes after the next day's midnight.
    This is exact as long as no zone changes offset twice within a day; in the zone
    database the closest two changes are four days apart (tests/plan_language/test_cron.py checks it).
    """
    first = datetime(d.year, d.month, d.day, tzinfo=tz)
    last = datetime(d.year, d.month, d.day, 23, 59, 59, 999_999, tzinfo=tz)
    off = first.utcoffset()
    if (
        off is None
        or first.replace(fold=1).utcoffset() != off
        or last.utcoffset() != off
        or last.replace(fold=1).utcoffset() != off
    ):
        return None
    return off // _MS


def _transition_day(
    cron: Cron, tz: ZoneInfo, wall0: int, tod: list[int]
) -> tuple[list[int], list[int]]:
    """A day on which the offset changes: Debian's DST rules, wall time by wall time."""
    found: dict[int, int] = {}
    gap_end = gap_instant = 0  # the last gap's first real wall time after it, and its instant
    for t in tod:
        wall = wall0 + t
        real = times.wall_instants(tz, wall)
        if cron.fixed:
            # Fixed-time jobs fire once: first occurrence in an overlap, and just after
            # a gap for a wall time the gap swallowed.
            if real:
                instant = real[0]
            elif wall < gap_end:
                instant = gap_instant  # same gap (times of day ascend)
            else:
                instant = gap_instant = times.wall_to_instant(tz, wall)
                gap_end = instant + times.offset_at(tz, instant)
            found[instant] = times.offset_at(tz, instant)
        else:
            for instant in real:
                found[instant] = wall - instant
    ms = sorted(found)
    return ms, [found[m] for m in ms]
