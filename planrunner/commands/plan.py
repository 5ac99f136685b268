"""``planrunner plan``: the dry run, each entry with its status from the ledger."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from planrunner.commands import options
from planrunner.errors import EXIT_OK, EXIT_PENDING, PlanInvalid, UsageError
from planrunner.outcome import Entry, Outcome, Status
from planrunner.select import Selection

if TYPE_CHECKING:
    from planrunner import report
    from planrunner.ledger import Folded
    from planrunner.plan import Plan
    from planrunner.runs.rerun import Refreshed

DESCRIPTION = (
    "Resolve a plan and show each entry with its status from the ledger (pending, retry, "
    "done, unknown, cancelled). Reads the ledger without taking its lock; sends nothing. "
    "Several plans print one section each (JSON: {\"formatVersion\": 1, \"plans\": [...]}). "
    "--out SAVED pins the reviewed plan for `apply SAVED`."
)
EPILOG = options.exit_codes(
    (0, "the plan was computed"),
    (2, "invalid plan or usage"),
    (3, "the ledger is unreadable or corrupt"),
    (4, "--detailed-exitcode: some entries are not done yet"),
    example="planrunner plan plans/backfill.yaml --format markdown",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """plan's options."""
    options.add_resolving(p)
    options.add_selecting(p)
    p.add_argument("plans", nargs="+", metavar="PLAN", help="plan files (YAML)")
    p.add_argument(
        "--ledger",
        metavar="PATH",
        help="ledger file (default: $PLANRUNNER_LEDGER, else each plan's path with .ledger.jsonl)",
    )
    p.add_argument(
        "--out",
        metavar="SAVED",
        help="also write the plan as reviewed (JSON) for `planrunner apply SAVED`; one PLAN only",
    )
    options.add_format(p, "json", "markdown")
    p.add_argument(
        "--detailed-exitcode", action="store_true", help="exit 4 when any entry is not done yet"
    )
    p.add_argument(
        "--sim",
        action="store_true",
        help="show the embedded simulator's ledger (what apply --sim did), not the real one",
    )
    p.add_argument(
        "--refresh",
        action="store_true",
        help="also ask the service (read-only: no ledger writes, no lock) for each done entry's "
        "instance, and show which entries the next apply reruns, at which minute",
    )
    options.add_rerun_failed(p, " (with --refresh: as apply --rerun-failed N would)")
    options.add_gateway(p)


def main(args: argparse.Namespace) -> int:
    """Run from parsed options."""
    from planrunner.commands.context import ledger_spec, max_triggers, now, selection

    return run(
        args.plans,
        ledger=ledger_spec(args.ledger),
        now=now(args.now),
        fmt=args.format,
        detailed_exitcode=args.detailed_exitcode,
        max_triggers=max_triggers(args.max_triggers),
        sim=args.sim,
        chosen=selection(args.flow, args.exclude, args.start, args.end),
        out=args.out,
        refresh=_refresh_of(args),
    )


def _refresh_of(args: argparse.Namespace) -> Refresh | None:
    """--refresh's settings (None without it); its options are refused without it."""
    if not args.refresh:
        given = [n for n, v in (("--rerun-failed", args.rerun_failed), ("--gateway", args.gateway)) if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only with --refresh (plan asks the service only then)")
        return None
    if args.sim:
        raise UsageError("--refresh asks the plan's gateway; --sim shows the embedded simulator's ledger, which has no service to ask")
    if args.out:
        raise UsageError(
            "--refresh: not with --out (a saved plan pins entries, not the instances' states "
            "at review time; apply SAVED --rerun-failed N reruns what has failed by then)"
        )
    return Refresh(args.gateway, args.rerun_failed)


@dataclass(frozen=True, slots=True)
class Refresh:
    """plan --refresh: where to ask, and the --rerun-failed over the plan's rerunFailed."""

    gateway: str | None
    rerun_failed: int | None


def run(
    paths: str | Sequence[str],
    *,
    ledger: str | None,
    now: int,
    fmt: str,
    detailed_exitcode: bool,
    max_triggers: int,
    sim: bool = False,
    chosen: Selection | None = None,
    out: str | None = None,
    refresh: Refresh | None = None,
) -> int:
    """Resolve each plan and print its entries with their statuses from the ledger (read-only).

    Every plan is resolved before anything is printed: one invalid plan reports its problems
    (with the others') and exits 2. ``out`` saves the one plan as reviewed (saved.py).
    """
    import hashlib

    from planrunner import report, saved

    paths = [paths] if isinstance(paths, str) else list(paths)
    if out is not None and len(paths) != 1:
        raise UsageError("--out saves one plan: give exactly one PLAN")
    chosen = chosen or Selection()
    results: list[report.PlanResult] = []
    problems: list[str] = []
    raw = None
    if paths.count("-") > 1:
        raise UsageError("- (standard input) can be given only once")
    for path in paths:
        raw = _read_raw(path, ledger, out)
        try:
            results.append(_result(path, raw, ledger, now, max_triggers, sim, chosen, refresh))
        except PlanInvalid as e:
            problems += e.lines
    if problems:
        raise PlanInvalid(problems)
    pinned = None
    if out is not None and raw is not None:
        r = results[0]
        rows = [(e, r.status_of(o)) for e, o in zip(r.entries, r.outcome_list(), strict=True)]
        data = saved.dumps(r.plan, hashlib.sha256(raw).hexdigest(), now, chosen, max_triggers, rows)
        pinned = (out, saved.write(out, data, paths[0], r.ledger))
    if fmt == "json":
        _write_json(results)  # streamed: millions of entries are never one string
    else:
        from planrunner.terminal import use_colour

        style = report.Style(colour=use_colour(sys.stdout), saved=pinned)
        render = report.RENDERERS[fmt]
        sys.stdout.write("\n\n".join(render(r, style) for r in results) + "\n")
    sys.stdout.flush()
    settled = (Status.DONE, Status.CANCELLED)
    if detailed_exitcode and any(s not in settled for r in results for s in r.summary):
        return EXIT_PENDING
    return EXIT_OK


def _read_raw(path: str, ledger: str | None, out: str | None) -> bytes | None:
    """The plan's bytes when they must be read here (standard input, or --out pins them);
    None lets the loader read the file."""
    if path == "-":
        if out is not None:
            raise UsageError("-: --out saves a plan file, which apply checks is unchanged")
        if ledger is None:
            raise UsageError(
                "-: a plan read from standard input has no path to find its ledger by: "
                "give --ledger (or set $PLANRUNNER_LEDGER)"
            )
        return sys.stdin.buffer.read()
    if out is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"{path}: cannot read plan: {e.strerror or e}") from None


