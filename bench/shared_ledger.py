"""The shared PostgreSQL ledger against the file ledger, measured in the same run.

Run: python bench/shared_ledger.py [--runs 3] [--records 1000000] [--entries 800]

1. Throughput: 1, 2, 4, 8 `planrunner apply` processes at once on disjoint flows, all on
   one PostgreSQL ledger table, each against its own simulator process (so the simulator
   is not what is measured). Durable triggers per second over the whole batch (first
   start to last exit), beside one apply on the file ledger.
2. `planrunner plan` over 1,000,000 ledger records (whole process): the table beside the
   file, the same records (written directly, not through apply).

The server is ``$PLANRUNNER_TEST_PG`` if set, else a throwaway one started here
(testing/postgres.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import row

from planrunner import ledger
from planrunner.ledger.postgres import PostgresLedger
from planrunner.sim import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY
from testing import apply_argv, postgres

ENV = {**os.environ, "ENOS_ACCESS_KEY": DEFAULT_ACCESS_KEY, "ENOS_SECRET_KEY": DEFAULT_SECRET_KEY}
HEAD = """version: 1
target: {{gateway: "{url}", orgId: o1, userId: u1}}
timezone: UTC
flows:
"""
RUNNERS = (1, 2, 4, 8)
FLOWS_PER_APPLY = 8
CONCURRENCY = "8"
BIG_FLOWS = (1, 2)  # the big plan: two flows, every 5 minutes for a year
YEAR_OF_5_MINUTES = 105_120
START_MS = 1_735_689_600_000  # 2025-01-01T00:00Z
CHUNK = 20_000


def start_sim() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "planrunner", "sim", "--port", "0", "--accept-unknown-flows"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def write_plan(path: Path, url: str, first_id: int, entries: int) -> None:
    per_flow = entries // FLOWS_PER_APPLY
    path.write_text(
        HEAD.format(url=url)
        + "".join(
            f'  - {{name: f{first_id + i}, flowId: {first_id + i}, cron: "*/5 * * * *", from: 2026-01-01, count: {per_flow}}}\n'
            for i in range(FLOWS_PER_APPLY)
        )
    )


def apply_cmd(plan: Path, url: str, ledger_spec: str) -> list[str]:
    return apply_argv(
        plan,
        url,
        "--ledger",
        ledger_spec,
        "--concurrency",
        CONCURRENCY,
        "--lock-timeout",
        "60",
        "--max-triggers",
        "1000000",
    )


def batch_rate(tmp: Path, n: int, spec_of: list[str], entries: int, tag: str) -> float:
    """Triggers per second of ``n`` applies at once (one simulator each)."""
    sims = [start_sim() for _ in range(n)]
    try:
        plans = []
        for i, (_, url) in enumerate(sims):
            plan = tmp / f"{tag}-{i}.yaml"
            write_plan(plan, url, 10_000 + 100 * i, entries)
            plans.append((plan, url))
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                apply_cmd(plan, url, spec_of[i]),
                env=ENV,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i, (plan, url) in enumerate(plans)
        ]
        for p in procs:
            _, err = p.communicate()
            assert p.returncode == 0, err[-2000:]
        seconds = time.perf_counter() - t0
    finally:
        for proc, _ in sims:
            proc.terminate()
            proc.wait()
    return n * (entries // FLOWS_PER_APPLY * FLOWS_PER_APPLY) / seconds


def bench_throughput(
    tmp: Path, pg_url: str, runs: int, entries: int
) -> tuple[float, dict[int, float]]:
    file_rates = []
    pg_rates: dict[int, list[float]] = {n: [] for n in RUNNERS}
    for r in range(runs):
        file_rates.append(
            batch_rate(tmp, 1, [str(tmp / f"file{r}.ledger.jsonl")], entries, f"file{r}")
        )
        for n in RUNNERS:
            spec = postgres.with_table(pg_url)
            try:
                pg_rates[n].append(batch_rate(tmp, n, [spec] * n, entries, f"pg{r}-{n}"))
            finally:
                PostgresLedger(spec).drop()
    return statistics.median(file_rates), {n: statistics.median(v) for n, v in pg_rates.items()}


def big_records(records: int) -> list[dict[str, object]]:
    """intent + triggered per key: the big plan's keys first, then keys of 50 other flows."""
    out: list[dict[str, object]] = []
    keys = [(fid, START_MS + k * 300_000) for fid in BIG_FLOWS for k in range(YEAR_OF_5_MINUTES)]
    i = 0
    while len(out) < records:
        fid, tt = keys[i] if i < len(keys) else (3 + i % 50, START_MS + i * 60_000)
        key = f"o1/{fid}/{tt}"
        a = f"run.{i}"
        out.append(
            ledger.record(
                "intent",
                key,
                fid,
                "o1",
                tt,
                a,
                gateway="https://apigw.example.com",
                flow="b",
                run="run",
            )
        )
        out.append(
            ledger.record(
                "triggered",
                key,
                fid,
                "o1",
                tt,
                a,
                gateway="https://apigw.example.com",
                flowInstanceId=f"{fid}-x",
            )
        )
        i += 1
    return out


