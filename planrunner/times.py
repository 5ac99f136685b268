"""Time values: parsing the plan's time forms, zones, and epoch-millisecond arithmetic.

Every instant is an ``int`` of epoch milliseconds (UTC). Wall times are handled as
"naive milliseconds": the wall clock read as if it were UTC, which makes a day's wall
times plain integer arithmetic and leaves the zone lookups to the edges.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_MS = 86_400_000
MIN_EPOCH_MS = 946_684_800_000  # 2000-01-01T00:00:00Z: earlier integers are likely seconds
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)


class TimeError(ValueError):
    """A time value that cannot be read; the message says what is wrong."""


# Names people write for a zone that IANA spells otherwise; each maps to a zone with the
# same offset all year (a suggestion must never move times by hours).
_ALIASES = {
    "asia/beijing": "Asia/Shanghai",
    "asia/peking": "Asia/Shanghai",
    "china/beijing": "Asia/Shanghai",
    "beijing": "Asia/Shanghai",
    "asia/mumbai": "Asia/Kolkata",
    "asia/delhi": "Asia/Kolkata",
    "asia/new_delhi": "Asia/Kolkata",
}
# GMT+8, UTC-5, GMT+5:30, GMT+0530: a fixed offset, read the everyday way (GMT+8 is +08:00),
# as EnOS names its zones and as target.serverTimezone reads them.
_FIXED = re.compile(r"(?:GMT|UTC)[+-]\d{1,2}(?::?\d{2})?")
_OFFSET = re.compile(r"([+-])(\d{1,2})(?::?(\d{2}))?")


@cache
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or a fixed ``GMT±N[:MM]`` zone, or :class:`TimeError`
    with a suggestion that never has another UTC offset than the name means."""
    try:
        if name.strip() != name or not name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    if _FIXED.fullmatch(name):
        from datetime import timezone

        from planrunner import protocol

        try:
            fixed = protocol.server_zone(name)
        except ValueError:
            raise TimeError(f'time zone "{name}" is out of range (GMT-14 .. GMT+14)') from None
        off = fixed.utcoffset(None) if isinstance(fixed, timezone) else None
        if off is not None:
            return _fixed_zone(name, int(off.total_seconds()))
    raise TimeError(f'unknown time zone "{name}"{_zone_hint(name)}') from None


