"""``cancel``'s engine: find the instances of a plan that have not ended, cancel them per
flow (newest first) and record each cancel in the ledger (contract section 10).

The caller holds the ledger's lock and gives a writer; every cancel the service confirms
(or a lookup shows) is recorded before it is reported. A ledger or token failure stops the
cancels and is reported per instance; a bug stops them with exit 70.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo

from planrunner import enos, ledger, lookup
from planrunner.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, PlanrunnerError
from planrunner.lookup import Seen
from planrunner.outcome import Entry
from planrunner.rate import RateLimiter, backoff
from planrunner.runs import AttemptIds, WorkerPool, rerun
from planrunner.runs.watch import Tracker, look_up_all

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


@dataclass(slots=True)
class CancelTarget:
    """One instance to cancel (or to record as cancelled)."""

    entry: Entry
    seen: Seen
    open_attempts: tuple[str, ...] = ()  # an unknown entry's attempts, reconciled when found
    state: ledger.KeyState | None = None  # the key's rounds: its records name the newest one
    outcome: str = NOT_SENT
    reason: str = ""


@dataclass(slots=True)
class Found:
    """What the lookups found: to cancel, already cancelled, and lookups that failed."""

    to_cancel: list[CancelTarget] = field(default_factory=list)
    already: list[CancelTarget] = field(default_factory=list)
    lookup_failed: list[tuple[Entry, Seen]] = field(default_factory=list)

    def exit_code(self, interrupted: bool) -> int:
        """130 when interrupted; 1 when a cancel or a lookup failed; else 0."""
        if interrupted:
            return EXIT_INTERRUPTED
        bad = any(t.outcome in (FAILED, NOT_SENT) for t in self.to_cancel)
        return EXIT_FAILED if bad or self.lookup_failed else EXIT_OK


def find(
    client: enos.Client,
    entries: Sequence[Entry],
    folded: ledger.Folded,
    *,
    concurrency: int,
    tracker: Tracker | None = None,
) -> Found:
    """Look up the done entries and the unknown ones (which may have an instance too), in
    batches (:func:`runs.watch.look_up_all`)."""
    done = [(e, folded.done[e.key]) for e in entries if folded.status(e.key) == ledger.DONE]
    unknown = [e for e in entries if folded.status(e.key) == ledger.UNKNOWN]
    items = [*done, *((e, None) for e in unknown)]
    # Each entry's newest round is the one cancelled: looked up where it was sent.
    at = {e.key: rerun.newest_send(e, folded.state(e.key)).sends_at for e, _ in items}
    seen = look_up_all(client, items, concurrency=concurrency, tracker=tracker, at=at)
    candidates = [CancelTarget(e, seen[e.key], state=folded.state(e.key)) for e, _ in done]
    for e in unknown:
        s, state = seen[e.key], folded.state(e.key)
        if s.state not in (lookup.NOT_FOUND, lookup.LOOKUP_FAILED):
            candidates.append(CancelTarget(e, s, tuple(sorted(state.open_attempts)), state=state))
    return Found(
        [t for t in candidates if t.seen.cancellable],
        [t for t in candidates if t.seen.state == "CANCEL"],
        [(e, seen[e.key]) for e, _ in done if seen[e.key].state == lookup.LOOKUP_FAILED],
    )


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
        backoff_cap: float = BACKOFF_CAP,
    ) -> None:
        self.client = client
        self.writer = writer
        self.zone = zone
        self.gateway = gateway
        self.stop = threading.Event()
        # The run's one limiter: the lookups before the cancels (find) and the cancels.
        client.limiter = RateLimiter(rate)
        self._attempts = AttemptIds(run_id)
        self._backoff_cap = backoff_cap  # the longest wait between tries of one cancel

    def record(self, t: CancelTarget) -> None:
        """Make the cancel durable: reconcile an unknown entry's attempts, then ``cancelled``."""
        e, iid, gw = t.entry, t.seen.flow_instance_id or "", self.gateway
        state = t.state or ledger.KeyState()
        recs = [
            ledger.reconciled(rerun.newest_send(e, state, a), a, gateway=gw, found=True, flow_instance_id=iid)
            for a in t.open_attempts
        ]
        newest = rerun.newest_send(e, state)  # the round cancelled (its records carry it)
        recs.append(ledger.cancelled(newest, self._attempts.next(), gateway=gw, flow_instance_id=iid))
        self.writer.append(recs)

    def cancel(self, t: CancelTarget) -> None:
        """Cancel one instance; on anything but success, look again before saying what happened."""
        iid = t.seen.flow_instance_id
        if not iid:
            t.outcome, t.reason = FAILED, "no instance id to cancel"
            return
        answer: enos.Answer | None = None
        for tries in range(CANCEL_TRIES):
            if self.stop.is_set():
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
            if self.stop.wait(backoff(tries, BACKOFF_BASE, self._backoff_cap, answer.retry_after)):
                break
        if answer is None:
            return  # stopped before anything was sent: NOT_SENT
        why = f"{answer.code}: {answer.msg}" if answer.code is not None else answer.msg
        # The answer may be lost, or the instance may have ended meanwhile: ask the service.
        again = lookup.look_up(self.client, t.entry, iid, self.zone)
        if again.state == "CANCEL":
            t.outcome, t.reason = CANCELLED, "" if answer.kind is enos.Kind.UNKNOWN else why
            self.record(t)
        elif again.final:
            t.outcome, t.reason = FINISHED, f"ended {again.state} before the cancel"
        else:
            t.outcome, t.reason = FAILED, why

    def flow(self, targets: Sequence[CancelTarget]) -> bool:
        """One flow's instances, newest trigger time first, so no queued one starts meanwhile.
        A ledger or token failure stops every flow; a bug escapes (the pool makes it exit 70)."""
        for t in sorted(targets, key=lambda t: t.entry.trigger_time, reverse=True):
            if self.stop.is_set():
                break
            try:
                self.cancel(t)
            except PlanrunnerError as e:  # a ledger or token failure: stop, report what happened
                t.outcome, t.reason = FAILED, f"{type(e).__name__}: {e}"
                self.stop.set()
        return False

    def run(
        self,
        targets: Sequence[CancelTarget],
        concurrency: int,
        on_interrupt: Callable[[], None] | None = None,
    ) -> bool:
        """Cancel ``targets``, ``concurrency`` flows at a time, longest first; whether a
        Ctrl-C interrupted it (cancels in flight are finished and recorded first)."""
        groups: dict[int, list[CancelTarget]] = {}
        for t in targets:
            groups.setdefault(t.entry.flow_id, []).append(t)
        pool: WorkerPool[list[CancelTarget]] = WorkerPool(
            concurrency,
            name="cancel",
            stop=self.stop,
            clean=self.client.clean,
            after_bug="stopped cancelling: every cancel made is recorded",
        )
        pool.run(
            sorted(groups.values(), key=len, reverse=True), self.flow, on_interrupt=on_interrupt
        )
        if pool.failure is not None:
            raise pool.failure
        return pool.interrupted
