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
