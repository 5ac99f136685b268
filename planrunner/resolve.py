"""Pure resolution: a plan and a moment -> sorted trigger entries."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from datetime import date, timedelta
from functools import partial
from itertools import pairwise, repeat

from planrunner import cron as cronlib
from planrunner import times
from planrunner.outcome import Entry
from planrunner.plan import Flow, Plan
from planrunner.source import Path, Problem

# Entry lives in outcome (a leaf) now; resolve re-exports it for its old importers.
__all__ = ["DEFAULT_MAX_TRIGGERS", "Entry", "EntryKeys", "resolve"]

DEFAULT_MAX_TRIGGERS = 110_000  # above a (leap) year of */5: 105,408
ONE_DAY = timedelta(days=1)


class EntryKeys(AbstractSet[str]):
    """The keys of sorted ``entries`` as a read-only set, without a string per key: a
    lookup is a binary search on (triggerTime, flowId)."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        self._entries = entries

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        head, _, tail = key.rpartition("/")
        org, _, fid = head.rpartition("/")
        if not (tail.isdigit() and tail.isascii() and fid.isdigit() and fid.isascii()):
            return False
        tt, flow_id = int(tail), int(fid)
        if key != f"{org}/{flow_id}/{tt}":
            return False  # leading zeros: not a key planrunner writes
        i = bisect_left(self._entries, (tt, flow_id))
        while i < len(self._entries):
            e = self._entries[i]
            if e.trigger_time != tt or e.flow_id != flow_id:
                return False
            if e.org_id == org:
                return True
            i += 1
        return False

    def __iter__(self) -> Iterator[str]:
        return (e.key for e in self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def resolve(
    plan: Plan, now: int, max_triggers: int = DEFAULT_MAX_TRIGGERS
) -> tuple[list[Entry], list[Problem]]:
    """Every enabled flow's entries, sorted, and the problems resolution found (pure).

    Flows with problems of their own (``Flow.ok`` false) are left out; what is wrong with
    them was reported when the plan was read.
    """
    problems: list[Problem] = []
    entries: list[Entry] = []
    # flowId -> [(times, flow index, where, may repeat a minute)] to find two triggers of a
    # flowId in one UTC minute. A lone cron flow cannot: its times are whole minutes apart.
    by_flow_id: dict[int, list[tuple[list[int], int, list[Path], bool]]] = {}
    org = plan.target.org_id
    make = partial(tuple.__new__, Entry)  # Entry from a tuple, without a Python-level call
    for flow in plan.flows:
        if not flow.enabled or not flow.ok:
            continue
        got = _flow_times(flow, now, max_triggers, problems)
        if got is None:
            continue
        ms_list, off_list, wheres = got
        name, fid = flow.name, flow.flow_id
        entries += map(make, zip(ms_list, repeat(fid), repeat(name), repeat(org), off_list))
        listed = flow.at is not None or flow.dates_listed is not None
        by_flow_id.setdefault(fid, []).append((ms_list, flow.index, wheres, listed))
    for fid, groups in by_flow_id.items():
        if len(groups) == 1 and not groups[0][3]:
            continue
        minutes = [
            (ms // 60_000, index, w)
            for ms_list, index, wheres, _ in groups
            for ms, w in zip(ms_list, wheres, strict=True)
        ]
        _same_minute(plan, fid, minutes, problems)
    entries.sort()
    return entries, problems


def _flow_times(
    flow: Flow, now: int, max_triggers: int, problems: list[Problem]
) -> tuple[list[int], list[int], list[Path]] | None:
    here: Path = ("flows", flow.index)
    if flow.dates:
        return _dates_times(flow, max_triggers, problems)
    if flow.at is not None:
        if len(flow.at) > max_triggers:
            problems.append(Problem((*here, "at"), _too_many(flow, max_triggers, len(flow.at))))
            return None
        order = sorted(range(len(flow.at)), key=flow.at.__getitem__)
        ms_list = [flow.at[j] for j in order]
        tz = flow.zone
        offs = [times.offset_at(tz, ms) if tz is not None else 0 for ms in ms_list]
        return ms_list, offs, [(*here, "at", j) for j in order]
    assert flow.cron is not None and flow.start is not None and flow.zone is not None
    if flow.count is not None and flow.count > max_triggers:
        problems.append(Problem((*here, "count"), _too_many(flow, max_triggers, flow.count)))
        return None
    end = now if flow.end_is_now else flow.end
    if end is not None and end < flow.start:
        # Only `to: now` gets here: an open-ended plan whose window has not opened yet.
        return [], [], []
    try:
        ms_list, offs = cronlib.expand(
            flow.cron, flow.zone, flow.start, end, flow.count, max_triggers
        )
    except cronlib.TooMany as e:
        problems.append(Problem((*here, "cron"), _too_many(flow, max_triggers, e.count, e.exact)))
        return None
    if not ms_list and not flow.end_is_now:
        tz = flow.zone
        window = (
            f"the first {cronlib.HORIZON_YEARS} years from {times.format_in_zone(flow.start, tz)}"
            if end is None
            else f"{times.format_in_zone(flow.start, tz)} .. {times.format_in_zone(end, tz)}"
        )
        problems.append(Problem((*here, "cron"), f'"{flow.cron.expr}" never fires in {window}'))
        return None
    if flow.count is not None and len(ms_list) < flow.count:
        problems.append(
            Problem(
                (*here, "count"),
                f"only {len(ms_list)} fire times {_horizon(flow.start)}, "
                f"fewer than count {flow.count}",
            )
        )
        return None
    return ms_list, offs, [(*here, "cron")] * len(ms_list)


def _dates_times(
    flow: Flow, max_triggers: int, problems: list[Problem]
) -> tuple[list[int], list[int], list[Path]] | None:
    """A ``dates:`` flow's entries: each date D on D + 1 at ``time`` in the server zone (the
    flow's zone), a wall time in a DST gap at the first instant after it, one in an overlap at
    its first occurrence (the fixed-time rule of cron)."""
    here: Path = ("flows", flow.index, "dates")
    tz, time_of_day = flow.zone, flow.time_of_day
    assert tz is not None and time_of_day is not None
    count = flow.dates_count
    if count > max_triggers:
        problems.append(Problem(here, _too_many(flow, max_triggers, count)))
        return None
    if flow.dates_window is not None:
        first = flow.dates_window[0].toordinal()
        days = [date.fromordinal(first + k) for k in range(count)]
        wheres: list[Path] = [here] * count
    else:
        days = list(flow.dates_listed or ())
        wheres = [(*here, j) for j in range(count)]
    ms_list: list[int] = []
    offs: list[int] = []
    for day, where in zip(days, wheres, strict=True):
        ms = times.wall_to_instant(tz, times.wall_ms_of(day + ONE_DAY) + time_of_day)
        if times.cal_dt(ms, tz) != day.isoformat():
            # A gap that swallows the rest of the day: the flow would compute another date.
            problems.append(
                Problem(
                    where,
                    f"{day}: {times.format_in_zone(ms, tz)} is the first time after the DST gap "
                    f"that skips the time of day on {day + ONE_DAY}, a day later: choose another time",
                )
            )
            return None
        ms_list.append(ms)
        offs.append(times.offset_at(tz, ms))
    order = sorted(range(count), key=ms_list.__getitem__)
    return [ms_list[j] for j in order], [offs[j] for j in order], [wheres[j] for j in order]


def _horizon(start: int) -> str:
    """Where ``count:`` stopped looking: 400 years on, or the calendar's end."""
    if int(times.format_utc(start)[:4]) + cronlib.HORIZON_YEARS > 9999:
        return 'from "from" to the end of 9999'
    return f'in the {cronlib.HORIZON_YEARS} years from "from"'


def _too_many(flow: Flow, max_triggers: int, count: int, exact: bool = True) -> str:
    if not exact:
        return (
            f'flow "{flow.name}" yields more than {count:,} entries, over --max-triggers '
            f"{max_triggers:,} (narrow its window, or split it)"
        )
    return (
        f'flow "{flow.name}" yields {count:,} entries, more than --max-triggers {max_triggers:,} '
        f"(use --max-triggers {count:,} if this is intended)"
    )


def _same_minute(
    plan: Plan, fid: int, minutes: list[tuple[int, int, Path]], problems: list[Problem]
) -> None:
    minutes.sort()
    reported = 0
    for (m1, f1, _), (m2, f2, where) in pairwise(minutes):
        if m1 != m2:
            continue
        other = plan.flows[f1].name
        also = "" if f1 == f2 else f' (also in flow "{other}")'
        problems.append(
            Problem(
                where,
                f"two entries of flowId {fid} in the UTC minute {times.format_utc(m2 * 60_000)[:16]}Z"
                f"{also}; the service refuses a second trigger of a flow within one minute",
            )
        )
        reported += 1
        if reported >= 20:
            break
