"""The soak's core: entries applied against a simulator with every fault at once and kill -9
of apply processes at random moments, repeated until every entry is done, and the tally.

``run_soak`` is what bench/soak.py runs at size and tests/runs/test_soak.py in its short form.
The tally counts duplicates (instances created twice), re-sends over an existing instance,
lost entries (no instance) and stuck ones (not done in the ledger after the last run): all
must be 0. It also keeps the peak memory (max RSS) of every apply run against the entries
it had to send.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planrunner.sim import Dialect, Faults, Simulator
from testing import FAST_ENV, ROOT, SIM_ENV, apply_argv, duplicates_and_resends, write_plan

FAULTS = [
    "62109",
    "62109-after-create",
    "503",
    "504-after-create",
    "drop-after-create",
    "malformed",
    "http-429",
    "http-500",
    "http-502",
    "http-504",
    "lookup-503",
    "lookup-62109",
    "lookup-drop",
]
DIALECTS = {
    "default": Dialect(),
    "v2.1-utc-null-none": Dialect(
        api="v2.1", server_zone="UTC", id_zone="server", not_found="null", duplicate="none"
    ),
}


class CountingFaults:
    """The simulator's faults, counting what was injected by kind."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self.injected: Counter[str] = Counter()
        self.latency = faults.latency
        self.seed = faults.seed
        self.processing = faults.processing
        self.backend_delay = faults.backend_delay

    def pick(self, number: int) -> str | None:
        kind = self._faults.pick(number)
        if kind is not None:
            self.injected[kind] += 1
        return kind

    def pick_lookup(self, number: int) -> str | None:
        kind = self._faults.pick_lookup(number)
        if kind is not None:
            self.injected[kind] += 1
        return kind


@dataclass
class Soak:
    dialect: str
    entries: int
    runs: int = 0
    kills: int = 0
    exit_codes: Counter[int] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    duplicates: int = 0
    resends: int = 0
    lost: int = 0
    stuck: int = 0
    converged: bool = False
    memory: list[tuple[int, int]] = field(default_factory=list)  # (entries to send, max RSS KiB)

    @property
    def ok(self) -> bool:
        return self.converged and not (self.duplicates or self.resends or self.lost or self.stuck)

    def lines(self) -> list[str]:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.injected.items()))
        mem = sorted(self.memory)
        low = [kib for n, kib in mem[: max(1, len(mem) // 3)]]
        high = [kib for n, kib in mem[-max(1, len(mem) // 3) :]]
        return [
            f"dialect {self.dialect}: entries {self.entries}, apply runs {self.runs}, kills {self.kills}, "
            f"exit codes {dict(sorted(self.exit_codes.items()))}",
            f"  faults injected {sum(self.injected.values())} ({faults})",
            f"  trigger requests {self.requests}; duplicates {self.duplicates}; re-sends over an "
            f"existing instance {self.resends}; lost {self.lost}; stuck {self.stuck}; converged {self.converged}",
            f"  peak memory per run: {min(k for _, k in mem) / 1024:.0f}-{max(k for _, k in mem) / 1024:.0f} MiB; "
            f"runs with the fewest entries to send ({mem[0][0]}-{mem[len(low) - 1][0]}): max {max(low) / 1024:.0f} MiB; "
            f"with the most ({mem[-len(high)][0]}-{mem[-1][0]}): max {max(high) / 1024:.0f} MiB"
            if mem
            else "  peak memory: no runs",
        ]


def _todo(plan: Path, led: Path) -> int:
    """Entries not done per `planrunner plan`."""
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "planrunner",
            "plan",
            str(plan),
            "--ledger",
            str(led),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=600,
        env={**os.environ, **SIM_ENV},
    )
    if p.returncode != 0:
        raise RuntimeError(f"plan failed ({p.returncode}): {p.stderr[-2000:]}")
    summary = json.loads(p.stdout)["summary"]
    return sum(v for k, v in summary.items() if k not in ("done", "cancelled"))


def _apply(
    plan: Path, url: str, led: Path, kill_after: float | None, log: Any
) -> tuple[int, int, bool]:
    """One apply process; kill -9 after ``kill_after`` s if still running. (exit, max RSS KiB, killed)."""
    p = subprocess.Popen(
        apply_argv(plan, url, "--ledger", str(led), "--concurrency", "8", "--format", "json"),
        stdout=subprocess.DEVNULL,
        stderr=log,
        cwd=ROOT,
        env={**os.environ, **SIM_ENV, **FAST_ENV},
    )
    killed = False
    if kill_after is not None:
        deadline = time.monotonic() + kill_after
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                return p.returncode, usage.ru_maxrss, False
            time.sleep(0.01)
        p.kill()
        killed = True
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, usage.ru_maxrss, killed


def run_soak(
    dialect: str,
    entries: int,
    flows: int,
    *,
    seed: int,
    fault_rate: float = 0.03,
    kill_rate: float = 0.3,
    kill_window: tuple[float, float] = (0.3, 4.0),
    max_runs: int = 400,
    kill_first: int = 0,
    workdir: Path | None = None,
) -> Soak:
    """Apply ``entries`` over ``flows`` until every one is done; the tally. The first
    ``kill_first`` runs are killed for sure (if still running), later ones at ``kill_rate``."""
    rng = random.Random(seed)
    per_flow = -(-entries // flows)
    result = Soak(dialect, per_flow * flows)
    faults = CountingFaults(
        Faults.parse([f"{k}={fault_rate}" for k in FAULTS], latency=0.001, seed=seed)
    )
    with (
        tempfile.TemporaryDirectory(dir=workdir) as tmp,
        Simulator(dialect=DIALECTS[dialect], accept_unknown_flows=True) as sim,
    ):
        sim.state.faults = faults  # type: ignore[assignment]
        d = Path(tmp)
        flows_text = "".join(
            f'  - {{name: f{i}, flowId: {100 + i}, cron: "{i % 60} * * * *", from: 2026-01-01, count: {per_flow}}}\n'
            for i in range(flows)
        )
        plan = write_plan(d, flows_text, api=DIALECTS[dialect].api)
        led = d / "soak.ledger.jsonl"
        with (d / "apply.log").open("ab") as log:
            while result.runs < max_runs:
                todo = _todo(plan, led)
                if todo == 0:
                    result.converged = True
                    break
                kill = result.runs < kill_first or rng.random() < kill_rate
                code, rss, killed = _apply(
                    plan, sim.url, led, rng.uniform(*kill_window) if kill else None, log
                )
                result.runs += 1
                result.kills += killed
                result.exit_codes[code] += 1
                result.memory.append((todo, rss))
        result.stuck = _todo(plan, led)
        triggers = list(sim.state.triggers)
        dupes, resends = duplicates_and_resends(triggers)
        created = {(t["flowId"], t["triggerTime"]) for t in triggers if t["flowInstanceId"]}
        result.requests = len(triggers)
        result.duplicates = len(dupes)
        result.resends = len(resends)
        result.lost = result.entries - len(created)
        result.injected = faults.injected
    return result
