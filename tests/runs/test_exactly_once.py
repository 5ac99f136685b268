"""Exactly-once under doubt: unknown outcomes, late requests, lost locks, unrecorded results.

Each test is named after the finding it pins (reliability probe N1-N17, newcomer trial
findings 7 and 13). HTTP goes over loopback to the simulator or to a small gateway written
here; ledgers are real files or a real PostgreSQL table. The engine's decisions are also
driven directly with a scripted client (no socket), as tests/runs/test_decide.py does.
"""

from __future__ import annotations

import http.client
import itertools
import json
import resource
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from planrunner import enos, ledger, lookup
from planrunner.resolve import Entry
from planrunner.runs import apply as engine
from planrunner.runs.flow import in_flight_wait
from planrunner.sim import Dialect, Faults, Simulator
from testing import (
    ROOT,
    apply_json,
    assert_exactly_once,
    cron_flows,
    make_client,
    start_apply,
    write_plan,
)
from testing import postgres as pg

T0 = 1767225600000  # 2026-01-01T00:00:00Z
# A request is over READ_TIMEOUT + MARGIN after it left: short, so the tests run in seconds.
SHORT_WINDOW = {"PLANRUNNER_READ_TIMEOUT": "1", "PLANRUNNER_IN_FLIGHT_MARGIN": "3"}


def plan_keys(run: Any, plan: Path) -> list[tuple[int, int]]:
    doc = json.loads(run("plan", str(plan), "--format", "json").out)
    return sorted((e["flowId"], e["triggerTime"]) for e in doc["entries"])


def plan_statuses(run: Any, plan: Path, *extra: str) -> dict[tuple[int, int], str]:
    doc = json.loads(run("plan", str(plan), "--format", "json", *extra).out)
    return {(e["flowId"], e["triggerTime"]): e["status"] for e in doc["entries"]}


def statuses(doc: Any) -> dict[tuple[int, int], str]:
    return {(e["flowId"], e["triggerTime"]): e["status"] for e in doc["entries"]}


@pytest.fixture
def short_window(monkeypatch: pytest.MonkeyPatch, sim_env: None) -> None:
    """The real in-flight rule (read timeout + margin), with a 1 s read timeout and a 3 s margin."""
    monkeypatch.delenv("PLANRUNNER_IN_FLIGHT_SECONDS", raising=False)
    for k, v in SHORT_WINDOW.items():
        monkeypatch.setenv(k, v)


# -- a scripted client and entries, for the engine's decisions ------------------------------------


class Scripted:
    """A client whose answers a test writes: ``answer(n, entry)`` for the n-th trigger."""

    where = "https://scripted.example.com"
    stopped: str | None = None

    def __init__(
        self,
        answer: Callable[[int, tuple[int, int]], enos.Answer],
        lookup: Callable[[tuple[int, int]], enos.Lookup] = lambda key: enos.Lookup(False, None),
    ) -> None:
        self._answer = answer
        self._lookup = lookup
        self.sent: list[tuple[tuple[int, int], float]] = []  # (flowId, triggerTime), time.time()
        self.lookups = 0
        self._lock = threading.Lock()

    def trigger(self, flow_id: int, trigger_time: int) -> enos.Answer:
        with self._lock:
            self.sent.append(((flow_id, trigger_time), time.time()))
            n = len(self.sent)
        return self._answer(n, (flow_id, trigger_time))

    def find_instance(self, flow_id: int, trigger_time: int) -> enos.Lookup:
        with self._lock:
            self.lookups += 1
        return self._lookup((flow_id, trigger_time))

    def look_up_many(self, client: Any, wanted: Any, stop: Any = None) -> dict[tuple[int, int], Any]:
        """The batched lookup of earlier runs' keys, from the same script."""
        out = {}
        for w in wanted:
            found = self.find_instance(w.flow_id, w.trigger_time)
            state = (
                "SUCCESS" if found.found else lookup.NOT_FOUND if found.found is False else lookup.LOOKUP_FAILED
            )
            out[(w.flow_id, w.trigger_time)] = lookup.Seen(state, found.flow_instance_id, reason=found.reason)
        return out

    def get_flow(self, flow_id: int) -> enos.Answer:
        graph = '{"tasks": [{"taskName": "t1"}]}'
        return enos.Answer(enos.Kind.OK, 0, "ok", {"flowId": flow_id, "graph": graph}, http_status=200)

    def clean(self, text: str) -> str:
        return text

    def close(self) -> None:
        pass


