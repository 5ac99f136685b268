"""The ledger: format, order-independent fold, union merges, torn tails, locks, group commit."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from planrunner import ledger
from planrunner.errors import LedgerError, LedgerLocked

KEY = "o1/7/1767225600000"


def rec(event: str, attempt: str, key: str = KEY, **extra) -> dict:
    flow_id, tt = int(key.split("/")[1]), int(key.split("/")[2])
    return ledger.record(event, key, flow_id, "o1", tt, attempt, **extra)


def write(path: Path, records: list[dict]) -> None:
    path.write_bytes(ledger.encode(records))


def test_default_path() -> None:
    assert ledger.default_path("plans/x.yaml") == "plans/x.ledger.jsonl"
    assert ledger.default_path("plans/x.yml") == "plans/x.ledger.jsonl"
    assert ledger.default_path("plans/x") == "plans/x.ledger.jsonl"


def test_record_has_every_common_field() -> None:
    r = rec("intent", "a1", flow="f", run="r")
    assert list(r)[:8] == ["v", "event", "key", "flowId", "orgId", "triggerTime", "attempt", "at"]
    assert r["v"] == 1 and r["at"].endswith("Z") and r["flow"] == "f"
    line = ledger.encode([r])
    assert line.endswith(b"\n") and line.count(b"\n") == 1


# Each case: the records of one key and the status they fold to.
CASES = [
    ([], "pending"),
    ([("intent", "a")], "unknown"),
    ([("intent", "a"), ("unknown", "a")], "unknown"),
    ([("intent", "a"), ("triggered", "a")], "done"),
    ([("intent", "a"), ("failed", "a")], "failed"),
    ([("intent", "a"), ("failed", "a"), ("intent", "b")], "unknown"),
    ([("intent", "a"), ("failed", "a"), ("intent", "b"), ("triggered", "b")], "done"),
    ([("intent", "a"), ("unknown", "a"), ("reconciled", "a", False)], "pending"),
    ([("intent", "a"), ("unknown", "a"), ("reconciled", "a", True)], "done"),
    ([("intent", "a"), ("failed", "a"), ("intent", "b"), ("reconciled", "b", False)], "failed"),
    ([("intent", "a"), ("intent", "b"), ("triggered", "b")], "done"),
]


def _records(case: list, key: str = KEY) -> list[dict]:
    out = []
    for item in case:
        event, attempt = item[0], item[1]
        extra: dict = {}
        if event == "reconciled":
            extra = {"found": item[2], "flowInstanceId": "7-x" if item[2] else None}
        elif event == "triggered":
            extra = {"flowInstanceId": "7-x"}
        elif event == "failed":
            extra = {"code": 62104, "msg": "no task"}
        elif event == "unknown":
            extra = {"reason": "read timeout"}
        elif event == "intent":
            extra = {"flow": "f", "run": "r"}
        out.append(rec(event, attempt, key, **extra))
    return out


@pytest.mark.parametrize(("case", "status"), CASES)
def test_fold_in_every_order(tmp_path: Path, case: list, status: str) -> None:
    records = _records(case)
    rng = random.Random(len(case))
    for _ in range(10):
        rng.shuffle(records)
        write(tmp_path / "l.jsonl", records)
        assert ledger.fold(str(tmp_path / "l.jsonl")).status(KEY) == status


def test_union_merge_of_two_branches_folds_right(tmp_path: Path) -> None:
    keys = [f"o1/7/{1767225600000 + i * 60_000}" for i in range(6)]
    base = _records([("intent", "a0"), ("triggered", "a0")], keys[0]) + _records(
        [("intent", "a1"), ("failed", "a1")], keys[1]
    )
    ours = (
        base
        + _records([("intent", "b1"), ("triggered", "b1")], keys[1])
        + _records([("intent", "b2")], keys[2])
    )
    theirs = (
        base
        + _records([("intent", "c2"), ("triggered", "c2")], keys[2])
        + _records([("intent", "c3"), ("failed", "c3")], keys[3])
    )
    for name, recs in (("base", base), ("ours", ours), ("theirs", theirs)):
        write(tmp_path / name, recs)
    subprocess.run(
        ["git", "merge-file", "--union", "ours", "base", "theirs"], cwd=tmp_path, check=True
    )
    merged = ledger.fold(str(tmp_path / "ours"))
    assert [merged.status(k) for k in keys[:5]] == ["done", "done", "done", "failed", "pending"]
    # Every line is still a whole record.
    for line in (tmp_path / "ours").read_bytes().splitlines():
        json.loads(line)


def test_corrupt_middle_line_is_refused_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    lines = ledger.encode(_records([("intent", "a"), ("triggered", "a")])).splitlines(keepends=True)
    path.write_bytes(lines[0] + b'{"event":"intent", "v":\n' + lines[1])
    with pytest.raises(LedgerError, match=r"l.jsonl:2: corrupt ledger line"):
        ledger.fold(str(path))


@pytest.mark.parametrize(
    "line",
    [
        b"[1,2]\n",
        b'{"v":1}\n',
        b'{"v":2,"event":"intent","key":"k","flowId":1,"orgId":"o","triggerTime":1,"attempt":"a","at":"t"}\n',
        b"\xff\xfe\n",
    ],
)
def test_malformed_records_are_refused(tmp_path: Path, line: bytes) -> None:
    path = tmp_path / "l.jsonl"
    path.write_bytes(
        ledger.encode(_records([("intent", "a")]))
        + line
        + ledger.encode(_records([("triggered", "a")]))
    )
    with pytest.raises(LedgerError, match=":2: "):
        ledger.fold(str(path))


def test_torn_tail_is_noticed_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    whole = ledger.encode(_records([("intent", "a"), ("triggered", "a")]))
    path.write_bytes(whole + b'{"v":1,"event":"inte')
    folded = ledger.fold(str(path))
    assert folded.status(KEY) == "done"
    assert (folded.torn_line, folded.torn_at) == (3, len(whole))
    ledger.repair_tail(str(path), folded)
    assert path.read_bytes() == whole


def test_missing_ledger_is_empty(tmp_path: Path) -> None:
    assert ledger.fold(str(tmp_path / "none.jsonl")).status(KEY) == "pending"


def test_group_commit_writes_every_record_whole(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    writer = ledger.Writer(str(path))
    n_threads, per_thread = 8, 200

    def work(t: int) -> None:
        for i in range(per_thread):
            writer.append(
                [
                    rec(
                        "intent",
                        f"{t}.{i}",
                        f"o1/{t + 1}/{1767225600000 + i * 60_000}",
                        flow="f",
                        run="r",
                    )
                ]
            )

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    lines = path.read_bytes().splitlines()
    assert len(lines) == n_threads * per_thread
    assert len({json.loads(x)["attempt"] for x in lines}) == n_threads * per_thread
    assert writer.fsyncs <= n_threads * per_thread


def test_lock_names_its_holder_and_times_out(tmp_path: Path) -> None:
    path = str(tmp_path / "l.jsonl")
    first = ledger.Lock(path, "run-one")
    first.acquire(0)
    try:
        with pytest.raises(
            LedgerLocked,
            match=rf"locked by another apply \(pid {os.getpid()} on .*, run run-one, since ",
        ):
            ledger.Lock(path, "run-two").acquire(0.2)
    finally:
        first.release()
    second = ledger.Lock(path, "run-two")
    second.acquire(0)
    second.release()


def test_lock_of_a_killed_process_is_released_by_the_os(tmp_path: Path) -> None:
    path = str(tmp_path / "l.jsonl")
    code = (
        "import sys, time\n"
        "from planrunner import ledger\n"
        f"ledger.Lock({path!r}, 'holder').acquire(0)\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(LedgerLocked, match="run holder"):
            ledger.Lock(path, "me").acquire(0)
        proc.kill()
        proc.wait()
        lock = ledger.Lock(path, "me")
        lock.acquire(2)
        lock.release()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
