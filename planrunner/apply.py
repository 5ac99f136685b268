"""Applying a plan: scheduling, retries, reconciliation and progress, over the ledger and enos.

Exactly-once discipline: an ``intent`` is on disk (fsync) before its request leaves; every
answer is recorded; an attempt without a recorded answer is *unknown* and is looked up on
the service (``reconciled``) before anything is sent for its key again.

One attempt covers one logical send: sends that the service definitely did not act on
(62109, 429, 503, connection refused) are retried under the same durable intent, with
exponential backoff and full jitter, and ``failed`` is written once retries are spent.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from planrunner import enos, ledger, log
from planrunner.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PlanrunnerError,
    ServiceError,
    UsageError,
)
from planrunner.report import Outcome
from planrunner.resolve import Entry

TRIGGERED, SKIPPED, FAILED, UNKNOWN, PENDING = (
    "triggered",
    "skipped",
    "failed",
    "unknown",
    "pending",
)
NOT_SENT = "interrupted before sending; nothing was sent"


@dataclass(frozen=True, slots=True)
class Options:
    """How hard and how fast to send."""

    concurrency: int = 4
    rate: float | None = None
    retry_unknown: bool = False
    max_retries: int = 6
    backoff_base: float = 0.2
    backoff_cap: float = 20.0
    max_resends: int = 2  # unknown -> looked up, not found -> sent again, per key per run


class RateLimiter:
    """At most ``rate`` requests per second across all workers (evenly spaced)."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> bool:
        """Block until the next slot; False when ``stop`` was set meanwhile."""
        if not self._interval:
            return not stop.is_set()
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        return not stop.wait(max(0.0, slot - now))


class Progress:
    """A one-line progress bar on a terminal (stderr); silent elsewhere."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled and total > 0
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._last = 0.0

    def add(self, status: str) -> None:
        """Count one settled entry."""
        with self._lock:
            self.counts[status] = self.counts.get(status, 0) + 1
            if self.enabled and time.monotonic() - self._last > 0.1:
                self._draw()

    def _draw(self) -> None:
        self._last = time.monotonic()
        done = sum(self.counts.values())
        width = 30
        filled = int(width * done / self.total)
        parts = " ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        sys.stderr.write(
            f"\r[{'#' * filled}{'-' * (width - filled)}] {done}/{self.total} {parts}\x1b[K"
        )
        sys.stderr.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            with self._lock:
                self._draw()
            sys.stderr.write("\n")


_Settled = tuple[Entry, str, "str | None", "str | None"]


class _FlowWork:
    """One flowId's entries and where its worker is; held by one worker at a time."""

    __slots__ = ("entries", "next", "pending", "settled")

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.next = 0
        self.pending: list[dict[str, Any]] = []  # results not yet durable: they ride the next fsync
        self.settled: list[_Settled] = []  # outcomes to report once ``pending`` is durable

    def more(self) -> bool:
        return self.next < len(self.entries)


