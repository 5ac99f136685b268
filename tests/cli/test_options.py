"""The command line (planrunner/cli.py): every command's help, usage errors, global options,
`--version`, `python -m planrunner`; newcomer findings 4, 8, 9, 19, 24 and 25."""

from __future__ import annotations

import pytest

from planrunner import __version__
from planrunner.cli import build_parser
from testing import ROOT, run_process

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
