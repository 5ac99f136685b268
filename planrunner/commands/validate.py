"""``planrunner validate``: check plans against the schema and every semantic rule.

An unset ``${VAR}`` in ``target`` is a warning here, not an error (``plan`` and ``apply``
still refuse it), so that a pre-commit hook or a pull request from a fork validates without
secrets. ``-`` reads a plan from standard input. ``--format github`` prints GitHub Actions
workflow commands, so problems show on the pull request's lines.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from planrunner.checking import Located, PlanCheck
from planrunner.commands import options
from planrunner.errors import EXIT_INVALID, EXIT_OK, UsageError

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

STDIN_NAME = "<stdin>"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """validate's options."""
    options.add_resolving(p)
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
    from planrunner.report.validate import RENDERERS

    results = [check(path, now, max_triggers) for path in paths]
    RENDERERS[fmt](results, sys.stdout, sys.stderr)
    sys.stdout.flush()
    return EXIT_OK if all(r.ok for r in results) else EXIT_INVALID


def check(path: str, now: int, max_triggers: int) -> PlanCheck:
    """Check one plan (``-``: standard input): every problem, unset ``${VAR}`` as warnings."""
    from planrunner import checking

    name = STDIN_NAME if path == "-" else path
    try:
        raw = sys.stdin.buffer.read() if path == "-" else None
        checked = checking.check(name, now, max_triggers, env_missing="warn", raw=raw)
    except UsageError as e:  # unreadable, too large
        message = str(e).removeprefix(f"{name}: ")
        return PlanCheck(name, None, [], [Located(None, None, "", message, "error")])
    return checked
