"""kill -9 of a real apply at random moments, then re-apply: every entry exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from planrunner import ledger
from planrunner.sim import Faults, Simulator
from tests.conftest import (
    SIM_ENV,
    assert_exactly_once,
    cron_flows,
    run_process,
    start_apply,
    write_plan,
)

TRIALS = 24
FLOWS, PER_FLOW = 6, 50  # 300 entries per trial


def test_sigkill_at_random_moments_then_reapply_is_exactly_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    mid_run = 0
    with Simulator(faults=Faults(latency=0.002)) as sim:
        for trial in range(TRIALS):
            first_id = 1000 + trial * 10
            plan = write_plan(
                tmp_path, cron_flows(FLOWS, PER_FLOW, first_id=first_id), name=f"trial{trial}.yaml"
            )
            ids = set(range(first_id, first_id + FLOWS))
            before = len(sim.state.triggers)
            concurrency = str(rng.choice([1, 4, 6]))
            proc = start_apply(
                plan,
                sim.url,
                "--concurrency",
                concurrency,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if trial % 4 == 0:
                time.sleep(rng.uniform(0.0, 0.5))  # anywhere: start-up, lock, fold, first sends
            else:
                target = rng.randrange(1, FLOWS * PER_FLOW)
                deadline = time.monotonic() + 30
                while (
                    len(sim.state.triggers) - before < target
                    and proc.poll() is None
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.0005)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            sent_before_reapply = len(sim.state.triggers) - before
            if 0 < sent_before_reapply < FLOWS * PER_FLOW:
                mid_run += 1
            # The ledger survives a kill -9: every line but a torn last one is whole.
            path = tmp_path / f"trial{trial}.ledger.jsonl"
            if path.exists():
                ledger.fold(str(path))
            for _ in range(3):
                p = run_process(
                    ["apply", str(plan), "--gateway", sim.url, "--yes", "--log-format", "json"],
                    env=SIM_ENV,
                )
                if p.returncode == 0:
                    break
            assert p.returncode == 0, f"seed {seed} trial {trial}: {p.stderr[-2000:]}"
            mine = [t for t in sim.triggers()[before:] if t["flowId"] in ids]
            keys = {(t["flowId"], t["triggerTime"]) for t in mine}
            assert len(keys) == FLOWS * PER_FLOW, f"seed {seed} trial {trial}"
            try:
                assert_exactly_once(mine, keys)
            except AssertionError as e:
                raise AssertionError(f"seed {seed} trial {trial}: {e}") from None
            plan_check = run_process(["plan", str(plan), "--detailed-exitcode"])
            assert plan_check.returncode == 0, f"seed {seed} trial {trial}: ledger not all done"
    assert mid_run >= TRIALS // 2, f"seed {seed}: only {mid_run} kills landed mid-run"