class Runner:
    """Sends the entries of one apply run; ``run`` returns an outcome per key."""

    def __init__(
        self,
        client: enos.Client,
        writer: ledger.Writer,
        folded: ledger.Folded,
        options: Options,
        progress: Progress,
        run_id: str,
    ) -> None:
        self.client = client
        self.writer = writer
        self.folded = folded
        self.options = options
        self.progress = progress
        self.run_id = run_id
        self.stop = threading.Event()
        self.fatal: PlanrunnerError | None = None
        self.outcomes: dict[str, Outcome] = {}
        self._limiter = RateLimiter(options.rate)
        self._attempts = 0
        self._lock = threading.Lock()
        self._log = log.get("apply").bind(run=run_id)

    # -- scheduling -----------------------------------------------------------------------

    def run(self, entries: Sequence[Entry]) -> dict[str, Outcome]:
        """Send per flowId in ascending time, one request in flight per flowId.

        Workers take one entry at a time from any flowId that has none in flight, so every
        worker stays busy even when flows outnumber workers by a little.
        """
        groups: dict[int, list[Entry]] = {}
        for e in entries:
            groups.setdefault(e.flow_id, []).append(e)
        # Longest queues first: they bound the run's length.
        queue = deque(_FlowWork(g) for g in sorted(groups.values(), key=len, reverse=True))
        queue_lock = threading.Lock()

        def worker() -> None:
            while True:
                with queue_lock:
                    if not queue or self.stop.is_set():
                        return
                    work = queue.popleft()
                try:
                    self._step(work)
                except PlanrunnerError as e:
                    self.fatal = self.fatal or e
                    self.stop.set()
                except Exception as e:  # a bug must not leave other workers sending
                    self.fatal = self.fatal or ServiceError(
                        f"internal error: {type(e).__name__}: {e}"
                    )
                    self.stop.set()
                    raise
                finally:
                    if work.more() and not self.stop.is_set():
                        with queue_lock:
                            queue.append(work)
                    else:
                        self._finish(work)

        threads = [
            threading.Thread(target=worker, name=f"apply-{i}", daemon=True)
            for i in range(min(self.options.concurrency, len(queue)))
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)  # short joins let the main thread take Ctrl-C
        for work in queue:  # flows left when the run stopped: record what they hold
            self._finish(work)
        self.client.close()
        return self.outcomes

    def _settle(
        self, e: Entry, status: str, iid: str | None = None, error: str | None = None
    ) -> None:
        self.outcomes[e.key] = Outcome(status, iid, error)
        self.progress.add(status)

    def _attempt_id(self) -> str:
        with self._lock:
            self._attempts += 1
            return f"{self.run_id}.{self._attempts}"

    def _rec(self, event: str, e: Entry, attempt: str, **extra: Any) -> dict[str, Any]:
        return ledger.record(event, e.key, e.flow_id, e.org_id, e.trigger_time, attempt, **extra)

    # -- one flowId -----------------------------------------------------------------------------

    def _step(self, work: _FlowWork) -> None:
        """Settle entries already done, then handle the flow's next entry."""
        while work.more():
            e = work.entries[work.next]
            work.next += 1
            status = self.folded.status(e.key)
            if status == ledger.DONE:
                self._settle(e, SKIPPED, self.folded.done.get(e.key))
                continue
            if self.stop.is_set():
                work.next -= 1
                return
            if status == ledger.UNKNOWN:
                state = self.folded.state(e.key)
                look = self.client.find_instance(e.flow_id, e.trigger_time)
                if look.found is not None:
                    work.pending += [
                        self._rec(
                            "reconciled",
                            e,
                            a,
                            found=look.found,
                            flowInstanceId=look.flow_instance_id,
                        )
                        for a in sorted(state.open_attempts)
                    ]
                    if look.found:
                        work.settled.append((e, SKIPPED, look.flow_instance_id, None))
                        return
                elif not self.options.retry_unknown:
                    self._log.warning(
                        "outcome still unknown; not re-sending", key=e.key, reason=look.reason
                    )
                    work.settled.append((e, UNKNOWN, None, look.reason))
                    return
                else:
                    self._log.warning(
                        "lookup failed; sending anyway (--retry-unknown)",
                        key=e.key,
                        reason=look.reason,
                    )
            self._send(e, work.pending, work.settled)
            return

    def _finish(self, work: _FlowWork) -> None:
        """Make the flow's last results durable, then report them."""
        if work.pending:
            self.writer.append(work.pending)
            work.pending = []
        for args in work.settled:
            self._settle(*args)
        work.settled = []

    def _send(
        self,
        e: Entry,
        pending: list[dict[str, Any]],
        settled: list[_Settled],
    ) -> None:
        resends = 0
        while True:
            attempt = self._attempt_id()
            # The intent, and the results still waiting for a sync, reach the disk first.
            self.writer.append(
                [*pending, self._rec("intent", e, attempt, flow=e.flow, run=self.run_id)]
            )
            pending.clear()
            for args in settled:
                self._settle(*args)
            settled.clear()
            answer = self._trigger_with_retries(e)
            if answer is None:  # stopped between the intent and the send: nothing went out
                pending.append(self._rec("failed", e, attempt, code=None, msg=NOT_SENT))
                settled.append((e, PENDING, None, NOT_SENT))
                return
            kind = answer.kind
            if kind is enos.Kind.OK:
                pending.append(
                    self._rec("triggered", e, attempt, flowInstanceId=answer.flow_instance_id)
                )
                settled.append((e, TRIGGERED, answer.flow_instance_id, None))
                return
            if kind in (enos.Kind.PERMANENT, enos.Kind.RETRYABLE, enos.Kind.AUTH, enos.Kind.FATAL):
                pending.append(self._rec("failed", e, attempt, code=answer.code, msg=answer.msg))
                settled.append((e, FAILED, None, f"{answer.code}: {answer.msg}"))
                if kind in (enos.Kind.AUTH, enos.Kind.FATAL):
                    self.fatal = self.fatal or ServiceError(
                        f"stopping: {answer.msg} (code {answer.code})"
                    )
                    self.stop.set()
                return
            if kind is enos.Kind.DUPLICATE:
                # 62102: an instance may exist for this minute already. Look before judging.
                look = self.client.find_instance(e.flow_id, e.trigger_time)
                if look.found:
                    pending.append(
                        self._rec(
                            "reconciled",
                            e,
                            attempt,
                            found=True,
                            flowInstanceId=look.flow_instance_id,
                        )
                    )
                    settled.append(
                        (e, SKIPPED, look.flow_instance_id, "already existed on the service")
                    )
                else:
                    why = (
                        answer.msg
                        if look.found is False
                        else f"{answer.msg}; lookup failed: {look.reason}"
                    )
                    pending.append(self._rec("failed", e, attempt, code=answer.code, msg=why))
                    settled.append((e, FAILED, None, f"{answer.code}: {why}"))
                return
            # Outcome unknown: record it, then look the instance up before anything else.
            pending.append(self._rec("unknown", e, attempt, reason=answer.msg))
            look = self.client.find_instance(e.flow_id, e.trigger_time)
            if look.found is None:
                settled.append((e, UNKNOWN, None, f"{answer.msg}; lookup failed: {look.reason}"))
                return
            pending.append(
                self._rec(
                    "reconciled", e, attempt, found=look.found, flowInstanceId=look.flow_instance_id
                )
            )
            if look.found:
                settled.append((e, TRIGGERED, look.flow_instance_id, None))
                return
            if resends >= self.options.max_resends or self.stop.is_set():
                settled.append(
                    (
                        e,
                        FAILED,
                        None,
                        f"{answer.msg}; not found on the service, not re-sent this run",
                    )
                )
                return
            resends += 1
            self._log.info(
                "not found after an unknown outcome; sending again", key=e.key, reason=answer.msg
            )

    def _trigger_with_retries(self, e: Entry) -> enos.Answer | None:
        """The answer to the trigger, retried while retryable; None if stopped before sending."""
        tries = 0
        answer: enos.Answer | None = None
        while True:
            if not self._limiter.wait(self.stop):
                return answer
            answer = self.client.trigger(e.flow_id, e.trigger_time)
            self._log.debug("trigger", key=e.key, kind=answer.kind.value, code=answer.code)
            if answer.kind is not enos.Kind.RETRYABLE or tries >= self.options.max_retries:
                return answer
            # Exponential backoff with full jitter; never sooner than the gateway asked.
            delay = random.uniform(
                0, min(self.options.backoff_cap, self.options.backoff_base * 2**tries)
            )
            if answer.retry_after is not None:
                delay = max(delay, min(answer.retry_after, self.options.backoff_cap))
            tries += 1
            if self.stop.wait(delay):
                return answer