def entries(flows: int, per_flow: int) -> list[Entry]:
    return [
        Entry(T0 + i * 60_000, f, f"f{f}", "o1", 0)
        for f in range(1, flows + 1)
        for i in range(per_flow)
    ]


def run_engine(
    tmp_path: Path, client: Scripted, todo: list[Entry], **options: Any
) -> tuple[engine.Runner, dict[str, Any], list[dict[str, Any]]]:
    """Run the engine over a real ledger file; (runner, outcomes, the records written)."""
    path = tmp_path / "l.jsonl"
    with ledger.Writer(str(path)) as w:
        runner = engine.Runner(
            client,  # type: ignore[arg-type]
            w,
            ledger.fold(str(path)),
            engine.Options(**options),
            "r1",
            gateway="x",
            look_up_many=client.look_up_many,
        )
        outcomes = runner.run(todo)
    records = [json.loads(x) for x in path.read_text().splitlines()]
    return runner, outcomes, records


OK = enos.Answer(enos.Kind.OK, 0, "OK", {"flowInstanceId": "i-1"}, http_status=200)


# -- N1: no second request while the first may still act ------------------------------------------


def test_n1_unknown_outcome_waits_until_request_is_over(tmp_path: Path, run, short_window) -> None:
    # The service takes 2 s, longer than the client's 1 s read timeout, and has no dedup:
    # a lookup at the timeout finds nothing, and a re-send then would make a second instance.
    plan = write_plan(tmp_path, cron_flows(2, 1))
    keys = plan_keys(run, plan)
    with Simulator(faults=Faults(latency=2.0), dialect=Dialect(duplicate="none"), accept_unknown_flows=True) as s:
        r, doc = apply_json(run, plan, s.url)
        assert r.code == 0, r.err
        assert doc["summary"] == {"reconciled": 2}
        assert len(s.triggers()) == 2  # one request per key, never a second
        assert_exactly_once(s.triggers(), set(keys))
    events = [json.loads(x)["event"] for x in (tmp_path / "plan.ledger.jsonl").read_text().splitlines()]
    assert events.count("unknown") == 2 and events.count("reconciled") == 2


class _LateBackend(ThreadingHTTPServer):
    """A gateway in front of the simulator that answers a trigger 504 at once and passes it
    on to the service 2 s later (a backend that outlives its gateway's timeout)."""

    daemon_threads = True

    def __init__(self, backend: str, delay: float) -> None:
        self.backend = urllib.parse.urlsplit(backend)
        self.delay = delay
        self.late: list[threading.Thread] = []
        super().__init__(("127.0.0.1", 0), _LateHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.backend.hostname or "", self.backend.port, timeout=10)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


