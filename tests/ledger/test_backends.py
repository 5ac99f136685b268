"""Both ledger backends, the JSON-lines file and a PostgreSQL table, against one test suite.

The PostgreSQL server is ``$PLANRUNNER_TEST_PG`` (CI starts one), else a throwaway server
this session starts (testing/postgres.py). Without either the tests fail; they never skip.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planrunner import ledger
from planrunner.errors import LedgerError, LedgerLocked
from planrunner.ledger.postgres import PostgresLedger
from planrunner.sim import Dialect, Faults, Simulator
from testing import (
    FAST_ENV,
    SIM_ENV,
    assert_exactly_once,
    cron_flows,
    duplicates_and_resends,
    run_process,
    start_apply,
    write_plan,
)
from testing import postgres as pg

BACKENDS = ["file", "postgres"]
KEY = "o1/7/1767225600000"


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The test server's URL (the tests fail, never skip, when there is none)."""
    return pg.require_url()


@pytest.fixture(params=BACKENDS)
def new_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty ledgers of one backend, as ``--ledger`` values."""
    made: list[str] = []
    count = iter(range(1_000_000))

    def make() -> str:
        if request.param == "file":
            spec = str(tmp_path / f"l{next(count)}.ledger.jsonl")
        else:
            spec = pg.with_table(request.getfixturevalue("pg_url"))
        made.append(spec)
        return spec

    yield make
    for spec in made:
        if ledger.is_postgres(spec):
            PostgresLedger(spec).drop()


def rec(event: str, attempt: str, key: str = KEY, **extra: Any) -> dict[str, Any]:
    flow_id, tt = int(key.split("/")[1]), int(key.split("/")[2])
    return ledger.record(event, key, flow_id, "o1", tt, attempt, gateway="https://gw", **extra)


EXTRA: dict[str, dict[str, Any]] = {
    "intent": {"flow": "f", "run": "r"},
    "triggered": {"flowInstanceId": "7-x"},
    "failed": {"code": 62104, "msg": "no task"},
    "unknown": {"reason": "read timeout"},
    "aborted": {"reason": "not sent"},
    "cancelled": {"flowInstanceId": "7-x"},
}
CASES = [
    ([], "pending"),
    ([("intent", "a")], "unknown"),
    ([("intent", "a"), ("unknown", "a")], "unknown"),
    ([("intent", "a"), ("triggered", "a")], "done"),
    ([("intent", "a"), ("failed", "a")], "failed"),
    ([("intent", "a"), ("aborted", "a")], "pending"),
    ([("intent", "a"), ("failed", "a"), ("intent", "b")], "unknown"),
    ([("intent", "a"), ("failed", "a"), ("intent", "b"), ("triggered", "b")], "done"),
    ([("intent", "a"), ("unknown", "a"), ("reconciled", "a", False)], "pending"),
    ([("intent", "a"), ("unknown", "a"), ("reconciled", "a", True)], "done"),
    ([("intent", "a"), ("failed", "a"), ("intent", "b"), ("reconciled", "b", False)], "failed"),
    ([("intent", "a"), ("intent", "b"), ("triggered", "b")], "done"),
    ([("intent", "a"), ("triggered", "a"), ("cancelled", "a")], "cancelled"),
]


def case_records(case: list[tuple[Any, ...]], key: str = KEY) -> list[dict[str, Any]]:
    out = []
    for item in case:
        event, attempt = item[0], item[1]
        extra: dict[str, Any] = dict(EXTRA.get(event, {}))
        if event == "reconciled":
            extra = {"found": item[2], "flowInstanceId": "7-x" if item[2] else None}
        out.append(rec(event, attempt, key, **extra))
    return out


def same_fold(a: ledger.Folded, b: ledger.Folded) -> None:
    assert a.done == b.done
    assert a.cancelled == b.cancelled
    assert a.open == b.open
    assert a.reruns == b.reruns
    assert a.parameters == b.parameters
    assert a.ignored == b.ignored
    assert a.orphans == b.orphans
    assert a.other_gateways == b.other_gateways



def add(backend: ledger.Backend, records: list[dict]) -> int:
    """Records into a ledger the way ``ledger import`` adds them: in a session, idempotently."""
    flows = sorted({(r["orgId"], r["flowId"]) for r in records})
    with backend.session("test-add", flows, 0) as session:
        return session.add(records)

# -- the ledger interface, on both backends -------------------------------------------------------


@pytest.mark.parametrize(("case", "status"), CASES)
def test_fold_in_every_order(new_ledger: Callable[[], str], case: list, status: str) -> None:
    records = case_records(case)
    rng = random.Random(len(case))
    for _ in range(6):
        rng.shuffle(records)
        backend = ledger.open_ledger(new_ledger())
        assert add(backend, records) == len(records)
        assert backend.read({KEY}).status(KEY) == status
        assert backend.read().status(KEY) == status


def test_union_of_two_sets_of_records_folds_right(new_ledger: Callable[[], str]) -> None:
    keys = [f"o1/7/{1767225600000 + i * 60_000}" for i in range(6)]
    base = case_records([("intent", "a0"), ("triggered", "a0")], keys[0]) + case_records(
        [("intent", "a1"), ("failed", "a1")], keys[1]
    )
    ours = (
        base
        + case_records([("intent", "b1"), ("triggered", "b1")], keys[1])
        + case_records([("intent", "b2")], keys[2])
    )
    theirs = (
        base
        + case_records([("intent", "c2"), ("triggered", "c2")], keys[2])
        + case_records([("intent", "c3"), ("failed", "c3")], keys[3])
    )
    backend = ledger.open_ledger(new_ledger())
    assert add(backend, ours) == len(ours)
    assert add(backend, theirs) == len(theirs) - len(base)  # the shared records are there
    assert add(backend, ours + theirs) == 0
    merged = backend.read(set(keys))
    assert [merged.status(k) for k in keys[:5]] == ["done", "done", "done", "failed", "pending"]
    assert len(list(backend.records())) == len(ours) + len(theirs) - len(base)


def test_group_commit_of_concurrent_appends(new_ledger: Callable[[], str]) -> None:
    backend = ledger.open_ledger(new_ledger())
    n_threads, per_thread = 8, 100
    with backend.session("test", [], 0) as writer:

        def work(t: int) -> None:
            for i in range(per_thread):
                key = f"o1/{t + 1}/{1767225600000 + i * 60_000}"
                writer.append([rec("intent", f"{t}.{i}", key, flow="f", run="r")])

        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        commits = writer.fsyncs
    records = [r for _, r in backend.records()]
    assert len(records) == n_threads * per_thread
    assert len({r["attempt"] for r in records}) == n_threads * per_thread
    # Concurrent appends shared commits (group commit), and each append waited for one.
    assert 0 < commits < n_threads * per_thread, commits


def test_records_of_an_append_are_durable_when_it_returns(new_ledger: Callable[[], str]) -> None:
    spec = new_ledger()
    with ledger.open_ledger(spec).session("test", [], 0) as writer:
        writer.append(case_records([("intent", "a")]))
        # Another reader (a fresh backend, i.e. another connection) sees it at once.
        assert ledger.open_ledger(spec).read({KEY}).status(KEY) == "unknown"
        writer.append(case_records([("triggered", "a")]))
        assert ledger.open_ledger(spec).read({KEY}).status(KEY) == "done"


def test_shared_flow_blocks_until_timeout_naming_the_holder(new_ledger: Callable[[], str]) -> None:
    spec = new_ledger()
    first = ledger.open_ledger(spec)
    with first.session("run-one", [("o1", 1), ("o1", 2)], 0):
        assert "run run-one" in (first.holder() or "")
        t0 = time.monotonic()
        with (
            pytest.raises(
                LedgerLocked,
                match=rf"locked by another apply \(pid {os.getpid()} on .*, run run-one, since ",
            ),
            ledger.open_ledger(spec).session("run-two", [("o1", 2), ("o1", 3)], 0.3),
        ):
            pass
        assert time.monotonic() - t0 >= 0.3
    assert ledger.open_ledger(spec).holder() is None
    with ledger.open_ledger(spec).session("run-two", [("o1", 2), ("o1", 3)], 0):
        pass


def test_a_waiting_lock_is_taken_when_the_holder_lets_go(new_ledger: Callable[[], str]) -> None:
    spec = new_ledger()
    first = ledger.open_ledger(spec).session("run-one", [("o1", 1)], 0)
    first.__enter__()
    threading.Timer(0.3, first.__exit__, (None, None, None)).start()
    t0 = time.monotonic()
    with ledger.open_ledger(spec).session("run-two", [("o1", 1)], 10):
        waited = time.monotonic() - t0
    assert 0.2 <= waited < 5


def test_lock_of_a_killed_process_is_released(new_ledger: Callable[[], str]) -> None:
    spec = new_ledger()
    ledger.open_ledger(spec).read()  # create nothing; a missing ledger reads as empty
    code = (
        "import sys, time\n"
        "from planrunner import ledger\n"
        f"held = ledger.open_ledger({spec!r}).session('holder', [('o1', 5)], 0)\n"
        "held.__enter__()\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(LedgerLocked, match="run holder"), ledger.open_ledger(spec).session("me", [("o1", 5)], 0):
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with ledger.open_ledger(spec).session("me", [("o1", 5)], 5):
            pass
        assert ledger.open_ledger(spec).holder() is None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_records_round_trip_through_export_and_import(new_ledger: Callable[[], str], tmp_path: Path) -> None:
    odd = [
        rec("intent", "a", flow="f", run="r"),
        rec("triggered", "a", flowInstanceId=None),
        {**rec("failed", "b", code=None, msg="ünïcödé \"quoted\" \\ ✓"), "gateway": None},
        {k: v for k, v in rec("unknown", "c", reason="x").items() if k != "gateway"},
        {**rec("reconciled", "c", found=False, flowInstanceId=None), "extra": {"nested": [1, 2.5, True]}},
        {**rec("intent", "d", flow="f", run="r"), "at": "2026-01-01T08:00:00+08:00"},
        rec("intent", "e", flow="f", run="r") | {"gateway": "sim"},
    ]
    src = tmp_path / "src.jsonl"
    src.write_bytes(ledger.encode(odd))
    target = new_ledger()
    assert run_process(["ledger", "import", "--ledger", target, str(src)]).returncode == 0
    again = run_process(["ledger", "import", "--ledger", target, str(src)])
    assert again.returncode == 0 and "imported 0 new records" in again.stderr
    out = tmp_path / "out.jsonl"
    p = run_process(["ledger", "export", "--ledger", target, str(out)])
    assert p.returncode == 0, p.stderr
    assert [json.loads(x) for x in out.read_bytes().splitlines()] == odd
    backend = ledger.open_ledger(target)
    for sim in (False, True):
        same_fold(backend.read(sim=sim), ledger.fold(str(src), sim=sim))


def test_i22_rerun_rounds_and_parameters_round_trip_and_fold_alike(new_ledger: Callable[[], str], tmp_path: Path) -> None:
    rounds = [
        rec("intent", "a", flow="f", run="r", parameters={"out": "/a"}),
        rec("triggered", "a", flowInstanceId="7-a", parameters={"out": "/a"}),
        rec("intent", "b", flow="f", run="r", round=1, sentTime=1767225660000, parameters={"out": "/b"}),
        rec("triggered", "b", flowInstanceId="7-b", round=1, sentTime=1767225660000, parameters={"out": "/b"}),
        rec("intent", "c", flow="f", run="r", round=2, sentTime=1767225720000),
        rec("unknown", "c", reason="read timeout", round=2, sentTime=1767225720000),
    ]
    src = tmp_path / "src.jsonl"
    src.write_bytes(ledger.encode(rounds))
    target = new_ledger()
    assert run_process(["ledger", "import", "--ledger", target, str(src)]).returncode == 0
    out = tmp_path / "out.jsonl"
    assert run_process(["ledger", "export", "--ledger", target, str(out)]).returncode == 0
    assert [json.loads(x) for x in out.read_bytes().splitlines()] == rounds
    backend = ledger.open_ledger(target)
    folded = backend.read({KEY})
    same_fold(folded, ledger.fold(str(src), {KEY}))
    state = folded.state(KEY)
    assert (str(folded.status(KEY)), state.round, state.sent_time, state.open_attempts) == ("unknown", 2, 1767225720000, {"c"})
    assert state.rounds[1].parameters == {"out": "/b"} and state.rounds[0].flow_instance_id == "7-a"
    # A record with a wrong round never gets in: refused with where it is (exit 3).
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(ledger.encode([{**rec("intent", "d", flow="f", run="r"), "round": "3", "sentTime": 1}]))
    p = run_process(["ledger", "import", "--ledger", target, str(bad)])
    assert p.returncode == 3 and f'{bad}:1: corrupt ledger line ("round" must be an integer >= 1' in p.stderr
    if ledger.is_postgres(target):
        with pytest.raises(LedgerError, match=r"\(record 1\): corrupt ledger line \(\"round\" must be"):
            add(backend, [json.loads(bad.read_bytes())])
    assert len(list(backend.records())) == len(rounds)


# -- the PostgreSQL backend's own rules -----------------------------------------------------------


def test_password_never_shown(pg_url: str) -> None:
    secret = "s3cr3t-Pa55"
    port = pg.free_port()  # nothing listens there
    bad = f"postgresql://planrunner:{secret}@127.0.0.1:{port}/ops?table=x&sslmode=disable"
    backend = PostgresLedger(bad)
    assert backend.name == f"postgresql://planrunner:***@127.0.0.1:{port}/ops?sslmode=disable&table=x"
    with pytest.raises(LedgerError) as e:
        backend.read()
    assert secret not in str(e.value) and "cannot connect" in str(e.value)
    via_param = PostgresLedger(f"postgresql://127.0.0.1:{pg.free_port()}/ops?password={secret}")
    assert secret not in via_param.name
    with pytest.raises(LedgerError) as e:
        via_param.holder()
    assert secret not in str(e.value)
    # The whole command: exit 3, the secret nowhere in what it prints.
    p = run_process(["ledger", "export", "--ledger", bad, "-"])
    assert p.returncode == 3 and secret not in p.stdout + p.stderr
    assert "planrunner:***@" in p.stderr


def test_a_password_that_works_is_masked_in_apply_output(pg_url: str, tmp_path: Path, sim: Simulator) -> None:
    secret = "hunter2-secret"
    url = pg.with_table(pg_url).replace("postgresql://postgres@", f"postgresql://postgres:{secret}@")
    plan = write_plan(tmp_path, cron_flows(1, 3))
    p = run_process(
        ["apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", url, "--format", "json"],
        env={**SIM_ENV, **FAST_ENV},
    )
    assert p.returncode == 0, p.stderr
    assert secret not in p.stdout + p.stderr
    assert "postgres:***@" in p.stdout + p.stderr
    PostgresLedger(url).drop()


@pytest.mark.parametrize("table", ["Bad", "x;drop", "1abc", "a" * 58, ""])
def test_table_name_is_validated(table: str) -> None:
    with pytest.raises(LedgerError, match="invalid ledger table name"):
        PostgresLedger(f"postgresql://u@h/db?table={table}")


def test_default_table_and_postgres_scheme() -> None:
    backend = ledger.open_ledger("postgres://u@db.example.com:6543/ops")
    assert isinstance(backend, PostgresLedger)
    assert backend.table == "planrunner_ledger"
    assert backend.name == "postgres://u@db.example.com:6543/ops?table=planrunner_ledger"


def test_schema_is_created_on_first_use_and_a_newer_one_refused(pg_url: str) -> None:
    url = pg.with_table(pg_url)
    backend = PostgresLedger(url)
    assert backend.read().done == {}  # reading a missing ledger creates nothing
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass(%s)", (backend.table,)).fetchone() == (None,)
    assert add(backend, case_records([("intent", "a")])) == 1
    with psycopg.connect(pg_url, autocommit=True) as conn:
        meta = f'"{backend.table}_meta"'
        assert conn.execute(f"SELECT value FROM {meta}").fetchone() == ("1",)
        conn.execute(f"UPDATE {meta} SET value = '2'")
    with pytest.raises(LedgerError, match="schema version 2, newer than this planrunner knows"):
        PostgresLedger(url).read()
    with pytest.raises(LedgerError, match="schema version 2"):
        add(PostgresLedger(url), case_records([("intent", "b")]))
    backend.drop()


def test_disjoint_flows_are_locked_at_once_and_shared_ones_are_not(pg_url: str) -> None:
    url = pg.with_table(pg_url)
    a, b = PostgresLedger(url), PostgresLedger(url)
    with a.session("run-a", [("o1", 1), ("o1", 2)], 0), b.session("run-b", [("o1", 3), ("o2", 1)], 0):
        assert a.holder() is not None
        with pytest.raises(LedgerLocked, match=r"run run-b.*flow 1 of org o2"), PostgresLedger(url).session("run-c", [("o2", 1)], 0):
            pass
    assert a.holder() is None
    a.drop()


def test_a_lost_connection_stops_the_writer(pg_url: str) -> None:
    url = pg.with_table(pg_url)
    backend = PostgresLedger(url)
    with backend.session("run-x", [("o1", 7)], 0) as writer:
        writer.append(case_records([("intent", "a")]))
        run = writer._run
        assert run is not None
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (run.conn.info.backend_pid,))
        with pytest.raises(LedgerError, match="cannot write ledger"):
            writer.append(case_records([("triggered", "a")]))
        with pytest.raises(LedgerError, match="stopped sending"):
            writer.append(case_records([("triggered", "a")]))
    assert backend.read({KEY}).status(KEY) == "unknown"  # the next apply reconciles it
    backend.drop()


# A random ledger: records of a few keys, every event, odd values where the rules look, in
# rerun rounds (issue 22) too, with parameters.
_at = st.sampled_from(["2026-01-01T00:00:00.000Z", "2026-01-01T00:00:01.000Z", "2026-01-02T00:00:00.000Z"])
_round = st.sampled_from([{}, {}, {"round": 1, "sentTime": 120000}, {"round": 2, "sentTime": 180000}, {"round": 2, "sentTime": 240000}])
_parameters = st.sampled_from([{}, {}, {"parameters": {}}, {"parameters": {"out": "/a", "x": ""}}, {"parameters": {"out": "/b"}}])
_record = st.builds(
    lambda event, key, attempt, at, gateway, extra, rnd, params: {
        **ledger.record(event, key, int(key.split("/")[1]), "o1", int(key.split("/")[2]), attempt),
        "at": at,
        **({} if gateway == "<absent>" else {"gateway": gateway}),
        **extra,
        **rnd,
        **params,
    },
    st.sampled_from(ledger.EVENTS),
    st.sampled_from(["o1/1/60000", "o1/1/120000", "o1/2/60000", "o1/3/60000"]),
    st.sampled_from(["a", "b", "c"]),
    _at,
    st.sampled_from(["https://gw", "https://other:8443", "sim", None, "<absent>"]),
    st.fixed_dictionaries(
        {},
        optional={
            "flowInstanceId": st.sampled_from(["1-x", "2-y", None, 7]),
            "found": st.sampled_from([True, False, None, "true"]),
            "code": st.sampled_from([62104, None, "E", 1.5, True]),
            "msg": st.sampled_from(["no task", "", None]),
        },
    ),
    _round,
    _parameters,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(_record, max_size=30),
    keys=st.sets(st.sampled_from(["o1/1/60000", "o1/2/60000", "o1/9/60000"])),
    orphans_of=st.none() | st.sets(st.sampled_from(["o1/1/", "o1/3/", "o1/9/"])),
    gateway=st.sampled_from([None, "https://gw", "https://other:8443"]),
    count_others=st.booleans(),
)
def test_file_fold_equals_postgres_fold(
    pg_url: str,
    tmp_path: Path,
    records: list[dict[str, Any]],
    keys: set[str],
    orphans_of: set[str] | None,
    gateway: str | None,
    count_others: bool,
) -> None:
    unique = list({ledger.identity(r): r for r in records}.values())  # a table holds each record once
    path = tmp_path / "prop.jsonl"
    path.write_bytes(ledger.encode(unique))
    backend = _prop_ledger(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'TRUNCATE "{backend.table}"')
    assert add(backend, unique) == len(unique)
    for sim in (False, True):
        for ks in (None, keys):
            gw: dict[str, Any] = {"gateway": gateway, "other_gateways_count": count_others}
            same_fold(
                backend.read(ks, sim=sim, orphans_of=orphans_of, **gw),
                ledger.fold(str(path), ks, sim=sim, orphans_of=orphans_of, **gw),
            )


_PROP: dict[str, PostgresLedger] = {}


def _prop_ledger(pg_url: str) -> PostgresLedger:
    if pg_url not in _PROP:
        backend = PostgresLedger(pg.with_table(pg_url))
        add(backend, [])  # create the schema once
        _PROP[pg_url] = backend
    return _PROP[pg_url]


# -- apply end to end, on both backends ------------------------------------------------------------


def apply(plan: Path, url: str, spec: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_process(
        ["apply", str(plan), "--gateway", url, "--yes", "--format", "json", "--ledger", spec, *extra],
        env={**SIM_ENV, **FAST_ENV},
    )


def test_apply_then_reapply_sends_nothing(new_ledger: Callable[[], str], tmp_path: Path, sim: Simulator) -> None:
    spec = new_ledger()
    plan = write_plan(tmp_path, cron_flows(3, 10))
    p = apply(plan, sim.url, spec)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["summary"] == {"triggered": 30}
    assert doc["ledger"] == ledger.open_ledger(spec).name
    p = apply(plan, sim.url, spec)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["summary"] == {"skipped": 30}
    keys = {(t["flowId"], t["triggerTime"]) for t in sim.triggers()}
    assert len(keys) == 30
    assert_exactly_once(sim.triggers(), keys)
    check = run_process(["plan", str(plan), "--ledger", spec, "--detailed-exitcode"])
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("fault", ["504-after-create=0.3", "drop-after-create=0.3", "62109-after-create=0.3"])
def test_each_fault_ends_exactly_once(new_ledger: Callable[[], str], tmp_path: Path, fault: str) -> None:
    spec = new_ledger()
    plan = write_plan(tmp_path, cron_flows(4, 10))
    with Simulator(faults=Faults.parse([fault], seed=7), accept_unknown_flows=True) as s:
        for _ in range(4):
            p = apply(plan, s.url, spec)
            if p.returncode == 0:
                break
        assert p.returncode == 0, p.stderr
        keys = {(t["flowId"], t["triggerTime"]) for t in s.triggers()}
        assert len(keys) == 40
        assert_exactly_once(s.triggers(), keys)
        statuses = {t["status"] for t in s.triggers()}
        assert statuses - {0}, f"the fault {fault} never happened: {statuses}"
    check = run_process(["plan", str(plan), "--ledger", spec, "--detailed-exitcode"])
    assert check.returncode == 0, check.stdout


CRASH_TRIALS = 8
CRASH_FLOWS, CRASH_PER_FLOW = 4, 40
CRASH_SEED = 20261128
CRASH_DIALECTS = [
    Dialect(),
    Dialect(api="v2.1", server_zone="UTC", id_zone="server", not_found="null", duplicate="none"),
]


@pytest.mark.slow
def test_kill_9_at_random_moments_then_reapply_is_exactly_once(
    new_ledger: Callable[[], str], tmp_path: Path
) -> None:
    seed = int(os.environ.get("CRASH_SEED", CRASH_SEED))
    rng = random.Random(seed)
    spec = new_ledger()  # one ledger for every trial, as a team's shared table would be
    total = CRASH_FLOWS * CRASH_PER_FLOW
    mid_run = duplicates = 0
    for trial in range(CRASH_TRIALS):
        dialect = CRASH_DIALECTS[trial % len(CRASH_DIALECTS)]
        with Simulator(faults=Faults(latency=0.002), dialect=dialect, accept_unknown_flows=True) as sim:
            first_id = 1000 + trial * 10
            plan = write_plan(
                tmp_path, cron_flows(CRASH_FLOWS, CRASH_PER_FLOW, first_id=first_id), name=f"t{trial}.yaml", api=dialect.api
            )
            proc = start_apply(
                plan, sim.url, "--ledger", spec, "--concurrency", str(rng.choice([1, 4])),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if trial % 4 == 0:
                time.sleep(rng.uniform(0.0, 0.8))  # anywhere: start-up, lock, fold, first sends
            else:
                target = rng.randrange(1, total)
                deadline = time.monotonic() + 30
                while len(sim.state.triggers) < target and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.0005)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if 0 < len(sim.state.triggers) < total:
                mid_run += 1
            for _ in range(3):
                p = apply(plan, sim.url, spec, "--lock-timeout", "30")
                if p.returncode == 0:
                    break
            assert p.returncode == 0, f"seed {seed} trial {trial}: {p.stderr[-2000:]}"
            triggers = sim.triggers()
            keys = {(t["flowId"], t["triggerTime"]) for t in triggers}
            assert len(keys) == total
            dupes, resends = duplicates_and_resends(triggers)
            duplicates += len(dupes) + len(resends)
            assert_exactly_once(triggers, keys)
            check = run_process(["plan", str(plan), "--ledger", spec, "--detailed-exitcode"])
            assert check.returncode == 0, f"seed {seed} trial {trial}: ledger not all done"
    print(f"CRASH_SEED={seed}: {CRASH_TRIALS} kill -9 trials, {mid_run} mid-run, {duplicates} duplicates")
    assert duplicates == 0
    assert mid_run >= CRASH_TRIALS // 2, f"seed {seed}: only {mid_run} kills landed mid-run"


def test_export_then_import_into_a_fresh_table_folds_the_same(
    pg_url: str, tmp_path: Path, sim: Simulator
) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 5))
    file_spec = str(tmp_path / "team.ledger.jsonl")
    assert apply(plan, sim.url, file_spec).returncode == 0
    table = pg.with_table(pg_url)
    exported = tmp_path / "exported.jsonl"
    # file -> table -> file -> another table: the same records and the same fold throughout.
    assert run_process(["ledger", "export", "--ledger", file_spec, str(exported)]).returncode == 0
    p = run_process(["ledger", "import", "--ledger", table, str(exported)])
    assert p.returncode == 0 and "imported 20 new records of 20" in p.stderr, p.stderr
    p = run_process(["ledger", "import", "--ledger", table, str(exported)])
    assert p.returncode == 0 and "imported 0 new records of 20" in p.stderr, p.stderr
    back = tmp_path / "back.jsonl"
    assert run_process(["ledger", "export", "--ledger", table, str(back)]).returncode == 0
    fresh = pg.with_table(pg_url)
    assert run_process(["ledger", "import", "--ledger", fresh, str(back)]).returncode == 0
    records = [r for _, r in ledger.FileLedger(file_spec).records()]
    assert [r for _, r in PostgresLedger(fresh).records()] == records
    same_fold(PostgresLedger(fresh).read(), ledger.fold(file_spec))
    # And the plan reads it as done from the table.
    p = run_process(["plan", str(plan), "--ledger", fresh, "--detailed-exitcode"])
    assert p.returncode == 0, p.stdout
    for url in (table, fresh):
        PostgresLedger(url).drop()


# -- findings of the round-3 probe and the newcomer trial ----------------------------------------


def test_n10_records_of_another_gateway_do_not_make_a_key_done(new_ledger: Callable[[], str], tmp_path: Path) -> None:
    spec = new_ledger()
    plan = write_plan(tmp_path, cron_flows(2, 3))
    with Simulator(accept_unknown_flows=True) as a, Simulator(accept_unknown_flows=True) as b:
        assert apply(plan, a.url, spec).returncode == 0
        p = apply(plan, b.url, spec)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["summary"] == {"triggered": 6}
        assert len(b.triggers()) == 6  # B got every entry, not "6 skipped"
        host_a = a.url.split("://", 1)[1].rstrip("/")
        assert f"ignored 12 ledger records written against another gateway (12 for {host_a})" in p.stderr
        again = apply(plan, b.url, spec)  # B's own records count for B
        assert json.loads(again.stdout)["summary"] == {"skipped": 6} and len(b.triggers()) == 6
        assert len(a.triggers()) == 6
        # plan has no --gateway: it counts every gateway's records, and says which are not the plan's.
        shown = run_process(["plan", str(plan), "--ledger", spec, "--format", "json"])
        assert json.loads(shown.stdout)["summary"] == {"done": 6}
        assert "24 ledger records were written against another gateway than the plan's" in shown.stderr
        assert f"12 for {host_a}" in shown.stderr and "apigw.example.com ignores them" in shown.stderr
        with Simulator(accept_unknown_flows=True) as c:
            status = run_process(["status", str(plan), "--ledger", spec, "--gateway", c.url, "--format", "json"], env=SIM_ENV)
            assert "ignored 24 ledger records written against another gateway" in status.stderr, status.stderr
            assert "internal error" not in status.stderr
            assert not c.triggers()


def test_n14_a_role_without_privileges_gets_exit_3_and_one_masked_line(pg_url: str, tmp_path: Path, sim: Simulator) -> None:
    import uuid

    role = f"weak_{uuid.uuid4().hex[:8]}"
    spec = pg.with_table(pg_url)
    owner = PostgresLedger(spec)
    add(owner, [])  # the tables exist; the weak role may not touch them
    table = owner.table
    host = pg_url.split("@", 1)[1]
    weak = f"postgresql://{role}:PW-weak-s3cr3t@{host}?table={table}"
    plan = write_plan(tmp_path, cron_flows(1, 2))
    src = tmp_path / "src.jsonl"
    src.write_bytes(ledger.encode([rec("intent", "a", flow="f", run="r")]))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'PW-weak-s3cr3t'")
        conn.execute(f"GRANT CONNECT ON DATABASE {host.split('/')[-1].split('?')[0]} TO {role}")
    try:
        for argv in (
            ["apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", weak],
            ["ledger", "import", "--ledger", weak, str(src)],
            ["ledger", "import", "--ledger", weak.replace(table, table + "_new"), str(src)],
        ):
            p = run_process(argv, env={**SIM_ENV, **FAST_ENV})
            assert p.returncode == 3, (argv, p.stderr)
            errors = [line for line in p.stderr.splitlines() if "error" in line]
            assert len(errors) == 1 and "permission denied" in errors[0], p.stderr
            assert "internal error" not in p.stderr and "PW-weak-s3cr3t" not in p.stderr + p.stdout
            assert "Traceback" not in p.stderr
        assert not sim.triggers()
    finally:
        owner.drop()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_n16_a_hung_database_ends_with_exit_3_not_a_hang(pg_url: str, tmp_path: Path, sim: Simulator) -> None:
    spec = pg.with_table(pg_url)
    backend = PostgresLedger(spec)
    add(backend, [rec("intent", "a", flow="f", run="r")])
    plan = write_plan(tmp_path, cron_flows(1, 2))
    env = {**SIM_ENV, **FAST_ENV, "PLANRUNNER_LEDGER_STATEMENT_TIMEOUT": "0.5"}
    try:
        with psycopg.connect(pg_url) as holder:  # another session holds the table: every read waits
            holder.execute(f'LOCK TABLE "{backend.table}" IN ACCESS EXCLUSIVE MODE')
            for argv in (
                ["plan", str(plan), "--ledger", spec],
                ["apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", spec],
            ):
                p = run_process(argv, env=env, timeout=60)
                assert p.returncode == 3, p.stderr
                assert "canceling statement due to statement timeout" in p.stderr
            holder.rollback()
        assert not sim.triggers()
        bad = run_process(["plan", str(plan), "--ledger", spec], env={"PLANRUNNER_LEDGER_STATEMENT_TIMEOUT": "-1"})
        assert bad.returncode == 3 and "PLANRUNNER_LEDGER_STATEMENT_TIMEOUT" in bad.stderr
    finally:
        backend.drop()


def test_finding_14_a_waiting_apply_says_at_once_whom_it_waits_for(
    new_ledger: Callable[[], str], tmp_path: Path, sim: Simulator
) -> None:
    spec = new_ledger()
    plan = write_plan(tmp_path, cron_flows(1, 2))
    held = ledger.open_ledger(spec)
    with held.session("r-holder", [("o1", 1)], 0):
        p = apply(plan, sim.url, spec, "--lock-timeout", "0.5")
    assert p.returncode == 3
    waiting = [line for line in p.stderr.splitlines() if "waiting up to 0.5 s for the ledger lock held by" in line]
    assert len(waiting) == 1 and f"pid {os.getpid()} on " in waiting[0] and "run r-holder" in waiting[0]
    assert p.stderr.index("waiting up to") < p.stderr.index("is locked by another apply")
    assert not sim.triggers()


def _server_pids(server: pg.Server) -> list[int]:
    """The postmaster of a throwaway server and its children."""
    main = int((server.data / "postmaster.pid").read_text().split()[0])
    pids = [main]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat_line = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat_line.rsplit(")", 1)[1].split()[1]) == main:
                pids.append(int(entry))
    return pids


def test_n16_a_stopped_database_server_ends_with_a_ledger_error_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANRUNNER_LEDGER_STATEMENT_TIMEOUT", "0.5")  # planrunner waits 1.5 s
    server = pg.start()  # its own server: this test stops every process of it
    stopped: list[int] = []
    try:
        spec = pg.with_table(server.url)
        writing, reading = PostgresLedger(spec), PostgresLedger(spec)
        add(writing, [rec("intent", "a", flow="f", run="r")])
        with writing.session("r-hung", [("o1", 7)], 0) as w, reading.session("r-read", [("o1", 8)], 0) as r:
            stopped = _server_pids(server)
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)
            # apply's commit of an intent: the run stops sending (exit 3), never hangs.
            refused = r"cannot write ledger \(the database did not answer within 1\.5 s"
            with pytest.raises(LedgerError, match=refused):
                w.append([rec("intent", "b", flow="f", run="r-hung")])
            with pytest.raises(LedgerError, match=r"cannot read the ledger: the database did not answer within 1\.5 s"):
                r.fold({KEY})
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        server.stop()


def test_n3_check_lock_fails_once_the_lock_session_is_gone(pg_url: str, tmp_path: Path) -> None:
    backend = PostgresLedger(pg.with_table(pg_url))
    try:
        with backend.session("run-x", [("o1", 7)], 0) as session:
            session.check_lock()  # alive: no error
            run = session._run
            assert run is not None
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (run.conn.info.backend_pid,))
            with pytest.raises(LedgerError, match="lost the session holding the ledger's locks"):
                session.check_lock()
        with ledger.FileLedger(str(tmp_path / "l.jsonl")).session("run-y", [], 0) as held:
            held.check_lock()  # a file lock lives with the process
    finally:
        backend.drop()
