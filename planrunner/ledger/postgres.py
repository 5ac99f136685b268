"""A shared ledger in PostgreSQL: the same records as the JSON-lines file, one row each.

``--ledger postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?table=NAME]`` (psycopg 3, the
``postgres`` extra). The common fields are columns, the rest of a record is ``jsonb``;
the fold filters a plan's keys in SQL and runs each row through the same
:func:`planrunner.ledger.fold.fold_into` loop as the file. Instead of one file lock, ``apply``
takes an advisory lock per (orgId, flowId) on one connection that it holds for the whole
run; that connection also commits the run's records, so once the lock is gone (the
connection is lost) nothing more is committed and nothing more is sent.

Passwords never reach output: :attr:`PostgresLedger.name` masks them, and database errors
are re-raised as :class:`~planrunner.errors.LedgerError` with their text masked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, NoReturn

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from planrunner import log, times
from planrunner.errors import LedgerError, LedgerLocked
from planrunner.ledger.base import GroupCommit
from planrunner.ledger.fold import Folded, fold_into, note_folded
from planrunner.ledger.pgsql import (
    ANY_HOLDER,
    COLUMNS,
    DDL,
    FOLD,
    HOLDER_OF_KEY,
    INSERT,
    VERSION_ROW,
    Url,
    columns_and_extras,
    connect,
    dumps,
    fail,
    to_record,
)
from planrunner.ledger.records import check, identity

SCHEMA_VERSION = 1  # the layout this module writes; a newer one in the table is refused
LOCK_POLL_SECONDS = 0.05  # how often a waiting apply retries a busy advisory lock
FOLD_FETCH_ROWS = 20_000  # rows per round trip of the fold's server-side cursor
ADD_BATCH = 5_000  # records per INSERT statement of ``add``
_INT64 = 1 << 64
_INT63 = 1 << 63
_UINT32_MASK = 0xFFFFFFFF

def _advisory_key(table: str, org_id: str, flow_id: int) -> int:
    """The signed 64-bit advisory lock key of one (orgId, flowId) of one ledger table."""
    digest = hashlib.blake2b(f"{table}\0{org_id}\0{flow_id}".encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return value - _INT64 if value >= _INT63 else value


class PostgresLedger:
    """A ledger kept in a PostgreSQL table (implements :class:`planrunner.ledger.Backend`)."""

    def __init__(self, url: str) -> None:
        self._url = Url(url)
        self.table = self._url.table
        ids = {
            "t": self.table,
            "t_ident": f"{self.table}_ident",
            "t_key": f"{self.table}_key",
            "t_sim": f"{self.table}_sim",
            "locks": f"{self.table}_locks",
            "meta": f"{self.table}_meta",
        }
        self._ids = {k: sql.Identifier(v) for k, v in ids.items()}
        self._schema_ok = False
        self._said: set[object] = set()  # what its folds have warned about

    # -- naming, connecting, errors --------------------------------------------------------

    @property
    def name(self) -> str:
        """The URL with its password masked, and the table named."""
        return self._url.name

    def _sql(self, template: str) -> sql.Composed:
        return sql.SQL(template).format(**self._ids)

    def _fail(self, what: str, e: BaseException) -> NoReturn:
        fail(self._url, what, e)

    def _connect(self, *, keepalive: bool = False) -> psycopg.Connection[Any]:
        return connect(self._url, keepalive=keepalive)

    @contextlib.contextmanager
    def _connection(self, run: _RunConnection | None = None) -> Iterator[psycopg.Connection[Any]]:
        """``run``'s connection (one transaction at a time) when a session gives it, else a new one."""
        if run is not None:
            with run.mutex:
                yield run.conn
            return
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    # -- schema ------------------------------------------------------------------------------

    def _version(self, conn: psycopg.Connection[Any]) -> int | None:
        """The table's schema version, or None when the ledger does not exist yet."""
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
            (self._quoted("t"), self._quoted("meta")),
        ).fetchone()
        assert row is not None
        has_table, has_meta = row
        if not has_meta:
            return 0 if has_table else None
        got = conn.execute(
            self._sql("SELECT value FROM {meta} WHERE name = %s"), (VERSION_ROW,)
        ).fetchone()
        if got is None:
            return 0 if has_table else None
        try:
            return int(got[0])
        except ValueError:
            raise LedgerError(
                f"{self.name}: schema version {got[0]!r} in {self.table}_meta is not a number"
            ) from None

    def _quoted(self, which: str) -> str:
        return '"' + {"t": self.table, "meta": f"{self.table}_meta"}[which] + '"'

    def _check_version(self, version: int | None) -> None:
        if version is not None and version > SCHEMA_VERSION:
            raise LedgerError(
                f"{self.name}: the ledger table has schema version {version}, newer than this "
                f"planrunner knows ({SCHEMA_VERSION}); upgrade planrunner"
            )

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        """Create the tables on first use (under a transaction-scoped advisory lock).

        A role without the privileges for it gets the masked one-line error (exit 3).
        """
        if self._schema_ok:
            return
        try:
            self._create_schema(conn)
        except psycopg.Error as e:
            self._fail("cannot open the ledger's tables", e)

    def _create_schema(self, conn: psycopg.Connection[Any]) -> None:
        version = self._version(conn)
        self._check_version(version)
        if version != SCHEMA_VERSION:
            with conn.transaction():
                # Two first uses at once: one creates, the other finds it done.
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s)",
                    (_advisory_key(self.table, "", -1),),
                )
                version = self._version(conn)
                self._check_version(version)
                if version != SCHEMA_VERSION:
                    for statement in DDL:
                        conn.execute(self._sql(statement))
                    conn.execute(
                        self._sql(
                            "INSERT INTO {meta} (name, value) VALUES (%s, %s) "
                            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
                        ),
                        (VERSION_ROW, str(SCHEMA_VERSION)),
                    )
        self._schema_ok = True

    def _readable(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether the ledger exists (a missing one reads as empty, like a missing file)."""
        if self._schema_ok:
            return True
        version = self._version(conn)
        self._check_version(version)
        return version is not None

    # -- the Backend interface ---------------------------------------------------------------

    def read(
        self,
        keys: set[str] | None = None,
        *,
        sim: bool = False,
        orphans_of: set[str] | None = None,
        gateway: str | None = None,
        other_gateways_count: bool = False,
        _run: _RunConnection | None = None,
    ) -> Folded:
        """Per-key states, computed from the rows of ``keys`` (all when None), streamed.

        The same result as :func:`planrunner.ledger.fold` on a file of the same records,
        ``orphans_of`` (``orgId/flowId/`` prefixes of keys outside ``keys``) and ``gateway``
        (records of other gateways left out and counted) included.
        """
        out = Folded()
        try:
            with self._connection(_run) as conn:
                if not self._readable(conn):
                    return out
                query: sql.Composed | None = None
                params: list[Any] = [sim]
                prefixes = sorted(orphans_of or ()) if keys is not None else []
                if keys is None:
                    query = self._sql(FOLD)
                elif keys or prefixes:
                    clauses = ['"key" = ANY(%s)'] + ['"key" LIKE %s'] * len(prefixes)
                    params += [list(keys), *(_like_prefix(p) for p in prefixes)]
                    query = self._sql(FOLD + " AND (" + " OR ".join(clauses) + ")")
                with conn.transaction():
                    if query is not None:
                        fold_into(
                            out,
                            _fold_records(conn, query, tuple(params), self.name),
                            keys,
                            sim=sim,
                            orphans_of=set(prefixes),
                            gateway=gateway,
                            other_gateways_count=other_gateways_count,
                        )
                    out.ignored = self._ignored(conn, sim)
        except psycopg.Error as e:
            self._fail("cannot read the ledger", e)
        note_folded(out, self.name, gateway, self._said, counted=other_gateways_count)
        return out

    def _ignored(self, conn: psycopg.Connection[Any], sim: bool) -> int:
        """How many records belong to the other kind of run (simulator vs real)."""
        if sim:
            query = self._sql("SELECT count(*) FROM {t} WHERE coalesce(gateway = 'sim', false) = false")
        else:
            query = self._sql("SELECT count(*) FROM {t} WHERE gateway = 'sim'")
        row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0

    def records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every record as ``(TABLE#id, record)``, in insertion order, as the file has it."""
        try:
            with self._connection() as conn:
                if not self._readable(conn):
                    return
                with conn.transaction(), conn.cursor(name="planrunner_records") as cur:
                    cur.itersize = FOLD_FETCH_ROWS
                    cur.execute(
                        self._sql(
                            'SELECT id, v, event, "key", flow_id, org_id, trigger_time, attempt, '
                            '"at", gateway, extras FROM {t} ORDER BY id'
                        )
                    )
                    for row in cur:
                        yield f"{self.table}#{row[0]}", to_record(row)
        except psycopg.Error as e:
            self._fail("cannot read the ledger", e)

    def _add(self, records: Iterable[dict[str, Any]], run: _RunConnection) -> int:
        """Insert the records not already present (by identity); returns how many were added."""
        batch: list[dict[str, Any]] = []
        added = 0
        try:
            with self._connection(run) as conn:
                self._ensure_schema(conn)
                with conn.transaction():
                    for number, rec in enumerate(records, 1):
                        check(f"{self.name} (record {number})", rec)
                        batch.append(rec)
                        if len(batch) >= ADD_BATCH:
                            added += self._insert(conn, batch)
                            batch = []
                    if batch:
                        added += self._insert(conn, batch)
        except psycopg.Error as e:
            self._fail("cannot add to the ledger", e)
        return added

    def _insert(self, conn: psycopg.Connection[Any], records: list[dict[str, Any]]) -> int:
        columns: list[list[Any]] = [[] for _ in range(len(COLUMNS) + 2)]
        for rec in records:
            values, extras = columns_and_extras(rec)
            columns[0].append(hashlib.sha256(identity(rec)).digest())
            for i, value in enumerate(values, 1):
                columns[i].append(value)
            columns[-1].append(Jsonb(extras, dumps=dumps))
        cur = conn.execute(self._sql(INSERT), columns)
        return max(cur.rowcount, 0)

    def session(
        self, run_id: str, flows: Iterable[tuple[str, int]], timeout: float
    ) -> AbstractContextManager[PostgresSession]:
        """Advisory locks per (orgId, flowId), in sorted order, on one connection that the
        session owns for the whole run; the run's records are committed on it too."""
        return PostgresSession(self, run_id, sorted(set(flows)), timeout)

    def holder(self) -> str | None:
        """Who holds an advisory lock of this ledger now, if anyone."""
        try:
            with self._connection() as conn:
                if not self._readable(conn) or not self._has_locks_table(conn):
                    return None
                row = conn.execute(self._sql(ANY_HOLDER)).fetchone()
        except psycopg.Error as e:
            self._fail("cannot read the ledger's locks", e)
        return _describe(row) if row else None

    def _has_locks_table(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{self.table}_locks"',)).fetchone()
        return bool(row and row[0])

    def drop(self) -> None:
        """Drop the ledger's tables (tests and benchmarks; never called by a command)."""
        try:
            with self._connection() as conn:
                for which in (self._ids["t"], self._ids["locks"], self._ids["meta"]):
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(which))
        except psycopg.Error as e:
            self._fail("cannot drop the ledger", e)
        self._schema_ok = False


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching keys that start with ``prefix``."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _fold_records(
    conn: psycopg.Connection[Any], query: sql.Composed, params: tuple[Any, ...], name: str
) -> Iterator[dict[str, Any]]:
    """The rows of ``query`` as the records :func:`fold_into` reads (only the fields it uses)."""
    with conn.cursor(name="planrunner_fold") as cur:
        cur.itersize = FOLD_FETCH_ROWS
        cur.execute(query, params)
        for event, key, attempt, at, gw, at_json, iid, found, error, rnd, sent, carried in cur:
            if at is None:
                # Only a non-string "at" lands outside its column: refused, as the file's fold does.
                raise LedgerError(
                    f"{name}: corrupt ledger record of key {key} "
                    f'("at" is {type(at_json).__name__}, not str); refusing to guess'
                )
            rec = {
                "event": event,
                "key": key,
                "attempt": attempt,
                "at": at,
                "gateway": gw,
                "flowInstanceId": iid,
                "found": found,
            }
            if error is not None:
                rec["code"], rec["msg"] = error
            if rnd is not None:
                rec["round"], rec["sentTime"] = rnd, sent
            if carried is not None:
                rec["parameters"] = carried
            yield rec


