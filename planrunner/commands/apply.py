"""``planrunner apply``: the prompt, ``--sim``, signals and output around the engine."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from planrunner import ledger, log, runs, terminal
from planrunner.commands import options
from planrunner.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PENDING,
    PlanrunnerError,
    UsageError,
)
from planrunner.outcome import Entry, Outcome, Status
from planrunner.runs import apply as engine
from planrunner.runs import connect, pace, rerun
from planrunner.saved import Saved
from planrunner.select import Selection

if TYPE_CHECKING:
    from planrunner.plan import Plan
    from planrunner.report import PlanResult
DESCRIPTION = (
    "Resolve a plan, reconcile unknown outcomes, and trigger each entry that is not done, "
    "recording every step in the ledger first. Re-running never triggers an entry twice. "
    "PLAN may be a saved plan (plan --out SAVED): then exactly its entries not yet done are "
    "sent, at its --now and selection, and it is refused (exit 2) when the plan file changed. "
    "Several PLANs are applied one after another, with one combined report."
)
EPILOG = options.exit_codes(
    (0, "every entry is done"),
    (1, "entries failed, are unknown or were not sent (a flow refused or halted, the gateway's "
     "quota spent); the confirmation was declined; or a runtime error (network, auth)"),
    (2, "invalid plan or usage; nothing was sent"),
    (3, "the ledger is locked by another apply, or is unreadable or corrupt"),
    (4, "nothing failed, but entries were held back by --max-unfinished (apply again, or --wait)"),
    (130, "interrupted; requests in flight were finished and recorded"),
    example="planrunner apply plans/backfill.yaml --yes",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """apply's options."""
    options.add_plan(p, many=True)
    options.add_selecting(p)
    options.add_format(p, "json")
    p.add_argument(
        "--sim",
        action="store_true",
        help="apply against an embedded simulator seeded with the plan's flows (no credentials needed)",
    )
    p.add_argument(
        "--retry-unknown",
        action="store_true",
        help="send entries whose outcome is unknown even when the lookup fails",
    )
    p.add_argument(
        "--quiet", "-q", action="store_true", help="print the summary line only; no progress bar"
    )
    options.add_yes(p)
    options.add_gateway(p)
    options.add_pace(p, "flows sent to")
    options.add_pacing(p)
    options.add_rerun_failed(p)
    options.add_lock_timeout(p)


def main(args: argparse.Namespace) -> int:
    """Run from parsed options: each PLAN in turn."""
    from planrunner.commands.context import now

    paths: list[str] = args.plan
    if "-" in paths:
        raise UsageError(
            "-: apply needs a plan file (its path names the ledger; stdin answers the "
            "confirmation); plan - reviews one from standard input"
        )
    moment = now(args.now)  # one moment for every plan of the command
    if len(paths) == 1:
        return run(request(args, paths[0], moment))
    return run_each(args, paths, moment)


def request(args: argparse.Namespace, path: str, moment: int) -> ApplyRequest:
    """The :class:`ApplyRequest` for one PLAN (or saved plan) of the command line."""
    from planrunner.commands.context import ledger_spec, max_triggers, selection
    from planrunner.saved import read_if_saved

    pinned = read_if_saved(path)
    if pinned is not None:
        # What was reviewed is what is applied: the saved plan fixes these.
        fixed = {
            "--now": args.now,
            "--flow": args.flow,
            "--exclude": args.exclude,
            "--from": args.start,
            "--to": args.end,
            "--max-triggers": args.max_triggers,
        }
        given = [name for name, value in fixed.items() if value]
        if given:
            raise UsageError(
                f"{', '.join(given)}: {path} is a saved plan, which fixes these; apply it as saved"
            )
        plan_path, moment, most, chosen = (
            pinned.plan,
            pinned.now,
            pinned.max_triggers,
            pinned.selection,
        )
    else:
        plan_path, most, chosen = (
            path,
            max_triggers(args.max_triggers),
            selection(args.flow, args.exclude, args.start, args.end),
        )
    return ApplyRequest(
        plan_path=plan_path,
        ledger_path=ledger_spec(args.ledger),
        now=moment,
        fmt=args.format,
        yes=args.yes,
        gateway=args.gateway,
        sim=args.sim,
        options=engine_options(args),
        lock_timeout=args.lock_timeout,
        max_triggers=most,
        quiet=args.quiet,
        selection=chosen,
        saved=pinned,
        again=again_command(args),
    )