class _LateHandler(BaseHTTPRequestHandler):
    server: _LateBackend

    def log_message(self, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if query.get("action") == ["trigger"]:
            late = threading.Timer(
                self.server.delay, self.server.forward, (self.command, self.path, headers, body)
            )
            late.start()
            self.server.late.append(late)
            status, payload = 504, b"gateway timeout"
        else:
            status, payload = self.server.forward(self.command, self.path, headers, body)
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _handle
    do_POST = _handle


@pytest.fixture
def late_gateway() -> Iterator[tuple[Simulator, _LateBackend]]:
    with Simulator(dialect=Dialect(duplicate="none"), accept_unknown_flows=True) as s:
        gw = _LateBackend(s.url, delay=2.0)
        thread = threading.Thread(target=gw.serve_forever, daemon=True)
        thread.start()
        try:
            yield s, gw
        finally:
            gw.shutdown()
            gw.server_close()
            for t in gw.late:
                t.join()


def test_n1_gateway_504_before_its_backend_creates_gives_one_instance_per_key(
    tmp_path: Path, run, short_window, late_gateway: tuple[Simulator, _LateBackend]
) -> None:
    s, gw = late_gateway
    plan = write_plan(tmp_path, cron_flows(3, 2))
    keys = plan_keys(run, plan)
    r, doc = apply_json(run, plan, gw.url)
    assert r.code == 0, r.err
    assert doc["summary"] == {"reconciled": 6}
    for t in gw.late:
        t.join()
    assert len(s.triggers()) == 6  # the probe saw 18 requests and 3 instances per key
    assert_exactly_once(s.triggers(), set(keys))


# -- N2: unknown stays unknown; nothing failed is re-sent blind -------------------------------------


def _timeouts(msg: str) -> Scripted:
    return Scripted(
        lambda n, key: enos.Answer(enos.Kind.UNKNOWN, None, msg),
        # The lookup would say "absent": the request is still in flight, so it must not be believed.
        lambda key: enos.Lookup(False, None),
    )


def _stopped_by_breaker(tmp_path: Path, msg: str) -> None:
    client = _timeouts(msg)
    runner, outcomes, records = run_engine(tmp_path, client, entries(1, 20), in_flight=30.0)
    assert runner.fatal is not None and "looks down" in str(runner.fatal)
    assert len(client.sent) == engine.GATEWAY_DOWN_AFTER
    # One lookup per send, at once: only an instance found would settle it; its "absent" is
    # not believed while the request may still act, so nothing is sent again.
    assert client.lookups == len(client.sent)
    assert not [r for r in records if r["event"] == "failed"]
    folded = ledger.fold(str(tmp_path / "l.jsonl"))
    sent_keys = {f"o1/{k[0]}/{k[1]}" for k, _ in client.sent}
    assert {folded.status(k) for k in sent_keys} == {ledger.UNKNOWN}
    assert {outcomes[k].status for k in sent_keys} == {"unknown"}


def test_n2_timed_out_attempts_stay_unknown_when_the_breaker_stops(tmp_path: Path) -> None:
    _stopped_by_breaker(tmp_path, "read timeout after sending")


def test_n2_unknown_not_found_after_the_request_is_over_is_resent_at_most_twice(tmp_path: Path) -> None:
    # 504 every time, and the service (looked up once each request is over) has nothing.
    client = Scripted(
        lambda n, key: enos.Answer(enos.Kind.UNKNOWN, 504, "HTTP 504 after sending", http_status=504)
    )
    _, outcomes, _ = run_engine(tmp_path, client, entries(1, 1), in_flight=0.3)
    sends = [t for _, t in client.sent]
    assert len(sends) == 1 + engine.Options().max_resends
    # Each re-send left only once the previous request was over.
    assert all(b - a >= 0.3 for a, b in itertools.pairwise(sends))
    # Each send: a lookup at once (absent: not believed yet), then one once it is over.
    assert client.lookups == 2 * len(sends)
    assert outcomes[entries(1, 1)[0].key].status == "failed"


def test_n2_failed_key_is_looked_up_before_it_is_sent_again(tmp_path: Path, run, sim, sim_env) -> None:
    # An earlier version recorded an unknown-then-not-found attempt as failed, although the
    # instance was made later (a 504 before its backend created it).
    plan = write_plan(tmp_path, cron_flows(1, 1))
    (key,) = plan_keys(run, plan)
    assert make_client(sim.url).trigger(*key).kind is enos.Kind.OK
    path = tmp_path / "plan.ledger.jsonl"
    common = (f"o1/{key[0]}/{key[1]}", key[0], "o1", key[1], "old.1")
    path.write_bytes(
        ledger.encode(
            [
                ledger.record("intent", *common, flow="f1", run="old", gateway=sim.url),
                ledger.record("unknown", *common, reason="HTTP 504 after sending", gateway=sim.url),
                ledger.record(
                    "failed",
                    *common,
                    code=504,
                    msg="HTTP 504 after sending; not found on the service, not sent again this run",
                    gateway=sim.url,
                ),
            ]
        )
    )
    assert plan_statuses(run, plan) == {key: "retry"}
    r, doc = apply_json(run, plan, sim.url)
    assert r.code == 0, r.err
    assert doc["summary"] == {"reconciled": 1}
    assert len(sim.triggers()) == 1  # looked up, found, never sent again
    assert plan_statuses(run, plan) == {key: "done"}


# -- N3: an intent is dated when its request leaves; lost locks stop sending --------------------------


def test_n3_intent_is_written_when_the_request_leaves(tmp_path: Path) -> None:
    # 4 flows paced at 2 requests/s: the last request leaves about 3.5 s after the first.
    # Each intent must be dated when its request left, not when its worker queued it.
    client = Scripted(lambda n, key: OK)
    _, outcomes, records = run_engine(tmp_path, client, entries(4, 2), rate=2.0, concurrency=4)
    assert {o.status for o in outcomes.values()} == {"triggered"}
    at = {
        (r["flowId"], r["triggerTime"]): ledger_time(r["at"]) for r in records if r["event"] == "intent"
    }
    spread = max(t for _, t in client.sent) - min(t for _, t in client.sent)
    assert spread > 2.0  # the pacing really held requests back
    for key, left in client.sent:
        assert 0 <= left - at[key] < 0.4, (key, left - at[key])


def ledger_time(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def test_n3_a_retried_request_gets_an_intent_of_its_own(tmp_path: Path) -> None:
    unavailable = enos.Answer(enos.Kind.RETRYABLE, 503, "HTTP 503", retry_after=0.5, http_status=503)
    client = Scripted(lambda n, key: unavailable if n == 1 else OK)
    _, outcomes, records = run_engine(tmp_path, client, entries(1, 1))
    assert [o.status for o in outcomes.values()] == ["triggered"]
    assert [r["event"] for r in records] == ["intent", "aborted", "intent", "triggered"]
    assert "not acted on (503: HTTP 503)" in records[1]["reason"]
    assert records[0]["attempt"] != records[2]["attempt"]
    # The second request left after the Retry-After, and its intent says so.
    (_, first), (_, second) = client.sent
    assert second - first >= 0.5
    assert 0 <= second - ledger_time(records[2]["at"]) < 0.4


@pytest.fixture(scope="module")
def pg_url() -> str:
    return pg.require_url()


def test_n3_postgres_apply_that_lost_its_lock_session_sends_nothing_more(
    tmp_path: Path, pg_url: str
) -> None:
    spec = pg.with_table(pg_url)
    table = urllib.parse.parse_qs(urllib.parse.urlsplit(spec).query)["table"][0]
    plan = write_plan(tmp_path, cron_flows(3, 4))
    with Simulator(dialect=Dialect(duplicate="none"), accept_unknown_flows=True) as s:
        # Paced at 1 request/s over 3 flows: each worker has its next entry waiting for a slot.
        proc = start_apply(plan, s.url, "--ledger", spec, "--rate", "1", "--concurrency", "3", "--format", "json")
        try:
            deadline = time.monotonic() + 30
            while not s.triggers() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert s.triggers(), "apply sent nothing"
            with psycopg.connect(pg_url, autocommit=True) as admin:
                pids = [row[0] for row in admin.execute(f'SELECT pid FROM "{table}_locks"')]
                assert len(pids) == 1
                admin.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
            time.sleep(0.3)
            sent_when_lost = len(s.triggers())
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 3, err
        assert "Traceback" not in err
        assert len(s.triggers()) == sent_when_lost  # nothing left after the locks were lost
        # N13 too: what was sent is reported unknown ("outcome not recorded"), never pending.
        doc = json.loads(out)
        sent = {(t["flowId"], t["triggerTime"]) for t in s.triggers()}
        assert all(statuses(doc)[k] != "pending" for k in sent)
    backend = ledger.open_ledger(spec)
    try:
        folded = backend.read()
        assert {folded.status(f"o1/{k[0]}/{k[1]}") for k in sent} <= {ledger.UNKNOWN, ledger.DONE}
    finally:
        backend.drop()  # type: ignore[attr-defined]


class _SlowSink:
    """A real ledger file whose every write takes ``seconds`` (a hung disk or database)."""

    def __init__(self, path: Path, seconds: float) -> None:
        self._writer = ledger.Writer(str(path))
        self._seconds = seconds
        self.fsyncs = 0

    def append(self, records: Any) -> None:
        time.sleep(self._seconds)
        self._writer.append(records)


def test_n3_an_intent_written_too_slowly_is_closed_unsent(tmp_path: Path) -> None:
    # A request must never leave later than its intent says: one whose intent took longer
    # than send_slack to write is closed unsent; three in a row stop the run (exit 3).
    client = Scripted(lambda n, key: OK)
    path = tmp_path / "l.jsonl"
    sink = _SlowSink(path, 0.3)
    runner = engine.Runner(
        client,  # type: ignore[arg-type]
        sink,
        ledger.Folded(),
        engine.Options(send_slack=0.1),
        "r1",
        gateway="x",
    )
    outcomes = runner.run(entries(1, 2))
    sink._writer.close()
    assert client.sent == []
    assert runner.fatal is not None and runner.fatal.exit_code == 3
    assert "took over 0.1 s to write" in str(runner.fatal)
    folded = ledger.fold(str(path))
    assert {folded.status(e.key) for e in entries(1, 2)} == {ledger.PENDING}
    assert {o.status for o in outcomes.values()} <= {"pending"}


# -- N12: ledger times far off ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-01-01T00:00:00.000Z", 0.0),  # long over
        ("2026-01-01T00:00:40.000Z", 40.0),  # 5 s old: 40 s left of the 45 s window
        ("2026-01-01T01:00:00.000Z", 45.0),  # an hour ahead: counts as now
        ("2400-01-01T00:00:00.000Z", 45.0),
        ("9999-12-31T23:59:59.999Z", 45.0),
        ("not a time", 45.0),
        ("", 0.0),  # no intent
    ],
)
def test_n12_in_flight_wait_is_capped_and_a_future_intent_counts_as_now(at: str, expected: float) -> None:
    now = ledger_time("2026-01-01T00:00:45.000Z")
    assert in_flight_wait(at, 45.0, now) == pytest.approx(expected)


