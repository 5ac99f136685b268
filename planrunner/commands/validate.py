"""``planrunner validate``: check plans against the schema and every semantic rule.

An unset ``${VAR}`` in ``target`` is a warning here, not an error (``plan`` and ``apply``
still refuse it), so that a pre-commit hook or a pull request from a fork validates without
secrets. ``-`` reads a plan from standard input. ``--format github`` prints GitHub Actions
workflow commands, so problems show on the pull request's lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from planrunner.checking import Checked, Located
from planrunner.commands import options
from planrunner.errors import EXIT_INVALID, EXIT_OK, UsageError
from planrunner.report import disabled_note

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
    flows = sum(1 for f in r.plan.flows if f.enabled) if r.plan is not None else 0
    disabled = disabled_note(r.plan) if r.plan is not None else ""
    return (
        f"{r.name}: ok ({len(r.entries):,} entr{'y' if len(r.entries) == 1 else 'ies'} in "
        f"{flows} flow{'s' if flows != 1 else ''}"
        f"{disabled}{note})"
    )


def check(path: str, now: int, max_triggers: int) -> Checked:
    """Check one plan (``-``: standard input): every problem, unset ``${VAR}`` as warnings."""
    from planrunner import checking

    name = STDIN_NAME if path == "-" else path
    try:
        raw = sys.stdin.buffer.read() if path == "-" else None
        checked = checking.check(name, now, max_triggers, env_missing="warn", raw=raw)
    except UsageError as e:  # unreadable, too large
        message = str(e).removeprefix(f"{name}: ")
        return Checked(name, None, [], [Located(None, None, "", message, "error")])
    return checked


def _escape_data(text: str) -> str:
    # The runner unescapes these three in a command's message; a bare newline would end
    # the command and let the rest of the text start a command of its own.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_command(name: str, p: Located) -> str:
    """``::error file=F,line=L,col=C::message`` (``::warning`` for warnings)."""
    props = [f"file={_escape_property(name)}"]
    if p.line is not None:
        props += [f"line={p.line}", f"col={p.col}"]
    text = f"{p.path}: {p.message}" if p.path else p.message
    # Plan text (keys, values) is quoted into messages: keep it from forming "::".
    text = text.replace("::", ": :")
    return f"::{p.severity} {','.join(props)}::{_escape_data(text)}"
