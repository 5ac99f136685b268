"""kill -9 during reruns (issue 22): real apply processes killed at random moments while
they send rerun rounds; the next applies lose and duplicate nothing (exactly one more
instance per failed entry, at the rule's minute)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from planrunner.sim import Faults, SimFlow, Simulator
from testing import SIM_ENV, assert_exactly_once, run_process, start_apply, write_plan

DAY = 86_400_000
MIN = 60_000
T0 = 1767578400000  # 2026-01-05T02:00:00Z
DEFAULT_SEED = 20261222
FLOW = '  - {{name: f{fid}, flowId: {fid}, cron: "0 2 * * *", from: 2026-01-05, count: {n}}}\n'


def apply(plan: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_process(
        ["apply", str(plan), "--gateway", url, "--yes", *extra],
        env={**SIM_ENV, "PLANRUNNER_IN_FLIGHT_SECONDS": "0.5"},
        timeout=180,
    )


@pytest.mark.slow
def test_i22_kill_9_during_reruns_then_reapply_makes_each_rerun_exactly_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED", DEFAULT_SEED))
    print(f"CRASH_SEED={seed}")
    rng = random.Random(seed)
    n, trials, killed_mid = 8, 6, 0
    for trial in range(trials):
        fids = [200 + trial * 10 + i for i in range(2)]
        plan = write_plan(
            tmp_path, "".join(FLOW.format(fid=f, n=n) for f in fids), name=f"kill{trial}.yaml",
            server_zone="GMT+8",
        )  # fmt: skip
        failing = {f: sorted(rng.sample(range(n), 4)) for f in fids}
        flows = [SimFlow(f, run_seconds=0.01, fails=[T0 + d * DAY for d in failing[f]]) for f in fids]
        # Slow answers: a kill often lands after an intent and before its answer.
        with Simulator(flows, faults=Faults(latency=rng.uniform(0.05, 0.2))) as sim:
            first = apply(plan, sim.url)
            assert first.returncode == 0, first.stderr[-2000:]
            time.sleep(1.0)  # every first instance has ended (half of them FAIL)
            base = len(sim.triggers())
            proc = start_apply(plan, sim.url, "--rerun-failed", "1", stdout=subprocess.DEVNULL)
            # Killed once the service has received `target` rerun requests (the last one's
            # answer still on its way), or at once (target 0): never by the clock alone.
            target = rng.randint(0, 7)
            deadline = time.monotonic() + 60
            while len(sim.triggers()) < base + target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.05))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.stderr is not None
            proc.stderr.close()
            sent_before_kill = len(sim.triggers()) - base
            print(f"trial {trial}: killed after {sent_before_kill} of 8 rerun requests")
            killed_mid += 0 < sent_before_kill < 8  # some rerun requests sent, not all
            again = apply(plan, sim.url, "--rerun-failed", "1")
            assert again.returncode == 0, f"seed {seed} trial {trial}: {again.stderr[-2000:]}"
            keys = {(f, T0 + d * DAY) for f in fids for d in range(n)}
            keys |= {(f, T0 + d * DAY + MIN) for f in fids for d in failing[f]}
            try:
                assert_exactly_once(sim.triggers(), keys)
            except AssertionError as e:
                raise AssertionError(f"seed {seed} trial {trial} (killed after {sent_before_kill}): {e}") from None
            time.sleep(0.5)
            last = apply(plan, sim.url, "--rerun-failed", "1")
            assert last.returncode == 0, last.stderr[-2000:]
            assert_exactly_once(sim.triggers(), keys)  # and a later apply sends nothing
    assert killed_mid, f"seed {seed}: no kill landed while reruns were being sent"
