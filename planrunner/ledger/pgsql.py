"""The PostgreSQL ledger's plumbing: the table layout and its SQL, records to rows and back,
and connecting (the URL: what libpq gets, what output shows, the secrets to mask; the
timeouts and keepalives every connection sets; a connection whose every wait is bounded, so
a database that hangs ends the command with exit 3).
"""

from __future__ import annotations

import inspect
import os
import re
import urllib.parse
from typing import Any, NoReturn, TypeVar

import orjson
import psycopg
from psycopg import sql
from psycopg.abc import PQGen

from planrunner.errors import LedgerError

# The columns a record's common fields live in, with the Python type a value must have to
# go there (any other value stays in ``extras`` under its name, so every record round-trips).
COLUMNS: tuple[tuple[str, str, type], ...] = (
    ("v", "v", int),
    ("event", "event", str),
    ("key", "key", str),
    ("flowId", "flow_id", int),
    ("orgId", "org_id", str),
    ("triggerTime", "trigger_time", int),
    ("attempt", "attempt", str),
    ("at", "at", str),
    ("gateway", "gateway", str),
)
KIND = {name: kind for name, _, kind in COLUMNS}

DDL = (
    """CREATE TABLE IF NOT EXISTS {t} (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ident bytea NOT NULL,
        v integer NOT NULL,
        event text NOT NULL,
        "key" text NOT NULL,
        flow_id bigint NOT NULL,
        org_id text NOT NULL,
        trigger_time bigint NOT NULL,
        attempt text NOT NULL,
        "at" text,
        gateway text,
        extras jsonb NOT NULL DEFAULT '{{}}'
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS {t_ident} ON {t} (ident)",
    # text_pattern_ops serves both the plan's keys (=) and its flows' prefixes (LIKE 'o/f/%').
    'CREATE INDEX IF NOT EXISTS {t_key} ON {t} ("key" text_pattern_ops)',
    "CREATE INDEX IF NOT EXISTS {t_sim} ON {t} (id) WHERE gateway = 'sim'",
    """CREATE TABLE IF NOT EXISTS {locks} (
        pid integer PRIMARY KEY,
        run text NOT NULL,
        host text NOT NULL,
        process integer NOT NULL,
        started text NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS {meta} (name text PRIMARY KEY, value text NOT NULL)",
)
VERSION_ROW = "schema_version"

INSERT = """INSERT INTO {t} (ident, v, event, "key", flow_id, org_id, trigger_time, attempt, "at", gateway, extras)
    SELECT * FROM unnest(%s::bytea[], %s::integer[], %s::text[], %s::text[], %s::bigint[],
                         %s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::jsonb[])
    ON CONFLICT (ident) DO NOTHING"""

# What the fold needs of a row, and no more: the flowInstanceId only when it is a string
# (as ``KeyState`` reads it), ``found`` only when it is JSON true, code and msg of failures,
# and a rerun round's ``round``, ``sentTime`` and ``parameters`` (``extras``: no column, so
# the table's layout, and its schema version, stay as they were).
FOLD = """SELECT event, "key", attempt, "at", gateway,
        CASE WHEN "at" IS NULL THEN extras -> 'at' END,
        CASE WHEN jsonb_typeof(extras -> 'flowInstanceId') = 'string'
             THEN extras ->> 'flowInstanceId' END,
        (extras -> 'found') = 'true'::jsonb,
        CASE WHEN event = 'failed' THEN jsonb_build_array(extras -> 'code', extras -> 'msg') END,
        extras -> 'round', extras -> 'sentTime', extras -> 'parameters'
    FROM {t} WHERE coalesce(gateway = 'sim', false) = %s"""

HOLDER_OF_KEY = """SELECT l.run, l.host, l.process, l.started
    FROM pg_locks p JOIN {locks} l ON l.pid = p.pid
    WHERE p.locktype = 'advisory' AND p.granted AND p.objsubid = 1
      AND p.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND p.classid::bigint = %s AND p.objid::bigint = %s"""

ANY_HOLDER = """SELECT l.run, l.host, l.process, l.started FROM {locks} l
    WHERE EXISTS (SELECT 1 FROM pg_locks p WHERE p.pid = l.pid AND p.locktype = 'advisory'
                  AND p.granted) ORDER BY l.started LIMIT 1"""


def columns_and_extras(rec: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """A record as its column values (None where the value has another type) and the rest."""
    values: list[Any] = []
    for name, _, kind in COLUMNS:
        value = rec.get(name)
        values.append(value if type(value) is kind else None)
    extras = {k: v for k, v in rec.items() if type(v) is not KIND.get(k)}
    return values, extras


def dumps(obj: Any) -> str:
    """JSON text for a ``jsonb`` parameter."""
    return orjson.dumps(obj).decode()


def to_record(row: tuple[Any, ...]) -> dict[str, Any]:
    """A stored row back as the record it was (columns first, then ``extras``)."""
    _, v, event, key, flow_id, org_id, trigger_time, attempt, at, gateway, extras = row
    rec: dict[str, Any] = {
        "v": v,
        "event": event,
        "key": key,
        "flowId": flow_id,
        "orgId": org_id,
        "triggerTime": trigger_time,
        "attempt": attempt,
    }
    if at is not None:
        rec["at"] = at
    if gateway is not None:
        rec["gateway"] = gateway
    rec.update(extras)
    return rec

DEFAULT_TABLE = "planrunner_ledger"
TABLE_PARAM = "table"  # planrunner's own URL query parameter, removed before connecting
# Names derived from the table (``<table>_meta``, ``<table>_locks``, index names) must fit
# PostgreSQL's 63-byte identifiers.
MAX_TABLE_NAME = 57
_TABLE_RE = re.compile(r"[a-z_][a-z0-9_]*")

CONNECT_TIMEOUT_SECONDS = 10  # unless the URL sets connect_timeout
# The longest one statement may run (a fold's fetch, a commit) before the server cancels it,
# so a database that hangs (a lock held elsewhere, a stuck server) ends the run with exit 3.
STATEMENT_TIMEOUT_SECONDS = 120.0
ENV_STATEMENT_TIMEOUT = "PLANRUNNER_LEDGER_STATEMENT_TIMEOUT"  # seconds (tests shorten it)
# Sent data unacknowledged this long (the server's host is gone) breaks the connection.
TCP_USER_TIMEOUT_MS = 30_000
# A dead peer is noticed within about IDLE + INTERVAL * COUNT seconds, on both ends.
KEEPALIVE_IDLE_SECONDS = 10
KEEPALIVE_INTERVAL_SECONDS = 5
KEEPALIVE_COUNT = 3


def _masked_params(query: str) -> list[tuple[str, str]]:
    return [
        (k, "***" if "password" in k.lower() else v)
        for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True)
    ]


class Url:
    """A ``postgresql://`` URL split into what libpq gets and what planrunner keeps."""

    def __init__(self, url: str) -> None:
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            raise LedgerError("invalid PostgreSQL ledger URL (cannot parse it)") from None
        params = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        tables = [v for k, v in params if k == TABLE_PARAM]
        table = tables[-1] if tables else DEFAULT_TABLE
        if not _TABLE_RE.fullmatch(table) or len(table) > MAX_TABLE_NAME:
            raise LedgerError(
                f"invalid ledger table name {table!r} in the URL: use lowercase letters, digits "
                f"and underscores, starting with a letter or underscore, at most {MAX_TABLE_NAME} characters"
            )
        self.table = table
        rest = [(k, v) for k, v in params if k != TABLE_PARAM]
        self.secrets = [
            s
            for s in (
                urllib.parse.unquote(parts.password or ""),
                parts.password or "",
                *(v for k, v in rest if "password" in k.lower()),
            )
            if s
        ]
        self.conninfo = urllib.parse.urlunsplit(
            parts._replace(query=urllib.parse.urlencode(rest))
        )
        self.has_connect_timeout = any(k == "connect_timeout" for k, _ in rest)
        netloc = parts.hostname or ""
        if ":" in netloc:  # an IPv6 address
            netloc = f"[{netloc}]"
        if port is not None:
            netloc += f":{port}"
        if parts.username is not None:
            user = parts.username + (":***" if parts.password is not None else "")
            netloc = f"{user}@{netloc}"
        shown = [*_masked_params(urllib.parse.urlencode(rest)), (TABLE_PARAM, table)]
        self.name = urllib.parse.urlunsplit(
            (parts.scheme, netloc, parts.path, urllib.parse.urlencode(shown, safe="*"), "")
        )

    def mask(self, text: str) -> str:
        """``text`` with every secret of the URL replaced by ``***``."""
        for s in self.secrets:
            text = text.replace(s, "***")
        return text


def fail(url: Url, what: str, e: BaseException) -> NoReturn:
    """Raise :class:`LedgerError` for ``e``: one line, the URL's secrets masked."""
    detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise LedgerError(f"{url.name}: {what}: {url.mask(detail)}") from None


def connect(url: Url, *, keepalive: bool = False) -> psycopg.Connection[Any]:
    """A new autocommit connection with planrunner's timeouts (and keepalives for a run's locks)."""
    kwargs: dict[str, Any] = {"autocommit": True}
    if not url.has_connect_timeout:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if keepalive:
        kwargs.update(
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE_SECONDS,
            keepalives_interval=KEEPALIVE_INTERVAL_SECONDS,
            keepalives_count=KEEPALIVE_COUNT,
        )
    if psycopg.pq.version() >= 120000:  # libpq 12 knows tcp_user_timeout
        kwargs["tcp_user_timeout"] = TCP_USER_TIMEOUT_MS
    try:
        if _BOUNDED_WAIT:
            bounded = _BoundedConnection.connect(url.conninfo, **kwargs)
            bounded.bound = client_timeout()
            conn: psycopg.Connection[Any] = bounded
        else:
            conn = psycopg.connect(url.conninfo, **kwargs)
    except psycopg.Error as e:
        fail(url, "cannot connect", e)
    try:
        conn.execute(
            sql.SQL("SET statement_timeout = {}").format(
                sql.Literal(int(statement_timeout() * 1000))
            )
        )
    except psycopg.Error as e:
        conn.close()
        fail(url, "cannot set up the connection", e)
    if keepalive:
        # The server's side too, so it drops a vanished runner's locks within seconds.
        try:
            for setting, value in (
                ("tcp_keepalives_idle", KEEPALIVE_IDLE_SECONDS),
                ("tcp_keepalives_interval", KEEPALIVE_INTERVAL_SECONDS),
                ("tcp_keepalives_count", KEEPALIVE_COUNT),
            ):
                conn.execute(
                    sql.SQL("SET {} = {}").format(sql.Identifier(setting), sql.Literal(value))
                )
        except psycopg.Error as e:
            conn.close()
            fail(url, "cannot set up the connection", e)
    return conn


def statement_timeout() -> float:
    """``$PLANRUNNER_LEDGER_STATEMENT_TIMEOUT`` seconds, else :data:`STATEMENT_TIMEOUT_SECONDS`."""
    text = os.environ.get(ENV_STATEMENT_TIMEOUT)
    if not text:
        return STATEMENT_TIMEOUT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 86_400:
        raise LedgerError(
            f"${ENV_STATEMENT_TIMEOUT}: {text[:40]!r} is not a number of seconds above 0 "
            "(below a day)"
        )
    return value


def client_timeout() -> float:
    """How long planrunner itself waits for any answer of the database: the statement
    timeout and a margin, so a server that cannot even cancel (a stopped process behind
    a live network stack) still ends the command."""
    st = statement_timeout()
    return st + max(1.0, st / 4)


_RV = TypeVar("_RV")
# psycopg 3.2 and later bound a wait (``Connection.wait(..., timeout=)``); 3.1 cannot.
_BOUNDED_WAIT = "timeout" in inspect.signature(psycopg.Connection.wait).parameters


class _BoundedConnection(psycopg.Connection[Any]):
    """A connection whose every wait for the server ends after :func:`client_timeout`."""

    bound = STATEMENT_TIMEOUT_SECONDS

    def wait(self, gen: PQGen[_RV], interval: float = 0.1, timeout: float | None = None) -> _RV:
        try:
            return super().wait(gen, interval, self.bound if timeout is None else timeout)
        except psycopg.errors.OperationalError as e:
            if type(e).__name__ != "_WaitTimeout":
                raise
            # The protocol stopped halfway: the connection can never be used again.
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"the database did not answer within {self.bound:g} s (is the server stopped?)"
            ) from None
