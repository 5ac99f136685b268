"""The command line (planrunner/cli.py): every command's help, usage errors, global options,
`--version`, `python -m planrunner`; newcomer findings 4, 8, 9, 19, 24 and 25."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from planrunner import __version__, ledger
from planrunner.cli import build_parser
from testing import ROOT, SIM_ENV, cron_flows, run_process, write_plan
from testing.terminal import log_lines

EXAMPLE = str(ROOT / "plans" / "example.yaml")


def test_version(run, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        run("--version")
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"planrunner {__version__}"


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = sorted(sub.choices)  # type: ignore[arg-type]
    assert names == [
        "apply",
        "cancel",
        "completion",
        "doctor",
        "init",
        "ledger",
        "plan",
        "schema",
        "sim",
        "status",
        "validate",
    ]
    for name in names:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([name, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: planrunner {name}" in out
        assert "--log-format" in out


def test_usage_error_exits_2(run) -> None:
    with pytest.raises(SystemExit) as e:
        run("plan", EXAMPLE, "--format", "yaml")
    assert e.value.code == 2


def test_python_dash_m_is_the_same_program() -> None:
    p = run_process(["validate", EXAMPLE])
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"{EXAMPLE}: ok (82 entries in 3 flows)\n"
    p = run_process(["--version"])
    assert p.stdout.strip() == f"planrunner {__version__}"


EXAMPLE = str(ROOT / "plans" / "example.yaml")


class _Ref:
    key, flow_id, org_id, trigger_time = "o1/1/1767225600000", 1, "o1", 1767225600000


# --- 19, 24: usage ------------------------------------------------------------------------------


def test_finding_19_an_unknown_option_gets_the_subcommand_usage_and_a_did_you_mean(run: Any) -> None:
    p = run_process(["plan", EXAMPLE, "--formt", "json"])
    assert p.returncode == 2
    assert p.stderr.startswith("usage: planrunner plan")
    assert 'did you mean "--format"' in p.stderr
    p = run_process(["valdate", EXAMPLE])
    assert 'did you mean "validate"' in p.stderr


def test_finding_24_each_command_lists_only_its_own_exit_codes_and_an_example() -> None:
    out = run_process(["validate", "--help"]).stdout
    codes = re.findall(r"^  (\d+) ", out.split("exit codes:")[1], re.M)
    assert codes == ["0", "2"]
    assert "example:" in out
    apply_codes = re.findall(r"^  (\d+) ", run_process(["apply", "--help"]).stdout.split("exit codes:")[1], re.M)
    assert apply_codes == ["0", "1", "2", "3", "4", "130"]


def test_finding_4_global_options_before_the_command_count_as_after_it(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 3))
    a, b = str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")
    before = run("-v", "--log-format", "json", "apply", str(plan), "--sim", "--yes", "-q", "--ledger", a)
    after = run("apply", str(plan), "--sim", "--yes", "-q", "--ledger", b, "-v", "--log-format", "json")
    assert before.code == after.code == 0, before.err
    levels = {x["level"] for x in log_lines(before.err)}
    assert "debug" in levels, before.err  # -v before the command is honoured
    assert len(log_lines(before.err)) == len(log_lines(after.err)) > 2
    # --log-format before the command decides how a plan error is printed.
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nflows: 3\n")
    r = run("--log-format", "json", "plan", str(bad))
    assert r.code == 2
    assert all(line.startswith("{") for line in r.err.splitlines()), r.err
    assert log_lines(r.err)[0]["level"] == "error"


def test_finding_8_every_subcommand_takes_the_global_options_and_no_hint_names_the_refused_option(
    tmp_path: Path, run: Any
) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 3))
    r = run("ledger", "verify", str(plan), "--log-format", "json")
    assert r.code == 2 and json.loads(r.err)["event"].endswith("no such ledger"), r.err
    (tmp_path / "plan.ledger.jsonl").write_text("")
    for sub in ("log", "verify"):
        r = run("ledger", sub, str(plan), "--log-format", "json", "-v")
        assert r.code == 0, r.err
        r = run("ledger", "-v", sub, str(plan))
        assert r.code == 0, r.err
    r = run("ledger", "export", "--ledger", str(tmp_path / "none.jsonl"), "-", "-v")
    assert "unrecognized" not in r.err
    # An option a command does not take: the hint never suggests that same option.
    import pytest

    with pytest.raises(SystemExit) as e:
        run("ledger", "log", str(plan), "--lock-timeout", "3")
    assert e.value.code == 2
    from planrunner.commands import options

    parser = options.Parser(prog="x")
    parser.add_argument("--log-format")
    assert options._did_you_mean(parser, "unrecognized arguments: --log-format json") == ""


def test_finding_9_sim_is_suggested_only_where_the_command_has_it(
    tmp_path: Path, run: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("ENOS_ACCESS_KEY", raising=False)
    monkeypatch.delenv("ENOS_SECRET_KEY", raising=False)
    plan = write_plan(tmp_path, cron_flows(1, 1))
    (tmp_path / "plan.ledger.jsonl").write_text(
        json.dumps(
            ledger.intent(_Ref, "a1", gateway="https://apigw.example.com", flow="f1", run="r")
        )
        + "\n"
    )
    for argv in (["doctor", str(plan)], ["cancel", str(plan), "--yes"]):
        r = run(*argv)
        assert r.code == 2, r.err
        assert "ENOS_ACCESS_KEY and ENOS_SECRET_KEY not set" in r.err
        assert "--sim" not in r.err, r.err
    r = run("apply", str(plan), "--yes")
    assert r.code == 2 and "(or use --sim)" in r.err, r.err


def test_finding_25_format_json_always_prints_an_object_with_the_error(
    tmp_path: Path, run: Any, monkeypatch: Any
) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 2))
    bad = tmp_path / "typo.yaml"
    bad.write_text(plan.read_text().replace("cron:", "corn:"))

    def doc_of(*argv: str) -> dict[str, Any]:
        r = run(*argv)
        assert r.code != 0, r
        doc: dict[str, Any] = json.loads(r.out)
        assert doc["formatVersion"] == 1 and doc["error"], doc
        assert doc["exitCode"] == r.code
        return doc

    # A plan error.
    for command in ("plan", "apply", "status"):
        doc = doc_of(command, str(bad), "--format", "json", *(["--yes"] if command == "apply" else []))
        assert "unknown key" in doc["error"] and doc["problems"], doc
    # Credentials missing.
    monkeypatch.delenv("ENOS_ACCESS_KEY", raising=False)
    monkeypatch.delenv("ENOS_SECRET_KEY", raising=False)
    assert "not set" in doc_of("apply", str(plan), "--yes", "--format", "json")["error"]
    assert "not set" in doc_of("doctor", str(plan), "--format", "json")["error"]
    # Connection refused.
    for k, v in SIM_ENV.items():
        monkeypatch.setenv(k, v)
    url = "http://127.0.0.1:1"
    doc = doc_of("apply", str(plan), "--yes", "--gateway", url, "--format", "json")
    assert "refused" in doc["error"], doc
    # A usage error argparse finds, with --format json before or after the bad word.
    for argv in (
        ["status", str(plan), "--format", "json", "--bogus"],
        ["ledger", "log", str(plan), "--format=json", "--bogus"],
        ["plan", str(plan), "--bogus", "--format", "json"],
        ["apply", str(plan), "--format", "json", "--concurrency", "0"],
    ):
        p = run_process(argv)
        assert p.returncode == 2, p.stderr
        doc = json.loads(p.stdout)
        assert doc["formatVersion"] == 1 and doc["exitCode"] == 2, doc
        assert doc["error"] in p.stderr, (doc, p.stderr)  # the same line as on stderr
