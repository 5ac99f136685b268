"""`planrunner validate`: several plans, stdin, warnings for unset ${VAR}, text/json/github."""

from __future__ import annotations

import json
from pathlib import Path

from planrunner.checking import Located as Found
from planrunner.report.validate import github_command
from testing import ROOT, cron_flows, run_process, write_plan

EXAMPLE = ROOT / "plans" / "example.yaml"


def with_unset_var(tmp_path: Path) -> Path:
    plan = write_plan(tmp_path, cron_flows(1, 2), gateway="${PR_TEST_GATEWAY}")
    plan.write_text(plan.read_text().replace("userId: u1", "userId: ${PR_TEST_USER}"))
    return plan


def test_unset_variable_is_a_warning_for_validate_only(tmp_path: Path, run) -> None:
    plan = with_unset_var(tmp_path)
    r = run("validate", str(plan))
    assert r.code == 0, r.err
    assert f"{plan}:3:12: warning: target.gateway: environment variable \"PR_TEST_GATEWAY\" is not set" in r.err
    assert f"{plan}:5:11: warning: target.userId: environment variable \"PR_TEST_USER\" is not set" in r.err
    assert r.out.strip() == f"{plan}: ok (2 entries in 1 flow; 2 warnings)"
    # plan (and apply) still need it.
    p = run("plan", str(plan))
    assert p.code == 2 and "error: target.gateway: environment variable" in p.err


def test_a_bad_reference_stays_an_error(tmp_path: Path, run) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 1))
    plan.write_text(plan.read_text().replace("userId: u1", "userId: ${1BAD}"))
    r = run("validate", str(plan))
    assert r.code == 2
    assert "error: target.userId: \"${1BAD}\" is not a valid environment variable reference" in r.err


def test_set_gateway_is_still_checked_when_another_value_is_unset(tmp_path: Path, run) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 1), gateway="http://example.com")
    plan.write_text(plan.read_text().replace("userId: u1", "userId: ${PR_TEST_USER}"))
    r = run("validate", str(plan))
    assert r.code == 2 and "plain http:// is allowed only to a loopback address" in r.err


def test_several_plans_and_stdin(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace('"0 2 * * *"', '"61 2 * * *"'))
    p = run_process(["validate", str(EXAMPLE), "-", str(bad)], input=EXAMPLE.read_text())
    assert p.returncode == 2
    assert f"{EXAMPLE}: ok (82 entries in 3 flows)" in p.stdout
    assert "<stdin>: ok (82 entries in 3 flows)" in p.stdout
    assert f'{bad}:18:11: error: flows[0].cron: bad minute field "61" (0-59)' in p.stderr
    assert run_process(["validate", "-", "-"], input="").returncode == 2


def test_json_format(tmp_path: Path, run) -> None:
    warned = with_unset_var(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ntarget: {gatway: x}\n")
    r = run("validate", str(warned), str(bad), str(tmp_path / "missing.yaml"), "--format", "json")
    assert r.code == 2
    doc = json.loads(r.out)
    assert doc["formatVersion"] == 1
    first, second, third = doc["plans"]
    assert first["path"] == str(warned) and first["ok"] is True
    assert first["problems"][0] == {
        "line": 3,
        "col": 12,
        "path": "target.gateway",
        "message": 'environment variable "PR_TEST_GATEWAY" is not set (validate only warns; plan and apply need it set)',
        "severity": "warning",
    }
    assert second["ok"] is False
    assert all(set(p) == {"line", "col", "path", "message", "severity"} for p in second["problems"])
    unknown = next(p for p in second["problems"] if "gatway" in p["message"])
    assert (unknown["line"], unknown["col"], unknown["path"]) == (2, 10, "target")
    assert third["ok"] is False and third["problems"][0]["line"] is None
    assert "cannot read plan" in third["problems"][0]["message"]


def test_yaml_errors_have_no_path(tmp_path: Path, run) -> None:
    bad = tmp_path / "tabs.yaml"
    bad.write_text("version: 1\ntarget:\n\tgateway: x\n")
    doc = json.loads(run("validate", str(bad), "--format", "json").out)
    problem = doc["plans"][0]["problems"][0]
    assert problem["path"] == "" and problem["message"].startswith("YAML")
    assert problem["line"] == 3


def test_github_format(tmp_path: Path, run) -> None:
    warned = with_unset_var(tmp_path)
    bad = tmp_path / "bad,1.yaml"
    bad.write_text(EXAMPLE.read_text().replace('"0 2 * * *"', '"61 2 * * *"'))
    r = run("validate", str(warned), str(bad), "--format", "github")
    assert r.code == 2
    lines = r.out.splitlines()
    assert f"::warning file={warned},line=3,col=12::target.gateway: environment variable" in lines[0]
    name = str(bad).replace(",", "%2C").replace(":", "%3A")
    assert (
        f'::error file={name},line=18,col=11::flows[0].cron: bad minute field "61" (0-59)' in lines
    )
    assert r.err == ""


def test_github_escapes_foreign_text() -> None:
    found = Found(3, 5, "target", 'unknown key "a%b\r\n::set-env x::y"', "error")
    line = github_command("p.yaml", found)
    assert "\n" not in line and "\r" not in line
    assert line == '::error file=p.yaml,line=3,col=5::target: unknown key "a%25b%0D%0A: :set-env x: :y"'
    assert github_command("a:b.yaml", Found(None, None, "", "gone", "error")) == "::error file=a%3Ab.yaml::gone"


def test_github_escapes_a_key_from_the_plan(tmp_path: Path, run) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 1))
    plan.write_text(plan.read_text().replace("  orgId: o1\n", '  orgId: o1\n  "x::warning 50%": 1\n'))
    r = run("validate", str(plan), "--format", "github")
    assert r.code == 2
    (line,) = [x for x in r.out.splitlines() if x.startswith("::")]
    assert line.count("::") == 2  # only the command's own
    assert "50%25" in line
