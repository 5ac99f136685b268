"""Resolution speed: planrunner against a croniter loop (the baseline) and cronsim.

Run: python bench/resolve.py [--runs N]

One year (2025) of a dense (``*/5``), an hourly (``0 * * * *``) and a daily (``0 2 * * *``,
which falls in the spring-forward gap in Europe/Berlin) schedule, in UTC and Europe/Berlin.
Each tool's fire times (epoch ms) are checked equal to cronsim's before anything is timed
(croniter fires ``0 2 * * *`` twice on the fall-back day; that difference is shown, not
hidden). planrunner is timed twice: ``resolve()`` in this process (plan loaded), and the
whole ``planrunner plan --format json`` process (interpreter start, imports, rendering).
Goal: the whole process at most 0.12 x the croniter loop on ``*/5`` in Europe/Berlin.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

from _common import (
    Table,
    fmt_s,
    fmt_x,
    median_seconds,
    planrunner,
    print_tables,
    run_child,
    verdict,
)

PLAN = """version: 1
target: {{gateway: "https://apigw.example.com", orgId: o1, userId: u1}}
timezone: {zone}
flows:
  - {{name: f, flowId: 1, cron: "{expr}", from: 2025-01-01, to: 2025-12-31}}
"""
SCHEDULES = (("dense", "*/5 * * * *"), ("hourly", "0 * * * *"), ("daily", "0 2 * * *"))
ZONES = ("UTC", "Europe/Berlin")
GOAL = 0.12  # whole `plan --format json` process / croniter loop, */5 in Europe/Berlin


def window(zone: str) -> tuple[datetime, datetime]:
    z = ZoneInfo(zone)
    return datetime(2025, 1, 1, tzinfo=z), datetime(2026, 1, 1, tzinfo=z)


def croniter_loop(expr: str, zone: str) -> list[int]:
    from croniter import croniter

    start, end = window(zone)
    it = croniter(expr, start - timedelta(seconds=1))
    stop = end.timestamp()
    out = []
    while (t := it.get_next(float)) < stop:
        out.append(round(t * 1000))
    return out


def cronsim_loop(expr: str, zone: str) -> list[int]:
    from cronsim import CronSim

    start, end = window(zone)
    out = []
    for dt in CronSim(expr, start - timedelta(seconds=1)):
        if dt >= end:
            break
        out.append(round(dt.timestamp() * 1000))
    return out


def planrunner_resolve(path: Path) -> list[int]:
    from planrunner.checking import read_plan
    from planrunner.resolve import resolve

    return [e.trigger_time for e in resolve(read_plan(str(path)), 0, 200_000)[0]]


def collect(runs: int) -> list[Table]:
    table = Table(
        "Resolution: one year, fire times as epoch ms (baseline: a croniter get_next loop)",
        [
            "zone",
            "schedule",
            "entries",
            "croniter (baseline)",
            "cronsim",
            "planrunner resolve()",
            "planrunner plan --format json (process)",
            "same as cronsim",
        ],
    )
    goal_ratio = None
    with tempfile.TemporaryDirectory() as d:
        for zone in ZONES:
            for name, expr in SCHEDULES:
                path = Path(d) / f"{name}-{zone.replace('/', '-')}.yaml"
                path.write_text(PLAN.format(zone=zone, expr=expr))
                ours = planrunner_resolve(path)
                oracle = cronsim_loop(expr, zone)
                theirs = croniter_loop(expr, zone)
                cmd = planrunner("plan", str(path), "--format", "json", "--max-triggers", "200000")
                whole = run_child(cmd)
                assert whole.code == 0, whole.err[-500:]
                assert whole.out.count(b'"triggerTime"') == len(ours)
                same = "yes" if ours == oracle else "NO"
                if theirs != oracle:
                    extra = sorted(set(theirs) ^ set(oracle))
                    same += f" (croniter differs: {len(extra)} time(s), e.g. {extra[0]})"
                base = median_seconds(partial(croniter_loop, expr, zone), runs)
                sim = median_seconds(partial(cronsim_loop, expr, zone), runs)
                res = median_seconds(partial(planrunner_resolve, path), runs)
                proc = median_seconds(partial(run_child, cmd), runs)
                table.rows.append(
                    [
                        zone,
                        f"{name} `{expr}`",
                        f"{len(ours):,}",
                        fmt_s(base),
                        f"{fmt_s(sim)} ({fmt_x(sim / base)})",
                        f"{fmt_s(res)} ({fmt_x(res / base)})",
                        f"{fmt_s(proc)} ({fmt_x(proc / base)})",
                        same,
                    ]
                )
                if zone == "Europe/Berlin" and name == "dense":
                    goal_ratio = proc / base
    assert goal_ratio is not None
    table.notes.append(
        f"goal: the whole `plan --format json` process <= {GOAL} x the croniter loop on `*/5` "
        f"in Europe/Berlin: {goal_ratio:.3f}x, {verdict(goal_ratio <= GOAL)}"
    )
    table.notes.append(
        "planrunner follows Debian cron across DST changes (as cronsim does); croniter fires "
        "`0 2 * * *` twice on the Europe/Berlin fall-back day"
    )
    table.data["goal_ratio"] = goal_ratio
    return [table]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print_tables(collect(args.runs), args.runs)


if __name__ == "__main__":
    main()
