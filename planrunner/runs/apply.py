"""The exactly-once engine: entries in, one outcome per key out, every step in the ledger.

Discipline: an ``intent`` is on disk (fsync) before its request leaves; every answer is
recorded; an attempt without a recorded answer is *unknown* and is looked up on the
service (``reconciled``) before anything is sent for its key again; a result is reported
only once the records it rests on are durable (:class:`FlowWork` enforces it).

What to do with each answer and each lookup result is decided by two pure functions,
:func:`on_answer` and :func:`after_lookup`, which are the answer table of docs/apply.md as
code. The engine knows nothing of terminals, prompts or signals: it reports each settled
entry through a callback, and stops when :attr:`Runner.stop` is set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from planrunner import enos, ledger, log, runs
from planrunner.errors import LedgerError, PlanrunnerError, ServiceError
from planrunner.outcome import Entry, Outcome, Status
from planrunner.rate import RateLimiter, backoff
from planrunner.runs import AttemptIds, WorkerPool, pace
from planrunner.runs.decide import (
    FOUND_WHY,
    Act,
    Cause,
    Then,
    after_lookup,
    on_answer,
)
from planrunner.runs.earlier import Earlier
from planrunner.runs.flow import FlowWork, Unresolved
from planrunner.runs.rerun import Reruns
from planrunner.runs.settings import (
    GATEWAY_DOWN_AFTER,
    IN_FLIGHT_MARGIN,
    MAX_UNRESOLVED,
    SLOW_WRITES,
    UNVERIFIABLE_AFTER,
    WAIT_TICK,
    Options,
)

# Options and its defaults live in runs.settings; they are still importable from here.
__all__ = ["GATEWAY_DOWN_AFTER", "IN_FLIGHT_MARGIN", "MAX_UNRESOLVED", "NOT_SENT", "UNVERIFIABLE_AFTER"]
__all__ += ["Act", "Cause", "InternalError", "Options", "Runner", "Then", "after_lookup", "on_answer"]

InternalError = runs.InternalError  # what a bug in a worker halts the run with (exit 70)
NOT_SENT = "interrupted before sending; nothing was sent"
AFTER_BUG = "stopped sending: everything sent is recorded or left unknown for the next apply to look up"


class Runner:
    """Sends the entries of one apply run; :meth:`run` returns an outcome per key.

    ``guard`` is called just before each request leaves, after its intent is durable: it
    raises when the run can no longer prove it holds the ledger's locks (PostgreSQL), so an
    apply that lost them sends nothing more.
    """

    def __init__(
        self,
        client: enos.Client,
        writer: ledger.Sink,
        folded: ledger.Folded,
        options: Options,
        run_id: str,
        *,
        gateway: str,
        on_settle: Callable[[str], None] | None = None,
        guard: Callable[[], None] | None = None,
        rules: Mapping[int, pace.Rules] | None = None,
        look_up_many: pace.LookUpMany = pace.look_up_many,
        parameters: Callable[[Entry], Mapping[str, str] | None] | None = None,
        reruns: Mapping[int, int] | None = None,
    ) -> None:
        self.client = client
        self.writer = writer
        self.folded = folded
        self.options = options
        self.run_id = run_id
        self.gateway = gateway
        self.stop = threading.Event()
        self.fatal: PlanrunnerError | None = None
        self.outcomes: dict[str, Outcome] = {}
        self.on_settle = on_settle  # told each settled entry's status (a progress bar)
        self._guard = guard
        self._parameters = parameters  # an entry's filled parameters: sent by Update And Trigger
        # Per flowId (the command merges the plan's keys); without, the options hold for all.
        self._rules = rules
        # The run's one limiter paces every signed call of the client (lookups too).
        self._limiter = client.limiter = RateLimiter(options.rate)
        self._attempts = AttemptIds(run_id)
        self._log = log.get("apply").bind(run=run_id)
        self._gates = pace.Gates(
            client,
            self.rules,
            wait=options.wait,
            interval=options.interval,
            stop=self.stop,
            stopped=self._gateway_stopped,
            log=self._log,
            many=look_up_many,
        )
        self._earlier = Earlier(
            client, folded, options, gateway, self._attempts, self.stop, self._log, look_up_many
        )
        # rerunFailed per flowId (the command merges the plan's keys); without, the option's.
        limits = reruns if reruns is not None else {}
        every = options.rerun_failed or 0
        self._reruns = Reruns(
            client, folded, lambda fid: limits.get(fid, every), look_up_many, self.stop,
            parameters=parameters, wait=options.wait, interval=options.interval,
        )  # fmt: skip
        self._lock = threading.Lock()
        self._down = 0  # consecutive timeouts or unreachable answers
        self._unverified = 0  # consecutive outcomes of this run's sends no lookup could verify
        self._unresolved = 0  # unknown outcomes of this run waiting to be looked up
        self._slow = 0  # consecutive intents written slower than send_slack

    # -- scheduling -----------------------------------------------------------------------

    def run(self, entries: Sequence[Entry]) -> dict[str, Outcome]:
        """Send per flowId in ascending time, one request in flight per flowId.

        Workers take one entry at a time from any flowId that has none in flight, so every
        worker stays busy even when flows outnumber workers by a little. No exception ends a
        worker with a traceback: a service or ledger failure stops the run with its own exit
        code, anything else (a bug) with :class:`InternalError`.
        """
        groups: dict[int, list[Entry]] = {}
        for e in entries:
            groups.setdefault(e.flow_id, []).append(e)
        # Longest queues first: they bound the run's length.
        works = [FlowWork(g) for g in sorted(groups.values(), key=len, reverse=True)]
        pool: WorkerPool[FlowWork] = WorkerPool(
            self.options.concurrency,
            name="apply",
            stop=self.stop,
            clean=self._clean,
            after_bug=AFTER_BUG,
            on_failure=self._halt,
        )
        pool.run(works, self._work, self._finish)  # flows left when it stopped are finished too
        for e in entries:
            if e.key in self.outcomes:
                continue
            # Not reached this run (stopped, or waiting for an earlier request): an entry the
            # ledger holds as unknown is reported unknown, as `plan` shows it, never pending.
            if self.folded.status(e.key) == ledger.UNKNOWN:
                self.outcomes[e.key] = Outcome(
                    Status.UNKNOWN, None, "an earlier request's outcome is unknown; not looked up this run"
                )
            elif self.client.stopped is not None and not self.folded.is_done(e.key):
                self.outcomes[e.key] = Outcome(Status.PENDING, None, self._not_sent())
        self.client.close()
        return self.outcomes

    def rules(self, flow_id: int) -> pace.Rules:
        """How ``flow_id`` is paced: the command's merged rules, else the options'."""
        if self._rules is not None:
            return self._rules.get(flow_id, pace.NO_RULES)
        return pace.Rules(self.options.max_unfinished, self.options.halt_on_failure)

    def _not_sent(self) -> str:
        """Why an entry was not sent when the run stopped before it."""
        why = self.client.stopped
        return NOT_SENT if why is None else f"not sent: {why}"

    def _gateway_stopped(self) -> bool:
        """Whether the client stopped (quota spent, gateway refusing us); stops the run."""
        why = self.client.stopped
        if why is None:
            return False
        if not self.stop.is_set():
            self._halt(ServiceError(why))
        return True

    @property
    def rate(self) -> dict[str, float | int | None]:
        """The send rate learned from the gateway's 429s (None: never throttled) and their count."""
        return {"learned": self._limiter.learned, "throttled": self._limiter.throttles}

    def _clean(self, text: str) -> str:
        """A bug's text made safe to show (the client is asked only when a bug happens)."""
        return self.client.clean(text)

    def _work(self, work: FlowWork) -> bool:
        """One piece of a flow's work; whether the flow has more."""
        self._step(work)
        return work.more()

    def _halt(self, error: PlanrunnerError) -> None:
        with self._lock:
            self.fatal = self.fatal or error
        self.stop.set()

    def _settle(self, e: Entry, outcome: Outcome) -> None:
        self.outcomes[e.key] = outcome
        if self.on_settle is not None:
            self.on_settle(outcome.status)

    def _finish(self, work: FlowWork) -> None:
        """Make the flow's last results durable, then report them."""
        for item in work.waiting:
            # Stopped while the request may still act: the next run looks it up.
            why = f"{item.answer.msg}; not looked up: the run stopped"
            work.report(item.entry, Outcome(Status.UNKNOWN, None, why))
        with self._lock:
            self._unresolved -= len(work.waiting)
        work.waiting.clear()
        work.write(self.writer, self._settle)  # a failure stops the pool (WorkerPool.guarded)

    # -- one flowId -----------------------------------------------------------------------------

    def _step(self, work: FlowWork) -> None:
        """Settle entries already done, then do the flow's next piece of work.

        That is, in this order: look up an unknown outcome whose request is surely over;
        or, once per run, look up the earlier runs' unknown and failed keys of the flow (one
        batch); or send the flow's next entry once its gate opens (:meth:`_gate`: Get Flow
        before the first, the learned spacing, pacing and halting), unless
        :data:`MAX_UNRESOLVED` outcomes already wait for their lookup; or wait a little.
        """
        if self._gateway_stopped():
            return
        if work.waiting and (work.waiting[0].due <= time.monotonic() or self.stop.is_set()):
            self._resolve(work.waiting.pop(0), work)
            return
        if not work.begun:
            if not self.stop.is_set():
                self._earlier.begin(work, self.rules(work.flow_id).active)
                self._reruns.begin(work)  # the done keys whose instance failed
            return
        while work.next < len(work.entries):
            e = work.entries[work.next]
            status = self.folded.status(e.key)
            again = self._reruns.due(e)  # a rerun round of a done entry (done before or now)
            if status in (ledger.DONE, ledger.CANCELLED) or again is not None:
                if not isinstance(again, ledger.Send):  # none, or why it cannot be rerun
                    work.next += 1
                    iid = self.folded.done.get(e.key)
                    self._settle(e, Outcome(Status.FAILED, iid, again) if again else Outcome(Status.SKIPPED, iid))
                    continue
                work.sends[e.key] = again
            elif status in (ledger.UNKNOWN, ledger.FAILED) and e.key not in work.resend:
                work.next += 1  # settled by the look at the earlier runs' attempts (Earlier)
                continue
            if work.refused is not None or work.held is not None:
                work.next += 1
                why = work.held or f"flow refused: {work.refused}"
                work.report(e, Outcome(Status.PENDING, None, why))
                continue
            if self.stop.is_set() or not self._may_send():
                break
            gate = self._gates.gate(work)
            if gate is pace.Gate.BLOCKED:
                continue
            if gate is pace.Gate.WAIT:
                break
            work.next += 1
            self._send(e, work)
            return
        if work.watched and work.next >= len(work.entries) and not self.stop.is_set():
            self._reruns.poll(work)  # --wait: the instances that may still fail, again
        if not work.more() or self.stop.is_set():
            return
        # Nothing to do now: wait a little (for a lookup to fall due, for room to send, or
        # for the flow's wait to end), then let the worker look at other flows.
        now = time.monotonic()
        wait = WAIT_TICK
        if work.waiting:
            wait = min(wait, work.waiting[0].due - now)
        if work.not_before > now:
            wait = min(wait, work.not_before - now)
        if wait > 0:
            self.stop.wait(wait)

    def _may_send(self) -> bool:
        """Whether fewer than ``max_unresolved`` unknown outcomes wait for their lookup."""
        with self._lock:
            return self._unresolved < self.options.max_unresolved

    def _defer(self, work: FlowWork, item: Unresolved) -> None:
        """Look ``item`` up once its request is surely over; meanwhile the flow goes on."""
        with self._lock:
            self._unresolved += 1
        work.waiting.append(item)
        work.waiting.sort(key=lambda w: w.due)
        self._log.info(
            "outcome unknown; the request may still be in flight: looking it up once it is over",
            key=item.entry.key,
            reason=item.answer.msg,
            seconds=round(max(0.0, item.due - time.monotonic()), 1),
        )

    def _resolve(self, item: Unresolved, work: FlowWork) -> None:
        """Look up an unknown outcome of this run (its request is over) and act on it."""
        with self._lock:
            self._unresolved -= 1
        e, answer = item.entry, item.answer
        if self.stop.is_set():
            # Stopped while the request may still act: the next run looks it up.
            work.report(e, Outcome(Status.UNKNOWN, None, f"{answer.msg}; not looked up: the run stopped"))
            return
        s = self._ref(e, work)
        look = self.client.find_instance(s.flow_id, s.sends_at)
        if self._follow(e, work, item.attempt, answer, Cause.UNKNOWN, look, item.resends):
            self._send(e, work, item.resends + 1)

    def _verified(self, ok: bool, e: Entry, why: str = "") -> None:
        """Count outcomes of this run's sends that no lookup could verify; stop at the limit."""
        if not ok and self._gateway_stopped():
            return  # the lookup was not sent: the client's reason stops the run
        with self._lock:
            self._unverified = 0 if ok else self._unverified + 1
            count = self._unverified
        if ok:
            return
        self._log.warning(
            "outcome unknown and the lookup failed; not sending it again", key=e.key, reason=why
        )
        if count >= self.options.unverifiable_after:
            self._halt(
                ServiceError(
                    f"stopped sending: {count} outcomes in a row could not be verified (the "
                    f"lookups failed: {why}); those entries stay unknown. Check that "
                    f"{self.client.where} answers lookups (planrunner doctor), then apply again: "
                    "unknown entries are looked up before anything is sent"
                )
            )

    def _ref(self, e: Entry, work: FlowWork) -> ledger.Send:
        """What an attempt for ``e`` sends and records: its round and sent time (a rerun, or
        an earlier round sent again: ``work.sends``), and its filled parameters."""
        s = work.sends.get(e.key)
        if s is not None:
            return s
        return ledger.Send(e, 0, None, self._parameters(e) if self._parameters is not None else None)

    def _send(self, e: Entry, work: FlowWork, resends: int = 0) -> None:
        gw, s = self.gateway, self._ref(e, work)
        cause: Cause | None = None
        first_62102 = False  # this entry met the flow's first 62102
        while True:
            sent = self._trigger_with_retries(e, work)
            if sent is None:  # stopped before a request left, or while waiting to retry one
                work.report(e, Outcome(Status.PENDING, None, self._not_sent()))
                return
            attempt, answer, answered = sent
            act = on_answer(answer.kind)
            if act is Act.DONE:
                work.record(
                    ledger.triggered(s, attempt, gateway=gw, flow_instance_id=answer.flow_instance_id)
                )
                work.report(e, Outcome(Status.RERUN if s.round else Status.TRIGGERED, answer.flow_instance_id))
                self._reruns.made(work, e, s)
                self._verified(True, e)
                if first_62102 and cause is Cause.DUPLICATE:
                    self._gates.learn_spacing(work, self.options.duplicate_wait)
                return
            if act is Act.NOT_SENT:
                # The client stopped before this request left (quota spent, gateway refusing
                # us): nothing was sent; the run stops with the client's reason.
                why = self._not_sent()
                work.record(ledger.aborted(s, attempt, gateway=gw, reason=why))
                work.report(e, Outcome(Status.PENDING, None, why))
                self._gateway_stopped()
                return
            if act in (Act.RETRY, Act.REFUSE_FLOW, Act.STOP):
                # RETRY here means the retries are spent; each was a definite "not done".
                work.record(ledger.failed(s, attempt, gateway=gw, code=answer.code, msg=answer.msg))
                work.report(e, Outcome(Status.FAILED, None, enos.describe(answer)))
                if act is Act.REFUSE_FLOW:
                    work.refused = enos.describe(answer)
                if act is Act.STOP:
                    self._halt(ServiceError(f"stopping: {answer.msg}{enos.code_text(answer)}"))
                return
            if act is Act.LOOK_UP:
                # The service may still act on it (a gateway's 504 does not stop its backend):
                # nothing is looked up, let alone sent, until read timeout plus margin have
                # passed since the answer came (later than when the request left).
                work.record(ledger.unknown(s, attempt, gateway=gw, reason=answer.msg))
                if self._found_at_once(e, work, attempt, answer, resends):
                    return
                self._defer(work, Unresolved(answered + self.options.in_flight, e, attempt, answer, resends))
                return
            cause = Cause.DUPLICATE if cause is not Cause.DUPLICATE else Cause.DUPLICATE_AGAIN
            if not work.met_62102:
                work.met_62102 = first_62102 = True
            look = self.client.find_instance(s.flow_id, s.sends_at)
            if not self._follow(e, work, attempt, answer, cause, look, resends):
                return

    def _found_at_once(
        self, e: Entry, work: FlowWork, attempt: str, answer: enos.Answer, resends: int
    ) -> bool:
        """True when the instance of an unknown outcome is already there (reconciled now).

        Finding it settles the entry at any time; only "not found" needs the request to be
        over before it means anything, so only then does the entry wait (and count against
        ``max_unresolved``): a gateway that answers 504 after its backend created the
        instance costs one lookup, not a wait. Skipped while lookups are failing (they would
        fail here too, and cost their retries)."""
        with self._lock:
            if self._unverified:
                return False
        s = self._ref(e, work)
        look = self.client.find_instance(s.flow_id, s.sends_at)
        if not look.found:
            return False
        self._follow(e, work, attempt, answer, Cause.UNKNOWN, look, resends)
        return True

    def _follow(
        self,
        e: Entry,
        work: FlowWork,
        attempt: str,
        answer: enos.Answer,
        cause: Cause,
        look: enos.Lookup,
        resends: int,
    ) -> bool:
        """Act on the lookup after an unknown outcome or a 62102; True: send the entry again."""
        gw, s = self.gateway, self._ref(e, work)
        then = after_lookup(
            cause,
            look.found,
            may_resend=resends < self.options.max_resends and not self.stop.is_set(),
            retry_unknown=self.options.retry_unknown,
        )
        if then is Then.KEEP_UNKNOWN:
            if cause is not Cause.UNKNOWN:
                work.record(ledger.unknown(s, attempt, gateway=gw, reason=answer.msg))
            work.report(e, Outcome(Status.UNKNOWN, None, f"{answer.msg}; lookup failed: {look.reason}"))
            self._verified(False, e, look.reason)
            return False
        self._verified(True, e)
        if then is Then.RECONCILED:
            work.record(
                ledger.reconciled(s, attempt, gateway=gw, found=True, flow_instance_id=look.flow_instance_id)
            )
            work.report(e, Outcome(Status.RECONCILED, look.flow_instance_id, FOUND_WHY[cause]))
            self._reruns.made(work, e, s)
            return False
        if look.found is False and self.stop.is_set():
            # Over and not there: nothing was created, and nothing more is sent this run.
            work.record(ledger.reconciled(s, attempt, gateway=gw, found=False, flow_instance_id=None))
            work.report(e, Outcome(Status.PENDING, None, f"{answer.msg}; not created; the run stopped"))
            return False
        if then is Then.FAIL:
            # The lookup came after the request was over (or after a definite 62102):
            # "absent" is definite, so a later run may send it again.
            why = f"{answer.msg}; not found on the service, not sent again this run"
            work.record(ledger.failed(s, attempt, gateway=gw, code=answer.code, msg=why))
            work.report(e, Outcome(Status.FAILED, None, enos.describe(answer, why)))
            if cause is Cause.DUPLICATE_AGAIN:
                # Two 62102s in a row that are no duplicate: the service says the flow or its
                # task does not exist ("check if the workflow or task exist"), or refuses the
                # request ("Incorrect parameter"); not the one-minute rule. The rest of the
                # flow would get it too: it is not tried entry by entry.
                work.refused = f"62102 twice and no instance: the flow or its task may not exist ({enos.describe(answer)})"
            return False
        work.record(ledger.reconciled(s, attempt, gateway=gw, found=False, flow_instance_id=None))
        if then is Then.WAIT_RESEND:
            wait = work.last_sent + self.options.duplicate_wait - time.monotonic()
            self._log.info(
                "62102 and no instance found; waiting out the one-minute rule, then sending once more",
                key=e.key,
                seconds=round(max(wait, 0.0), 1),
            )
            if wait > 0 and self.stop.wait(min(wait, self.options.duplicate_wait)):
                work.report(e, Outcome(Status.PENDING, None, self._not_sent()))
                return False
            return True
        self._log.info("not found after an unknown outcome; sending again", key=e.key, reason=answer.msg)
        return True

    def _intent(self, e: Entry, work: FlowWork) -> str | None:
        """Make a new attempt's intent durable just before its request leaves; its id.

        None when the intent took longer than ``send_slack`` to write: the request would
        leave later than its record says, so it is closed unsent (and a fresh one is made).
        """
        attempt = self._attempts.next()
        made = time.time()
        work.write(
            self.writer,
            self._settle,
            ledger.intent(self._ref(e, work), attempt, gateway=self.gateway, flow=e.flow, run=self.run_id),
        )
        took = time.time() - made
        with self._lock:
            self._slow = self._slow + 1 if took > self.options.send_slack else 0
            slow = self._slow
        if not slow:
            return attempt
        why = f"not sent: the ledger took {took:.1f} s to write the intent"
        work.record(ledger.aborted(self._ref(e, work), attempt, gateway=self.gateway, reason=why))
        self._log.warning("the ledger is slow; intent closed unsent", key=e.key, seconds=round(took, 1))
        if slow >= SLOW_WRITES:
            raise LedgerError(
                f"the ledger took over {self.options.send_slack:g} s to write each of {slow} "
                "intents in a row; stopped sending (apply again once it is responsive)"
            )
        return None

    def _trigger_with_retries(self, e: Entry, work: FlowWork) -> tuple[str, enos.Answer, float] | None:
        """(attempt, the answer to the trigger, when it came), retried while retryable.

        Each request gets its own intent, made durable once its rate-limiter slot is granted
        and just before it leaves, so an intent's ``at`` is when its request left. A try the
        service did not act on (429, 503, refused) is closed ``aborted`` before the next.
        None when the run stopped before a request left, or while waiting to retry one the
        service did not act on: either way nothing was created.
        """
        gw, s = self.gateway, self._ref(e, work)
        tries = 0
        while True:
            if self._limiter.wait(self.stop) is None:  # the client's next call takes this slot
                return None
            attempt = self._intent(e, work)
            if attempt is None:
                continue
            try:
                if self._guard is not None:
                    self._guard()  # the locks are still ours, or nothing leaves
                work.last_sent = time.monotonic()
                if s.parameters is None:
                    answer = self.client.trigger(s.flow_id, s.sends_at)
                else:
                    answer = self.client.update_and_trigger(s.flow_id, s.sends_at, s.parameters)
            except PlanrunnerError as err:
                # A local failure before the request left (lost locks, token, header, peer
                # check): nothing was sent, so the intent is closed as aborted, never unknown.
                why = f"not sent: {err}"
                work.record(ledger.aborted(s, attempt, gateway=gw, reason=why))
                work.report(e, Outcome(Status.PENDING, None, why))
                raise
            answered = time.monotonic()
            self._log.debug("trigger", key=e.key, kind=answer.kind.value, code=answer.code)
            if answer.kind is enos.Kind.STOPPED:
                # Never sent: the gateway's quota is used up, or it refuses this client.
                work.record(ledger.aborted(s, attempt, gateway=gw, reason=f"not sent: {answer.msg}"))
                self._halt(ServiceError(f"stopped sending: {answer.msg}"))
                return None
            self._watch_gateway(answer)
            if answer.kind is not enos.Kind.RETRYABLE:
                return attempt, answer, answered
            if answer.adapting or answer.http_status == 429:
                # A 429 never spends the entry's retries, so it never makes an entry failed:
                # the client halved the shared rate (and holds for Retry-After) while above
                # its floor; at the floor its slots pace the retries, and a gateway that
                # answers only 429 for a while stops the client (quota spent): the entry is
                # then left pending, unsent.
                work.record(ledger.aborted(s, attempt, gateway=gw, reason=_not_acted_on(answer)))
                continue
            if tries >= self.options.max_retries:
                return attempt, answer, answered
            work.record(ledger.aborted(s, attempt, gateway=gw, reason=_not_acted_on(answer)))
            delay = backoff(tries, self.options.backoff_base, self.options.backoff_cap, answer.retry_after)
            tries += 1
            if self.stop.wait(delay):
                return None

    def _watch_gateway(self, answer: enos.Answer) -> None:
        """The circuit breaker: consecutive timeouts or unreachable answers stop the run.

        Every answer without an HTTP status that is not a success counts: a read timeout,
        a request that outlived the client's total deadline (a gateway drip-feeding its
        answer), a dropped or refused connection.
        """
        unreachable = answer.http_status is None and answer.kind in (
            enos.Kind.UNKNOWN,
            enos.Kind.RETRYABLE,
        )
        with self._lock:
            self._down = self._down + 1 if unreachable else 0
            down = self._down
        if down >= self.options.gateway_down_after:
            self._halt(
                ServiceError(
                    f"the gateway {self.client.where} looks down ({down} timeouts or refused "
                    "connections in a row); stopped sending. Apply again when it is back: "
                    "unknown entries are looked up first"
                )
            )


def _not_acted_on(answer: enos.Answer) -> str:
    """The ``aborted`` reason of a try the service did not act on (sent again)."""
    return f"not acted on ({enos.describe(answer)}); sending again"

