"""The JSON-lines ledger: append, fsync, lock, torn-tail repair, and the fold to key states.

Records are appended with ``O_APPEND`` and made durable with ``fsync`` before anything
that depends on them happens; concurrent appends share one fsync (group commit). The
fold is order-independent, so a ``merge=union`` of two branches' ledgers folds right.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import orjson

from planrunner import log, times
from planrunner.errors import LedgerError, LedgerLocked, UsageError
from planrunner.outcome import KeyStatus, Outcome, Status

EVENTS = ("intent", "triggered", "failed", "unknown", "reconciled", "aborted", "cancelled")
_REQUIRED = ("v", "event", "key", "flowId", "orgId", "triggerTime", "attempt", "at")
SIM_GATEWAY = "sim"  # the ``gateway`` of records written by ``--sim`` runs

DONE = KeyStatus.DONE
UNKNOWN = KeyStatus.UNKNOWN
FAILED = KeyStatus.FAILED
PENDING = KeyStatus.PENDING
CANCELLED = KeyStatus.CANCELLED


class Ref(Protocol):
    """What a record is about: one key (an ``Entry`` is one)."""

    @property
    def key(self) -> str: ...
    @property
    def flow_id(self) -> int: ...
    @property
    def org_id(self) -> str: ...
    @property
    def trigger_time(self) -> int: ...


def default_path(plan_path: str) -> str:
    """The plan's path with ``.yaml``/``.yml`` replaced by ``.ledger.jsonl``."""
    for suffix in (".yaml", ".yml"):
        if plan_path.endswith(suffix):
            return plan_path[: -len(suffix)] + ".ledger.jsonl"
    return plan_path + ".ledger.jsonl"


def sim_path(plan_path: str) -> str:
    """``--sim``'s own ledger, ``PLAN.sim.ledger.jsonl``: a demo never touches the real one."""
    return default_path(plan_path).removesuffix(".ledger.jsonl") + ".sim.ledger.jsonl"


def record(
    event: str,
    key: str,
    flow_id: int,
    org_id: str,
    trigger_time: int,
    attempt: str,
    **extra: Any,
) -> dict[str, Any]:
    """A ledger record with the common fields first."""
    rec: dict[str, Any] = {
        "v": 1,
        "event": event,
        "key": key,
        "flowId": flow_id,
        "orgId": org_id,
        "triggerTime": trigger_time,
        "attempt": attempt,
        "at": times.format_utc(time.time_ns() // 1_000_000),
    }
    rec.update(extra)
    return rec


# One constructor per event (docs/apply.md's table); ``record`` writes the common fields.


def _rec(event: str, ref: Ref, attempt: str, gateway: str, **extra: Any) -> dict[str, Any]:
    return record(
        event, ref.key, ref.flow_id, ref.org_id, ref.trigger_time, attempt, gateway=gateway, **extra
    )


def intent(ref: Ref, attempt: str, *, gateway: str, flow: str, run: str) -> dict[str, Any]:
    """Written and made durable before the request is sent."""
    return _rec("intent", ref, attempt, gateway, flow=flow, run=run)


def triggered(ref: Ref, attempt: str, *, gateway: str, flow_instance_id: str | None) -> dict[str, Any]:
    """The service answered success."""
    return _rec("triggered", ref, attempt, gateway, flowInstanceId=flow_instance_id)


def failed(ref: Ref, attempt: str, *, gateway: str, code: int | None, msg: str) -> dict[str, Any]:
    """The service answered an error; retries are spent."""
    return _rec("failed", ref, attempt, gateway, code=code, msg=msg)


def unknown(ref: Ref, attempt: str, *, gateway: str, reason: str) -> dict[str, Any]:
    """No definite answer: the request may have been acted on."""
    return _rec("unknown", ref, attempt, gateway, reason=reason)


def reconciled(
    ref: Ref, attempt: str, *, gateway: str, found: bool, flow_instance_id: str | None
) -> dict[str, Any]:
    """The attempt was looked up on the service."""
    return _rec("reconciled", ref, attempt, gateway, found=found, flowInstanceId=flow_instance_id)


def aborted(ref: Ref, attempt: str, *, gateway: str, reason: str) -> dict[str, Any]:
    """The run stopped after the intent and before the request left."""
    return _rec("aborted", ref, attempt, gateway, reason=reason)


def cancelled(ref: Ref, attempt: str, *, gateway: str, flow_instance_id: str) -> dict[str, Any]:
    """``planrunner cancel`` cancelled the key's instance."""
    return _rec("cancelled", ref, attempt, gateway, flowInstanceId=flow_instance_id)


def encode(records: Iterable[dict[str, Any]]) -> bytes:
    """Records as compact UTF-8 JSON lines, each ending in a newline."""
    return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)


