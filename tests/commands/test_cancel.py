"""`planrunner cancel` against the simulator over loopback, in v2.0 and v2.1."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from planrunner import ledger, protocol
from planrunner.sim import Dialect, SimFlow, Simulator
from testing import ROOT, SIM_ENV, cron_flows, write_plan

APIS = ("v2.0", "v2.1")


def statuses(s: Simulator, flow_id: int) -> dict[int, str]:
    """triggerTime -> the simulator's own status name, for one flow."""
    now = time.time()
    with s.state.lock:
        return {
            i.trigger_time: protocol.STATUS_NAMES[i.status(now)]
            for i in s.state.instances.values()
            if i.flow_id == flow_id
        }


def wait_until(check, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the simulator never reached the expected state"
        time.sleep(0.02)


def events(path: Path, event: str) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if json.loads(x)["event"] == event]


@pytest.mark.parametrize("api", APIS)
def test_cancel_stops_every_queued_instance_of_a_flow_and_no_finished_one(
    tmp_path: Path, run, sim_env, api
) -> None:
    flows = [SimFlow(1, run_seconds=0), SimFlow(2, run_seconds=60)]
    with Simulator(flows, dialect=Dialect(api=api), accept_unknown_flows=True) as s:
        plan = write_plan(tmp_path, cron_flows(2, 5), gateway=s.url, api=api)
        assert run("apply", str(plan), "--yes", "--quiet").code == 0
        wait_until(lambda: set(statuses(s, 1).values()) == {"SUCCESS"})
        # Five more of flow 1, which now runs long: one runs, four queue behind it.
        s.state.service.flows[1] = SimFlow(1, run_seconds=60)
        plan.write_text(plan.read_text().replace("count: 5}", "count: 10}", 1))
        assert run("apply", str(plan), "--yes", "--quiet").code == 0
        wait_until(lambda: "INIT" not in statuses(s, 1).values())
        before = statuses(s, 1)
        assert sorted(before.values()) == ["RUNNING"] + ["SUCCESS"] * 5 + ["WAIT"] * 4

        r = run("cancel", str(plan), "--flow", "f1", "--yes")
        assert r.code == 0, r.out + r.err
        assert "flow f1 (flowId 1): 5 cancelled" in r.out
        after = statuses(s, 1)
        for t, was in before.items():
            assert after[t] == ("SUCCESS" if was == "SUCCESS" else "CANCEL")
        assert "CANCEL" not in statuses(s, 2).values()  # not selected: untouched
        path = tmp_path / "plan.ledger.jsonl"
        cancelled = events(path, "cancelled")
        assert len(cancelled) == 5
        assert all(c["gateway"] == protocol.origin(s.url) and c["flowInstanceId"] for c in cancelled)
        assert len({c["attempt"] for c in cancelled}) == 5

        # Idempotent: a second run cancels nothing and writes nothing.
        size = path.stat().st_size
        r = run("cancel", str(plan), "--flow", "f1", "--yes")
        assert r.code == 0 and "Nothing to cancel" in r.err
        assert path.stat().st_size == size

        # plan and status show them as cancelled.
        doc = json.loads(run("plan", str(plan), "--format", "json", "--flow", "f1").out)
        assert doc["summary"] == {"done": 5, "cancelled": 5}
        r = run("status", str(plan), "--flow", "f1", "--format", "json")
        flow = json.loads(r.out)["flows"][0]
        assert flow["counts"] == {"SUCCESS": 5, "CANCEL": 5} and flow["cancelled"] == 5
        assert r.code == 1

        # The rest: --exclude selects flow 2.
        r = run("cancel", str(plan), "--exclude", "f1", "--yes")
        assert r.code == 0, r.err
        assert set(statuses(s, 2).values()) == {"CANCEL"}
        assert len(events(path, "cancelled")) == 10


def test_cancel_refuses_without_yes_off_a_terminal(tmp_path: Path, run, sim_env) -> None:
    with Simulator([SimFlow(1, run_seconds=60)], accept_unknown_flows=True) as s:
        plan = write_plan(tmp_path, cron_flows(1, 3), gateway=s.url)
        assert run("apply", str(plan), "--yes", "--quiet").code == 0
        r = run("cancel", str(plan))
        assert r.code == 2 and "--yes" in r.err
        assert "CANCEL" not in statuses(s, 1).values()
        assert not events(tmp_path / "plan.ledger.jsonl", "cancelled")
        assert run("cancel", str(plan), "--flow", "nope", "--yes").code == 2


@pytest.mark.parametrize(("answer", "code"), [("n", 1), ("y", 0)])
def test_cancel_asks_on_a_terminal(tmp_path: Path, run, sim_env, answer, code) -> None:
    with Simulator([SimFlow(1, run_seconds=60)], accept_unknown_flows=True) as s:
        plan = write_plan(tmp_path, cron_flows(1, 3), gateway=s.url)
        assert run("apply", str(plan), "--yes", "--quiet").code == 0
        controller, terminal = pty.openpty()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "planrunner", "cancel", str(plan)],
                stdin=terminal,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env={**os.environ, **SIM_ENV},
            )
            os.write(controller, f"{answer}\n".encode())
            _out, err = proc.communicate(timeout=60)
        finally:
            os.close(controller)
            os.close(terminal)
        assert proc.returncode == code, err
        assert "f1: 3 to cancel" in err and "Proceed? [y/N]" in err
        assert protocol.origin(s.url) in err
        cancelled = "CANCEL" in statuses(s, 1).values()
        assert cancelled is (answer == "y")


def test_nothing_to_cancel_and_a_locked_ledger(tmp_path: Path, run, sim_env) -> None:
    with Simulator([SimFlow(1, run_seconds=60)], accept_unknown_flows=True) as s:
        plan = write_plan(tmp_path, cron_flows(1, 2), gateway=s.url)
        r = run("cancel", str(plan))  # no ledger yet: nothing to ask about
        assert r.code == 0 and "Nothing to cancel" in r.err
        assert run("apply", str(plan), "--yes", "--quiet").code == 0
        with ledger.Lock(str(tmp_path / "plan.ledger.jsonl"), "other-run") as lock:
            lock.acquire(0)
            r = run("cancel", str(plan), "--yes")
        assert r.code == 3 and "locked" in r.err
        assert "CANCEL" not in statuses(s, 1).values()


def test_unknown_entry_found_running_is_reconciled_and_cancelled(tmp_path: Path, run, sim_env) -> None:
    with Simulator([SimFlow(1, run_seconds=60)], accept_unknown_flows=True) as s:
        plan = write_plan(tmp_path, cron_flows(1, 2), gateway=s.url)
        keys = json.loads(run("plan", str(plan), "--format", "json").out)["entries"]
        # A run sent the first entry and died before recording the answer.
        t = keys[0]["triggerTime"]
        rec = ledger.record("intent", keys[0]["key"], 1, "o1", t, "old.1", flow="f1", run="old")
        rec["gateway"] = protocol.origin(s.url)
        (tmp_path / "plan.ledger.jsonl").write_bytes(ledger.encode([rec]))
        from testing import make_client

        assert make_client(s.url).trigger(1, t).kind.value == "ok"
        r = run("cancel", str(plan), "--yes")
        assert r.code == 0, r.err
        assert statuses(s, 1) == {t: "CANCEL"}
        path = tmp_path / "plan.ledger.jsonl"
        assert [e["attempt"] for e in events(path, "reconciled")] == ["old.1"]
        assert len(events(path, "cancelled")) == 1
        doc = json.loads(run("plan", str(plan), "--format", "json").out)
        assert doc["summary"] == {"pending": 1, "cancelled": 1}
