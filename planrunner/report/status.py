"""What ``status`` shows: text, JSON (``formatVersion`` 1) and markdown of a
:class:`runs.watch.Result`: per flow the counts by status, and each failed instance with
its failed task and the tail of that task's log."""

from __future__ import annotations

import html
from typing import Any

from planrunner import lookup, times
from planrunner.errors import EXIT_PENDING
from planrunner.lookup import Seen
from planrunner.outcome import Entry
from planrunner.report import MARKDOWN_LIMIT, fit
from planrunner.report import md_escape as _md
from planrunner.runs.watch import LOG_MAX_LENGTH, LOGS_PER_FLOW, Result, Tail

FAILED_SHOWN = LOGS_PER_FLOW  # failed instances listed per flow in text (JSON lists all)
MARKDOWN_FAILED_SHOWN = 50


def _utc(ms: int | None) -> str | None:
    return None if ms is None else times.format_utc(ms)


def _failed_item(e: Entry, s: Seen, tail: Tail | None) -> dict[str, Any]:
    return {
        "key": e.key,
        "triggerTime": e.trigger_time,
        "time": e.local_time,
        "flowInstanceId": s.flow_instance_id,
        "status": s.state,
        "startTime": _utc(s.start),
        "endTime": _utc(s.end),
        "seconds": s.seconds,
        "failedTask": s.failed_task,
        "logTail": None if tail is None or tail.lines is None else list(tail.lines),
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
                "failed": [_failed_item(e, s, r.tails.get(e.key)) for e, s in states if s.failed],
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
            lines += _why_text(s, r.tails.get(e.key))
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


def _why_text(s: Seen, tail: Tail | None) -> list[str]:
    """Under a failed instance: its failed task and the tail of that task's log."""
    if not s.failed_task:
        return []
    out = [f"      failed task: {s.failed_task}"]
    if tail is not None and tail.lines is not None:
        out.append(f"      {_tail_title(tail)}:" if tail.lines else "      (empty log)")
        out += [f"      | {line}" for line in tail.lines]
    elif tail is not None:
        out.append(f"      (no log: {tail.reason})")
    return out


def _tail_title(tail: Tail) -> str:
    """``last 20 log lines``, and that the service cut the log when it did."""
    assert tail.lines is not None
    if tail.cut:  # which end the service keeps is not documented: say it was cut
        return f"last {len(tail.lines)} lines of a log the service cut at {LOG_MAX_LENGTH:,} characters"
    return f"last {len(tail.lines)} log lines"


def _failed_table(name: str, bad: list[tuple[Entry, Seen]]) -> str:
    """A flow's failed instances, folded: time, status, failed task, instance, run time."""
    block = [
        f"<details><summary>{_md(name)}: {len(bad)} failed</summary>",
        "",
        "| time | triggerTime | status | failed task | instance | ran |",
        "|---|---:|---|---|---|---:|",
    ]
    block += [
        f"| `{e.local_time}` | {e.trigger_time} | {s.state} | {_md(s.failed_task or '-')} "
        f"| {_md(s.flow_instance_id or '-')} | {duration(s.seconds)} |"
        for e, s in bad[:MARKDOWN_FAILED_SHOWN]
    ]
    if len(bad) > MARKDOWN_FAILED_SHOWN:
        block.append(f"| … {len(bad) - MARKDOWN_FAILED_SHOWN} more | | | | | |")
    return "\n".join([*block, "", "</details>", ""])


def _log_block(name: str, e: Entry, s: Seen, tail: Tail) -> str:
    """One failed instance's log tail, folded; the log as preformatted, escaped text."""
    if tail.lines is None:
        what, body = f"no log: {tail.reason}", []
    else:
        what = _tail_title(tail) if tail.lines else "an empty log"
        body = ["<pre>", *(html.escape(line, quote=False) for line in tail.lines), "</pre>", ""]
    summary = (
        f"<code>{_md(e.local_time)}</code> {_md(name)}: {s.state} in task "
        f"<b>{_md(s.failed_task or '-')}</b> ({_md(what)})"
    )
    return "\n".join([f"<details><summary>{summary}</summary>", "", *body, "</details>", ""])


def render_markdown(r: Result, limit: int = MARKDOWN_LIMIT) -> str:
    """A table per flow, each flow's failed instances, then the failed tasks' log tails
    (folded), as many as fit under ``limit`` characters (what is left out is said)."""
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
    logs: list[str] = []
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
            details.append(_failed_table(name, bad))
        logs += [
            _log_block(name, e, s, tail)
            for e, s in bad
            if (tail := r.tails.get(e.key)) is not None
        ]
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
    text = fit(out, details, limit, "_{} flows' failed lists left out to fit a comment._")
    if not logs or len(text) + 200 > limit:
        return text
    head = [text, "#### Why they failed: the failed task's log", ""]
    return fit(
        head,
        logs,
        limit,
        "_{} failed instances' logs left out to fit a comment; see "
        "`planrunner status --format json`._",
    )


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
