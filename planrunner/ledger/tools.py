"""What ``planrunner ledger log|verify|compact`` do with a ledger, apart from printing.

- :func:`check_lines`: every problem of a ledger file, located (``path:line``);
- :func:`key_states`: per-key states of a list of records (the fold, for counting);
- :func:`compact_records`: the fewest records that fold to the same states, and stay right
  when a ``merge=union`` later brings back some of the dropped lines;
- :func:`compact_file`: that, under the lock, written atomically;
- :func:`replacing`: an output file (``ledger export FILE``, ``plan --out``) that never
  overwrites the command's own inputs, written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson

from planrunner import ledger
from planrunner.errors import LedgerError, UsageError
from planrunner.ledger.file import CONFLICT_MARKERS, open_for_reading
from planrunner.ledger.records import validate

SIM = ledger.SIM_GATEWAY
WRITE_CHUNK = 10_000  # records encoded and written at a time while compacting


def is_sim(rec: dict[str, Any]) -> bool:
    """Whether a record was written by a ``--sim`` run."""
    return rec.get("gateway") == SIM


# -- verify --------------------------------------------------------------------------------------


def record_problem(rec: Any) -> str | None:
    """What is wrong with one decoded record, or None (:func:`planrunner.ledger.records.validate`)."""
    return validate(rec)


@dataclass(frozen=True, slots=True)
class Checked:
    """A ledger file read line by line: the good records and every problem."""

    records: list[tuple[str, dict[str, Any]]]
    problems: list[str]
    lines: int


def check_lines(path: str) -> Checked:
    """Read every line of a ledger file; never stops at the first problem."""
    records: list[tuple[str, dict[str, Any]]] = []
    problems: list[str] = []
    if os.path.islink(path):
        problems.append(f"{path}: the ledger is a symlink (apply refuses it)")
    # The fold's own opener: a FIFO or a directory is refused (exit 3), never waited on.
    f = open_for_reading(path)
    if f is None:
        raise UsageError(f"{path}: no such ledger")
    number = 0
    with f:
        for number, line in enumerate(f, 1):
            where = f"{path}:{number}"
            if line[-1:] != b"\n":
                problems.append(
                    f"{where}: incomplete last line (a crash while writing; the next apply cuts it off)"
                )
                break
            if line == b"\n":
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                torn = ledger.torn_record(line)
                if line.isspace():
                    continue  # a torn record an apply blanked
                if torn:
                    problems.append(
                        f"{where}: an incomplete record in the middle (a torn write that a git "
                        "merge moved here; nothing was sent on it): the next apply blanks it, "
                        "or delete the line"
                    )
                elif torn is False:
                    problems.append(f"{where}: an incomplete record with another record welded to it")
                elif line.startswith(CONFLICT_MARKERS):
                    problems.append(
                        f'{where}: git conflict marker (use "*.ledger.jsonl merge=union" in '
                        ".gitattributes; keep both sides' lines and delete the marker lines)"
                    )
                else:
                    problems.append(f"{where}: not JSON")
                continue
            why = record_problem(rec)
            if why:
                problems.append(f"{where}: {why}")
                continue
            records.append((where, rec))
    return Checked(records, problems, number)


def check_backend(backend: ledger.Backend) -> Checked:
    """:func:`check_lines` for a file ledger; for another backend, what its records say."""
    if isinstance(backend, ledger.FileLedger):
        return check_lines(backend.path)
    records: list[tuple[str, dict[str, Any]]] = []
    problems: list[str] = []
    try:
        for where, rec in backend.records():
            why = record_problem(rec)
            if why:
                problems.append(f"{where}: {why}")
            else:
                records.append((where, rec))
    except LedgerError as e:
        problems.append(str(e))
    return Checked(records, problems, len(records) + len(problems))


# -- the fold over a list of records ---------------------------------------------------------


def key_states(records: Iterable[dict[str, Any]], *, sim: bool) -> ledger.Folded:
    """The fold of a list of records of one kind of run (:func:`planrunner.ledger.fold_into`)."""
    return ledger.fold_into(ledger.Folded(), records, sim=sim)


def status_counts(records: Sequence[dict[str, Any]], *, sim: bool) -> dict[str, int]:
    """How many keys are done, cancelled, unknown, failed or pending."""
    folded = key_states(records, sim=sim)
    counts: dict[str, int] = {}
    for key in folded.all_keys():
        status = str(folded.status(key))
        counts[status] = counts.get(status, 0) + 1
    order = [str(s) for s in (ledger.DONE, ledger.CANCELLED, ledger.UNKNOWN, ledger.FAILED, ledger.PENDING)]
    return {s: counts[s] for s in order if s in counts}


# -- compaction ------------------------------------------------------------------------------


def _identity(rec: dict[str, Any]) -> bytes:
    """A short digest of the record's :func:`planrunner.ledger.identity`: exact duplicates share it."""
    return hashlib.blake2b(ledger.identity(rec), digest_size=16).digest()


