"""Command line: parsing, dispatch, the one error handler and the exit codes.

No business logic lives here; each command function takes typed arguments and returns
its exit code. Modules are imported inside the commands that need them, so that
``validate`` does not pay for HTTP or the simulator.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from planrunner import __version__
from planrunner.errors import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_PENDING,
    PlanInvalid,
    PlanrunnerError,
)

EXIT_CODES_HELP = """exit codes:
  0    success: plan computed; apply left every entry done
  1    apply ended with failed or unknown entries, or a runtime error (network, auth)
  2    invalid plan or usage; nothing was sent
  3    the ledger is locked by another apply, or is unreadable or corrupt
  4    plan --detailed-exitcode only: entries are pending
  130  interrupted; in-flight requests were finished and recorded
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits 2 on usage errors, which is our "invalid plan or usage" code too.
        self.print_usage(sys.stderr)
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    if text.strip() == "0":
        return 0.0
    return _positive_float(text)


def build_parser() -> argparse.ArgumentParser:
    """The whole command-line grammar."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="log lines on stderr as text or one JSON object each (default: text on a terminal, else json)",
    )
    common.add_argument(
        "-v", "--verbose", action="count", default=0, help="more detail in the logs"
    )

    parser = _Parser(
        prog="planrunner",
        description="Apply version-controlled trigger plans to the EnOS Data Flow batch service, exactly once.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"planrunner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # What validate, plan and apply share: how to resolve.
    resolving = _Parser(add_help=False)
    resolving.add_argument(
        "--now",
        metavar="TIME",
        help="the moment 'to: now' means: epoch ms or RFC 3339; naive is UTC",
    )
    resolving.add_argument(
        "--max-triggers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="most entries a flow may yield (default 100000)",
    )
    # What plan and apply share: one plan and its ledger.
    one_plan = _Parser(add_help=False, parents=[resolving])
    one_plan.add_argument("plan", metavar="PLAN", help="plan file (YAML)")
    one_plan.add_argument(
        "--ledger", metavar="PATH", help="ledger file (default: the plan's path with .ledger.jsonl)"
    )

    p = sub.add_parser(
        "validate",
        parents=[common, resolving],
        help="check plans: schema, cron, zones, windows",
        description="Check each plan against the schema and every semantic rule; report every problem "
        "as file:line:col. Exit 0 when all are valid, 2 otherwise.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("plans", nargs="+", metavar="PLAN", help="plan files (YAML)")

    p = sub.add_parser(
        "plan",
        parents=[common, one_plan],
        help="dry run: what apply would trigger",
        description="Resolve a plan and show each entry with its status from the ledger "
        "(pending, retry, done, unknown). Reads the ledger without taking its lock; sends nothing.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "markdown"),
        default="text",
        help="output format (default text)",
    )
    p.add_argument(
        "--detailed-exitcode", action="store_true", help="exit 4 when any entry is not done yet"
    )

    p = sub.add_parser(
        "apply",
        parents=[common, one_plan],
        help="trigger every entry not yet done, exactly once",
        description="Resolve a plan, reconcile unknown outcomes, and trigger each entry that is not done, "
        "recording every step in the ledger first. Re-running never triggers an entry twice.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default text)"
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="do not ask for confirmation (required when stdin is not a terminal)",
    )
    p.add_argument("--gateway", metavar="URL", help="override target.gateway")
    p.add_argument(
        "--sim",
        action="store_true",
        help="apply against an embedded simulator seeded with the plan's flows (no credentials needed)",
    )
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help="flows sent to at once (default 4)",
    )
    p.add_argument(
        "--rate",
        type=_positive_float,
        default=None,
        metavar="PER_SECOND",
        help="cap on requests per second (default: no cap)",
    )
    p.add_argument(
        "--retry-unknown",
        action="store_true",
        help="send entries whose outcome is unknown even when the lookup fails",
    )
    p.add_argument(
        "--lock-timeout",
        type=_non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another apply's lock (default 0)",
    )

    p = sub.add_parser(
        "sim",
        parents=[common],
        help="run the local service simulator",
        description="Serve a simulator of the EnOS API gateway and Data Flow batch service on loopback. "
        "Prints its base URL as the first line on stdout, then serves until interrupted.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)"
    )
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument(
        "--flows",
        metavar="FILE",
        help="YAML list of {flowId, owner, orgId, locked, hasTask, runSeconds}",
    )
    p.add_argument(
        "--access-key", help="app key to accept (default $ENOS_ACCESS_KEY, else sim-access-key)"
    )
    p.add_argument(
        "--secret-key", help="app secret to accept (default $ENOS_SECRET_KEY, else sim-secret-key)"
    )
    p.add_argument(
        "--rate-limit",
        type=_positive_float,
        default=None,
        metavar="PER_SECOND",
        help="answer HTTP 429 above this many API requests per second",
    )
    p.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="delay every trigger answer by this long",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE|KIND@N,M",
        help="inject a fault: KIND=RATE (a probability per request, seeded) or KIND@N,M (the Nth and Mth "
        "triggers). KIND: 62109, 503, 504-after-create, drop-after-create, malformed, http-NNN (a gateway "
        "status), lookup-503 (instance lookups; rate only). Repeatable.",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="random seed for faults, so runs repeat (default 0)"
    )
    p.add_argument(
        "--token-ttl",
        type=int,
        default=7200,
        metavar="SECONDS",
        help="lifetime of issued tokens (default 7200)",
    )

    sub.add_parser(
        "schema",
        parents=[common],
        help="print the plan JSON Schema",
        description="Print the plan JSON Schema (2020-12) that validate uses.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_INVALID
    from planrunner import log

    log.configure(args.log_format, args.verbose)
    try:
        return _dispatch(args)
    except PlanrunnerError as e:
        # Plan problems are already "file:line:col: error: ..." lines.
        print(e if isinstance(e, PlanInvalid) else f"planrunner: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("planrunner: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `planrunner plan ... | head`: the reader left; that is not our failure.
        sys.stderr.close()
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "validate":
        return validate(args.plans, now=args.now, max_triggers=args.max_triggers)
    if args.command == "plan":
        return plan(
            args.plan,
            ledger=args.ledger,
            now=args.now,
            fmt=args.format,
            detailed_exitcode=args.detailed_exitcode,
            max_triggers=args.max_triggers,
        )
    if args.command == "schema":
        from planrunner import schema

        sys.stdout.write(schema.text())
        return EXIT_OK
    if args.command == "apply":
        return apply(
            args.plan,
            ledger=args.ledger,
            now=args.now,
            fmt=args.format,
            yes=args.yes,
            gateway=args.gateway,
            sim=args.sim,
            concurrency=args.concurrency,
            rate=args.rate,
            retry_unknown=args.retry_unknown,
            lock_timeout=args.lock_timeout,
            max_triggers=args.max_triggers,
        )
    if args.command == "sim":
        from planrunner.sim import serve_command

        return serve_command(args)
    raise AssertionError(args.command)  # pragma: no cover


def _now(text: str | None) -> int:
    from planrunner import times
    from planrunner.errors import UsageError

    if text is None:
        import time

        return time.time_ns() // 1_000_000
    try:
        return times.parse_now(text)
    except times.TimeError as e:
        raise UsageError(f"--now: {e}") from None


def validate(paths: Sequence[str], now: str | None = None, max_triggers: int | None = None) -> int:
    """Check each plan; print every problem; 0 when all are valid."""
    from planrunner import plan as planlib
    from planrunner.resolve import DEFAULT_MAX_TRIGGERS, resolve

    moment = _now(now)
    code = EXIT_OK
    for path in paths:
        try:
            p = planlib.load(path)
            entries = resolve(p, moment, max_triggers or DEFAULT_MAX_TRIGGERS)
        except PlanInvalid as e:
            print(str(e), file=sys.stderr)
            code = EXIT_INVALID
            continue
        flows = sum(1 for f in p.flows if f.enabled)
        print(f"{path}: ok ({len(entries)} entries in {flows} flow{'s' if flows != 1 else ''})")
    return code


def plan(
    path: str,
    ledger: str | None = None,
    now: str | None = None,
    fmt: str = "text",
    detailed_exitcode: bool = False,
    max_triggers: int | None = None,
) -> int:
    """Resolve ``path`` and print each entry with its status from the ledger."""
    from planrunner import ledger as ledgerlib
    from planrunner import plan as planlib
    from planrunner import report
    from planrunner.resolve import DEFAULT_MAX_TRIGGERS, resolve

    moment = _now(now)
    p = planlib.load(path)
    entries = resolve(p, moment, max_triggers or DEFAULT_MAX_TRIGGERS)
    ledger_path = ledger or ledgerlib.default_path(path)
    outcomes = ledgerlib.plan_outcomes(ledger_path, {e.key for e in entries})
    result = report.Result(p, ledger_path, moment, entries, outcomes)
    if fmt == "json":
        text = report.render_json(result)
    elif fmt == "markdown":
        text = report.render_markdown(result)
    else:
        text = report.render_text(result)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    if detailed_exitcode and any(s != "done" for s in result.summary):
        return EXIT_PENDING
    return EXIT_OK


def apply(
    path: str,
    ledger: str | None = None,
    now: str | None = None,
    fmt: str = "text",
    yes: bool = False,
    gateway: str | None = None,
    sim: bool = False,
    concurrency: int = 4,
    rate: float | None = None,
    retry_unknown: bool = False,
    lock_timeout: float = 0.0,
    max_triggers: int | None = None,
) -> int:
    """Trigger every entry of ``path`` that is not done yet, exactly once."""
    from planrunner import apply as applylib
    from planrunner.resolve import DEFAULT_MAX_TRIGGERS

    return applylib.execute(
        path,
        ledger_path=ledger,
        now=_now(now),
        fmt=fmt,
        yes=yes,
        gateway=gateway,
        sim=sim,
        options=applylib.Options(concurrency=concurrency, rate=rate, retry_unknown=retry_unknown),
        lock_timeout=lock_timeout,
        max_triggers=max_triggers or DEFAULT_MAX_TRIGGERS,
    )
