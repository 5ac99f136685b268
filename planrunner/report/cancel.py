"""What ``cancel`` shows: the confirmation's counts per flow, the report of what happened to
each instance, and the notes for nothing to cancel and for failed lookups (to move into
``report/cancel.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from planrunner import ledger, lookup
from planrunner.lookup import Seen
from planrunner.outcome import Entry
from planrunner.runs.cancel import FAILED, FINISHED, OUTCOME_ORDER, CancelTarget
from planrunner.select import Selection


def ledger_counts(entries: Sequence[Entry], folded: ledger.Folded) -> str:
    """``3 done, 2 pending``: the ledger's view of the selection, for "nothing to cancel"."""
    counts: dict[str, int] = {}
    for e in entries:
        s = str(folded.status(e.key))
        counts[s] = counts.get(s, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no entries"


def per_flow(targets: Sequence[CancelTarget]) -> dict[str, str]:
    """Per flow, ``N to cancel (counts by status)``: the confirmation's lines."""
    by: dict[str, list[str]] = {}
    for t in targets:
        by.setdefault(t.entry.flow, []).append(t.seen.state)
    return {
        name: f"{len(states)} to cancel ("
        + ", ".join(f"{n} {s}" for s, n in lookup.counts(states).items())
        + ")"
        for name, states in by.items()
    }


def lookup_failures(failed: Sequence[tuple[Entry, Seen]]) -> str:
    """The note for lookups that failed (empty when none did)."""
    if not failed:
        return ""
    return (
        f"planrunner: {len(failed)} instances could not be looked up (first: "
        f"{failed[0][0].key}: {failed[0][1].reason}); run cancel again to retry them.\n"
    )


def render_text(
    plan_path: str, ledger_name: str, where: str, selection: Selection, targets: Sequence[CancelTarget]
) -> str:
    """Per flow the counts by outcome and the instances that failed or had finished."""
    lines = [
        f"Cancel {plan_path}",
        f"  ledger  {ledger_name}",
        f"  gateway {where}",
        f"  flows   {selection.describe()}",
        "",
    ]
    by: dict[str, list[CancelTarget]] = {}
    for t in targets:
        by.setdefault(t.entry.flow, []).append(t)
    totals: dict[str, int] = {}
    for name, ts in by.items():
        counts: dict[str, int] = {}
        for t in ts:
            counts[t.outcome] = counts.get(t.outcome, 0) + 1
            totals[t.outcome] = totals.get(t.outcome, 0) + 1
        text = ", ".join(f"{counts[o]} {o}" for o in OUTCOME_ORDER if o in counts)
        lines.append(f"flow {name} (flowId {ts[0].entry.flow_id}): {text}")
        for t in sorted(ts, key=lambda t: t.entry.trigger_time):
            if t.outcome in (FAILED, FINISHED):
                lines.append(
                    f"  {'!' if t.outcome == FAILED else '='} {t.entry.local_time}  "
                    f"{t.entry.trigger_time}  {t.seen.flow_instance_id}  {t.outcome}: {t.reason}"
                )
    lines.append("")
    summary = ", ".join(f"{totals[o]} {o}" for o in OUTCOME_ORDER if o in totals)
    lines.append(f"Cancel: {len(targets)} instances ({summary}).")
    return "\n".join(lines)
