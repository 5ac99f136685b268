"""``planrunner cancel``: stop the plan's instances that have not ended (the undo of a backfill)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from dataclasses import dataclass

from planrunner import terminal
from planrunner.commands import options
from planrunner.errors import EXIT_FAILED, EXIT_OK, UsageError
from planrunner.report import cancel as render
from planrunner.runs import cancel
from planrunner.select import Selection

HELP = "cancel the plan's instances that are still queued or running"
DESCRIPTION = (
    "Look up the instance of every entry the ledger says was triggered, and cancel (Cancel "
    "Flow Instance) those not ended yet (INIT, WAIT, READY, RUNNING, SUSPEND), after a "
    "confirmation showing the counts per flow. Each cancelled instance is recorded in the "
    "ledger as cancelled, under the ledger's lock; running it again cancels nothing more."
)
EPILOG = options.exit_codes(
    (0, "every instance that had not ended is cancelled (or there was nothing to cancel)"),
    (1, "some cancels or lookups failed, the confirmation was declined, or a runtime error"),
    (2, "invalid plan or usage (e.g. no --yes without a terminal); nothing was sent"),
    (3, "the ledger is locked by an apply, or is unreadable or corrupt"),
    (130, "interrupted; cancels in flight were finished and recorded"),
    example="planrunner cancel plans/backfill.yaml --flow sales-daily-backfill",
)
PARENTS = ("one_plan", "selecting")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """cancel's own options."""
    options.add_yes(p)
    options.add_gateway(p)
    options.add_pace(p, "lookups and flows cancelled")
    options.add_lock_timeout(p)


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Everything ``cancel`` was asked to do."""

    plan_path: str
    ledger_path: str | None
    now: int
    yes: bool = False
    gateway: str | None = None
    concurrency: int = 4
    rate: float | None = None
    lock_timeout: float = 0.0
    max_triggers: int = 100_000
    selection: Selection = dataclasses.field(default_factory=Selection)


def main(args: argparse.Namespace) -> int:
    """Run from parsed options."""
    from planrunner.commands.context import ledger_spec, max_triggers, now, selection

    return run(
        CancelRequest(
            args.plan,
            ledger_spec(args.ledger),
            now(args.now),
            args.yes,
            args.gateway,
            args.concurrency,
            args.rate,
            args.lock_timeout,
            max_triggers(args.max_triggers),
            selection(args.flow, args.exclude, args.start, args.end),
        )
    )


def run(req: CancelRequest) -> int:
    """The whole of ``planrunner cancel``; returns the exit code."""
    from planrunner import checking, ledger
    from planrunner.commands.context import select
    from planrunner.runs import connect, new_run_id

    plan, entries = checking.load_entries(req.plan_path, req.now, req.max_triggers)
    entries = select(plan, entries, req.selection)
    path = req.ledger_path or ledger.default_path(req.plan_path)
    conn = connect(plan, req.gateway)
    backend = ledger.open_ledger(path)
    run_id = new_run_id()
    flows = sorted({(e.org_id, e.flow_id) for e in entries})
    with contextlib.ExitStack() as stack:
        stack.callback(conn.client.close)
        # The session cuts a torn tail first: our records must not follow a torn line.
        session = stack.enter_context(backend.session(run_id, flows, req.lock_timeout))
        folded = session.fold({e.key for e in entries}, sim=False)
        if not any(folded.status(e.key) in (ledger.DONE, ledger.UNKNOWN) for e in entries):
            sys.stderr.write(
                f"Nothing to cancel: no selected entry of {req.plan_path} has a running instance "
                f"in {backend.name} ({render.ledger_counts(entries, folded)}).\n"
            )
            return EXIT_OK
        conn.client.token()
        zone = conn.client.server_zone()
        canceller = cancel.Canceller(conn.client, session, zone, run_id, conn.gateway_id, req.rate)
        found = cancel.find(
            conn.client,
            entries,
            folded,
            concurrency=req.concurrency,
            tracker=terminal.Lookups(sys.stderr, sys.stderr.isatty()),
        )
        for t in found.already:  # nothing to send: the ledger catches up with the service
            canceller.record(t)
            t.outcome = cancel.ALREADY
        if not found.to_cancel:
            n = len(found.already)
            sys.stderr.write(
                "Nothing to cancel: every looked-up instance of the selection has ended"
                f"{'' if not n else f' ({n} already cancelled, now recorded)'}.\n"
            )
            sys.stderr.write(render.lookup_failures(found.lookup_failed))
            return found.exit_code(False)
        if not _confirmed(req, conn.where, plan.target.user_id, plan.target.org_id, found):
            return EXIT_FAILED
        interrupted = canceller.run(found.to_cancel, req.concurrency, _interrupted)
    targets = [*found.already, *found.to_cancel]
    text = render.render_text(req.plan_path, backend.name, conn.where, req.selection, targets)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    sys.stderr.write(render.lookup_failures(found.lookup_failed))
    return found.exit_code(interrupted)


def _confirmed(req: CancelRequest, where: str, user: str, org: str, found: cancel.Found) -> bool:
    """--yes, or the user said yes at the terminal (no terminal: a usage error)."""
    if req.yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError("refusing to cancel without --yes: stdin is not a terminal to confirm on")
    lines = [
        f"Cancel {len(found.to_cancel)} instances of {req.plan_path} on {where} as user "
        f"{user} in org {org}:"
    ]
    lines += [f"  {name}: {text}" for name, text in render.per_flow(found.to_cancel).items()]
    if terminal.confirm("\n".join(lines) + "\nProceed? [y/N] "):
        return True
    sys.stderr.write("Cancel declined; nothing was cancelled.\n")
    return False


def _interrupted() -> None:
    sys.stderr.write("planrunner: interrupted; finishing cancels in flight\n")
