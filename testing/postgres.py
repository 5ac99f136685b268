"""A throwaway PostgreSQL server for the tests, the benchmarks and CI.

The server runs from the machine's packages (``pg_config --bindir``, else
``/usr/lib/postgresql/*/bin``) in a temporary data directory, on a free loopback port,
with trust authentication on loopback only. PostgreSQL refuses to run as root, so when we
are root the server runs as the ``postgres`` user.

Tests read the server's URL from ``PLANRUNNER_TEST_PG`` (CI sets it), else start one
server for the session (:func:`session_url`). A missing server fails the tests; it never
skips them.

As a command (CI uses this)::

    python -m testing.postgres start DIR   # prints the URL; DIR is new or empty
    python -m testing.postgres stop DIR
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ENV_URL = "PLANRUNNER_TEST_PG"
ENV_BINDIR = "PLANRUNNER_PG_BINDIR"  # overrides the search for the server's binaries
SERVER_USER = "postgres"  # the OS user that runs the server when we are root
DB_USER = "postgres"
DB_NAME = "postgres"
START_SECONDS = 60  # how long pg_ctl waits for the server to accept connections
MAX_CONNECTIONS = 300  # many runners at once, several connections each, parallel tests
PORT_ATTEMPTS = 5  # a free port may be taken between probing and binding


class ServerUnavailable(RuntimeError):
    """No PostgreSQL server could be started (the message says why and what to install)."""


@dataclass(frozen=True)
class Server:
    """A running throwaway server: its URL and where it lives."""

    url: str
    base: Path
    bindir: Path

    @property
    def data(self) -> Path:
        """The data directory."""
        return self.base / "data"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        stop(self.base, self.bindir)


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``."""
    candidates: list[str] = []
    if os.environ.get(ENV_BINDIR):
        candidates.append(os.environ[ENV_BINDIR])
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
            candidates.append(out)
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)  # newest first
    for d in candidates:
        if (Path(d) / "initdb").is_file() and (Path(d) / "pg_ctl").is_file():
            return Path(d)
    raise ServerUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl) found via pg_config --bindir or "
        "/usr/lib/postgresql/*/bin; install them (apt-get install -y postgresql) or set "
        f"{ENV_URL} to a server's URL"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    # A system tool (util-linux), not the venv's: CI's clean PATH leaves out the sbin dirs.
    runuser = shutil.which("runuser", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if runuser:
        return [runuser, "-u", SERVER_USER, "--", *argv]
    return ["su", SERVER_USER, "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in argv)]


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, SERVER_USER, SERVER_USER)


def _run(argv: list[str], what: str) -> None:
    p = subprocess.run(
        _as_server_user(argv), capture_output=True, text=True, check=False, timeout=START_SECONDS * 2
    )
    if p.returncode != 0:
        raise ServerUnavailable(f"{what} failed ({p.returncode}): {(p.stderr or p.stdout)[-1500:]}")


def start(base: Path | None = None) -> Server:
    """Initialise and start a server in ``base`` (a new temporary directory by default)."""
    bindir = find_bindir()
    if base is None:
        base = Path(tempfile.mkdtemp(prefix="planrunner-pg-"))
    else:
        base.mkdir(parents=True, exist_ok=True)
        if any(base.iterdir()):
            raise ServerUnavailable(f"{base} is not empty")
    # The server user must reach its files: mkdtemp makes the directory 0700 for us.
    _chown(base)
    data = base / "data"
    _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            DB_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ],
        "initdb",
    )
    with open(data / "pg_hba.conf", "w") as f:  # loopback only; no other address can log in
        f.write("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base} "
            f"-c max_connections={MAX_CONNECTIONS}"
        )
        p = subprocess.run(
            _as_server_user(
                [
                    str(bindir / "pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    str(START_SECONDS),
                    "-D",
                    str(data),
                    "-l",
                    str(base / "server.log"),
                    "-o",
                    options,
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
            timeout=START_SECONDS * 2,
        )
        if p.returncode == 0:
            return Server(f"postgresql://{DB_USER}@127.0.0.1:{port}/{DB_NAME}", base, bindir)
        if attempt == PORT_ATTEMPTS - 1:
            log = (base / "server.log").read_text(errors="replace") if (base / "server.log").exists() else ""
            shutil.rmtree(base, ignore_errors=True)
            raise ServerUnavailable(f"pg_ctl start failed: {p.stderr[-800:]} {log[-1500:]}")
    raise AssertionError("unreachable")


def stop(base: Path, bindir: Path | None = None) -> None:
    """Stop the server living in ``base`` and delete the directory."""
    data = base / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run(
            _as_server_user(
                [str((bindir or find_bindir()) / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(data)]
            ),
            capture_output=True,
            check=False,
            timeout=START_SECONDS * 2,
        )
    shutil.rmtree(base, ignore_errors=True)


def with_table(url: str, table: str | None = None) -> str:
    """``url`` naming a ledger table of its own (a fresh unique name by default)."""
    name = table or "t_" + uuid.uuid4().hex[:16]
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}table={name}"


_started: list[Server] = []  # the server this process started for its tests, if any


def session_url() -> str:
    """The test server's URL: ``$PLANRUNNER_TEST_PG``, else a server started once per process.

    Raises :class:`ServerUnavailable` when none can be started (tests turn that into a
    failure, never a skip). The server started here is stopped at interpreter exit.
    """
    if os.environ.get(ENV_URL):
        return os.environ[ENV_URL]
    if not _started:
        import atexit

        _started.append(start())
        atexit.register(_started[0].stop)
    return _started[0].url


def require_url() -> str:
    """The test server's URL, or a failed test naming why there is none (never a skip)."""
    import pytest

    try:
        return session_url()
    except (ServerUnavailable, OSError, subprocess.SubprocessError) as e:
        pytest.fail(
            f"no PostgreSQL server for the shared-ledger tests: {e} (set {ENV_URL} to a server's "
            "URL, or install the server binaries)",
            pytrace=False,
        )


def wait_ready(url: str, seconds: float = START_SECONDS) -> None:
    """Wait until ``url`` accepts connections."""
    import psycopg

    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main(argv: list[str]) -> int:
    """``start DIR`` (prints the URL) or ``stop DIR``."""
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m testing.postgres start|stop DIR", file=sys.stderr)
        return 2
    base = Path(argv[1])
    if argv[0] == "start":
        try:
            server = start(base)
        except ServerUnavailable as e:
            print(f"testing.postgres: {e}", file=sys.stderr)
            return 1
        print(server.url)
        return 0
    stop(base)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
