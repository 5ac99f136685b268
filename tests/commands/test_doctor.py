"""`planrunner doctor` against the simulator: every check reports what it found, per dialect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from planrunner.errors import ServiceError
from planrunner.sim import Dialect, SimFlow, Simulator
from testing import write_plan
from testing.gateway import DEEP, INJECTION, Gateway, Reply, assert_harmless, client, env
from testing.hostile import SECRET


def doctor(run: Any, url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    r = run("doctor", "--gateway", url, "--org", "o1", "--user", "u1", "--format", "json", *extra)
    return r.code, json.loads(r.out)


def doctor_plan(run: Any, plan: Path) -> tuple[int, dict[str, Any]]:
    r = run("doctor", str(plan), "--format", "json")
    return r.code, json.loads(r.out)


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in doc["checks"]}


@pytest.mark.parametrize(
    ("api", "zone", "not_found", "form"),
    [
        ("v2.0", "GMT+8", "62102", "code 62102"),
        ("v2.1", "UTC", "null", "code 0 with data null"),
        ("v2.0", "GMT-5", "empty", "code 0 with empty data"),
        ("v2.1", "GMT+5:30", "62102", "code 62102"),
    ],
)
def test_doctor_names_the_dialect(
    run: Any, sim_env: None, api: str, zone: str, not_found: str, form: str
) -> None:
    with Simulator(dialect=Dialect(api=api, server_zone=zone, not_found=not_found)) as sim:
        code, doc = doctor(run, sim.url, "--api", api)
    checks = by_name(doc)
    assert code == 0, doc
    assert doc["ok"] is True and doc["api"] == api
    assert checks["token get"]["result"] == "ok"
    assert checks["signed call"]["result"] == "ok"
    other = "v2.1" if api == "v2.0" else "v2.0"
    assert f"{api} answers" in checks["api version"]["detail"]
    assert f"{other} does not answer" in checks["api version"]["detail"]
    assert checks["server time zone"]["detail"] == f"server zone {zone}"
    assert checks["clock skew"]["result"] == "ok"
    assert form in checks["missing instance"]["detail"]
    assert checks["search"]["result"] == "ok"


def test_finding_26_a_wrong_api_version_stops_doctor_with_the_fix(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    with Simulator(dialect=Dialect(api="v2.1")) as sim:
        code, doc = doctor(run, sim.url, "--api", "v2.0")
        plan = write_plan(tmp_path, '  - {name: f1, flowId: 1, at: ["2026-01-01T00:00:00Z"]}\n')
        text = run("doctor", str(plan), "--gateway", sim.url)
    assert code == 1 and doc["ok"] is False
    checks = by_name(doc)
    assert "set target.api: v2.1" in checks["api version"]["detail"]
    # It stops there: no follow-on problems with wrong fixes (time zone, search, flows).
    assert [c["name"] for c in doc["checks"] if c["result"] == "problem"] == ["api version"]
    assert "server time zone" not in checks and "search" not in checks
    assert text.code == 1 and text.out.count("problem") == 1
    assert "set target.api: v2.1" in text.out


def flows_plan(tmp_path: Path, url: str, ids: list[int]) -> Path:
    """A plan of one flow per id (f1, f2, ...), userId u1, against ``url``."""
    return write_plan(
        tmp_path,
        "".join(f"  - {{name: f{i}, flowId: {i}, at: [2026-01-01]}}\n" for i in ids),
        gateway=url,
    )


def test_w3_flows_owned_by_usernames_pass_doctor(tmp_path: Path, run: Any, sim_env: None) -> None:
    # The vendor's owner is a ;-separated list of usernames, never the userId: information.
    flows = [SimFlow(1, owners=("alice", "bob"), users=("u1",)), SimFlow(2, owners=("dylan.yeo",))]
    with Simulator(flows) as sim:
        plan = flows_plan(tmp_path, sim.url, [1, 2])
        r = run("doctor", str(plan), "--format", "json")
        text = run("doctor", str(plan))
    doc = json.loads(r.out)
    checks = by_name(doc)
    assert r.code == 0 and doc["ok"] is True, doc
    assert checks["flow f1"] == {
        "name": "flow f1",
        "result": "ok",
        "detail": 'flowId 1: named "flow-1"; 1 task; owners alice, bob',
    }
    assert checks["flow f2"]["result"] == "ok" and "owners dylan.yeo" in checks["flow f2"]["detail"]
    assert "u1" not in checks["flow f1"]["detail"]  # never compared with the userId
    assert text.code == 0 and text.out.splitlines()[-1] == "every assumption holds"


def test_w3_a_taskless_flow_fails_doctor(tmp_path: Path, run: Any, sim_env: None) -> None:
    with Simulator([SimFlow(1, owners=("alice",)), SimFlow(2, owners=("alice",), tasks=0)]) as sim:
        code, doc = doctor_plan(run, flows_plan(tmp_path, sim.url, [1, 2]))
    checks = by_name(doc)
    assert code == 1 and doc["ok"] is False
    assert checks["flow f1"]["result"] == "ok"
    assert checks["flow f2"]["result"] == "problem"
    assert checks["flow f2"]["detail"].startswith("flowId 2: flow has no task")


def test_w3_a_locked_flow_fails_doctor(tmp_path: Path, run: Any, sim_env: None) -> None:
    with Simulator([SimFlow(1, owners=("alice",), locked=True)]) as sim:
        code, doc = doctor_plan(run, flows_plan(tmp_path, sim.url, [1]))
    assert code == 1
    assert by_name(doc)["flow f1"]["result"] == "problem"
    assert by_name(doc)["flow f1"]["detail"].startswith("flowId 1: flow is locked")


def test_w3_a_locked_user_fails_doctor_and_a_paused_flow_is_information(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    flows = [SimFlow(1, owners=("alice",), user_locked=True), SimFlow(2, owners=("alice",), active=0)]
    with Simulator(flows) as sim:
        code, doc = doctor_plan(run, flows_plan(tmp_path, sim.url, [1, 2]))
    checks = by_name(doc)
    assert code == 1
    assert checks["flow f1"]["result"] == "problem"
    assert checks["flow f1"]["detail"].startswith("flowId 1: user is locked")
    assert checks["flow f2"]["result"] == "ok"
    assert "paused (active 0)" in checks["flow f2"]["detail"]


def test_w3_an_unknown_flow_is_not_visible(tmp_path: Path, run: Any, sim_env: None) -> None:
    with Simulator([SimFlow(1, owners=("alice",))]) as sim:
        code, doc = doctor_plan(run, flows_plan(tmp_path, sim.url, [1, 404]))
    checks = by_name(doc)
    assert code == 1
    assert checks["flow f1"]["result"] == "ok"
    assert checks["flow f404"]["result"] == "problem"
    assert checks["flow f404"]["detail"].startswith("flowId 404: does not exist or is not visible")
    # Only the problem lines differ: the service checks above them all hold.
    assert [c["name"] for c in doc["checks"] if c["result"] == "problem"] == ["flow f404"]


def test_w3_text_from_get_flow_never_shows_a_secret(
    tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret-" + "k" * 20
    monkeypatch.setenv("ENOS_ACCESS_KEY", "sim-access-key")
    monkeypatch.setenv("ENOS_SECRET_KEY", secret)
    flow = SimFlow(1, owners=("alice", secret), name=f"leaky {secret}")
    with Simulator([flow], secret_key=secret) as sim:
        plan = flows_plan(tmp_path, sim.url, [1])
        outs = [run("doctor", str(plan), *fmt) for fmt in ((), ("--format", "json"))]
    for r in outs:
        assert r.code == 0, r.out + r.err
        assert "alice" in r.out and "leaky ***" in r.out  # shown, the secret redacted
        assert secret not in r.out + r.err


def test_bad_credentials_are_reported_without_the_secret(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENOS_ACCESS_KEY", "sim-access-key")
    monkeypatch.setenv("ENOS_SECRET_KEY", "not-the-secret-42")
    with Simulator() as sim:
        r = run("doctor", "--gateway", sim.url, "--org", "o1", "--user", "u1")
    assert r.code == 1
    assert "problem" in r.out and "token" in r.out
    assert "not-the-secret-42" not in r.out + r.err


def test_text_output_reads_one_line_per_check(run: Any, sim_env: None) -> None:
    with Simulator() as sim:
        r = run("doctor", "--gateway", sim.url, "--org", "o1", "--user", "u1")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].startswith("doctor http://127.0.0.1:")
    assert lines[-1] == "every assumption holds"
    assert all(line.split()[0] in ("ok", "warning", "problem") for line in lines[1:-1])


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_n4_doctor_names_a_server_zone_with_dst_as_a_risk(run: Any, sim_env: None, zone: str) -> None:
    with Simulator(dialect=Dialect(server_zone=zone)) as sim:
        code, doc = doctor(run, sim.url)
    check = by_name(doc)["server time zone"]
    assert code == 0 and check["result"] == "warning"
    assert "daylight saving" in check["detail"] and zone in check["detail"]


def test_n4_a_fixed_offset_server_zone_is_no_risk(run: Any, sim_env: None) -> None:
    with Simulator(dialect=Dialect(server_zone="Asia/Shanghai")) as sim:
        code, doc = doctor(run, sim.url)
    assert code == 0 and by_name(doc)["server time zone"]["result"] == "ok"


def test_review_5_doctor_renders_by_format_with_the_report_format_version(run: Any, sim_env: None) -> None:
    from planrunner.report import FORMAT_VERSION
    from planrunner.report.doctor import RENDERERS

    with Simulator() as sim:
        outs = {
            fmt: run("doctor", "--gateway", sim.url, "--org", "o1", "--user", "u1", "--format", fmt)
            for fmt in RENDERERS
        }
    assert set(outs) == {"text", "json"}
    assert all(r.code == 0 for r in outs.values())
    assert json.loads(outs["json"].out)["formatVersion"] == FORMAT_VERSION
    assert outs["text"].out.splitlines()[-1] == "every assumption holds"
    bad = run("doctor", "--format", "json")  # no plan, no gateway: the error's JSON too
    assert bad.code == 2 and json.loads(bad.out)["formatVersion"] == FORMAT_VERSION


# The vendor's Get Flow sample (A20 get_flow.md), graph a JSON string: as a real service answers.
def vendor_flow(flow_id: int, **over: Any) -> dict[str, Any]:
    flow: dict[str, Any] = {
        "flowId": flow_id,
        "flowName": f"daily-{flow_id}",
        "type": 1,
        "active": 1,
        "cycle": "D",
        "freq": "0 0 2 * * ? *",
        "owner": ";alice;bob;",
        "locked": False,
        "isUserLocked": False,
        "hasEditPri": True,
        "hasReadPri": True,
        "graph": json.dumps({"tasks": [{"taskId": "t1", "taskName": "load", "nodeId": "n1"}]}),
    }
    return {**flow, **over}


@pytest.mark.parametrize(
    ("over", "result", "detail"),
    [
        ({}, "ok", 'flowId 7: named "daily-7"; 1 task; owners alice, bob'),
        ({"active": 0}, "ok", "paused (active 0)"),
        ({"owner": ";" + ";".join(f"user{i}" for i in range(8)) + ";"}, "ok", "user4 and 3 more"),
        ({"isUserLocked": True}, "problem", "flowId 7: user is locked"),
        ({"locked": True}, "problem", "flowId 7: flow is locked"),
        ({"graph": json.dumps({"tasks": []})}, "problem", "flowId 7: flow has no task"),
    ],
)
def test_w3_doctor_reads_the_vendors_flow_struct(
    tmp_path: Path, run: Any, creds: None, over: dict[str, Any], result: str, detail: str
) -> None:
    from testing.gateway import Gateway, env

    def on(path: str, q: dict[str, str], body: Any) -> Any:
        if path.endswith("/flows") and q.get("action") == "get":
            return env(0, "OK", vendor_flow(int(q["flowId"]), **over))
        return None

    with Gateway(on) as gw:
        code, doc = doctor_plan(run, flows_plan(tmp_path, gw.url, [7]))
    check = by_name(doc)["flow f7"]
    assert check["result"] == result and detail in check["detail"], check
    assert code == (0 if result == "ok" else 1)


def test_w3_a_failed_get_flow_call_is_not_called_a_missing_flow(
    tmp_path: Path, run: Any, creds: None
) -> None:
    from testing.gateway import Gateway, Reply

    def on(path: str, q: dict[str, str], body: Any) -> Any:
        if path.endswith("/flows") and q.get("action") == "get":
            return Reply(504, b"gateway timeout")
        return None

    with Gateway(on) as gw:
        code, doc = doctor_plan(run, flows_plan(tmp_path, gw.url, [7]))
    check = by_name(doc)["flow f7"]
    assert code == 1 and check["result"] == "problem"
    assert check["detail"].startswith("flowId 7: Get Flow failed:"), check
    assert "does not exist" not in check["detail"]


def test_doctor_names_a_user_org_pair_the_service_refuses(run: Any, creds: None) -> None:
    from testing.gateway import Gateway, env

    def on(path: str, q: dict[str, str], body: Any) -> Any:
        return env(62101, "userId does not match orgId") if q.get("action") == "search" else None

    with Gateway(on) as gw:
        code, doc = doctor(run, gw.url)
    checks = by_name(doc)
    assert code == 1
    assert [c["name"] for c in doc["checks"] if c["result"] == "problem"] == ["user and org"]
    assert "userId u1 with orgId o1 refused (62101" in checks["user and org"]["detail"]
    assert "search" not in checks  # the body was not what the service judged


def test_w3_the_example_plan_passes_doctor_against_the_shipped_fixture(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    # plans/sim-flows.yaml is shaped like the vendor's Flow struct (owners are usernames,
    # never the plan's userId); its taskless flow 2431 is the one refusal swapped in.
    from planrunner.sim.fixture import load_flows
    from testing import ROOT

    example = (ROOT / "plans" / "example.yaml").read_text()
    with Simulator(load_flows(str(ROOT / "plans" / "sim-flows.yaml"))) as sim:
        good = run("doctor", str(ROOT / "plans" / "example.yaml"), "--gateway", sim.url)
        taskless = tmp_path / "taskless.yaml"
        taskless.write_text(example.replace("flowId: 2430", "flowId: 2431"))
        bad = run("doctor", str(taskless), "--gateway", sim.url, "--format", "json")
    assert good.code == 0, good.out
    assert "owners data.eng" in good.out and "problem" not in good.out
    assert bad.code == 1
    problems = [c for c in json.loads(bad.out)["checks"] if c["result"] == "problem"]
    assert [(c["name"], c["detail"].split(";")[0]) for c in problems] == [
        ("flow inventory-fix", "flowId 2431: flow has no task")
    ]


def test_n6_a_hostile_time_zone_name_is_cleaned_in_doctor(run: Any, creds: None) -> None:
    name = "Mars/Olympus" + INJECTION + SECRET

    def on(path: str, q: dict[str, str], b: Any) -> Reply | None:
        return env(0, "OK", {"timezone": name}) if q.get("action") == "getTimeZone" else None

    with Gateway(on) as gw:
        outs = [
            run("doctor", "--gateway", gw.url, "--org", "o1", "--user", "u1", "--format", fmt)
            for fmt in ("text", "json")
        ]
        c = client(gw.url)
        with pytest.raises(ServiceError) as e:
            c.server_zone()
    for o in outs:
        assert o.code == 1 and "Mars/Olympus" in o.out
        assert_harmless(o.out, o.err)
    assert_harmless(str(e.value))


def test_n11_a_deep_search_answer_is_a_doctor_problem_not_exit_70(run: Any, creds: None) -> None:
    bad = Reply(200, DEEP)
    with Gateway(lambda p, q, b: bad if q.get("action") == "search" else None) as gw:
        r = run("doctor", "--gateway", gw.url, "--org", "o1", "--user", "u1")
    assert r.code == 1, r.out + r.err
    assert "search" in r.out and "unparsable" in r.out
    assert_harmless(r.out, r.err)
