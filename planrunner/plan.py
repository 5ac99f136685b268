"""Plan files: YAML -> located data -> schema and semantic checks -> frozen records."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from planrunner import cron as cronlib
from planrunner import schema, source, times
from planrunner.errors import PlanInvalid, UsageError
from planrunner.source import Document, Problem

_ENV_REF = re.compile(r"\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a plan's flows are triggered."""

    gateway: str
    org_id: str
    user_id: str


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

    @property
    def zone_name(self) -> str:
        """The flow's zone name, or UTC when it has none."""
        return self.zone.key if self.zone is not None else "UTC"


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated plan; ``doc`` keeps positions for errors found later (resolution)."""

    path: str
    target: Target
    flows: tuple[Flow, ...]
    doc: Document
    problems: tuple[Problem, ...]  # semantic problems; resolution reports them with its own

    def invalid(self, problems: list[Problem]) -> PlanInvalid:
        """The error reporting ``problems`` at their places in this plan's file."""
        return render_problems(self.path, self.doc, problems)


def render_problems(name: str, doc: Document, problems: list[Problem]) -> PlanInvalid:
    """Every problem as one ``file:line:col: error: ...`` line, in file order."""
    rendered = sorted((p.render(name, doc) for p in problems), key=lambda r: (r[0].line, r[0].col))
    lines: list[str] = []
    for _, line in rendered:
        if line not in lines:
            lines.append(line)
    return PlanInvalid(lines)


def gateway_problem(url: str) -> str | None:
    """Why ``url`` is not an acceptable gateway, or None: https, or http only to loopback."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return f'"{url}" is not a valid URL'
    if parts.scheme == "https" and host:
        return None
    if parts.scheme == "http" and host:
        if host == "localhost":
            return None
        try:
            if ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            pass
        return f'plain http:// is allowed only to a loopback address, not "{host}"; use https://'
    return f'"{url}" is not an https:// URL'


def load(path: str, environ: Mapping[str, str] | None = None) -> Plan:
    """Read and validate the plan at ``path``; raise :class:`PlanInvalid` with every problem."""
    try:
        with open(path, "rb") as f:
            raw = f.read(64 * 1024 * 1024 + 1)
    except OSError as e:
        raise UsageError(f"{path}: cannot read plan: {e.strerror or e}") from None
    if len(raw) > 64 * 1024 * 1024:
        raise UsageError(f"{path}: plan file larger than 64 MiB")
    try:
        doc = source.load(raw)
    except source.SourceError as e:
        raise PlanInvalid([f"{path}:{e.mark.line}:{e.mark.col}: error: {e.message}"]) from None
    problems = list(doc.problems)
    data = doc.data
    if isinstance(data, dict):
        # Top-level x- keys are a place for anchored fragments; nothing reads them.
        data = {k: v for k, v in data.items() if not k.startswith("x-")}
    problems += schema.check(data)
    if problems:
        raise render_problems(path, doc, problems)
    assert isinstance(data, dict)
    return _build(path, doc, data, os.environ if environ is None else environ)


def _expand_env(value: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    errors: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name = m[1]
        if not _ENV_NAME.fullmatch(name):
            errors.append(f'"${{{name}}}" is not a valid environment variable reference')
            return ""
        if name not in environ:
            errors.append(f'environment variable "{name}" is not set')
            return ""
        return environ[name]

    return _ENV_REF.sub(sub, value), errors


def _build(path: str, doc: Document, data: dict[str, Any], environ: Mapping[str, str]) -> Plan:
    problems: list[Problem] = []
    target_values: dict[str, str] = {}
    for key in ("gateway", "orgId", "userId"):
        value, errors = _expand_env(data["target"][key], environ)
        problems.extend(Problem(("target", key), e) for e in errors)
        target_values[key] = value
        if not errors and not value:
            problems.append(Problem(("target", key), "is empty after ${...} expansion"))
    if not problems:
        why = gateway_problem(target_values["gateway"])
        if why:
            problems.append(Problem(("target", "gateway"), why))

    plan_zone = _zone(data.get("timezone"), ("timezone",), problems)
    flows: list[Flow] = []
    seen_names: dict[str, int] = {}
    for i, raw in enumerate(data["flows"]):
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
        flows.append(_flow(i, raw, tz, problems, ok=len(problems) == before))
    target = Target(target_values["gateway"], target_values["orgId"], target_values["userId"])
    return Plan(path, target, tuple(flows), doc, tuple(problems))


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
) -> int | None:
    try:
        t = times.parse(value)
        return t.end_of(tz) if end else t.resolve(tz)
    except times.TimeError as e:
        problems.append(Problem(where, str(e)))
        return None


def _flow(
    i: int, raw: dict[str, Any], tz: ZoneInfo | None, problems: list[Problem], ok: bool
) -> Flow:
    here: source.Path = ("flows", i)
    before = len(problems)
    at: tuple[int, ...] | None = None
    cron: cronlib.Cron | None = None
    start = end = count = None
    end_is_now = False
    if "at" in raw:
        values = [_time(v, tz, (*here, "at", j), problems) for j, v in enumerate(raw["at"])]
        at = tuple(v for v in values if v is not None)
    else:
        try:
            cron = cronlib.parse(raw["cron"])
        except cronlib.CronError as e:
            problems.append(Problem((*here, "cron"), str(e)))
        if tz is None:
            problems.append(
                Problem(
                    (*here, "cron"),
                    'no timezone in scope for cron; set "timezone" (e.g. UTC) on the plan or the flow',
                )
            )
        start = _time(raw["from"], tz, (*here, "from"), problems)
        if "count" in raw:
            count = raw["count"]
        elif raw["to"] == "now":
            end_is_now = True
        else:
            end = _time(raw["to"], tz, (*here, "to"), problems, end=True)
            if start is not None and end is not None and start > end:
                problems.append(
                    Problem(
                        (*here, "from"),
                        f'"from" ({times.format_in_zone(start, tz)}) is after "to" ({times.format_in_zone(end, tz)})',
                    )
                )
    return Flow(
        index=i,
        name=raw["name"],
        flow_id=raw["flowId"],
        zone=tz,
        enabled=raw.get("enabled", True),
        at=at,
        cron=cron,
        start=start,
        end=end,
        end_is_now=end_is_now,
        count=count,
        ok=ok and len(problems) == before,
    )
