"""Saved plans (`plan --out SAVED`, `apply SAVED`) and several plans per `plan` run."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from planrunner import saved
from testing import cron_flows, write_plan

NOW = "2026-01-01T01:00:00Z"
OPEN_ENDED = '  - {name: hourly, flowId: 5, cron: "0 * * * *", from: 2026-01-01, to: now}\n'


def save(run, plan: Path, out: Path, *extra: str):
    return run("plan", str(plan), "--out", str(out), "--format", "markdown", *extra)


def test_saved_plan_records_what_was_reviewed(tmp_path: Path, run, monkeypatch) -> None:
    monkeypatch.setenv("GW", "https://gw.internal.example.com")
    plan = write_plan(tmp_path, cron_flows(2, 3), gateway="${GW}")
    out = tmp_path / "x.json"
    r = save(run, plan, out, "--now", NOW, "--flow", "f1")
    assert r.code == 0, r.err
    doc = json.loads(out.read_text())
    assert doc["kind"] == "planrunner-saved-plan" and doc["formatVersion"] == 1
    assert doc["plan"] == str(plan)
    assert doc["sha256"] == hashlib.sha256(plan.read_bytes()).hexdigest()
    assert doc["now"] == 1767229200000
    # The gateway stays as written; the rest is expanded.
    assert doc["target"] == {"gateway": "${GW}", "orgId": "o1", "userId": "u1", "api": "v2.0"}
    assert doc["selection"] == {"flow": ["f1"], "exclude": []}
    assert [e["key"] for e in doc["entries"]] == [
        "o1/1/1767225600000",
        "o1/1/1767225900000",
        "o1/1/1767226200000",
    ]
    assert {e["status"] for e in doc["entries"]} == {"pending"}
    # The markdown shows the digest of the saved file, after the marker.
    lines = r.out.splitlines()
    assert lines[0] == f"<!-- planrunner:{plan} -->"
    assert hashlib.sha256(out.read_bytes()).hexdigest() in r.out


def test_apply_saved_sends_exactly_the_saved_entries(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, OPEN_ENDED, gateway=sim.url)
    out = tmp_path / "reviewed.yaml"  # recognised by content, whatever its name
    assert save(run, plan, out, "--now", NOW).code == 0
    saved = json.loads(out.read_text())
    assert len(saved["entries"]) == 2  # 00:00 and 01:00; `to: now` pinned
    r = run("apply", str(out), "--gateway", sim.url, "--yes", "--format", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["now"] == saved["now"]
    assert doc["summary"] == {"triggered": 2}
    sent = sorted(t["triggerTime"] for t in sim.triggers())
    assert sent == [e["triggerTime"] for e in saved["entries"]]
    again = run("apply", str(out), "--gateway", sim.url, "--yes", "--format", "json")
    assert json.loads(again.out)["summary"] == {"skipped": 2}
    assert len(sim.triggers()) == 2


def test_apply_saved_skips_what_was_done_at_plan_time(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2), gateway=sim.url)
    assert run("apply", str(plan), "--gateway", sim.url, "--yes", "--flow", "f1").code == 0
    plan.write_text(plan.read_text().replace("count: 2", "count: 3"))
    out = tmp_path / "s.json"
    assert save(run, plan, out).code == 0
    statuses = [e["status"] for e in json.loads(out.read_text())["entries"]]
    assert statuses == ["done", "done", "pending"]
    r = run("apply", str(out), "--gateway", sim.url, "--yes", "--format", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["summary"] == {"triggered": 1}
    assert len(sim.triggers()) == 3


def test_stale_saved_plan_is_refused_and_nothing_sent(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2), gateway=sim.url)
    out = tmp_path / "s.json"
    assert save(run, plan, out).code == 0
    plan.write_text(plan.read_text() + "# a comment changes the bytes\n")
    r = run("apply", str(out), "--gateway", sim.url, "--yes")
    assert r.code == 2
    assert f"saved plan is stale: {plan} changed since it was saved" in r.err
    assert sim.triggers() == []


def test_saved_plan_fixes_now_and_selection(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, cron_flows(2, 2), gateway=sim.url)
    out = tmp_path / "s.json"
    assert save(run, plan, out, "--exclude", "f2").code == 0
    for extra in (["--now", NOW], ["--flow", "f2"], ["--max-triggers", "5"]):
        r = run("apply", str(out), "--gateway", sim.url, "--yes", *extra)
        assert r.code == 2 and "saved plan, which fixes these" in r.err
    r = run("apply", str(out), "--gateway", sim.url, "--yes", "--format", "json")
    assert r.code == 0
    assert {t["flowId"] for t in sim.triggers()} == {1}


def test_saved_plan_for_another_user_is_refused(tmp_path: Path, run, sim, monkeypatch) -> None:
    monkeypatch.setenv("ENOS_ACCESS_KEY", "sim-access-key")
    monkeypatch.setenv("ENOS_SECRET_KEY", "sim-secret-key")
    monkeypatch.setenv("WHO", "u1")
    plan = write_plan(tmp_path, cron_flows(1, 1), gateway=sim.url)
    plan.write_text(plan.read_text().replace("userId: u1", "userId: ${WHO}"))
    out = tmp_path / "s.json"
    assert save(run, plan, out).code == 0
    monkeypatch.setenv("WHO", "u2")
    r = run("apply", str(out), "--gateway", sim.url, "--yes")
    assert r.code == 2 and "target.userId 'u1', but it is now 'u2'" in r.err
    assert sim.triggers() == []


def test_a_yaml_plan_named_json_is_still_a_plan(tmp_path: Path, run) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 1), name="plan.json")
    r = run("apply", str(plan), "--yes", "--sim", "--format", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["summary"] == {"triggered": 1}


def test_out_takes_one_plan(tmp_path: Path, run) -> None:
    a = write_plan(tmp_path, cron_flows(1, 1), name="a.yaml")
    b = write_plan(tmp_path, cron_flows(1, 1), name="b.yaml")
    r = run("plan", str(a), str(b), "--out", str(tmp_path / "s.json"))
    assert r.code == 2 and "--out saves one plan" in r.err
    assert not (tmp_path / "s.json").exists()


def test_several_plans_one_section_each(tmp_path: Path, run) -> None:
    a = write_plan(tmp_path, cron_flows(1, 2), name="a.yaml")
    b = write_plan(tmp_path, cron_flows(2, 1), name="b.yaml")
    text = run("plan", str(a), str(b))
    assert text.code == 0
    assert f"Plan {a}" in text.out and f"Plan {b}" in text.out
    assert text.out.count("Plan: ") == 2
    md = run("plan", str(a), str(b), "--format", "markdown").out
    assert md.startswith(f"<!-- planrunner:{a} -->\n")
    assert f"\n<!-- planrunner:{b} -->\n" in md
    doc = json.loads(run("plan", str(a), str(b), "--format", "json").out)
    assert doc["formatVersion"] == 1
    assert [(p["plan"], len(p["entries"])) for p in doc["plans"]] == [(str(a), 2), (str(b), 2)]
    one = json.loads(run("plan", str(a), "--format", "json").out)
    assert one["plan"] == str(a) and "plans" not in one  # one plan keeps its shape
    assert run("plan", str(a), str(b), "--detailed-exitcode").code == 4


def test_several_plans_one_invalid_prints_only_problems(tmp_path: Path, run) -> None:
    a = write_plan(tmp_path, cron_flows(1, 1), name="a.yaml")
    b = tmp_path / "b.yaml"
    b.write_text("version: 2\n")
    r = run("plan", str(a), str(b))
    assert r.code == 2
    assert r.out == ""
    assert f"{b}:1:1: error:" in r.err


def test_n9_out_never_writes_over_the_plan_or_the_ledger_nor_through_a_symlink(tmp_path: Path, run) -> None:
    import os

    plan = write_plan(tmp_path, cron_flows(1, 2))
    plan_bytes = plan.read_bytes()
    led = tmp_path / "a.ledger.jsonl"
    led.write_bytes(b"")
    hard = tmp_path / "hard.jsonl"
    os.link(led, hard)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    sym = tmp_path / "sym.json"
    sym.symlink_to(victim)
    cases = [
        (plan, [], "is the plan itself"),
        (led, ["--ledger", str(led)], "is the ledger itself"),
        (hard, ["--ledger", str(led)], "is the ledger itself"),  # the same inode
        (tmp_path / "new.ledger.jsonl", ["--ledger", str(tmp_path / "new.ledger.jsonl")], "is the ledger itself"),
        (sym, [], "is a symbolic link; refusing to write through it"),
    ]
    for out, extra, why in cases:
        r = save(run, plan, out, *extra)
        assert r.code == 2 and f"--out {out}: {why}" in r.err, r.err
    assert plan.read_bytes() == plan_bytes and led.read_bytes() == b"" and victim.read_text() == "keep me\n"
    assert not (tmp_path / "new.ledger.jsonl").exists()
    good = tmp_path / "saved.json"
    good.write_text("old")
    assert save(run, plan, good).code == 0
    assert json.loads(good.read_text())["kind"] == "planrunner-saved-plan"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


# --- issue 22: business dates, parameters and the pacing keys are part of what is reviewed ---

DATES_FLOW = (
    "  - name: sales\n    flowId: 3377\n    dates: {from: 2026-01-01, to: 2026-01-03}\n"
    '    time: "02:00"\n    rerunFailed: 1\n    maxUnfinished: 2\n'
    '    parameters: {out: "s3://sales/{calDt}/", overwrite: "true"}\n'
)


def test_i22_saved_plan_records_business_dates_parameters_and_pacing(tmp_path: Path, run) -> None:
    plan = write_plan(tmp_path, DATES_FLOW, server_zone="GMT+8")
    out = tmp_path / "s.json"
    assert save(run, plan, out, "--now", NOW).code == 0
    doc = json.loads(out.read_text())
    assert doc["target"]["serverTimezone"] == "GMT+8"
    assert doc["flows"] == [
        {
            "name": "sales",
            "flowId": 3377,
            "dates": {"window": ["2026-01-01", "2026-01-03"], "timeMs": 7_200_000},
            "parameters": {"out": "s3://sales/{calDt}/", "overwrite": "true"},
            "maxUnfinished": 2,
            "haltOnFailure": False,
            "rerunFailed": 1,
        }
    ]
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert [e["calDt"] for e in doc["entries"]] == days
    assert [e["parameters"] for e in doc["entries"]] == [
        {"out": f"s3://sales/{d}/", "overwrite": "true"} for d in days
    ]
    back = saved.read_if_saved(str(out))
    assert back is not None and back.parameters is not None
    assert sorted(v["out"] for v in back.parameters.values() if v) == [f"s3://sales/{d}/" for d in days]


def test_i22_saved_plan_digest_changes_when_parameters_change(tmp_path: Path, run, sim, sim_env) -> None:
    plan = write_plan(tmp_path, DATES_FLOW, server_zone="GMT+8", gateway=sim.url)
    digests = []
    for name in ("a.json", "b.json"):
        assert save(run, plan, tmp_path / name, "--now", NOW).code == 0
        digests.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    assert digests[0] == digests[1]  # the same plan saves to the same bytes
    plan.write_text(plan.read_text().replace('overwrite: "true"', 'overwrite: "false"'))
    r = save(run, plan, tmp_path / "c.json", "--now", NOW)
    changed = hashlib.sha256((tmp_path / "c.json").read_bytes()).hexdigest()
    assert changed != digests[0] and changed in r.out  # markdown shows the new digest
    assert '"overwrite": "false"' in (tmp_path / "c.json").read_text()
    stale = run("apply", str(tmp_path / "a.json"), "--gateway", sim.url, "--yes")
    assert stale.code == 2 and "saved plan is stale" in stale.err
    assert sim.triggers() == []


def test_i22_saved_plan_refuses_a_plan_whose_flow_keys_differ(tmp_path: Path, run) -> None:
    from planrunner import checking
    from planrunner.errors import UsageError

    plan = write_plan(tmp_path, DATES_FLOW, server_zone="GMT+8")
    out = tmp_path / "s.json"
    assert save(run, plan, out, "--now", NOW).code == 0
    back = saved.read_if_saved(str(out))
    assert back is not None
    back.check_target(checking.read_plan(str(plan)))  # unchanged: accepted
    for old, new in (("rerunFailed: 1", "rerunFailed: 2"), ("{calDt}/", "{date}/"), ("to: 2026-01-03", "to: 2026-01-04")):
        other = write_plan(tmp_path, DATES_FLOW.replace(old, new), server_zone="GMT+8", name="other.yaml")
        with pytest.raises(UsageError, match=re.escape("saved plan is stale: flow sales's dates, parameters or pacing keys changed")):
            back.check_target(checking.read_plan(str(other)))
    other = write_plan(tmp_path, DATES_FLOW, server_zone="UTC", name="utc.yaml")
    with pytest.raises(UsageError, match=re.escape("saved plan is stale: target.serverTimezone was 'GMT+8'")):
        back.check_target(checking.read_plan(str(other)))
