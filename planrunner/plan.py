"""Plan files: YAML -> located data -> schema and semantic checks -> frozen records."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from planrunner import cron as cronlib
from planrunner import protocol, schema, source, times
from planrunner.errors import UsageError
from planrunner.source import Document, Problem

if TYPE_CHECKING:
    from planrunner.outcome import Entry

MAX_PLAN_BYTES = 64 * 2**20  # a plan larger than this is surely a mistake
_ENV_REF = re.compile(r"\$\{([^}]*)\}")
SAVED_KIND = "planrunner-saved-plan"  # saved.KIND, which sits a layer above
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a plan's flows are triggered."""

    gateway: str
    org_id: str
    user_id: str
    api: str = protocol.DEFAULT_API.name  # "v2.0" or "v2.1"
    server_timezone: str | None = None  # the zone of the service's time strings, if given
    server_zone: tzinfo | None = None  # server_timezone read (None when not given or invalid)


@dataclass(frozen=True, slots=True)
class Flow:
    """One flow of a plan, its times already read in its zone (``to: now`` excepted)."""

    index: int
    name: str
    flow_id: int
    zone: ZoneInfo | None
    enabled: bool
    at: tuple[int, ...] | None
    cron: cronlib.Cron | None
    start: int | None
    end: int | None
    end_is_now: bool
    count: int | None
    ok: bool  # False when the flow has problems of its own; resolution skips it
    moved: frozenset[int] = frozenset()  # `at` instants a DST gap moved past their wall time
    # Pacing and reruns: the flow's value, else the plan's (the command line wins over both).
    max_unfinished: int | None = None
    halt_on_failure: bool = False
    rerun_failed: int = 0
    parameters: tuple[tuple[str, str], ...] = ()  # (key, template) as written, in order
    # `dates:` flows: business dates, triggered the next day at `time` in the server's zone
    # (then `zone` is that zone). A window (first, last) or the dates listed, in order.
    dates: bool = False
    dates_window: tuple[date, date] | None = None
    dates_listed: tuple[date, ...] | None = None
    time_of_day: int | None = None  # ms after midnight

    @property
    def dates_count(self) -> int:
        """How many business dates a ``dates:`` flow names (0 for other flows)."""
        if self.dates_window is not None:
            return (self.dates_window[1] - self.dates_window[0]).days + 1
        return len(self.dates_listed or ())

    @property
    def zone_name(self) -> str:
        """The flow's zone name, or UTC when it has none."""
        return self.zone.key if self.zone is not None else "UTC"


@dataclass(frozen=True, slots=True)
class Plan:
    """A plan read and checked; flows with problems of their own have ``ok=False``."""

    path: str
    target: Target
    flows: tuple[Flow, ...]
    raw_target: Mapping[str, Any]  # target as written, before ${VAR} expansion


@dataclass(frozen=True, slots=True)
class Reading:
    """What reading a plan file gave: the located document, the plan when it could be
    built, its problems (YAML, schema, semantic) and warnings (unset ${VAR} in validate)."""

    doc: Document | None
    plan: Plan | None
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...] = ()