# Compaction works per kind of run (simulator or real), key and round.
_Round = tuple[bool, str, int]


def _round_of(rec: dict[str, Any]) -> _Round:
    return (is_sim(rec), rec["key"], rec.get("round") or 0)


@dataclass(slots=True)
class _Scan:
    """What one pass over a ledger tells compaction (small: per key, not per record)."""

    settler: dict[_Round, int] = field(default_factory=dict)  # first, as the fold takes
    first_cancel: dict[_Round, int] = field(default_factory=dict)
    closed: dict[tuple[bool, str], set[str]] = field(default_factory=dict)
    last: dict[bytes, int] = field(default_factory=dict)  # identity -> index of its last copy
    kept_firsts: set[int] = field(default_factory=set)
    count: int = 0


def _scan(records: Iterable[dict[str, Any]]) -> _Scan:
    scan = _Scan()
    for i, rec in enumerate(records):
        scan.count += 1
        scan.last[_identity(rec)] = i
        r = _round_of(rec)
        event = rec["event"]
        if event == "cancelled":
            scan.first_cancel.setdefault(r, i)
        elif event == "triggered" or (event == "reconciled" and rec.get("found") is True):
            scan.settler.setdefault(r, i)
        elif event in ("failed", "aborted", "reconciled"):
            scan.closed.setdefault(r[:2], set()).add(rec["attempt"])
    scan.kept_firsts = {*scan.settler.values(), *scan.first_cancel.values()}
    return scan


def _keeps(scan: _Scan, i: int, rec: dict[str, Any]) -> bool:
    if i in scan.kept_firsts:
        return True
    if scan.last.get(_identity(rec)) != i:
        return False  # an exact duplicate of a later record
    r = _round_of(rec)
    event = rec["event"]
    if event == "cancelled" or r in scan.settler:
        return False
    if event == "intent":
        return rec["attempt"] not in scan.closed.get(r[:2], ())
    return event in ("failed", "aborted", "reconciled")


