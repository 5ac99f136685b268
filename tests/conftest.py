"""Fixtures; the helpers they use live in the ``testing`` package (shared with bench/)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

from planrunner.cli import main
from testing import FAST_ENV, SIM_ENV, Run
from testing.hostile import KEY, SECRET

# A shell starts a background job with SIGINT ignored, and an ignored signal stays ignored
# across exec: the processes these tests interrupt would never see their Ctrl-C (planrunner,
# like Python itself, keeps a SIGINT its parent ignored). The tests start from what a
# terminal's foreground job gets, however the test run itself was started.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# In CI (CI=true) property tests draw the same examples every run, so a verdict repeats;
# locally they explore new ones each run (and keep failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    """Call main([...]) in-process; return its code and what it printed."""

    def _run(*argv: str) -> Run:
        code = main(list(argv))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return _run


@pytest.fixture
def sim() -> Iterator[Any]:
    """A simulator on a free loopback port, no listed flows (permissive)."""
    from planrunner.sim import Simulator

    with Simulator(accept_unknown_flows=True) as s:
        yield s


@pytest.fixture
def sim_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator's keys and the short timing settings, in this process's environment."""
    for k, v in {**SIM_ENV, **FAST_ENV}.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reliability probe's credentials (testing.hostile) and the short timing settings."""
    monkeypatch.setenv("ENOS_ACCESS_KEY", KEY)
    monkeypatch.setenv("ENOS_SECRET_KEY", SECRET)
    for k, v in FAST_ENV.items():
        monkeypatch.setenv(k, v)
