"""``status``'s engine: look up the instance of every done entry, and with ``--watch`` poll
until each has ended; the result and its exit code (contract section 10).

Read-only: the ledger is folded without its lock, and nothing is written. A lookup that
fails is an answer of its own (``lookup-failed``), and ``--watch`` tries it again; a bug in
a lookup worker is not: it stops the command with exit 70 (:class:`runs.InternalError`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from planrunner import enos, ledger, log, lookup, protocol, times
from planrunner.errors import EXIT_FAILED, EXIT_OK, EXIT_PENDING, PlanrunnerError
from planrunner.lookup import Seen
from planrunner.outcome import Entry
from planrunner.plan import Plan
from planrunner.rate import RateLimiter
from planrunner.runs import Connection, WorkerPool
from planrunner.select import Selection

Show = Callable[[list[Seen]], None]  # called before each wait of --watch with every entry's state


FAILED_POLLS = 5  # --watch stops after this many polls in a row in which every lookup failed
LOGS = 20  # lines of a failed task's log shown by default (--logs)
LOGS_PER_FLOW = 20  # failed instances per flow whose log is read: those text lists
LOG_MAX_LENGTH = 65_536  # the maxLength asked of Get Task Instance Log (its tail is shown)


class Tracker(Protocol):
    """Told of a lookup phase as it goes (the progress line of a terminal)."""

    def start(self, total: int) -> None:
        """``total`` entries are about to be looked up."""

    def add(self, states: Sequence[str]) -> None:
        """A batch of entries was looked up; their states."""

    def stop(self) -> None:
        """The phase ended (or was stopped)."""


def batches(items: Sequence[tuple[Entry, str | None]]) -> list[list[tuple[Entry, str | None]]]:
    """``items`` per flow, in runs of trigger times that span less than a day: each batch is
    one window of a batched lookup, and a flow's batches can be looked up side by side."""
    per_flow: dict[int, list[tuple[Entry, str | None]]] = {}
    for item in items:
        per_flow.setdefault(item[0].flow_id, []).append(item)
    out: list[list[tuple[Entry, str | None]]] = []
    for rows in per_flow.values():
        rows.sort(key=lambda item: item[0].trigger_time)
        start = 0
        for item in rows:
            tt = item[0].trigger_time
            if out and out[-1][0][0].flow_id == item[0].flow_id and tt - start < times.DAY_MS:
                out[-1].append(item)
            else:  # a new window, from the minute of its first entry (as look_up_many cuts)
                out.append([item])
                start = tt - tt % protocol.MINUTE_MS
    return out


def look_up_all(
    client: enos.Client,
    items: Sequence[tuple[Entry, str | None]],
    *,
    concurrency: int,
    stop: threading.Event | None = None,
    tracker: Tracker | None = None,
    at: Mapping[str, int] | None = None,
) -> dict[str, Seen]:
    """Look up every (entry, recorded id) in batches (:func:`lookup.look_up_many`: per
    flow, Search over windows of at most a day, Get by recorded id only for the rest),
    ``concurrency`` batches at a time, every call through the client's limiter.

    A batch that fails with an expected error is :data:`lookup.LOOKUP_FAILED` for each of
    its entries, and so are the entries left when ``stop`` is set ("stopped"); a bug raises
    :class:`InternalError`. An entry whose key is in ``at`` is looked up at that time (its
    newest rerun round's sentTime, DESIGN 13), not at its trigger time.
    """
    out: dict[str, Seen] = {}
    when = at or {}
    lock = threading.Lock()
    pool: WorkerPool[list[tuple[Entry, str | None]]] = WorkerPool(
        concurrency, name="lookup", clean=client.clean, after_bug="stopped looking up"
    )
    halt = stop or threading.Event()

    def one(batch: list[tuple[Entry, str | None]]) -> bool:
        wanted = [lookup.Wanted(e.flow_id, when.get(e.key, e.trigger_time), recorded) for e, recorded in batch]
        found: dict[tuple[int, int], Seen] = {}
        reason = "stopped"
        if not halt.is_set():
            try:
                found = lookup.look_up_many(client, wanted, halt)
            except PlanrunnerError as e:  # one batch's failure must not lose the others
                reason = str(e)
        seen = {
            e.key: found.get((e.flow_id, when.get(e.key, e.trigger_time)))
            or Seen(lookup.LOOKUP_FAILED, recorded, reason=reason)
            for e, recorded in batch
        }
        with lock:
            out.update(seen)
        if tracker is not None:
            tracker.add([s.state for s in seen.values()])
        return False

    if tracker is not None:
        tracker.start(len(items))
    sent, started = sum(client.calls.values()), time.monotonic()
    try:
        pool.run(batches(items), one)
    finally:
        if tracker is not None:
            tracker.stop()
    if pool.failure is not None:
        raise pool.failure
    log.get("lookup").debug(
        "looked up",
        entries=len(items),
        requests=sum(client.calls.values()) - sent,
        seconds=round(time.monotonic() - started, 3),
    )
    return out