def compact_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records to keep, in their order, folding (per kind of run) to the same states.

    Per kind (simulator or real), key and round (every round of a key is kept apart, so
    each folds as before and the newest stays the newest):

    - done: the first ``triggered`` or ``reconciled found: true`` (the one the fold takes;
      it carries the round's sentTime and parameters);
    - every round: its first ``cancelled``;
    - not done: the intents of open attempts (their ``at`` too), and every record that
      closes an attempt (``failed``, the last of which gives the error; ``aborted``;
      ``reconciled found: false``). The closers cost little (keys that are not done are
      few) and keep the compacted ledger right when a union merge brings back a dropped
      intent; with them, compacting twice changes nothing.

    Dropped: intents and ``unknown`` records of closed attempts, the history of done keys,
    and exact duplicates (the last copy is kept, so the fold's last-wins fields are kept).
    """
    scan = _scan(records)
    return [rec for i, rec in enumerate(records) if _keeps(scan, i, rec)]


def fold_differences(a: ledger.Folded, b: ledger.Folded) -> list[str]:
    """Keys whose state differs between two folds (status, instance id, open attempts,
    error, parameters, and each round's)."""

    def view(f: ledger.Folded, key: str) -> tuple[object, ...]:
        st = f.state(key)
        rounds = {r: rnd.view() for r, rnd in st.rounds.items() if rnd.status is not ledger.PENDING or rnd.sent}
        return (f.status(key), f.done.get(key), f.parameters.get(key), st.round, rounds)

    keys = set(a.done) | set(a.open) | set(b.done) | set(b.open) | a.cancelled | b.cancelled
    return sorted(k for k in keys if view(a, k) != view(b, k))


@dataclass(frozen=True, slots=True)
class Compacted:
    """What compaction did."""

    before: int
    after: int
    torn_line: int | None
    removed: tuple[str, ...] = ()  # stale temporary files of interrupted compactions


def _remove_stale_temporaries(path: str) -> tuple[str, ...]:
    """Delete the temporary files that killed compactions of ``path`` left (call under the
    lock: no compaction of it is running). Only names this module makes are touched."""
    import re

    directory = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(re.escape(f".{os.path.basename(path)}.") + r"[A-Za-z0-9_]{8}\.compact")
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return ()
    for name in names:
        if pattern.fullmatch(name):
            full = os.path.join(directory, name)
            with contextlib.suppress(FileNotFoundError):
                if not os.path.isfile(full) or os.path.islink(full):
                    continue
                os.unlink(full)
                removed.append(full)
    return tuple(sorted(removed))


def compact_file(path: str, run_id: str, lock_timeout: float) -> Compacted:
    """Rewrite a ledger file, under its lock, to :func:`compact_records` of it, atomically.

    The new file is written next to the old one (same directory, same mode), fsync'd,
    checked to fold to the same states, renamed over the old one, and the directory is
    fsync'd, so a crash leaves either the old ledger or the new one, never a mix.
    """
    if os.path.islink(path):
        raise LedgerError(f"{path}: the ledger is a symlink; compact the file it points to")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such ledger") from None
    if st.st_nlink > 1:
        raise LedgerError(
            f"{path}: the ledger has {st.st_nlink} hard links; compacting would leave the "
            "other names with the old file"
        )
    with contextlib.ExitStack() as stack:
        lock = ledger.Lock(path, run_id)
        lock.acquire(lock_timeout)
        stack.callback(lock.release)
        removed = _remove_stale_temporaries(path)
        # Two streaming passes (scan, then write what is kept): memory grows with keys,
        # not with records.
        source = ledger.FileLedger(path)
        scan = _scan(rec for _, rec in source.records())
        torn = ledger.fold(path).torn_line
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".compact", dir=directory
        )
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), st.st_mode & 0o777)
                kept = 0
                chunk: list[dict[str, Any]] = []
                for i, (_, rec) in enumerate(source.records()):
                    if _keeps(scan, i, rec):
                        chunk.append(rec)
                        kept += 1
                        if len(chunk) >= WRITE_CHUNK:
                            out.write(ledger.encode(chunk))
                            chunk = []
                out.write(ledger.encode(chunk))
                out.flush()
                os.fsync(out.fileno())
            for sim in (False, True):
                diff = fold_differences(ledger.fold(path, sim=sim), ledger.fold(tmp, sim=sim))
                if diff:
                    raise LedgerError(
                        f"{path}: compaction would change the state of {diff[0]} "
                        f"(and {len(diff) - 1} more); the ledger is left as it was"
                    )
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    return Compacted(scan.count, kept, torn, removed)


# -- history ---------------------------------------------------------------------------------


def flow_labels(plan: Any) -> dict[tuple[str, int], tuple[str, Any]]:
    """(orgId, flowId) -> (flow name, its zone) of a plan's flows, to label ledger keys."""
    org = plan.target.org_id
    return {(org, f.flow_id): (f.name, f.zone) for f in plan.flows}


def key_time(trigger_time: int, zone: Any = None) -> str:
    """A key's trigger time in ``zone`` (UTC when None), RFC 3339; the raw number when out
    of the calendar's range."""
    from planrunner import times

    try:
        return times.format_in_zone(trigger_time, zone)
    except (ValueError, OverflowError):
        return str(trigger_time)