def timed_plan(plan: Path, spec: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "planrunner",
            "plan",
            str(plan),
            "--ledger",
            spec,
            "--format",
            "json",
            "--max-triggers",
            "300000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr[-2000:]
    return seconds


def bench_big_plan(tmp: Path, pg_url: str, records: int, runs: int) -> tuple[float, float, float]:
    plan = tmp / "big.yaml"
    plan.write_text(
        HEAD.format(url="https://apigw.example.com")
        + "".join(
            f'  - {{name: b{i}, flowId: {i}, cron: "*/5 * * * *", from: 2025-01-01, to: 2025-12-31}}\n'
            for i in BIG_FLOWS
        )
    )
    recs = big_records(records)
    path = tmp / "big.ledger.jsonl"
    with open(path, "wb") as f:
        for i in range(0, len(recs), CHUNK):
            f.write(ledger.encode(recs[i : i + CHUNK]))
    spec = postgres.with_table(pg_url)
    table = PostgresLedger(spec)
    t0 = time.perf_counter()
    with table.session("bench-load", sorted({(r["orgId"], r["flowId"]) for r in recs}), 0) as session:
        assert session.add(recs) == len(recs)
    load = time.perf_counter() - t0
    del recs
    try:
        file_s = statistics.median(timed_plan(plan, str(path)) for _ in range(runs))
        pg_s = statistics.median(timed_plan(plan, spec) for _ in range(runs))
    finally:
        table.drop()
    return file_s, pg_s, load


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=800, help="entries per apply")
    args = parser.parse_args()
    pg_url = postgres.session_url()
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        file_rate, pg_rates = bench_throughput(tmp, pg_url, args.runs, args.entries)
        print(
            f"1. applies at once on disjoint flows, {args.entries} entries each, --concurrency "
            f"{CONCURRENCY}, no latency (durable triggers/s, medians of {args.runs} runs)"
        )
        print(f"  {'file ledger, 1 apply (baseline)':<52} {file_rate:9.0f} /s  1.000x")
        for n, rate in pg_rates.items():
            print(
                f"  {f'PostgreSQL ledger, {n} applies at once':<52} {rate:9.0f} /s  {rate / file_rate:.3f}x"
            )
        file_s, pg_s, load = bench_big_plan(tmp, pg_url, args.records, args.runs)
        print(
            f"2. plan over {args.records:,} ledger records, 210,240 entries (whole process, "
            f"medians of {args.runs}); table loaded with `add` in {load:.1f} s"
        )
        print(row("file ledger (baseline)", file_s, file_s))
        print(row("PostgreSQL ledger", pg_s, file_s))


if __name__ == "__main__":
    main()
