"""Pacing by instances as real processes against the simulator (issue 21): Ctrl-C and kill -9
while apply waits for instances to finish lose and duplicate nothing, and the service's
own record of the most instances of a flow unfinished at once never exceeds the limit."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from planrunner.sim import Dialect, SimFlow, Simulator
from testing import assert_exactly_once, run_process, start_apply, write_plan

FLOW = '  - {{name: f{fid}, flowId: {fid}, cron: "0 2 * * *", from: 2025-01-01, count: {n}}}\n'
WAITING = "waiting for the flow's instances to finish"
DEFAULT_SEED = 20261203


def plan_of(tmp_path: Path, fids: list[int], n: int, name: str) -> Path:
    return write_plan(tmp_path, "".join(FLOW.format(fid=f, n=n) for f in fids), name=name)


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 60.0) -> list[str]:
    """Read stderr until a line holds ``text``; the lines read."""
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"never saw {text!r}: {''.join(seen)[-2000:]}")


def finish(plan: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {"ENOS_ACCESS_KEY": "sim-access-key", "ENOS_SECRET_KEY": "sim-secret-key"}
    return run_process(["apply", str(plan), "--gateway", url, "--yes", *extra], env=env, timeout=180)


def test_ctrl_c_while_waiting_for_instances_exits_130_and_the_next_apply_continues(
    tmp_path: Path,
) -> None:
    plan = plan_of(tmp_path, [21], 4, "ctrlc.yaml")
    with Simulator([SimFlow(21, run_seconds=2.0)], dialect=Dialect(duplicate="none")) as sim:
        proc = start_apply(plan, sim.url, "--max-unfinished", "1", "--wait", "--interval", "0.2")
        wait_for_line(proc, WAITING)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err[-2000:]
        assert "interrupted" in err
        assert len(sim.triggers()) == 1
        done = finish(plan, sim.url, "--max-unfinished", "1", "--wait", "--interval", "0.2")
        assert done.returncode == 0, done.stderr[-2000:]
        assert_exactly_once(sim.triggers(), {(21, 1735696800000 + d * 86_400_000) for d in range(4)})


@pytest.mark.slow
def test_kill_9_while_waiting_for_instances_then_reapply_is_exactly_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED", DEFAULT_SEED))
    print(f"CRASH_SEED={seed}")
    rng = random.Random(seed)
    trials = 8
    for trial in range(trials):
        fids = [100 + trial * 10 + i for i in range(2)]
        n = 5
        plan = plan_of(tmp_path, fids, n, f"kill{trial}.yaml")
        limit = str(rng.choice([1, 2]))
        flows = [SimFlow(f, run_seconds=rng.uniform(0.2, 0.6)) for f in fids]
        with Simulator(flows, dialect=Dialect(duplicate="none")) as sim:
            proc = start_apply(
                plan, sim.url, "--max-unfinished", limit, "--wait", "--interval", "0.2",
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            wait_for_line(proc, WAITING)
            time.sleep(rng.uniform(0.0, 0.4))  # somewhere in a wait, or just after it
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.stderr is not None
            proc.stderr.close()
            before = len(sim.triggers())
            done = finish(plan, sim.url, "--max-unfinished", limit, "--wait", "--interval", "0.2")
            assert done.returncode == 0, f"seed {seed} trial {trial}: {done.stderr[-2000:]}"
            keys = {(f, 1735696800000 + d * 86_400_000) for f in fids for d in range(n)}
            try:
                assert_exactly_once(sim.triggers(), keys)
            except AssertionError as e:
                raise AssertionError(f"seed {seed} trial {trial} (killed after {before}): {e}") from None
            check = run_process(["plan", str(plan), "--detailed-exitcode"])
            assert check.returncode == 0, f"seed {seed} trial {trial}: ledger not all done"


def peak(sim: Any, flow_id: int) -> int:
    """The simulator's own record: the most instances of the flow unfinished at once."""
    return int(sim.flows()[flow_id]["maxUnfinished"])


def keys_of(fids: list[int], n: int) -> set[tuple[int, int]]:
    return {(f, 1735696800000 + d * 86_400_000) for f in fids for d in range(n)}


@pytest.mark.parametrize("limit", [1, 2])
def test_max_unfinished_with_wait_never_exceeds_the_limit_on_the_service(
    tmp_path: Path, limit: int
) -> None:
    fids, n = [41, 42], 6
    plan = plan_of(tmp_path, fids, n, f"wait{limit}.yaml")
    flows = [SimFlow(f, run_seconds=0.3) for f in fids]
    with Simulator(flows, dialect=Dialect(duplicate="none")) as sim:
        done = finish(plan, sim.url, "--max-unfinished", str(limit), "--wait", "--interval", "0.2")
        assert done.returncode == 0, done.stderr[-2000:]
        assert_exactly_once(sim.triggers(), keys_of(fids, n))
        assert [peak(sim, f) for f in fids] == [limit, limit]


@pytest.mark.parametrize("limit", [1, 2])
def test_max_unfinished_with_repeated_applies_never_exceeds_the_limit_on_the_service(
    tmp_path: Path, limit: int
) -> None:
    # A scheduled job's way: each apply sends what the limit allows and exits 4 until done.
    fids, n = [51, 52], 4
    plan = plan_of(tmp_path, fids, n, f"again{limit}.yaml")
    flows = [SimFlow(f, run_seconds=0.3) for f in fids]
    codes = []
    with Simulator(flows, dialect=Dialect(duplicate="none")) as sim:
        for _ in range(60):
            p = finish(plan, sim.url, "--max-unfinished", str(limit))
            codes.append(p.returncode)
            assert p.returncode in (0, 4), p.stderr[-2000:]
            if p.returncode == 0:
                break
            time.sleep(0.2)
        assert codes[-1] == 0 and 4 in codes
        assert_exactly_once(sim.triggers(), keys_of(fids, n))
        assert [peak(sim, f) for f in fids] == [limit, limit]


def test_the_progress_bar_shows_the_wait_for_unfinished_instances(tmp_path: Path) -> None:
    from testing import run_in_pty

    plan = plan_of(tmp_path, [31], 3, "bar.yaml")
    with Simulator([SimFlow(31, run_seconds=1.5)]) as sim:
        code, _, shown = run_in_pty(
            ["apply", str(plan), "--gateway", sim.url, "--yes", "--max-unfinished", "1", "--wait"]
        )
    assert code == 0, shown[-2000:]
    assert "waiting for the flow's instances to finish: 1 unfinished, max-unfinished 1" in shown
    bar = [line for line in shown.replace("\r", "\n").splitlines() if line.startswith("[")]
    assert any("waiting 0:0" in line for line in bar), bar[-5:]
