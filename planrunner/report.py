"""Renderings of plan and apply results: text (a reviewable diff), JSON, markdown."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

from planrunner import times
from planrunner.plan import Plan
from planrunner.resolve import Entry

MARKDOWN_LIMIT = 60_000
# Order in summaries: what will (or did) happen first, then what needs attention.
STATUS_ORDER = ("pending", "retry", "unknown", "done", "triggered", "skipped", "failed")
SYMBOLS = {
    "pending": "+",
    "retry": "~",
    "unknown": "?",
    "done": "=",
    "triggered": "+",
    "skipped": "=",
    "failed": "!",
}


class Outcome(NamedTuple):
    """What is known of one key beyond its default status (a NamedTuple: cheap to make)."""

    status: str
    flow_instance_id: str | None = None
    error: str | None = None


@dataclass(slots=True)
class Result:
    """Entries with their statuses, ready to render."""

    plan: Plan
    ledger: str
    now: int
    entries: Sequence[Entry]
    outcomes: Mapping[str, Outcome]
    default: str = "pending"
    summary: dict[str, int] = field(default_factory=dict)
    _per_entry: list[Outcome | None] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        # One lookup per entry, reused by the summary and every rendering.
        get = self.outcomes.get
        self._per_entry = [get(e.key) for e in self.entries] if self.outcomes else []
        counts: dict[str, int] = {}
        default_count = len(self.entries)
        for o in self._per_entry:
            if o is not None:
                counts[o.status] = counts.get(o.status, 0) + 1
                default_count -= 1
        if default_count:
            counts[self.default] = counts.get(self.default, 0) + default_count
        self.summary = {s: counts[s] for s in STATUS_ORDER if s in counts}

    def status(self, e: Entry) -> Outcome | None:
        """The outcome recorded for ``e``, None when it has the default status."""
        return self.outcomes.get(e.key) if self.outcomes else None

    def outcome_list(self) -> list[Outcome | None]:
        """Outcomes aligned with ``entries``."""
        return self._per_entry or [None] * len(self.entries)

    def by_flow(self) -> dict[str, list[Entry]]:
        """Entries grouped per flow, in plan order, each group sorted by time."""
        groups: dict[str, list[Entry]] = {f.name: [] for f in self.plan.flows if f.enabled}
        for e in self.entries:
            groups[e.flow].append(e)
        return groups


def _quote(value: str | None) -> str:
    return orjson.dumps(value).decode()


def render_json(r: Result) -> str:
    """One JSON object as DESIGN.md section 3 shows; one entry per line for diffs."""
    head = {"plan": r.plan.path, "ledger": r.ledger, "now": r.now}
    out = [json.dumps(head)[:-1] + ', "entries": [']
    quoted: dict[str, tuple[str, str, str]] = {}
    lines = []
    for e, o in zip(r.entries, r.outcome_list(), strict=True):
        q = quoted.get(e.flow)
        if q is None:
            q = (
                json.dumps(e.flow),
                json.dumps(e.org_id),
                json.dumps(f"{e.org_id}/{e.flow_id}/")[:-1],
            )
            quoted[e.flow] = q
        if o is None:
            tail = f'"status": "{r.default}", "flowInstanceId": null, "error": null}}'
        else:
            tail = (
                f'"status": "{o.status}", "flowInstanceId": {_quote(o.flow_instance_id)}, '
                f'"error": {_quote(o.error)}}}'
            )
        lines.append(
            f'{{"flow": {q[0]}, "flowId": {e.flow_id}, "orgId": {q[1]}, '
            f'"triggerTime": {e.trigger_time}, "time": "{e.local_time}", '
            f'"key": {q[2]}{e.trigger_time}", {tail}'
        )
    out.append(",\n".join(lines))
    out.append(f'], "summary": {json.dumps(r.summary)}}}')
    return "\n".join(out) if lines else out[0] + f'], "summary": {json.dumps(r.summary)}}}'


@dataclass(frozen=True, slots=True)
class Folded:
    """A run of ``count`` entries with one status, left out of a listing."""

    status: str
    count: int


def _fold(r: Result, entries: Sequence[Entry], head: int, tail: int) -> Iterator[Entry | Folded]:
    """Entries, with long runs of one status cut to their first and last few."""
    i = 0
    n = len(entries)
    while i < n:
        status = _status_name(r, entries[i])
        j = i + 1
        while j < n and _status_name(r, entries[j]) == status:
            j += 1
        if j - i > head + tail + 1:
            yield from entries[i : i + head]
            yield Folded(status, j - i - head - tail)
            yield from entries[j - tail : j]
        else:
            yield from entries[i:j]
        i = j


def _status_name(r: Result, e: Entry) -> str:
    o = r.status(e)
    return r.default if o is None else o.status


def _summary_line(r: Result, verb: str) -> str:
    parts = [f"{n} {s}" for s, n in r.summary.items()]
    total = len(r.entries)
    return f"{verb}: {total} entries" + (f" ({', '.join(parts)})" if parts else "") + "."


def render_text(r: Result, verb: str = "Plan") -> str:
    """Per flow a header, its first and last time, and its entries with runs folded."""
    lines = [
        f"{verb} {r.plan.path}",
        f"  ledger {r.ledger}",
        f"  now    {times.format_utc(r.now)} ({r.now})",
        "",
    ]
    groups = r.by_flow()
    for flow in r.plan.flows:
        title = f"flow {flow.name} (flowId {flow.flow_id}, {flow.zone_name})"
        if not flow.enabled:
            lines += [f"{title}: disabled", ""]
            continue
        entries = groups[flow.name]
        lines.append(f"{title}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
        if not entries:
            lines += ["  nothing due yet", ""]
            continue
        first, last = entries[0], entries[-1]
        lines.append(f"  first {first.local_time}  {first.trigger_time}")
        lines.append(f"  last  {last.local_time}  {last.trigger_time}")
        for item in _fold(r, entries, 3, 2):
            if isinstance(item, Folded):
                lines.append(f"    ... {item.count} more {item.status} ...")
                continue
            o = r.status(item)
            status = r.default if o is None else o.status
            extra = ""
            if o is not None and o.flow_instance_id:
                extra += f"  {o.flow_instance_id}"
            if o is not None and o.error:
                extra += f"  {o.error}"
            lines.append(
                f"  {SYMBOLS.get(status, ' ')} {item.local_time}  {item.trigger_time}  {status}{extra}"
            )
        lines.append("")
    lines.append(_summary_line(r, verb))
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(r: Result, limit: int = MARKDOWN_LIMIT) -> str:
    """A summary and per-flow tables for a pull-request comment, always under ``limit``."""
    counts = ", ".join(f"**{n}** {s}" for s, n in r.summary.items()) or "nothing"
    head = [
        f"### planrunner plan `{_md_escape(r.plan.path)}`",
        "",
        f"{len(r.entries)} entries: {counts} · now `{times.format_utc(r.now)}`",
        "",
        "| flow | flowId | zone | entries | first | last | " + " | ".join(STATUS_ORDER[:4]) + " |",
        "|---|---:|---|---:|---|---|" + "---:|" * 4,
    ]
    groups = r.by_flow()
    rows: list[str] = []
    details: list[str] = []
    for flow in r.plan.flows:
        if not flow.enabled:
            continue
        entries = groups[flow.name]
        per: dict[str, int] = {}
        for e in entries:
            s = _status_name(r, e)
            per[s] = per.get(s, 0) + 1
        first = f"`{entries[0].local_time}`" if entries else ""
        last = f"`{entries[-1].local_time}`" if entries else ""
        cells = " | ".join(str(per.get(s, 0)) for s in STATUS_ORDER[:4])
        rows.append(
            f"| {_md_escape(flow.name)} | {flow.flow_id} | {flow.zone_name} | {len(entries)} | {first} | {last} | {cells} |"
        )
        if entries:
            table = [
                f"<details><summary>{_md_escape(flow.name)}: {len(entries)} entries</summary>",
                "",
                "| | time | triggerTime | status |",
                "|---|---|---:|---|",
            ]
            for item in _fold(r, entries, 3, 2):
                if isinstance(item, Folded):
                    table.append(f"| | … {item.count} more {item.status} … | | |")
                else:
                    s = _status_name(r, item)
                    table.append(
                        f"| {SYMBOLS.get(s, '')} | `{item.local_time}` | {item.trigger_time} | {s} |"
                    )
            table += ["", "</details>", ""]
            details.append("\n".join(table))
    return _fit(head, rows, details, limit)


def _fit(head: list[str], rows: list[str], details: list[str], limit: int) -> str:
    """Join the parts, dropping flow details, then summary rows, until under ``limit``."""
    used = sum(len(x) + 1 for x in head)
    note_room = 200
    kept_rows: list[str] = []
    for row in rows:
        if used + len(row) + 1 + note_room > limit:
            break
        kept_rows.append(row)
        used += len(row) + 1
    out = [*head, *kept_rows]
    if len(kept_rows) < len(rows):
        out.append(
            f"| … {len(rows) - len(kept_rows)} more flows; see `planrunner plan --format json` | | | | | | | | | |"
        )
    out.append("")
    used = sum(len(x) + 1 for x in out)
    shown = 0
    for block in details:
        if used + len(block) + 1 + note_room > limit:
            break
        out.append(block)
        used += len(block) + 1
        shown += 1
    if shown < len(details):
        out.append(f"_{len(details) - shown} flows' entry lists left out to fit a comment._")
    return "\n".join(out)