def read(
    path: str,
    environ: Mapping[str, str] | None = None,
    *,
    env_missing: str = "error",
    raw: bytes | None = None,
) -> Reading:
    """Read and check the plan at ``path``, collecting every problem (never raising them).

    ``env_missing="warn"`` (validate) turns an unset ``${VAR}`` into a warning, the
    reference left unexpanded, so that a check needs no secrets. ``raw``: the plan's bytes
    when already read (stdin, a saved plan's check); ``path`` then only names it. A file
    that cannot be read is a :class:`UsageError`.
    """
    if env_missing not in ("error", "warn"):
        raise ValueError(f"env_missing: {env_missing!r}")
    if raw is None:
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_PLAN_BYTES + 1)
        except OSError as e:
            raise UsageError(f"{path}: cannot read plan: {e.strerror or e}") from None
    if len(raw) > MAX_PLAN_BYTES:
        raise UsageError(f"{path}: plan file larger than {MAX_PLAN_BYTES // 2**20} MiB")
    try:
        doc = source.load(raw)
    except source.SourceError as e:
        return Reading(None, None, (Problem((), e.message, mark=e.mark),))
    problems = list(doc.problems)
    data = doc.data
    if isinstance(data, dict) and data.get("kind") == SAVED_KIND:
        # `plan --out` wrote it (saved.py); `terraform show plan.out` users try plan on it.
        why = f"this is a saved plan: apply it with `planrunner apply {path}`"
        return Reading(doc, None, (Problem((), why),))
    if isinstance(data, dict):
        # Top-level x- keys are a place for anchored fragments; nothing reads them.
        data = {k: v for k, v in data.items() if not k.startswith("x-")}
    problems += schema.check(data)
    if problems:
        problems += _structurally_fine_flows(doc, data, problems)
        return Reading(doc, None, tuple(problems))
    assert isinstance(data, dict)
    return _build(path, doc, data, os.environ if environ is None else environ, env_missing)


def _expand_env(value: str, environ: Mapping[str, str]) -> tuple[str, list[str], list[str]]:
    """``(expanded, errors, unset variable messages)``."""
    errors: list[str] = []
    missing: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name = m[1]
        if not _ENV_NAME.fullmatch(name):
            errors.append(f'"${{{name}}}" is not a valid environment variable reference')
            return ""
        if name not in environ:
            missing.append(f'environment variable "{name}" is not set')
            return ""
        return environ[name]

    return _ENV_REF.sub(sub, value), errors, missing


def _build(
    path: str,
    doc: Document,
    data: dict[str, Any],
    environ: Mapping[str, str],
    env_missing: str = "error",
) -> Reading:
    problems: list[Problem] = []
    warnings: list[Problem] = []
    unresolved: set[str] = set()
    target_values: dict[str, str] = {}
    for key in ("gateway", "orgId", "userId"):
        value, errors, missing = _expand_env(data["target"][key], environ)
        problems.extend(Problem(("target", key), e) for e in errors)
        if missing and env_missing == "warn":
            # Left as written: nothing may be judged from a value that is not known here.
            warnings.extend(
                Problem(("target", key), f"{m} (validate only warns; plan and apply need it set)")
                for m in missing
            )
            value = data["target"][key]
            unresolved.add(key)
        else:
            problems.extend(Problem(("target", key), m) for m in missing)
            errors += missing
        target_values[key] = value
        if not errors and not missing and not value:
            problems.append(Problem(("target", key), "is empty after ${...} expansion"))
    if not problems and "gateway" not in unresolved:
        refs = _ENV_REF.findall(data["target"]["gateway"])
        # Never echo what came from the environment: name the variables instead.
        why = protocol.gateway_problem(target_values["gateway"], show=not refs)
        if why and refs:
            names = ", ".join(f"${{{n}}}" for n in dict.fromkeys(refs))
            why = f"{why} (after expanding {names}; the value is not shown)"
        if why:
            problems.append(Problem(("target", "gateway"), why))
    server_tz = data["target"].get("serverTimezone")
    server = _server(server_tz, problems)

    flows = _flows(doc, data, problems, server=server)
    target = Target(
        target_values["gateway"],
        target_values["orgId"],
        target_values["userId"],
        data["target"].get("api", protocol.DEFAULT_API.name),
        server_tz,
        server[1],
    )
    plan = Plan(path, target, tuple(flows), dict(data["target"]))
    return Reading(doc, plan, tuple(problems), tuple(warnings))


# (whether target.serverTimezone is written, the zone it names or None when it is invalid)
_Server = tuple[bool, ZoneInfo | None]
_PACING = (("maxUnfinished", int), ("haltOnFailure", bool), ("rerunFailed", int))


