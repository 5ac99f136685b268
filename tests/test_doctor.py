"""`planrunner doctor` against the simulator: every check reports what it found, per dialect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from planrunner.sim import Dialect, SimFlow, Simulator
from testing import write_plan


def doctor(run: Any, url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    r = run("doctor", "--gateway", url, "--org", "o1", "--user", "u1", "--format", "json", *extra)
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
    with Simulator(dialect=Dialect(api=api, server_zone=zone, not_found=not_found), accept_unknown_flows=True) as sim:
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
    with Simulator(dialect=Dialect(api="v2.1"), accept_unknown_flows=True) as sim:
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


def test_a_plans_flows_are_checked(tmp_path: Path, run: Any, sim_env: None) -> None:
    flows = [
        SimFlow(1, users=("u1",)),
        SimFlow(2, owners=("someone-else",), users=("someone-else",)),
        SimFlow(3, locked=True),
    ]
    with Simulator(flows) as sim:
        plan = write_plan(
            tmp_path,
            "".join(f"  - {{name: f{i}, flowId: {i}, at: [2026-01-01]}}\n" for i in (1, 2, 3)),
            gateway=sim.url,
        )
        r = run("doctor", str(plan), "--format", "json")
    doc = json.loads(r.out)
    checks = by_name(doc)
    assert r.code == 1
    assert checks["flow f1"]["result"] == "ok"
    assert "someone-else" in checks["flow f2"]["detail"]
    assert "locked" in checks["flow f3"]["detail"]


def test_bad_credentials_are_reported_without_the_secret(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENOS_ACCESS_KEY", "sim-access-key")
    monkeypatch.setenv("ENOS_SECRET_KEY", "not-the-secret-42")
    with Simulator(accept_unknown_flows=True) as sim:
        r = run("doctor", "--gateway", sim.url, "--org", "o1", "--user", "u1")
    assert r.code == 1
    assert "problem" in r.out and "token" in r.out
    assert "not-the-secret-42" not in r.out + r.err


def test_text_output_reads_one_line_per_check(run: Any, sim_env: None) -> None:
    with Simulator(accept_unknown_flows=True) as sim:
        r = run("doctor", "--gateway", sim.url, "--org", "o1", "--user", "u1")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].startswith("doctor http://127.0.0.1:")
    assert lines[-1] == "every assumption holds"
    assert all(line.split()[0] in ("ok", "warning", "problem") for line in lines[1:-1])


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_n4_doctor_names_a_server_zone_with_dst_as_a_risk(run: Any, sim_env: None, zone: str) -> None:
    with Simulator(dialect=Dialect(server_zone=zone), accept_unknown_flows=True) as sim:
        code, doc = doctor(run, sim.url)
    check = by_name(doc)["server time zone"]
    assert code == 0 and check["result"] == "warning"
    assert "daylight saving" in check["detail"] and zone in check["detail"]


def test_n4_a_fixed_offset_server_zone_is_no_risk(run: Any, sim_env: None) -> None:
    with Simulator(dialect=Dialect(server_zone="Asia/Shanghai"), accept_unknown_flows=True) as sim:
        code, doc = doctor(run, sim.url)
    assert code == 0 and by_name(doc)["server time zone"]["result"] == "ok"