def sent_times(folded: ledger.Folded) -> dict[str, int]:
    """Done keys whose newest round is a rerun: key -> where its instance is (its sentTime);
    status and cancel follow each entry's newest round (DESIGN 13)."""
    return {
        key: state.sent_time
        for key, state in folded.reruns.items()
        if state.sent_time is not None and key in folded.done
    }


@dataclass(frozen=True, slots=True)
class Tail:
    """The end of a failed task's log: its last lines, or None with why it is not shown."""

    lines: tuple[str, ...] | None
    reason: str = ""
    cut: bool = False  # the service cut the log at maxLength: these may not be its last lines


def log_tail(client: enos.Client, task_inst_id: str, lines: int) -> Tail:
    """The last ``lines`` lines of a task instance's log, each cleaned (redacted, controls
    out, cut) like every text from the service."""
    answer = client.get_task_log(task_inst_id, LOG_MAX_LENGTH)
    data = answer.data
    text = data.get("log") if isinstance(data, dict) else data
    if answer.kind is not enos.Kind.OK or not isinstance(text, str):
        why = f"{answer.code}: {answer.msg}" if answer.code is not None else answer.msg
        return Tail(None, client.clean(why or "no log in the answer"))
    rows = text.splitlines()
    while rows and not rows[-1].strip():
        rows.pop()
    # Which end a cut keeps is not documented: a full answer may not hold the error line.
    cut = len(text) >= LOG_MAX_LENGTH
    return Tail(tuple(client.clean(row.rstrip()) for row in rows[-lines:]), cut=cut)


def fetch_tails(
    client: enos.Client,
    failed: Sequence[tuple[str, Seen]],
    lines: int,
    *,
    concurrency: int,
) -> dict[str, Tail]:
    """The log tails of the failed instances (key, state) that name their failed task."""
    todo = [(key, s) for key, s in failed if s.failed_task_id]
    out: dict[str, Tail] = {}
    lock = threading.Lock()
    pool: WorkerPool[tuple[str, Seen]] = WorkerPool(
        concurrency, name="log", clean=client.clean, after_bug="stopped reading logs"
    )

    def one(item: tuple[str, Seen]) -> bool:
        key, seen = item
        assert seen.failed_task_id is not None
        try:
            tail = log_tail(client, seen.failed_task_id, lines)
        except PlanrunnerError as e:  # a log is a detail: it must not lose the report
            tail = Tail(None, str(e))
        with lock:
            out[key] = tail
        return False

    pool.run(todo, one)
    if pool.failure is not None:
        raise pool.failure
    log.get("status").debug(
        "read logs", logs=len(todo), shown=sum(1 for t in out.values() if t.lines is not None)
    )
    return out


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
    tails: dict[str, Tail] = field(default_factory=dict)  # failed keys -> their task's log tail
    logs: int = LOGS  # lines asked for (0: no logs were read)

    def state(self, e: Entry) -> Seen:
        """What is known of ``e`` (not triggered when the ledger does not say it was)."""
        return self.seen.get(e.key) or Seen(lookup.NOT_TRIGGERED)

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
        return lookup.counts(self.state(e).state for e in self.entries)

    def exit_code(self) -> int:
        """4 while any instance is not final; then 1 when any failed or is missing; else 0."""
        states = [self.state(e) for e in self.entries]
        if any(not s.final and s.state != lookup.LOOKUP_FAILED for s in states):
            return EXIT_PENDING
        bad = (lookup.NOT_FOUND, lookup.LOOKUP_FAILED)
        if any(s.failed or s.state in bad for s in states):
            return EXIT_FAILED
        return EXIT_OK

    def retry_lookups(self) -> bool:
        """With --watch, lookups that failed are tried again (a flaky network is not an answer)."""
        return any(self.state(e).state == lookup.LOOKUP_FAILED for e in self.entries)


def watch_counts(states: Sequence[Seen]) -> tuple[int, int, dict[str, int]]:
    """(ended, watched, counts by status) over the triggered entries: the one count that the
    live line and the per-poll log line both show."""
    watched = [s for s in states if s.state != lookup.NOT_TRIGGERED]
    ended = sum(1 for s in watched if s.final)
    return ended, len(watched), lookup.counts(s.state for s in watched)


