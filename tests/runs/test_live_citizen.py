"""A good citizen on a live, shared service (issue 21), over loopback against the simulator:
Get Flow before a flow's first trigger, a flow that answers 62102 refused after two
triggers, the one-minute rule learned from a cured 62102, pacing by unfinished instances
(exit 4, --wait), halting on a failed instance, and a spent gateway quota."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from planrunner.sim import Dialect, Faults, SimFlow, Simulator
from testing import apply_json, write_plan

DAILY = '  - {{name: daily, flowId: {fid}, cron: "0 2 * * *", from: 2025-01-01, count: {n}}}\n'


def daily(tmp_path: Path, fid: int, n: int, name: str = "plan.yaml") -> Path:
    return write_plan(tmp_path, DAILY.format(fid=fid, n=n), name=name)


def reasons(doc: dict[str, Any]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for e in doc["entries"]:
        k = (e["status"], e["error"] or "")
        out[k] = out.get(k, 0) + 1
    return out


def test_w1_a_flow_the_service_does_not_know_is_refused_by_get_flow_and_never_triggered(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    plan = daily(tmp_path, 9999, 365)
    with Simulator([SimFlow(1)]) as sim:  # 9999 is not one of the service's flows
        r, doc = apply_json(run, plan, sim.url)
        triggers, lookups = sim.state.trigger_count, sim.state.lookup_count
    assert r.code == 1, r.err[-1000:]
    assert triggers == 0 and lookups == 0
    assert reasons(doc) == {
        (
            "pending",
            "flow refused: does not exist or is not visible (Get Flow answered 62102: Flow not found)",
        ): 365
    }
    assert "flow refused" in r.err


def test_w1_a_flow_answering_62102_to_every_trigger_is_refused_after_two_triggers(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    # Get Flow finds it, every trigger is refused 62102: one entry pays the wait and the
    # resend, the rest of the flow is refused, and a re-apply repeats no more than that.
    plan = daily(tmp_path, 77, 60)
    with Simulator([SimFlow(77, bad_parameter=True)]) as sim:
        r, doc = apply_json(run, plan, sim.url)
        first = len(sim.triggers())
        again, _ = apply_json(run, plan, sim.url)
        second = len(sim.triggers()) - first
    assert r.code == 1 and again.code == 1
    assert first == 2 and second == 2
    got = reasons(doc)
    assert sum(n for (status, _), n in got.items() if status == "failed") == 1
    refused = [n for (status, why), n in got.items() if why.startswith("flow refused: 62102 twice")]
    assert refused == [59]


def test_w2_a_62102_cured_by_waiting_spaces_the_flows_later_triggers(
    tmp_path: Path, run: Any, sim_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A service that reads "once a minute" by the wall clock: without the learned spacing
    # every entry after the first pays a 62102, a lookup and a wait.
    monkeypatch.setenv("PLANRUNNER_DUPLICATE_WAIT", "0.4")
    plan = daily(tmp_path, 5, 5)
    dialect = Dialect(duplicate="wall-clock", duplicate_window=0.3)
    with Simulator([SimFlow(5)], dialect=dialect) as sim:
        r, doc = apply_json(run, plan, sim.url, "--log-format", "json")
        log = sim.triggers()
    assert r.code == 0, r.err[-1000:]
    assert [t["status"] for t in log].count(62102) == 1
    assert len({t["triggerTime"] for t in log if t["flowInstanceId"]}) == 5
    assert "its triggers are sent at least this far apart" in r.err
    assert reasons(doc) == {("triggered", ""): 5}


def test_interval_without_wait_is_a_usage_error(tmp_path: Path, run: Any, sim_env: None) -> None:
    plan = daily(tmp_path, 5, 2)
    r = run("apply", str(plan), "--sim", "--yes", "--interval", "2")
    assert r.code == 2 and "--interval: only with --wait" in r.err


def test_exit_4_when_pacing_held_entries_back_and_nothing_failed(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    plan = daily(tmp_path, 8, 5)
    with Simulator([SimFlow(8, run_seconds=60)]) as sim:
        r, doc = apply_json(run, plan, sim.url, "--max-unfinished", "2")
        again, doc2 = apply_json(run, plan, sim.url, "--max-unfinished", "2")
        sent = len(sim.triggers())
    assert r.code == 4 and again.code == 4, r.err[-1000:]
    assert sent == 2
    assert reasons(doc) == {("triggered", ""): 2, ("pending", "held back: 2 unfinished"): 3}
    assert reasons(doc2) == {("skipped", ""): 2, ("pending", "held back: 2 unfinished"): 3}
    assert "held back" in r.err and "--wait" in r.err
    assert json.loads(r.out)["summary"] == {"triggered": 2, "pending": 3}


def test_apply_counts_and_says_the_entries_scheduled_ahead(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    plan = daily(tmp_path, 6, 5)  # 2025-01-01 .. 2025-01-05 at 02:00 UTC
    with Simulator([SimFlow(6)]) as sim:
        r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--now", "2025-01-02T00:00:00Z")
        _, doc = apply_json(run, plan, sim.url, "--now", "2025-01-02T00:00:00Z")
    assert r.code == 0, r.err[-1000:]
    said = "4 entries are scheduled ahead: the service will hold them until their time"
    assert said in r.out and said in r.err  # the report, and the log line before sending
    assert doc["summary"]["future"] == 4


def test_w6_a_gateway_answering_503_to_every_call_stops_the_run_with_entries_pending(
    tmp_path: Path, run: Any, sim_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 503 is retried (nothing was created); once every call has been refused for the
    # setting's time the client stops and the run leaves every entry pending, none failed.
    monkeypatch.setenv("PLANRUNNER_NOT_ALLOWED_SECONDS", "0.5")
    flows = "".join(DAILY.format(fid=f, n=10).replace("daily", f"d{f}") for f in (1, 2))
    plan = write_plan(tmp_path, flows)
    with Simulator([SimFlow(1), SimFlow(2)], faults=Faults(rates={"http-503": 1.0})) as sim:
        r, doc = apply_json(run, plan, sim.url)
        created = [t for t in sim.triggers() if t["flowInstanceId"]]
    assert r.code == 1, r.err[-1000:]
    assert created == []
    assert "gateway refuses this client: HTTP 503" in r.err
    assert {e["status"] for e in doc["entries"]} == {"pending"}
    assert doc["error"] and "gateway refuses this client" in doc["error"]


def test_w6_a_gateway_answering_403_refuses_each_flow_after_one_trigger(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    # 403 is a definite refusal (the answer table): the entry failed, the rest of its flow
    # is not tried; nothing is retried entry by entry.
    flows = "".join(DAILY.format(fid=f, n=10).replace("daily", f"d{f}") for f in (1, 2))
    plan = write_plan(tmp_path, flows)
    with Simulator([SimFlow(1), SimFlow(2)], faults=Faults(rates={"http-403": 1.0})) as sim:
        r, doc = apply_json(run, plan, sim.url)
        sent = len(sim.triggers())
    assert r.code == 1 and sent == 2
    got = reasons(doc)
    assert sum(n for (st, why), n in got.items() if st == "pending" and why.startswith("flow refused: 403")) == 18, got


@pytest.mark.slow
def test_w4_a_spent_quota_stops_the_run_pending_and_applies_after_the_window_finish_exactly_once(
    tmp_path: Path, run: Any, sim_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 12-second window of 20 calls: each apply sends what the window allows, stops once the
    # gateway has answered only 429 for a while (short here), and leaves the rest pending,
    # never failed; applies after each window end send the rest, each entry exactly once.
    from planrunner.sim.quota import Quota
    from testing import assert_exactly_once

    monkeypatch.setenv("PLANRUNNER_QUOTA_SECONDS", "0.5")
    window = 12
    plan = daily(tmp_path, 3, 45)
    stops = 0
    with Simulator([SimFlow(3, run_seconds=0.01)], quotas=[Quota(20, window)]) as sim:
        for _ in range(8):
            r, doc = apply_json(run, plan, sim.url, "--rate", "20")
            assert r.code in (0, 1), r.err[-1000:]
            assert "failed" not in doc["summary"], doc["summary"]
            if r.code == 0:
                break
            stops += 1
            assert "gateway quota exhausted" in (doc["error"] or "")
            pending = [e for e in doc["entries"] if e["status"] == "pending"]
            assert pending and all(e["error"].startswith("not sent: gateway quota exhausted") for e in pending)
            time.sleep(window - time.time() % window + 0.1)  # the next window
        assert r.code == 0 and stops >= 1
        assert_exactly_once(sim.triggers(), {(3, 1735696800000 + d * 86_400_000) for d in range(45)})
