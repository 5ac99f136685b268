"""What plan and apply show beside each entry and under each flow's header: the schedule,
the business date (``calDt``), parameters, DST moves, pacing keys, and entries ahead of now.

Shared by every format of report/plan.py; apply's report uses :func:`future_note` as well.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import date, datetime, tzinfo

from planrunner import plan as planlib
from planrunner import times
from planrunner.outcome import Entry
from planrunner.plan import Flow

# Zones with one offset for ever: the business date is plain arithmetic on the instant.
_FIXED_NAME = re.compile(r"(?:UTC|GMT)(?:[+-]\d{1,2}(?::?\d{2})?)?")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class Calendar:
    """The business date (``${cal_dt}``) of entries in the server's zone; None when the
    plan does not give ``target.serverTimezone``."""

    __slots__ = ("_days", "_fixed", "zone")

    def __init__(self, zone: tzinfo | None) -> None:
        self.zone = zone
        self._fixed: int | None = None
        self._days: dict[int, str] = {}
        key = getattr(zone, "key", None)
        if zone is not None and isinstance(key, str) and _FIXED_NAME.fullmatch(key.upper()):
            off = zone.utcoffset(datetime(2000, 1, 1))
            self._fixed = int(off.total_seconds() * 1000) if off is not None else None

    @property
    def known(self) -> bool:
        """Whether business dates can be shown."""
        return self.zone is not None

    def cal_dt(self, trigger_time: int) -> str | None:
        """``YYYY-MM-DD``, or None when the server zone is not known."""
        if self.zone is None:
            return None
        if self._fixed is None:
            return times.cal_dt(trigger_time, self.zone)
        day = (trigger_time + self._fixed) // times.DAY_MS - 1
        text = self._days.get(day)
        if text is None:
            text = self._days[day] = date.fromordinal(day + _EPOCH_ORDINAL).isoformat()
        return text


def schedule(flow: Flow) -> str:
    """The flow's schedule as the plan says it: cron and window, business dates, or the
    ``at`` list."""
    if flow.cron is not None:
        window = f"from {times.format_in_zone(flow.start, flow.zone)}" if flow.start is not None else ""
        if flow.count is not None:
            window += f" count {flow.count}"
        elif flow.end_is_now:
            window += " to now"
        elif flow.end is not None:
            window += f" to {times.format_in_zone(flow.end, flow.zone)}"
        return f'cron "{flow.cron.expr}" {window}'.rstrip()
    if flow.dates:
        return f"dates {dates_window(flow)} at {_time_of_day(flow.time_of_day or 0)} in the server zone"
    n = len(flow.at or ())
    return f"at {n} time{'s' if n != 1 else ''}"


def dates_window(flow: Flow) -> str:
    """A ``dates:`` flow's business dates: ``2026-01-01 .. 2026-01-31 (31 business dates)``."""
    n = flow.dates_count
    counted = f"({n:,} business date{'s' if n != 1 else ''})"
    if flow.dates_window is not None:
        first, last = flow.dates_window
        return f"{first} .. {last} {counted}"
    listed = [d.isoformat() for d in flow.dates_listed or ()]
    shown = ", ".join(listed) if len(listed) <= 4 else f"{', '.join(listed[:3])}, ..., {listed[-1]}"
    return f"{shown} {counted}"


def _time_of_day(ms: int) -> str:
    secs = ms // 1000
    text = f"{secs // 3600:02d}:{secs // 60 % 60:02d}"
    return text + (f":{secs % 60:02d}" if secs % 60 else "")


