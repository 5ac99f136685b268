"""`planrunner status` at scale, and a lookup-heavy apply after a crash, with requests made.

Run: python bench/status.py [--runs 3] [--sizes 1000,10000,100000]

1. Status: 100 flows of 10 to 1,000 entries each are applied to a simulator in its own
   process, then `status --format json` is timed as a whole process against `plan --format
   json` of the same plan and ledger (the baseline: the same entries, from the ledger,
   without asking the service). Goals (contract section 12): within 2x of plan over 10^4
   instances, and about instances/100 + flows requests.
2. Reconciliation after a crash: 1,000 entries over 40 flows whose intents a killed run
   left (an hour old, past the in-flight wait), reconciled by `apply`: when the instances
   exist (the run died after sending) and when none does (it died before).

Requests are counted on the simulator's side: the simulator runs under a small wrapper that
counts each request it serves by path and action (a counting hop in between would slow
what is timed). ``--code DIR`` runs the planrunner of DIR (an export of an older commit)
for every timed command, the simulator excepted; ``--save FILE`` writes the figures as JSON:
that is how docs/benchmarks/status-before.json, the "before" curve of the plot, was made.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import (
    PY,
    ROOT,
    Table,
    fmt_s,
    fmt_x,
    median,
    print_tables,
    run_child,
    verdict,
)

from planrunner import ledger, times
from planrunner.sim import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY
from testing import cron_flows, write_plan

ENV = {"ENOS_ACCESS_KEY": DEFAULT_ACCESS_KEY, "ENOS_SECRET_KEY": DEFAULT_SECRET_KEY}
FLOWS = 100
FIRST_ID = 1000  # flowIds 1000-1099: none is the end of another (see the table's note)
SIZES = (1_000, 10_000, 100_000)
RATIO_GOAL = 2.0  # status within 2x of plan over 10^4 instances
REQUESTS_SLACK = 1.5  # "about" instances/100 + flows: at most this many times it
CRASH_FLOWS, CRASH_PER_FLOW = 40, 25
BEFORE = ROOT / "docs" / "benchmarks" / "status-before.json"
COUNTS_PATH = "/__bench__/requests"

# The simulator under a wrapper that counts requests by "METHOD path?action", and the
# seconds spent answering them ("busy"), and answers GET /__bench__/requests with both so
# far (and resets them).
_COUNTING_SIM = """
import collections, json, sys, threading, time
from urllib.parse import parse_qsl, urlsplit
from planrunner.sim import http as sim_http
counts, busy, lock = collections.Counter(), [0.0], threading.Lock()
def counted(original):
    def handle(self):
        parts = urlsplit(self.path)
        if parts.path == PATH:
            with lock:
                body = json.dumps({**counts, "busy": busy[0]}).encode()
                counts.clear()
                busy[0] = 0.0
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        action = dict(parse_qsl(parts.query)).get("action", "")
        t0 = time.perf_counter()
        original(self)
        with lock:
            counts[f"{self.command} {parts.path.rsplit('/', 1)[-1]}?{action}".rstrip("?")] += 1
            busy[0] += time.perf_counter() - t0
    return handle
