"""`planrunner status` over 10,000 instances, when the command exists.

Run: python bench/status.py [--runs 3]

Until `planrunner status` exists (another change builds it), this prints "not available".
When it does, 10,000 entries are applied to a simulator in its own process, then `status`
(JSON) is timed as a whole process against `plan --format json` over the same plan and
ledger (the baseline: the same entries, read from the ledger without asking the service).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import (
    SimProcess,
    Table,
    available,
    fmt_s,
    fmt_x,
    median,
    planrunner,
    print_tables,
    run_child,
)

FLOWS, PER_FLOW = 100, 100


def collect(runs: int) -> list[Table]:
    table = Table(
        f"Status over {FLOWS * PER_FLOW:,} instances (baseline: `plan --format json` of the same plan)",
        ["command", "seconds (ratio to baseline)", "peak memory"],
    )
    if not available("status"):
        table.rows.append(
            ["planrunner status", "not available (the command does not exist yet)", "-"]
        )
        return [table]
    from apply import ENV, apply, write_plan

    with tempfile.TemporaryDirectory() as d, SimProcess() as sim:
        plan = Path(d) / "status.yaml"
        write_plan(plan, sim.url, FLOWS, PER_FLOW, 1)
        apply(plan, sim.url, "--concurrency", "16")
        cases = [
            ("plan --format json (baseline)", planrunner("plan", str(plan), "--format", "json")),
            (
                "status --format json",
                planrunner("status", str(plan), "--gateway", sim.url, "--format", "json"),
            ),
            (
                "status --format json --concurrency 16",
                planrunner(
                    "status",
                    str(plan),
                    "--gateway",
                    sim.url,
                    "--format",
                    "json",
                    "--concurrency",
                    "16",
                ),
            ),
        ]
        base = None
        for label, argv in cases:
            times, peaks = [], []
            for _ in range(runs):
                c = run_child(argv, env=ENV)
                if c.code not in (0, 4):
                    table.rows.append(
                        [
                            label,
                            f"failed (exit {c.code}): {c.err.decode(errors='replace')[-200:]!r}",
                            "-",
                        ]
                    )
                    break
                times.append(c.seconds)
                peaks.append(c.peak_mb)
            else:
                t = median(times)
                base = base or t
                table.rows.append(
                    [label, f"{fmt_s(t)} ({fmt_x(t / base)})", f"{max(peaks):.0f} MB"]
                )
    return [table]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print_tables(collect(args.runs), args.runs)


if __name__ == "__main__":
    main()
