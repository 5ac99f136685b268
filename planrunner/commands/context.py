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
    """``--ledger``, else ``$PLANRUNNER_LEDGER``, else None (the plan's default)."""
    return value or os.environ.get(ENV_LEDGER) or None


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
    """A note when a ledger named explicitly (``--ledger``) does not exist yet."""
    from planrunner import ledger, log

    if ledger_spec and not ledger.is_postgres(ledger_spec) and not os.path.lexists(ledger_spec):
        log.get("ledger").warning(
            "the ledger given does not exist: it is treated as empty (check the path)",
            ledger=ledger_spec,
        )
