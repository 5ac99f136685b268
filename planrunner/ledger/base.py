"""What every ledger backend offers (DESIGN 4, 9), and the group commit they share.

Everything above these interfaces (plan, apply, status, cancel, the ledger commands) is the
same code for the file and for PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from planrunner.errors import LedgerError
from planrunner.ledger.fold import Folded


class GroupCommit:
    """Concurrent ``append`` calls share one durable write (group commit).

    A caller's records wait in a queue; whoever finds no flush under way takes the whole
    queue and makes it durable with :meth:`_flush` (a write and an fsync, or a
    transaction), and every caller returns only once its own records are durable. A failed
    flush fails every caller from then on (:meth:`_failure` says how). ``fsyncs`` counts
    flushes.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self._queued = 0
        self._durable = 0
        self._flushing = False
        self._error: Exception | None = None
        self.fsyncs = 0

    def _flush(self, batch: list[dict[str, Any]]) -> None:
        """Make ``batch`` durable; raise on failure."""
        raise NotImplementedError

    def _failure(self, error: Exception) -> LedgerError:
        """The error every later ``append`` raises after a failed flush."""
        raise NotImplementedError

    def _caught(self) -> tuple[type[Exception], ...]:
        """The exceptions a failed flush raises (others are bugs and propagate)."""
        return (OSError,)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Queue ``records`` and return once they are durable."""
        mine_records = list(records)
        with self._cv:
            self._pending.extend(mine_records)
            self._queued += 1
            mine = self._queued
            while self._durable < mine:
                if self._error is not None:
                    raise self._failure(self._error)
                if self._flushing:
                    self._cv.wait()
                    continue
                self._flushing = True
                batch, self._pending = self._pending, []
                upto = self._queued
                self._cv.release()
                done = False
                try:
                    if batch:
                        self._flush(batch)
                    done = True
                except Exception as e:
                    # Nothing of this batch is known durable: every caller fails from now on.
                    self._error = e
                    if not isinstance(e, self._caught()):
                        raise  # a bug, not a full disk: let it surface
                finally:
                    self._cv.acquire()
                    self._flushing = False
                    if batch:
                        self.fsyncs += 1
                    if done:
                        self._durable = upto
                    self._cv.notify_all()


class Sink(Protocol):
    """Where a run's records go: ``append`` returns once they are durable."""

    @property
    def fsyncs(self) -> int:
        """How many durable writes the appends took."""
        ...

    def append(self, records: Iterable[dict[str, Any]]) -> None: ...


class Session(Protocol):
    """A run's hold on a ledger: it exists only while the run's lock is held, so the order
    lock -> fold -> repair -> write cannot be got wrong. Apply, cancel and import use it."""

    @property
    def fsyncs(self) -> int:
        """How many durable writes (fsyncs, commits) the session's appends took."""
        ...

    def fold(
        self,
        keys: set[str] | None = None,
        *,
        sim: bool = False,
        orphans_of: set[str] | None = None,
        gateway: str | None = None,
        other_gateways_count: bool = False,
    ) -> Folded:
        """:meth:`Ledger.read` under the lock; what a crash left half-written is cut first."""
        ...

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Durable when it returns (group commit)."""
        ...

    def add(self, records: Iterable[dict[str, Any]]) -> int:
        """Add records not already present (idempotent by identity); returns how many."""
        ...

    def check_lock(self) -> None:
        """Raise :class:`LedgerError` unless the run's locks are provably still held (before a send)."""
        ...


class Ledger(Protocol):
    """A ledger: the JSON-lines file or a PostgreSQL table.

    Readers (plan, status, log) call :meth:`read` and :meth:`records`; writers (apply,
    cancel, import) open a :meth:`session`.
    """

    @property
    def name(self) -> str:
        """What to call it in output (a path, or a URL with its password masked)."""
        ...

    def read(
        self,
        keys: set[str] | None = None,
        *,
        sim: bool = False,
        orphans_of: set[str] | None = None,
        gateway: str | None = None,
        other_gateways_count: bool = False,
    ) -> Folded:
        """Per-key states, for ``keys`` only when given (see :func:`planrunner.ledger.fold.fold_into`);
        warns about records of other gateways. No lock, no writes."""
        ...

    def session(
        self, run_id: str, flows: Iterable[tuple[str, int]], timeout: float
    ) -> AbstractContextManager[Session]:
        """Exclusive right to write and send for ``flows`` ((orgId, flowId) pairs), for a run."""
        ...

    def holder(self) -> str | None:
        """Who holds the lock now, if anyone (for ``plan``'s note)."""
        ...

    def records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every record with where it is (``path:line``), in stored order."""
        ...


Backend = Ledger  # the name the rest of the code knew it by
