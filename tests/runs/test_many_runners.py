"""Many runners, one PostgreSQL ledger table, one simulator: exactly once, with kill -9.

Six apply processes start at once. Their plans share some flowIds (two pairs) and not
others; two of them are killed -9 mid-run and applied again until done. Every entry must
be created exactly once; applies on disjoint flows must have run at the same time; applies
sharing a flow must have been serialized (their records for that flow never interleave).
Times come from the ledger's own records (``at`` of every record of each run).
"""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from planrunner.ledger.postgres import PostgresLedger
from planrunner.sim import Faults, Simulator
from testing import (
    FAST_ENV,
    SIM_ENV,
    assert_exactly_once,
    duplicates_and_resends,
    run_process,
    start_apply,
    write_plan,
)
from testing import postgres as pg

PER_FLOW = 40
LATENCY = 0.01  # seconds per trigger answer: a run lasts long enough to overlap others
SHARED_A, SHARED_B = 900, 901
# Runner name -> its flowIds. a and b share flow 900, d and e share flow 901; c and f share
# nothing with anyone.
PLANS = {
    "a": [1, 2, SHARED_A],
    "b": [3, 4, SHARED_A],
    "c": [5, 6],
    "d": [7, 8, SHARED_B],
    "e": [9, 10, SHARED_B],
    "f": [11, 12],
}
KILLED = ("a", "d")  # killed -9 once they have sent a few triggers
KILL_AFTER = 10  # triggers of the victim's own flows before the kill
LOCK_WAIT = "120"
LATER = ("reconciled", "cancelled")  # events a later run writes for an earlier attempt


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The test server's URL (the tests fail, never skip, when there is none)."""
    return pg.require_url()


def flows_text(ids: list[int]) -> str:
    return "".join(
        f'  - {{name: f{i}, flowId: {i}, cron: "*/5 * * * *", from: 2026-01-01, count: {PER_FLOW}}}\n'
        for i in ids
    )


def run_of(rec: dict[str, object]) -> str:
    """The run id of a record (attempt ids are ``RUN.N``)."""
    return str(rec["attempt"]).rsplit(".", 1)[0]


def span(records: list[dict[str, object]]) -> tuple[float, float]:
    ts = [datetime.fromisoformat(str(r["at"])).timestamp() for r in records]
    return min(ts), max(ts)


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@pytest.mark.slow
def test_many_runners_one_table_exactly_once_overlapping_and_serialized(
    pg_url: str, tmp_path: Path
) -> None:
    url = pg.with_table(pg_url)
    plans = {name: write_plan(tmp_path, flows_text(ids), name=f"{name}.yaml") for name, ids in PLANS.items()}
    with Simulator(faults=Faults(latency=LATENCY), accept_unknown_flows=True) as sim:
        procs = {
            name: start_apply(
                plan, sim.url, "--ledger", url, "--lock-timeout", LOCK_WAIT, "--concurrency", "4",
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            for name, plan in plans.items()
        }
        # Kill each victim once it has sent a few triggers of its own (non-shared) flows.
        pending = set(KILLED)
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                own = set(PLANS[name][:2])
                sent = sum(1 for t in list(sim.state.triggers) if t["flowId"] in own)
                if sent >= KILL_AFTER or procs[name].poll() is not None:
                    procs[name].send_signal(signal.SIGKILL)
                    pending.discard(name)
            time.sleep(0.002)
        codes = {}
        for name, p in procs.items():
            _, err = p.communicate(timeout=300)
            codes[name] = (p.returncode, err[-1500:])
        for name in KILLED:
            assert codes[name][0] == -signal.SIGKILL, f"{name} was not killed mid-run: {codes[name]}"
        for name in set(PLANS) - set(KILLED):
            assert codes[name][0] == 0, f"{name}: {codes[name]}"
        # Apply the killed ones again until done, then every plan reads done from the table.
        for name in KILLED:
            for _ in range(3):
                again = run_process(
                    ["apply", str(plans[name]), "--gateway", sim.url, "--yes", "--ledger", url,
                     "--lock-timeout", LOCK_WAIT, "--log-format", "json"],
                    env={**SIM_ENV, **FAST_ENV},
                )
                if again.returncode == 0:
                    break
            assert again.returncode == 0, again.stderr[-2000:]
        for name, plan in plans.items():
            check = run_process(["plan", str(plan), "--ledger", url, "--detailed-exitcode"])
            assert check.returncode == 0, f"{name}: not all done\n{check.stdout[-1500:]}"
        triggers = sim.triggers()
    expected = {(t["flowId"], t["triggerTime"]) for t in triggers}
    all_flows = {fid for ids in PLANS.values() for fid in ids}
    assert {fid for fid, _ in expected} == all_flows
    assert len(expected) == len(all_flows) * PER_FLOW
    dupes, resends = duplicates_and_resends(triggers)
    print(f"many runners: {len(PLANS)} applies, {len(KILLED)} killed -9, "
          f"{len(triggers)} triggers, {len(dupes)} duplicates, {len(resends)} re-sends")
    assert_exactly_once(triggers, expected)

    records = [r for _, r in PostgresLedger(url).records()]
    by_run: dict[str, list[dict[str, object]]] = {}
    for r in records:
        if r["event"] not in LATER:  # written by a later run, under the attempt it settles
            by_run.setdefault(run_of(r), []).append(r)
    flows_of_run = {run: {int(str(r["flowId"])) for r in recs} for run, recs in by_run.items()}
    # Applies on disjoint flows ran at the same time: the two that share nothing (c, f)
    # overlapped each other and each overlapped some apply of the shared pairs.
    run_c = next(run for run, fl in flows_of_run.items() if fl == set(PLANS["c"]))
    run_f = next(run for run, fl in flows_of_run.items() if fl == set(PLANS["f"]))
    assert overlap(span(by_run[run_c]), span(by_run[run_f])), "disjoint applies did not overlap"
    others = [run for run, fl in flows_of_run.items() if fl & {SHARED_A, SHARED_B}]
    assert any(overlap(span(by_run[run_c]), span(by_run[o])) for o in others)
    # Applies sharing a flow were serialized: every run of one plan of a pair lies wholly
    # before or after every run of the other (the lock is held for the whole run), so their
    # triggers of the shared flow could not interleave; the later one found it done.
    for first, second in (("a", "b"), ("d", "e")):
        runs_1 = [run for run, fl in flows_of_run.items() if fl & set(PLANS[first][:2])]
        runs_2 = [run for run, fl in flows_of_run.items() if fl & set(PLANS[second][:2])]
        assert runs_1 and runs_2
        for r1 in runs_1:
            for r2 in runs_2:
                s1, s2 = span(by_run[r1]), span(by_run[r2])
                assert not overlap(s1, s2), f"{first} and {second} ran at once: {s1} {s2}"
    for shared in (SHARED_A, SHARED_B):
        writers = [run for run, recs in by_run.items() if any(r["flowId"] == shared for r in recs)]
        assert writers, f"nobody wrote flow {shared}"
    PostgresLedger(url).drop()