@dataclass(slots=True)
class KeyState:
    """What the ledger says of one key, folded in any order."""

    done: bool = False
    flow_instance_id: str | None = None
    intents: dict[str, str] = field(default_factory=dict)  # attempt -> its intent's ``at``
    closed: set[str] = field(default_factory=set)
    failed: bool = False
    error: str | None = None

    @property
    def status(self) -> KeyStatus:
        """done, unknown, failed or pending, as docs/ledger.md defines them."""
        if self.done:
            return DONE
        if self.intents.keys() - self.closed:
            return UNKNOWN
        return FAILED if self.failed else PENDING

    @property
    def open_attempts(self) -> set[str]:
        """Attempts with an intent and no outcome yet."""
        return set(self.intents.keys() - self.closed)

    @property
    def last_intent_at(self) -> str | None:
        """The ``at`` of the newest open intent (RFC 3339 UTC sorts as text)."""
        open_ = self.open_attempts
        return max((self.intents[a] for a in open_), default=None)

    def add(self, rec: dict[str, Any]) -> None:
        """Fold one record in."""
        event = rec["event"]
        if self.done:
            return  # done is absorbing: any triggered or found attempt settles the key
        attempt = rec["attempt"]
        if event == "intent":
            self.intents[attempt] = str(rec.get("at", ""))
        elif event == "triggered":
            self._settle(rec)
        elif event == "failed":
            self.closed.add(attempt)
            self.failed = True
            self.error = f"{_text(rec.get('code'))}: {_text(rec.get('msg'))}"
        elif event == "reconciled":
            if rec.get("found") is True:
                self._settle(rec)
            else:
                self.closed.add(attempt)
        elif event == "aborted":
            self.closed.add(attempt)  # nothing left the machine: the key is as it was
        # "unknown" records say why an attempt is open; the open intent already says it is.

    def _settle(self, rec: dict[str, Any]) -> None:
        self.done = True
        iid = rec.get("flowInstanceId")
        self.flow_instance_id = iid if isinstance(iid, str) else None
        self.intents = {}
        self.closed = set()


def _text(value: object) -> str:
    """A ledger field for a message: absent or null reads as "none", never Python's None."""
    return "none" if value is None else str(value)


_REQUIRED_SET = frozenset(_REQUIRED)
_EVENT_SET = frozenset(EVENTS)
_FIELD_TYPES = {
    "key": str,
    "flowId": int,
    "orgId": str,
    "triggerTime": int,
    "attempt": str,
    "at": str,
}
_CONFLICT_MARKERS = (b"<<<<<<<", b"=======", b">>>>>>>")
# How every record this version writes starts (``record`` puts these fields first).
_RECORD_HEAD = b'{"v":1,"event":"'
_RECORD_START = b'{"v":'


def _corrupt(path: str, number: int, why: str) -> LedgerError:
    return LedgerError(f"{path}:{number}: corrupt ledger line ({why}); refusing to guess")


def torn_record(line: bytes) -> bool | None:
    """Whether a line that is not JSON is the start of a record cut short by a crash (True),
    two records welded together (False: a torn write with a record appended after it), or
    neither (None). A ``merge=union`` of a ledger whose torn last line was committed turns
    that line into a middle one; its record was never whole, so nothing was sent on it."""
    content = line.rstrip(b"\r\n")
    if not content or not (content.startswith(_RECORD_START) or _RECORD_HEAD.startswith(content)):
        return None
    if b"\0" in content:
        return None  # zeroed bytes are damage, not a cut: refused, never guessed away
    return content.find(_RECORD_START, 1) < 0


def undecodable(path: str, number: int, line: bytes) -> bool:
    """For a line that is not JSON: True to skip it (blank, or a torn record that
    :func:`torn_record` recognises), else :class:`LedgerError` saying where and what."""
    if line.isspace():
        return True
    if line.startswith(_CONFLICT_MARKERS):
        raise LedgerError(
            f"{path}:{number}: git conflict marker in the ledger; ledgers merge "
            'without conflicts with "*.ledger.jsonl merge=union" in .gitattributes: '
            "keep both sides' lines and delete the marker lines"
        )
    torn = torn_record(line)
    if torn:
        return True
    if torn is False:
        column = line.find(_RECORD_START, 1) + 1
        raise LedgerError(
            f"{path}:{number}: an incomplete record with another record welded to it at column "
            f"{column} (a crash cut the first; something appended after it); split the line "
            f"before column {column} and delete the incomplete first part, then run again"
        )
    raise _corrupt(path, number, "not JSON")


