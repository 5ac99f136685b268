"""The ledger (DESIGN 4, 9): the record format, the fold, and the file and PostgreSQL backends.

- :mod:`.records`: the record format, its constructors, the one ``validate`` and ``identity``;
- :mod:`.fold`: ``KeyState``, ``Folded`` and the one fold loop every backend feeds;
- :mod:`.base`: the ``Backend`` interface and the group commit both backends share;
- :mod:`.file`: the JSON-lines file (the default), with :mod:`.lock`, its lock;
  :mod:`.postgres`: a PostgreSQL table, with :mod:`.pgsql`, its SQL and connections;
- :mod:`.tools`: verify, compaction and history (``planrunner ledger ...``).

This module is the registry: :func:`open_ledger` picks the backend a ``--ledger`` value
names (importing PostgreSQL's only when needed). It re-exports the names the rest of the
code reads as ``ledger.X``.
"""

from __future__ import annotations

from planrunner import log
from planrunner.errors import UsageError
from planrunner.ledger.base import Backend, GroupCommit, Ledger, Session, Sink
from planrunner.ledger.file import (
    FileLedger,
    Writer,
    fold,
    repair_tail,
    torn_record,
    undecodable,
)
from planrunner.ledger.fold import (
    CANCELLED,
    DONE,
    FAILED,
    PENDING,
    UNKNOWN,
    Folded,
    KeyState,
    Round,
    fold_into,
    gateway_host,
    note_folded,
)
from planrunner.ledger.lock import Lock, lock_holder
from planrunner.ledger.records import (
    EVENTS,
    SIM_GATEWAY,
    Ref,
    Send,
    aborted,
    cancelled,
    encode,
    failed,
    identity,
    intent,
    reconciled,
    record,
    triggered,
    unknown,
    validate,
)

__all__ = [
    "CANCELLED",
    "DONE",
    "EVENTS",
    "FAILED",
    "PENDING",
    "POSTGRES_SCHEMES",
    "SIM_GATEWAY",
    "UNKNOWN",
    "Backend",
    "FileLedger",
    "Folded",
    "GroupCommit",
    "KeyState",
    "Ledger",
    "Lock",
    "Ref",
    "Round",
    "Send",
    "Session",
    "Sink",
    "Writer",
    "aborted",
    "cancelled",
    "default_path",
    "encode",
    "failed",
    "fold",
    "fold_into",
    "gateway_host",
    "identity",
    "intent",
    "is_postgres",
    "lock_holder",
    "note_folded",
    "open_ledger",
    "read_for_plan",
    "reconciled",
    "record",
    "repair_tail",
    "sim_path",
    "torn_record",
    "triggered",
    "undecodable",
    "unknown",
    "validate",
]


def default_path(plan_path: str) -> str:
    """The plan's path with ``.yaml``/``.yml`` replaced by ``.ledger.jsonl``."""
    for suffix in (".yaml", ".yml"):
        if plan_path.endswith(suffix):
            return plan_path[: -len(suffix)] + ".ledger.jsonl"
    return plan_path + ".ledger.jsonl"


def sim_path(plan_path: str) -> str:
    """``--sim``'s own ledger, ``PLAN.sim.ledger.jsonl``: a demo never touches the real one."""
    return default_path(plan_path).removesuffix(".ledger.jsonl") + ".sim.ledger.jsonl"


def read_for_plan(
    ledger: Backend | str,
    keys: set[str],
    *,
    sim: bool = False,
    orphans_of: set[str] | None = None,
    gateway: str | None = None,
) -> Folded:
    """The fold ``plan`` shows (its statuses are the report's rule: ``report.plan_statuses``).

    ``plan`` has no ``--gateway``: records of every real gateway count, and those of a
    gateway other than ``gateway`` (the plan's) get a note, since apply would ignore them.
    """
    backend = FileLedger(ledger) if isinstance(ledger, str) else ledger
    folded = backend.read(
        keys, sim=sim, orphans_of=orphans_of, gateway=gateway, other_gateways_count=True
    )
    if folded.torn_line is not None:
        log.get("ledger").warning(
            "ledger has an incomplete last line (an apply may be writing); ignoring it",
            ledger=backend.name,
            line=folded.torn_line,
        )
    return folded


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(spec: str) -> bool:
    """Whether a ``--ledger`` value names a PostgreSQL ledger."""
    return spec.startswith(POSTGRES_SCHEMES)


def open_ledger(spec: str) -> Backend:
    """The ledger a ``--ledger`` value (or a default path) names."""
    if is_postgres(spec):
        import importlib

        try:
            postgres = importlib.import_module("planrunner.ledger.postgres")
        except ModuleNotFoundError as e:
            raise UsageError(
                f"a PostgreSQL ledger needs the postgres extra: pip install 'planrunner[postgres]' ({e.name} is missing)"
            ) from None
        backend: Backend = postgres.PostgresLedger(spec)
        return backend
    return FileLedger(spec)
