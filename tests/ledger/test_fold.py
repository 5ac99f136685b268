"""The fold: what records make of a key (D16, newcomer findings 3, 6 and 12)."""

from __future__ import annotations

import json
from pathlib import Path

from planrunner import ledger
from planrunner.runs import apply as engine
from testing import crashed_intent, write_plan
from testing.hostile import ONE, T0


def test_d16_entries_interrupted_before_sending_are_pending_not_retry(tmp_path: Path, run) -> None:
    led = tmp_path / "l.jsonl"
    crashed_intent(led, T0, "r1.1")
    ref = ledger.record(
        "aborted",
        f"o1/1/{T0}",
        1,
        "o1",
        T0,
        "r1.1",
        reason=engine.NOT_SENT,
        gateway="http://127.0.0.1",
    )
    with led.open("ab") as f:
        f.write(ledger.encode([ref]))
    r = run("plan", str(write_plan(tmp_path, ONE)), "--ledger", str(led), "--format", "json")
    doc = json.loads(r.out)
    assert doc["summary"] == {"pending": 1}
    assert doc["entries"][0]["error"] is None
