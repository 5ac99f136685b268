from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from planrunner.cli import main

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"

PLAN_HEAD = """version: 1
target:
  gateway: {gateway}
  orgId: o1
  userId: u1
timezone: {zone}
flows:
"""


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]):
    """Call main([...]) in-process; return its code and what it printed."""

    def _run(*argv: str) -> Run:
        code = main(list(argv))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return _run


def run_process(argv: Sequence[str], **kw) -> subprocess.CompletedProcess[str]:
    """Run `python -m planrunner ...` as a real process."""
    env = {**os.environ, **kw.pop("env", {})}
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
) -> Path:
    path = tmp_path / name
    path.write_text(PLAN_HEAD.format(gateway=gateway, zone=zone) + flows)
    return path


@pytest.fixture
def sim():
    """A simulator on a free loopback port, no listed flows (permissive)."""
    from planrunner.sim import Simulator

    with Simulator() as s:
        yield s


def make_client(url: str, **kw):
    from planrunner import enos
    from planrunner.sim import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY

    creds = kw.pop("credentials", None) or enos.Credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)
    return enos.Client(url, kw.pop("org_id", "o1"), kw.pop("user_id", "u1"), creds, **kw)


SIM_ENV = {"ENOS_ACCESS_KEY": "sim-access-key", "ENOS_SECRET_KEY": "sim-secret-key"}


def cron_flows(n_flows: int, per_flow: int, first_id: int = 1, step: str = "*/5") -> str:
    """Plan flows text: n flows of `per_flow` entries each, 5 minutes apart."""
    return "".join(
        f'  - {{name: f{first_id + i}, flowId: {first_id + i}, cron: "{step} * * * *", from: 2026-01-01, count: {per_flow}}}\n'
        for i in range(n_flows)
    )


def assert_exactly_once(triggers: list[dict], expected_keys: set[tuple[int, int]]) -> None:
    """Every expected (flowId, triggerTime) created exactly once; nothing re-sent over an instance."""
    from collections import Counter

    created = Counter((t["flowId"], t["triggerTime"]) for t in triggers if t["flowInstanceId"])
    assert set(created) == expected_keys
    assert all(n == 1 for n in created.values()), [k for k, n in created.items() if n > 1]
    dupes = [t for t in triggers if t["status"] == 62102]
    assert not dupes, f"re-sent for an instance that existed: {dupes[:3]}"


@pytest.fixture
def sim_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SIM_ENV.items():
        monkeypatch.setenv(k, v)


def start_apply(
    plan,
    url: str,
    *extra: str,
    yes: bool = True,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    stdin=subprocess.DEVNULL,
):
    """`planrunner apply PLAN --gateway URL [--yes]` as a real process, with the simulator's keys."""
    confirm = ["--yes"] if yes else []
    return subprocess.Popen(
        [
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
        ],
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        text=True,
        cwd=ROOT,
        env={**os.environ, **SIM_ENV},
    )
