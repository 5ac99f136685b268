"""Values several commands read the same way: the moment, limits, the ledger's place."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from planrunner import times
from planrunner.errors import UsageError
from planrunner.plan import Plan
from planrunner.resolve import DEFAULT_MAX_TRIGGERS, Entry
from planrunner.select import Selection

if TYPE_CHECKING:  # the type only: commands that read no timing settings do not load the engine
    from planrunner.runs.apply import Options

ENV_LEDGER = "PLANRUNNER_LEDGER"
ENV_IN_FLIGHT = "PLANRUNNER_IN_FLIGHT_SECONDS"
ENV_READ_TIMEOUT = "PLANRUNNER_READ_TIMEOUT"
ENV_IN_FLIGHT_MARGIN = "PLANRUNNER_IN_FLIGHT_MARGIN"
ENV_DUPLICATE_WAIT = "PLANRUNNER_DUPLICATE_WAIT"


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


def _seconds_from_env(name: str) -> float | None:
    text = os.environ.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{name} must be a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise UsageError(f"{name} must be a number of seconds >= 0")
    return value


def settings_from_env(options: Options) -> Options:
    """Timing settings that tests shorten through the environment (documented in docs/apply.md)."""
    from planrunner.runs.apply import IN_FLIGHT_MARGIN

    in_flight = _seconds_from_env(ENV_IN_FLIGHT)
    duplicate_wait = _seconds_from_env(ENV_DUPLICATE_WAIT)
    read_timeout = _seconds_from_env(ENV_READ_TIMEOUT)
    margin = _seconds_from_env(ENV_IN_FLIGHT_MARGIN)
    if read_timeout is not None and not read_timeout > 0:
        raise UsageError(f"{ENV_READ_TIMEOUT} must be a number of seconds > 0")
    read_timeout = options.read_timeout if read_timeout is None else read_timeout
    if in_flight is None:
        # A request is surely over once the read timeout and a margin have passed.
        in_flight = read_timeout + (IN_FLIGHT_MARGIN if margin is None else margin)
    return dataclasses.replace(
        options,
        read_timeout=read_timeout,
        in_flight=in_flight,
        duplicate_wait=options.duplicate_wait if duplicate_wait is None else duplicate_wait,
    )
