"""Checking a plan: every problem (YAML, schema, semantic, resolution) in one result.

The checker collects; the commands render (as check-jsonschema's checker and reporter do).
Data flows one way: plan file -> :func:`planrunner.plan.read` -> :func:`resolve` ->
:class:`PlanCheck`, with nothing climbing back to render problems.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from planrunner import plan as planlib
from planrunner.errors import PlanInvalid
from planrunner.plan import Plan
from planrunner.resolve import Entry, resolve
from planrunner.source import Document, Problem, format_path


@dataclass(frozen=True, slots=True)
class Located:
    """One problem at its place in the file, ready to print in any format."""

    line: int | None
    col: int | None
    path: str  # "flows[1].cron", or "" for the document as a whole
    message: str
    severity: str  # "error" or "warning"

    def text(self, name: str) -> str:
        """``name:line:col: severity: path: message``."""
        where = f"{self.line}:{self.col}: " if self.line is not None else " "
        prefix = f"{self.path}: " if self.path else ""
        return f"{name}:{where}{self.severity}: {prefix}{self.message}"

    def as_json(self) -> dict[str, object]:
        """The problem as ``--format json`` shows it."""
        return {
            "line": self.line,
            "col": self.col,
            "path": self.path,
            "message": self.message,
            "severity": self.severity,
        }


def locate(problem: Problem, doc: Document | None, severity: str | None = None) -> Located:
    """A problem with its line and column (from its own mark, else the document's)."""
    if problem.mark is not None:
        mark = problem.mark
    elif doc is not None:
        mark = doc.locate(problem.path, key=problem.key)
    else:
        mark = None
    shown = format_path(problem.path[:-1] if problem.key else problem.path)
    return Located(
        mark.line if mark else None,
        mark.col if mark else None,
        shown,
        problem.message,
        severity or problem.severity,
    )


@dataclass(slots=True)
class PlanCheck:
    """What checking one plan found: the plan and its entries when valid, and every problem."""

    name: str
    plan: Plan | None
    entries: list[Entry] = field(default_factory=list)
    problems: list[Located] = field(default_factory=list)  # in file order, errors and warnings

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return self.plan is not None and not any(p.severity == "error" for p in self.problems)

    def lines(self, severity: str = "error") -> list[str]:
        """The problems of ``severity`` as text lines, in file order."""
        return [p.text(self.name) for p in self.problems if p.severity == severity]

    def valid(self) -> tuple[Plan, list[Entry]]:
        """The plan and its entries; :class:`PlanInvalid` (every error line) when invalid."""
        if not self.ok or self.plan is None:
            raise PlanInvalid(self.lines())
        return self.plan, self.entries


def _ordered(problems: list[Located]) -> list[Located]:
    """File order; the same line reported twice is reported once."""
    seen: set[tuple[object, ...]] = set()
    out = []
    for p in sorted(problems, key=lambda p: (p.line or 0, p.col or 0)):
        ident = (p.line, p.col, p.path, p.message, p.severity)
        if ident not in seen:
            seen.add(ident)
            out.append(p)
    return out


def check(
    path: str,
    now: int,
    max_triggers: int,
    *,
    env_missing: str = "error",
    raw: bytes | None = None,
    environ: Mapping[str, str] | None = None,
    name: str | None = None,
) -> PlanCheck:
    """Read, validate and resolve the plan at ``path``, collecting every problem.

    ``env_missing="warn"`` (validate) reports an unset ``${VAR}`` as a warning. A file
    that cannot be read at all is a :class:`~planrunner.errors.UsageError`, not a problem.
    """
    reading = planlib.read(path, environ, env_missing=env_missing, raw=raw)
    found = [locate(p, reading.doc) for p in reading.problems]
    found += [locate(p, reading.doc, "warning") for p in reading.warnings]
    checked = PlanCheck(name or path, None)
    if reading.plan is not None:
        entries, problems = resolve(reading.plan, now, max_triggers)
        found += [locate(p, reading.doc) for p in problems]
        risk = server_zone_risk(reading.plan, entries, now)
        if risk is not None:
            found.append(locate(risk, reading.doc))
        checked.plan = reading.plan
        checked.entries = entries
    checked.problems = _ordered(found)
    return checked


def read_plan(path: str, environ: Mapping[str, str] | None = None) -> Plan:
    """The plan at ``path``, not resolved (doctor, ``ledger log --flow``); :class:`PlanInvalid`
    with every YAML, schema and semantic problem, as ``check`` words them."""
    reading = planlib.read(path, environ)
    if reading.problems or reading.plan is None:
        raise PlanInvalid([p.text(path) for p in _ordered([locate(p, reading.doc) for p in reading.problems])])
    return reading.plan


def server_zone_risk(plan: Plan, entries: list[Entry], now: int) -> Problem | None:
    """A warning when ``target.serverTimezone`` has daylight saving in the plan's years: the
    service writes instance times without an offset, so a time in the repeated hour names
    two instants, and a lookup may miss the entry (docs/reliability.md, N4)."""
    from planrunner import protocol, times

    name = plan.target.server_timezone
    if name is None:
        return None
    stamps = [entries[0].trigger_time, entries[-1].trigger_time] if entries else [now]
    first, last = (int(times.format_utc(ms)[:4]) for ms in (min(stamps), max(stamps)))
    try:
        if not protocol.zone_has_dst(name, range(first, last + 1)):
            return None
    except ValueError:
        return None  # reported as an error already
    return Problem(
        ("target", "serverTimezone"),
        f"server zone {name} has daylight saving: instance times in its repeated hour are "
        "ambiguous (the service writes them without an offset), so an entry there may not be "
        "found when its outcome is looked up",
        severity="warning",
    )


def load_entries(
    path: str, now: int, max_triggers: int, *, raw: bytes | None = None
) -> tuple[Plan, list[Entry]]:
    """The plan and its entries, for commands that act on a valid plan."""
    return check(path, now, max_triggers, raw=raw).valid()
