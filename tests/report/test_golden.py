"""Outputs pinned byte for byte: what plan, validate, apply, status and ledger log print, and
the ledger apply writes, for a fixed set of plans, before and after the code moves between
modules (the rooms redesign). A change of output is a decision, never a side effect of a move:
regenerate with ``GOLDEN_UPDATE=1 pytest tests/report/test_golden.py`` and review the diff.

Volatile parts are masked the same way on both sides: run and attempt ids, record times,
durations. Ledger lines are sorted (workers write in any order)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from testing import DATA, ROOT, run_process

GOLDEN = DATA / "golden"
NOW = "2026-12-03T00:00:00Z"
PLANS = {
    "example": ROOT / "plans" / "example.yaml",
    "berlin": GOLDEN / "berlin.yaml",
}
ENV = {"NO_COLOR": "1", "COLUMNS": "100", "PLANRUNNER_LEDGER": "", "TZ": "UTC"}

_MASKS = [
    (re.compile(r"r\d{8}T\d{6}-[0-9a-f]{6}(\.\d+)?"), "RUN"),
    (re.compile(r'"at": ?"[0-9T:.\-]+Z"'), '"at":"AT"'),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"), "AT"),  # record times
    (re.compile(r'"(seconds|elapsed)": ?[0-9.e\-]+'), r'"\1":0'),
    (re.compile(r"\bin \d+(\.\d+)? ?s\b"), "in Ns"),
    (re.compile(r"\d+(\.\d+)?/s\b"), "N/s"),
]


def mask(text: str) -> str:
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


def check(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.golden"
    text = mask(text)
    if os.environ.get("GOLDEN_UPDATE"):
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}: run with GOLDEN_UPDATE=1 and review it"
    assert text == path.read_text(), f"{name}: output changed (GOLDEN_UPDATE=1 regenerates)"


def run(tmp: Path, *argv: str) -> str:
    p = run_process(argv, cwd=tmp, env=ENV)
    assert p.returncode in (0, 1, 2, 4), p.stderr
    return f"exit {p.returncode}\n--- stdout\n{p.stdout}"


@pytest.mark.parametrize("name", sorted(PLANS))
def test_golden_outputs_of_every_command_and_the_ledger(name: str, tmp_path: Path) -> None:
    plan = tmp_path / f"{name}.yaml"
    shutil.copy(PLANS[name], plan)
    ledger = f"{name}.sim.ledger.jsonl"
    for fmt in ("text", "json", "github"):
        check(f"{name}.validate.{fmt}", run(tmp_path, "validate", plan.name, "--format", fmt))
    for fmt in ("text", "json", "markdown"):
        check(f"{name}.plan-before.{fmt}", run(tmp_path, "plan", plan.name, "--sim", "--now", NOW, "--format", fmt))
    check(
        f"{name}.apply.json",
        run(tmp_path, "apply", plan.name, "--sim", "--yes", "--now", NOW, "--format", "json"),
    )
    lines = sorted(mask(line) for line in (tmp_path / ledger).read_text().splitlines())
    check(f"{name}.ledger", "\n".join(lines) + "\n")
    for fmt in ("text", "json", "markdown"):
        check(f"{name}.plan-after.{fmt}", run(tmp_path, "plan", plan.name, "--sim", "--now", NOW, "--format", fmt))
    for fmt in ("text", "json", "markdown"):
        check(f"{name}.status.{fmt}", run(tmp_path, "status", plan.name, "--sim", "--format", fmt))
    check(f"{name}.apply-again.json", run(tmp_path, "apply", plan.name, "--sim", "--yes", "--now", NOW, "--format", "json"))
    log = run(tmp_path, "ledger", "log", "--ledger", ledger)
    check(f"{name}.ledger-log", "\n".join(sorted(mask(log).splitlines())) + "\n")
