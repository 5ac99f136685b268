"""The file ledger's lock: one ``flock`` on ``LEDGER.lock`` (and on the ledger itself) for a
whole run, released by the OS when the process dies; the lock file names its holder.

Also the careful opener every write of a ledger file goes through (:func:`open_regular`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import time

from planrunner import log, times
from planrunner.errors import LedgerError, LedgerLocked


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
        fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, "lock file")
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
            fd = open_regular(self.ledger_path, os.O_WRONLY | os.O_APPEND, "ledger", writing=True)
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


def open_regular(path: str, flags: int, what: str, *, writing: bool = False) -> int:
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
