"""Values several commands read the same way: the moment, limits, the ledger's place."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from planrunner import times
from planrunner.errors import UsageError
from planrunner.plan import Plan
from planrunner.resolve import DEFAULT_MAX_TRIGGERS, Entry
from planrunner.select import Selection

ENV_LEDGER = "PLANRUNNER_LEDGER"


def now(text: str | None) -> int:
    """``--now``, else this moment, as epoch ms."""
    if text is None:
        return time.time_ns() // 1_000_000
    try:
        return times.parse_now(text)
    except times.TimeError as e:
        raise UsageError(f"--now: {e}") from None


def max_triggers(value: int | None) -> int:
    """``--max-triggers``, else the default."""
    return value or DEFAULT_MAX_TRIGGERS


def ledger_spec(value: str | None) -> str | None:
    """``--ledger``, else ``$PLANRUNNER_LEDGER``, else None (the plan's default).

    A ``--ledger`` URL that carries a password gets a warning (:func:`warn_password`).
    """
    if value:
        warn_password(value, "--ledger")
    return value or os.environ.get(ENV_LEDGER) or None


def has_password(spec: str) -> bool:
    """Whether a PostgreSQL ledger URL carries a password (in its user part or its query)."""
    import urllib.parse

    from planrunner import ledger

    if not ledger.is_postgres(spec):
        return False
    try:
        parts = urllib.parse.urlsplit(spec)
        if parts.password:
            return True
        return any(
            "password" in k.lower() and v
            for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        )
    except ValueError:
        return False


def warn_password(spec: str, option: str) -> None:
    """Warn that a password on the command line is visible to every local user (``ps``)."""
    from planrunner import log

    if has_password(spec):
        log.get("ledger").warning(
            f"{option} carries a password: every local user can read it in the process list "
            f"while this runs; put the URL in ${ENV_LEDGER}, or the password in $PGPASSWORD "
            "or ~/.pgpass, instead"
        )


def selection(
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    start: str | None = None,
    end: str | None = None,
) -> Selection:
    """``--flow``, ``--exclude``, ``--from`` and ``--to`` as a :class:`Selection`."""
    from planrunner.select import window

    return Selection(tuple(include or ()), tuple(exclude or ()), *window(start, end))


def select(plan: Plan, entries: list[Entry], chosen: Selection) -> list[Entry]:
    """The entries of the selected flows and times (every entry when nothing is left out)."""
    if chosen.everything:
        return entries
    names = chosen.names([f.name for f in plan.flows])
    return [e for e in entries if e.flow in names and chosen.in_window(e.trigger_time)]


def note_missing(ledger_spec: str | None) -> None:
    """A note when a ledger named explicitly (``--ledger``) does not exist yet.

    For the commands that read a ledger (plan, status, ledger log and export), where a
    missing one is most likely a wrong path; not for apply or import, where creating the
    ledger is the normal first run.
    """
    from planrunner import ledger, log

    if ledger_spec and not ledger.is_postgres(ledger_spec) and not os.path.lexists(ledger_spec):
        log.get("ledger").warning(
            "the ledger given does not exist: it is treated as empty (check the path)",
            ledger=ledger_spec,
        )


def gateway_id(plan: Plan, gateway: str | None, sim: bool) -> str:
    """How the ledger's records name the gateway a command works against: ``sim`` for
    ``--sim``, else ``scheme://host[:port]`` of ``--gateway`` or the plan's gateway (as apply
    records it), so that records of another gateway never count for this one."""
    from planrunner import ledger, protocol

    if sim:
        return ledger.SIM_GATEWAY
    return protocol.origin((gateway or plan.target.gateway).rstrip("/"))