def gap_moved(flow: Flow, entry: Entry) -> bool:
    """Whether an entry fires after a spring-forward gap, not at its wall time: a fixed-time
    cron entry, an ``at`` time the gap skipped, or a ``dates:`` flow's time of day."""
    if flow.at is not None:
        return entry.trigger_time in flow.moved
    if flow.dates:
        return (entry.trigger_time + entry.offset) % times.DAY_MS != flow.time_of_day
    cron = flow.cron
    if cron is None or not cron.fixed:
        return False
    minutes, rest = divmod((entry.trigger_time + entry.offset) // 1000, 60)
    hour, minute = (minutes // 60) % 24, minutes % 60
    return rest != 0 or minute not in cron.minutes or hour not in cron.hours


def pacing(flow: Flow) -> str:
    """The flow's pacing and rerun keys in force (``maxUnfinished 2, haltOnFailure``), or ""."""
    parts = []
    if flow.max_unfinished is not None:
        parts.append(f"maxUnfinished {flow.max_unfinished}")
    if flow.halt_on_failure:
        parts.append("haltOnFailure")
    if flow.rerun_failed:
        parts.append(f"rerunFailed {flow.rerun_failed}")
    return ", ".join(parts)


def parameters(flow: Flow, entries: Sequence[Entry], zone: tzinfo | None) -> list[tuple[str, str, str | None]]:
    """``(key, value, filled)`` per parameter of the flow: a value without placeholders is the
    same for every entry (``filled`` None); one with placeholders is a template, filled per
    entry, and ``filled`` shows it for the first and last of ``entries``."""
    rows: list[tuple[str, str, str | None]] = []
    for key, value in flow.parameters:
        if not times.placeholders(value):
            rows.append((key, times.fill(value, 0, 0, None), None))  # as sent: {{ is {
            continue
        if not entries:
            rows.append((key, value, None))
            continue
        first, last = entries[0], entries[-1]
        shown = json.dumps(times.fill(value, first.trigger_time, first.offset, zone), ensure_ascii=False)
        if len(entries) > 1:
            end = times.fill(value, last.trigger_time, last.offset, zone)
            shown += f" .. {json.dumps(end, ensure_ascii=False)}"
        rows.append((key, value, shown))
    return rows


def parameter_lines(flow: Flow, entries: Sequence[Entry], zone: tzinfo | None) -> list[str]:
    """The text lines of a flow's parameters (none when it has none)."""
    rows = parameters(flow, entries, zone)
    if not rows:
        return []
    lines = ["  parameters (sent with each entry):"]
    for key, value, filled in rows:
        line = f"    {key}: {json.dumps(value, ensure_ascii=False)}"
        lines.append(line + (f"  filled per entry: {filled}" if filled is not None else ""))
    return lines


def markdown_notes(flow: Flow, entries: Sequence[Entry], zone: tzinfo | None) -> list[str]:
    """Markdown lines above a flow's entry table: its pacing keys and parameters."""
    notes = []
    if paced := pacing(flow):
        notes.append(f"Pacing: {_code(paced)}")
    shown = []
    for key, value, filled in parameters(flow, entries, zone):
        text = f"`{_code(key)}` = `{_code(value)}`"
        shown.append(text + (f" (filled per entry: `{_code(filled)}`)" if filled else ""))
    if shown:
        notes.append("Parameters: " + "; ".join(shown))
    return [*notes, ""] if notes else []


def _code(text: str) -> str:
    """``text`` made safe in a markdown table cell, a details block or a code span."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")


def entry_parameters_json(flow: Flow, entry: Entry, zone: tzinfo | None) -> str:
    """An entry's filled parameters as JSON text, ``null`` when the flow has none."""
    filled = planlib.entry_parameters(flow, entry, zone)
    return "null" if filled is None else json.dumps(filled, ensure_ascii=False)


def count_future(entries: Sequence[Entry], now: int) -> int:
    """How many entries lie after ``now`` (the service holds such an instance until its time)."""
    return sum(1 for e in entries if e.trigger_time > now)


def future_note(entries: Sequence[Entry], now: int) -> str | None:
    """``12 entries are scheduled ahead: the service will hold them until their time``, or
    None when none lies after ``now``."""
    n = count_future(entries, now)
    if not n:
        return None
    if n == 1:
        return "1 entry is scheduled ahead: the service will hold it until its time"
    return f"{n:,} entries are scheduled ahead: the service will hold them until their time"