def _server(name: object, problems: list[Problem] | None) -> _Server:
    """``target.serverTimezone`` read; its problem (when ``problems`` is given) reported."""
    if not isinstance(name, str):
        return (name is not None, None)
    try:
        return (True, times.server_zone(name))
    except times.TimeError as e:
        if problems is not None:
            problems.append(Problem(("target", "serverTimezone"), str(e)))
        return (True, None)


def _flows(
    doc: Document,
    data: dict[str, Any],
    problems: list[Problem],
    skip: frozenset[int] = frozenset(),
    server: _Server = (False, None),
) -> list[Flow]:
    """Every flow read and checked, but those in ``skip`` (they have structural problems)."""
    plan_zone = _zone(data.get("timezone"), ("timezone",), problems)
    # Top-level pacing keys, for every flow that does not set its own (wrong types were
    # reported by the schema: they are left out here).
    defaults = {
        k: data[k]
        for k, kind in _PACING
        if isinstance(data.get(k), kind) and (kind is bool or not isinstance(data[k], bool))
    }
    flows: list[Flow] = []
    seen_names: dict[str, int] = {}
    for i, raw in enumerate(data["flows"]):
        if i in skip:
            continue
        here: source.Path = ("flows", i)
        name = raw["name"]
        if name in seen_names:
            first = doc.locate(("flows", seen_names[name], "name"))
            problems.append(
                Problem(
                    (*here, "name"), f'duplicate flow name "{name}" (first at line {first.line})'
                )
            )
        seen_names.setdefault(name, i)
        before = len(problems)
        tz = (
            _zone(raw["timezone"], (*here, "timezone"), problems)
            if "timezone" in raw
            else plan_zone
        )
        # A zone that is given but invalid is the root cause: say nothing of "no zone".
        zone_given = "timezone" in raw or data.get("timezone") is not None
        # A plan-level zone that failed leaves tz None: the flow cannot be resolved either.
        ok = len(problems) == before and not (zone_given and tz is None)
        if "dates" in raw:
            flows.append(_dates_flow(i, {**defaults, **raw}, server, problems))
            continue
        flows.append(
            _flow(i, {**defaults, **raw}, tz, problems, ok=ok, zone_given=zone_given, calendar=server[0])
        )
    return flows


def _structurally_fine_flows(doc: Document, data: object, problems: list[Problem]) -> list[Problem]:
    """The semantic problems (cron, zones, times) of the flows that have no structural
    problem, when others do: every root cause comes in one round, not one per fix."""
    if not isinstance(data, dict) or not isinstance(data.get("flows"), list):
        return []
    flows: list[object] = data["flows"]
    if any(p.path[:1] == ("flows",) and len(p.path) < 2 for p in problems):
        return []  # the list itself is wrong (empty, say)
    bad = {p.path[1] for p in problems if p.path[:1] == ("flows",) and len(p.path) > 1}
    if any(p.path[:1] == ("timezone",) for p in problems):
        return []  # a plan zone of the wrong type: nothing zoned can be judged
    found: list[Problem] = []
    skip = frozenset(i for i, f in enumerate(flows) if i in bad or not isinstance(f, dict))
    target = data.get("target")
    server = _server(target.get("serverTimezone") if isinstance(target, dict) else None, None)
    _flows(doc, {"timezone": data.get("timezone"), "flows": flows}, found, skip, server)
    return found


def _zone(name: object, where: source.Path, problems: list[Problem]) -> ZoneInfo | None:
    if name is None:
        return None
    assert isinstance(name, str)
    try:
        return times.zone(name)
    except times.TimeError as e:
        problems.append(Problem(where, str(e)))
        return None


