"""Helpers shared by the tests and the benchmarks: plans, processes, the simulator's log.

Importable as ``testing`` from the repository root (pytest puts the root on ``sys.path``;
the benchmarks add it themselves).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"

PLAN_HEAD = """version: 1
target:
  gateway: {gateway}
  orgId: o1
  userId: u1
{target_extra}timezone: {zone}
flows:
"""

SIM_ENV = {"ENOS_ACCESS_KEY": "sim-access-key", "ENOS_SECRET_KEY": "sim-secret-key"}
# Timing settings shortened so tests run in seconds (docs/apply.md lists them).
FAST_ENV = {
    "PLANRUNNER_IN_FLIGHT_SECONDS": "0.5",
    "PLANRUNNER_DUPLICATE_WAIT": "0.3",
    "PLANRUNNER_LOOKUP_BACKOFF_CAP": "0.05",
}


def venv_tool(name: str) -> str:
    """A console script installed beside this interpreter (the test extras' tools).

    CI runs the venv's python without activating the venv, so its scripts are not on PATH:
    look next to ``sys.executable``, never on PATH, so a tool installed by hand elsewhere
    can never stand in for a missing install step.
    """
    exe = Path(sys.executable).parent / name
    assert exe.is_file(), f"{name} is a test dependency (pip install '.[test]'); not found at {exe}"
    return str(exe)


@dataclass
class Run:
    """What an in-process ``main([...])`` returned and printed."""

    code: int
    out: str
    err: str


def run_process(argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run `python -m planrunner ...` as a real process, with the fast timing settings
    (:data:`FAST_ENV`) unless ``env`` sets them otherwise."""
    env = {**os.environ, **FAST_ENV, **kw.pop("env", {})}
    return subprocess.run(
        [sys.executable, "-m", "planrunner", *argv],
        capture_output=True,
        text=True,
        cwd=kw.pop("cwd", ROOT),
        env=env,
        timeout=kw.pop("timeout", 120),
        check=False,
        **kw,
    )


def write_plan(
    tmp_path: Path,
    flows: str,
    zone: str = "UTC",
    gateway: str = "https://apigw.example.com",
    name: str = "plan.yaml",
    api: str | None = None,
    server_zone: str | None = None,
) -> Path:
    """A plan file of ``flows`` (YAML text) under a standard head."""
    extra = ""
    if api:
        extra += f"  api: {api}\n"
    if server_zone:
        extra += f'  serverTimezone: "{server_zone}"\n'
    path = tmp_path / name
    path.write_text(PLAN_HEAD.format(gateway=gateway, zone=zone, target_extra=extra) + flows)
    return path


def make_client(url: str, **kw: Any) -> Any:
    """A planrunner client for the simulator's default keys."""
    from planrunner import enos
    from planrunner.sim import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY

    creds = kw.pop("credentials", None) or enos.Credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)
    return enos.Client(url, kw.pop("org_id", "o1"), kw.pop("user_id", "u1"), creds, **kw)


def cron_flows(n_flows: int, per_flow: int, first_id: int = 1, step: str = "*/5") -> str:
    """Plan flows text: n flows of `per_flow` entries each, 5 minutes apart."""
    return "".join(
        f'  - {{name: f{first_id + i}, flowId: {first_id + i}, cron: "{step} * * * *", from: 2026-01-01, count: {per_flow}}}\n'
        for i in range(n_flows)
    )


def duplicates_and_resends(triggers: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """(keys created more than once, trigger requests sent for a key after its instance existed).

    The second list is what a lookup could have prevented: once an instance exists, nothing
    more should be sent for its (flowId, triggerTime).
    """
    created: Counter[tuple[int, int]] = Counter()
    resends = []
    for t in triggers:
        key = (t["flowId"], t["triggerTime"])
        if created[key]:
            resends.append(t)
        if t["flowInstanceId"]:
            created[key] += 1
    return [k for k, n in created.items() if n > 1], resends


def assert_exactly_once(triggers: list[dict[str, Any]], expected_keys: set[tuple[int, int]]) -> None:
    """Every expected (flowId, triggerTime) created exactly once; nothing re-sent over an instance."""
    created = {(t["flowId"], t["triggerTime"]) for t in triggers if t["flowInstanceId"]}
    assert created == expected_keys, (
        f"missing {sorted(expected_keys - created)[:3]}, extra {sorted(created - expected_keys)[:3]}"
    )
    dupes, resends = duplicates_and_resends(triggers)
    assert not dupes, f"created more than once: {dupes[:3]}"
    assert not resends, f"re-sent for an instance that existed: {resends[:3]}"


def apply_argv(plan: Path | str, url: str, *extra: str, yes: bool = True) -> list[str]:
    """The command line of `planrunner apply PLAN --gateway URL [--yes] --log-format json ...`."""
    confirm = ["--yes"] if yes else []
    return [
        sys.executable,
        "-m",
        "planrunner",
        "apply",
        str(plan),
        "--gateway",
        url,
        *confirm,
        "--log-format",
        "json",
        *extra,
    ]


def start_apply(
    plan: Path | str,
    url: str,
    *extra: str,
    yes: bool = True,
    stdout: Any = subprocess.PIPE,
    stderr: Any = subprocess.PIPE,
    stdin: Any = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """`planrunner apply PLAN --gateway URL [--yes]` as a real process, with the simulator's keys."""
    return subprocess.Popen(
        apply_argv(plan, url, *extra, yes=yes),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        text=True,
        cwd=ROOT,
        env={**os.environ, **SIM_ENV, **FAST_ENV, **(env or {})},
    )


def run_in_pty(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    columns: int = 160,
    answer: str | None = None,
    timeout: float = 120,
) -> tuple[int, str, str]:
    """Run `python -m planrunner ARGV` with stdin and stderr on a pseudo-terminal of ``columns``.

    Returns (exit code, stdout, what the terminal showed). ``answer`` is typed at a prompt.
    """
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    full_env = {**os.environ, **SIM_ENV, **FAST_ENV, **(env or {})}
    full_env.pop("COLUMNS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "planrunner", *argv],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=terminal,
        cwd=ROOT,
        env=full_env,
        text=True,
    )
    os.close(terminal)
    chunks: list[bytes] = []
    sent = answer is None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            # Never block past the deadline: a child that stops writing but does not exit
            # must fail the test, not hang the suite.
            ready, _, _ = select.select([controller], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                data = os.read(controller, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
            if not sent and b"[y/N]" in b"".join(chunks):
                os.write(controller, (answer or "") .encode() + b"\n")
                sent = True
        out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


def apply_json(run: Any, plan: Path | str, url: str, *extra: str) -> tuple[Run, Any]:
    """`apply PLAN --gateway URL --yes --format json` in-process: (the run, its JSON or None)."""
    import json

    r: Run = run("apply", str(plan), "--gateway", url, "--yes", "--format", "json", *extra)
    return r, json.loads(r.out) if r.out.strip() else None


def crashed_intent(path: Path, trigger_time: int, attempt: str = "old.1", flow_id: int = 1) -> None:
    """Append the intent a run left when it died before recording its answer (org o1)."""
    from planrunner import ledger

    record = ledger.record(
        "intent",
        f"o1/{flow_id}/{trigger_time}",
        flow_id,
        "o1",
        trigger_time,
        attempt,
        flow=f"f{flow_id}",
        run="old",
    )
    with path.open("ab") as f:
        f.write(ledger.encode([record]))
