"""``planrunner ledger``: look into a ledger and move it (log, verify, compact, export, import)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from planrunner.commands import options
from planrunner.errors import EXIT_OK, UsageError

DESCRIPTION = (
    "Work on a ledger (a JSON-lines file or a PostgreSQL URL): show its history (log), check "
    "every line (verify), rewrite it to the fewest records that fold to the same states "
    "(compact), export its records to a JSON-lines file, or import a JSON-lines file's "
    "records into it (records already there are not added twice)."
)
EPILOG = options.exit_codes(
    (0, "done; verify: no problem found"),
    (2, "bad usage; compact of a PostgreSQL ledger"),
    (3, "the ledger is locked, unreadable or corrupt; verify: a problem found"),
    example="planrunner ledger log plans/backfill.yaml --flow sales-daily-backfill",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ledger subcommands."""
    sub = p.add_subparsers(dest="ledger_command", metavar="SUBCOMMAND", parser_class=options.Parser)
    sub.required = True
    _add_log(sub)
    _add_verify_and_compact(sub)
    _add_export_and_import(sub)


def _add_log(sub: Any) -> None:
    lg = sub.add_parser(
        "log",
        help="the history of a ledger by key, flow or run",
        description="Show every record of a ledger grouped by key (runs, attempts, answers, "
        "times), with each key's state; --key, --flow and --run narrow it.",
    )
    _ledger_place(lg)
    lg.add_argument("--key", metavar="KEY", help="only this key (orgId/flowId/triggerTime)")
    lg.add_argument(
        "--flow", metavar="NAME", help="only this flow (a name or shell glob; with PLAN, also by flowId)"
    )
    lg.add_argument("--run", metavar="RUN", help="only the records of this run id")
    lg.add_argument(
        "--since",
        metavar="TIME",
        help="only keys whose trigger time is at or after TIME (RFC 3339, a date, or epoch ms; "
        "without an offset: UTC)",
    )
    lg.add_argument(
        "--until", metavar="TIME", help="only keys whose trigger time is at or before TIME (as --since)"
    )
    options.add_format(lg, "json")


def _add_verify_and_compact(sub: Any) -> None:
    v = sub.add_parser(
        "verify",
        help="check every line of a ledger and count keys per status",
        description="Read every line of a ledger, report every problem with its place "
        "(path:line), and print how many keys are done, cancelled, unknown, failed or pending "
        "(real runs and --sim runs apart). Exit 3 when a problem is found.",
    )
    _ledger_place(v)
    options.add_format(v, "json")
    c = sub.add_parser(
        "compact",
        help="rewrite a ledger file to the fewest records that fold to the same states",
        description="Under the ledger's lock, rewrite a ledger file to the fewest records that "
        "fold to exactly the same states (done keys keep the record that made them done; "
        "cancelled, open and failed keys keep what makes them so), atomically: a temporary "
        "file in the same directory, fsync, rename, fsync of the directory. The dropped "
        "history is gone: `ledger export` it first to keep it. Not for PostgreSQL ledgers.",
    )
    _ledger_place(c)
    c.add_argument(
        "--lock-timeout",
        type=options.non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for an apply's lock (default 0)",
    )


def _add_export_and_import(sub: Any) -> None:
    e = sub.add_parser(
        "export",
        help="write every record of a ledger to a JSON-lines file",
        description="Write every record of --ledger (a file or a PostgreSQL URL) to FILE "
        "('-' for stdout), one JSON object per line.",
    )
    e.add_argument("--ledger", required=True, metavar="SOURCE", help="the ledger to read")
    e.add_argument("file", metavar="FILE", help="JSON-lines file to write ('-': stdout)")
    i = sub.add_parser(
        "import",
        help="add a JSON-lines file's records to a ledger (idempotent)",
        description="Add the records of FILE to --ledger (a file or a PostgreSQL URL). Records "
        "already there are not added again, so importing twice adds nothing.",
    )
    i.add_argument("--ledger", required=True, metavar="TARGET", help="the ledger to add to")
    i.add_argument("file", metavar="FILE", help="JSON-lines file to read")


def _ledger_place(p: argparse.ArgumentParser) -> None:
    p.add_argument("plan", nargs="?", metavar="PLAN", help="plan file whose ledger to use")
    p.add_argument(
        "--ledger",
        metavar="PATH",
        help="the ledger (default: $PLANRUNNER_LEDGER, else the plan's path with .ledger.jsonl)",
    )
    p.add_argument(
        "--sim", action="store_true", help="the plan's --sim ledger (PLAN.sim.ledger.jsonl)"
    )


def main(args: argparse.Namespace) -> int:
    """Dispatch to the subcommand."""
    if args.ledger_command == "log":
        return log(args)
    if args.ledger_command == "verify":
        return verify(args)
    if args.ledger_command == "compact":
        return compact(args)
    if args.ledger_command == "export":
        return export(args.ledger, args.file)
    if args.ledger_command == "import":
        return import_(args.ledger, args.file)
    raise UsageError(f"unknown ledger subcommand {args.ledger_command!r}")


def export(source: str, target: str) -> int:
    """Every record of ``source`` to the JSON-lines file ``target``."""
    from planrunner import ledger
    from planrunner.commands.context import note_missing, warn_password
    from planrunner.ledger import tools as ledgertools

    warn_password(source, "--ledger")
    note_missing(source)
    backend = ledger.open_ledger(source)
    if target == "-":
        count = ledgertools.export(backend, sys.stdout.buffer)
    else:
        # Never over the ledger itself (by path or inode), never through a symlink, and
        # never a half-written file: a temporary file renamed when complete.
        inputs = [] if ledger.is_postgres(source) else [(source, "the ledger being exported")]
        with ledgertools.replacing(target, inputs, "ledger export: FILE") as out:
            count = ledgertools.export(backend, out)
    print(f"exported {count} records from {backend.name} to {target}", file=sys.stderr)
    return EXIT_OK


