"""runs/apply: in-flight requests, token failures, lookups within a run and a dead gateway
(D6, D11, D17, D21, newcomer finding 5), against the simulator or a hostile gateway."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from planrunner import enos, ledger
from planrunner.runs import apply as engine
from planrunner.sim import Dialect, Faults, SimFlow, Simulator
from testing import SIM_ENV, apply_json, crashed_intent, cron_flows, make_client, write_plan
from testing.hostile import ONE, T0, TOKEN, HostileGateway, envelope, no_traceback, read_ledger


class _DeadGateway:
    """A client whose gateway never answers: every trigger times out, every lookup fails."""

    where = "https://dead.example.com"
    stopped = None  # the client never stops on its own here: the breaker does

    def __init__(self) -> None:
        self.triggers = 0

    def get_flow(self, flow_id: int) -> enos.Answer:
        return enos.Answer(enos.Kind.UNKNOWN, None, "read timeout after sending")

    def clean(self, text: str) -> str:
        return text

    def trigger(self, flow_id: int, trigger_time: int) -> enos.Answer:
        self.triggers += 1
        return enos.Answer(enos.Kind.UNKNOWN, None, "read timeout after sending")

    def find_instance(self, flow_id: int, trigger_time: int) -> enos.Lookup:
        return enos.Lookup(None, None, "get flow instance: read timeout after sending")

    def close(self) -> None:
        pass


# -- D6, D11, D16, D17, D21: the engine --------------------------------------------------------


def test_d6_a_request_still_in_flight_is_not_sent_again(
    tmp_path: Path, run, sim_env, monkeypatch
) -> None:
    # A killed run's request lands at the service 1 s after its intent; with no duplicate
    # rule at the service, a re-send before then would be a second instance.
    monkeypatch.setenv("PLANRUNNER_IN_FLIGHT_SECONDS", "2")
    with Simulator(dialect=Dialect(duplicate="none"), accept_unknown_flows=True) as sim:
        plan = write_plan(tmp_path, ONE)
        led = tmp_path / "l.jsonl"
        crashed_intent(led, T0)
        sent_at = time.time()
        late = threading.Timer(
            max(0.0, sent_at + 1.0 - time.time()), lambda: make_client(sim.url).trigger(1, T0)
        )
        late.start()
        try:
            r = run(
                "apply",
                str(plan),
                "--gateway",
                sim.url,
                "--yes",
                "--ledger",
                str(led),
                "--format",
                "json",
            )
        finally:
            late.join()
        created = [t for t in sim.triggers() if t["flowInstanceId"]]
    assert r.code == 0, r.err
    assert len(created) == 1, created
    assert json.loads(r.out)["summary"] == {"reconciled": 1}


@pytest.mark.parametrize("token", ["TOK\nEvil: 1", " TOK", "T\u20acST", 12345, ""])
def test_d11_an_unusable_token_sends_and_records_nothing(
    tmp_path: Path, run, creds, token: Any
) -> None:
    with HostileGateway(
        lambda p, b: envelope(0, "ok", {"flowInstanceId": "1-x"}), token=token
    ) as gw:
        plan = write_plan(tmp_path, ONE)
        led = tmp_path / "t.jsonl"
        r = run("apply", str(plan), "--gateway", gw.url, "--yes", "--ledger", str(led))
        assert r.code == 1, r.err
        assert gw.api_calls() == []
    assert [rec for rec in read_ledger(led) if rec["event"] == "intent"] == []
    no_traceback(r.err)
    assert "internal error" not in r.err


def test_d11_bad_secret_leaves_no_unknown_entries(tmp_path: Path, run, sim, monkeypatch) -> None:
    monkeypatch.setenv("ENOS_ACCESS_KEY", SIM_ENV["ENOS_ACCESS_KEY"])
    monkeypatch.setenv("ENOS_SECRET_KEY", "wrong")
    plan = write_plan(tmp_path, ONE + '  - {name: f2, flowId: 2, at: ["2026-01-01T00:00:00Z"]}\n')
    led = tmp_path / "b.jsonl"
    r = run(
        "apply",
        str(plan),
        "--gateway",
        sim.url,
        "--yes",
        "--ledger",
        str(led),
        "--concurrency",
        "8",
    )
    assert r.code == 1 and "1003" in r.err
    r = run("plan", str(plan), "--ledger", str(led), "--format", "json")
    assert json.loads(r.out)["summary"] == {"pending": 2}


def test_d11_a_token_failure_mid_run_closes_the_intent_as_aborted(
    tmp_path: Path, run, creds
) -> None:
    calls = {"token": 0}

    def token_reply(path: str, body: bytes) -> tuple[int, bytes]:
        calls["token"] += 1
        if calls["token"] == 1:
            return envelope(0, "SUCCESS", {"accessToken": TOKEN, "expire": 7200})
        return envelope(1005, "token service internal error")

    with HostileGateway(lambda p, b: (401, b"expired"), token_reply=token_reply) as gw:
        plan = write_plan(tmp_path, ONE)
        led = tmp_path / "a.jsonl"
        r = run("apply", str(plan), "--gateway", gw.url, "--yes", "--ledger", str(led))
    assert r.code == 1, r.err
    events = [rec["event"] for rec in read_ledger(led)]
    assert events == ["intent", "aborted"], events
    r = run("plan", str(plan), "--ledger", str(led), "--format", "json")
    assert json.loads(r.out)["summary"] == {"pending": 1}


def test_d17_lookups_are_retried_within_the_run(tmp_path: Path, run, sim_env) -> None:
    with Simulator(faults=Faults.parse(["lookup-503@1,2,3"]), accept_unknown_flows=True) as sim:
        plan = write_plan(tmp_path, ONE)
        led = tmp_path / "l.jsonl"
        crashed_intent(led, T0)
        r = run(
            "apply",
            str(plan),
            "--gateway",
            sim.url,
            "--yes",
            "--ledger",
            str(led),
            "--format",
            "json",
        )
    assert r.code == 0, r.err
    assert json.loads(r.out)["summary"] == {"triggered": 1}


def test_d21_a_dead_gateway_stops_the_run_after_5_timeouts(tmp_path: Path) -> None:
    from planrunner.resolve import Entry

    client = _DeadGateway()
    entries = [
        Entry(T0 + i * 60_000, 1, "f1", "o1", 0) for i in range(20)
    ]
    with ledger.Writer(str(tmp_path / "l.jsonl")) as w:
        runner = engine.Runner(client, w, ledger.Folded(), engine.Options(), "r1", gateway="x")  # type: ignore[arg-type]
        outcomes = runner.run(entries)
    assert client.triggers == engine.GATEWAY_DOWN_AFTER
    assert runner.fatal is not None and "looks down" in str(runner.fatal)
    assert sum(1 for o in outcomes.values() if o.status == "unknown") == engine.GATEWAY_DOWN_AFTER


# --- 5: reconciled is not skipped ----------------------------------------------------------


def test_finding_5_entries_found_on_the_service_are_reconciled_not_skipped(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 3))
    with Simulator(accept_unknown_flows=True) as sim:
        assert apply_json(run, plan, sim.url)[0].code == 0
        # The ledger is lost: the service already has every instance.
        r, doc = apply_json(run, plan, sim.url, "--ledger", str(tmp_path / "fresh.jsonl"))
    assert r.code == 0, r.err
    assert doc["summary"] == {"reconciled": 3}
    assert all(e["error"].startswith("already on the service") for e in doc["entries"])


# --- 15: a refused flow is not sent again this run --------------------------------------------


def test_finding_15_a_permanent_refusal_holds_the_rest_of_the_flow(tmp_path: Path, run: Any, sim_env: None) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 5))
    with Simulator([SimFlow(1, users=("someone-else",))], accept_unknown_flows=True) as sim:
        r, doc = apply_json(run, plan, sim.url)
        sent_to_1 = [t for t in sim.triggers() if t["flowId"] == 1]
    assert r.code == 1
    assert len(sent_to_1) == 1
    assert doc["summary"] == {"pending": 4, "triggered": 5, "failed": 1}
