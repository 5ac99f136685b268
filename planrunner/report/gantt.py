"""The markdown plan's picture: a mermaid ``gantt`` of each flow's window (DESIGN 8).

One bar per flow over the span of its done entries, one over its entries still to send
(pending, retry, unknown), in two sections, and a milestone where a flow zone's UTC offset
changes inside a flow's window. A pure function of the flows and their entries' statuses;
``""`` when the plan is too large for a picture (more than ``MAX_FLOWS`` flows with entries,
more than ``MAX_TASKS`` bars and markers, or more than ``room`` characters).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from planrunner import times
from planrunner.plan import Flow
from planrunner.resolve import Entry

MAX_FLOWS = 40  # flows with entries; beyond that the bars are too thin to read
MAX_TASKS = 120  # bars and daylight-saving markers
NAME_MAX = 48  # characters of a flow's name shown on its bar
DATE_FORMAT = "YYYY-MM-DD HH:mm"  # mermaid's (dayjs) spelling of the dates below
MINUTE = 60_000
WEEK = 7 * 86_400_000
MAX_SCAN_WEEKS = 100 * 53  # a zone's offset is sampled weekly over at most a century
DONE = frozenset({"done", "cancelled"})  # nothing left to send
ATTENTION = frozenset({"retry", "unknown"})  # drawn `crit`: sent before, not known done

# Characters kept in a name; anything else becomes "_". Mermaid's lexer ends a task's text at
# ":" "#" ";" or a newline, "%" starts a comment, quotes, "<" ">" "&" are HTML, a backtick
# could close the markdown fence, and "{" "}" open directives.
_SAFE = frozenset(" -_./()[]+@=!?,")
# Words the gantt lexer (case-insensitive, first rule wins) reads as a statement when a task's
# text starts with them, and the date it reads as a token.
_KEYWORD = re.compile(
    r"(?i)(gantt|inclusiveenddates|topaxis|acctitle|accdescr|\d{4}-\d\d-\d\d|"
    r"(dateformat|axisformat|tickinterval|includes|excludes|todaymarker|weekday|weekend|title|"
    r"accdescription|section|click|call|href|displaymode)(\s|$))"
)

T = TypeVar("T")


def escape(name: str) -> str:
    """``name`` as a gantt task's text: no character or leading word mermaid would misread."""
    text = " ".join(
        "".join(c if c.isalnum() or c in _SAFE else "_" for c in w) for w in name.split()
    )
    if len(text) > NAME_MAX:
        text = text[: NAME_MAX - 1].rstrip() + "…"
    if not text or _KEYWORD.match(text):
        text = f"flow {text}".rstrip()
    return text


def _date(wall: int) -> str:
    """``YYYY-MM-DD HH:mm`` of a wall time in ms (``DATE_FORMAT``)."""
    return times.format_local(wall - wall % MINUTE, 0)[:16].replace("T", " ")


