"""``planrunner cancel``: stop the plan's instances that have not ended (the undo of a backfill)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import random
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo

from planrunner import enos, instances, ledger, terminal
from planrunner.commands import options
from planrunner.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError
from planrunner.instances import Seen
from planrunner.resolve import Entry
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

CANCEL_TRIES = 4
BACKOFF_BASE = 0.2
BACKOFF_CAP = 5.0

# What happened to each instance that was to be cancelled.
CANCELLED = "cancelled"
ALREADY = "already-cancelled"  # CANCEL on the service before this run: recorded, nothing sent
FINISHED = "finished"  # ended before the cancel reached it
FAILED = "failed"
NOT_SENT = "not-sent"  # the run stopped (Ctrl-C, auth) before its cancel was sent
OUTCOME_ORDER = (CANCELLED, ALREADY, FINISHED, FAILED, NOT_SENT)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """cancel's own options."""
    options.add_yes(p)
    options.add_gateway(p)
    options.add_pace(p, "lookups and flows cancelled")
    options.add_lock_timeout(p)


@dataclass(frozen=True, slots=True)
class Request:
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
        Request(
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


@dataclass(slots=True)
class Target:
    """One instance to cancel (or to record as cancelled)."""

    entry: Entry
    seen: Seen
    open_attempts: tuple[str, ...] = ()  # an unknown entry's attempts, reconciled when found
    outcome: str = NOT_SENT
    reason: str = ""


class Canceller:
    """Cancels per flow, newest first (queued before running), and records each cancel."""

    def __init__(
        self,
        client: enos.Client,
        writer: ledger.Sink,
        zone: tzinfo,
        run_id: str,
        gateway: str,
        rate: float | None,
    ) -> None:
        from planrunner.rate import RateLimiter

        self.client = client
        self.writer = writer
        self.zone = zone
        self.run_id = run_id
        self.gateway = gateway
        self.stop = threading.Event()
        self._limiter = RateLimiter(rate)
        self._lock = threading.Lock()
        self._attempts = 0

    def _attempt(self) -> str:
        with self._lock:
            self._attempts += 1
            return f"{self.run_id}.{self._attempts}"

    def record(self, t: Target) -> None:
        """Make the cancel durable: reconcile an unknown entry's attempts, then ``cancelled``."""
        e, iid = t.entry, t.seen.flow_instance_id or ""
        recs = [
            ledger.reconciled(e, a, gateway=self.gateway, found=True, flow_instance_id=iid)
            for a in t.open_attempts
        ]
        recs.append(ledger.cancelled(e, self._attempt(), gateway=self.gateway, flow_instance_id=iid))
        self.writer.append(recs)

    def cancel(self, t: Target) -> None:
        """Cancel one instance; on anything but success, look again before saying what happened."""
        iid = t.seen.flow_instance_id
        if not iid:
            t.outcome, t.reason = FAILED, "no instance id to cancel"
            return
        answer: enos.Answer | None = None
        for tries in range(CANCEL_TRIES):
            if self._limiter.wait(self.stop) is None:
                break
            answer = self.client.cancel_instance(iid)
            if answer.kind is enos.Kind.OK:
                t.outcome = CANCELLED
                self.record(t)
                return
            if answer.kind in (enos.Kind.AUTH, enos.Kind.FATAL):
                self.stop.set()  # every other cancel would fail the same way
                break
            if answer.kind not in (enos.Kind.RETRYABLE, enos.Kind.UNKNOWN):
                break
            delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**tries))
            if answer.retry_after is not None:
                delay = max(delay, min(answer.retry_after, BACKOFF_CAP))
            if self.stop.wait(delay):
                break
        if answer is None:
            return  # stopped before anything was sent: NOT_SENT
        why = f"{answer.code}: {answer.msg}" if answer.code is not None else answer.msg
        # The answer may be lost, or the instance may have ended meanwhile: ask the service.
        again = instances.look_up(self.client, t.entry, iid, self.zone)
        if again.state == "CANCEL":
            t.outcome, t.reason = CANCELLED, "" if answer.kind is enos.Kind.UNKNOWN else why
            self.record(t)
        elif again.final:
            t.outcome, t.reason = FINISHED, f"ended {again.state} before the cancel"
        else:
            t.outcome, t.reason = FAILED, why

    def flow(self, targets: Sequence[Target]) -> None:
        """One flow's instances, newest trigger time first, so no queued one starts meanwhile."""
        for t in sorted(targets, key=lambda t: t.entry.trigger_time, reverse=True):
            if self.stop.is_set():
                return
            try:
                self.cancel(t)
            except Exception as e:  # a ledger or token failure: stop, report what happened
                t.outcome, t.reason = FAILED, f"{type(e).__name__}: {e}"
                self.stop.set()


