"""Fuzzing ledgers: damaged ledgers (a torn tail at every byte offset, wrong types,
zero-filled tails, foreign JSON, conflict markers) fed to ``plan`` and ``ledger.fold`` are
read or refused with their line, never a traceback (exit 70), never a hang."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from planrunner import ledger
from planrunner.errors import LedgerError
from testing.fuzz import FUZZ, _run, values

# -- ledgers -----------------------------------------------------------------------------------

PLAN = """version: 1
target: {gateway: "https://apigw.example.com", orgId: o1, userId: u1}
timezone: UTC
flows:
  - {name: f1, flowId: 1, cron: "0 * * * *", from: 2026-01-01, count: 4}
  - {name: f2, flowId: 2, cron: "0 * * * *", from: 2026-01-01, count: 4}
"""


T0 = 1767225600000


def _good_ledger() -> bytes:
    recs = []
    for flow in (1, 2):
        for i in range(4):
            tt = T0 + i * 3_600_000
            key = f"o1/{flow}/{tt}"
            a = f"r1.{flow}{i}"
            recs.append(
                ledger.record(
                    "intent",
                    key,
                    flow,
                    "o1",
                    tt,
                    a,
                    flow=f"f{flow}",
                    run="r1",
                    gateway="https://apigw.example.com",
                )
            )
            event = ["triggered", "failed", "unknown", "aborted"][i]
            extra: dict[str, Any] = {"gateway": "https://apigw.example.com"}
            if event == "triggered":
                extra["flowInstanceId"] = f"{flow}-x{i}"
            elif event == "failed":
                extra.update(code=62104, msg="no task")
            else:
                extra["reason"] = "x"
            recs.append(ledger.record(event, key, flow, "o1", tt, a, **extra))
    return ledger.encode(recs)


GOOD = _good_ledger()


FIELDS = [
    "v",
    "event",
    "key",
    "flowId",
    "orgId",
    "triggerTime",
    "attempt",
    "at",
    "found",
    "flowInstanceId",
    "gateway",
]


@st.composite
def damaged_ledgers(draw: st.DrawFn) -> bytes:
    lines = GOOD.splitlines(keepends=True)
    kind = draw(
        st.sampled_from(["torn", "zeros", "types", "foreign", "conflict", "garbage", "dup", "crlf"])
    )
    if kind == "torn":
        return GOOD[: draw(st.integers(0, len(GOOD)))]
    if kind == "zeros":
        cut = draw(st.integers(0, len(GOOD)))
        return GOOD[:cut] + b"\0" * draw(st.integers(1, 5000)) + draw(st.sampled_from([b"", b"\n"]))
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "types":
        rec = json.loads(lines[i])
        rec[draw(st.sampled_from(FIELDS))] = draw(values)
        lines[i] = json.dumps(rec).encode() + b"\n"
    elif kind == "foreign":
        lines.insert(i, json.dumps(draw(values)).encode() + b"\n")
    elif kind == "conflict":
        lines.insert(
            i, draw(st.sampled_from([b"<<<<<<< HEAD\n", b"=======\n", b">>>>>>> branch\n"]))
        )
    elif kind == "garbage":
        lines.insert(i, draw(st.binary(max_size=64)).replace(b"\n", b"") + b"\n")
    elif kind == "dup":
        lines.insert(i, lines[draw(st.integers(0, len(lines) - 1))])
    else:
        lines = [line.replace(b"\n", b"\r\n") for line in lines]
    return b"".join(lines)


@FUZZ
@given(data=damaged_ledgers())
@example(data=GOOD[:-1])
@example(data=GOOD + b"\0" * 4096)
@example(data=GOOD + b"\0" * 4096 + b"\n")
@example(data=GOOD.replace(b'"key":"o1/1/1767225600000"', b'"key":["a"]', 1))  # D8
@example(data=GOOD.replace(b'"event":"intent"', b'"event":["intent"]', 1))  # D8
@example(data=GOOD.replace(b'"attempt":"r1.10"', b'"attempt":{"a":1}', 1))  # D8
@example(data=GOOD.replace(b'"v":1', b'"v":true', 1))
@example(data=b"\xef\xbb\xbf" + GOOD)
def test_damaged_ledgers_are_read_or_refused_with_their_line(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str], data: bytes
) -> None:
    d = tmp_path_factory.mktemp("led")
    plan = d / "p.yaml"
    plan.write_text(PLAN)
    led = d / "l.jsonl"
    led.write_bytes(data)
    try:
        ledger.fold(str(led))
    except LedgerError as e:
        assert re.match(rf"{re.escape(str(led))}(:\d+)?: ", str(e)), str(e)
    code, _out, err = _run(capsys, "plan", str(plan), "--ledger", str(led))
    assert code in (0, 3), (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 3:
        assert re.search(rf"{re.escape(str(led))}:\d+: ", err), err


def test_every_torn_tail_offset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every byte offset of the last two records: plan exit 0, the tail ignored, never a crash."""
    plan = tmp_path / "p.yaml"
    plan.write_text(PLAN)
    led = tmp_path / "l.jsonl"
    start = len(b"".join(GOOD.splitlines(keepends=True)[:-2]))
    for cut in range(start, len(GOOD) + 1):
        led.write_bytes(GOOD[:cut])
        folded = ledger.fold(str(led))
        assert (folded.torn_at is None) == (cut == len(GOOD) or GOOD[cut - 1 : cut] == b"\n")
        code, _out, err = _run(capsys, "plan", str(plan), "--ledger", str(led))
        assert code == 0, (cut, err)