def key_label(key: str, labels: dict[tuple[str, int], tuple[str, Any]]) -> str:
    """``TIME FLOW`` of a ledger key (``orgId/flowId/triggerTime``), e.g. for plan's orphan
    lines: the local time in the flow's zone and the flow's name when ``labels``
    (:func:`flow_labels`) know the flow, else UTC and ``flow ID``."""
    org, _, rest = key.partition("/")
    flow, _, tt = rest.partition("/")
    if not (flow.isdigit() and tt.isdigit()):
        return key
    name, zone = labels.get((org, int(flow)), (f"flow {flow}", None))
    return f"{key_time(int(tt), zone)} {name}"


def run_of(rec: dict[str, Any], runs: dict[str, str]) -> str:
    """The run a record belongs to: its intent's ``run``, else its attempt id's prefix."""
    attempt = rec["attempt"]
    return runs.get(attempt) or attempt.rsplit(".", 1)[0]


def attempt_runs(records: Iterable[dict[str, Any]]) -> dict[str, str]:
    """attempt -> run, from the intents."""
    return {r["attempt"]: r["run"] for r in records if r["event"] == "intent" and "run" in r}


def by_key(
    records: Iterable[tuple[str, dict[str, Any]]],
) -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """Records grouped per key (keys by trigger time, then key), each in stored order."""
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for where, rec in records:
        groups.setdefault(rec["key"], []).append((where, rec))
    for key in sorted(groups, key=lambda k: (groups[k][0][1]["triggerTime"], k)):
        yield key, groups[key]


# -- output files that never overwrite the tool's own inputs -----------------------------------
#
# ``plan --out`` and ``ledger export FILE`` name a file to create or replace. It is refused
# (exit 2) when it is a symbolic link (replacing it would write wherever the link points) or
# not a regular file, and when it is the same file as one of the command's inputs (the
# plan, the ledger): by path, or by inode (a hard link). The data goes to a temporary file
# in the same directory, is fsync'd, and is renamed over the target, so a crash leaves the
# old file or the new one.


def check_output(path: str, inputs: Iterable[tuple[str, str]], what: str) -> None:
    """Refuse ``path`` as an output: a symlink, a non-regular file, or one of ``inputs``
    ((path, what it is) pairs, e.g. ``("plans/a.ledger.jsonl", "the ledger")``)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise UsageError(f"{what} {path}: cannot use it: {e.strerror or e}") from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise UsageError(
            f"{what} {path}: is a symbolic link; refusing to write through it (give the real path)"
        )
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{what} {path}: is not a regular file; refusing to replace it")
    real = os.path.realpath(path)
    for other, name in inputs:
        same = os.path.realpath(other) == real
        if not same and st is not None:
            with contextlib.suppress(OSError):
                o = os.stat(other)
                same = (o.st_dev, o.st_ino) == (st.st_dev, st.st_ino)
        if same:
            raise UsageError(
                f"{what} {path}: is {name} itself; writing there would destroy it (choose another file)"
            )


@contextlib.contextmanager
def replacing(path: str, inputs: Iterable[tuple[str, str]], what: str) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content to; renamed over ``path`` on success.

    Checked first with :func:`check_output`. The new file gets the usual mode for a new file
    (0666 less the umask), or the mode of the file it replaces.
    """
    inputs = list(inputs)
    check_output(path, inputs, what)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory
        )
    except OSError as e:
        raise UsageError(f"{what} {path}: cannot write: {e.strerror or e}") from None
    try:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            yield out
            out.flush()
            os.fsync(out.fileno())
        check_output(path, inputs, what)  # nothing swapped in meanwhile
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise UsageError(f"{what} {path}: cannot write: {e.strerror or e}") from None
        raise


def write_bytes(path: str, data: bytes, inputs: Iterable[tuple[str, str]], what: str) -> None:
    """:func:`replacing` for data in hand."""
    inputs = list(inputs)
    with replacing(path, inputs, what) as out:
        out.write(data)


@dataclass(frozen=True, slots=True)
class History:
    """What ``ledger log`` shows: the chosen records by run and by key."""

    total: int  # records in the ledger
    chosen: int  # records the filters kept
    runs: list[dict[str, Any]]  # per run: first and last ``at``, attempts, events
    keys: list[dict[str, Any]]  # per key: time, flows, state per kind of run, its records