def run(req: Request) -> int:
    """The whole of ``planrunner cancel``; returns the exit code."""
    from planrunner import checking
    from planrunner.commands.apply import new_run_id
    from planrunner.commands.context import select

    plan, entries = checking.load_entries(req.plan_path, req.now, req.max_triggers)
    entries = select(plan, entries, req.selection)
    path = req.ledger_path or ledger.default_path(req.plan_path)
    target = instances.connect(plan, req.gateway)
    client = target.client
    backend = ledger.open_ledger(path)
    run_id = new_run_id()
    flows = sorted({(e.org_id, e.flow_id) for e in entries})
    interrupted = False
    with contextlib.ExitStack() as stack:
        stack.callback(client.close)
        session = stack.enter_context(backend.session(run_id, flows, req.lock_timeout))
        folded = session.fold({e.key for e in entries}, sim=False)  # cuts a torn tail first
        done = [(e, folded.done[e.key]) for e in entries if folded.status(e.key) == ledger.DONE]
        unknown = [e for e in entries if folded.status(e.key) == ledger.UNKNOWN]
        if not done and not unknown:
            sys.stderr.write(
                f"Nothing to cancel: no selected entry of {req.plan_path} has a running instance "
                f"in {backend.name} ({_ledger_counts(entries, folded)}).\n"
            )
            return EXIT_OK
        client.token()
        zone = client.server_zone()
        seen = instances.look_up_all(
            client,
            [*done, *((e, None) for e in unknown)],
            zone,
            concurrency=req.concurrency,
            rate=req.rate,
        )
        candidates: list[Target] = []
        for e, _ in done:
            candidates.append(Target(e, seen[e.key]))
        for e in unknown:
            s = seen[e.key]
            if s.state not in (instances.NOT_FOUND, instances.LOOKUP_FAILED):
                attempts = tuple(sorted(folded.state(e.key).open_attempts))
                candidates.append(Target(e, s, attempts))
        to_cancel = [t for t in candidates if t.seen.cancellable]
        already = [t for t in candidates if t.seen.state == "CANCEL"]
        lookup_failed = [
            (e, seen[e.key]) for e, _ in done if seen[e.key].state == instances.LOOKUP_FAILED
        ]
        writer = session
        canceller = Canceller(client, writer, zone, run_id, target.gateway_id, req.rate)
        for t in already:  # nothing to send: the ledger catches up with the service
            canceller.record(t)
            t.outcome = ALREADY
        if not to_cancel:
            sys.stderr.write(
                f"Nothing to cancel: every looked-up instance of the selection has ended"
                f"{'' if not already else f' ({len(already)} already cancelled, now recorded)'}.\n"
            )
            _print_lookup_failures(lookup_failed)
            return EXIT_FAILED if lookup_failed else EXIT_OK
        per_flow = _per_flow(to_cancel)
        if not req.yes and not sys.stdin.isatty():
            raise UsageError(
                "refusing to cancel without --yes: stdin is not a terminal to confirm on"
            )
        if not req.yes:
            lines = [
                f"Cancel {len(to_cancel)} instances of {req.plan_path} on {target.where} as user "
                f"{plan.target.user_id} in org {plan.target.org_id}:"
            ]
            lines += [f"  {name}: {text}" for name, text in per_flow.items()]
            if not terminal.confirm("\n".join(lines) + "\nProceed? [y/N] "):
                sys.stderr.write("Cancel declined; nothing was cancelled.\n")
                return EXIT_FAILED
        groups: dict[int, list[Target]] = {}
        for t in to_cancel:
            groups.setdefault(t.entry.flow_id, []).append(t)
        threads = [
            threading.Thread(target=_flows_worker, args=(canceller, chunk), daemon=True)
            for chunk in _split(list(groups.values()), req.concurrency)
        ]
        for th in threads:
            th.start()
        try:
            for th in threads:
                while th.is_alive():
                    th.join(0.2)
        except KeyboardInterrupt:
            interrupted = True
            canceller.stop.set()
            sys.stderr.write("planrunner: interrupted; finishing cancels in flight\n")
            for th in threads:
                th.join()
    sys.stdout.write(_report(req, backend.name, target.where, [*already, *to_cancel]) + "\n")
    sys.stdout.flush()
    _print_lookup_failures(lookup_failed)
    if interrupted:
        return EXIT_INTERRUPTED
    bad = any(t.outcome in (FAILED, NOT_SENT) for t in to_cancel)
    return EXIT_FAILED if bad or lookup_failed else EXIT_OK