def _zone_hint(name: str) -> str:
    """A suggestion for an unknown zone name, or "" when none is safe to make."""
    text = name.strip()
    if text.upper() in ("UTC", "GMT", "Z", "ZULU", "UTC0", "UTC+0", "UTC-0", "GMT+00:00"):
        return ' (did you mean "UTC"?)'
    alias = _ALIASES.get(text.lower())
    if alias:
        return f' (did you mean "{alias}"?)'
    m = _OFFSET.fullmatch(text.upper().removeprefix("GMT").removeprefix("UTC").strip())
    if m and int(m[2]) <= 14 and int(m[3] or 0) <= 59:
        hours, minutes = int(m[2]), int(m[3] or 0)
        if not hours and not minutes:
            return ' (did you mean "UTC"?)'
        fixed = f"GMT{m[1]}{hours}" + (f":{minutes:02d}" if minutes else "")
        names, note = [fixed], ""
        if not minutes:
            if m[1] == "+" and hours == 8:
                names.append("Asia/Shanghai")
            etc = f"Etc/GMT{'-' if m[1] == '+' else '+'}{hours}"
            names.append(etc)
            note = f" Etc/ names invert the sign: {etc} is {m[1]}{hours:02d}:00"
        quoted = [f'"{n}"' for n in names]
        shown = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
        return f" (did you mean {shown}?{note})"
    if any(c.isdigit() for c in text):
        # An offset the name spells (GMT+15, Etc/GMT+8x): a name close in letters would
        # be hours away.
        return ""
    import difflib
    import zoneinfo

    close = difflib.get_close_matches(text, sorted(zoneinfo.available_timezones()), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _fixed_zone(key: str, offset_s: int) -> ZoneInfo:
    """A :class:`ZoneInfo` with one offset forever, named ``key`` (a TZif file in memory)."""
    import io
    import struct

    sign = "-" if offset_s < 0 else "+"
    h, m = divmod(abs(offset_s) // 60, 60)
    abbr = f"{sign}{h:02d}{m:02d}".encode()
    head = b"TZif2" + b"\0" * 15 + struct.pack(">6l", 0, 0, 0, 0, 1, len(abbr) + 1)
    body = struct.pack(">lBB", offset_s, 0, 0) + abbr + b"\0"
    # The POSIX TZ footer counts west of Greenwich as positive.
    posix = f"<{abbr.decode()}>{'-' if offset_s > 0 else ''}{h}" + (f":{m:02d}" if m else "")
    data = head + body + head + body + b"\n" + posix.encode() + b"\n"
    return ZoneInfo.from_file(io.BytesIO(data), key=key)


def server_zone(name: str) -> ZoneInfo:
    """``target.serverTimezone`` as a zone: ``GMT+8`` style (a fixed offset, the everyday
    reading) or an IANA name, read as :func:`planrunner.protocol.server_zone` reads it
    (:class:`TimeError` with its message otherwise)."""
    from datetime import timezone

    from planrunner import protocol

    try:
        tz = protocol.server_zone(name)
    except ValueError as e:
        raise TimeError(str(e)) from None
    if isinstance(tz, ZoneInfo):
        return tz
    off = tz.utcoffset(None) if isinstance(tz, timezone) else None
    if off is None:  # pragma: no cover - protocol.server_zone returns one of the two
        raise TimeError(f'unknown time zone "{name}"')
    if not off:
        return ZoneInfo("UTC") if name.strip().upper() != "GMT" else ZoneInfo("GMT")
    return _fixed_zone(name.strip(), int(off.total_seconds()))


def cal_dt(trigger_time: int, server_zone: tzinfo) -> str:
    """The business date a flow computes for ``trigger_time`` (its ``${cal_dt}``),
    ``YYYY-MM-DD``: the trigger's date in the server's zone, minus one day."""
    local = datetime.fromtimestamp(trigger_time // 1000, server_zone)
    return (local.date() - timedelta(days=1)).isoformat()


def offset_at(tz: ZoneInfo, ms: int) -> int:
    """The zone's UTC offset in milliseconds at instant ``ms``."""
    try:
        dt = datetime.fromtimestamp(ms // 1000, tz)
    except (OverflowError, ValueError):
        # Within a day of year 1 or 9999, the local time is out of datetime's range: the
        # offset a day inside it is the one in force (no zone changes at the calendar's end).
        dt = datetime.fromtimestamp(ms // 1000 + (86_400 if ms < 0 else -86_400), tz)
    off = dt.utcoffset()
    assert off is not None
    return int(off.total_seconds() * 1000)


def _offset_of_wall(tz: ZoneInfo, wall_ms: int, fold: int) -> int:
    dt = datetime(1970, 1, 1) + timedelta(milliseconds=wall_ms)
    off = dt.replace(tzinfo=tz, fold=fold).utcoffset()
    assert off is not None
    return int(off.total_seconds() * 1000)


def wall_instants(tz: ZoneInfo, wall_ms: int) -> list[int]:
    """Every real instant whose wall time in ``tz`` is ``wall_ms``: 0 (gap), 1 or 2 (overlap)."""
    out: list[int] = []
    for fold in (0, 1):
        off = _offset_of_wall(tz, wall_ms, fold)
        instant = wall_ms - off
        if instant not in out and offset_at(tz, instant) == off:
            out.append(instant)
    out.sort()
    return out


def wall_to_instant(tz: ZoneInfo, wall_ms: int) -> int:
    """The instant of a wall time, the way Debian cron runs a fixed-time job.

    In an overlap, the first occurrence; in a gap, the first whole minute after it.
    """
    for _ in range(3 * 24 * 60):
        real = wall_instants(tz, wall_ms)
        if real:
            return real[0]
        wall_ms = wall_ms - wall_ms % 60_000 + 60_000
    raise TimeError("no real time within three days of a wall time")  # pragma: no cover


def wall_ms_of(d: date, hour: int = 0, minute: int = 0, second: int = 0, ms: int = 0) -> int:
    """Naive milliseconds of a wall date and time."""
    return (
        (d.toordinal() - _EPOCH_ORDINAL) * DAY_MS + ((hour * 60 + minute) * 60 + second) * 1000 + ms
    )


def date_of_wall(wall_ms: int) -> date:
    """The date part of naive milliseconds."""
    return date.fromordinal(wall_ms // DAY_MS + _EPOCH_ORDINAL)


class Time:
    """A parsed time value: an instant, or a wall time still needing a zone."""

    __slots__ = ("date_only", "instant", "wall")

    def __init__(self, instant: int | None, wall: int | None, date_only: bool) -> None:
        self.instant = instant
        self.wall = wall
        self.date_only = date_only

    def resolve(self, tz: ZoneInfo | None) -> int:
        """Epoch milliseconds; naive values are local to ``tz``."""
        if self.instant is not None:
            return self.instant
        assert self.wall is not None
        if tz is None:
            raise TimeError("has no UTC offset and no timezone is in scope; add one")
        try:
            instant = wall_to_instant(tz, self.wall)
        except (OverflowError, ValueError):
            year = "year 1" if self.wall < 0 else "year 9999"
            raise TimeError(f"{_shown(self.wall)} is out of range (near {year})") from None
        return _check_range(instant, _shown(self.wall))

    def end_of(self, tz: ZoneInfo | None) -> int:
        """The last millisecond it covers: a date covers its whole day."""
        if not self.date_only:
            return self.resolve(tz)
        assert self.wall is not None
        if self.wall + DAY_MS > _MAX_WALL:
            # 9999-12-31: its day ends at the calendar's end, not at a next midnight.
            return _check_range(Time(None, _MAX_WALL - 59_999, False).resolve(tz) + 59_999)
        return Time(None, self.wall + DAY_MS, False).resolve(tz) - 1


_MAX_WALL = (date(9999, 12, 31).toordinal() - _EPOCH_ORDINAL + 1) * DAY_MS - 1


def _shown(wall: int) -> str:
    """Naive milliseconds as a wall time, for messages."""
    d = date_of_wall(wall)
    secs = (wall % DAY_MS) // 1000
    return f"{d.isoformat()}T{secs // 3600:02d}:{secs // 60 % 60:02d}"


def _check_range(ms: int, shown: str | None = None) -> int:
    if ms > MAX_EPOCH_MS:
        raise TimeError(f"{shown if shown is not None else ms} is after year 9999")
    return ms


def check_plan_range(ms: int, value: object) -> int:
    """A plan's times run from 2000-01-01 to the end of 9999, in every form (an integer
    before 2000 is refused as likely seconds by :func:`parse` already)."""
    if ms < MIN_EPOCH_MS:
        raise TimeError(f'"{value}" is before 2000-01-01 (plan times run from 2000 to 9999)')
    return _check_range(ms, f'"{value}"')


def check_local(ms: int, tz: ZoneInfo) -> None:
    """Refuse an instant whose local time in ``tz`` is past 9999 (it cannot be shown)."""
    if ms + offset_at(tz, ms) > _MAX_WALL:
        raise TimeError(f"{format_utc(ms)} is after year 9999 in {tz.key}")


def _check_integer(ms: int) -> int:
    # An integer that small is almost always epoch seconds where milliseconds were meant.
    if ms < MIN_EPOCH_MS:
        raise TimeError(f"{ms} is before 2000-01-01; times are epoch milliseconds, not seconds")
    return _check_range(ms)


def parse(value: object) -> Time:
    """Read an integer of epoch ms, an ISO 8601 / RFC 3339 date-time, or a date."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TimeError(f"expected a time (epoch ms, date or date-time), got {value!r}")
    if isinstance(value, int):
        return Time(_check_integer(value), None, False)
    text = value.strip()
    if text.isdigit():
        return Time(_check_integer(int(text)), None, False)
    try:
        m = _DATE.fullmatch(text)
        if m:
            d = date(int(m[1]), int(m[2]), int(m[3]))
            return Time(None, wall_ms_of(d), True)
        m = _DATETIME.fullmatch(text)
        if not m:
            raise TimeError(
                f'"{value}" is not a time (use epoch ms, YYYY-MM-DD or '
                "YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])"
            )
        d = date(int(m[1]), int(m[2]), int(m[3]))
        hour, minute, second = int(m[4]), int(m[5]), int(m[6] or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError("hour, minute or second out of range")
        frac = int((m[7] or "0").ljust(9, "0")[:3])
        wall = wall_ms_of(d, hour, minute, second, frac)
    except ValueError as e:
        if isinstance(e, TimeError):
            raise
        raise TimeError(f'"{value}" is not a valid date or time ({e})') from None
    if m[8]:
        return Time(_check_range(wall, f'"{value}"'), None, False)
    if m[9]:
        off_h, off_m = int(m[10]), int(m[11])
        if off_h > 23 or off_m > 59:
            raise TimeError(f'"{value}" has an invalid UTC offset')
        off = (off_h * 60 + off_m) * 60_000
        instant = wall - off if m[9] == "+" else wall + off
        return Time(_check_range(instant, f'"{value}"'), None, False)
    return Time(None, wall, False)


_date_cache: dict[int, str] = {}


@lru_cache(maxsize=1024)
def format_offset(off_ms: int) -> str:
    """``+08:00`` style offset (seconds appended when the zone has them)."""
    sign = "-" if off_ms < 0 else "+"
    total = abs(off_ms) // 1000
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{sign}{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")


_suffix_cache: dict[tuple[int, int], str] = {}


def format_local(ms: int, off_ms: int) -> str:
    """RFC 3339 local time of instant ``ms`` at offset ``off_ms`` (fast; no zone lookups)."""
    day, in_day = divmod(ms + off_ms, DAY_MS)
    prefix = _date_cache.get(day)
    if prefix is None:
        prefix = date.fromordinal(day + _EPOCH_ORDINAL).isoformat()
        if len(_date_cache) < 100_000:
            _date_cache[day] = prefix
    # Schedules repeat a few times of day: "T02:00:00+08:00" is made once.
    suffix = _suffix_cache.get((in_day, off_ms))
    if suffix is None:
        secs, millis = divmod(in_day, 1000)
        h, rest = divmod(secs, 3600)
        m, s = divmod(rest, 60)
        frac = f".{millis:03d}" if millis else ""
        suffix = f"T{h:02d}:{m:02d}:{s:02d}{frac}{format_offset(off_ms)}"
        if len(_suffix_cache) < 100_000:
            _suffix_cache[(in_day, off_ms)] = suffix
    return prefix + suffix


def format_in_zone(ms: int, tz: ZoneInfo | None) -> str:
    """RFC 3339 time of ``ms`` in ``tz`` (UTC when None)."""
    return format_local(ms, offset_at(tz, ms) if tz is not None else 0)


def format_utc(ms: int) -> str:
    """RFC 3339 UTC with milliseconds, as the ledger's ``at`` field uses."""
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_now(text: str) -> int:
    """Parse ``--now``: any time form; a naive one is read as UTC."""
    t = parse(int(text) if text.strip().isdigit() else text)
    return t.instant if t.instant is not None else _check_range(t.wall or 0, text)


# A parameter value (plan.py): {name} is a placeholder, {{ and }} literal braces.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
PLACEHOLDERS = ("date", "calDt", "triggerTime")


@lru_cache(maxsize=256)
def _template(value: str) -> tuple[tuple[bool, str], ...]:
    """A parameter template as pieces ``(is_placeholder, text)``; ValueError naming an
    unknown placeholder or a lone brace."""
    pieces: list[tuple[bool, str]] = []
    at = 0
    for m in _PLACEHOLDER.finditer(value):
        pieces.append((False, value[at : m.start()]))
        at = m.end()
        token = m[0]
        if token in ("{{", "}}"):
            pieces.append((False, token[0]))
        elif m[1] in PLACEHOLDERS:
            pieces.append((True, m[1]))
        elif m[1] is not None:
            hint = (
                f" (to pass ${token} through to the flow, write ${{{token}}})"
                if value[m.start() - 1 : m.start()] == "$"
                else " (for literal braces write {{ and }})"
            )
            raise ValueError(
                f"unknown placeholder {token}: the known ones are {{date}}, {{calDt}} and "
                f"{{triggerTime}}{hint}"
            )
        else:
            raise ValueError(f'a lone "{token}": for a literal brace write {token}{token}')
    pieces.append((False, value[at:]))
    return tuple(p for p in pieces if p[1])


def placeholders(template: str) -> set[str]:
    """The placeholder names a parameter template uses; ValueError when it is malformed."""
    return {text for is_name, text in _template(template) if is_name}


def fill(template: str, trigger_time: int, offset: int, server_zone: tzinfo | None) -> str:
    """A parameter template filled for one entry: ``{date}`` its local date (at ``offset``),
    ``{calDt}`` its business date in ``server_zone``, ``{triggerTime}`` epoch ms."""
    out: list[str] = []
    for is_name, text in _template(template):
        if not is_name:
            out.append(text)
        elif text == "triggerTime":
            out.append(str(trigger_time))
        elif text == "date":
            out.append(format_local(trigger_time, offset)[:10])
        elif server_zone is None:
            raise ValueError("{calDt} needs target.serverTimezone")
        else:
            out.append(cal_dt(trigger_time, server_zone))
    return "".join(out)