def _check(path: str, number: int, rec: Any) -> None:
    """Raise for a record that is not one this version writes (exit 3, with its line)."""
    if not isinstance(rec, dict) or not rec.keys() >= _REQUIRED_SET:
        missing = sorted(_REQUIRED_SET - rec.keys()) if isinstance(rec, dict) else []
        why = f"missing fields: {', '.join(missing)}" if missing else "not a record object"
        raise _corrupt(path, number, why)
    if type(rec["v"]) is not int or type(rec["event"]) is not str:
        raise _corrupt(path, number, '"v" must be the integer 1 and "event" a string')
    if rec["v"] != 1 or rec["event"] not in _EVENT_SET:
        raise LedgerError(
            f"{path}:{number}: unsupported ledger record (v={rec['v']!r}, event={rec['event']!r})"
        )
    for name, kind in _FIELD_TYPES.items():
        value = rec[name]
        if type(value) is not kind:
            raise _corrupt(path, number, f'"{name}" is {type(value).__name__}, not {kind.__name__}')


class Folded:
    """Per-key states of a ledger. Done keys (the bulk of a long ledger) cost one dict slot."""

    __slots__ = (
        "cancelled",
        "done",
        "ignored",
        "open",
        "orphans",
        "other_gateways",
        "torn_at",
        "torn_line",
        "torn_middle",
    )

    def __init__(self) -> None:
        # Keys outside the plan under ``orphans_of`` prefixes: key -> state (few, usually).
        self.orphans: dict[str, KeyState] = {}
        self.done: dict[str, str | None] = {}  # key -> flowInstanceId
        self.cancelled: set[str] = set()  # done keys whose instance ``cancel`` cancelled
        self.open: dict[str, KeyState] = {}  # keys not done: unknown, failed or pending
        self.ignored = 0  # records of the other kind of run (simulator vs real), not counted
        # Records of the fold's keys written against another real gateway: gateway -> count.
        self.other_gateways: dict[str, int] = {}
        self.torn_at: int | None = None
        self.torn_line: int | None = None
        # Torn records a merge moved into the middle: (offset, length without newline, line).
        self.torn_middle: list[tuple[int, int, int]] = []

    def status(self, key: str) -> KeyStatus:
        """done, cancelled, unknown, failed or pending."""
        if key in self.done:
            return CANCELLED if key in self.cancelled else DONE
        state = self.open.get(key)
        return state.status if state is not None else PENDING

    def state(self, key: str) -> KeyState:
        """The key's state (a fresh one for a key the ledger never mentions)."""
        if key in self.done:
            return KeyState(done=True, flow_instance_id=self.done[key])
        return self.open.get(key) or KeyState()


