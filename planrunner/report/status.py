"""What ``status`` shows: text, JSON (``formatVersion`` 1) and markdown of a
:class:`runs.watch.Result` (to move into ``report/status.py``)."""

from __future__ import annotations

from typing import Any

from planrunner import lookup, times
from planrunner.errors import EXIT_PENDING
from planrunner.lookup import Seen
from planrunner.outcome import Entry
from planrunner.runs.watch import Result

FAILED_SHOWN = 20  # failed instances listed per flow in text output (JSON lists all)
MARKDOWN_LIMIT = 60_000
MARKDOWN_FAILED_SHOWN = 50


def _utc(ms: int | None) -> str | None:
    return None if ms is None else times.format_utc(ms)


def _failed_item(e: Entry, s: Seen) -> dict[str, Any]:
    return {
        "key": e.key,
        "triggerTime": e.trigger_time,
        "time": e.local_time,
        "flowInstanceId": s.flow_instance_id,
        "status": s.state,
        "startTime": _utc(s.start),
        "endTime": _utc(s.end),
        "seconds": s.seconds,
    }


def _problem_item(e: Entry, s: Seen) -> dict[str, Any]:
    return {
        "key": e.key,
        "triggerTime": e.trigger_time,
        "time": e.local_time,
        "flowInstanceId": s.flow_instance_id,
        "status": s.state,
        "reason": s.reason,
    }


def as_json(r: Result, error: str | None = None) -> dict[str, Any]:
    """The JSON document (``formatVersion`` 1)."""
    flows = []
    ids = {f.name: f.flow_id for f in r.plan.flows}
    for name, rows in r.by_flow().items():
        states = [(e, r.state(e)) for e in rows]
        flows.append(
            {
                "flow": name,
                "flowId": ids.get(name),
                "entries": len(rows),
                "counts": lookup.counts(s.state for _, s in states),
                "failed": [_failed_item(e, s) for e, s in states if s.failed],
                "problems": [
                    _problem_item(e, s)
                    for e, s in states
                    if s.state in (lookup.NOT_FOUND, lookup.LOOKUP_FAILED)
                ],
                "cancelled": sum(1 for e, _ in states if e.key in r.cancelled),
            }
        )
    return {
        "formatVersion": 1,
        "plan": r.plan.path,
        "ledger": r.ledger,
        "gateway": r.gateway,
        "selection": r.selection.as_json(),
        "flows": flows,
        "summary": r.summary(),
        "final": r.exit_code() != EXIT_PENDING,
        "error": error,
    }


def _count_text(c: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in c.items()) or "nothing"


def render_text(r: Result) -> str:
    """Per flow its counts and its failed instances; a summary line."""
    lines = [
        f"Status {r.plan.path}",
        f"  ledger  {r.ledger}",
        f"  gateway {r.gateway}",
        f"  flows   {r.selection.describe()}",
        "",
    ]
    ids = {f.name: f.flow_id for f in r.plan.flows}
    for name, rows in r.by_flow().items():
        states = [(e, r.state(e)) for e in rows]
        lines.append(
            f"flow {name} (flowId {ids.get(name)}): {len(rows)} entr{'y' if len(rows) == 1 else 'ies'}: "
            f"{_count_text(lookup.counts(s.state for _, s in states))}"
        )
        failed = [(e, s) for e, s in states if s.failed]
        for e, s in failed[:FAILED_SHOWN]:
            lines.append(
                f"  ! {e.local_time}  {e.trigger_time}  {s.state:<14} {s.flow_instance_id or '-'}"
                f"  ran {duration(s.seconds)}"
                + (f"  started {_utc(s.start)}" if s.start is not None else "")
                + ("  (cancelled by planrunner)" if e.key in r.cancelled else "")
            )
        if len(failed) > FAILED_SHOWN:
            lines.append(
                f"    ... {len(failed) - FAILED_SHOWN} more failed (see --format json) ..."
            )
        for e, s in states:
            if s.state in (lookup.NOT_FOUND, lookup.LOOKUP_FAILED):
                lines.append(f"  ? {e.local_time}  {e.trigger_time}  {s.state}: {s.reason}")
        lines.append("")
    if r.sim:
        lines.append(
            "(--sim: the embedded simulator's instances ended with its apply run; "
            "done entries are shown from the ledger, not looked up)"
        )
    lines.append(f"Status: {len(r.entries)} entries ({_count_text(r.summary())}).")
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(r: Result, limit: int = MARKDOWN_LIMIT) -> str:
    """A table per flow and the failed instances, under ``limit`` characters."""
    summary = ", ".join(f"**{n}** {s}" for s, n in r.summary().items()) or "nothing"
    out = [
        f"<!-- planrunner-status:{r.plan.path} -->",
        f"### planrunner status `{_md(r.plan.path)}`",
        "",
        f"{len(r.entries)} entries: {summary} · {_md(r.selection.describe())}",
        "",
        "| flow | flowId | entries | succeeded | failed | running | not triggered | other |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ids = {f.name: f.flow_id for f in r.plan.flows}
    details: list[str] = []
    for name, rows in r.by_flow().items():
        states = [(e, r.state(e)) for e in rows]
        ok = sum(1 for _, s in states if s.state in lookup.SUCCEEDED_NAMES)
        bad = [(e, s) for e, s in states if s.failed]
        going = sum(1 for _, s in states if not s.final and s.state != lookup.LOOKUP_FAILED)
        waiting = sum(1 for _, s in states if s.state == lookup.NOT_TRIGGERED)
        other = len(rows) - ok - len(bad) - going - waiting
        out.append(
            f"| {_md(name)} | {ids.get(name)} | {len(rows)} | {ok} | {len(bad)} | {going} | {waiting} | {other} |"
        )
        if bad:
            block = [
                f"<details><summary>{_md(name)}: {len(bad)} failed</summary>",
                "",
                "| time | triggerTime | status | instance | ran |",
                "|---|---:|---|---|---:|",
            ]
            block += [
                f"| `{e.local_time}` | {e.trigger_time} | {s.state} | {_md(s.flow_instance_id or '-')} | {duration(s.seconds)} |"
                for e, s in bad[:MARKDOWN_FAILED_SHOWN]
            ]
            if len(bad) > MARKDOWN_FAILED_SHOWN:
                block.append(f"| … {len(bad) - MARKDOWN_FAILED_SHOWN} more | | | | |")
            block += ["", "</details>", ""]
            details.append("\n".join(block))
    out.append("")
    used = sum(len(x) + 1 for x in out)
    if used > limit - 200:  # many flows: keep the head and say so
        kept: list[str] = []
        size = 0
        for row in out:
            if size + len(row) + 1 > limit - 200:
                break
            kept.append(row)
            size += len(row) + 1
        kept.append("_More flows left out to fit a comment; see `planrunner status --format json`._")
        return "\n".join(kept)
    shown = 0
    for text in details:
        if used + len(text) + 1 > limit - 200:
            break
        out.append(text)
        used += len(text) + 1
        shown += 1
    if shown < len(details):
        out.append(f"_{len(details) - shown} flows' failed lists left out to fit a comment._")
    return "\n".join(out)


def duration(seconds: float | None) -> str:
    """``12.3 s``, ``4:05`` or ``1:02:03``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