def engine_options(args: argparse.Namespace) -> engine.Options:
    """How hard and how fast to send, from the command line (None: the plan's keys)."""
    if args.interval is not None and not args.wait:
        raise UsageError("--interval: only with --wait (the longest wait between looks at unfinished instances)")
    return engine.Options(
        concurrency=args.concurrency,
        rate=args.rate,
        retry_unknown=args.retry_unknown,
        max_unfinished=args.max_unfinished,
        wait=args.wait,
        interval=args.interval,
        halt_on_failure=args.halt_on_failure,
        rerun_failed=args.rerun_failed,
    )


def run_each(args: argparse.Namespace, paths: list[str], moment: int) -> int:
    """Several plans, one after another (each under its own lock and confirmation), with a
    combined report: text reports in turn and a total line, or one JSON object
    ``{"formatVersion": 1, "plans": [...]}``. The first plan that stops (an error, Ctrl-C)
    ends the command; the plans after it are not started."""
    from planrunner.errors import PlanrunnerError

    docs: list[str] = []
    totals: dict[str, int] = {}
    codes: list[int] = []

    def emit(text: str, summary: dict[str, int]) -> None:
        docs.append(text)
        for status, n in summary.items():
            totals[status] = totals.get(status, 0) + n
        if args.format != "json":
            sys.stdout.write(text + "\n\n")
            sys.stdout.flush()

    def combined(error: str | None) -> str:
        if args.format == "json":
            body = ",\n".join(docs)
            return f'{{"formatVersion": 1, "plans": [\n{body}\n], "error": {_json_str(error)}}}'
        counts = ", ".join(f"{n} {s}" for s, n in totals.items())
        return (
            f"Apply: {len(docs)} of {len(paths)} plans, {sum(totals.values())} entries"
            + (f" ({counts})" if counts else "")
            + "."
        )

    try:
        for path in paths:
            codes.append(run(request(args, path, moment), emit))
            if codes[-1] == EXIT_INTERRUPTED:
                break
    except PlanrunnerError as e:
        from planrunner.commands.options import reported_in_json

        sys.stdout.write(combined(str(e)) + "\n")
        sys.stdout.flush()
        if args.format == "json":
            reported_in_json(e)
        raise
    sys.stdout.write(combined(None) + "\n")
    sys.stdout.flush()
    return EXIT_INTERRUPTED if EXIT_INTERRUPTED in codes else max(codes)


def _json_str(value: str | None) -> str:
    import json

    return json.dumps(value)


def again_command(args: argparse.Namespace) -> str:
    """The apply command line that continues this one, shell-quoted.

    It repeats every option that decides where and what is sent (the simulator or the
    gateway, the ledger, the moment and limits, the selection), so that running it as
    printed never turns a ``--sim`` or ``--gateway`` run into one against the plan's own
    gateway and ledger.
    """
    import shlex

    plans = args.plan if isinstance(args.plan, list) else [args.plan]
    words = ["planrunner", "apply", *plans]
    flags = (
        ("--sim", args.sim),
        ("--retry-unknown", args.retry_unknown),
        ("--wait", args.wait),
        ("--halt-on-failure", args.halt_on_failure),
        ("--yes", args.yes),
    )
    words += [flag for flag, given in flags if given]
    valued = (
        ("--gateway", args.gateway),
        ("--ledger", args.ledger),
        ("--now", args.now),
        ("--max-triggers", args.max_triggers),
        ("--from", args.start),
        ("--to", args.end),
        ("--max-unfinished", args.max_unfinished),
        ("--interval", args.interval),
        ("--rerun-failed", args.rerun_failed),
    )
    for flag, value in valued:
        if value is not None:
            words += [flag, str(value)]
    for flag, values in (("--flow", args.flow), ("--exclude", args.exclude)):
        for value in values:
            words += [flag, value]
    return shlex.join(words)