def _offset(off: int) -> str:
    """``UTC+1``, ``UTC-3h30``: an offset without the colon mermaid would stop at."""
    sign = "-" if off < 0 else "+"
    h, m = divmod(abs(off) // MINUTE, 60)
    return f"UTC{sign}{h}" + (f"h{m:02d}" if m else "")


def _changes(flow: Flow, first: int, last: int) -> list[tuple[int, int, int]]:
    """(instant, old offset, new offset) of each change of the flow zone's offset in
    [first, last], found by sampling weekly and bisecting to the second."""
    tz = flow.zone
    if tz is None or last <= first or (last - first) // WEEK > MAX_SCAN_WEEKS:
        return []
    found = []
    lo, lo_off = first, times.offset_at(tz, first)
    while lo < last:
        hi = min(lo + WEEK, last)
        hi_off = times.offset_at(tz, hi)
        if hi_off != lo_off:
            a, b = lo, hi
            while b - a > 1000:
                mid = (a + b) // 2
                if times.offset_at(tz, mid) == lo_off:
                    a = mid
                else:
                    b = mid
            found.append((b, lo_off, hi_off))
        lo, lo_off = hi, hi_off
    return found


def chart(
    flows: Sequence[tuple[Flow, Sequence[tuple[Entry, T]]]],
    status: Callable[[T], str],
    room: int = 1 << 30,
) -> str:
    """A fenced ```` ```mermaid ```` gantt block for ``flows`` (each with its entries, sorted
    by time, and what ``status`` makes of each), or ``""`` when there is nothing to draw or
    the picture would be too large (see the module's docstring)."""
    shown = [(f, rows) for f, rows in flows if rows]
    if not shown or len(shown) > MAX_FLOWS:
        return ""
    zones = {f.zone_name for f, _ in shown}
    local = len(zones) == 1  # one zone: its wall times; several: UTC
    axis_zone = zones.pop() if local else "UTC"

    def wall(instant: int, offset: int) -> int:
        return instant + offset if local else instant

    done: list[tuple[str, int, int]] = []
    pending: list[tuple[str, int, int, bool]] = []
    marks: dict[tuple[str, int], tuple[str, int]] = {}  # (zone, instant) -> (label, new offset)
    for flow, rows in shown:
        # Rows come sorted by time: the first and last entry of each side, and the counts.
        ends: dict[bool, list[Entry]] = {}  # is-done -> [first entry, last entry]
        counts: dict[str, int] = {}
        for entry, value in rows:
            s = status(value)
            counts[s] = counts.get(s, 0) + 1
            side = ends.get(s in DONE)
            if side is None:
                ends[s in DONE] = [entry, entry]
            else:
                side[1] = entry
        name = escape(flow.name)
        attention = {s: k for s, k in counts.items() if s in ATTENTION}
        for is_done, (a, b) in ends.items():
            first, last = wall(a.trigger_time, a.offset), wall(b.trigger_time, b.offset)
            n = sum(k for s, k in counts.items() if (s in DONE) == is_done)
            if is_done:
                done.append((f"{name} ({n})", first, last))
            else:
                extra = "".join(f", {k} {s}" for s, k in sorted(attention.items()))
                pending.append((f"{name} ({n}{extra})", first, last, bool(attention)))
        start, end = rows[0][0].trigger_time, rows[-1][0].trigger_time
        for instant, old, new in _changes(flow, start, end):
            label = f"{escape(flow.zone_name)} {_offset(old)} to {_offset(new)}"
            marks.setdefault((flow.zone_name, instant), (label, new))
            if len(marks) > MAX_TASKS:
                return ""
    if len(done) + len(pending) + len(marks) > MAX_TASKS:
        return ""

    walls = [w for _, a, b in done for w in (a, b)] + [w for _, a, b, _ in pending for w in (a, b)]
    lo, hi = min(walls), max(walls)
    # A bar is at least 1/150 of the picture wide (a single entry would be invisible).
    least = max(MINUTE, -(-(hi - lo) // 150 // MINUTE) * MINUTE)

    def bar(label: str, tags: str, task: str, first: int, last: int) -> str:
        end = max(
            last - last % MINUTE + (MINUTE if last % MINUTE else 0), first - first % MINUTE + least
        )
        return f"    {label} :{tags}{task}, {_date(first)}, {_date(end)}"

    lines = [
        "```mermaid",
        "gantt",
        f"    title Flow windows, times in {escape(axis_zone)}",
        f"    dateFormat {DATE_FORMAT}",
        f"    axisFormat {'%m-%d %H:%M' if hi - lo < 2 * 86_400_000 else '%Y-%m-%d'}",
    ]
    if done:
        lines.append("    section done")
        lines += [bar(label, "done, ", f"f{i}d", a, b) for i, (label, a, b) in enumerate(done, 1)]
    if pending:
        lines.append("    section pending")
        lines += [
            bar(label, "crit, " if attention else "active, ", f"f{i}p", a, b)
            for i, (label, a, b, attention) in enumerate(pending, 1)
        ]
    if marks:
        lines.append("    section daylight saving")
        for i, ((_, instant), (label, new)) in enumerate(
            sorted(marks.items(), key=lambda m: m[0][1]), 1
        ):
            lines.append(f"    {label} :milestone, dst{i}, {_date(wall(instant, new))}, 0d")
    lines.append("```")
    text = "\n".join(lines)
    return text if len(text) <= room else ""
