"""Renderings of ``ledger log`` (a ledger's history) and ``ledger verify`` (its check): text and JSON.

What they render is gathered by the ledger tools; these functions only turn it into text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from planrunner.outcome import Event
from planrunner.report import FORMAT_VERSION

# The fields every record has: the text shows the others after the event.
COMMON_FIELDS = frozenset({"v", "event", "key", "flowId", "orgId", "triggerTime", "attempt", "at"})
EVENT_WIDTH = max(len(e) for e in Event)  # events line up in the text: "reconciled" is 10


@dataclass(frozen=True, slots=True)
class History:
    """``ledger log``'s result: the runs and keys of the records its filter chose."""

    ledger: str
    filter: dict[str, Any]  # key, flow, run, since, until as given (None: not given)
    runs: list[dict[str, Any]]  # run, first, last, attempts, events (event -> count)
    keys: list[dict[str, Any]]  # key, flowId, orgId, triggerTime, time, flows, state, records
    shown: int  # records the filter chose
    total: int  # records in the ledger


@dataclass(frozen=True, slots=True)
class Verified:
    """``ledger verify``'s result: what was read and every problem found."""

    ledger: str
    lines: int
    records: int
    counts: dict[str, dict[str, int]]  # "real"/"sim" -> key status -> keys
    problems: list[str]


def details(rec: Mapping[str, Any]) -> str:
    """A record's own fields (beyond the ones every record has), as ``name value, ...``."""
    return ", ".join(f"{k} {v}" for k, v in rec.items() if k not in COMMON_FIELDS)


def history_json(h: History) -> str:
    """One JSON object (docs/status.md, "ledger log")."""
    doc = {
        "formatVersion": FORMAT_VERSION,
        "ledger": h.ledger,
        "filter": h.filter,
        "runs": h.runs,
        "keys": h.keys,
        "error": None,
    }
    return orjson.dumps(doc).decode()


def history_text(h: History) -> str:
    """The runs, then each key with its state and its records, oldest first."""
    lines = [f"Ledger {h.ledger}: {h.shown} of {h.total} records, {len(h.keys)} keys", ""]
    if h.runs:
        lines.append("runs:")
        for row in h.runs:
            events = ", ".join(f"{n} {e}" for e, n in sorted(row["events"].items()))
            lines.append(
                f"  {row['run']}  {row['first']} .. {row['last']}  {row['attempts']} attempts ({events})"
            )
        lines.append("")
    for k in h.keys:
        state = ", ".join(f"{v}" if kind == "real" else f"{v} (sim)" for kind, v in k["state"].items())
        names = f"  {', '.join(k['flows'])}" if k["flows"] else f"  flow {k['flowId']}"
        lines.append(f"{k['time']}{names}  {state}  ({k['key']})")
        for rec in k["records"]:
            lines.append(
                f"  {rec['at']!s}  {rec['event']:<{EVENT_WIDTH}}  {rec['attempt']}  {details({kk: vv for kk, vv in rec.items() if kk != 'where'})}"
            )
    if not h.keys:
        lines.append("no records match")
    return "\n".join(lines)


def verified_json(v: Verified) -> str:
    """One JSON object (docs/status.md, "ledger verify")."""
    doc = {
        "formatVersion": FORMAT_VERSION,
        "ledger": v.ledger,
        "lines": v.lines,
        "records": v.records,
        "counts": v.counts,
        "problems": v.problems,
        "ok": not v.problems,
    }
    return orjson.dumps(doc).decode()


def verified_text(v: Verified) -> str:
    """What was read, the keys per status, every problem, and the verdict."""
    lines = [f"Ledger {v.ledger}: {v.records} records in {v.lines} lines"]
    for kind, c in v.counts.items():
        if c or kind == "real":
            text = ", ".join(f"{n} {s}" for s, n in c.items()) or "no keys"
            lines.append(f"  {kind:<4}  {sum(c.values())} keys: {text}")
    lines += [f"problem: {p}" for p in v.problems]
    lines.append(f"{len(v.problems)} problems found." if v.problems else "ok: every line is a valid record.")
    return "\n".join(lines)


# By --format.
HISTORY_RENDERERS: dict[str, Callable[[History], str]] = {"text": history_text, "json": history_json}
VERIFY_RENDERERS: dict[str, Callable[[Verified], str]] = {"text": verified_text, "json": verified_json}
