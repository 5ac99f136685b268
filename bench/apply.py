"""Apply benchmarks, each against a baseline measured in the same run.

Run: python bench/apply.py [--runs 3] [--records 1000000]

1. Latency: the simulator (its own process) answers each trigger after 20 ms. 400 entries
   over 20 flows: `planrunner apply --concurrency 16` (the whole process) against the naive
   script a user would write from the seed's sample (requests, one Session, one fsync'd
   ledger line before and after each call). Target: ours <= 0.15 x naive; ideal 1/16.
2. Throughput with no latency: durable triggers per second of a whole `planrunner apply`
   process. Target: >= 1,000/s.
3. `planrunner plan` over a ledger of 1,000,000 records: wall time and peak memory of the
   process. Target: < 3 s and < 400 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import row

from planrunner import enos, ledger
from planrunner.sim import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY

ENV = {**os.environ, "ENOS_ACCESS_KEY": DEFAULT_ACCESS_KEY, "ENOS_SECRET_KEY": DEFAULT_SECRET_KEY}
HEAD = """version: 1
target: {{gateway: "{url}", orgId: o1, userId: u1}}
timezone: UTC
flows:
"""


def start_sim(*extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "planrunner", "sim", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def write_plan(
    path: Path, url: str, flows: int, per_flow: int, first_id: int, step: str = "*/5"
) -> list[tuple[int, int]]:
    text = HEAD.format(url=url) + "".join(
        f'  - {{name: f{first_id + i}, flowId: {first_id + i}, cron: "{step} * * * *", from: 2026-01-01, count: {per_flow}}}\n'
        for i in range(flows)
    )
    path.write_text(text)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "planrunner",
            "plan",
            str(path),
            "--format",
            "json",
            "--max-triggers",
            "1000000",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [(e["flowId"], e["triggerTime"]) for e in json.loads(out)["entries"]]


def naive(url: str, entries: list[tuple[int, int]], ledger_path: Path) -> None:
    """What a user would write from the seed's sample, made durable line by line."""
    client = enos.Client(url, "o1", "u1", enos.Credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY))
    token = client.token()
    session = requests.Session()
    params = {"action": "trigger", "userId": "u1", "orgId": "o1"}
    with open(ledger_path, "ab") as f:
        for flow_id, tt in entries:
            f.write(
                json.dumps({"event": "intent", "flowId": flow_id, "triggerTime": tt}).encode()
                + b"\n"
            )
            f.flush()
            os.fsync(f.fileno())
            body = json.dumps({"flowId": flow_id, "triggerTime": tt}).encode()
            ts = int(time.time() * 1000)
            headers = {
                "apim-accesstoken": token,
                "apim-timestamp": str(ts),
                "Content-Type": "application/json",
                "apim-signature": enos.signature(token, params, body, ts, DEFAULT_SECRET_KEY),
            }
            answer = session.post(
                url + enos.TRIGGER_PATH, params=params, data=body, headers=headers, timeout=30
            ).json()
            assert answer["status"] == 0, answer
            f.write(
                json.dumps(
                    {
                        "event": "triggered",
                        "flowId": flow_id,
                        "triggerTime": tt,
                        "data": answer["data"],
                    }
                ).encode()
                + b"\n"
            )
            f.flush()
            os.fsync(f.fileno())


def timed_apply(plan: Path, url: str, *extra: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "planrunner",
            "apply",
            str(plan),
            "--gateway",
            url,
            "--yes",
            "--log-format",
            "json",
            "--max-triggers",
            "1000000",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )
    seconds = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr[-2000:]
    return seconds


def bench_latency(tmp: Path, runs: int) -> tuple[float, float]:
    ours, base = [], []
    for r in range(runs):
        proc, url = start_sim("--latency", "0.02")
        try:
            entries = write_plan(tmp / f"lat{r}.yaml", url, 20, 20, first_id=100 + r * 100)
            assert len(entries) == 400
            t0 = time.perf_counter()
            naive(url, [(f + 50, t) for f, t in entries], tmp / f"naive{r}.jsonl")
            base.append(time.perf_counter() - t0)
            ours.append(timed_apply(tmp / f"lat{r}.yaml", url, "--concurrency", "16"))
        finally:
            proc.terminate()
            proc.wait()
    return statistics.median(ours), statistics.median(base)