def _describe(row: tuple[Any, ...]) -> str:
    run, host, process, started = row
    return f"pid {process} on {host}, run {run}, since {started}"


class _RunConnection:
    """The connection a run holds its locks on; its records are committed on it too."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.mutex = threading.Lock()  # one transaction at a time on the shared connection


class PostgresSession(GroupCommit):
    """A run's hold on the table (:class:`planrunner.ledger.base.Session`, a context manager):
    the advisory locks of its flows on one connection, which also commits its records, so
    once the locks are gone (the connection is lost) nothing more is committed. Concurrent
    ``append`` calls share one transaction; ``fsyncs`` counts commits."""

    def __init__(
        self, owner: PostgresLedger, run_id: str, flows: list[tuple[str, int]], timeout: float
    ) -> None:
        super().__init__()
        self._owner = owner
        self._run_id = run_id
        self._flows = flows
        self._timeout = timeout
        self._run: _RunConnection | None = None

    def __enter__(self) -> PostgresSession:
        owner = self._owner
        if self._run is not None:
            raise LedgerError(f"{owner.name}: this session already holds a run's locks")
        conn = owner._connect(keepalive=True)
        try:
            owner._ensure_schema(conn)
            self._register(conn)
            self._acquire(conn)
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                conn.execute(owner._sql("DELETE FROM {locks} WHERE pid = pg_backend_pid()"))
            conn.close()  # the server drops the session's advisory locks with it
            raise
        self._run = _RunConnection(conn)
        return self

    def _held(self) -> _RunConnection:
        if self._run is None:
            raise LedgerError(f"{self._owner.name}: the run's session is closed")
        return self._run

    def fold(
        self,
        keys: set[str] | None = None,
        *,
        sim: bool = False,
        orphans_of: set[str] | None = None,
        gateway: str | None = None,
        other_gateways_count: bool = False,
    ) -> Folded:
        """:meth:`PostgresLedger.read` on the session's connection (nothing to repair: a
        transaction is whole or absent)."""
        return self._owner.read(
            keys,
            sim=sim,
            orphans_of=orphans_of,
            gateway=gateway,
            other_gateways_count=other_gateways_count,
            _run=self._held(),
        )

    def add(self, records: Iterable[dict[str, Any]]) -> int:
        """Insert the records not already present (by identity), in one transaction."""
        return self._owner._add(records, self._held())

    def check_lock(self) -> None:
        """Prove the run's lock session alive before a send: a round trip on its connection.

        The advisory locks live exactly as long as that session; once it is gone (a
        failover, ``pg_terminate_backend``, an idle-session kill) another apply may hold
        them, so nothing more may be sent.
        """
        run = self._held()
        try:
            with run.mutex:
                run.conn.execute("SELECT 1")
        except psycopg.Error as e:
            self._owner._fail("lost the session holding the ledger's locks; stopped sending", e)

    def _flush(self, batch: list[dict[str, Any]]) -> None:
        run = self._held()
        with run.mutex, run.conn.transaction():
            self._owner._insert(run.conn, batch)

    def _caught(self) -> tuple[type[Exception], ...]:
        return (psycopg.Error,)

    def _failure(self, error: Exception) -> LedgerError:
        text = str(error).strip()
        detail = text.splitlines()[0] if text else type(error).__name__
        return LedgerError(
            f"{self._owner.name}: cannot write ledger ({self._owner._url.mask(detail)}); stopped "
            "sending: the next apply reconciles what is unknown"
        )

    def _register(self, conn: psycopg.Connection[Any]) -> None:
        """Write this run's row (named while it waits or holds), and clear dead sessions' rows."""
        owner = self._owner
        try:
            with conn.transaction():
                conn.execute(
                    owner._sql(
                        "DELETE FROM {locks} WHERE pid NOT IN (SELECT pid FROM pg_stat_activity)"
                    )
                )
                conn.execute(
                    owner._sql(
                        "INSERT INTO {locks} (pid, run, host, process, started) "
                        "VALUES (pg_backend_pid(), %s, %s, %s, %s) "
                        "ON CONFLICT (pid) DO UPDATE SET run = EXCLUDED.run, host = EXCLUDED.host, "
                        "process = EXCLUDED.process, started = EXCLUDED.started"
                    ),
                    (
                        self._run_id,
                        socket.gethostname(),
                        os.getpid(),
                        times.format_utc(time.time_ns() // 1_000_000),
                    ),
                )
        except psycopg.Error as e:
            owner._fail("cannot register the run's locks", e)

    def _acquire(self, conn: psycopg.Connection[Any]) -> None:
        owner = self._owner
        deadline = time.monotonic() + self._timeout
        said = False
        try:
            for org_id, flow_id in self._flows:
                key = _advisory_key(owner.table, org_id, flow_id)
                while True:
                    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                    if row and row[0]:
                        break
                    if not said and self._timeout > 0:
                        said = True  # say at once who we wait for
                        log.get("ledger").warning(
                            f"waiting up to {self._timeout:g} s for the ledger lock held by "
                            f"{self._holder_of(conn, key)}",
                            ledger=owner.name,
                            flow=flow_id,
                        )
                    if time.monotonic() >= deadline:
                        holder = self._holder_of(conn, key)
                        raise LedgerLocked(
                            f"ledger {owner.name} is locked by another apply ({holder}) "
                            f"for flow {flow_id} of org {org_id}"
                        )
                    time.sleep(min(LOCK_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        except psycopg.Error as e:
            owner._fail("cannot take the ledger's locks", e)

    def _holder_of(self, conn: psycopg.Connection[Any], key: int) -> str:
        unsigned = key % _INT64
        row = conn.execute(
            self._owner._sql(HOLDER_OF_KEY), (unsigned >> 32, unsigned & _UINT32_MASK)
        ).fetchone()
        return _describe(row) if row else "holder unknown"

    def __exit__(self, *exc: object) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        with run.mutex:
            conn = run.conn
            if not conn.broken:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock_all()")
                    conn.execute(
                        self._owner._sql("DELETE FROM {locks} WHERE pid = pg_backend_pid()")
                    )
            conn.close()