def _open_for_reading(path: str) -> Any:
    """The ledger opened for reading (None when it does not exist), never blocking on a
    FIFO: a directory, FIFO or other non-regular file is :class:`LedgerError` (exit 3)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LedgerError(f"{path}: cannot read ledger: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        os.close(fd)
        raise LedgerError(f"{path}: cannot read ledger: {e.strerror or e}") from None
    if stat.S_ISDIR(mode):
        os.close(fd)
        raise LedgerError(f"{path}: the ledger is a directory")
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise LedgerError(f"{path}: the ledger is {kind}; refusing it")
    return os.fdopen(fd, "rb")


def fold(
    path: str,
    keys: set[str] | None = None,
    *,
    sim: bool = False,
    orphans_of: set[str] | None = None,
    gateway: str | None = None,
    other_gateways_count: bool = False,
) -> Folded:
    """Stream the ledger into per-key states (only ``keys`` when given); never skips a bad line.

    With ``orphans_of`` (key prefixes ``orgId/flowId/``), keys not in ``keys`` under those
    prefixes are folded too, into ``Folded.orphans``: what the ledger holds that the plan
    no longer yields.

    Records of simulator runs (``gateway: sim``) count only when ``sim`` is true, and real
    ones only when it is false: a demo can never mark a real entry done. With ``gateway``
    (``scheme://host[:port]``, as records name it), records that name another gateway do
    not count either (unless ``other_gateways_count``: ``plan``, which has no ``--gateway``);
    either way they are counted per gateway in ``Folded.other_gateways``. A last
    line without its newline is a torn write: it is noted (``torn_line``), not folded; a
    torn record that a merge moved into the middle is noted in ``torn_middle``.
    """
    out = Folded()
    done, open_, cancelled, others = out.done, out.open, out.cancelled, out.other_gateways
    # Keys whose only record so far is one intent: key -> (attempt, at).
    lone: dict[str, tuple[str, str]] = {}
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    f = _open_for_reading(path)
    if f is None:
        return out
    offset = number = ignored = 0
    with f:
        # One loop with everything inlined: this runs once per line of a ledger that may
        # hold millions of records.
        for line in f:
            number += 1
            if line[-1:] != b"\n":
                out.torn_at, out.torn_line = offset, number
                break
            offset += len(line)
            if line == b"\n":
                continue
            try:
                rec = loads(line)
            except decode_error:
                undecodable(path, number, line)  # raises unless blank or a torn record
                if not line.isspace():
                    out.torn_middle.append((offset - len(line), len(line.rstrip(b"\r\n")), number))
                continue
            if (
                type(rec) is not dict
                or not rec.keys() >= _REQUIRED_SET
                or type(rec["v"]) is not int
                or rec["v"] != 1
                or type(rec["event"]) is not str
                or rec["event"] not in _EVENT_SET
                or type(rec["key"]) is not str
                or type(rec["flowId"]) is not int
                or type(rec["orgId"]) is not str
                or type(rec["attempt"]) is not str
                or type(rec["triggerTime"]) is not int
                or type(rec["at"]) is not str
            ):
                _check(path, number, rec)
            gw = rec.get("gateway")
            if (gw == SIM_GATEWAY) is not sim:
                ignored += 1
                continue
            key = rec["key"]
            if gateway is not None and gw != gateway and type(gw) is str:
                if keys is None or key in keys or (orphans_of and key[: key.rfind("/") + 1] in orphans_of):
                    others[gw] = others.get(gw, 0) + 1
                if not other_gateways_count:
                    continue
            event = rec["event"]
            if event == "cancelled":
                if (
                    keys is None
                    or key in keys
                    or (orphans_of and key[: key.rfind("/") + 1] in orphans_of)
                ):
                    cancelled.add(key)
                continue
            if key in done:
                continue
            if keys is not None and key not in keys:
                if orphans_of and key[: key.rfind("/") + 1] in orphans_of:
                    out.orphans.setdefault(key, KeyState()).add(rec)
                continue
            if event == "triggered":  # the common case, settled without a state object
                iid = rec.get("flowInstanceId")
                done[key] = iid if type(iid) is str else None
                lone.pop(key, None)
                open_.pop(key, None)
                continue
            state = open_.get(key)
            if state is None:
                if event == "intent" and key not in lone:
                    # Most intents meet their result next: no state object yet.
                    lone[key] = (rec["attempt"], rec["at"])
                    continue
                state = open_[key] = KeyState()
                if key in lone:
                    attempt, at = lone.pop(key)
                    state.intents[attempt] = at
            state.add(rec)
            if state.done:
                done[key] = state.flow_instance_id
                del open_[key]
    for key, (attempt, at) in lone.items():
        open_[key] = KeyState(intents={attempt: at})
    cancelled &= done.keys() | {k for k, st in out.orphans.items() if st.done}
    out.ignored = ignored
    return out


def plan_outcomes(
    ledger: Backend | str,
    keys: set[str],
    *,
    sim: bool = False,
    orphans_of: set[str] | None = None,
    gateway: str | None = None,
) -> PlanOutcomes:
    """What ``plan`` shows per key: done, cancelled, retry or unknown (pending keys have none).

    ``plan`` has no ``--gateway``: records of every real gateway count, and those of a
    gateway other than ``gateway`` (the plan's) get a note, since apply would ignore them.
    """
    backend = FileLedger(ledger) if isinstance(ledger, str) else ledger
    folded = backend.fold(
        keys, sim=sim, orphans_of=orphans_of, gateway=gateway, other_gateways_count=True
    )
    if folded.torn_line is not None:
        log.get("ledger").warning(
            "ledger has an incomplete last line (an apply may be writing); ignoring it",
            ledger=backend.name,
            line=folded.torn_line,
        )
    return PlanOutcomes(folded)


def gateway_host(gateway: str) -> str:
    """``host[:port]`` of a recorded gateway, for output (never a user or a password)."""
    rest = gateway.partition("://")[2] or gateway
    host = rest.partition("/")[0].rpartition("@")[2][:200]
    return "".join(c if c.isprintable() else "?" for c in host) or "?"


def note_folded(
    folded: Folded, name: str, gateway: str | None, said: set[object], *, counted: bool = False
) -> None:
    """Warn about what a fold left out (or ``counted``): records of other gateways; and torn
    middle lines (each once per ``said``, which a backend keeps: ``status --watch`` folds
    every poll)."""
    logger = log.get("ledger")
    seen = (tuple(sorted(folded.other_gateways.items())), gateway, tuple(folded.torn_middle))
    if seen in said:
        return
    said.add(seen)
    if folded.other_gateways and gateway is not None:
        ranked = sorted(folded.other_gateways.items(), key=lambda kv: (-kv[1], kv[0]))
        named = ", ".join(f"{n} for {gateway_host(gw)}" for gw, n in ranked[:5])
        more = f" and {len(ranked) - 5} more gateways" if len(ranked) > 5 else ""
        total = sum(folded.other_gateways.values())
        if counted:
            text = (
                f"{total} ledger records were written against another gateway than the plan's "
                f"({named}{more}): they are counted here, but an apply against "
                f"{gateway_host(gateway)} ignores them and sends those entries; an apply with "
                "the same --gateway counts them"
            )
        else:
            text = (
                f"ignored {total} ledger records written against another gateway ({named}{more}); "
                f"they count only for that gateway, not for {gateway_host(gateway)}"
            )
        logger.warning(text, ledger=name)
    for _, _, number in folded.torn_middle[:5]:
        logger.warning(
            "ignored an incomplete record in the middle of the ledger (a torn write that a git "
            "merge moved there; it was never whole, so nothing was sent on it); the next apply "
            "blanks it",
            ledger=name,
            line=number,
        )


_new_outcome = partial(tuple.__new__, Outcome)  # an Outcome without a Python-level call


def _key_order(key: str) -> tuple[int, str]:
    """Sort keys by trigger time, then the rest."""
    head, _, tail = key.rpartition("/")
    return (int(tail) if tail.isdigit() else 0, head)


class PlanOutcomes(Mapping[str, "Outcome"]):
    """A read-only view of a fold as ``plan`` statuses, built per key on demand."""

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
            elif state.status == UNKNOWN:
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
            if key_status == UNKNOWN:
                return Outcome(Status.UNKNOWN)
            if key_status == FAILED:
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


class Lock:
    """An exclusive lock on the ledger *file*, released by the OS if the process dies.

    Two ``flock`` s, both never taken through a symlink: first on ``<ledger>.lock`` beside the
    name (it holds the holder's pid, host, run and start for the "locked by" message, and it
    outlives ``ledger compact``'s rename), then on the ledger file itself, so that two names
    for one file (a symlink or a hard link) are one lock. A ledger path that is a symlink, a
    directory, a FIFO or another non-regular file, or that cannot be written, is refused
    here, before anything is sent (exit 3).
    """

    def __init__(self, ledger_path: str, run_id: str) -> None:
        self.ledger_path = ledger_path
        self.path = ledger_path + ".lock"
        self.run_id = run_id
        self._fd: int | None = None
        self._ledger_fd: int | None = None

    def acquire(self, timeout: float) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; else :class:`LedgerLocked`."""
        deadline = time.monotonic() + timeout
        fd = _open_regular(self.path, os.O_RDWR | os.O_CREAT, "lock file")
        try:
            if not _flock_until(fd, time.monotonic()):
                if timeout > 0:
                    # Say at once who we wait for: a blank terminal for minutes helps nobody.
                    log.get("ledger").warning(
                        f"waiting up to {timeout:g} s for the ledger lock held by "
                        f"{_holder_of(fd)}",
                        ledger=self.ledger_path,
                    )
                if not _flock_until(fd, deadline):
                    raise LedgerLocked(
                        f"ledger {self.ledger_path} is locked by another apply ({_holder_of(fd)})"
                    )
            self._ledger_fd = self._lock_file(deadline)
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "run": self.run_id,
                "started": times.format_utc(time.time_ns() // 1_000_000),
            }
            data = (json.dumps(info) + "\n").encode()
            try:
                # Overwrite, then cut: the file is never empty for a waiting apply to read.
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
            except OSError as e:
                raise LedgerError(
                    f"{self.path}: cannot write lock file: {e.strerror or e}"
                ) from None
        except BaseException:
            self._fd = fd
            self.release()
            raise
        self._fd = fd

    def cover_new_ledger(self) -> None:
        """Lock the ledger file that this run has just created (it did not exist when the
        lock was taken, so there was no file to lock then)."""
        if self._fd is not None and self._ledger_fd is None:
            self._ledger_fd = self._lock_file(time.monotonic())

    def _lock_file(self, deadline: float) -> int | None:
        """Lock the ledger file itself (the same inode under every name); its descriptor.

        None when there is no ledger yet: a missing file has no other name, and it is not
        created here (an apply with nothing to do leaves no ledger behind);
        :meth:`cover_new_ledger` locks it once the run's first record creates it.
        """
        # A plan reading the holder takes a shared lock for an instant: a short grace.
        deadline = max(deadline, time.monotonic() + 0.5)
        while True:
            if not os.path.lexists(self.ledger_path):
                return None
            fd = _open_regular(self.ledger_path, os.O_WRONLY | os.O_APPEND, "ledger", writing=True)
            try:
                if not _flock_until(fd, deadline):
                    raise LedgerLocked(
                        f"ledger {self.ledger_path} is locked by another apply, through "
                        "another name for the same file (a symlink or a hard link)"
                    )
                try:
                    now = os.stat(self.ledger_path, follow_symlinks=False)
                except FileNotFoundError:
                    now = None
                mine = os.fstat(fd)
                if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # replaced while we waited (ledger compact): lock the new file

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Drop the lock (the files stay; deleting one would race with a waiting apply)."""
        for name in ("_ledger_fd", "_fd"):
            fd = getattr(self, name)
            if fd is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, None)


def _open_regular(path: str, flags: int, what: str, *, writing: bool = False) -> int:
    """Open ``path`` (mode 0600 when created) without following a symlink or blocking on a
    FIFO; refuse anything but a regular file. :class:`LedgerError` (exit 3) otherwise."""
    flags |= os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            why = "is a symbolic link; refusing to follow it (give the real path)"
        elif e.errno == errno.EISDIR:
            why = "is a directory, not a file"
        elif e.errno == errno.ENXIO:
            why = "is a FIFO or a socket, not a file"
        elif writing:
            why = f"cannot open the ledger for writing: {e.strerror or e}"
        else:
            why = f"cannot open {what}: {e.strerror or e}"
        raise LedgerError(f"{path}: {why}") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        os.close(fd)
        raise LedgerError(f"{path}: cannot read {what}: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise LedgerError(f"{path}: the {what} is {kind}; refusing it")
    return fd


def _flock_until(fd: int, deadline: float) -> bool:
    """An exclusive ``flock`` on ``fd``, retried until ``deadline``; False when still held."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise LedgerError(f"cannot lock the ledger: {e.strerror or e}") from None
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


_UNKNOWN_HOLDER = "holder unknown"


def _holder_of(fd: int) -> str:
    """The holder named in a lock file, waiting a moment for one that has just locked it."""
    holder = _read_holder(fd)
    for _ in range(10):
        # The holder writes its details just after locking; give it a moment.
        if holder != _UNKNOWN_HOLDER:
            break
        time.sleep(0.05)
        holder = _read_holder(fd)
    return holder


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}, run {info['run']}, since {info['started']}"
    except (ValueError, KeyError, TypeError, OSError):
        return _UNKNOWN_HOLDER


class GroupCommit:
    """Concurrent ``append`` calls share one durable write (group commit).

    A caller's records wait in a queue; whoever finds no flush under way takes the whole
    queue and makes it durable with :meth:`_flush` (a write and an fsync, or a
    transaction), and every caller returns only once its own records are durable. A failed
    flush fails every caller from then on (:meth:`_failure` says how). ``fsyncs`` counts
    flushes.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self._queued = 0
        self._durable = 0
        self._flushing = False
        self._error: Exception | None = None
        self.fsyncs = 0

    def _flush(self, batch: list[dict[str, Any]]) -> None:
        """Make ``batch`` durable; raise on failure."""
        raise NotImplementedError

    def _failure(self, error: Exception) -> LedgerError:
        """The error every later ``append`` raises after a failed flush."""
        raise NotImplementedError

    def _caught(self) -> tuple[type[Exception], ...]:
        """The exceptions a failed flush raises (others are bugs and propagate)."""
        return (OSError,)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Queue ``records`` and return once they are durable."""
        mine_records = list(records)
        with self._cv:
            self._pending.extend(mine_records)
            self._queued += 1
            mine = self._queued
            while self._durable < mine:
                if self._error is not None:
                    raise self._failure(self._error)
                if self._flushing:
                    self._cv.wait()
                    continue
                self._flushing = True
                batch, self._pending = self._pending, []
                upto = self._queued
                self._cv.release()
                done = False
                try:
                    if batch:
                        self._flush(batch)
                    done = True
                except Exception as e:
                    # Nothing of this batch is known durable: every caller fails from now on.
                    self._error = e
                    if not isinstance(e, self._caught()):
                        raise  # a bug, not a full disk: let it surface
                finally:
                    self._cv.acquire()
                    self._flushing = False
                    if batch:
                        self.fsyncs += 1
                    if done:
                        self._durable = upto
                    self._cv.notify_all()


class Writer(GroupCommit):
    """Appends records to the file durably; concurrent callers share one write and one fsync.

    The file is opened (created when missing) by the first append, so a run that records
    nothing leaves no ledger behind; ``on_create`` runs once if that append created it.
    """

    def __init__(self, path: str, on_create: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.path = path
        self._fd = -1
        self._on_create = on_create

    def _open(self) -> int:
        existed = os.path.lexists(self.path)
        fd = _open_regular(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "ledger", writing=True)
        if not existed and self._on_create is not None:
            try:
                self._on_create()
            except BaseException:
                os.close(fd)
                raise
        return fd

    def _caught(self) -> tuple[type[Exception], ...]:
        return (OSError, LedgerError)

    def _flush(self, batch: list[dict[str, Any]]) -> None:
        if self._fd < 0:
            self._fd = self._open()
        _write_all(self._fd, encode(batch))
        os.fsync(self._fd)

    def _failure(self, error: Exception) -> LedgerError:
        if isinstance(error, LedgerError):
            return error
        why = error.strerror if isinstance(error, OSError) else str(error)
        return LedgerError(f"{self.path}: cannot write ledger: {why}")

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (once)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def repair_tail(path: str, folded: Folded) -> None:
    """Cut off a torn last line, and blank torn records in the middle (call under the lock)."""
    if folded.torn_middle:
        _blank_torn_middle(path, folded.torn_middle)
    if folded.torn_at is None:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, folded.torn_at)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        # Read-only, append-only (chattr +a) or immutable: say what to do, no traceback.
        raise LedgerError(
            f"{path}:{folded.torn_line}: cannot cut off the incomplete last line a crash left "
            f"({e.strerror or e}); make the ledger writable, or cut the file to "
            f"{folded.torn_at} bytes by hand"
        ) from None
    log.get("ledger").warning(
        "cut off an incomplete last ledger line left by a crash", ledger=path, line=folded.torn_line
    )


def _blank_torn_middle(path: str, torn: list[tuple[int, int, int]]) -> None:
    """Overwrite each torn middle record with spaces, in place (same length, same inode): a
    blank line folds to nothing, and a crash halfway leaves each byte old or blank."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise LedgerError(
            f"{path}:{torn[0][2]}: cannot blank the incomplete record a merge moved into the "
            f"middle ({e.strerror or e}); make the ledger writable, or delete line {torn[0][2]} "
            "by hand"
        ) from None
    try:
        for start, length, number in torn:
            if torn_record(os.pread(fd, length, start)) is not True:
                continue  # not what the fold saw: leave it (the next fold refuses it)
            try:
                os.pwrite(fd, b" " * length, start)
            except OSError as e:
                raise LedgerError(
                    f"{path}:{number}: cannot blank the incomplete record a merge moved into "
                    f"the middle ({e.strerror or e}); delete line {number} by hand"
                ) from None
            log.get("ledger").warning(
                "blanked an incomplete record that a git merge moved into the middle of the "
                "ledger (a torn write; nothing was sent on it)",
                ledger=path,
                line=number,
            )
        os.fsync(fd)
    finally:
        os.close(fd)


# -- backends --------------------------------------------------------------------------------


class Sink(Protocol):
    """Where a run's records go: ``append`` returns once they are durable."""

    fsyncs: int

    def append(self, records: Iterable[dict[str, Any]]) -> None: ...


class Backend(Protocol):
    """A ledger: the JSON-lines file (:class:`FileLedger`) or a PostgreSQL table.

    Everything above this interface (plan, apply, status, cancel, the ledger commands) is
    the same code for both.
    """

    @property
    def name(self) -> str:
        """What to call it in output (a path, or a URL with its password masked)."""
        ...

    def fold(
        self,
        keys: set[str] | None = None,
        *,
        sim: bool = False,
        orphans_of: set[str] | None = None,
        gateway: str | None = None,
        other_gateways_count: bool = False,
    ) -> Folded:
        """Per-key states, for ``keys`` only when given (see :func:`fold` for ``orphans_of``,
        ``gateway`` and ``other_gateways_count``); warns about records of other gateways."""
        ...

    def lock(self, run_id: str, flows: Iterable[tuple[str, int]], timeout: float) -> AbstractContextManager[object]:
        """Exclusive right to send for ``flows`` ((orgId, flowId) pairs) for a whole run."""
        ...

    def holder(self) -> str | None:
        """Who holds the lock now, if anyone (for ``plan``'s note)."""
        ...

    def repair(self, folded: Folded) -> None:
        """Cut what a crash left half-written (under the lock)."""
        ...

    def writer(self) -> AbstractContextManager[Sink]:
        """A durable appender for one run."""
        ...

    def check_lock(self) -> None:
        """Raise :class:`LedgerError` unless the run's locks are provably still held (before a send)."""
        ...

    def records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every record with where it is (``path:line``), in stored order."""
        ...

    def add(self, records: Iterable[dict[str, Any]]) -> int:
        """Add records not already present (idempotent); returns how many were added."""
        ...


def identity(rec: dict[str, Any]) -> bytes:
    """A record's identity for idempotent import: its canonical JSON."""
    return orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)


class _LockAndRepair:
    def __init__(self, owner: FileLedger, lock: Lock, timeout: float) -> None:
        self._owner = owner
        self._lock = lock
        self._timeout = timeout

    def __enter__(self) -> Lock:
        self._lock.acquire(self._timeout)
        self._owner.held = self._lock
        return self._lock

    def __exit__(self, *exc: object) -> None:
        self._owner.held = None
        self._lock.release()


class FileLedger:
    """The JSON-lines file ledger (the default)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.held: Lock | None = None  # this ledger's lock while a run holds it
        self._said: set[object] = set()  # what its folds have warned about

    @property
    def name(self) -> str:
        """The file's path."""
        return self.path

    def fold(
        self,
        keys: set[str] | None = None,
        *,
        sim: bool = False,
        orphans_of: set[str] | None = None,
        gateway: str | None = None,
        other_gateways_count: bool = False,
    ) -> Folded:
        """Stream the file into per-key states."""
        folded = fold(
            self.path,
            keys,
            sim=sim,
            orphans_of=orphans_of,
            gateway=gateway,
            other_gateways_count=other_gateways_count,
        )
        note_folded(folded, self.path, gateway, self._said, counted=other_gateways_count)
        return folded

    def lock(
        self, run_id: str, flows: Iterable[tuple[str, int]], timeout: float
    ) -> AbstractContextManager[object]:
        """One lock for the whole file, whatever the flows."""
        del flows
        return _LockAndRepair(self, Lock(self.path, run_id), timeout)

    def holder(self) -> str | None:
        """The lock holder named in ``LEDGER.lock`` while the lock is held."""
        return lock_holder(self.path)

    def repair(self, folded: Folded) -> None:
        """Cut a torn last line."""
        repair_tail(self.path, folded)

    def writer(self) -> AbstractContextManager[Sink]:
        """An ``O_APPEND`` group-committing writer (it creates the file on its first append)."""
        held = self.held
        return Writer(self.path, held.cover_new_ledger if held is not None else None)

    def check_lock(self) -> None:
        """Nothing to check: the file lock lives as long as this process."""

    def records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every whole record with ``path:line``; a torn last line is left out."""
        f = _open_for_reading(self.path)
        if f is None:
            return
        with f:
            for number, line in enumerate(f, 1):
                if line[-1:] != b"\n" or line == b"\n":
                    continue
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    undecodable(self.path, number, line)  # raises unless blank or torn
                    continue
                _check(self.path, number, rec)
                yield f"{self.path}:{number}", rec

    def add(self, records: Iterable[dict[str, Any]]) -> int:
        """Append the records the file does not hold yet, durably (call under the lock).

        A torn last line (an import or apply killed while writing) is cut off first, as
        apply's repair does: appending after it would weld the first new record to it.
        """
        repair_tail(self.path, fold(self.path, set()))
        seen = {identity(rec) for _, rec in self.records()}
        new = []
        for rec in records:
            ident = identity(rec)
            if ident not in seen:
                seen.add(ident)
                new.append(rec)
        if new:
            with self.writer() as w:
                w.append(new)
        return len(new)


def lock_holder(ledger_path: str) -> str | None:
    """Who holds ``LEDGER.lock`` now, or None when nobody does (never blocks)."""
    try:
        fd = os.open(ledger_path + ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return _read_holder(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    # The lock is the file's: an apply may hold it through another name (link or symlink).
    try:
        fd = os.open(ledger_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return "an apply through another name for this file (a symlink or a hard link)"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(spec: str) -> bool:
    """Whether a ``--ledger`` value names a PostgreSQL ledger."""
    return spec.startswith(POSTGRES_SCHEMES)


def open_ledger(spec: str) -> Backend:
    """The ledger a ``--ledger`` value (or a default path) names."""
    if is_postgres(spec):
        import importlib

        try:
            pgledger = importlib.import_module("planrunner.ledger.postgres")
        except ModuleNotFoundError as e:
            raise UsageError(
                f"a PostgreSQL ledger needs the postgres extra: pip install 'planrunner[postgres]' ({e.name} is missing)"
            ) from None
        backend: Backend = pgledger.PostgresLedger(spec)
        return backend
    return FileLedger(spec)
