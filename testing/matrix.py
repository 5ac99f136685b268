"""The dialect matrix: one exactly-once trial per simulator dialect, as tests and a report.

``python -m testing.matrix [--full] [--trials N]`` prints, per cell, the applies needed,
the instances created twice and the entries left not done (both must be 0).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from planrunner import protocol
from planrunner.cli import main as planrunner_main
from planrunner.sim import Dialect, Faults, SimFlow, Simulator
from testing import FAST_ENV, SIM_ENV, duplicates_and_resends, write_plan

APIS = ("v2.0", "v2.1")
ZONES = ("GMT+8", "UTC", "GMT-5")
ID_ZONES = ("utc", "server")
NOT_FOUND = ("62102", "null", "empty")
DUPLICATE = ("minute-key", "wall-clock", "none")
ALL_CELLS: list[tuple[str, ...]] = list(itertools.product(APIS, ZONES, ID_ZONES, NOT_FOUND, DUPLICATE))
FAULTS = [
    "62109=0.05",
    "62109-after-create=0.05",
    "503=0.05",
    "504-after-create=0.08",
    "drop-after-create=0.05",
    "malformed=0.04",
    "lookup-503=0.1",
]
MAX_APPLIES = 4
FLOWS, PER_FLOW = 3, 8
WINDOW = 0.2  # the wall-clock dialect's window, seconds (apply's matching wait: FAST_ENV)


def sample() -> list[tuple[str, ...]]:
    """Every (api, duplicate) pair, with the other switches rotated so each value appears."""
    cells: list[tuple[str, ...]] = []
    for i, (api, dup) in enumerate(itertools.product(APIS, DUPLICATE)):
        cells.append((api, ZONES[i % 3], ID_ZONES[i % 2], NOT_FOUND[(i + 1) % 3], dup))
        cells.append((api, ZONES[(i + 1) % 3], ID_ZONES[(i + 1) % 2], NOT_FOUND[i % 3], dup))
    return cells


def hourly_flows(first_id: int) -> str:
    """Hourly entries: with server-local id digits, the instance 8 h (or 5 h) away exists too."""
    return "".join(
        f'  - {{name: f{first_id + i}, flowId: {first_id + i}, cron: "0 * * * *", '
        f"from: 2026-01-01, count: {PER_FLOW}}}\n"
        for i in range(FLOWS)
    )


def dialect(cell: tuple[str, ...]) -> Dialect:
    """The simulator dialect of a matrix cell."""
    api, zone, id_zone, not_found, duplicate = cell
    return Dialect(
        api=api,
        server_zone=zone,
        id_zone=id_zone,
        not_found=not_found,
        duplicate=duplicate,
        duplicate_window=WINDOW,
    )


@dataclass
class Trial:
    """One trial's outcome."""

    cell: str
    applies: list[int]  # exit codes, in order
    expected: set[tuple[int, int]]
    created: set[tuple[int, int]]
    duplicates: list[tuple[int, int]]
    resends: int
    faulted: int

    @property
    def not_done(self) -> int:
        """Entries without an instance at the end."""
        return len(self.expected - self.created)


def _apply(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = planrunner_main(argv)
    return code, out.getvalue(), err.getvalue()


def run_cell(cell: tuple[str, ...], workdir: Path, seed: int) -> Trial:
    """Apply a plan in ``cell``'s dialect with every fault at once until done (or 4 applies)."""
    flows = [SimFlow(100 + i, run_seconds=0.01) for i in range(FLOWS)]
    faults = Faults.parse(FAULTS, seed=seed)
    codes: list[int] = []
    with Simulator(flows, faults=faults, dialect=dialect(cell)) as sim:
        plan = write_plan(workdir, hourly_flows(100), api=cell[0])
        out = ""
        for _ in range(MAX_APPLIES):
            code, out, _err = _apply(
                ["apply", str(plan), "--gateway", sim.url, "--yes", "--format", "json"]
            )
            codes.append(code)
            if code == 0:
                break
        expected = {(e["flowId"], e["triggerTime"]) for e in json.loads(out)["entries"]}
        log = sim.triggers()
    created = {(t["flowId"], t["triggerTime"]) for t in log if t["flowInstanceId"]}
    faulted = [t for t in log if t["status"] not in (0, protocol.BAD_PARAMETER_OR_DUPLICATE)]
    dupes, resends = duplicates_and_resends(log)
    return Trial("/".join(cell), codes, expected, created, dupes, len(resends), len(faulted))


def main(argv: list[str] | None = None) -> int:
    """Print the matrix report; exit 1 if any cell duplicated or left an entry not done."""
    import os

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="all 108 cells (default: the CI sample)")
    parser.add_argument("--trials", type=int, default=1, help="trials per cell, seeds 0..N-1")
    args = parser.parse_args(argv)
    os.environ.update({**SIM_ENV, **FAST_ENV})
    cells = ALL_CELLS if args.full else sample()
    bad = 0
    print(f"{'cell':<42} trials applies dup resent not-done faults")
    for cell in cells:
        trials = []
        for t in range(args.trials):
            with tempfile.TemporaryDirectory() as d:
                trials.append(run_cell(cell, Path(d), ALL_CELLS.index(cell) * 100 + t))
        dup = sum(len(t.duplicates) for t in trials)
        resent = sum(t.resends for t in trials)
        left = sum(t.not_done for t in trials)
        applies = max(len(t.applies) for t in trials)
        faults = sum(t.faulted for t in trials)
        bad += dup + resent + left
        print(f"{'/'.join(cell):<42} {len(trials):>6} {applies:>7} {dup:>3} {resent:>6} {left:>8} {faults:>6}")
    print(f"cells {len(cells)}, trials {len(cells) * args.trials}, problems {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
