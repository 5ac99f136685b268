"""D15: the installed ``planrunner`` command handles Ctrl-C and SIGTERM during start-up as
``python -m planrunner`` does: exit 130 with one line, no ``KeyboardInterrupt`` traceback,
no silent death by SIGTERM.

The command is the console script pip wrote next to this interpreter (never one on PATH),
run as a real process. The signal arrives at chosen moments of its start-up: a
``sitecustomize`` on the child's PYTHONPATH sends it when a given module is first imported
(the moments the reliability probe hit with timers: argparse, the command line, HTTP, the
engine), so each moment is hit every run, not by luck of timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testing import ROOT, cron_flows, venv_tool, write_plan
from testing.hostile import ONE, no_traceback

_HOOK = """
import importlib.abc, os, signal, sys
MODULE, SIG = os.environ["D15_MODULE"], getattr(signal, os.environ["D15_SIGNAL"])
class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == MODULE:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), SIG)
        return None
sys.meta_path.insert(0, Hook())
"""

# Imported in this order while `planrunner apply --sim` starts, before anything is sent.
MOMENTS = [
    "planrunner.cli",
    "argparse",
    "planrunner.commands.apply",
    "requests",
    "planrunner.runs.apply",
    "planrunner.sim",
]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_d15_the_installed_command_exits_130_on_a_signal_at_each_moment_of_start_up(
    tmp_path: Path, sig: str
) -> None:
    command = venv_tool("planrunner")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_HOOK)
    plan = write_plan(tmp_path, cron_flows(1, 3))
    led = tmp_path / "l.jsonl"
    for module in MOMENTS:
        p = subprocess.run(
            [command, "apply", str(plan), "--sim", "--yes", "--ledger", str(led)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
            env={**os.environ, "PYTHONPATH": str(hook), "D15_MODULE": module, "D15_SIGNAL": sig},
        )
        where = (module, sig, p.returncode, p.stderr[-1500:])
        assert p.returncode == 130, where
        assert p.stderr.strip().splitlines()[-1] == "planrunner: interrupted", where
        assert "Traceback" not in p.stderr and "KeyboardInterrupt" not in p.stderr, where
        assert not led.exists() or led.read_text() == "", where  # nothing recorded, nothing sent


def test_d15_the_console_script_starts_with_the_handlers_not_the_command_line() -> None:
    # What pip writes for [project.scripts] imports this entry first; it must be light.
    text = Path(venv_tool("planrunner")).read_text()
    assert "from planrunner.launch import run" in text, text
    p = subprocess.run(
        [
            os.path.join(os.path.dirname(venv_tool("planrunner")), "python"),
            "-c",
            "import sys; import planrunner.launch; "
            "print(sorted(m for m in sys.modules if m.startswith('planrunner')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert p.stdout.strip() == "['planrunner', 'planrunner.launch']", p.stdout


_IMPORT_SIGNAL = """
import importlib.abc, os, runpy, signal, sys
MODULE, SIG = sys.argv[1], getattr(signal, sys.argv[2])
class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == MODULE:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), SIG)
        return None
sys.meta_path.insert(0, Hook())
sys.argv = ["planrunner", *sys.argv[3:]]
runpy.run_module("planrunner", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    "module", ["planrunner.cli", "requests", "planrunner.runs.apply", "planrunner.resolve"]
)
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_d15_a_signal_during_imports_exits_130_without_a_traceback(
    tmp_path: Path, module: str, sig: str
) -> None:
    plan = write_plan(tmp_path, ONE)
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            _IMPORT_SIGNAL,
            module,
            sig,
            "apply",
            str(plan),
            "--sim",
            "--yes",
            "--ledger",
            str(tmp_path / "l.jsonl"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert p.returncode == 130, (p.returncode, p.stderr)
    assert "interrupted" in p.stderr
    no_traceback(p.stderr)
