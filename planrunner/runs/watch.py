"""``status``'s engine: look up the instance of every done entry, and with ``--watch`` poll
until each has ended; the result and its exit code (contract section 10).

Read-only: the ledger is folded without its lock, and nothing is written. A lookup that
fails is an answer of its own (``lookup-failed``), and ``--watch`` tries it again; a bug in
a lookup worker is not: it stops the command with exit 70 (:class:`runs.InternalError`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo

from planrunner import enos, ledger, log, lookup
from planrunner.errors import EXIT_FAILED, EXIT_OK, EXIT_PENDING, PlanrunnerError
from planrunner.lookup import Seen
from planrunner.outcome import Entry
from planrunner.plan import Plan
from planrunner.rate import RateLimiter
from planrunner.runs import Connection, WorkerPool
from planrunner.select import Selection

Show = Callable[[list[Seen]], None]  # called before each wait of --watch with every entry's state


FAILED_POLLS = 5  # --watch stops after this many polls in a row in which every lookup failed


def look_up_all(
    client: enos.Client,
    items: Sequence[tuple[Entry, str | None]],
    zone: tzinfo,
    *,
    concurrency: int,
    rate: float | None,
    stop: threading.Event | None = None,
) -> dict[str, Seen]:
    """Look up every (entry, recorded id) with ``concurrency`` threads, at most ``rate``/s.

    A lookup that fails with an expected error is :data:`lookup.LOOKUP_FAILED`, and so are
    the entries left when ``stop`` is set ("stopped"); a bug raises :class:`InternalError`.
    """
    limiter = RateLimiter(rate)
    out: dict[str, Seen] = {}
    lock = threading.Lock()
    pool: WorkerPool[tuple[Entry, str | None]] = WorkerPool(
        concurrency, name="lookup", clean=client.clean, after_bug="stopped looking up"
    )
    halt = stop or threading.Event()

    def one(item: tuple[Entry, str | None]) -> bool:
        entry, recorded = item
        if limiter.wait(halt) is None:
            seen = Seen(lookup.LOOKUP_FAILED, recorded, reason="stopped")
        else:
            try:
                seen = lookup.look_up(client, entry, recorded, zone)
            except PlanrunnerError as e:  # one lookup's failure must not lose the others
                seen = Seen(lookup.LOOKUP_FAILED, recorded, reason=str(e))
        with lock:
            out[entry.key] = seen
        return False

    pool.run(items, one)
    if pool.failure is not None:
        raise pool.failure
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
    rate: float | None = None
    failed_polls: int = FAILED_POLLS
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
        )
        self._keys = {e.key for e in self.entries}
        self._zone: tzinfo | None = None
        self._looked: dict[str, str | None] = {}  # key -> the recorded id it was looked up by
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
        return [(e, folded.done[e.key]) for e in self.entries if e.key in folded.done]

    def poll(self, done: Sequence[tuple[Entry, str | None]]) -> bool:
        """Look up the done entries not yet final (or recorded under another id since);
        False when there were lookups to make and every one of them failed."""
        if self.connection is None:
            self.result.seen = {e.key: Seen(lookup.NOT_LOOKED_UP, iid) for e, iid in done}
            return True
        client, seen = self.connection.client, self.result.seen
        if self._zone is None:
            client.token()  # a token or zone problem stops the command, not each lookup
            self._zone = client.server_zone()
        todo = [
            (e, iid)
            for e, iid in done
            if e.key not in seen or not seen[e.key].final or self._looked.get(e.key) != iid
        ]
        found = look_up_all(client, todo, self._zone, concurrency=self.concurrency, rate=self.rate)
        seen.update(found)
        self._looked.update({e.key: iid for e, iid in todo})
        return not found or any(s.state != lookup.LOOKUP_FAILED for s in found.values())

    def open(self) -> list[tuple[Entry, str | None]]:
        """Read the ledger, then make the client (none for --sim); the done entries."""
        done = self.read_ledger()
        if self.connect is not None:
            self.connection = self.connect()
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
        return r

    def close(self) -> None:
        """Close the client, if one was made."""
        if self.connection is not None:
            self.connection.client.close()
