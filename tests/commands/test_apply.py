"""`planrunner apply` against the simulator over loopback, with real ledger files."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from planrunner import ledger
from planrunner.sim import Faults, SimFlow, Simulator
from testing import (
    FAST_ENV,
    ROOT,
    SIM_ENV,
    apply_json,
    assert_exactly_once,
    crashed_intent,
    cron_flows,
    run_in_pty,
    run_process,
    start_apply,
    write_plan,
)
from testing.terminal import ANSI, in_pty, interrupt_once_sent


def entry_keys(plan_json: str) -> set[tuple[int, int]]:
    return {(e["flowId"], e["triggerTime"]) for e in json.loads(plan_json)["entries"]}


def test_apply_then_reapply_sends_nothing(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(3, 10))
    r, doc = apply_json(run, plan, sim.url)
    assert r.code == 0, r.err
    assert doc["summary"] == {"triggered": 30}
    assert {e["status"] for e in doc["entries"]} == {"triggered"}
    assert all(e["flowInstanceId"] for e in doc["entries"])
    first = sim.triggers()
    assert len(first) == 30
    r, doc = apply_json(run, plan, sim.url)
    assert r.code == 0
    assert doc["summary"] == {"skipped": 30}
    assert len(sim.triggers()) == 30
    assert_exactly_once(sim.triggers(), {(e["flowId"], e["triggerTime"]) for e in doc["entries"]})


def test_ledger_records_follow_the_format(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    apply_json(run, plan, sim.url)
    records = [json.loads(x) for x in (tmp_path / "plan.ledger.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records].count("intent") == 2
    assert [r["event"] for r in records].count("triggered") == 2
    for r in records:
        assert r["v"] == 1 and r["key"] == f"{r['orgId']}/{r['flowId']}/{r['triggerTime']}"
        assert r["at"].endswith("Z") and r["attempt"]
    intents = {r["attempt"]: r for r in records if r["event"] == "intent"}
    for r in records:
        if r["event"] == "triggered":
            assert r["attempt"] in intents and r["flowInstanceId"]
    assert all(r["flow"] == "f1" and r["run"] for r in intents.values())
    # Each intent comes before its result in the file.
    order = [(r["event"], r["attempt"]) for r in records]
    for attempt in intents:
        assert order.index(("intent", attempt)) < order.index(("triggered", attempt))


def test_per_flow_order_is_ascending(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(4, 15))
    apply_json(run, plan, sim.url, "--concurrency", "3")
    by_flow: dict[int, list[int]] = {}
    for t in sim.triggers():
        by_flow.setdefault(t["flowId"], []).append(t["triggerTime"])
    assert len(by_flow) == 4
    assert all(times == sorted(times) for times in by_flow.values())


def test_plan_reads_the_ledger(tmp_path: Path, run, sim_env) -> None:
    flows = [SimFlow(2, users=("someone-else",))]  # Get Flow shows it; a trigger gets 62103
    with Simulator(flows, accept_unknown_flows=True) as s:
        plan = write_plan(tmp_path, cron_flows(2, 3))
        r, doc = apply_json(run, plan, s.url)
        assert r.code == 1
        # A permanent refusal: that entry failed, the rest of its flow was not sent.
        assert doc["summary"] == {"pending": 2, "triggered": 3, "failed": 1}
        failed = [e for e in doc["entries"] if e["status"] == "failed"]
        assert all(e["error"].startswith("62103:") for e in failed)
        held = [e for e in doc["entries"] if e["status"] == "pending"]
        assert all(e["error"].startswith("flow refused: 62103") for e in held)
        assert [t["flowId"] for t in s.triggers()].count(2) == 1
    r = run("plan", str(plan), "--format", "json", "--detailed-exitcode")
    assert r.code == 4
    summary = json.loads(r.out)["summary"]
    assert summary == {"pending": 2, "retry": 1, "done": 3}
    assert "62103" in run("plan", str(plan)).out
    # Add one more entry: it is pending.
    plan.write_text(plan.read_text().replace("count: 3}", "count: 4}", 1))
    assert json.loads(run("plan", str(plan), "--format", "json").out)["summary"] == {
        "pending": 3,
        "retry": 1,
        "done": 3,
    }


def test_unknown_outcomes_are_reconciled_not_resent(tmp_path: Path, run, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 6))
    with Simulator(
        faults=Faults.parse(["504-after-create@2,5", "drop-after-create@3", "malformed@7"]), accept_unknown_flows=True
    ) as s:
        r, doc = apply_json(run, plan, s.url)
        assert r.code == 0, r.err
        # Found by the lookup after an unknown outcome: reconciled, not triggered.
        assert doc["summary"] == {"triggered": 8, "reconciled": 4}
        assert_exactly_once(s.triggers(), entry_keys(r.out))
        assert len(s.triggers()) == 12
    events = [
        json.loads(x)["event"] for x in (tmp_path / "plan.ledger.jsonl").read_text().splitlines()
    ]
    assert events.count("unknown") == 4
    assert events.count("reconciled") == 4


def test_crash_left_intent_is_reconciled_first(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 3))
    keys = sorted(entry_keys(run("plan", str(plan), "--format", "json").out))
    # A previous run sent the first entry and died before recording the answer...
    crashed_intent(tmp_path / "plan.ledger.jsonl", keys[0][1], "old.1")
    from testing import make_client

    assert make_client(sim.url).trigger(1, keys[0][1]).kind.value == "ok"
    # ...and another sent nothing for the second entry before dying.
    crashed_intent(tmp_path / "plan.ledger.jsonl", keys[1][1], "old.2")
    assert json.loads(run("plan", str(plan), "--format", "json").out)["summary"] == {
        "pending": 1,
        "unknown": 2,
    }
    r, doc = apply_json(run, plan, sim.url)
    assert r.code == 0, r.err
    assert {e["triggerTime"]: e["status"] for e in doc["entries"]} == {
        keys[0][1]: "reconciled",
        keys[1][1]: "triggered",
        keys[2][1]: "triggered",
    }
    assert_exactly_once(sim.triggers(), set(keys))


def test_unknown_stays_unknown_when_lookups_fail(tmp_path: Path, run, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    keys = sorted(entry_keys(run("plan", str(plan), "--format", "json").out))
    crashed_intent(tmp_path / "plan.ledger.jsonl", keys[0][1], "old.1")
    with Simulator(faults=Faults.parse(["lookup-503=1"]), accept_unknown_flows=True) as s:
        r, doc = apply_json(run, plan, s.url)
        assert r.code == 1
        assert doc["summary"] == {"triggered": 1, "unknown": 1}
        assert [t["triggerTime"] for t in s.triggers()] == [keys[1][1]]
        # --retry-unknown sends it anyway.
        r, doc = apply_json(run, plan, s.url, "--retry-unknown")
        assert r.code == 0, r.err
        assert doc["summary"] == {"triggered": 1, "skipped": 1}
        assert_exactly_once(s.triggers(), set(keys))


@pytest.mark.parametrize(
    "fault",
    [
        "62109=0.3",
        "503=0.3",
        "504-after-create=0.3",
        "drop-after-create=0.3",
        "malformed=0.2",
        "429",
    ],
)
def test_each_fault_ends_with_every_entry_done_exactly_once(
    tmp_path: Path, run, sim_env, fault: str
) -> None:
    plan = write_plan(tmp_path, cron_flows(4, 10))
    keys = entry_keys(run("plan", str(plan), "--format", "json").out)
    faults = Faults() if fault == "429" else Faults.parse([fault], seed=7)
    with Simulator(faults=faults, rate_limit=40 if fault == "429" else None, accept_unknown_flows=True) as s:
        for _ in range(4):
            r, doc = apply_json(run, plan, s.url)
            if r.code == 0:
                break
        assert r.code == 0, r.err
        assert set(doc["summary"]) <= {"triggered", "reconciled", "skipped"}
        assert_exactly_once(s.triggers(), keys)
        statuses = {t["status"] for t in s.triggers()}
        expected = {
            "62109=0.3": 62109,
            "503=0.3": 503,
            "504-after-create=0.3": 504,
            "drop-after-create=0.3": -1,
            "malformed=0.2": 200,
        }
        if fault in expected:
            assert expected[fault] in statuses  # the fault really happened
    assert json.loads(run("plan", str(plan), "--format", "json").out)["summary"] == {"done": 40}


def test_gateway_rate_limit_is_honoured(tmp_path: Path, run, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 10))
    with Simulator(rate_limit=1000, accept_unknown_flows=True) as s:
        started = time.monotonic()
        r, _doc = apply_json(run, plan, s.url, "--rate", "40")
        assert r.code == 0
        assert time.monotonic() - started >= 19 / 40
        assert len(s.triggers()) == 20


def test_auth_failure_stops_the_run_and_never_shows_the_secret(
    tmp_path: Path, run, sim, monkeypatch
) -> None:
    monkeypatch.setenv("ENOS_ACCESS_KEY", "sim-access-key")
    monkeypatch.setenv("ENOS_SECRET_KEY", "wrong-secret-XYZZY")
    plan = write_plan(tmp_path, cron_flows(1, 3))
    r = run("apply", str(plan), "--gateway", sim.url, "--yes")
    assert r.code == 1
    assert "cannot get an access token" in r.err and "1003" in r.err
    assert "XYZZY" not in r.out + r.err
    assert sim.triggers() == []


def test_missing_credentials_is_a_usage_error(tmp_path: Path, run, sim, monkeypatch) -> None:
    monkeypatch.delenv("ENOS_ACCESS_KEY", raising=False)
    monkeypatch.delenv("ENOS_SECRET_KEY", raising=False)
    plan = write_plan(tmp_path, cron_flows(1, 1))
    r = run("apply", str(plan), "--gateway", sim.url, "--yes")
    assert r.code == 2
    assert "ENOS_ACCESS_KEY and ENOS_SECRET_KEY not set" in r.err


def test_non_loopback_http_gateway_is_refused_before_sending(tmp_path: Path, run, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 1))
    r = run("apply", str(plan), "--gateway", "http://apigw.example.com", "--yes")
    assert r.code == 2
    assert "only to a loopback address" in r.err
    assert not (tmp_path / "plan.ledger.jsonl").exists()


def test_without_yes_and_without_a_terminal_apply_refuses(tmp_path: Path, sim) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 1))
    p = run_process(
        ["apply", str(plan), "--gateway", sim.url], env=SIM_ENV, stdin=subprocess.DEVNULL
    )
    assert p.returncode == 2
    assert "refusing to apply without --yes" in p.stderr
    assert sim.triggers() == []


@pytest.mark.parametrize(("answer", "code", "sent"), [("n", 1, 0), ("y", 0, 2)])
def test_confirmation_on_a_terminal(tmp_path: Path, sim, answer: str, code: int, sent: int) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    controller, terminal = pty.openpty()
    try:
        proc = start_apply(plan, sim.url, yes=False, stdin=terminal)
        os.write(controller, f"{answer}\n".encode())
        _out, err = proc.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    assert proc.returncode == code, err
    assert "Proceed? [y/N]" in err
    assert len(sim.triggers()) == sent


def test_sim_demo_runs_twice_and_triggers_once(tmp_path: Path, run) -> None:
    plan = tmp_path / "demo.yaml"
    plan.write_text((ROOT / "plans" / "example.yaml").read_text())
    r = run("apply", str(plan), "--sim", "--yes", "--format", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["ledger"] == str(tmp_path / "demo.sim.ledger.jsonl")
    assert doc["summary"] == {"triggered": 82}
    r = run("apply", str(plan), "--sim", "--yes", "--format", "json")
    assert json.loads(r.out)["summary"] == {"skipped": 82}
    # The demo never touches the real ledger.
    assert not (tmp_path / "demo.ledger.jsonl").exists()


def test_corrupt_ledger_is_exit_3_with_the_line(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    apply_json(run, plan, sim.url)
    path = tmp_path / "plan.ledger.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b"garbage\n" + b"".join(lines[1:]))
    for cmd in (["plan", str(plan)], ["apply", str(plan), "--gateway", sim.url, "--yes"]):
        r = run(*cmd)
        assert r.code == 3
        assert f"{path}:2: corrupt ledger line" in r.err
    assert len(sim.triggers()) == 2


def test_torn_tail_is_cut_by_apply_and_ignored_by_plan(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 3))
    apply_json(run, plan, sim.url)
    path = tmp_path / "plan.ledger.jsonl"
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"v":1,"event":"intent","key":"o1/1/17')
    r = run("plan", str(plan), "--format", "json")
    assert r.code == 0 and json.loads(r.out)["summary"] == {"done": 3}
    assert "incomplete last line" in r.err
    assert path.read_bytes() != whole  # plan never writes
    r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--format", "json")
    assert r.code == 0
    assert "cut off an incomplete last ledger line" in r.err
    assert path.read_bytes() == whole


def test_two_applies_at_once_one_exits_3(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, cron_flows(4, 20))
    # 0.25 s per request: the first apply holds the lock for seconds, so on a loaded machine
    # the second, started at once, still finds it held (0.01 s let one finish first).
    with Simulator(faults=Faults(latency=0.25), accept_unknown_flows=True) as s:
        procs = [start_apply(plan, s.url) for _ in range(2)]
        results = [(p.communicate(timeout=120), p.returncode) for p in procs]
        codes = sorted(code for _, code in results)
        assert codes == [0, 3], results
        loser = next(err for (_, err), code in results if code == 3)
        assert "is locked by another apply (pid " in loser
        keys = {(t["flowId"], t["triggerTime"]) for t in s.triggers()}
        assert len(keys) == 80
        assert_exactly_once(s.triggers(), keys)
        # With a lock timeout, a second apply waits its turn, then has nothing to send.
        procs = [start_apply(plan, s.url, "--lock-timeout", "60") for _ in range(2)]
        for p in procs:
            p.communicate(timeout=120)
        assert [p.returncode for p in procs] == [0, 0]
        assert len(s.triggers()) == 80


def test_ctrl_c_finishes_in_flight_and_exits_130(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, cron_flows(4, 50))
    with Simulator(faults=Faults(latency=0.02), accept_unknown_flows=True) as s:
        proc = start_apply(plan, s.url, "--format", "json")
        deadline = time.monotonic() + 30
        while len(s.triggers()) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(2)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        summary = json.loads(out)["summary"]
        assert summary.get("pending", 0) > 0 and summary.get("triggered", 0) >= 20
        assert "unknown" not in summary
        sent = len(s.triggers())
        # Everything sent was recorded: nothing is unknown in the ledger.
        folded = ledger.fold(str(tmp_path / "plan.ledger.jsonl"))
        assert not any(st.status == "unknown" for st in folded.open.values())
        assert len(folded.done) == sent
        p = run_process(["apply", str(plan), "--gateway", s.url, "--yes"], env=SIM_ENV)
        assert p.returncode == 0, p.stderr
        keys = {(t["flowId"], t["triggerTime"]) for t in s.triggers()}
        assert len(keys) == 200
        assert_exactly_once(s.triggers(), keys)


def test_progress_bar_is_drawn_on_a_terminal(tmp_path: Path, sim) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 10))
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "planrunner", "apply", str(plan), "--gateway", sim.url, "--yes"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
            cwd=ROOT,
            env={**os.environ, **SIM_ENV},
        )
        os.close(terminal)
        terminal = -1
        chunks = []
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.communicate(timeout=60)
    finally:
        os.close(controller)
        if terminal != -1:
            os.close(terminal)
    err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "[##############################] 20/20" in err
    assert "triggered 20" in err


def test_second_ctrl_c_exits_at_once_and_reapply_is_exactly_once(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 100))
    with Simulator(faults=Faults(latency=0.05), accept_unknown_flows=True) as s:
        proc = start_apply(plan, s.url, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while len(s.state.triggers) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(2)
        time.sleep(0.005)
        proc.send_signal(2)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 130, err
        p = run_process(["apply", str(plan), "--gateway", s.url, "--yes"], env=SIM_ENV)
        assert p.returncode == 0, p.stderr
        keys = {(t["flowId"], t["triggerTime"]) for t in s.triggers()}
        assert len(keys) == 200
        assert_exactly_once(s.triggers(), keys)


def test_secrets_never_reach_output_logs_or_ledger(tmp_path: Path, run, monkeypatch) -> None:
    key, secret = "ak-4c1e9f-visible-nowhere", "sk-77d2b0-never-shown"
    monkeypatch.setenv("ENOS_ACCESS_KEY", key)
    monkeypatch.setenv("ENOS_SECRET_KEY", secret)
    for name, value in FAST_ENV.items():  # the 504's in-flight wait in a second, not 45
        monkeypatch.setenv(name, value)
    plan = write_plan(tmp_path, cron_flows(2, 3))
    with Simulator(
        access_key=key, secret_key=secret, faults=Faults.parse(["http-401@2", "504-after-create@3"]), accept_unknown_flows=True
    ) as s:
        r = run("apply", str(plan), "--gateway", s.url, "--yes", "-v", "--log-format", "json")
        assert r.code == 0, r.err
        r2 = run("plan", str(plan), "--format", "json", "-v")
    blob = r.out + r.err + r2.out + r2.err + (tmp_path / "plan.ledger.jsonl").read_text()
    assert key not in blob
    assert secret not in blob


def test_finding_28_gateway_with_sim_is_refused(tmp_path: Path, run: Any) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 1))
    r = run("apply", str(plan), "--sim", "--gateway", "http://127.0.0.1:1", "--yes")
    assert r.code == 2
    assert "--gateway cannot be combined with --sim" in r.err


# --- 29: nothing to do needs no confirmation --------------------------------------------------


def test_finding_29_nothing_to_do_exits_0_without_asking(tmp_path: Path, run: Any, sim_env: None) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    with Simulator(accept_unknown_flows=True) as sim:
        assert apply_json(run, plan, sim.url)[0].code == 0
        # No --yes and no terminal: still fine, since nothing is to be sent.
        p = run_process(["apply", str(plan), "--gateway", sim.url], env={**SIM_ENV, **FAST_ENV})
    assert p.returncode == 0, p.stderr
    assert "nothing to do" in p.stderr


def test_finding_22_a_stopped_apply_still_prints_its_json_with_the_error(tmp_path: Path, run: Any, sim_env: None) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 3))
    with Simulator(faults=Faults(rates={"http-401": 1.0}), accept_unknown_flows=True) as sim:
        r, doc = apply_json(run, plan, sim.url)
    assert r.code == 1
    assert doc["formatVersion"] == 1
    assert doc["error"] and "stopping" in doc["error"]


def test_finding_46_quiet_prints_the_summary_only(tmp_path: Path, run: Any, sim_env: None) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 3))
    with Simulator(accept_unknown_flows=True) as sim:
        r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--quiet")
    assert r.code == 0, r.err
    assert r.out.strip() == "Apply: 6 entries (6 triggered)."


def test_finding_3_the_continue_hint_repeats_where_and_what_is_sent_shell_quoted(
    tmp_path: Path,
) -> None:
    import shlex

    plan = write_plan(tmp_path, cron_flows(3, 40))
    ledger_path = tmp_path / "my ledger.jsonl"  # a space: the hint must quote it
    with Simulator(faults=Faults(latency=0.02), accept_unknown_flows=True) as sim:
        argv = [
            "apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", str(ledger_path),
            "--max-triggers", "500", "--flow", "f[12]", "--exclude", "f2",
        ]
        code, screen = in_pty(argv, interrupt_once_sent(sim, 5), stdin_tty=False)
    assert code == 130, screen
    last = [line for line in ANSI.sub("", screen).splitlines() if line.strip()][-1]
    assert "Run the same command again to continue: " in last, last
    again = shlex.split(last.split("continue: ", 1)[1])
    assert again[:3] == ["planrunner", "apply", str(plan)]
    pairs = {(again[i], again[i + 1]) for i in range(3, len(again) - 1)}
    for pair in [
        ("--gateway", sim.url),
        ("--ledger", str(ledger_path)),
        ("--max-triggers", "500"),
        ("--flow", "f[12]"),
        ("--exclude", "f2"),
    ]:
        assert pair in pairs, (pair, last)


def test_finding_3_a_sim_run_says_sim_again(tmp_path: Path) -> None:
    from planrunner.cli import build_parser
    from planrunner.commands.apply import again_command

    args = build_parser("apply").parse_args(["apply", "p q.yaml", "--sim", "--now", "2026-01-01"])
    assert again_command(args) == "planrunner apply 'p q.yaml' --sim --now 2026-01-01"


def test_finding_35_the_confirmation_shows_the_plan_per_flow_before_asking(tmp_path: Path) -> None:
    flows = cron_flows(2, 3) + '  - {name: off, flowId: 9, cron: "0 * * * *", from: 2026-01-01, count: 2, enabled: false}\n'
    plan = write_plan(tmp_path, flows)
    with Simulator(accept_unknown_flows=True) as sim:
        code, _out, screen = run_in_pty(["apply", str(plan), "--gateway", sim.url], answer="n")
        assert sim.triggers() == []
    assert code == 1, screen
    asked = ANSI.sub("", screen).split("Proceed? [y/N]")[0]
    for name, flow_id in (("f1", 1), ("f2", 2)):
        assert f"flow {name} (flowId {flow_id}, UTC): 3 entries" in asked, asked
    assert 'cron "*/5 * * * *" from 2026-01-01T00:00:00+00:00 count 3' in asked
    assert "flow off (flowId 9, UTC): disabled" in asked
    assert "2026-01-01T00:10:00+00:00" in asked  # each entry to be sent, with its status
    assert "Plan: 6 entries (6 pending); 1 flow disabled." in asked


# --- 38: several plans, stdin, -y, a time window ------------------------------------------------


def test_finding_38_apply_takes_several_plans_with_a_combined_report(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    a = write_plan(tmp_path, cron_flows(1, 2), name="a.yaml")
    b = write_plan(tmp_path, cron_flows(1, 3, first_id=5), name="b.yaml")
    with Simulator(accept_unknown_flows=True) as sim:
        r = run("apply", str(a), str(b), "--gateway", sim.url, "-y")
        assert r.code == 0, r.err
        assert len(sim.triggers()) == 5
        assert f"Apply {a}" in r.out and f"Apply {b}" in r.out
        assert r.out.rstrip().endswith("Apply: 2 of 2 plans, 5 entries (5 triggered).")
        r = run("apply", str(a), str(b), "--gateway", sim.url, "--yes", "--format", "json")
        doc = json.loads(r.out)
    assert r.code == 0, r.err
    assert [p["plan"] for p in doc["plans"]] == [str(a), str(b)]
    assert doc["formatVersion"] == 1 and doc["error"] is None
    assert [p["summary"] for p in doc["plans"]] == [{"skipped": 2}, {"skipped": 3}]
    # Each plan keeps its own ledger.
    assert (tmp_path / "a.ledger.jsonl").exists() and (tmp_path / "b.ledger.jsonl").exists()


def test_finding_38_a_bad_plan_among_several_stops_there_and_json_says_so(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    a = write_plan(tmp_path, cron_flows(1, 2), name="a.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nflows: 3\n")
    with Simulator(accept_unknown_flows=True) as sim:
        r = run("apply", str(a), str(bad), "--gateway", sim.url, "--yes", "--format", "json")
        doc = json.loads(r.out)
    assert r.code == 2
    assert [p["summary"] for p in doc["plans"]] == [{"triggered": 2}]
    assert "bad.yaml" in doc["error"]
    assert r.out.count("formatVersion") == 2  # one object (its plan has its own): no second error object


def test_finding_25_a_declined_confirmation_still_prints_its_json(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    with Simulator(accept_unknown_flows=True) as sim:
        code, out, screen = run_in_pty(
            ["apply", str(plan), "--gateway", sim.url, "--format", "json"], answer="n"
        )
        assert sim.triggers() == []
    assert code == 1, screen
    doc = json.loads(out)
    assert doc == {
        "formatVersion": 1,
        "error": "the confirmation was declined; nothing was sent",
        "exitCode": 1,
    }