sim_http.Handler.do_GET = counted(sim_http.Handler.do_GET)
sim_http.Handler.do_POST = counted(sim_http.Handler.do_POST)
from planrunner.cli import main
raise SystemExit(main(["sim", "--port", "0", *sys.argv[1:]]))
""".replace("PATH", repr(COUNTS_PATH))

# Runs ``python -m planrunner`` from another source tree (``--code``).
_FROM_CODE = "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); runpy.run_module('planrunner', run_name='__main__', alter_sys=True)"


class CountingSim:
    """``planrunner sim`` (this tree's) in its own process, counting the requests it serves;
    ``flow_ids`` are listed in its fixture (Get Flow knows them: apply asks it first)."""

    def __init__(self, tmp: Path, flow_ids: range) -> None:
        self.fixture = tmp / f"flows-{flow_ids.start}-{flow_ids.stop}.yaml"
        self.fixture.write_text("".join(f"- {{flowId: {i}}}\n" for i in flow_ids))
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> CountingSim:
        self._proc = subprocess.Popen(
            [PY, "-c", _COUNTING_SIM, "--flows", str(self.fixture), *sim_args()],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self._proc.stdout is not None
        self.url = self._proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError(f"the simulator did not start: {self.url!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()

    def take(self) -> tuple[dict[str, int], float]:
        """The requests served since the last take, by kind, and the seconds spent answering
        them (both reset)."""
        with urllib.request.urlopen(self.url + COUNTS_PATH, timeout=30) as r:
            counts: dict[str, Any] = json.loads(r.read())
        busy = float(counts.pop("busy", 0.0))
        return counts, busy


@functools.cache
def sim_args() -> list[str]:
    """The simulator accepts the bench's flows without a fixture, when it has the switch."""
    help_text = subprocess.run(
        [PY, "-m", "planrunner", "sim", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout
    return ["--accept-unknown-flows"] if "--accept-unknown-flows" in help_text else []


def command(code: Path | None, *args: str) -> list[str]:
    """argv of ``planrunner ARGS``, from ``code`` when given (else this tree)."""
    if code is None:
        return [PY, "-m", "planrunner", *args]
    return [PY, "-c", _FROM_CODE, str(code), *args]


def looked_up(counts: dict[str, int]) -> int:
    """Requests made to the service's instance and flow APIs (the token and zone excluded)."""
    return sum(n for k, n in counts.items() if "Instances" in k or "flows" in k)


def apply(code: Path | None, plan: Path, url: str, *extra: str) -> tuple[float, dict[str, Any]]:
    """A whole `planrunner apply` process: (wall seconds, its final log line)."""
    c = run_child(
        command(
            code, "apply", str(plan), "--gateway", url, "--yes", "--log-format", "json",
            "--max-triggers", "1000000", "--concurrency", "16", *extra,
        ),
        env=ENV,
    )  # fmt: skip
    finished = [
        json.loads(line) for line in c.err.decode().splitlines() if "apply finished" in line
    ]
    if c.code != 0 or not finished:
        raise RuntimeError(f"apply failed (exit {c.code}): {c.err[-2000:]!r}")
    return c.seconds, finished[-1]


def timed(code: Path | None, runs: int, *args: str) -> tuple[float, float, list[int]]:
    """(median seconds, peak MB, exit codes) of ``runs`` whole processes."""
    secs, peaks, codes = [], [], []
    for _ in range(runs):
        c = run_child(command(code, *args), env=ENV)
        if c.code not in (0, 1, 4):
            raise RuntimeError(f"{args[0]} failed (exit {c.code}): {c.err[-2000:]!r}")
        secs.append(c.seconds)
        peaks.append(c.peak_mb)
        codes.append(c.code)
    return median(secs), max(peaks), codes


def status_at(code: Path | None, size: int, runs: int, tmp: Path) -> dict[str, Any]:
    """status and plan over ``size`` applied instances: seconds, ratio, requests."""
    per_flow = size // FLOWS
    with CountingSim(tmp, range(FIRST_ID, FIRST_ID + FLOWS)) as sim:
        plan = write_plan(
            tmp, cron_flows(FLOWS, per_flow, FIRST_ID), gateway=sim.url, name=f"status{size}.yaml"
        )
        apply(code, plan, sim.url)
        runs_here = runs if size <= 10_000 else 1  # 10^5: one run each, minutes otherwise
        plan_s, plan_mb, _ = timed(
            code, runs_here, "plan", str(plan), "--format", "json", "--max-triggers", "1000000"
        )
        sim.take()
        status_s, status_mb, _ = timed(
            code, runs_here, "status", str(plan), "--gateway", sim.url, "--format", "json",
            "--max-triggers", "1000000",
        )  # fmt: skip
        counts, busy = sim.take()
    made = looked_up(counts) // runs_here
    return {
        "instances": size,
        "flows": FLOWS,
        "runs": runs_here,
        "plan": plan_s,
        "planMB": plan_mb,
        "status": status_s,
        "statusMB": status_mb,
        "requests": made,
        "byKind": {k: n // runs_here for k, n in sorted(counts.items())},
        "simBusy": busy / runs_here,
    }


def crash_apply(code: Path | None, exist: bool, tmp: Path) -> dict[str, Any]:
    """apply over 1,000 entries whose intents a killed run left: seconds and requests."""
    n = CRASH_FLOWS * CRASH_PER_FLOW
    with CountingSim(tmp, range(1, CRASH_FLOWS + 1)) as sim:
        name = f"crash-{'exist' if exist else 'absent'}.yaml"
        plan = write_plan(tmp, cron_flows(CRASH_FLOWS, CRASH_PER_FLOW), gateway=sim.url, name=name)
        if exist:  # the killed run's requests reached the service
            apply(code, plan, sim.url, "--ledger", str(tmp / f"{name}.first.jsonl"))
        from planrunner.checking import read_plan
        from planrunner.resolve import resolve

        entries = resolve(read_plan(str(plan)), 0, 1_000_000)[0]
        an_hour_ago = times.format_utc(int(time.time() * 1000) - 3_600_000)
        records = []
        for i, e in enumerate(entries):
            r = ledger.record(
                "intent", e.key, e.flow_id, e.org_id, e.trigger_time, f"old.{i}",
                gateway=sim.url.rstrip("/"), flow=e.flow, run="old",
            )  # fmt: skip
            r["at"] = an_hour_ago  # past the in-flight wait: what is timed is the lookups
            records.append(r)
        crashed = tmp / f"{name}.jsonl"
        crashed.write_bytes(ledger.encode(records))
        sim.take()
        wall, fin = apply(code, plan, sim.url, "--ledger", str(crashed))
        counts, busy = sim.take()
    return {
        "entries": n,
        "instancesExist": exist,
        "seconds": fin.get("seconds"),
        "process": wall,
        "requests": looked_up(counts),
        "triggers": sum(v for k, v in counts.items() if "trigger" in k.lower()),
        "byKind": dict(sorted(counts.items())),
        "simBusy": busy,
        "reconciled": fin.get("reconciled", 0),
        "triggered": fin.get("triggered", 0),
    }


def measure(code: Path | None, runs: int, sizes: tuple[int, ...]) -> dict[str, Any]:
    """Every figure of this bench, as data."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        status = [status_at(code, n, runs, tmp) for n in sizes]
        crash = [crash_apply(code, exist, tmp) for exist in (True, False)]
    return {"status": status, "crash": crash}


def kinds(by_kind: dict[str, int]) -> str:
    """``1,000 Get, 120 Search``: the lookups by kind (the token and zone left out)."""
    names = {"get": "Get", "search": "Search", "getLog": "getLog", "trigger": "trigger"}
    parts = []
    for k, n in by_kind.items():
        action = k.rpartition("?")[2]
        what = k.split()[1].split("?")[0]
        if what in ("flowInstances", "taskInstances", "flows") and action in names:
            label = "Get Flow" if what == "flows" and action == "get" else names[action]
            parts.append(f"{n:,} {label}")
    return ", ".join(parts) or "-"


def tables(fig: dict[str, Any], before: dict[str, Any] | None) -> list[Table]:
    """The status table, the crash table and the plot's data."""
    old = {s["instances"]: s for s in (before or {}).get("status", [])}
    t = Table(
        f"Status over {FLOWS} flows (baseline: `plan --format json` of the same plan and ledger)",
        [
            "instances",
            "plan (baseline)",
            "status (ratio to plan)",
            "peak memory",
            "requests (target: instances/100 + flows)",
            "by kind",
            "simulator busy",
            "before: status (ratio), requests",
        ],
    )
    notes = []
    for s in fig["status"]:
        n, target = s["instances"], s["instances"] // 100 + s["flows"]
        ratio = s["status"] / s["plan"]
        was = old.get(n)
        t.rows.append(
            [
                f"{n:,}",
                fmt_s(s["plan"]),
                f"{fmt_s(s['status'])} ({fmt_x(ratio)})",
                f"{s['statusMB']:.0f} MB",
                f"{s['requests']:,} ({target:,})",
                kinds(s["byKind"]),
                fmt_s(s["simBusy"]),
                f"{fmt_s(was['status'])} ({fmt_x(was['status'] / was['plan'])}), {was['requests']:,}"
                if was
                else "-",
            ]
        )
        if n == 10_000:
            notes.append(
                f"goal: status over 10^4 within {RATIO_GOAL:g}x of plan: {ratio:.2f}x, "
                f"{verdict(ratio <= RATIO_GOAL)}"
            )
        notes.append(
            f"goal over {n:,}: about {target:,} requests: {s['requests']:,}, "
            f"{verdict(s['requests'] <= target * REQUESTS_SLACK)}"
        )
    notes.append(
        "requests: lookups counted by the simulator (the token and time-zone calls left out); "
        "simulator busy: the seconds it spent answering them (its Search reads every "
        "instance it holds, per page); "
        f"10^5: one run each; before: {(before or {}).get('commit', 'not measured')}"
    )
    notes.append(
        "flowIds 1000-1099: Search narrows `expression` to `{flowId}-`, which the service "
        "matches as a substring of instance ids, so with flowIds 1-100 flow 1's search also "
        "returns flows 11, 21, ... 91 (filtered out after): 281 requests for 10^4, not 200"
    )
    t.notes = notes
    t.data = {
        "status_curve": {s["instances"]: s["status"] for s in fig["status"]},
        "plan_curve": {s["instances"]: s["plan"] for s in fig["status"]},
        "before_curve": {k: v["status"] for k, v in old.items()},
    }
    c = Table(
        f"Apply after a crash: {CRASH_FLOWS * CRASH_PER_FLOW:,} unknown entries over "
        f"{CRASH_FLOWS} flows, --concurrency 16",
        ["the killed run", "apply run time", "whole process", "requests", "by kind", "result",
         "before: run time, requests"],
    )  # fmt: skip
    old_crash = {x["instancesExist"]: x for x in (before or {}).get("crash", [])}
    for x in fig["crash"]:
        was = old_crash.get(x["instancesExist"])
        c.rows.append(
            [
                "had sent every request" if x["instancesExist"] else "had sent nothing",
                fmt_s(x["seconds"]),
                fmt_s(x["process"]),
                f"{x['requests']:,}",
                kinds(x["byKind"]),
                f"{x['reconciled']:,} reconciled, {x['triggered']:,} triggered",
                f"{fmt_s(was['seconds'])}, {was['requests']:,}" if was else "-",
            ]
        )
    c.notes.append(
        "each entry has an intent an hour old and no answer: apply looks it up before "
        "sending anything (section 5); requests include the triggers of the second row"
    )
    return [t, c]


def collect(runs: int, sizes: tuple[int, ...] = SIZES) -> list[Table]:
    """The tables for docs/benchmarks.md (the "before" figures from their JSON file)."""
    before = json.loads(BEFORE.read_text()) if BEFORE.exists() else None
    return tables(measure(None, runs, sizes), before)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default=",".join(str(n) for n in SIZES), help='"" skips status')
    parser.add_argument("--code", type=Path, help="run the planrunner of this source tree")
    parser.add_argument("--save", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--commit", default="", help="what --code is, for --save")
    args = parser.parse_args()
    sizes = tuple(int(x) for x in args.sizes.split(",") if x)  # "": the crash table only
    fig = measure(args.code, args.runs, sizes)
    if args.save:
        fig["commit"] = args.commit or str(args.code or "this tree")
        fig["command"] = " ".join(["python", *sys.argv])
        args.save.write_text(json.dumps(fig, indent=1) + "\n")
    before = None if args.code else (json.loads(BEFORE.read_text()) if BEFORE.exists() else None)
    print_tables(tables(fig, before), args.runs)


if __name__ == "__main__":
    main()