def _time(
    value: object,
    tz: ZoneInfo | None,
    where: source.Path,
    problems: list[Problem],
    *,
    end: bool = False,
    zone_given: bool = False,
    moved: set[int] | None = None,
) -> int | None:
    try:
        t = times.parse(value)
        if tz is None and zone_given and t.instant is None:
            return None  # the zone itself is invalid, and already reported
        # Before resolving: a wall time near year 1 is out of datetime's range in a zone.
        first = t.wall if t.instant is None else t.instant
        assert first is not None
        times.check_plan_range(first, value)
        ms = times.check_plan_range(t.end_of(tz) if end else t.resolve(tz), value)
        wall = t.wall if t.instant is None else None
        if (
            moved is not None
            and tz is not None
            and wall is not None
            and not times.wall_instants(tz, wall)
        ):
            moved.add(ms)  # a wall time a spring-forward gap skips
        if tz is not None and ms > times.MAX_EPOCH_MS - times.DAY_MS:
            times.check_local(ms, tz)
        return ms
    except times.TimeError as e:
        problems.append(Problem(where, str(e)))
        return None


def _flow(
    i: int,
    raw: dict[str, Any],
    tz: ZoneInfo | None,
    problems: list[Problem],
    ok: bool,
    zone_given: bool = False,
    calendar: bool = False,
) -> Flow:
    here: source.Path = ("flows", i)
    before = len(problems)
    at: tuple[int, ...] | None = None
    cron: cronlib.Cron | None = None
    start = end = count = None
    end_is_now = False
    moved: set[int] = set()
    if "at" in raw:
        values = [
            _time(v, tz, (*here, "at", j), problems, zone_given=zone_given, moved=moved)
            for j, v in enumerate(raw["at"])
        ]
        at = tuple(v for v in values if v is not None)
    else:
        try:
            cron = cronlib.parse(raw["cron"])
        except cronlib.CronError as e:
            problems.append(Problem((*here, "cron"), str(e)))
        if tz is None and not zone_given:
            problems.append(
                Problem(
                    (*here, "cron"),
                    'no timezone in scope for cron; set "timezone" (e.g. UTC) on the plan or the flow',
                )
            )
        start = _time(raw["from"], tz, (*here, "from"), problems, zone_given=zone_given)
        if "count" in raw:
            count = raw["count"]
        elif raw["to"] == "now":
            end_is_now = True
        else:
            end = _time(raw["to"], tz, (*here, "to"), problems, end=True, zone_given=zone_given)
            if start is not None and end is not None and start > end:
                problems.append(
                    Problem(
                        (*here, "from"),
                        f'"from" ({times.format_in_zone(start, tz)}) is after "to" ({times.format_in_zone(end, tz)})',
                    )
                )
    shared = _shared(i, raw, problems, calendar)
    return Flow(
        zone=tz,
        at=at,
        cron=cron,
        start=start,
        end=end,
        end_is_now=end_is_now,
        count=count,
        ok=ok and len(problems) == before,
        moved=frozenset(moved),
        **shared,
    )


def _shared(i: int, raw: dict[str, Any], problems: list[Problem], calendar: bool) -> dict[str, Any]:
    """The Flow fields every kind of flow reads the same way (parameters checked)."""
    return {
        "index": i,
        "name": raw["name"],
        "flow_id": raw["flowId"],
        "enabled": raw.get("enabled", True),
        "max_unfinished": raw.get("maxUnfinished"),
        "halt_on_failure": raw.get("haltOnFailure", False),
        "rerun_failed": raw.get("rerunFailed", 0),
        "parameters": _parameters(raw, ("flows", i), problems, calendar=calendar),
    }