def test_n12_far_future_intent_dates_never_crash_a_worker(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(3, 1))
    keys = plan_keys(run, plan)
    path = tmp_path / "plan.ledger.jsonl"
    far = ["2400-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z", "2099-01-01T00:00:00.000Z"]
    recs = []
    for (flow_id, t), at in zip(keys, far, strict=True):
        rec = ledger.record("intent", f"o1/{flow_id}/{t}", flow_id, "o1", t, "old.1", flow=f"f{flow_id}", run="old")
        rec["at"] = at
        recs.append(rec)
    path.write_bytes(ledger.encode(recs))
    r, doc = apply_json(run, plan, sim.url)  # the window is 0.5 s (FAST_ENV)
    assert r.code == 0, r.err
    assert "Traceback" not in r.err and "Exception in thread" not in r.err
    assert doc["summary"] == {"triggered": 3}  # looked up after the capped wait: absent, sent
    assert_exactly_once(sim.triggers(), set(keys))


# -- N13 and newcomer finding 13: the report agrees with plan ------------------------------------------


def _small_files(limit: int) -> Callable[[], None]:
    def setup() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write(), not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return setup


def test_n13_sent_entries_whose_result_was_not_written_are_reported_unknown(
    tmp_path: Path, run, sim, sim_env
) -> None:
    # The ledger file may not grow past 3 KB: its writes fail mid-run with a real EFBIG.
    plan = write_plan(tmp_path, cron_flows(2, 10))
    proc = subprocess.run(
        [*_apply_argv(plan, sim.url), "--format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        preexec_fn=_small_files(3000),
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    assert "cannot write ledger" in proc.stderr and "Traceback" not in proc.stderr
    reported = statuses(json.loads(proc.stdout))
    planned = plan_statuses(run, plan)
    sent = {(t["flowId"], t["triggerTime"]) for t in sim.triggers()}
    assert sent and len(sent) < 20  # the failure really came mid-run
    assert "unknown" in reported.values()
    for key, status in reported.items():
        if key in sent:
            assert status in ("triggered", "unknown"), (key, status)  # never "pending" (not sent)
        if status == "pending":
            assert planned[key] == "pending" and key not in sent
        if planned[key] == "unknown":
            assert status == "unknown"


def _apply_argv(plan: Path, url: str) -> list[str]:
    from testing import apply_argv

    return apply_argv(plan, url)


def test_finding_13_interrupted_while_waiting_reports_unknown_as_plan_does(
    tmp_path: Path, run, sim, sim_env
) -> None:
    from testing import crashed_intent

    plan = write_plan(tmp_path, cron_flows(1, 2) + cron_flows(1, 2, first_id=2))
    keys = plan_keys(run, plan)
    crashed_intent(tmp_path / "plan.ledger.jsonl", keys[0][1], "old.1")  # just now: still in flight
    proc = start_apply(
        plan, sim.url, "--format", "json", env={"PLANRUNNER_IN_FLIGHT_SECONDS": "60"}
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "may still be in flight" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    doc = json.loads(out)
    planned = plan_statuses(run, plan)
    assert statuses(doc)[keys[0]] == "unknown" == planned[keys[0]]
    assert doc["summary"].get("unknown") == 1
    assert doc["summary"].get("pending", 0) == sum(1 for v in planned.values() if v == "pending")


# -- N16: a drip-feeding gateway trips the breaker --------------------------------------------------


def test_n16_answers_past_the_total_deadline_trip_the_breaker_as_timeouts_do(tmp_path: Path) -> None:
    # The client gives up on an answer that drips in past its total deadline with a timeout
    # (no HTTP status): five in a row stop the run, and those entries stay unknown.
    _stopped_by_breaker(tmp_path, "no complete answer within the total deadline after sending")


# -- N17: 62102 "Incorrect parameter" ---------------------------------------------------------------


def test_n17_62102_that_is_no_duplicate_twice_refuses_the_flow(tmp_path: Path) -> None:
    refused = enos.Answer(enos.Kind.DUPLICATE, 62102, "Incorrect parameter", http_status=200)
    client = Scripted(lambda n, key: refused if key[0] == 1 else OK)
    todo = entries(2, 4)
    _, outcomes, _ = run_engine(tmp_path, client, todo, duplicate_wait=0.1)
    flow1 = [e for e in todo if e.flow_id == 1]
    assert [k for k, _ in client.sent].count((1, flow1[0].trigger_time)) == 2
    assert sum(1 for k, _ in client.sent if k[0] == 1) == 2  # not 2 per entry
    assert outcomes[flow1[0].key].status == "failed"
    for e in flow1[1:]:
        assert outcomes[e.key] == (
            "pending",
            None,
            "flow refused: 62102 twice and no instance: the flow or its task may not exist "
            "(62102: Incorrect parameter)",
        )
    assert {outcomes[e.key].status for e in todo if e.flow_id == 2} == {"triggered"}


# -- newcomer finding 7: stop sending what cannot be verified ------------------------------------------


def test_finding_7_apply_stops_sending_when_it_cannot_verify_what_it_sends(
    tmp_path: Path, run, sim_env
) -> None:
    plan = write_plan(
        tmp_path,
        '  - {name: daily, flowId: 7, cron: "0 2 * * *", from: 2026-10-01, count: 31}\n',
        zone="Asia/Shanghai",
    )
    faults = Faults.parse(["504-after-create=1", "lookup-503=1"])
    with Simulator(faults=faults, accept_unknown_flows=True) as s:
        r, doc = apply_json(run, plan, s.url)
        sent = len(s.triggers())
    assert r.code == 1
    assert "could not be verified" in r.err and "stay unknown" in r.err
    # At most MAX_UNRESOLVED sends wait for their lookup at once, and the run stops once
    # UNVERIFIABLE_AFTER of those lookups have failed in a row (before the fix: all 31 sent).
    assert engine.MAX_UNRESOLVED <= sent <= engine.MAX_UNRESOLVED + engine.UNVERIFIABLE_AFTER
    assert doc["summary"] == {"unknown": sent, "pending": 31 - sent}
    assert list(plan_statuses(run, plan).values()).count("unknown") == sent


# -- no worker dies with a traceback ----------------------------------------------------------------


def test_a_bug_in_a_worker_is_a_clean_halt_with_exit_70(tmp_path: Path) -> None:
    def boom(n: int, key: tuple[int, int]) -> enos.Answer:
        if n == 3:
            raise RuntimeError("boom")
        return OK

    died: list[Any] = []
    previous = threading.excepthook
    threading.excepthook = died.append
    try:
        runner, outcomes, _ = run_engine(tmp_path, Scripted(boom), entries(2, 5), concurrency=2)
    finally:
        threading.excepthook = previous
    assert not died  # no thread ended with an exception
    assert isinstance(runner.fatal, engine.InternalError)
    assert runner.fatal.exit_code == 70
    assert "RuntimeError: boom" in str(runner.fatal)
    assert sum(1 for o in outcomes.values() if o.status == "triggered") >= 2


def test_a_ledger_that_cannot_encode_a_record_halts_without_a_thread_traceback(tmp_path: Path) -> None:
    # An answer the ledger cannot hold (a code beyond 64 bits): a bug, not a full disk.
    huge = enos.Answer(enos.Kind.PERMANENT, 2**70, "odd", http_status=200)
    client = Scripted(lambda n, key: huge)
    died: list[Any] = []
    previous = threading.excepthook
    threading.excepthook = died.append
    try:
        runner, _, _ = run_engine(tmp_path, client, entries(1, 3))
    finally:
        threading.excepthook = previous
    assert not died
    assert runner.fatal is not None and runner.fatal.exit_code in (3, 70)


def test_n1_an_unknown_outcome_whose_instance_is_there_is_settled_at_once(
    tmp_path: Path, run, sim_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A gateway that answers 504 after its backend created the instance: the lookup finds it
    # at once, so nothing waits out the in-flight window (an hour here), and sending goes on
    # past max_unresolved. Only "not found" must wait for the request to be over.
    monkeypatch.setenv("PLANRUNNER_IN_FLIGHT_SECONDS", "3600")
    plan = write_plan(tmp_path, cron_flows(1, 3 * engine.MAX_UNRESOLVED))
    with Simulator(faults=Faults.parse(["504-after-create=1"]), dialect=Dialect(duplicate="none"), accept_unknown_flows=True) as s:
        r, doc = apply_json(run, plan, s.url)
        keys = {(t["flowId"], t["triggerTime"]) for t in s.triggers()}
        assert_exactly_once(s.triggers(), keys)
    assert r.code == 0, r.err
    assert doc["summary"] == {"reconciled": 3 * engine.MAX_UNRESOLVED}
    assert "may still be in flight" not in r.err


# -- issue 21: pacing and halting under faults -------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("wait", [True, False])
def test_pacing_under_faults_and_no_duplicate_rule_is_exactly_once_and_within_the_limit(
    tmp_path: Path, run: Any, sim_env: None, wait: bool
) -> None:
    # Unknown outcomes (a 504 or a dropped connection after the instance was made) while
    # pacing: an outcome waiting for its lookup counts as unfinished, so the service never
    # holds more than the limit, and nothing is sent twice.
    from planrunner.sim import SimFlow

    fids = [81, 82]
    plan = write_plan(tmp_path, cron_flows(2, 6, first_id=81))
    faults = Faults.parse(["504-after-create=0.15", "drop-after-create=0.1", "62109=0.1"], seed=7)
    flows = [SimFlow(f, run_seconds=0.2) for f in fids]
    extra = ["--max-unfinished", "2", *(["--wait", "--interval", "0.2"] if wait else [])]
    with Simulator(flows, faults=faults, dialect=Dialect(duplicate="none")) as sim:
        for _ in range(40):
            r, _ = apply_json(run, plan, sim.url, *extra)
            if r.code == 0:
                break
            assert r.code in (1, 4), r.err[-2000:]
            time.sleep(0.2)
        assert r.code == 0, r.err[-2000:]
        keys = {(f, T0 + i * 300_000) for f in fids for i in range(6)}
        assert_exactly_once(sim.triggers(), keys)
        assert all(sim.flows()[f]["maxUnfinished"] <= 2 for f in fids)
