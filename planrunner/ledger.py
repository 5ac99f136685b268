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
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from planrunner import log, times
from planrunner.errors import LedgerError, LedgerLocked
from planrunner.report import Outcome

EVENTS = ("intent", "triggered", "failed", "unknown", "reconciled")
_REQUIRED = ("v", "event", "key", "flowId", "orgId", "triggerTime", "attempt", "at")

DONE = "done"
UNKNOWN = "unknown"
FAILED = "failed"
PENDING = "pending"


def default_path(plan_path: str) -> str:
    """The plan's path with ``.yaml``/``.yml`` replaced by ``.ledger.jsonl``."""
    for suffix in (".yaml", ".yml"):
        if plan_path.endswith(suffix):
            return plan_path[: -len(suffix)] + ".ledger.jsonl"
    return plan_path + ".ledger.jsonl"


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


def encode(records: Iterable[dict[str, Any]]) -> bytes:
    """Records as compact UTF-8 JSON lines, each ending in a newline."""
    return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)


@dataclass(slots=True)
class KeyState:
    """What the ledger says of one key, folded in any order."""

    done: bool = False
    flow_instance_id: str | None = None
    intents: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)
    failed: bool = False
    error: str | None = None

    @property
    def status(self) -> str:
        """done, unknown, failed or pending, as DESIGN.md section 4 defines them."""
        if self.done:
            return DONE
        if self.intents - self.closed:
            return UNKNOWN
        return FAILED if self.failed else PENDING

    @property
    def open_attempts(self) -> set[str]:
        """Attempts with an intent and no outcome yet."""
        return self.intents - self.closed

    def add(self, rec: dict[str, Any]) -> None:
        """Fold one record in."""
        event = rec["event"]
        if self.done:
            return  # done is absorbing: any triggered or found attempt settles the key
        attempt = rec["attempt"]
        if event == "intent":
            self.intents.add(attempt)
        elif event == "triggered":
            self.done = True
            self.flow_instance_id = rec.get("flowInstanceId")
            self.intents = set()
            self.closed = set()
        elif event == "failed":
            self.closed.add(attempt)
            self.failed = True
            self.error = f"{rec.get('code')}: {rec.get('msg')}"
        elif event == "reconciled":
            if rec.get("found") is True:
                self.done = True
                self.flow_instance_id = rec.get("flowInstanceId")
                self.intents = set()
                self.closed = set()
            else:
                self.closed.add(attempt)
        # "unknown" records say why an attempt is open; the open intent already says it is.


_REQUIRED_SET = frozenset(_REQUIRED)
_EVENT_SET = frozenset(EVENTS)


def _corrupt(path: str, number: int, why: str) -> LedgerError:
    return LedgerError(f"{path}:{number}: corrupt ledger line ({why}); refusing to guess")


def _check(path: str, number: int, rec: Any) -> None:
    if not isinstance(rec, dict) or not rec.keys() >= _REQUIRED_SET:
        raise _corrupt(path, number, "missing fields")
    if rec["v"] != 1 or rec["event"] not in _EVENT_SET or not isinstance(rec["key"], str):
        raise LedgerError(
            f"{path}:{number}: unsupported ledger record (v={rec['v']!r}, event={rec['event']!r})"
        )


class Folded:
    """Per-key states of a ledger. Done keys (the bulk of a long ledger) cost one dict slot."""

    __slots__ = ("done", "open", "torn_at", "torn_line")

    def __init__(self) -> None:
        self.done: dict[str, str | None] = {}  # key -> flowInstanceId
        self.open: dict[str, KeyState] = {}  # keys not done: unknown, failed or pending
        self.torn_at: int | None = None
        self.torn_line: int | None = None

    def status(self, key: str) -> str:
        """done, unknown, failed or pending."""
        if key in self.done:
            return DONE
        state = self.open.get(key)
        return state.status if state is not None else PENDING

    def state(self, key: str) -> KeyState:
        """The key's state (a fresh one for a key the ledger never mentions)."""
        if key in self.done:
            return KeyState(done=True, flow_instance_id=self.done[key])
        return self.open.get(key) or KeyState()


