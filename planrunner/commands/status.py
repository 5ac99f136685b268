"""``planrunner status``: did the triggered runs succeed? Read-only; ``--watch`` follows them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from planrunner import terminal
from planrunner.commands import options
from planrunner.errors import PlanrunnerError, UsageError
from planrunner.lookup import Seen
from planrunner.report import status as render
from planrunner.runs.watch import Result, watch_counts
from planrunner.select import Selection

HELP = "look up the instances apply triggered: running, succeeded or failed"
DESCRIPTION = (
    "Look up on the service the instance of every entry the ledger says was triggered (by "
    "its recorded flowInstanceId, else by trigger time) and show per flow the counts by "
    "instance status, and the failed ones with their times. Reads the ledger without its "
    "lock and writes nothing. --watch polls until every instance has ended."
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
    options.add_gateway(p)
    options.add_pace(p, "lookups")


@dataclass(frozen=True, slots=True)
class Request:
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


def main(args: argparse.Namespace) -> int:
    """Run from parsed options."""
    from planrunner.commands.context import ledger_spec, max_triggers, now, selection

    return run(
        Request(
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
        )
    )


# -- the live line of --watch ------------------------------------------------------------------


class Live:
    """The one-line live summary of ``--watch`` on a terminal (stderr), rewritten with ``\\r``.

    It owns stderr's last line while it is drawn: a log line clears it and it is drawn again
    below, so the two never share a line.
    """

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.colour = enabled and terminal.use_colour(stream)
        self._drawn = False
        self._text = ""

    def line(self, states: Sequence[Seen], interval: float, width: int) -> str:
        """The summary, at most ``width - 1`` characters."""
        ended, watched, counts = watch_counts(states)
        parts = ", ".join(f"{n} {st}" for st, n in counts.items())
        text = f"watching: {ended}/{watched} ended; {parts}; next look in {interval:g}s"
        text = text[: max(width - 1, 1)]
        if self.colour:
            bad = any(s.failed for s in states)
            text = ("\x1b[31m" if bad else "\x1b[32m") + text + "\x1b[0m"
        return text

    def show(self, states: Sequence[Seen], interval: float) -> None:
        """Draw (or redraw) the line."""
        if not self.enabled:
            return
        from planrunner import log

        width = shutil.get_terminal_size((80, 24)).columns
        self._text = self.line(states, interval, width)
        log.own_line(self)
        self.redraw()

    def redraw(self) -> None:
        """Draw the last summary again (after a log line)."""
        if self.enabled and self._text:
            self.stream.write(f"\r{self._text}\x1b[K")
            self.stream.flush()
            self._drawn = True

    def clear(self) -> None:
        """Wipe the line (before a log line)."""
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def note(self, event: object) -> None:
        """Log events change nothing on this line."""

    def close(self) -> None:
        """Leave a clean line for the report."""
        from planrunner import log

        log.own_line(None)
        self.clear()
        self._text = ""


def run(req: Request) -> int:
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
    )
    live = Live(sys.stderr, req.watch and sys.stderr.isatty())
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


def _show(live: Live, states: list[Seen], interval: float) -> None:
    """Before each wait of --watch: the live line on a terminal, else a log line."""
    if live.enabled:
        live.show(states, interval)  # a terminal: the one line, in place
    else:
        from planrunner import log

        ended, watched, counts = watch_counts(states)
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
