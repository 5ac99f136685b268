"""The JSON-lines ledger: safe opening, append and fsync, torn-tail repair, the fold of a file.

Records are appended with ``O_APPEND`` and made durable with ``fsync`` before anything
that depends on them happens; concurrent appends share one fsync (group commit). The
fold is order-independent, so a ``merge=union`` of two branches' ledgers folds right.
The lock is :mod:`planrunner.ledger.lock`'s.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from planrunner import log
from planrunner.errors import LedgerError
from planrunner.ledger.base import GroupCommit
from planrunner.ledger.fold import Folded, fold_into, note_folded
from planrunner.ledger.lock import Lock, lock_holder, open_regular
from planrunner.ledger.records import (
    _EVENT_SET,
    _REQUIRED_SET,
    check,
    encode,
    identity,
    round_problem,
    strings,
)

CONFLICT_MARKERS = (b"<<<<<<<", b"=======", b">>>>>>>")
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
    if line.startswith(CONFLICT_MARKERS):
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


def open_for_reading(path: str) -> Any:
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
    """Stream the ledger file through :func:`fold_into` (see there for the arguments); never
    skips a bad line. A last line without its newline is a torn write: it is noted
    (``torn_line``), not folded; a torn record that a merge moved into the middle is noted in
    ``torn_middle``.
    """
    out = Folded()
    f = open_for_reading(path)
    if f is None:
        return out
    with f:
        return fold_into(
            out,
            _valid_lines(path, f, out),
            keys,
            sim=sim,
            orphans_of=orphans_of,
            gateway=gateway,
            other_gateways_count=other_gateways_count,
        )


def _valid_lines(path: str, f: Any, out: Folded) -> Iterator[dict[str, Any]]:
    """The records of an open ledger file, each valid (:func:`planrunner.ledger.records.check`), noting torn
    lines in ``out``."""
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    offset = number = 0
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
        # The checks the fold needs, inlined for the common case (and round_problem for
        # records of a rerun round or with parameters); anything wrong gets the one rule's
        # verdict (records.validate) and its message.
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
            or (("round" in rec or "sentTime" in rec) and round_problem(rec) is not None)
            or ("parameters" in rec and not strings(rec["parameters"]))
        ):
            check(f"{path}:{number}", rec)
        yield rec


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
        fd = open_regular(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "ledger", writing=True)
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


class FileSession:
    """A run's hold on the file (:class:`planrunner.ledger.base.Session`): exists only while
    the lock is held; its fold cuts what a crash left half-written before anything is written."""

    def __init__(self, ledger: FileLedger, lock: Lock) -> None:
        self._ledger = ledger
        self._lock = lock
        self._writer = Writer(ledger.path, lock.cover_new_ledger)

    @property
    def fsyncs(self) -> int:
        """How many writes and fsyncs the session's appends took."""
        return self._writer.fsyncs

    def fold(
        self,
        keys: set[str] | None = None,
        *,
        sim: bool = False,
        orphans_of: set[str] | None = None,
        gateway: str | None = None,
        other_gateways_count: bool = False,
    ) -> Folded:
        """:meth:`FileLedger.read`, then the torn tail cut off (our records must not follow it)."""
        folded = self._ledger.read(
            keys,
            sim=sim,
            orphans_of=orphans_of,
            gateway=gateway,
            other_gateways_count=other_gateways_count,
        )
        repair_tail(self._ledger.path, folded)
        return folded

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Durable when it returns (group commit: one write and one fsync per batch)."""
        self._writer.append(records)

    def add(self, records: Iterable[dict[str, Any]]) -> int:
        """Append the records the file does not hold yet (by identity); how many were added.

        A torn last line (an import or apply killed while writing) is cut off first:
        appending after it would weld the first new record to it.
        """
        path = self._ledger.path
        repair_tail(path, fold(path, set()))
        seen = {identity(rec) for _, rec in self._ledger.records()}
        new = []
        for rec in records:
            ident = identity(rec)
            if ident not in seen:
                seen.add(ident)
                new.append(rec)
        if new:
            self._writer.append(new)
        return len(new)

    def check_lock(self) -> None:
        """Nothing to check: the file lock lives as long as this process."""

    def close(self) -> None:
        """Close the file."""
        self._writer.close()


class FileLedger:
    """The JSON-lines file ledger (the default)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._said: set[object] = set()  # what its folds have warned about

    @property
    def name(self) -> str:
        """The file's path."""
        return self.path

    def read(
        self,
        keys: set[str] | None = None,
        *,
        sim: bool = False,
        orphans_of: set[str] | None = None,
        gateway: str | None = None,
        other_gateways_count: bool = False,
    ) -> Folded:
        """Stream the file into per-key states (no lock, no writes: plan and status)."""
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

    @contextlib.contextmanager
    def session(
        self, run_id: str, flows: Iterable[tuple[str, int]], timeout: float
    ) -> Iterator[FileSession]:
        """The file's one lock (whatever the flows) for a run, and a session to write under it."""
        del flows
        lock = Lock(self.path, run_id)
        lock.acquire(timeout)
        try:
            session = FileSession(self, lock)
            try:
                yield session
            finally:
                session.close()
        finally:
            lock.release()

    def holder(self) -> str | None:
        """The lock holder named in ``LEDGER.lock`` while the lock is held."""
        return lock_holder(self.path)

    def records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every whole record with ``path:line``; a torn last line is left out."""
        f = open_for_reading(self.path)
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
                yield f"{self.path}:{number}", check(f"{self.path}:{number}", rec)
