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


Row = tuple[Entry, "Outcome | None"]


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

    def outcome_list(self) -> list[Outcome | None]:
        """Outcomes aligned with ``entries`` (None: the default status)."""
        return self._per_entry or [None] * len(self.entries)

    def status_of(self, outcome: Outcome | None) -> str:
        """The status an entry with ``outcome`` shows."""
        return self.default if outcome is None else outcome.status

    def by_flow(self) -> dict[str, list[Row]]:
        """(entry, outcome) rows grouped per flow, in plan order, each sorted by time."""
        groups: dict[str, list[Row]] = {f.name: [] for f in self.plan.flows if f.enabled}
        for row in zip(self.entries, self.outcome_list(), strict=True):
            groups[row[0].flow].append(row)
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


def _fold(r: Result, rows: Sequence[Row], head: int, tail: int) -> Iterator[Row | Folded]:
    """Rows, with long runs of one status cut to their first and last few."""
    i = 0
    n = len(rows)
    while i < n:
        status = r.status_of(rows[i][1])
        j = i + 1
        while j < n and r.status_of(rows[j][1]) == status:
            j += 1
        if j - i > head + tail + 1:
            yield from rows[i : i + head]
            yield Folded(status, j - i - head - tail)
            yield from rows[j - tail : j]
        else:
            yield from rows[i:j]
        i = j


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
        rows = groups[flow.name]
        lines.append(f"{title}: {len(rows)} entr{'y' if len(rows) == 1 else 'ies'}")
        if not rows:
            lines += ["  nothing due yet", ""]
            continue
        first, last = rows[0][0], rows[-1][0]
        lines.append(f"  first {first.local_time}  {first.trigger_time}")
        lines.append(f"  last  {last.local_time}  {last.trigger_time}")
        for row in _fold(r, rows, 3, 2):
            if isinstance(row, Folded):
                lines.append(f"    ... {row.count} more {row.status} ...")
                continue
            item, o = row
            status = r.status_of(o)
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
        flow_rows = groups[flow.name]
        per: dict[str, int] = {}
        for _, o in flow_rows:
            s = r.status_of(o)
            per[s] = per.get(s, 0) + 1
        first = f"`{flow_rows[0][0].local_time}`" if flow_rows else ""
        last = f"`{flow_rows[-1][0].local_time}`" if flow_rows else ""
        cells = " | ".join(str(per.get(s, 0)) for s in STATUS_ORDER[:4])
        rows.append(
            f"| {_md_escape(flow.name)} | {flow.flow_id} | {flow.zone_name} | {len(flow_rows)} | {first} | {last} | {cells} |"
        )
        if flow_rows:
            table = [
                f"<details><summary>{_md_escape(flow.name)}: {len(flow_rows)} entries</summary>",
                "",
                "| | time | triggerTime | status |",
                "|---|---|---:|---|",
            ]
            for row in _fold(r, flow_rows, 3, 2):
                if isinstance(row, Folded):
                    table.append(f"| | … {row.count} more {row.status} … | | |")
                else:
                    item, o = row
                    s = r.status_of(o)
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