@dataclass(frozen=True, slots=True, kw_only=True)  # fourteen fields: never by position
class ApplyRequest:
    """Everything ``apply`` was asked to do."""

    plan_path: str
    ledger_path: str | None
    now: int
    fmt: str
    yes: bool
    gateway: str | None
    sim: bool
    options: engine.Options
    lock_timeout: float
    max_triggers: int
    quiet: bool = False
    selection: Selection = dataclasses.field(default_factory=Selection)
    saved: Saved | None = None  # `apply SAVED`: only its entries, and only if the plan is unchanged
    again: str | None = None  # the command line that continues this run (shell-quoted)




def held_back(outcome: Outcome) -> bool:
    """Whether pacing held the entry back (``--max-unfinished``): it waits for a later apply."""
    return outcome.status == Status.PENDING and (outcome.error or "").startswith(pace.HELD_BACK)


def exit_code(outcomes: dict[str, Outcome], interrupted: bool) -> int:
    """130 when interrupted; 1 when anything failed, is unknown or was not sent for another
    reason than pacing; 4 when entries were held back by pacing; else 0."""
    if interrupted:
        return EXIT_INTERRUPTED
    bad = (Status.FAILED, Status.UNKNOWN, Status.PENDING)
    if any(o.status in bad and not held_back(o) for o in outcomes.values()):
        return EXIT_FAILED
    if any(held_back(o) for o in outcomes.values()):
        return EXIT_PENDING
    return EXIT_OK


sim_ledger_path = ledger.sim_path  # --sim keeps its own ledger


class _Interrupts:
    """First Ctrl-C (or SIGTERM): stop sending, finish what is in flight. Second: exit now."""

    def __init__(self, stop: threading.Event, progress: terminal.Progress) -> None:
        self.stop = stop
        self.progress = progress
        self.seen = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.seen:
            # The intents already on disk make this safe: the next apply reconciles them.
            # The terminal echoed ^C where the cursor was: end that line first.
            os.write(2, b"\nplanrunner: quit now; the next apply reconciles what was in flight\n")
            os._exit(EXIT_INTERRUPTED)
        self.seen = True
        self.stop.set()
        self.progress.clear()
        sys.stderr.write(
            "planrunner: interrupted; finishing requests in flight (Ctrl-C again to quit now)\n"
        )

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Interrupts]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self.handler)
        previous_term = signal.signal(signal.SIGTERM, self.handler)
        try:
            yield self
        finally:
            if self.seen:
                # Everything is recorded; we exit 130. CPython resets Python-level handlers
                # while shutting down, so a late second Ctrl-C would kill the interpreter
                # mid-exit: ignore it instead (ignoring survives the shutdown).
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            else:
                signal.signal(signal.SIGINT, previous)
                signal.signal(signal.SIGTERM, previous_term)


Emit = Callable[[str, dict[str, int]], None]


def run(req: ApplyRequest, emit: Emit | None = None) -> int:
    """The whole of ``planrunner apply`` for one plan; returns the exit code.

    The report goes to stdout, or to ``emit(text, summary)`` when several plans share it.
    """
    from planrunner.commands.context import settings_from_env

    plan, entries = _entries(req)
    path = req.ledger_path or (
        sim_ledger_path(req.plan_path) if req.sim else ledger.default_path(req.plan_path)
    )
    options = settings_from_env(req.options)  # (commands.context)
    run_id = runs.new_run_id()
    logger = log.get("apply").bind(run=run_id)
    with contextlib.ExitStack() as stack:
        conn = connect(plan, req.gateway, req.sim, stack=stack, read_timeout=options.read_timeout)
        backend = ledger.open_ledger(path)  # a missing one is created: no note (plan notes it)
        flows = sorted({(e.org_id, e.flow_id) for e in entries})
        session = stack.enter_context(backend.session(run_id, flows, req.lock_timeout))
        folded = session.fold({e.key for e in entries}, sim=req.sim, gateway=conn.gateway_id)
        todo = _todo(entries, folded, logger)
        reruns = rerun.limits(plan.flows, options.rerun_failed)
        maybe = todo or (any(reruns.values()) and todo < len(entries))  # done ones may be rerun
        if (
            maybe
            and not req.yes
            and not _confirmed(req, plan, conn.where, backend.name, entries, folded)
        ):
            _declined(req, emit)
            return EXIT_FAILED
        logger.info(
            "apply starting",
            plan=req.plan_path,
            ledger=backend.name,
            gateway=conn.where,
            entries=len(entries),
            todo=todo,
        )
        if maybe:
            _say_future(entries, folded, req.now, logger)
            conn.client.token()  # before any intent: a run without a token records nothing
        runner = engine.Runner(
            conn.client, session, folded, options, run_id, gateway=conn.gateway_id,
            guard=session.check_lock, rules=pace.rules_for(plan.flows, options.max_unfinished, options.halt_on_failure),
            parameters=_parameters(plan), reruns=reruns,
        )  # fmt: skip
        progress = terminal.Progress(todo, sys.stderr.isatty() and not req.quiet)
        runner.on_settle = progress.add
        outcomes, interrupted, seconds = _send(runner, entries, progress)
    stopped = runner.fatal if runner.fatal is not None and not interrupted else None
    result = _result(req, plan, backend.name, entries, outcomes, runner, stopped)
    logger.info(
        "apply finished",
        seconds=round(seconds, 3),
        fsyncs=session.fsyncs,
        rate=runner.rate["learned"],  # requests/s learned from 429s; None: never throttled
        throttled=runner.rate["throttled"],
        **result.summary,
    )
    return _report(req, emit, result, stopped, outcomes, interrupted)


