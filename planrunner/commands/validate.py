"""``planrunner validate``: check plans against the schema and every semantic rule.

An unset ``${VAR}`` in ``target`` is a warning here, not an error (``plan`` and ``apply``
still refuse it), so that a pre-commit hook or a pull request from a fork validates without
secrets. ``-`` reads a plan from standard input. ``--format github`` prints GitHub Actions
workflow commands, so problems show on the pull request's lines.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from planrunner.commands import options
from planrunner.errors import EXIT_INVALID, EXIT_OK, PlanInvalid, UsageError

HELP = "check plans: schema, cron, zones, windows"
DESCRIPTION = (
    "Check each plan against the schema and every semantic rule; report every problem as "
    "file:line:col. An unset ${VAR} is a warning (plan and apply need it set). "
    "PLAN - reads standard input. Exit 0 when all are valid, 2 otherwise."
)
EPILOG = options.exit_codes(
    (0, "every plan is valid (warnings allowed)"),
    (2, "a plan is invalid or unreadable"),
    example="planrunner validate plans/*.yaml --format github",
)
PARENTS = ("resolving",)

FORMAT_VERSION = 1
STDIN_NAME = "<stdin>"

# "LINE:COL: error: PATH: MESSAGE" after the file name; PATH as source.format_path writes it,
# always under one of the plan's top-level keys (a message never starts that way).
_LINE = re.compile(r"(\d+):(\d+): (error|warning): (.*)", re.DOTALL)
_PATH = re.compile(r"((?:version|target|timezone|flows)(?:\[\d+\]|\.[A-Za-z_][A-Za-z0-9_-]*)*): ")


@dataclass(frozen=True, slots=True)
class Found:
    """One problem of one plan, located."""

    line: int | None
    col: int | None
    path: str
    message: str
    severity: str  # "error" or "warning"

    def text(self, name: str) -> str:
        """``name:line:col: severity: path: message``, as validate has always printed."""
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


@dataclass(slots=True)
class Checked:
    """What validate found in one plan."""

    name: str
    problems: list[Found] = field(default_factory=list)
    entries: int = 0
    flows: int = 0

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not any(p.severity == "error" for p in self.problems)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """validate's own options."""
    p.add_argument("plans", nargs="+", metavar="PLAN", help="plan files (YAML); - reads stdin")
    p.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="text (default), json, or github (GitHub Actions ::error/::warning annotations)",
    )


def main(args: argparse.Namespace) -> int:
    """Run from parsed options."""
    from planrunner.commands.context import max_triggers, now

    return run(args.plans, now(args.now), max_triggers(args.max_triggers), fmt=args.format)


def run(paths: Sequence[str], now: int, max_triggers: int, fmt: str = "text") -> int:
    """Check each plan; print every problem; 0 when all are valid."""
    if list(paths).count("-") > 1:
        raise UsageError("- (standard input) can be given only once")
    results = [check(path, now, max_triggers) for path in paths]
    if fmt == "json":
        doc = {
            "formatVersion": FORMAT_VERSION,
            "plans": [
                {"path": r.name, "ok": r.ok, "problems": [p.as_json() for p in r.problems]}
                for r in results
            ],
        }
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
    elif fmt == "github":
        for r in results:
            for p in r.problems:
                sys.stdout.write(github_command(r.name, p) + "\n")
            if r.ok:
                sys.stdout.write(_ok_line(r) + "\n")
    else:
        for r in results:
            for p in r.problems:
                sys.stderr.write(p.text(r.name) + "\n")
            if r.ok:
                sys.stdout.write(_ok_line(r) + "\n")
    sys.stdout.flush()
    return EXIT_OK if all(r.ok for r in results) else EXIT_INVALID


def _ok_line(r: Checked) -> str:
    warned = sum(1 for p in r.problems if p.severity == "warning")
    note = f"; {warned} warning{'s' if warned != 1 else ''}" if warned else ""
    return f"{r.name}: ok ({r.entries} entries in {r.flows} flow{'s' if r.flows != 1 else ''}{note})"


def check(path: str, now: int, max_triggers: int) -> Checked:
    """Load and resolve one plan (``-``: standard input), collecting every problem."""
    from planrunner import plan as planlib
    from planrunner import source
    from planrunner.resolve import resolve

    name = STDIN_NAME if path == "-" else path
    out = Checked(name)
    try:
        raw = sys.stdin.buffer.read() if path == "-" else None
        p = planlib.load(name, env_missing="warn", raw=raw)
        for w in p.warnings:
            mark = w.mark or p.doc.locate(w.path, key=w.key)
            shown = source.format_path(w.path[:-1] if w.key else w.path)
            message = f"{w.message} (validate only warns; plan and apply need it set)"
            out.problems.append(Found(mark.line, mark.col, shown, message, "warning"))
        entries = resolve(p, now, max_triggers)
    except PlanInvalid as e:
        out.problems += [parse_line(name, line) for line in e.lines]
        out.problems.sort(key=lambda f: (f.line or 0, f.col or 0))
        return out
    except UsageError as e:  # unreadable, too large
        message = str(e).removeprefix(f"{name}: ")
        out.problems.append(Found(None, None, "", message, "error"))
        return out
    out.entries = len(entries)
    out.flows = sum(1 for f in p.flows if f.enabled)
    return out


def parse_line(name: str, line: str) -> Found:
    """A rendered ``file:line:col: error: path: message`` line back into its parts."""
    rest = line.removeprefix(f"{name}:")
    m = _LINE.fullmatch(rest)
    if not m:
        return Found(None, None, "", line, "error")
    text = m[4]
    where = _PATH.match(text)
    path = where[1] if where else ""
    message = text[where.end() :] if where else text
    return Found(int(m[1]), int(m[2]), path, message, m[3])


def _escape_data(text: str) -> str:
    # The runner unescapes these three in a command's message; a bare newline would end
    # the command and let the rest of the text start a command of its own.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_command(name: str, p: Found) -> str:
    """``::error file=F,line=L,col=C::message`` (``::warning`` for warnings)."""
    props = [f"file={_escape_property(name)}"]
    if p.line is not None:
        props += [f"line={p.line}", f"col={p.col}"]
    text = f"{p.path}: {p.message}" if p.path else p.message
    # Plan text (keys, values) is quoted into messages: keep it from forming "::".
    text = text.replace("::", ": :")
    return f"::{p.severity} {','.join(props)}::{_escape_data(text)}"