def import_(target: str, source: str, lock_timeout: float = 0.0) -> int:
    """Add the records of the JSON-lines file ``source`` to ``target`` (idempotent).

    Under the ledger's lock, like apply, so an import never races an apply or a compaction.
    """
    import os

    from planrunner import ledger
    from planrunner.commands.context import warn_password
    from planrunner.ledger import tools as ledgertools
    from planrunner.runs import new_run_id

    warn_password(target, "--ledger")
    if not os.path.isfile(source):
        raise UsageError(f"{source}: no such ledger file to import")
    backend = ledger.open_ledger(target)
    added, total = ledgertools.import_file(backend, source, new_run_id(), lock_timeout)
    print(
        f"imported {added} new records of {total} from {source} into {backend.name}",
        file=sys.stderr,
    )
    return EXIT_OK


# -- log, verify, compact --------------------------------------------------------------------


def _place(args: argparse.Namespace) -> str:
    """The ledger a log/verify/compact names: --ledger, $PLANRUNNER_LEDGER, else PLAN's."""
    from planrunner import ledger
    from planrunner.commands.context import ledger_spec

    explicit = ledger_spec(args.ledger)
    if explicit:
        if args.ledger_command == "log":
            from planrunner.commands.context import note_missing

            note_missing(explicit)
        return explicit
    if not args.plan:
        raise UsageError("name a PLAN or --ledger (or set $PLANRUNNER_LEDGER)")
    return ledger.sim_path(args.plan) if args.sim else ledger.default_path(args.plan)


def _flow_ids(plan_path: str | None, pattern: str) -> set[tuple[str, int]]:
    """(orgId, flowId) of the plan's flows whose names match ``pattern``."""
    if not plan_path:
        return set()
    import fnmatch

    from planrunner.checking import read_plan

    p = read_plan(plan_path)
    names = [f.name for f in p.flows]
    if not fnmatch.filter(names, pattern):
        raise UsageError(f'--flow "{pattern}" matches no flow of the plan (flows: {", ".join(names)})')
    return {(p.target.org_id, f.flow_id) for f in p.flows if fnmatch.fnmatchcase(f.name, pattern)}


def _time_bound(option: str, text: str | None) -> int | None:
    """``--since``/``--until`` as epoch ms (exit 2 when not a time)."""
    if text is None:
        return None
    from planrunner import times

    try:
        return times.parse_now(text)
    except times.TimeError as e:
        raise UsageError(f"{option}: {e}") from None


def log(args: argparse.Namespace) -> int:
    """The history of a ledger, by key, flow or run."""
    from planrunner import ledger
    from planrunner.ledger import tools as ledgertools

    since, until = _time_bound("--since", args.since), _time_bound("--until", args.until)
    labels: dict[tuple[str, int], tuple[str, Any]] = {}
    if args.plan:
        from planrunner.checking import read_plan

        labels = ledgertools.flow_labels(read_plan(args.plan))
    backend = ledger.open_ledger(_place(args))
    history = ledgertools.history(
        list(backend.records()),
        key=args.key,
        flow=args.flow,
        flow_ids=_flow_ids(args.plan, args.flow) if args.flow else set(),
        run=args.run,
        since=since,
        until=until,
        labels=labels,
    )
    from planrunner.report.ledger import HISTORY_RENDERERS, History

    filter_ = {"key": args.key, "flow": args.flow, "run": args.run, "since": since, "until": until}
    shown = History(backend.name, filter_, history.runs, history.keys, history.chosen, history.total)
    sys.stdout.write(HISTORY_RENDERERS[args.format](shown) + "\n")
    return EXIT_OK


def verify(args: argparse.Namespace) -> int:
    """Check every line; count keys per status; exit 3 on a problem."""
    from planrunner import ledger
    from planrunner.errors import EXIT_LEDGER
    from planrunner.ledger import tools as ledgertools

    backend = ledger.open_ledger(_place(args))
    checked = ledgertools.check_backend(backend)
    records = [r for _, r in checked.records]
    counts = {
        "real": ledgertools.status_counts(records, sim=False),
        "sim": ledgertools.status_counts(records, sim=True),
    }
    from planrunner.report.ledger import VERIFY_RENDERERS, Verified

    verified = Verified(backend.name, checked.lines, len(records), counts, checked.problems)
    sys.stdout.write(VERIFY_RENDERERS[args.format](verified) + "\n")
    return EXIT_LEDGER if checked.problems else EXIT_OK


def compact(args: argparse.Namespace) -> int:
    """Rewrite a file ledger to the fewest records folding to the same states."""
    from planrunner import ledger
    from planrunner.ledger import tools as ledgertools
    from planrunner.runs import new_run_id

    place = _place(args)
    if ledger.is_postgres(place):
        raise UsageError(
            "ledger compact works on ledger files only: a PostgreSQL ledger keeps one row per "
            "record and its fold runs in SQL (export, compact the file, and import into a new table instead)"
        )
    done = ledgertools.compact_file(place, new_run_id(), args.lock_timeout)
    if done.torn_line is not None:
        print(
            f"{place}:{done.torn_line}: cut off an incomplete last line left by a crash",
            file=sys.stderr,
        )
    for name in done.removed:
        print(
            f"{name}: removed a temporary file an interrupted compaction left", file=sys.stderr
        )
    print(
        f"compacted {place}: {done.before} records -> {done.after} (same state for every key)",
        file=sys.stdout,
    )
    return EXIT_OK