@contextmanager
def _interrupts(runner: Runner) -> Iterator[dict[str, bool]]:
    """First Ctrl-C: stop sending, finish what is in flight. Second: exit at once."""
    seen = {"interrupted": False}
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if seen["interrupted"]:
            # The intents already on disk make this safe: the next apply reconciles them.
            os._exit(EXIT_INTERRUPTED)
        seen["interrupted"] = True
        runner.stop.set()
        sys.stderr.write(
            "\nplanrunner: interrupted; finishing requests in flight (Ctrl-C again to quit now)\n"
        )

    previous = signal.signal(signal.SIGINT, handler)
    previous_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield seen
    finally:
        # Once interrupted, the process is on its way out with 130: a late second Ctrl-C
        # must still mean "quit now", not a KeyboardInterrupt somewhere in the report.
        if not seen["interrupted"]:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)


def new_run_id() -> str:
    """A short id unique to this run."""
    return "r" + time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def confirm(question: str) -> bool:
    """Ask on the terminal; anything but y/yes is no."""
    sys.stderr.write(question)
    sys.stderr.flush()
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def exit_code(outcomes: dict[str, Outcome], interrupted: bool) -> int:
    """130 when interrupted; 1 when anything failed or is unknown; else 0."""
    if interrupted:
        return EXIT_INTERRUPTED
    if any(o.status in (FAILED, UNKNOWN, PENDING) for o in outcomes.values()):
        return EXIT_FAILED
    return EXIT_OK