def _write_json(results: list[report.PlanResult]) -> None:
    """Stream the JSON to stdout; several plans as ``{"formatVersion": 1, "plans": [...]}``."""
    from planrunner.report import FORMAT_VERSION, write_json

    write = sys.stdout.write
    many = len(results) != 1
    if many:
        write(f'{{"formatVersion": {FORMAT_VERSION}, "plans": [\n')
    for i, r in enumerate(results):
        if i:
            write(",\n")
        write_json(r, write)
    write("\n]}\n" if many else "\n")


def _result(
    path: str,
    raw: bytes | None,
    ledger: str | None,
    now: int,
    max_triggers: int,
    sim: bool,
    chosen: Selection,
    refresh: Refresh | None = None,
) -> report.PlanResult:
    """One plan resolved, with each entry's status from the ledger."""
    from planrunner import checking, log, report
    from planrunner import ledger as ledgerlib
    from planrunner.commands.context import note_missing, select
    from planrunner.resolve import EntryKeys

    p, entries = checking.load_entries(path, now, max_triggers, raw=raw)
    entries = select(p, entries, chosen)
    ledger_path = ledger or (ledgerlib.sim_path(path) if sim else ledgerlib.default_path(path))
    note_missing(ledger)
    backend = ledgerlib.open_ledger(ledger_path)
    prefixes = {f"{p.target.org_id}/{f.flow_id}/" for f in p.flows if f.enabled}
    if not chosen.everything:
        names = chosen.names([f.name for f in p.flows])
        prefixes = {f"{p.target.org_id}/{f.flow_id}/" for f in p.flows if f.name in names}
    if chosen.windowed:
        prefixes = set()  # entries outside --from/--to are left out, not orphans
    from planrunner.commands.context import gateway_id

    # The fold only asks `key in keys`: answered from the sorted entries, with no string
    # or set entry per key (a year of */5 over 20 flows is 2.1 million keys).
    keys = cast("set[str]", EntryKeys(entries))
    folded = ledgerlib.read_for_plan(
        backend, keys, sim=sim, orphans_of=prefixes, gateway=gateway_id(p, None, sim)
    )
    outcomes = report.plan_statuses(folded)
    holder = backend.holder()
    if holder:
        log.get("plan").warning(
            "an apply holds the ledger lock: statuses may change while it runs",
            ledger=backend.name,
            holder=holder,
        )
    refreshed = _ask_service(p, entries, folded, refresh) if refresh is not None else None
    return report.PlanResult(
        p, backend.name, now, entries, _with_reruns(outcomes, refreshed), selection=chosen,
        orphans=outcomes.orphans(), refreshed=refreshed, changed_parameters=_changed(p, entries, folded),
    )  # fmt: skip


def _ask_service(
    p: Plan, entries: list[Entry], folded: Folded, refresh: Refresh
) -> dict[str, Refreshed]:
    """Each done entry's newest instance and the rerun the next apply makes (read-only)."""
    import contextlib

    from planrunner.runs import connect, rerun

    with contextlib.ExitStack() as stack:
        conn = connect(p, refresh.gateway, stack=stack)
        conn.client.token()  # a token problem stops the command, not each lookup
        limits = rerun.limits(p.flows, refresh.rerun_failed)
        try:
            return rerun.refresh(conn.client, entries, folded, limits)
        finally:
            conn.client.close()


def _with_reruns(outcomes: Mapping[str, Outcome], refreshed: dict[str, Refreshed] | None) -> Mapping[str, Outcome]:
    """The plan's statuses, with ``rerun`` for the done entries the next apply reruns."""
    if not refreshed:
        return outcomes
    again = {k: Outcome(Status.RERUN, s.flow_instance_id) for k, s in refreshed.items() if s.rerun is not None}
    if not again:
        return outcomes
    return {**dict(outcomes.items()), **again}


def _changed(p: Plan, entries: list[Entry], folded: Folded) -> list[str]:
    """Done keys whose recorded parameters differ from what the plan fills in now."""
    from planrunner.plan import entry_parameters

    flows = {f.name: f for f in p.flows}
    if not folded.parameters and not any(f.parameters for f in p.flows):
        return []
    zone = p.target.server_zone
    return [
        e.key
        for e in entries
        if folded.is_done(e.key)
        and folded.parameters.get(e.key) != entry_parameters(flows[e.flow], e, zone)
    ]
