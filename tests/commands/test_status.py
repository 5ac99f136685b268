"""`planrunner status` against the simulator over loopback, in v2.0 and v2.1."""

from __future__ import annotations

import io
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from planrunner import lookup, protocol
from planrunner.runs.watch import watch_counts
from planrunner.sim import Dialect, SimFlow, Simulator
from planrunner.terminal import Live
from testing import cron_flows, write_plan
from testing.gateway import GMT8, INJECTION, T0, Gateway, Reply, apply, assert_harmless, env
from testing.hostile import SECRET, TOKEN

APIS = ("v2.0", "v2.1")


def sim_states(s: Simulator) -> dict[int, Counter[str]]:
    """Per flowId, the simulator's own instance statuses now."""
    now = time.time()
    out: dict[int, Counter[str]] = {}
    with s.state.lock:
        for inst in s.state.instances.values():
            out.setdefault(inst.flow_id, Counter())[protocol.STATUS_NAMES[inst.status(now)]] += 1
    return out


def sim_failed(s: Simulator) -> set[str]:
    now = time.time()
    with s.state.lock:
        return {
            i.instance_id
            for i in s.state.instances.values()
            if protocol.STATUS_NAMES[i.status(now)] in lookup.FAILED_NAMES
        }


def wait_until(check, seconds: float = 30.0) -> None:
    """Poll the simulator's state until ``check()`` holds (bounded; not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the simulator never reached the expected state"
        time.sleep(0.02)


@pytest.mark.parametrize("api", APIS)
def test_watch_follows_a_200_entry_backfill_to_the_end(tmp_path: Path, run, sim_env, api) -> None:
    flows = [
        SimFlow(1, run_seconds=0.01, fails=0.2),
        SimFlow(2, run_seconds=0.01, timeouts=0.1),
        SimFlow(3, run_seconds=0.02),
        SimFlow(4, run_seconds=0.01, fails=0.1, timeouts=0.1),
    ]
    with Simulator(flows, dialect=Dialect(api=api), accept_unknown_flows=True) as s:
        plan = write_plan(tmp_path, cron_flows(4, 50), gateway=s.url, api=api)
        r = run("apply", str(plan), "--yes", "--quiet")
        assert r.code == 0, r.err
        r = run("status", str(plan), "--watch", "--interval", "0.05", "--format", "json")
        doc = json.loads(r.out)
        truth = sim_states(s)
        failed_ids = sim_failed(s)
    assert doc["final"] is True and doc["error"] is None
    assert sum(doc["summary"].values()) == 200
    for flow in doc["flows"]:
        assert flow["entries"] == 50
        assert flow["counts"] == dict(truth[flow["flowId"]]), flow["flow"]
        assert all(s in lookup.FINAL_NAMES for s in flow["counts"])
    listed = {f["flowInstanceId"] for flow in doc["flows"] for f in flow["failed"]}
    assert listed == failed_ids and failed_ids  # the seeded run has failures
    one = next(f for flow in doc["flows"] for f in flow["failed"])
    assert one["startTime"].endswith("Z") and one["seconds"] is not None
    assert r.code == 1  # some ended FAIL or TIMEOUT


@pytest.mark.parametrize("api", APIS)
def test_running_instances_exit_4_and_text_lists_counts(tmp_path: Path, run, sim_env, api) -> None:
    flows = [SimFlow(1, run_seconds=60), SimFlow(2, tasks=0), SimFlow(3, run_seconds=0)]
    with Simulator(flows, dialect=Dialect(api=api), accept_unknown_flows=True) as s:
        plan = write_plan(tmp_path, cron_flows(3, 4), gateway=s.url, api=api)
        assert run("apply", str(plan), "--yes", "--quiet").code == 1  # flow 2 is refused
        wait_until(lambda: "INIT" not in sim_states(s)[1] and sim_states(s)[3]["SUCCESS"] == 4)
        r = run("status", str(plan))
        assert r.code == 4, r.out + r.err
        assert "flow f1 (flowId 1): 4 entries: " in r.out
        assert "1 RUNNING" in r.out and "3 WAIT" in r.out
        assert "flow f2 (flowId 2): 4 entries: 4 not-triggered" in r.out
        # Selection: only the finished flow -> 0; the selection is shown.
        r = run("status", str(plan), "--flow", "f3", "--format", "json")
        doc = json.loads(r.out)
        assert r.code == 0, r.out
        assert [f["flow"] for f in doc["flows"]] == ["f3"]
        assert doc["selection"] == {"flow": ["f3"], "exclude": []}
        assert doc["summary"] == {"SUCCESS": 4}
        r = run("status", str(plan), "--exclude", "f1", "--format", "markdown")
        assert r.out.startswith(f"<!-- planrunner-status:{plan} -->")
        assert "| f3 | 3 | 4 | 4 | 0 | 0 | 0 | 0 |" in r.out
        assert "| f1 |" not in r.out
        assert run("status", str(plan), "--flow", "nope").code == 2


def test_done_entry_the_service_does_not_have_is_exit_1(tmp_path: Path, run, sim_env) -> None:
    with Simulator(accept_unknown_flows=True) as first:
        plan = write_plan(tmp_path, cron_flows(1, 2), gateway=first.url)
        assert run("apply", str(plan), "--yes", "--quiet").code == 0
    # A fresh service at the same address (records of another gateway would not count).
    with Simulator(port=int(first.url.rsplit(":", 1)[1]), accept_unknown_flows=True) as other:  # it never saw those triggers
        r = run("status", str(plan), "--gateway", other.url, "--format", "json")
    doc = json.loads(r.out)
    assert r.code == 1
    assert doc["summary"] == {"not-found": 2}
    assert all(p["status"] == "not-found" for p in doc["flows"][0]["problems"])


def test_status_reads_without_writing(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 3), gateway=sim.url)
    assert run("apply", str(plan), "--yes", "--quiet").code == 0
    ledger_file = tmp_path / "plan.ledger.jsonl"
    before = ledger_file.read_bytes()
    lock_file = tmp_path / "plan.ledger.jsonl.lock"
    lock_before = lock_file.read_bytes()
    assert run("status", str(plan), "--watch", "--interval", "0.05").code == 0
    assert ledger_file.read_bytes() == before
    assert lock_file.read_bytes() == lock_before  # no lock taken: the holder is still apply


def test_interval_must_be_positive(tmp_path: Path, run) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 1))
    with pytest.raises(SystemExit) as e:
        run("status", str(plan), "--watch", "--interval", "0")
    assert e.value.code == 2


def test_sim_status_shows_the_sim_ledger_without_lookups(tmp_path: Path, run) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 3))
    assert run("apply", str(plan), "--sim", "--yes", "--quiet").code == 0
    r = run("status", str(plan), "--sim", "--format", "json")
    doc = json.loads(r.out)
    assert r.code == 0
    assert doc["ledger"] == str(tmp_path / "plan.sim.ledger.jsonl")
    assert doc["summary"] == {"done": 6}
    # The real ledger has nothing: a real status sees nothing triggered.
    assert not (tmp_path / "plan.ledger.jsonl").exists()
    assert run("status", str(plan), "--sim", "--gateway", "http://127.0.0.1:1").code == 2


def test_live_line_on_a_terminal_fits_and_rewrites() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    live = Live(stream, enabled=True)
    states = [lookup.Seen("SUCCESS")] * 3 + [lookup.Seen("RUNNING"), lookup.Seen("FAIL")]
    ended, watched, counts = watch_counts(states)
    line = live.line(ended, watched, counts, True, 30, 40)
    assert len(line.replace("\x1b[31m", "").replace("\x1b[0m", "")) <= 39
    live.show(ended, watched, counts, True, 30)
    live.close()
    text = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())
    assert text.startswith("\rwatching: 4/5 ended")
    assert text.endswith("\r\x1b[K")
    silent = io.StringIO()
    quiet = Live(silent, enabled=False)
    quiet.show(ended, watched, counts, True, 30)
    assert silent.getvalue() == ""


def test_n16_watch_stops_when_every_lookup_keeps_failing(tmp_path: Path, run, sim_env) -> None:
    # A service whose lookups always fail: --watch gives up after FAILED_POLLS polls in a row
    # with no lookup answered, says so, and exits 1 (lookup-failed), instead of polling forever.
    from planrunner.sim import Faults

    plan = write_plan(tmp_path, cron_flows(1, 3))
    with Simulator(faults=Faults.parse(["lookup-503=1"]), accept_unknown_flows=True) as s:
        assert run("apply", str(plan), "--gateway", s.url, "--yes").code == 0
        r = run("status", str(plan), "--gateway", s.url, "--watch", "--interval", "0.05", "--format", "json")
    assert r.code == 1, r.err
    assert "stopped watching" in r.err
    doc = json.loads(r.out)
    assert doc["flows"][0]["counts"] == {lookup.LOOKUP_FAILED: 3}


def test_n6_hostile_statuses_and_ids_from_get_are_cleaned_in_status(
    tmp_path: Path, run: Any, creds: None
) -> None:
    hostile = INJECTION + TOKEN + SECRET + "Q" * 100_000
    served: list[Gateway] = []

    def on(path: str, q: dict[str, str], b: Any) -> Reply | None:
        if q.get("action") == "search" and served:  # status reads Search first (issue 20)
            lo, hi = b["fromTriggerTime"], b["toTriggerTime"]
            hits = [(f, t) for f, t in served[0].created if lo <= t < hi]
            insts = [
                {"instanceId": protocol.instance_id(f, t), "flowId": f,
                 "triggerTime": protocol.format_time(t, GMT8), "status": hostile}
                for f, t in hits
            ]  # fmt: skip
            return env(0, "OK", {"flowInsts": insts})
        if q.get("action") == "get" and "flowInstId" in q:
            iid = q["flowInstId"]
            fid, _ = iid.split("-", 1)
            tt = T0 if iid.endswith("20260101000000") else T0 + 3_600_000
            return env(
                0,
                "OK",
                {
                    "instanceId": INJECTION + TOKEN,
                    "flowId": int(fid),
                    "triggerTime": protocol.format_time(tt, GMT8),
                    "status": hostile,
                },
            )
        return None

    with Gateway(on) as gw:
        served.append(gw)
        r, led = apply(run, tmp_path, gw.url)
        plan = tmp_path / "plan.yaml"
        outs = [
            run("status", str(plan), "--gateway", gw.url, "--ledger", str(led), "--format", fmt)
            for fmt in ("text", "markdown", "json")
        ]
    assert r.code == 0
    for o in outs:
        assert "STATUS_" in o.out  # shown, cleaned and cut
        assert_harmless(o.out, o.err)