def _send(
    runner: engine.Runner, entries: list[Entry], progress: terminal.Progress
) -> tuple[dict[str, Outcome], bool, float]:
    """Run the engine under the progress bar and the Ctrl-C handler: (outcomes, whether it
    was interrupted, seconds)."""
    interrupts = _Interrupts(runner.stop, progress)
    started = time.monotonic()
    with interrupts.installed():
        try:
            outcomes = runner.run(entries)
        finally:
            progress.close()
    return outcomes, interrupts.seen, time.monotonic() - started


def _entries(req: ApplyRequest) -> tuple[Plan, list[Entry]]:
    """The plan and its selected entries (a saved plan's only, when it is unchanged)."""
    from planrunner import checking
    from planrunner.commands.context import select

    if req.sim and req.gateway:
        raise UsageError("--gateway cannot be combined with --sim (the simulator is the gateway)")
    raw = req.saved.plan_bytes() if req.saved is not None else None  # exit 2 when stale
    plan, entries = checking.load_entries(req.plan_path, req.now, req.max_triggers, raw=raw)
    if req.saved is not None:
        req.saved.check_target(plan)
    entries = select(plan, entries, req.selection)
    if req.saved is not None:
        entries = req.saved.narrow(entries)
    return plan, entries


def _todo(entries: list[Entry], folded: ledger.Folded, logger: Any) -> int:
    """How many entries are not done (nor cancelled); logs what the fold left out."""
    if folded.ignored:
        logger.info(
            "ignored ledger records of the other kind of run",
            ignored=folded.ignored,
            why="simulator records never count for a real run, nor real ones for --sim",
        )
    settled = sum(1 for e in entries if folded.status(e.key) in (ledger.DONE, ledger.CANCELLED))
    if settled == len(entries):
        logger.info("nothing to do: every entry is done", entries=len(entries))
    return len(entries) - settled


def _parameters(plan: Plan) -> Callable[[Entry], Mapping[str, str] | None] | None:
    """An entry's parameters, filled (its flow's ``parameters``), or None when no flow has any."""
    from planrunner.plan import entry_parameters

    flows = {f.name: f for f in plan.flows if f.parameters}
    if not flows:
        return None
    zone = plan.target.server_zone
    return lambda e: entry_parameters(flows[e.flow], e, zone) if e.flow in flows else None


def _say_future(entries: list[Entry], folded: ledger.Folded, now: int, logger: Any) -> None:
    """Say, before sending, how many entries to send lie after ``now`` (the service holds
    each instance until its time); the report says it again (report.columns.future_note)."""
    from planrunner.report.columns import future_note

    ahead = future_note([e for e in entries if not folded.is_done(e.key)], now)
    if ahead:
        logger.info(ahead)


