"""What ``plan --refresh`` adds to a plan's report (DESIGN 13): each done entry's instance,
the reruns the next apply will make (and those it cannot), and the done entries applied with
other parameters than the plan's now. Plain ``plan`` shows only the last."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from planrunner import lookup, times
from planrunner.outcome import Entry
from planrunner.report import md_escape

if TYPE_CHECKING:
    from planrunner.runs.rerun import Refreshed

SHOWN = 5  # keys listed in text and markdown before "... N more"


def words(seen: Refreshed, offset: int) -> str:
    """``FAIL, rerun at 2026-01-06T02:01:00+00:00 (round 1)`` beside an entry."""
    text = seen.instance if not seen.round else f"{seen.instance} (round {seen.round})"
    if seen.rerun is not None and seen.rerun.sent_time is not None:
        at = times.format_local(seen.rerun.sent_time, offset)
        return f"{text}, rerun at {at} (round {seen.rerun.round})"
    return f"{text}, {seen.why}" if seen.why else text


def entry_json(seen: Refreshed, offset: int) -> str:
    """The ``"refresh"`` object of an entry in ``plan --refresh --format json``."""
    rerun = None
    if seen.rerun is not None and seen.rerun.sent_time is not None:
        at = seen.rerun.sent_time
        rerun = {"round": seen.rerun.round, "sentTime": at, "time": times.format_local(at, offset)}
    doc = {
        "instance": seen.instance,
        "flowInstanceId": seen.flow_instance_id,
        "round": seen.round,
        "rerun": rerun,
        "cannotRerun": seen.why,
    }
    return json.dumps(doc)


def summary(
    refreshed: Mapping[str, Refreshed], entries: list[Entry]
) -> tuple[dict[str, int], int, int, list[str]]:
    """(instances by status, reruns the next apply makes, entries it cannot rerun, and the
    first few of both as ``key  words`` lines)."""
    counts = lookup.counts(s.instance for s in refreshed.values())
    reruns = sum(1 for s in refreshed.values() if s.rerun is not None)
    blocked = sum(1 for s in refreshed.values() if s.why)
    due = [(e, s) for e in entries if (s := refreshed.get(e.key)) and (s.rerun is not None or s.why)]
    shown = [f"{e.key}  {words(s, e.offset)}" for e, s in due[:SHOWN]]
    if len(due) > SHOWN:
        shown.append(f"... {len(due) - SHOWN:,} more")
    return counts, reruns, blocked, shown


def lines(
    refreshed: Mapping[str, Refreshed] | None,
    entries: list[Entry],
    changed: list[str] | None,
    *,
    md: bool = False,
) -> list[str]:
    """The section above the entries (``md``: in markdown): instances by status, the reruns
    to come and those that cannot be made, and the entries applied with other parameters."""
    out: list[str] = []
    bold = (lambda n: f"**{n}**") if md else str
    if refreshed is not None:
        counts, reruns, blocked, due = summary(refreshed, entries)
        shown = ", ".join(f"{bold(n)} {s}" for s, n in counts.items()) or "none done"
        out.append(
            f"Refreshed from the service: instances {shown}; the next apply reruns {bold(reruns)}"
            + (f", {bold(blocked)} cannot be rerun" if blocked else "")
            + ("." if reruns or blocked else " (none failed, or no rerunFailed / --rerun-failed).")
        )
        out += [f"- {md_escape(line)}" if md else f"  - {line}" for line in due]
        out.append("")
    if changed:
        n = len(changed)
        out.append(
            f"{n:,} entr{'y was' if n == 1 else 'ies were'} applied with other parameters than the "
            "plan's now (apply does not send them again):"
        )
        keys = [f"`{k}`" if md else k for k in changed[:SHOWN]]
        more = [f"… {n - SHOWN:,} more"] if n > SHOWN else []
        out += [f"- {k}" if md else f"  - {k}" for k in [*keys, *more]]
        out.append("")
    return out
