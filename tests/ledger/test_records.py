"""Ledger records: a record of the wrong type is refused with its place (D8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from planrunner import ledger
from testing import write_plan
from testing.hostile import ONE, T0, no_traceback

# -- D8: typed ledger records ------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("key", ["a"]),
        ("key", {"a": 1}),
        ("key", 5),
        ("event", ["intent"]),
        ("attempt", ["a"]),
        ("attempt", {"a": 1}),
        ("flowId", "9"),
        ("triggerTime", 1.5),
        ("v", True),
    ],
)
def test_d8_records_of_the_wrong_type_are_exit_3_with_their_line(
    tmp_path: Path, run, field: str, value: Any
) -> None:
    led = tmp_path / "l.jsonl"
    good = ledger.record(
        "intent", f"o1/1/{T0}", 1, "o1", T0, "a.1", flow="f1", run="a", gateway="x"
    )
    bad = {**good, field: value}
    led.write_bytes(ledger.encode([good, bad]))
    plan = write_plan(tmp_path, ONE)
    r = run("plan", str(plan), "--ledger", str(led))
    assert r.code == 3, r.err
    assert f"{led}:2:" in r.err
    if field != "v":
        assert field in r.err
    no_traceback(r.err)