def _confirmed(
    req: ApplyRequest, plan: Plan, where: str, name: str, entries: list[Entry], folded: ledger.Folded
) -> bool:
    """Show what will be sent, per flow, then ask (as terraform apply does); no terminal to
    ask on is a usage error."""
    from planrunner import report

    if not sys.stdin.isatty():
        raise UsageError("refusing to apply without --yes: stdin is not a terminal to confirm on")
    outcomes = report.plan_statuses(folded)
    preview = report.PlanResult(plan, name, req.now, entries, outcomes, selection=req.selection)
    sys.stderr.write(report.render_text(preview, colour=terminal.use_colour(sys.stderr)) + "\n\n")
    counts: dict[str, int] = {}
    for e in entries:
        st = folded.status(e.key)
        counts[st] = counts.get(st, 0) + 1
    target = plan.target
    return terminal.confirm(
        f"Apply {req.plan_path} to {where} as user {target.user_id} in org {target.org_id}: "
        f"{counts.get(ledger.PENDING, 0)} to trigger, {counts.get(ledger.FAILED, 0)} to retry, "
        f"{counts.get(ledger.UNKNOWN, 0)} to reconcile. Proceed? [y/N] "
    )


def _declined(req: ApplyRequest, emit: Emit | None) -> None:
    sys.stderr.write("Apply cancelled; nothing was sent.\n")
    if req.fmt == "json":
        from planrunner.commands.options import error_json

        doc = error_json("the confirmation was declined; nothing was sent", EXIT_FAILED)
        if emit is not None:
            emit(doc, {})
        else:
            sys.stdout.write(doc + "\n")


def _result(
    req: ApplyRequest,
    plan: Plan,
    name: str,
    entries: list[Entry],
    outcomes: dict[str, Outcome],
    runner: engine.Runner,
    stopped: PlanrunnerError | None,
) -> PlanResult:
    from planrunner import report

    error = str(stopped) if stopped is not None else None
    return report.PlanResult(
        plan,
        name,
        req.now,
        entries,
        outcomes,
        selection=req.selection,
        error=error,
        rate=runner.rate,
    )


def _report(
    req: ApplyRequest,
    emit: Emit | None,
    result: PlanResult,
    stopped: PlanrunnerError | None,
    outcomes: dict[str, Outcome],
    interrupted: bool,
) -> int:
    """The report (stdout, or ``emit``), then the error that stopped the run, or the exit code."""
    from planrunner import report

    style = report.Style(verb="Apply", quiet=req.quiet, colour=terminal.use_colour(sys.stdout))
    text = report.RENDERERS[req.fmt](result, style)
    if emit is not None:
        emit(text, result.summary)
    else:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    if stopped is not None:
        from planrunner.commands.options import reported_in_json

        raise reported_in_json(stopped) if req.fmt == "json" else stopped
    again = req.again or shlex.join(["planrunner", "apply", req.plan_path])
    _next_step(result.summary, outcomes, interrupted, again)
    return exit_code(outcomes, interrupted)


def _next_step(
    summary: dict[str, int], outcomes: dict[str, Outcome], interrupted: bool, again: str
) -> None:
    """Closing lines saying how the run ended and what to do next, when it needs them."""
    if interrupted:
        sys.stderr.write(
            f"planrunner: the run was interrupted; everything sent is recorded. "
            f"Run the same command again to continue: {again}\n"
        )
        return
    if summary.get(Status.UNKNOWN):
        sys.stderr.write(
            f"planrunner: {summary[Status.UNKNOWN]} entries have an unknown outcome (the lookup "
            "failed); apply again to look them up, or add --retry-unknown to send them anyway.\n"
        )
    held = sum(1 for o in outcomes.values() if held_back(o))
    halted = sum(1 for o in outcomes.values() if (o.error or "").startswith(pace.HALTED))
    if held:
        sys.stderr.write(
            f"planrunner: {held} entries were held back: their flows have as many unfinished "
            "instances as --max-unfinished (maxUnfinished) allows. Apply again later to send "
            f"more (a scheduled job works through a backfill this way), or add --wait: {again}\n"
        )
    if halted:
        sys.stderr.write(
            f"planrunner: {halted} entries were not sent: their flow halted on a failed instance "
            "(--halt-on-failure, haltOnFailure); see planrunner status, fix the cause, then apply "
            "again without halting on failure.\n"
        )