def _dates_flow(i: int, raw: dict[str, Any], server: _Server, problems: list[Problem]) -> Flow:
    """A ``dates:`` flow: business dates D, each triggered on D + 1 at ``time`` in the
    server's zone (resolve.py expands them: a window may hold many)."""
    here: source.Path = ("flows", i)
    before = len(problems)
    given, zone = server
    name = raw["name"]
    if "timezone" in raw:
        problems.append(
            Problem(
                (*here, "timezone"),
                f'flow "{name}": a dates flow runs in target.serverTimezone, where the '
                'service computes ${cal_dt}: remove "timezone"',
            )
        )
    if not given:
        problems.append(
            Problem(
                (*here, "dates"),
                f'flow "{name}" uses dates:, which need target.serverTimezone (the zone '
                "in which the service computes ${cal_dt}), e.g. serverTimezone: GMT+8",
            )
        )
    written = raw["dates"]
    window: tuple[date, date] | None = None
    listed: tuple[date, ...] | None = None
    if isinstance(written, dict):
        first = _date(written["from"], (*here, "dates", "from"), problems)
        last = _date(written["to"], (*here, "dates", "to"), problems)
        if first is not None and last is not None:
            if first > last:
                problems.append(
                    Problem((*here, "dates", "from"), f'"from" ({first}) is after "to" ({last})')
                )
            window = (first, last)
    else:
        days = [_date(v, (*here, "dates", j), problems) for j, v in enumerate(written)]
        listed = tuple(d for d in days if d is not None)
    # Without serverTimezone, the error above is the root cause: no second one for {calDt}.
    shared = _shared(i, raw, problems, True)
    time_of_day = _time_of_day(raw["time"], (*here, "time"), problems)
    return Flow(
        zone=zone,
        at=None,
        cron=None,
        start=None,
        end=None,
        end_is_now=False,
        count=None,
        ok=zone is not None and len(problems) == before,
        dates=True,
        dates_window=window,
        dates_listed=listed,
        time_of_day=time_of_day,
        **shared,
    )


_FIRST_DATE, _LAST_DATE = date(2000, 1, 1), date(9999, 12, 30)


def _date(value: str, where: source.Path, problems: list[Problem]) -> date | None:
    """A business date ``YYYY-MM-DD`` (its entry is the next day: up to 9999-12-30)."""
    try:
        d = date.fromisoformat(value)
    except ValueError as e:
        problems.append(Problem(where, f'"{value}" is not a valid date ({e})'))
        return None
    if not _FIRST_DATE <= d <= _LAST_DATE:
        problems.append(Problem(where, f'"{value}" is out of range (2000-01-01 .. 9999-12-30)'))
        return None
    return d


def _time_of_day(value: str, where: source.Path, problems: list[Problem]) -> int | None:
    """``HH:MM[:SS]`` as milliseconds after midnight."""
    hour, minute, second = (int(p) for p in (value + ":00").split(":")[:3])
    if hour > 23 or minute > 59 or second > 59:
        problems.append(Problem(where, f'"{value}" is not a time of day (00:00 .. 23:59:59)'))
        return None
    return ((hour * 60 + minute) * 60 + second) * 1000


def _parameters(
    raw: dict[str, Any], here: source.Path, problems: list[Problem], *, calendar: bool
) -> tuple[tuple[str, str], ...]:
    """The flow's parameters as written, each template checked (``calendar``: whether
    target.serverTimezone is written, which ``{calDt}`` needs)."""
    written: dict[str, str] = raw.get("parameters") or {}
    for key, value in written.items():
        try:
            names = times.placeholders(value)
        except ValueError as e:
            problems.append(Problem((*here, "parameters", key), str(e)))
            continue
        if "calDt" in names and not calendar:
            problems.append(
                Problem(
                    (*here, "parameters", key),
                    "{calDt} needs target.serverTimezone (the zone in which the service "
                    "computes ${cal_dt}), e.g. serverTimezone: GMT+8",
                )
            )
    return tuple(written.items())


def entry_parameters(flow: Flow, entry: Entry, server_zone: tzinfo | None) -> dict[str, str] | None:
    """The flow's parameters for one entry, placeholders filled: ``{date}`` (the entry's
    local date in the flow's zone), ``{calDt}`` (its business date in ``server_zone``),
    ``{triggerTime}`` (epoch ms). None when the flow has none."""
    if not flow.parameters:
        return None
    tt, off = entry.trigger_time, entry.offset
    return {key: times.fill(value, tt, off, server_zone) for key, value in flow.parameters}
