"""``planrunner status``: did the triggered runs succeed? Read-only; ``--watch`` follows them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass

from planrunner import terminal
from planrunner.commands import options
from planrunner.errors import PlanrunnerError, UsageError
from planrunner.lookup import Seen
from planrunner.report import status as render
from planrunner.runs.watch import LOGS, Result, watch_counts
from planrunner.select import Selection

HELP = "look up the instances apply triggered: running, succeeded or failed"
DESCRIPTION = (
    "Look up on the service the instance of every entry the ledger says was triggered (in "
    "batches: per flow, Search over windows of a day; Get by the recorded flowInstanceId "
    "only for the rest) and show per flow the counts by instance status, and the failed ones "
    "with their times, the task that failed and the last lines of its log (--logs). Reads "
    "the ledger without its lock and writes nothing. --watch polls until every instance has "
    "ended."
)
EPILOG = options.exit_codes(
    (0, "every instance succeeded (SUCCESS or SKIP)"),
    (
        1,
        "an instance ended FAIL, INTERNAL_ERROR, TIMEOUT or CANCEL, a done entry has no "
        "instance, a lookup failed, or a runtime error (network, auth)",
    ),
    (2, "invalid plan or usage"),
    (3, "the ledger is unreadable or corrupt"),
    (4, "instances are still queued or running (checked first)"),
    example="planrunner status plans/backfill.yaml --watch --interval 60",
)
PARENTS = ("one_plan", "selecting")

DEFAULT_INTERVAL = 30.0


def _lines(text: str) -> int:
    """--logs: a whole number of lines, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """status's own options."""
    options.add_format(p, "json", "markdown")
    p.add_argument(
        "--watch", action="store_true", help="poll until every instance has ended, then report"
    )
    p.add_argument(
        "--interval",
        type=options.positive_float,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between polls with --watch (default {DEFAULT_INTERVAL:g})",
    )
    p.add_argument(
        "--sim",
        action="store_true",
        help="show the --sim ledger (what apply --sim did); its instances cannot be looked up",
    )
    p.add_argument(
        "--logs",
        type=_lines,
        default=LOGS,
        metavar="N",
        help=f"show the last N lines of each failed task's log (default {LOGS}; 0: none)",
    )
    options.add_gateway(p)
    options.add_pace(p, "lookups")


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """Everything ``status`` was asked to do."""

    plan_path: str
    ledger_path: str | None
    now: int
    fmt: str = "text"
    watch: bool = False
    interval: float = DEFAULT_INTERVAL
    gateway: str | None = None
    sim: bool = False
    concurrency: int = 4
    rate: float | None = None
    max_triggers: int = 100_000
    selection: Selection = dataclasses.field(default_factory=Selection)
    logs: int = LOGS


def main(args: argparse.Namespace) -> int:
    """Run from parsed options."""
    from planrunner.commands.context import ledger_spec, max_triggers, now, selection

    return run(
        StatusRequest(
            args.plan,
            ledger_spec(args.ledger),
            now(args.now),
            args.format,
            args.watch,
            args.interval,
            args.gateway,
            args.sim,
            args.concurrency,
            args.rate,
            max_triggers(args.max_triggers),
            selection(args.flow, args.exclude, args.start, args.end),
            args.logs,
        )
    )


def run(req: StatusRequest) -> int:
    """The whole of ``planrunner status``; returns the exit code."""
    from planrunner import checking, ledger
    from planrunner.commands.context import gateway_id, note_missing, select
    from planrunner.runs import connect
    from planrunner.runs.watch import Watch

    if req.sim and req.gateway:
        raise UsageError("--gateway cannot be combined with --sim (the simulator is the gateway)")
    plan, entries = checking.load_entries(req.plan_path, req.now, req.max_triggers)
    entries = select(plan, entries, req.selection)
    path = req.ledger_path or (
        ledger.sim_path(req.plan_path) if req.sim else ledger.default_path(req.plan_path)
    )
    note_missing(req.ledger_path)
    watch = Watch(
        plan,
        entries,
        req.selection,
        ledger.open_ledger(path),
        gateway_id(plan, req.gateway, req.sim),
        None if req.sim else (lambda: connect(plan, req.gateway)),
        req.concurrency,
        req.rate,
        logs=req.logs,
        tracker=terminal.Lookups(sys.stderr, sys.stderr.isatty()),
    )
    live = terminal.Live(sys.stderr, req.watch and sys.stderr.isatty())
    done = watch.open()
    try:
        result = watch.run(
            done, req.watch, req.interval, lambda states: _show(live, states, req.interval)
        )
    except PlanrunnerError as e:
        if req.fmt == "json":
            sys.stdout.write(json.dumps(render.as_json(watch.result, str(e))) + "\n")
            options.reported_in_json(e)
        raise
    finally:
        live.close()
        watch.close()
    return _print(req.fmt, result)


def _show(live: terminal.Live, states: list[Seen], interval: float) -> None:
    """Before each wait of --watch: the live line on a terminal, else a log line."""
    ended, watched, counts = watch_counts(states)
    if live.enabled:  # a terminal: the one line, in place
        live.show(ended, watched, counts, any(s.failed for s in states), interval)
    else:
        from planrunner import log

        log.get("status").info("watching", ended=ended, watched=watched, **counts)


def _print(fmt: str, r: Result) -> int:
    if fmt == "json":
        text = json.dumps(render.as_json(r))
    elif fmt == "markdown":
        text = render.render_markdown(r)
    else:
        text = render.render_text(r)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return r.exit_code()
