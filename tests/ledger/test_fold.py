"""The fold: what records make of a key (D16, newcomer findings 3, 6 and 12)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from planrunner import ledger
from planrunner.runs import apply as engine
from testing import crashed_intent, cron_flows, write_plan
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


# --- 3, 12: simulator records never count for a real run ------------------------------------


def test_finding_3_12_sim_records_in_a_real_ledger_never_mark_real_entries_done(
    tmp_path: Path, run: Any
) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 4))
    real = tmp_path / "plan.ledger.jsonl"
    r = run("apply", str(plan), "--sim", "--yes", "--ledger", str(real))
    assert r.code == 0, r.err
    records = [json.loads(x) for x in real.read_text().splitlines()]
    assert records and {x["gateway"] for x in records} == {"sim"}
    doc = json.loads(run("plan", str(plan), "--format", "json").out)
    assert doc["summary"] == {"pending": 4}, "a demo marked real entries done"
    # plan --sim reads what apply --sim did (its own ledger by default).
    r = run("apply", str(plan), "--sim", "--yes")
    assert r.code == 0
    assert json.loads(run("plan", str(plan), "--sim", "--format", "json").out)["summary"] == {
        "done": 4
    }


# --- 6, 7, 16: interrupted entries are pending; Python's None never shows ---------------


def test_finding_6_an_aborted_intent_folds_to_pending_and_no_message_says_none(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"

    class Ref:
        key, flow_id, org_id, trigger_time = "o1/1/1767225600000", 1, "o1", 1767225600000

    path.write_bytes(
        ledger.encode(
            [
                ledger.intent(Ref, "a1", gateway="https://x", flow="f", run="r"),
                ledger.aborted(Ref, "a1", gateway="https://x", reason="interrupted"),
                ledger.intent(Ref, "a2", gateway="https://x", flow="f", run="r"),
                ledger.record("failed", Ref.key, 1, "o1", Ref.trigger_time, "a2", gateway="https://x"),
            ]
        )
    )
    folded = ledger.fold(str(path))
    assert folded.status(Ref.key) == "failed"
    assert "None" not in (folded.state(Ref.key).error or "")
    path.write_bytes(path.read_bytes().splitlines(keepends=True)[0] + path.read_bytes().splitlines(keepends=True)[1])
    assert ledger.fold(str(path)).status(Ref.key) == "pending"