def history(
    records: list[tuple[str, dict[str, Any]]],
    *,
    key: str | None = None,
    flow: str | None = None,
    flow_ids: set[tuple[str, int]] | frozenset[tuple[str, int]] = frozenset(),
    run: str | None = None,
    since: int | None = None,
    until: int | None = None,
    labels: dict[tuple[str, int], tuple[str, Any]] | None = None,
) -> History:
    """The history of ``records`` (``(where, record)`` pairs), filtered by key, flow (a name
    pattern, matched against the plan's ``flow_ids`` and the names intents recorded), run
    and trigger time, by run and by key; each key's state is folded from every record."""
    import fnmatch

    labels = labels or {}
    runs = attempt_runs(rec for _, rec in records)
    key_flows: dict[str, set[str]] = {}
    for _, rec in records:
        if rec["event"] == "intent" and isinstance(rec.get("flow"), str):
            key_flows.setdefault(rec["key"], set()).add(rec["flow"])
    chosen = records
    if key:
        chosen = [(w, r) for w, r in chosen if r["key"] == key]
    if flow:
        chosen = [
            (w, r)
            for w, r in chosen
            if (r["orgId"], r["flowId"]) in flow_ids
            or any(fnmatch.fnmatchcase(f, flow) for f in key_flows.get(r["key"], ()))
        ]
    if run:
        chosen = [(w, r) for w, r in chosen if run_of(r, runs) == run]
    if since is not None:
        chosen = [(w, r) for w, r in chosen if r["triggerTime"] >= since]
    if until is not None:
        chosen = [(w, r) for w, r in chosen if r["triggerTime"] <= until]
    all_records = [r for _, r in records]
    states = {sim: key_states(all_records, sim=sim) for sim in (False, True)}
    run_rows: dict[str, dict[str, Any]] = {}
    for _, rec in chosen:
        name = run_of(rec, runs)
        at = rec["at"] if isinstance(rec["at"], str) else str(rec["at"])
        row = run_rows.setdefault(
            name, {"run": name, "first": at, "last": at, "attempts": set(), "events": {}}
        )
        row["first"], row["last"] = min(row["first"], at), max(row["last"], at)
        row["attempts"].add(rec["attempt"])
        row["events"][rec["event"]] = row["events"].get(rec["event"], 0) + 1
    keys = []
    for k, group in by_key(chosen):
        first = group[0][1]
        kinds = sorted({is_sim(r) for _, r in group})
        label, zone = labels.get((first["orgId"], first["flowId"]), (None, None))
        flows = sorted(key_flows.get(k, set()) | ({label} if label else set()))
        keys.append(
            {
                "key": k,
                "flowId": first["flowId"],
                "orgId": first["orgId"],
                "triggerTime": first["triggerTime"],
                "time": key_time(first["triggerTime"], zone),
                "flows": flows,
                "state": {("sim" if s else "real"): str(states[s].status(k)) for s in kinds},
                "records": [{"where": w, **r} for w, r in group],
            }
        )
    runs_out = sorted(
        ({**row, "attempts": len(row["attempts"])} for row in run_rows.values()),
        key=lambda row: (row["first"], row["run"]),
    )
    return History(len(records), len(chosen), runs_out, keys)


# -- export and import -----------------------------------------------------------------------


def export(backend: ledger.Backend, out: BinaryIO) -> int:
    """Every record of ``backend`` to ``out`` as JSON lines, in stored order; how many."""
    n = 0
    for _, rec in backend.records():
        out.write(orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE))
        n += 1
    out.flush()
    return n


def import_file(backend: ledger.Backend, source: str, run_id: str, lock_timeout: float) -> tuple[int, int]:
    """Add the records of the ledger file ``source`` that ``backend`` lacks, in a session (under
    the lock, like apply, so an import never races an apply or a compaction); returns (added,
    records in ``source``)."""
    records = [rec for _, rec in ledger.FileLedger(source).records()]
    flows = sorted({(rec["orgId"], rec["flowId"]) for rec in records})
    with backend.session(run_id, flows, lock_timeout) as session:
        return session.add(records), len(records)
