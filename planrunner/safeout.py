"""Output files that can never overwrite the tool's own inputs (``plan --out``, ``ledger export``).

An output option names a file to create or replace. It is refused (exit 2) when it is a
symbolic link (replacing it would write wherever the link points) or not a regular file,
and when it is the same file as one of the command's inputs (the plan, the ledger): by
path, or by inode (a hard link). The data goes to a temporary file in the same directory,
is fsync'd, and is renamed over the target, so a crash leaves the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from planrunner.errors import UsageError


def check_target(path: str, inputs: Iterable[tuple[str, str]], what: str) -> None:
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

    Checked first with :func:`check_target`. The new file gets the usual mode for a new file
    (0666 less the umask), or the mode of the file it replaces.
    """
    inputs = list(inputs)
    check_target(path, inputs, what)
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
        check_target(path, inputs, what)  # nothing swapped in meanwhile
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