def _flows_worker(canceller: Canceller, flows: list[list[Target]]) -> None:
    for targets in flows:
        canceller.flow(targets)


def _split(groups: list[list[Target]], n: int) -> list[list[list[Target]]]:
    """Flows dealt round-robin to at most ``n`` workers, longest first."""
    groups = sorted(groups, key=len, reverse=True)
    workers: list[list[list[Target]]] = [[] for _ in range(min(n, len(groups)))]
    for i, g in enumerate(groups):
        workers[i % len(workers)].append(g)
    return workers


def _ledger_counts(entries: Sequence[Entry], folded: ledger.Folded) -> str:
    counts: dict[str, int] = {}
    for e in entries:
        s = str(folded.status(e.key))
        counts[s] = counts.get(s, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no entries"


def _per_flow(targets: Sequence[Target]) -> dict[str, str]:
    by: dict[str, list[str]] = {}
    for t in targets:
        by.setdefault(t.entry.flow, []).append(t.seen.state)
    return {
        name: f"{len(states)} to cancel ("
        + ", ".join(f"{n} {s}" for s, n in instances.counts(states).items())
        + ")"
        for name, states in by.items()
    }


def _print_lookup_failures(failed: Sequence[tuple[Entry, Seen]]) -> None:
    if failed:
        sys.stderr.write(
            f"planrunner: {len(failed)} instances could not be looked up (first: "
            f"{failed[0][0].key}: {failed[0][1].reason}); run cancel again to retry them.\n"
        )


def _report(req: Request, ledger_name: str, where: str, targets: Sequence[Target]) -> str:
    lines = [
        f"Cancel {req.plan_path}",
        f"  ledger  {ledger_name}",
        f"  gateway {where}",
        f"  flows   {req.selection.describe()}",
        "",
    ]
    by: dict[str, list[Target]] = {}
    for t in targets:
        by.setdefault(t.entry.flow, []).append(t)
    totals: dict[str, int] = {}
    for name, ts in by.items():
        counts: dict[str, int] = {}
        for t in ts:
            counts[t.outcome] = counts.get(t.outcome, 0) + 1
            totals[t.outcome] = totals.get(t.outcome, 0) + 1
        text = ", ".join(f"{counts[o]} {o}" for o in OUTCOME_ORDER if o in counts)
        lines.append(f"flow {name} (flowId {ts[0].entry.flow_id}): {text}")
        for t in sorted(ts, key=lambda t: t.entry.trigger_time):
            if t.outcome in (FAILED, FINISHED):
                lines.append(
                    f"  {'!' if t.outcome == FAILED else '='} {t.entry.local_time}  "
                    f"{t.entry.trigger_time}  {t.seen.flow_instance_id}  {t.outcome}: {t.reason}"
                )
    lines.append("")
    summary = ", ".join(f"{totals[o]} {o}" for o in OUTCOME_ORDER if o in totals)
    lines.append(f"Cancel: {len(targets)} instances ({summary}).")
    return "\n".join(lines)

