"""Simulator throughput: triggers per second from a single keep-alive client.

Run: python bench/sim.py [--n 3000] [--runs 3]

Starts `planrunner sim --port 0` as its own process, then sends N signed Trigger Flow
requests over one keep-alive connection, two ways: with planrunner's client (requests),
and with a bare http.client loop (pre-signed, so it measures the server). Prints the
median triggers/s of each. Target: at least 1,500/s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time
from urllib.parse import urlsplit

from planrunner import enos, protocol
from planrunner.sim import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY


def start_sim() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "planrunner", "sim", "--port", "0", "--accept-unknown-flows"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def with_client(url: str, n: int, base: int) -> float:
    client = enos.Client(url, "o1", "u1", enos.Credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY))
    client.token()
    t0 = time.perf_counter()
    for i in range(n):
        a = client.trigger(1, base + i * 60_000)
        assert a.kind is enos.Kind.OK, a
    return n / (time.perf_counter() - t0)


def bare(url: str, n: int, base: int) -> float:
    client = enos.Client(url, "o1", "u1", enos.Credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY))
    token = client.token()
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    params = {"action": "trigger", "userId": "u1", "orgId": "o1"}
    reqs = []
    for i in range(n):
        body = json.dumps({"flowId": 2, "triggerTime": base + i * 60_000}).encode()
        ts = int(time.time() * 1000)
        sig = protocol.signature(token, params, body, ts, DEFAULT_SECRET_KEY)
        reqs.append(
            (
                body,
                {
                    "apim-accesstoken": token,
                    "apim-timestamp": str(ts),
                    "apim-signature": sig,
                    "Content-Type": "application/json",
                },
            )
        )
    t0 = time.perf_counter()
    for body, headers in reqs:
        conn.request(
            "POST", protocol.V20.flows + "?action=trigger&userId=u1&orgId=o1", body, headers
        )
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    proc, url = start_sim()
    try:
        ours, raw = [], []
        for r in range(args.runs):
            base = 1_767_225_600_000 + r * args.n * 120_000
            ours.append(with_client(url, args.n, base))
            raw.append(bare(url, args.n, base))
    finally:
        proc.terminate()
        proc.wait()
    print(f"simulator in its own process; {args.n} triggers per run, medians of {args.runs} runs")
    print(f"  planrunner client (requests, keep-alive): {statistics.median(ours):8.0f} triggers/s")
    print(f"  bare http.client keep-alive, pre-signed:  {statistics.median(raw):8.0f} triggers/s")
    best = max(statistics.median(ours), statistics.median(raw))
    print(
        f"target 1,500/s: {'met' if statistics.median(ours) >= 1500 else 'MISSED'} by the planrunner client; server ceiling {best:.0f}/s"
    )


if __name__ == "__main__":
    main()