def bench_throughput(tmp: Path, runs: int, n_flows: int = 40, per_flow: int = 100) -> float:
    rates = []
    for r in range(runs):
        proc, url = start_sim()
        try:
            plan = tmp / f"tp{r}.yaml"
            entries = write_plan(plan, url, n_flows, per_flow, first_id=5000 + r * 100)
            seconds = timed_apply(plan, url, "--concurrency", "16")
            assert len(ledger.fold(str(plan.with_suffix("")) + ".ledger.jsonl").done) == len(
                entries
            )
            rates.append(len(entries) / seconds)
        finally:
            proc.terminate()
            proc.wait()
    return statistics.median(rates)


def make_big_ledger(tmp: Path, records: int) -> Path:
    """A plan of 2 x one year of */5 (210,240 entries) and a ledger of ``records`` records."""
    plan = tmp / "big.yaml"
    plan.write_text(
        HEAD.format(url="https://apigw.example.com")
        + "".join(
            f'  - {{name: b{i}, flowId: {i}, cron: "*/5 * * * *", from: 2025-01-01, to: 2025-12-31}}\n'
            for i in (1, 2)
        )
    )
    start = 1_735_689_600_000
    keys = [(fid, start + k * 300_000) for fid in (1, 2) for k in range(105_120)]
    path = tmp / "big.ledger.jsonl"
    written = 0
    with open(path, "wb") as f:
        chunk = []
        i = 0
        while written < records:
            fid, tt = keys[i % len(keys)] if i < len(keys) else (3 + i % 50, start + i * 60_000)
            key = f"o1/{fid}/{tt}"
            a = f"run.{i}"
            chunk.append(ledger.record("intent", key, fid, "o1", tt, a, flow="b", run="run"))
            chunk.append(
                ledger.record("triggered", key, fid, "o1", tt, a, flowInstanceId=f"{fid}-x")
            )
            written += 2
            i += 1
            if len(chunk) >= 20_000:
                f.write(ledger.encode(chunk))
                chunk = []
        f.write(ledger.encode(chunk))
    return plan


def bench_big_plan(tmp: Path, records: int, runs: int) -> tuple[float, float, float]:
    plan = make_big_ledger(tmp, records)
    times, peaks = [], []
    for _ in range(runs):
        code = (
            "import resource, subprocess, sys, time\n"
            "t = time.perf_counter()\n"
            f"p = subprocess.run([sys.executable, '-m', 'planrunner', 'plan', {str(plan)!r}, '--format', 'json', '--max-triggers', '200000'], stdout=subprocess.DEVNULL)\n"
            "assert p.returncode == 0\n"
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        times.append(float(out[0]))
        peaks.append(int(out[1]) / 1024)
    size = (tmp / "big.ledger.jsonl").stat().st_size / 1e6
    return statistics.median(times), max(peaks), size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ours, base = bench_latency(tmp, args.runs)
        print(f"1. 20 ms latency, 400 entries over 20 flows (medians of {args.runs} runs)")
        print(row("naive sequential script (baseline)", base, base))
        print(row("planrunner apply --concurrency 16 (whole process)", ours, base))
        print(
            f"   ratio {ours / base:.3f} (target <= 0.15, ideal {1 / 16:.3f}): {'met' if ours / base <= 0.15 else 'MISSED'}"
        )
        rate = bench_throughput(tmp, args.runs)
        print(
            f"2. no latency, 4,000 entries over 40 flows, --concurrency 16: {rate:,.0f} durable triggers/s "
            f"(whole process; target >= 1,000: {'met' if rate >= 1000 else 'MISSED'})"
        )
        seconds, peak, size = bench_big_plan(tmp, args.records, args.runs)
        print(
            f"3. plan over {args.records:,} ledger records ({size:.0f} MB), 210,240 entries: {seconds:.2f} s, "
            f"peak {peak:.0f} MB (targets < 3 s, < 400 MB: {'met' if seconds < 3 and peak < 400 else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
