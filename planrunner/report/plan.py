"""Renderings of plan and apply results: text (a reviewable diff), JSON, markdown."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from planrunner import times
from planrunner.outcome import KeyStatus, Outcome, Status
from planrunner.plan import Flow, Plan
from planrunner.report import (
    FORMAT_VERSION,
    MARKDOWN_LIMIT,
    NOTE_ROOM,
    columns,
    fit,
    gantt,
    markdown_marker,
    md_escape,
    refresh,
)
from planrunner.report.columns import (
    Calendar,
    entry_parameters_json,
    future_note,
    markdown_notes,
    pacing,
    parameter_lines,
)
from planrunner.resolve import Entry
from planrunner.select import Selection

if TYPE_CHECKING:
    from planrunner.ledger import Folded
    from planrunner.runs.rerun import Refreshed

# Moved to report.columns; still importable from here (and from planrunner.report).
schedule = columns.schedule
gap_moved = columns.gap_moved

FOLD_HEAD, FOLD_TAIL = 3, 2  # entries kept before and after a folded run
# Order in summaries: what will (or did) happen first, then what needs attention.
STATUS_ORDER = (
    Status.PENDING,
    Status.RETRY,
    Status.UNKNOWN,
    Status.DONE,
    Status.CANCELLED,
    Status.TRIGGERED,
    Status.RERUN,
    Status.RECONCILED,
    Status.SKIPPED,
    Status.FAILED,
)
PLAN_COLUMNS = STATUS_ORDER[:4]  # the statuses plan's markdown table counts per flow
MARKDOWN_FIXED_COLUMNS = ("flow", "flowId", "zone", "entries", "first", "last")
SYMBOLS = {
    Status.PENDING: "+",
    Status.RETRY: "~",
    Status.UNKNOWN: "?",
    Status.DONE: "=",
    Status.CANCELLED: "x",
    Status.TRIGGERED: "+",
    Status.RECONCILED: "=",
    Status.SKIPPED: "=",
    Status.FAILED: "!",
    Status.RERUN: "+",
}


# ANSI colours for the markers on a terminal (never with NO_COLOR or when piped).
COLOURS = {
    "+": "\x1b[32m",  # green: will be (or was) triggered
    "~": "\x1b[33m",  # yellow: retry
    "?": "\x1b[35m",  # magenta: unknown
    "!": "\x1b[31m",  # red: failed
    "=": "\x1b[2m",  # dim: done, nothing to do
    "x": "\x1b[2m",
}
RESET = "\x1b[0m"

Row = tuple[Entry, "Outcome | None"]


@dataclass(slots=True)
class PlanResult:
    """Entries with their statuses, ready to render."""

    plan: Plan
    ledger: str
    now: int
    entries: Sequence[Entry]
    outcomes: Mapping[str, Outcome]
    default: Status = Status.PENDING
    selection: Selection = field(default_factory=Selection)
    orphans: list[tuple[str, str, str | None]] = field(default_factory=list)
    error: str | None = None
    rate: dict[str, float | int | None] | None = None  # apply: the send rate learned from 429s
    # plan --refresh: done keys' newest instances and the reruns to come (report.refresh)
    refreshed: Mapping[str, Refreshed] | None = None
    changed_parameters: list[str] | None = None  # plan: done keys applied with other parameters
    summary: dict[str, int] = field(default_factory=dict, init=False)  # Status -> count, in STATUS_ORDER
    future: int = field(default=0, init=False)  # entries after `now`: the service holds them
    calendar: Calendar = field(default_factory=lambda: Calendar(None), init=False)
    _per_entry: list[Outcome | None] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.calendar = Calendar(self.plan.target.server_zone)
        now = self.now
        self.future = sum(1 for e in self.entries if e.trigger_time > now)
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

    def flows(self) -> list[Flow]:
        """The enabled flows the selection keeps, in plan order."""
        names = (
            None
            if self.selection.everything
            else self.selection.names([f.name for f in self.plan.flows])
        )
        return [f for f in self.plan.flows if f.enabled and (names is None or f.name in names)]

    def outcome_list(self) -> list[Outcome | None]:
        """Outcomes aligned with ``entries`` (None: the default status)."""
        return self._per_entry or [None] * len(self.entries)

    def status_of(self, outcome: Outcome | None) -> Status:
        """The status an entry with ``outcome`` shows."""
        return self.default if outcome is None else outcome.status

    def by_flow(self) -> dict[str, list[Row]]:
        """(entry, outcome) rows grouped per flow, in plan order, each sorted by time."""
        groups: dict[str, list[Row]] = {f.name: [] for f in self.flows()}
        for row in zip(self.entries, self.outcome_list(), strict=True):
            groups[row[0].flow].append(row)
        return groups


_new_outcome = partial(tuple.__new__, Outcome)  # an Outcome without a Python-level call


def _key_order(key: str) -> tuple[int, str]:
    """Sort keys by trigger time, then the rest."""
    head, _, tail = key.rpartition("/")
    return (int(tail) if tail.isdigit() else 0, head)


class PlanStatuses(Mapping[str, Outcome]):
    """A read-only view of a ledger fold as ``plan`` shows it, built per key on demand:
    done or cancelled; unknown; retry (a failed key: apply sends it again); pending keys
    have no outcome (``PlanResult.default``)."""

    def __init__(self, folded: Folded) -> None:
        self._folded = folded

    @property
    def folded(self) -> Folded:
        """The fold this view reads."""
        return self._folded

    def orphans(self) -> list[tuple[str, str, str | None]]:
        """(key, status, flowInstanceId) of done or unknown keys the plan no longer yields."""
        out = []
        for key, state in sorted(self._folded.orphans.items(), key=lambda kv: _key_order(kv[0])):
            if state.done:
                status = Status.CANCELLED if key in self._folded.cancelled else Status.DONE
                out.append((key, str(status), state.flow_instance_id))
            elif state.status == KeyStatus.UNKNOWN:
                out.append((key, str(Status.UNKNOWN), None))
        return out

    def get(self, key: str, default: Any = None) -> Any:
        folded = self._folded
        done = folded.done
        if key in done:
            status = Status.CANCELLED if key in folded.cancelled else Status.DONE
            return _new_outcome((status, done[key], None))
        state = folded.open.get(key)
        if state is not None:
            key_status = state.status
            if key_status == KeyStatus.UNKNOWN:
                return Outcome(Status.UNKNOWN)
            if key_status == KeyStatus.FAILED:
                return Outcome(Status.RETRY, None, state.error)
        return default

    def __getitem__(self, key: str) -> Outcome:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        yield from self._folded.done
        yield from (k for k in self._folded.open if self.get(k) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return bool(self._folded.done or self._folded.open)


def plan_statuses(folded: Folded) -> PlanStatuses:
    """What ``plan`` (and apply's preview) shows per key of a ledger fold: the presentation
    rule (``retry`` is a report word) kept out of the ledger."""
    return PlanStatuses(folded)


def _quote(value: str | None) -> str:
    return orjson.dumps(value).decode()


def render_json(r: PlanResult) -> str:
    """One JSON object (README, "plan --format json"); one entry per line for diffs."""
    out = io.StringIO()
    write_json(r, out.write)
    return out.getvalue()


JSON_CHUNK = 20_000  # entries per write: the output of millions of entries is never one string


def write_json(r: PlanResult, write: Callable[[str], object]) -> None:
    """:func:`render_json`'s text, written a chunk of entries at a time (constant memory)."""
    head = {
        "formatVersion": FORMAT_VERSION,
        "plan": r.plan.path,
        "ledger": r.ledger,
        "now": r.now,
        "selection": r.selection.as_json(),
    }
    write(json.dumps(head)[:-1] + ', "entries": [')
    # Built from pre-quoted pieces: this runs once per entry of plans with 100,000s of them.
    heads: dict[str, tuple[str, str]] = {}
    default_tail = f'"status": "{r.default}", "flowInstanceId": null, "error": null}}'
    local = times.format_local
    movable = {
        f.name: f for f in r.plan.flows if f.moved or f.dates or (f.cron is not None and f.cron.fixed)
    }
    with_parameters = {f.name: f for f in r.plan.flows if f.parameters}
    calendar, zone = r.calendar, r.plan.target.server_zone
    lines: list[str] = []
    append = lines.append
    sep = "\n"
    for e, o in zip(r.entries, r.outcome_list(), strict=True):
        pieces = heads.get(e.flow)
        if pieces is None:
            pieces = heads[e.flow] = (
                f'{{"flow": {json.dumps(e.flow)}, "flowId": {e.flow_id}, '
                f'"orgId": {json.dumps(e.org_id)}, "triggerTime": ',
                json.dumps(f"{e.org_id}/{e.flow_id}/")[:-1],
            )
        entry_head, key_prefix = pieces
        if o is None:
            tail = default_tail
        else:
            iid, error = o.flow_instance_id, o.error
            tail = (
                f'"status": "{o.status}", '
                f'"flowInstanceId": {"null" if iid is None else _quote(iid)}, '
                f'"error": {"null" if error is None else _quote(error)}}}'
            )
        tt = e.trigger_time
        flow = movable.get(e.flow)
        moved = ', "moved": "dst-gap"' if flow is not None and gap_moved(flow, e) else ""
        cal = calendar.cal_dt(tt)
        cal_text = "null" if cal is None else f'"{cal}"'
        flow = with_parameters.get(e.flow)
        filled = "null" if flow is None else entry_parameters_json(flow, e, zone)
        seen = r.refreshed.get(e.key) if r.refreshed else None
        fresh = "" if seen is None else f'"refresh": {refresh.entry_json(seen, e.offset)}, '
        append(
            f'{entry_head}{tt}, "time": "{local(tt, e.offset)}", '
            f'"calDt": {cal_text}{moved}, '
            f'"key": {key_prefix}{tt}", "parameters": {filled}, {fresh}{tail}'
        )
        if len(lines) >= JSON_CHUNK:
            write(sep + ",\n".join(lines))
            sep = ",\n"
            lines.clear()
    if lines:
        write(sep + ",\n".join(lines))
        sep = ",\n"
    orphans = json.dumps(
        [{"key": k, "status": st, "flowInstanceId": iid} for k, st, iid in r.orphans]
    )
    rate = f', "rate": {json.dumps(r.rate)}' if r.rate is not None else ""
    if r.changed_parameters:  # present when some entries were applied with other parameters
        orphans += f', "changedParameters": {json.dumps(r.changed_parameters)}'

    tail = (
        f'], "orphans": {orphans}, "summary": {json.dumps({**r.summary, "future": r.future} if r.future else r.summary)}{rate}, '
        f'"error": {_quote(r.error)}}}'
    )
    write(("\n" if sep != "\n" else "") + tail)


@dataclass(frozen=True, slots=True)
class HiddenRun:
    """A run of ``count`` entries with one status, left out of a listing."""

    status: Status
    count: int
    future: bool = False  # the entries lie after `now`

    def words(self) -> str:
        """``26 more pending (future)``."""
        return f"{self.count:,} more {self.status}{' (future)' if self.future else ''}"


def _fold(r: PlanResult, rows: Sequence[Row], head: int, tail: int) -> Iterator[Row | HiddenRun]:
    """Rows, with long runs of one status cut to their first and last few.

    A run never spans a UTC-offset change: the entries on both sides of a daylight-saving
    change stay visible, so a reviewer can check them. Nor does it span ``now``: the first
    entry the service will hold until its time stays visible.
    """
    i = 0
    n = len(rows)
    now = r.now
    while i < n:
        status = r.status_of(rows[i][1])
        offset = rows[i][0].offset
        ahead = rows[i][0].trigger_time > now
        j = i + 1
        while (
            j < n
            and r.status_of(rows[j][1]) == status
            and rows[j][0].offset == offset
            and (rows[j][0].trigger_time > now) == ahead
        ):
            j += 1
        if j - i > head + tail + 1:
            yield from rows[i : i + head]
            yield HiddenRun(status, j - i - head - tail, ahead)
            yield from rows[j - tail : j]
        else:
            yield from rows[i:j]
        i = j


def orphan_lines(r: PlanResult, limit: int = 5) -> list[str]:
    """The count and first few ledger keys the plan no longer yields (as Terraform reports)."""
    if not r.orphans:
        return []
    lines = [
        f"{len(r.orphans):,} ledger entr{'y' if len(r.orphans) == 1 else 'ies'} no longer in the "
        "plan (done or unknown keys of its flows that it does not yield now):"
    ]
    lines += [f"  - {key}  {status}" for key, status, _ in r.orphans[:limit]]
    if len(r.orphans) > limit:
        lines.append(f"  ... {len(r.orphans) - limit:,} more")
    return lines


def _summary_line(r: PlanResult, verb: str) -> str:
    parts = [f"{n:,} {s}" for s, n in r.summary.items()]
    total = len(r.entries)
    line = f"{verb}: {total:,} entries" + (f" ({', '.join(parts)})" if parts else "")
    if verb == "Plan":
        line += disabled_note(r.plan)
    return line + "."


def disabled_note(plan: Plan) -> str:
    """``"; 1 flow disabled"``, or "" when every flow is enabled (why a plan may yield 0)."""
    n = sum(1 for f in plan.flows if not f.enabled)
    return f"; {n} flow{'s' if n != 1 else ''} disabled" if n else ""


def _marker(status: Status, colour: bool) -> str:
    symbol = SYMBOLS.get(status, " ")
    return f"{COLOURS[symbol]}{symbol}{RESET}" if colour and symbol in COLOURS else symbol


def render_text(
    r: PlanResult, verb: str = "Plan", *, quiet: bool = False, colour: bool = False
) -> str:
    """Per flow a header, its first and last time, and its entries with runs folded."""
    if quiet:
        return _summary_line(r, verb)
    lines = [
        f"{verb} {r.plan.path}",
        f"  ledger {r.ledger}",
        f"  now    {times.format_utc(r.now)} ({r.now})",
        f"  flows  {r.selection.describe()}",
        "",
    ]
    groups = r.by_flow()
    for flow in r.plan.flows:
        title = f"flow {flow.name} (flowId {flow.flow_id}, {flow.zone_name})"
        if not flow.enabled:
            lines += [f"{title}: disabled", ""]
            continue
        if flow.name not in groups:
            continue  # not selected
        rows = groups[flow.name]
        lines.append(f"{title}: {len(rows):,} entr{'y' if len(rows) == 1 else 'ies'}")
        lines.append(f"  {schedule(flow)}")
        if paced := pacing(flow):
            lines.append(f"  pacing {paced}")
        lines += parameter_lines(flow, [e for e, _ in rows], r.plan.target.server_zone)
        if not rows:
            lines += ["  nothing due yet", ""]
            continue
        first, last = rows[0][0], rows[-1][0]
        lines.append(f"  first {first.local_time}  {first.trigger_time}{_cal(r, first)}")
        lines.append(f"  last  {last.local_time}  {last.trigger_time}{_cal(r, last)}")
        for row in _fold(r, rows, FOLD_HEAD, FOLD_TAIL):
            if isinstance(row, HiddenRun):
                lines.append(f"    ... {row.words()} ...")
                continue
            item, o = row
            status = r.status_of(o)
            extra = " (future)" if item.trigger_time > r.now else ""
            extra += "  (moved by a DST gap)" if gap_moved(flow, item) else ""
            if o is not None and o.flow_instance_id:
                extra += f"  {o.flow_instance_id}"
            if o is not None and o.error:
                extra += f"  {o.error}"
            if r.refreshed and (seen := r.refreshed.get(item.key)) is not None:
                extra += f"  {refresh.words(seen, item.offset)}"
            lines.append(
                f"  {_marker(status, colour)} {item.local_time}  {item.trigger_time}{_cal(r, item)}"
                f"  {status}{extra}"
            )
        lines.append("")
    lines += refresh.lines(r.refreshed, list(r.entries), r.changed_parameters)
    orphans = orphan_lines(r)
    if orphans:
        lines += [*orphans, ""]
    if ahead := future_note(r.entries, r.now):
        lines.append(ahead + ".")
    lines.append(_summary_line(r, verb))
    return "\n".join(lines)


def _cal(r: PlanResult, entry: Entry) -> str:
    """``  calDt 2026-01-01`` beside an entry when the server zone is known, else ""."""
    cal = r.calendar.cal_dt(entry.trigger_time)
    return "" if cal is None else f"  calDt {cal}"


def render_markdown(
    r: PlanResult, limit: int = MARKDOWN_LIMIT, *, saved: tuple[str, str] | None = None
) -> str:
    """A summary and per-flow tables for a pull-request comment, always under ``limit``.

    ``saved``: ``(path, sha256)`` of the saved plan written with it (``plan --out``).
    """
    counts = ", ".join(f"**{n}** {s}" for s, n in r.summary.items()) or "nothing"
    head = [
        markdown_marker(r.plan.path),
        f"### planrunner plan `{md_escape(r.plan.path)}`",
        "",
        f"{len(r.entries)} entries: {counts}{disabled_note(r.plan)} · now `{times.format_utc(r.now)}` · {md_escape(r.selection.describe())}",
        "",
        "| flow | flowId | zone | entries | first | last | " + " | ".join(PLAN_COLUMNS) + " |",
        "|---|---:|---|---:|---|---|" + "---:|" * 4,
    ]
    if r.orphans:
        note = f"{len(r.orphans)} ledger entries are no longer in the plan (done or unknown): " + ", ".join(
            f"`{k}`" for k, _, _ in r.orphans[:3]
        )
        head[4:4] = [note + (" …" if len(r.orphans) > 3 else ""), ""]
    if ahead := future_note(r.entries, r.now):
        head[4:4] = ["", ahead + "."]
    if r.refreshed is not None or r.changed_parameters:
        head[4:4] = refresh.lines(r.refreshed, list(r.entries), r.changed_parameters, md=True)
    if saved is not None:
        head[4:4] = [
            "",
            f"Saved plan `{md_escape(saved[0])}` · sha256 `{saved[1]}` · "
            f"`planrunner apply {md_escape(saved[0])}` applies exactly this",
        ]
    groups = r.by_flow()
    rows: list[str] = []
    details: list[str] = []
    for flow in r.flows():
        flow_rows = groups[flow.name]
        per: dict[Status, int] = {}
        for _, o in flow_rows:
            s = r.status_of(o)
            per[s] = per.get(s, 0) + 1
        first = f"`{flow_rows[0][0].local_time}`" if flow_rows else ""
        last = f"`{flow_rows[-1][0].local_time}`" if flow_rows else ""
        cells = " | ".join(str(per.get(s, 0)) for s in PLAN_COLUMNS)
        rows.append(
            f"| {md_escape(flow.name)} | {flow.flow_id} | {flow.zone_name} | {len(flow_rows)} | {first} | {last} | {cells} |"
        )
        if flow_rows:
            cal = r.calendar.known
            table = [
                f"<details><summary>{md_escape(flow.name)}: {len(flow_rows)} entries, "
                f"{md_escape(schedule(flow))}</summary>",
                "",
                *markdown_notes(flow, [e for e, _ in flow_rows], r.plan.target.server_zone),
                "| | time | triggerTime |" + (" calDt |" if cal else "") + " status |",
                "|---|---|---:|" + ("---|" if cal else "") + "---|",
            ]
            for row in _fold(r, flow_rows, FOLD_HEAD, FOLD_TAIL):
                if isinstance(row, HiddenRun):
                    table.append(f"| | … {row.words()} … | |" + (" |" if cal else "") + " |")
                else:
                    item, o = row
                    s = r.status_of(o)
                    moved = " (moved by a DST gap)" if gap_moved(flow, item) else ""
                    day = f" {r.calendar.cal_dt(item.trigger_time)} |" if cal else ""
                    ahead = " (future)" if item.trigger_time > r.now else ""
                    seen = r.refreshed.get(item.key) if r.refreshed else None
                    ahead += "" if seen is None else f" · {md_escape(refresh.words(seen, item.offset))}"
                    table.append(
                        f"| {SYMBOLS.get(s, '')} | `{item.local_time}`{moved} | {item.trigger_time} |"
                        f"{day} {s}{ahead} |"
                    )
            table += ["", "</details>", ""]
            details.append("\n".join(table))
    rows += [
        f"| {md_escape(f.name)} | {f.flow_id} | {f.zone_name} | disabled |"
        + " |" * (len(MARKDOWN_FIXED_COLUMNS) + len(PLAN_COLUMNS) - 4)
        for f in r.plan.flows
        if not f.enabled
    ]
    # The flows' windows as a picture above the table, only when everything else fits too.
    used = sum(len(x) + 1 for x in (*head, *rows, *details)) + 1 + NOTE_ROOM
    if picture := gantt.chart([(f, groups[f.name]) for f in r.flows()], r.status_of, limit - used - 2):
        head[-2:-2] = [picture, ""]
    return _fit(head, rows, details, limit)


def _fit(head: list[str], rows: list[str], details: list[str], limit: int) -> str:
    """Join the parts, dropping flow details, then summary rows, until under ``limit``."""
    used = sum(len(x) + 1 for x in head)
    kept_rows: list[str] = []
    for row in rows:
        if used + len(row) + 1 + NOTE_ROOM > limit:
            break
        kept_rows.append(row)
        used += len(row) + 1
    out = [*head, *kept_rows]
    if len(kept_rows) < len(rows):
        out.append(
            f"| … {len(rows) - len(kept_rows)} more flows; see `planrunner plan --format json` |"
            + " |" * (len(MARKDOWN_FIXED_COLUMNS) + len(PLAN_COLUMNS) - 1)
        )
    out.append("")
    return fit(out, details, limit, "_{} flows' entry lists left out to fit a comment._")


@dataclass(frozen=True, slots=True)
class Style:
    """How a command asks for its rendering: the words and dress around the same result."""

    verb: str = "Plan"  # "Apply" for apply's text
    quiet: bool = False  # text: the summary line only
    colour: bool = False  # text: ANSI colours on the markers
    saved: tuple[str, str] | None = None  # markdown: (path, sha256) of plan --out's file


def _as_text(r: PlanResult, style: Style) -> str:
    return render_text(r, style.verb, quiet=style.quiet, colour=style.colour)


def _as_json(r: PlanResult, style: Style) -> str:
    return render_json(r)


def _as_markdown(r: PlanResult, style: Style) -> str:
    return render_markdown(r, saved=style.saved)


# plan's and apply's renderers by --format.
RENDERERS: dict[str, Callable[[PlanResult, Style], str]] = {
    "text": _as_text,
    "json": _as_json,
    "markdown": _as_markdown,
}
