"""The ledger: format, order-independent fold, union merges, torn tails, locks, group commit."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from planrunner import ledger
from planrunner.errors import LedgerError, LedgerLocked
from testing import ROOT, cron_flows, write_plan
from testing.hostile import ONE, no_traceback, read_ledger

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


# -- findings of the round-3 probe and the newcomer trial ----------------------------------------


def _import_argv(target: Path, source: Path) -> list[str]:
    return [sys.executable, "-m", "planrunner", "ledger", "import", "--ledger", str(target), str(source)]


def _many_records(n: int) -> list[dict]:
    out = []
    for i in range(n):
        key = f"o1/{1 + i % 50}/{1767225600000 + 60000 * (i // 50)}"
        out.append(rec("intent", f"r.{i}", key, flow="f", run="r"))
    return out


def test_n8_import_cuts_a_torn_tail_before_appending(tmp_path: Path) -> None:
    target = tmp_path / "t.ledger.jsonl"
    write(target, _records([("intent", "a"), ("triggered", "a")]))
    with open(target, "ab") as f:
        f.write(ledger.encode([rec("intent", "torn", flow="f", run="r")])[:-30])  # a crash mid-line
    source = tmp_path / "other.jsonl"
    write(source, _many_records(5))
    p = subprocess.run(_import_argv(target, source), capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert "cut off an incomplete last ledger line" in p.stderr
    folded = ledger.fold(str(target))  # every line whole: no weld of the first imported record
    assert folded.torn_line is None and folded.status(KEY) == "done"
    assert len(list(ledger.FileLedger(str(target)).records())) == 2 + 5


def test_n8_kill_9_of_an_import_then_the_same_import_leaves_a_valid_ledger(tmp_path: Path) -> None:
    source = tmp_path / "big.jsonl"
    records = _many_records(80_000)
    write(source, records)
    torn_seen = False
    for attempt in range(6):
        target = tmp_path / f"t{attempt}.ledger.jsonl"
        write(target, _records([("intent", "a"), ("triggered", "a")]))
        start = target.stat().st_size
        proc = subprocess.Popen(_import_argv(target, source), stderr=subprocess.DEVNULL)
        try:
            # Kill it while it writes: as soon as the file grows.
            while proc.poll() is None and target.stat().st_size == start:
                pass
            proc.send_signal(9)
        finally:
            proc.wait()
        data = target.read_bytes()
        if proc.returncode == -9 and data[-1:] != b"\n":
            torn_seen = True
            p = subprocess.run(_import_argv(target, source), capture_output=True, text=True, check=False)
            assert p.returncode == 0, p.stderr
            check = subprocess.run(
                [sys.executable, "-m", "planrunner", "ledger", "verify", "--ledger", str(target)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert check.returncode == 0, check.stdout[-2000:]
            got = [r for _, r in ledger.FileLedger(str(target)).records()]
            assert len({ledger.identity(r) for r in got}) == len(got) == 2 + len(records)
            break
    assert torn_seen, "no kill landed inside a write in 6 tries"


def test_n12_a_non_string_at_is_refused_by_the_fold_with_its_line(tmp_path: Path) -> None:
    for bad in ([1], 5, None):
        path = tmp_path / "l.jsonl"
        good = _records([("intent", "a")])
        write(path, [*good, {**rec("triggered", "a", flowInstanceId="x"), "at": bad}])
        with pytest.raises(LedgerError, match=rf'l.jsonl:2: corrupt ledger line \("at" is {type(bad).__name__}, not str\)'):
            ledger.fold(str(path), {KEY})


def _git(repo: Path, *argv: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    subprocess.run(["git", *argv], cwd=repo, check=True, capture_output=True, env=env)


def test_n22_torn_tail_union_merged_into_the_middle_is_recognised_and_blanked(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / ".gitattributes").write_text("*.ledger.jsonl merge=union\n")
    led = repo / "a.ledger.jsonl"
    k1, k2, k3 = KEY, "o1/7/1767225660000", "o1/7/1767225720000"
    base = _records([("intent", "a"), ("triggered", "a")], k1)
    write(led, base)
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "base")
    _git(repo, "checkout", "-qb", "ci")
    torn = ledger.encode([rec("intent", "t", k2, flow="f", run="r")])[:40]  # a killed apply
    led.write_bytes(led.read_bytes() + ledger.encode(_records([("intent", "b"), ("triggered", "b")], k2)) + torn)
    _git(repo, "commit", "-qam", "CI commit-back with a torn tail")
    _git(repo, "checkout", "-q", "main")
    write(led, base + _records([("intent", "c"), ("triggered", "c")], k3))
    _git(repo, "commit", "-qam", "main moves on")
    _git(repo, "checkout", "-q", "ci")
    _git(repo, "merge", "-q", "--no-edit", "main")  # CI's `git pull` after a rejected push
    lines = led.read_bytes().splitlines(keepends=True)
    middle = [i for i, line in enumerate(lines[:-1], 1) if line.rstrip(b"\n") == torn]
    assert middle, lines  # the torn line is no longer the last one
    number = middle[0]
    folded = ledger.fold(str(led), {k1, k2, k3})
    assert [folded.status(k) for k in (k1, k2, k3)] == ["done", "done", "done"]
    assert folded.torn_middle and folded.torn_middle[0][2] == number
    from planrunner.ledger import tools as ledgertools

    assert ledgertools.check_lines(str(led)).problems == [
        f"{led}:{number}: an incomplete record in the middle (a torn write that a git merge moved "
        "here; nothing was sent on it): the next apply blanks it, or delete the line"
    ]
    size = led.stat().st_size
    lock = ledger.Lock(str(led), "r-test")
    lock.acquire(0)
    try:
        ledger.repair_tail(str(led), folded)  # what apply's session does under its lock
    finally:
        lock.release()
    assert led.stat().st_size == size  # blanked in place
    assert led.read_bytes().splitlines()[number - 1].strip() == b""
    again = ledger.fold(str(led), {k1, k2, k3})
    assert not again.torn_middle and [again.status(k) for k in (k1, k2, k3)] == ["done"] * 3
    assert len(list(ledger.FileLedger(str(led)).records())) == 6
    assert ledgertools.check_lines(str(led)).problems == []


def test_n22_a_torn_record_with_another_welded_to_it_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    whole = ledger.encode(_records([("intent", "a"), ("triggered", "a")]))
    welded = ledger.encode([rec("intent", "b", flow="f", run="r")])[:50] + whole.splitlines(keepends=True)[1]
    path.write_bytes(whole.splitlines(keepends=True)[0] + welded + whole.splitlines(keepends=True)[1])
    with pytest.raises(LedgerError, match=r"l.jsonl:2: an incomplete record with another record welded to it at column 51.*split the line before column 51"):
        ledger.fold(str(path))


def test_finding_14_waiting_for_the_lock_is_said_at_once_with_the_holder(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    path = str(tmp_path / "l.jsonl")
    holder = ledger.Lock(path, "r-holder")
    holder.acquire(0)
    try:
        with capture_logs() as logs, pytest.raises(LedgerLocked):
            ledger.Lock(path, "r-waiter").acquire(0.3)
    finally:
        holder.release()
    said = [e["event"] for e in logs if e["log_level"] == "warning"]
    assert said == [f"waiting up to 0.3 s for the ledger lock held by pid {os.getpid()} on {os.uname().nodename}, run r-holder, since " + said[0].rsplit("since ", 1)[1]]
    with capture_logs() as logs, pytest.raises(LedgerLocked):
        holder.acquire(0)
        try:
            ledger.Lock(path, "r-now").acquire(0)  # no wait: no waiting line
        finally:
            holder.release()
    assert not [e for e in logs if e["event"].startswith("waiting")]


def test_finding_21_a_run_that_records_nothing_creates_no_ledger(tmp_path: Path) -> None:
    path = tmp_path / "new.ledger.jsonl"
    backend = ledger.FileLedger(str(path))
    with backend.session("r1", [], 0):
        pass
    assert not path.exists()
    with backend.session("r2", [], 0) as w:
        w.append([rec("intent", "a", flow="f", run="r2")])
        assert path.exists()
        assert w._lock._ledger_fd is not None  # the new file is locked too
    assert ledger.fold(str(path)).status(KEY) == "unknown"


def test_n22_a_record_start_with_zeroed_bytes_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    lines = ledger.encode(_records([("intent", "a"), ("triggered", "a")])).splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[1][:60] + b"\0" * 40 + b"\n" + lines[1])
    with pytest.raises(LedgerError, match=r"l.jsonl:2: corrupt ledger line \(not JSON\)"):
        ledger.fold(str(path))


def test_n10_the_file_fold_leaves_out_and_counts_records_of_another_gateway(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    a, b = "https://a.example.com", "https://b.example.com:8443"
    write(path, [rec("intent", "x", flow="f", run="r", gateway=a), rec("triggered", "x", gateway=a, flowInstanceId="7-x")])
    assert ledger.fold(str(path), {KEY}, gateway=a).status(KEY) == "done"
    other = ledger.fold(str(path), {KEY}, gateway=b)
    assert other.status(KEY) == "pending" and other.other_gateways == {a: 2}
    counted = ledger.fold(str(path), {KEY}, gateway=b, other_gateways_count=True)
    assert counted.status(KEY) == "done" and counted.other_gateways == {a: 2}
    assert ledger.fold(str(path), {"o1/7/1"}, gateway=b).other_gateways == {}  # other keys: not counted
    assert ledger.gateway_host("https://user:PW-s3cret@h.example.com:8443/x") == "h.example.com:8443"
    assert ledger.gateway_host("x\x1b[2J") == "x?[2J"


# -- D2, D3, D9, D20: the ledger file ----------------------------------------------------------


def test_d2_two_names_for_one_ledger_are_one_lock(tmp_path: Path, run, sim, sim_env) -> None:
    first = tmp_path / "a.jsonl"
    first.touch()
    second = tmp_path / "b.jsonl"
    os.link(first, second)
    held = ledger.Lock(str(first), "r-holder")
    held.acquire(0)
    try:
        with pytest.raises(LedgerLocked):
            ledger.Lock(str(second), "r-other").acquire(0)
        plan = write_plan(tmp_path, ONE)
        r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", str(second))
        assert r.code == 3, r.err
        assert "locked" in r.err
        assert sim.triggers() == []
    finally:
        held.release()
    r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", str(second))
    assert r.code == 0, r.err


def test_d3_a_symlinked_lock_file_is_never_followed(tmp_path: Path, run) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("IMPORTANT\nline2\n")
    led = tmp_path / "c.jsonl"
    (tmp_path / "c.jsonl.lock").symlink_to(victim)
    plan = write_plan(tmp_path, ONE)
    r = run("apply", str(plan), "--sim", "--yes", "--ledger", str(led))
    assert r.code == 3, r.err
    assert "symbolic link" in r.err
    assert victim.read_text() == "IMPORTANT\nline2\n"
    no_traceback(r.err)


def test_d3_a_symlinked_ledger_is_refused_and_its_target_not_created(tmp_path: Path, run) -> None:
    target = tmp_path / "elsewhere" / "real.jsonl"
    target.parent.mkdir()
    link = tmp_path / "led.jsonl"
    link.symlink_to(target)
    plan = write_plan(tmp_path, ONE)
    r = run("apply", str(plan), "--sim", "--yes", "--ledger", str(link))
    assert r.code == 3, r.err
    assert "symbolic link" in r.err
    assert not target.exists()


def test_ledger_and_lock_are_created_0600(tmp_path: Path, run) -> None:
    old = os.umask(0o022)
    try:
        plan = write_plan(tmp_path, ONE)
        led = tmp_path / "m.jsonl"
        assert run("apply", str(plan), "--sim", "--yes", "--ledger", str(led)).code == 0
    finally:
        os.umask(old)
    assert (led.stat().st_mode & 0o777, Path(f"{led}.lock").stat().st_mode & 0o777) == (
        0o600,
        0o600,
    )


def test_d9_a_torn_tail_that_cannot_be_cut_is_a_clean_exit_3(
    tmp_path: Path, run, sim, sim_env, monkeypatch
) -> None:
    plan = write_plan(tmp_path, ONE + '  - {name: f2, flowId: 2, at: ["2026-01-01T00:00:00Z"]}\n')
    led = tmp_path / "ro.jsonl"
    assert (
        run(
            "apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", str(led), "--flow", "f1"
        ).code
        == 0
    )
    with led.open("ab") as f:
        f.write(b'{"v":1,"event":"int')
    real = os.ftruncate

    def denied(fd: int, length: int) -> None:  # what a read-only or `chattr +a` file answers
        if os.readlink(f"/proc/self/fd/{fd}") == str(led):
            raise PermissionError(errno.EPERM, "Operation not permitted")
        real(fd, length)

    monkeypatch.setattr(os, "ftruncate", denied)
    before = len(sim.triggers())
    r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", str(led))
    assert r.code == 3, r.err
    assert f"{led}:3: cannot cut off the incomplete last line" in r.err
    assert len(sim.triggers()) == before
    no_traceback(r.err)


def test_d9_a_ledger_that_cannot_be_written_is_refused_before_sending(
    tmp_path: Path, run, sim, sim_env, monkeypatch
) -> None:
    led = tmp_path / "ro.jsonl"
    led.touch()
    real = os.open

    def read_only(path: Any, flags: int, *a: Any, **kw: Any) -> int:
        if str(path) == str(led) and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", read_only)
    r = run(
        "apply", str(write_plan(tmp_path, ONE)), "--gateway", sim.url, "--yes", "--ledger", str(led)
    )
    assert r.code == 3, r.err
    assert "cannot open the ledger for writing" in r.err
    assert sim.triggers() == []


@pytest.mark.parametrize("command", ["plan", "apply", "verify"])
def test_d20_a_fifo_ledger_is_refused_not_waited_on(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "f.jsonl"
    os.mkfifo(fifo)
    plan = write_plan(tmp_path, ONE)
    extra = ["--sim", "--yes"] if command == "apply" else []
    # ``ledger verify`` hung here before it read through the ledger's own safe opener.
    args = ["ledger", "verify"] if command == "verify" else [command, str(plan), *extra]
    p = subprocess.run(
        [sys.executable, "-m", "planrunner", *args, "--ledger", str(fifo)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert p.returncode == 3, p.stderr
    assert "FIFO" in p.stderr
    no_traceback(p.stderr)


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_d20_a_directory_ledger_is_exit_3(tmp_path: Path, run, command: str) -> None:
    d = tmp_path / "d.jsonl"
    d.mkdir()
    extra = ["--sim", "--yes"] if command == "apply" else []
    r = run(command, str(write_plan(tmp_path, ONE)), "--ledger", str(d), *extra)
    assert r.code == 3 and "directory" in r.err


# -- D7: a full disk ---------------------------------------------------------------------------


def test_d7_a_disk_that_fills_mid_run_stops_cleanly_with_the_report(
    tmp_path: Path, run, sim, sim_env, monkeypatch
) -> None:
    from testing import cron_flows

    real = ledger.file._write_all
    writes = {"n": 0}

    def filling(fd: int, data: bytes) -> None:
        writes["n"] += 1
        if writes["n"] > 12:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(ledger.file, "_write_all", filling)
    plan = write_plan(tmp_path, cron_flows(4, 10))
    led = tmp_path / "full.jsonl"
    r = run(
        "apply",
        str(plan),
        "--gateway",
        sim.url,
        "--yes",
        "--ledger",
        str(led),
        "--concurrency",
        "4",
    )
    assert r.code == 3, r.err
    assert "No space left on device" in r.err
    assert "Apply:" in r.out  # the report
    no_traceback(r.err)
    # Nothing was sent without its durable intent.
    intents: dict[tuple[int, int], int] = {}
    for rec in read_ledger(led) if led.read_bytes().endswith(b"\n") else []:
        if rec["event"] == "intent":
            k = (rec["flowId"], rec["triggerTime"])
            intents[k] = intents.get(k, 0) + 1
    sent: dict[tuple[int, int], int] = {}
    for t in sim.triggers():
        k = (t["flowId"], t["triggerTime"])
        sent[k] = sent.get(k, 0) + 1
    assert all(intents.get(k, 0) >= 1 for k in sent), (sent, intents)
    monkeypatch.setattr(ledger.file, "_write_all", real)
    r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", str(led))
    assert r.code == 0, r.err


def test_d7_a_disk_full_before_the_run_is_a_clean_exit_3(
    tmp_path: Path, run, sim, sim_env, monkeypatch
) -> None:
    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    r = run(
        "apply",
        str(write_plan(tmp_path, ONE)),
        "--gateway",
        sim.url,
        "--yes",
        "--ledger",
        str(tmp_path / "l.jsonl"),
    )
    assert r.code == 3, r.err
    assert "No space left on device" in r.err
    assert sim.triggers() == []
    no_traceback(r.err)


# -- D15: signals during start-up --------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_d15_a_signal_while_waiting_for_the_lock_exits_130(tmp_path: Path, sig: int) -> None:
    plan = write_plan(tmp_path, ONE)
    led = tmp_path / "l.jsonl"
    held = ledger.Lock(str(led), "r-holder")
    held.acquire(0)
    try:
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "planrunner",
                "apply",
                str(plan),
                "--sim",
                "--yes",
                "--ledger",
                str(led),
                "--lock-timeout",
                "60",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        # Start-up has reached the lock when the process holds the lock file open.
        while time.monotonic() < deadline and p.poll() is None:
            fds = os.listdir(f"/proc/{p.pid}/fd")
            if any(os.path.realpath(f"/proc/{p.pid}/fd/{fd}") == str(led) + ".lock" for fd in fds):
                break
            time.sleep(0.02)
        p.send_signal(sig)
        _out, err = p.communicate(timeout=60)
    finally:
        held.release()
    assert p.returncode == 130, (p.returncode, err)
    assert "interrupted" in err
    no_traceback(err)


# --- 32, 33, 34: the ledger speaks up ---------------------------------------------------------


def test_finding_32_plan_says_when_an_apply_holds_the_lock(tmp_path: Path, run: Any) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    path = str(tmp_path / "plan.ledger.jsonl")
    with ledger.Lock(path, "r-held") as lock:
        lock.acquire(0)
        r = run("plan", str(plan))
    assert r.code == 0
    assert "an apply holds the ledger lock" in r.err and "r-held" in r.err


def test_finding_33_a_git_conflict_marker_gets_a_merge_union_hint(tmp_path: Path, run: Any) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    (tmp_path / "plan.ledger.jsonl").write_text("<<<<<<< HEAD\n")
    r = run("plan", str(plan))
    assert r.code == 3
    assert "merge=union" in r.err and ":1:" in r.err


def test_finding_34_an_explicit_ledger_that_does_not_exist_is_named(tmp_path: Path, run: Any) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    missing = tmp_path / "typo" / "l.jsonl"
    r = run("plan", str(plan), "--ledger", str(missing))
    assert r.code == 0
    assert "does not exist" in r.err and str(missing) in r.err