def check_can_prompt(yes: bool) -> None:
    """Refuse to run unattended without ``--yes``."""
    if not yes and not sys.stdin.isatty():
        raise UsageError("refusing to apply without --yes: stdin is not a terminal to confirm on")


def sim_ledger_path(plan_path: str) -> str:
    """``--sim`` keeps its own ledger, so a demo never marks a real entry done."""
    return ledger.default_path(plan_path).removesuffix(".ledger.jsonl") + ".sim.ledger.jsonl"


def execute(
    plan_path: str,
    *,
    ledger_path: str | None,
    now: int,
    fmt: str,
    yes: bool,
    gateway: str | None,
    sim: bool,
    options: Options,
    lock_timeout: float,
    max_triggers: int,
) -> int:
    """The whole of ``planrunner apply``; returns the exit code."""
    from planrunner import plan as planlib
    from planrunner import report
    from planrunner.resolve import resolve

    check_can_prompt(yes)
    plan = planlib.load(plan_path)
    entries = resolve(plan, now, max_triggers)
    path = ledger_path or (sim_ledger_path(plan_path) if sim else ledger.default_path(plan_path))
    target = plan.target
    simulator = None
    if sim:
        from planrunner.sim import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, SimFlow, Simulator

        seeds = {
            f.flow_id: SimFlow(
                f.flow_id, owner=target.user_id, org_id=target.org_id, run_seconds=0.05
            )
            for f in plan.flows
        }
        simulator = Simulator(seeds.values()).start()
        url, creds = simulator.url, enos.Credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)
    else:
        url = enos.check_gateway(gateway or target.gateway)
        creds = enos.Credentials.from_env()
    run_id = new_run_id()
    logger = log.get("apply").bind(run=run_id)
    lock = ledger.Lock(path, run_id)
    try:
        client = enos.Client(url, target.org_id, target.user_id, creds)
        lock.acquire(lock_timeout)
        try:
            folded = ledger.fold(path, {e.key for e in entries})
            ledger.repair_tail(path, folded)
            counts: dict[str, int] = {}
            for e in entries:
                st = folded.status(e.key)
                counts[st] = counts.get(st, 0) + 1
            todo = len(entries) - counts.get(ledger.DONE, 0)
            where = "the embedded simulator" if sim else client.where
            if todo and not yes:
                question = (
                    f"Apply {plan_path} to {where} as user {target.user_id} in {target.org_id}: "
                    f"{counts.get(ledger.PENDING, 0)} to trigger, {counts.get(ledger.FAILED, 0)} to retry, "
                    f"{counts.get(ledger.UNKNOWN, 0)} to reconcile. Proceed? [y/N] "
                )
                if not confirm(question):
                    sys.stderr.write("Apply cancelled; nothing was sent.\n")
                    return EXIT_FAILED
            logger.info(
                "apply starting",
                plan=plan_path,
                ledger=path,
                gateway=where,
                entries=len(entries),
                todo=todo,
            )
            writer = ledger.Writer(path)
            progress = Progress(todo, sys.stderr.isatty())
            runner = Runner(client, writer, folded, options, progress, run_id)
            started = time.monotonic()
            try:
                with _interrupts(runner) as seen:
                    outcomes = runner.run(entries)
                seconds = time.monotonic() - started
            finally:
                progress.close()
                writer.close()
        finally:
            lock.release()
    finally:
        if simulator is not None:
            simulator.stop()
    result = report.Result(plan, path, now, entries, outcomes)
    logger.info("apply finished", seconds=round(seconds, 3), fsyncs=writer.fsyncs, **result.summary)
    text = report.render_json(result) if fmt == "json" else report.render_text(result, verb="Apply")
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    if runner.fatal is not None and not seen["interrupted"]:
        raise runner.fatal
    if seen["interrupted"] and threading.current_thread() is threading.main_thread():
        # Everything is recorded and reported; we exit 130. CPython resets Python-level
        # handlers to the default while shutting down, so a late second Ctrl-C would kill
        # the interpreter mid-exit: ignore it instead (ignoring survives the shutdown).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return exit_code(outcomes, seen["interrupted"])
