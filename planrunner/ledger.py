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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from planrunner import log, times
from planrunner.errors import LedgerError, LedgerLocked

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
    """Records as JSON lines, each ending in a newline."""
    return b"".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        for r in records
    )


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


class _Lines:
    """Iterate a ledger's complete lines with their numbers; note a torn tail."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.torn_at: int | None = None  # byte offset where a torn last line starts
        self.torn_line: int | None = None

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        offset = 0
        number = 0
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed in the finally below
        except FileNotFoundError:
            return
        except OSError as e:
            raise LedgerError(f"{self.path}: cannot read ledger: {e.strerror or e}") from None
        try:
            for line in f:
                number += 1
                if not line.endswith(b"\n"):
                    self.torn_at = offset
                    self.torn_line = number
                    return
                offset += len(line)
                yield number, line
        finally:
            f.close()


def _parse(path: str, number: int, line: bytes) -> dict[str, Any]:
    try:
        rec = json.loads(line)
    except ValueError:
        raise LedgerError(
            f"{path}:{number}: corrupt ledger line (not JSON); refusing to guess"
        ) from None
    if not isinstance(rec, dict) or any(k not in rec for k in _REQUIRED):
        raise LedgerError(
            f"{path}:{number}: corrupt ledger line (missing fields); refusing to guess"
        )
    if rec["v"] != 1 or rec["event"] not in EVENTS or not isinstance(rec["key"], str):
        raise LedgerError(
            f"{path}:{number}: unsupported ledger record (v={rec['v']!r}, event={rec['event']!r})"
        )
    return rec


def fold(path: str, keys: set[str] | None = None) -> tuple[dict[str, KeyState], _Lines]:
    """Stream the ledger into per-key states (only ``keys`` when given)."""
    states: dict[str, KeyState] = {}
    lines = _Lines(path)
    for number, line in lines:
        if line == b"\n":
            continue
        rec = _parse(path, number, line)
        key = rec["key"]
        if keys is not None and key not in keys:
            continue
        state = states.get(key)
        if state is None:
            state = states[key] = KeyState()
        state.add(rec)
    return states, lines


def plan_outcomes(path: str, keys: set[str]) -> dict[str, Any]:
    """Per-key outcomes for ``plan``: done, retry or unknown (pending keys are absent)."""
    from planrunner.report import Outcome

    states, lines = fold(path, keys)
    if lines.torn_line is not None:
        log.get("ledger").warning(
            "ledger has an incomplete last line (an apply may be writing); ignoring it",
            ledger=path,
            line=lines.torn_line,
        )
    out: dict[str, Any] = {}
    for key, state in states.items():
        status = state.status
        if status == DONE:
            out[key] = Outcome("done", state.flow_instance_id)
        elif status == UNKNOWN:
            out[key] = Outcome("unknown")
        elif status == FAILED:
            out[key] = Outcome("retry", None, state.error)
    return out


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
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; deleting it would race with a waiting apply)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}, run {info['run']}, since {info['started']}"
    except (ValueError, KeyError, TypeError, OSError):
        return "holder unknown"


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


def repair_tail(path: str, lines: _Lines) -> None:
    """Cut off a torn last line (call under the lock); warns with its line number."""
    if lines.torn_at is None:
        return
    with open(path, "r+b") as f:
        f.truncate(lines.torn_at)
        f.flush()
        os.fsync(f.fileno())
    log.get("ledger").warning(
        "cut off an incomplete last ledger line left by a crash", ledger=path, line=lines.torn_line
    )