@dataclass
class Watch:
    """One ``status``: :attr:`result` fills in as :meth:`run` looks entries up, so a command
    stopped by an error can still show what was known."""

    plan: Plan
    entries: Sequence[Entry]
    selection: Selection
    backend: ledger.Backend
    gateway_id: str  # whose records count (sim, or the gateway's origin)
    connect: Callable[[], Connection] | None  # None: --sim, nothing to look up
    concurrency: int = 4
    rate: float | None = None  # requests per second, every call (None: adaptive, no cap)
    failed_polls: int = FAILED_POLLS
    logs: int = LOGS  # lines of each failed task's log to read once watching ends (0: none)
    tracker: Tracker | None = None
    result: Result = field(init=False)

    def __post_init__(self) -> None:
        self.connection: Connection | None = None  # made once the ledger was read
        self.result = Result(
            self.plan,
            self.backend.name,
            "sim",
            self.selection,
            self.entries,
            {},
            set(),
            sim=self.connect is None,
            logs=self.logs,
        )
        self._keys = {e.key for e in self.entries}
        self._checked = False  # the token and the server's zone were asked for once
        self._looked: dict[str, str | None] = {}  # key -> the recorded id it was looked up by
        self._at: dict[str, int] = {}  # key -> its newest rerun round's sentTime (looked up there)
        self._log = log.get("status")

    def read_ledger(self) -> list[tuple[Entry, str | None]]:
        """The done entries with their recorded ids; the cancelled keys go to the result."""
        folded = self.backend.read(self._keys, sim=self.connect is None, gateway=self.gateway_id)
        if folded.torn_line is not None:
            self._log.warning(
                "ledger has an incomplete last line (an apply may be writing); ignoring it",
                ledger=self.backend.name,
                line=folded.torn_line,
            )
        self.result.cancelled = set(folded.cancelled)
        self._at = sent_times(folded)
        return [(e, folded.done[e.key]) for e in self.entries if e.key in folded.done]

    def poll(self, done: Sequence[tuple[Entry, str | None]]) -> bool:
        """Look up the done entries not yet final (or recorded under another id since);
        False when there were lookups to make and every one of them failed."""
        if self.connection is None:
            self.result.seen = {e.key: Seen(lookup.NOT_LOOKED_UP, iid) for e, iid in done}
            return True
        client, seen = self.connection.client, self.result.seen
        if not self._checked:
            client.token()  # a token or zone problem stops the command, not each lookup
            client.server_zone()
            self._checked = True
        todo = [
            (e, iid)
            for e, iid in done
            if e.key not in seen or not seen[e.key].final or self._looked.get(e.key) != iid
        ]
        found = look_up_all(
            client, todo, concurrency=self.concurrency, tracker=self.tracker, at=self._at
        )
        seen.update(found)
        self._looked.update({e.key: iid for e, iid in todo})
        return not found or any(s.state != lookup.LOOKUP_FAILED for s in found.values())

    def open(self) -> list[tuple[Entry, str | None]]:
        """Read the ledger, then make the client (none for --sim); the done entries."""
        done = self.read_ledger()
        if self.connect is not None:
            self.connection = self.connect()
            self.connection.client.limiter = RateLimiter(self.rate)  # lookups and logs alike
            self.result.gateway = self.connection.where
        return done

    def run(
        self,
        done: Sequence[tuple[Entry, str | None]],
        follow: bool = False,
        interval: float = 30.0,
        show: Show | None = None,
    ) -> Result:
        """Look ``done`` up; with ``follow``, poll every ``interval`` seconds until every
        instance has ended (re-reading the ledger: an apply may be adding entries), or until
        :data:`FAILED_POLLS` polls in a row had every lookup fail (reliability probe N16: a
        watch never polls forever a service it cannot read; the report then says
        lookup-failed and the exit code is 1)."""
        if done or self.connection is None:
            self.poll(done)
        r = self.result
        failed = 0
        while (
            follow
            and self.connection is not None
            and (r.exit_code() == EXIT_PENDING or r.retry_lookups())
        ):
            if show is not None:
                show([r.state(e) for e in r.entries])
            time.sleep(interval)
            done = self.read_ledger()
            if done:
                failed = 0 if self.poll(done) else failed + 1
            if failed >= self.failed_polls:
                self._log.warning(
                    "every lookup failed in several polls in a row: stopped watching",
                    polls=failed,
                )
                break
        self.read_logs()
        return r

    def read_logs(self) -> None:
        """The log tails of the failed instances (the first :data:`LOGS_PER_FLOW` of each
        flow), read once the lookups are over."""
        r = self.result
        if self.connection is None or self.logs <= 0:
            return
        failed: list[tuple[str, Seen]] = []
        for rows in r.by_flow().values():
            failed += [(e.key, r.state(e)) for e in rows if r.state(e).failed][:LOGS_PER_FLOW]
        r.tails = fetch_tails(
            self.connection.client, failed, self.logs, concurrency=self.concurrency
        )

    def close(self) -> None:
        """Close the client, if one was made."""
        if self.connection is not None:
            self.connection.client.close()
