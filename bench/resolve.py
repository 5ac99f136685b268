"""Resolution speed: `planrunner plan --format json` on a one-year */5 plan vs croniter.

Run: python bench/resolve.py [--runs N]

Prints the median wall time of the whole `planrunner plan` process (105,120 entries in
Europe/Berlin, DST changes included) beside a bare croniter `get_next` loop over the same
window, cronsim, and a plain integer range (the floor), all measured in this run. The
target is ours <= 0.5 x the croniter loop. Also times `planrunner validate` on a small plan
(target under 0.3 s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_seconds, row

ROOT = Path(__file__).resolve().parent.parent
PLAN = """version: 1
target: {gateway: "https://apigw.example.com", orgId: o1, userId: u1}
timezone: Europe/Berlin
flows:
  - name: every-five-minutes
    flowId: 1
    cron: "*/5 * * * *"
    from: 2025-01-01
    to: 2025-12-31
"""
ZONE = ZoneInfo("Europe/Berlin")
START = datetime(2025, 1, 1, tzinfo=ZONE)
END = datetime(2026, 1, 1, tzinfo=ZONE)
EXPECTED = 105_120


def croniter_loop() -> int:
    from datetime import timedelta

    from croniter import croniter

    it = croniter("*/5 * * * *", START - timedelta(seconds=1))
    n = 0
    end = END.timestamp()
    while it.get_next(float) < end:
        n += 1
    return n


def cronsim_loop() -> int:
    from datetime import timedelta

    from cronsim import CronSim

    n = 0
    for dt in CronSim("*/5 * * * *", START - timedelta(seconds=1)):
        if dt >= END:
            break
        n += 1
    return n


def int_range() -> int:
    start = int(START.timestamp() * 1000)
    return len(list(range(start, int(END.timestamp() * 1000), 300_000)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "year.yaml"
        plan.write_text(PLAN)
        small = ROOT / "plans" / "example.yaml"
        cmd = [
            sys.executable,
            "-m",
            "planrunner",
            "plan",
            str(plan),
            "--format",
            "json",
            "--max-triggers",
            "200000",
        ]
        out = subprocess.run(cmd, capture_output=True, check=True, text=True).stdout
        n = len(json.loads(out)["entries"])
        assert n == EXPECTED, n
        assert croniter_loop() == EXPECTED
        assert cronsim_loop() == EXPECTED
        ours = median_seconds(
            lambda: subprocess.run(cmd, capture_output=True, check=True), args.runs
        )
        base = median_seconds(croniter_loop, max(1, args.runs // 2))
        sim = median_seconds(cronsim_loop, max(1, args.runs // 2))
        floor = median_seconds(int_range, args.runs)
        validate = median_seconds(
            lambda: subprocess.run(
                [sys.executable, "-m", "planrunner", "validate", str(small)],
                capture_output=True,
                check=True,
            ),
            args.runs,
        )
    print(f"one year of */5 in Europe/Berlin: {EXPECTED:,} entries; medians of {args.runs} runs")
    print(row("croniter get_next loop (baseline)", base, base))
    print(row("cronsim loop", sim, base))
    print(row("plain integer range (floor)", floor, base))
    print(row("planrunner plan --format json (whole process)", ours, base))
    print(row("planrunner validate plans/example.yaml (whole process)", validate))
    verdict = "meets" if ours <= 0.5 * base else "MISSES"
    print(
        f"ours / croniter = {ours / base:.3f} ({verdict} the 0.5 target); validate {'under' if validate < 0.3 else 'OVER'} 0.3 s"
    )


if __name__ == "__main__":
    main()
