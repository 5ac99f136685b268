"""kill -9 of a real apply at random moments, then re-apply: every entry exactly once.

The trials rotate through simulator dialects (docs/simulator.md), ``duplicate: none``
among them, where any second send would be a second instance. The seed is fixed by
default and printed; ``CRASH_SEED=N`` picks another.

A slow service (reliability probe N3): the simulator works on each trigger for 2 s and
creates the instance when it is done, even after the client was killed; apply runs with
``--rate``, so requests leave long after their intents were written; kill -9 lands while a
request is being processed, and the re-apply starts at once. On both ledgers.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from planrunner import ledger
from planrunner.ledger.postgres import PostgresLedger
from planrunner.sim import Dialect, Faults, Simulator
from testing import (
    FAST_ENV,
    SIM_ENV,
    assert_exactly_once,
    cron_flows,
    run_process,
    start_apply,
    write_plan,
)
from testing import postgres as pg

TRIALS = 24
FLOWS, PER_FLOW = 6, 50  # 300 entries per trial
DEFAULT_SEED = 20261127
DIALECTS = [
    Dialect(),
    Dialect(api="v2.1", server_zone="UTC", id_zone="server", not_found="null", duplicate="none"),
    Dialect(server_zone="GMT-5", id_zone="server", not_found="empty", duplicate="none"),
    Dialect(api="v2.1", server_zone="GMT+8", not_found="empty", duplicate="wall-clock", duplicate_window=0.002),
]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_reapply_is_exactly_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED", DEFAULT_SEED))
    print(f"CRASH_SEED={seed}")
    rng = random.Random(seed)
    mid_run = 0
    for trial in range(TRIALS):
        dialect = DIALECTS[trial % len(DIALECTS)]
        with Simulator(faults=Faults(latency=0.002), dialect=dialect, accept_unknown_flows=True) as sim:
            first_id = 1000 + trial * 10
            plan = write_plan(
                tmp_path,
                cron_flows(FLOWS, PER_FLOW, first_id=first_id),
                name=f"trial{trial}.yaml",
                api=dialect.api,
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
                    env={**SIM_ENV, **FAST_ENV},
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
                raise AssertionError(f"seed {seed} trial {trial} {dialect}: {e}") from None
            plan_check = run_process(["plan", str(plan), "--detailed-exitcode"])
            assert plan_check.returncode == 0, f"seed {seed} trial {trial}: ledger not all done"
    assert mid_run >= TRIALS // 2, f"seed {seed}: only {mid_run} kills landed mid-run"


SLOW_PROCESSING = 2.0  # seconds the service works on each trigger
SLOW_RATE = "0.4"  # triggers per second: request n leaves about 2.5(n-1) s after its intent
SLOW_FLOWS = 4  # one entry each, so flows do not wait on each other
# An unknown request may still act for the service's processing time plus a margin.
SLOW_ENV = {"PLANRUNNER_IN_FLIGHT_SECONDS": "3"}
SETTLE = 30.0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["file", "postgres"])
@pytest.mark.parametrize("kill_at", [2, 3])
def test_n3_sigkill_during_a_slow_request_sent_late_by_rate_then_reapply_is_exactly_once(
    tmp_path: Path, backend: str, kill_at: int
) -> None:
    if backend == "file":
        where = str(tmp_path / "slow.ledger.jsonl")
    else:
        where = pg.with_table(pg.require_url())
    faults = Faults(processing=SLOW_PROCESSING)
    try:
        with Simulator(faults=faults, dialect=Dialect(duplicate="none"), accept_unknown_flows=True) as sim:
            plan = write_plan(tmp_path, cron_flows(SLOW_FLOWS, 1, first_id=900), name="slow.yaml")
            env = {**SIM_ENV, **FAST_ENV, **SLOW_ENV}
            common = ("--ledger", where, "--rate", SLOW_RATE, "--concurrency", str(SLOW_FLOWS))
            proc = start_apply(
                plan, sim.url, *common, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=SLOW_ENV,
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while sim.state.trigger_count < kill_at and proc.poll() is None:
                assert time.monotonic() < deadline, "the apply never sent its requests"
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # The kill landed while request kill_at was being processed (the log has only
            # the requests the service has finished); it creates its instance regardless.
            assert len(sim.triggers()) == kill_at - 1
            for _ in range(3):
                p = run_process(
                    ["apply", str(plan), "--gateway", sim.url, "--yes", *common], env=env
                )
                if p.returncode == 0:
                    break
            assert p.returncode == 0, p.stderr[-2000:]
            assert sim.state.settle(SETTLE)
            log = sim.triggers()
            keys = {(900 + i, 1_767_225_600_000) for i in range(SLOW_FLOWS)}
            assert_exactly_once(log, keys)
            check = run_process(["plan", str(plan), "--ledger", where, "--detailed-exitcode"])
            assert check.returncode == 0, f"ledger not all done: {check.stdout[-500:]}"
    finally:
        if backend == "postgres":
            PostgresLedger(where).drop()
