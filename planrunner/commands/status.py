"""``planrunner status``: did the triggered runs succeed? Read-only; ``--watch`` follows them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, TextIO

from planrunner import instances, terminal, times
from planrunner.commands import options
from planrunner.errors import EXIT_FAILED, EXIT_OK, EXIT_PENDING, PlanrunnerError, UsageError
from planrunner.instances import Seen
from planrunner.plan import Plan
from planrunner.resolve import Entry
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
    (1, "an instance ended FAIL, INTERNAL_ERROR, TIMEOUT or CANCEL, a done entry has no "
     "instance, a lookup failed, or a runtime error (network, auth)"),
    (2, "invalid plan or usage"),
    (3, "the ledger is unreadable or corrupt"),
    (4, "instances are still queued or running (checked first)"),
    example="planrunner status plans/backfill.yaml --watch --interval 60",
)
PARENTS = ("one_plan", "selecting")

DEFAULT_INTERVAL = 30.0
FAILED_SHOWN = 20  # failed instances listed per flow in text output (JSON lists all)
MARKDOWN_LIMIT = 60_000
MARKDOWN_FAILED_SHOWN = 50


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


# -- the result --------------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    """Each selected entry with what is known of its instance."""

    plan: Plan
    ledger: str
    gateway: str
    selection: Selection
    entries: Sequence[Entry]
    seen: dict[str, Seen]
    cancelled: set[str]  # keys the ledger records as cancelled
    sim: bool = False

    def state(self, e: Entry) -> Seen:
        """What is known of ``e`` (not triggered when the ledger does not say it was)."""
        return self.seen.get(e.key) or Seen(instances.NOT_TRIGGERED)

    def by_flow(self) -> dict[str, list[Entry]]:
        """Entries per selected flow, in plan order."""
        names = (
            None
            if self.selection.everything
            else self.selection.names([f.name for f in self.plan.flows])
        )
        groups: dict[str, list[Entry]] = {
            f.name: [] for f in self.plan.flows if f.enabled and (names is None or f.name in names)
        }
        for e in self.entries:
            groups.setdefault(e.flow, []).append(e)
        return groups

    def summary(self) -> dict[str, int]:
        """Counts by state over every entry."""
        return instances.counts(self.state(e).state for e in self.entries)

    def exit_code(self) -> int:
        """4 while any instance is not final; then 1 when any failed or is missing; else 0."""
        states = [self.state(e) for e in self.entries]
        if any(not s.final and s.state != instances.LOOKUP_FAILED for s in states):
            return EXIT_PENDING
        bad = (instances.NOT_FOUND, instances.LOOKUP_FAILED)
        if any(s.failed or s.state in bad for s in states):
            return EXIT_FAILED
        return EXIT_OK


def _utc(ms: int | None) -> str | None:
    return None if ms is None else times.format_utc(ms)


def _failed_item(e: Entry, s: Seen) -> dict[str, Any]:
    return {
        "key": e.key,
        "triggerTime": e.trigger_time,
        "time": e.local_time,
        "flowInstanceId": s.flow_instance_id,
        "status": s.state,
        "startTime": _utc(s.start),
        "endTime": _utc(s.end),
        "seconds": s.seconds,
    }


def _problem_item(e: Entry, s: Seen) -> dict[str, Any]:
    return {
        "key": e.key,
        "triggerTime": e.trigger_time,
        "time": e.local_time,
        "flowInstanceId": s.flow_instance_id,
        "status": s.state,
        "reason": s.reason,
    }


def as_json(r: Result, error: str | None = None) -> dict[str, Any]:
    """The JSON document (``formatVersion`` 1)."""
    flows = []
    ids = {f.name: f.flow_id for f in r.plan.flows}
    for name, rows in r.by_flow().items():
        states = [(e, r.state(e)) for e in rows]
        flows.append(
            {
                "flow": name,
                "flowId": ids.get(name),
                "entries": len(rows),
                "counts": instances.counts(s.state for _, s in states),
                "failed": [_failed_item(e, s) for e, s in states if s.failed],
                "problems": [
                    _problem_item(e, s)
                    for e, s in states
                    if s.state in (instances.NOT_FOUND, instances.LOOKUP_FAILED)
                ],
                "cancelled": sum(1 for e, _ in states if e.key in r.cancelled),
            }
        )
    return {
        "formatVersion": 1,
        "plan": r.plan.path,
        "ledger": r.ledger,
        "gateway": r.gateway,
        "selection": r.selection.as_json(),
        "flows": flows,
        "summary": r.summary(),
        "final": r.exit_code() != EXIT_PENDING,
        "error": error,
    }


def _count_text(c: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in c.items()) or "nothing"


def render_text(r: Result) -> str:
    """Per flow its counts and its failed instances; a summary line."""
    lines = [
        f"Status {r.plan.path}",
        f"  ledger  {r.ledger}",
        f"  gateway {r.gateway}",
        f"  flows   {r.selection.describe()}",
        "",
    ]
    ids = {f.name: f.flow_id for f in r.plan.flows}
    for name, rows in r.by_flow().items():
        states = [(e, r.state(e)) for e in rows]
        lines.append(
            f"flow {name} (flowId {ids.get(name)}): {len(rows)} entr{'y' if len(rows) == 1 else 'ies'}: "
            f"{_count_text(instances.counts(s.state for _, s in states))}"
        )
        failed = [(e, s) for e, s in states if s.failed]
        for e, s in failed[:FAILED_SHOWN]:
            lines.append(
                f"  ! {e.local_time}  {e.trigger_time}  {s.state:<14} {s.flow_instance_id or '-'}"
                f"  ran {instances.duration(s.seconds)}"
                + (f"  started {_utc(s.start)}" if s.start is not None else "")
                + ("  (cancelled by planrunner)" if e.key in r.cancelled else "")
            )
        if len(failed) > FAILED_SHOWN:
            lines.append(
                f"    ... {len(failed) - FAILED_SHOWN} more failed (see --format json) ..."
            )
        for e, s in states:
            if s.state in (instances.NOT_FOUND, instances.LOOKUP_FAILED):
                lines.append(f"  ? {e.local_time}  {e.trigger_time}  {s.state}: {s.reason}")
        lines.append("")
    if r.sim:
        lines.append(
            "(--sim: the embedded simulator's instances ended with its apply run; "
            "done entries are shown from the ledger, not looked up)"
        )
    lines.append(f"Status: {len(r.entries)} entries ({_count_text(r.summary())}).")
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(r: Result, limit: int = MARKDOWN_LIMIT) -> str:
    """A table per flow and the failed instances, under ``limit`` characters."""
    summary = ", ".join(f"**{n}** {s}" for s, n in r.summary().items()) or "nothing"
    out = [
        f"<!-- planrunner-status:{r.plan.path} -->",
        f"### planrunner status `{_md(r.plan.path)}`",
        "",
        f"{len(r.entries)} entries: {summary} · {_md(r.selection.describe())}",
        "",
        "| flow | flowId | entries | succeeded | failed | running | not triggered | other |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ids = {f.name: f.flow_id for f in r.plan.flows}
    details: list[str] = []
    for name, rows in r.by_flow().items():
        states = [(e, r.state(e)) for e in rows]
        ok = sum(1 for _, s in states if s.state in instances.SUCCEEDED_NAMES)
        bad = [(e, s) for e, s in states if s.failed]
        going = sum(1 for _, s in states if not s.final and s.state != instances.LOOKUP_FAILED)
        waiting = sum(1 for _, s in states if s.state == instances.NOT_TRIGGERED)
        other = len(rows) - ok - len(bad) - going - waiting
        out.append(
            f"| {_md(name)} | {ids.get(name)} | {len(rows)} | {ok} | {len(bad)} | {going} | {waiting} | {other} |"
        )
        if bad:
            block = [
                f"<details><summary>{_md(name)}: {len(bad)} failed</summary>",
                "",
                "| time | triggerTime | status | instance | ran |",
                "|---|---:|---|---|---:|",
            ]
            block += [
                f"| `{e.local_time}` | {e.trigger_time} | {s.state} | {_md(s.flow_instance_id or '-')} | {instances.duration(s.seconds)} |"
                for e, s in bad[:MARKDOWN_FAILED_SHOWN]
            ]
            if len(bad) > MARKDOWN_FAILED_SHOWN:
                block.append(f"| … {len(bad) - MARKDOWN_FAILED_SHOWN} more | | | | |")
            block += ["", "</details>", ""]
            details.append("\n".join(block))
    out.append("")
    used = sum(len(x) + 1 for x in out)
    if used > limit - 200:  # many flows: keep the head and say so
        kept: list[str] = []
        size = 0
        for row in out:
            if size + len(row) + 1 > limit - 200:
                break
            kept.append(row)
            size += len(row) + 1
        kept.append("_More flows left out to fit a comment; see `planrunner status --format json`._")
        return "\n".join(kept)
    shown = 0
    for text in details:
        if used + len(text) + 1 > limit - 200:
            break
        out.append(text)
        used += len(text) + 1
        shown += 1
    if shown < len(details):
        out.append(f"_{len(details) - shown} flows' failed lists left out to fit a comment._")
    return "\n".join(out)


# -- watching ----------------------------------------------------------------------------------


def watch_counts(states: Sequence[Seen]) -> tuple[int, int, dict[str, int]]:
    """(ended, watched, counts by status) over the triggered entries: the one count that the
    live line and the per-poll log line both show."""
    watched = [s for s in states if s.state != instances.NOT_TRIGGERED]
    ended = sum(1 for s in watched if s.final)
    return ended, len(watched), instances.counts(s.state for s in watched)


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
    from planrunner import ledger as ledgerlib
    from planrunner import log
    from planrunner.commands.context import select

    if req.sim and req.gateway:
        raise UsageError("--gateway cannot be combined with --sim (the simulator is the gateway)")
    from planrunner import checking

    plan, entries = checking.load_entries(req.plan_path, req.now, req.max_triggers)
    entries = select(plan, entries, req.selection)
    path = req.ledger_path or (
        ledgerlib.sim_path(req.plan_path) if req.sim else ledgerlib.default_path(req.plan_path)
    )
    from planrunner.commands.context import gateway_id, note_missing

    note_missing(req.ledger_path)
    backend = ledgerlib.open_ledger(path)
    keys = {e.key for e in entries}
    logger = log.get("status")
    gateway = gateway_id(plan, req.gateway, req.sim)

    def read_ledger() -> tuple[list[tuple[Entry, str | None]], set[str]]:
        folded = backend.read(keys, sim=req.sim, gateway=gateway)
        if folded.torn_line is not None:
            logger.warning(
                "ledger has an incomplete last line (an apply may be writing); ignoring it",
                ledger=backend.name,
                line=folded.torn_line,
            )
        done = [(e, folded.done[e.key]) for e in entries if e.key in folded.done]
        return done, set(folded.cancelled)

    done, cancelled = read_ledger()
    if req.sim:
        shown = {e.key: Seen(instances.NOT_LOOKED_UP, iid) for e, iid in done}
        result = Result(plan, backend.name, "sim", req.selection, entries, shown, cancelled, sim=True)
        return _print(req.fmt, result)

    target = instances.connect(plan, req.gateway)
    client = target.client
    result = Result(plan, backend.name, target.where, req.selection, entries, {}, cancelled)
    zone: tzinfo | None = None
    try:
        seen: dict[str, Seen] = {}
        looked: dict[str, str | None] = {}  # key -> the recorded id it was looked up by

        def poll() -> None:
            nonlocal zone
            if zone is None:
                client.token()  # a token or zone problem stops the command, not each lookup
                zone = client.server_zone()
            todo = [
                (e, iid)
                for e, iid in done
                if e.key not in seen or not seen[e.key].final or looked.get(e.key) != iid
            ]
            got = instances.look_up_all(
                client, todo, zone, concurrency=req.concurrency, rate=req.rate
            )
            seen.update(got)
            looked.update({e.key: iid for e, iid in todo})

        if done:
            poll()
        result.seen = seen
        if req.watch:
            live = Live(sys.stderr, sys.stderr.isatty())
            try:
                while result.exit_code() == EXIT_PENDING or _retry_lookups(result):
                    states = [result.state(e) for e in entries]
                    if live.enabled:
                        live.show(states, req.interval)  # a terminal: the one line, in place
                    else:
                        ended, watched, counts = watch_counts(states)
                        logger.info("watching", ended=ended, watched=watched, **counts)
                    time.sleep(req.interval)
                    done, cancelled = read_ledger()  # an apply may be adding entries
                    result.cancelled = cancelled
                    if done:
                        poll()
            finally:
                live.close()
    except PlanrunnerError as e:
        if req.fmt == "json":
            sys.stdout.write(json.dumps(as_json(result, str(e))) + "\n")
            options.reported_in_json(e)
        raise
    finally:
        client.close()
    return _print(req.fmt, result)


def _retry_lookups(r: Result) -> bool:
    """With --watch, lookups that failed are tried again (a flaky network is not an answer)."""
    return any(r.state(e).state == instances.LOOKUP_FAILED for e in r.entries)


def _print(fmt: str, r: Result) -> int:
    if fmt == "json":
        text = json.dumps(as_json(r))
    elif fmt == "markdown":
        text = render_markdown(r)
    else:
        text = render_text(r)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return r.exit_code()