def fold(path: str, keys: set[str] | None = None) -> Folded:
    """Stream the ledger into per-key states (only ``keys`` when given); never skips a bad line.

    A last line without its newline is a torn write: it is noted (``torn_line``), not folded.
    """
    out = Folded()
    done, open_ = out.done, out.open
    lone: dict[str, str] = {}  # keys whose only record so far is one intent: key -> attempt
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return out
    except OSError as e:
        raise LedgerError(f"{path}: cannot read ledger: {e.strerror or e}") from None
    offset = number = 0
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
                raise _corrupt(path, number, "not JSON") from None
            if (
                type(rec) is not dict
                or not rec.keys() >= _REQUIRED_SET
                or rec["v"] != 1
                or rec["event"] not in _EVENT_SET
            ):
                _check(path, number, rec)
            key = rec["key"]
            if key in done or (keys is not None and key not in keys):
                if type(key) is not str:
                    _check(path, number, rec)
                continue
            event = rec["event"]
            if event == "triggered":  # the common case, settled without a state object
                done[key] = rec.get("flowInstanceId")
                lone.pop(key, None)
                open_.pop(key, None)
                continue
            state = open_.get(key)
            if state is None:
                if type(key) is not str:
                    _check(path, number, rec)
                if event == "intent" and key not in lone:
                    lone[key] = rec["attempt"]  # most intents meet their result next: no state yet
                    continue
                state = open_[key] = KeyState()
                if key in lone:
                    state.intents.add(lone.pop(key))
            state.add(rec)
            if state.done:
                done[key] = state.flow_instance_id
                del open_[key]
    for key, attempt in lone.items():
        open_[key] = KeyState(intents={attempt})
    return out


def plan_outcomes(path: str, keys: set[str]) -> PlanOutcomes:
    """What ``plan`` shows per key: done, retry or unknown (pending keys have none)."""
    folded = fold(path, keys)
    if folded.torn_line is not None:
        log.get("ledger").warning(
            "ledger has an incomplete last line (an apply may be writing); ignoring it",
            ledger=path,
            line=folded.torn_line,
        )
    return PlanOutcomes(folded)


class PlanOutcomes(Mapping[str, "Outcome"]):
    """A read-only view of a fold as ``plan`` statuses, built per key on demand."""

    def __init__(self, folded: Folded) -> None:
        self._folded = folded

    def get(self, key: str, default: Any = None) -> Any:
        folded = self._folded
        if key in folded.done:
            return Outcome("done", folded.done[key])
        state = folded.open.get(key)
        if state is not None:
            status = state.status
            if status == UNKNOWN:
                return Outcome("unknown")
            if status == FAILED:
                return Outcome("retry", None, state.error)
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
    """An exclusive ``flock`` on ``<ledger>.lock``, released by the OS if the process dies."""

    def __init__(self, ledger_path: str, run_id: str) -> None:
        self.path = ledger_path + ".lock"
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self, timeout: float) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; else :class:`LedgerLocked`."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise LedgerError(f"{self.path}: cannot open lock file: {e.strerror or e}") from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise LedgerError(f"{self.path}: cannot lock: {e.strerror}") from None
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    for _ in range(10):
                        # The holder writes its details just after locking; give it a moment.
                        if holder != _UNKNOWN_HOLDER:
                            break
                        time.sleep(0.05)
                        holder = _read_holder(fd)
                    os.close(fd)
                    raise LedgerLocked(
                        f"ledger {self.path[: -len('.lock')]} is locked by another apply ({holder})"
                    ) from None
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "run": self.run_id,
            "started": times.format_utc(time.time_ns() // 1_000_000),
        }
        data = (json.dumps(info) + "\n").encode()
        # Overwrite, then cut: the file is never empty for a waiting apply to read.
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; deleting it would race with a waiting apply)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


_UNKNOWN_HOLDER = "holder unknown"


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}, run {info['run']}, since {info['started']}"
    except (ValueError, KeyError, TypeError, OSError):
        return _UNKNOWN_HOLDER


class Writer:
    """Appends records durably; concurrent callers share one write and one fsync."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise LedgerError(
                f"{path}: cannot open ledger for writing: {e.strerror or e}"
            ) from None
        self._cv = threading.Condition()
        self._pending: list[bytes] = []
        self._queued = 0
        self._durable = 0
        self._flushing = False
        self._error: OSError | None = None
        self.fsyncs = 0

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Write ``records`` and return once they are on disk (fsync'd)."""
        data = encode(records)
        with self._cv:
            self._pending.append(data)
            self._queued += 1
            mine = self._queued
            while self._durable < mine:
                if self._error is not None:
                    raise LedgerError(f"{self.path}: cannot write ledger: {self._error.strerror}")
                if self._flushing:
                    self._cv.wait()
                    continue
                self._flushing = True
                batch, self._pending = self._pending, []
                upto = self._queued
                self._cv.release()
                try:
                    _write_all(self._fd, b"".join(batch))
                    os.fsync(self._fd)
                except OSError as e:
                    self._error = e
                finally:
                    self._cv.acquire()
                    self._flushing = False
                    self.fsyncs += 1
                    if self._error is None:
                        self._durable = upto
                    self._cv.notify_all()

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def repair_tail(path: str, folded: Folded) -> None:
    """Cut off a torn last line (call under the lock); warns with its line number."""
    if folded.torn_at is None:
        return
    with open(path, "r+b") as f:
        f.truncate(folded.torn_at)
        f.flush()
        os.fsync(f.fileno())
    log.get("ledger").warning(
        "cut off an incomplete last ledger line left by a crash", ledger=path, line=folded.torn_line
    )
