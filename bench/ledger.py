"""Ledger benchmarks: `plan` over 10^4, 10^5 and 10^6 records, and `ledger compact`.

Run: python bench/ledger.py [--runs N] [--max-records 1000000]

The plan is two flows of one year of ``*/5`` (210,240 entries); the ledger holds an intent
and a triggered record per key (the first 210,240 keys are the plan's, the rest belong to
other flows, as in a ledger that grew for years). Each size is timed as a whole
``planrunner plan --format json`` process with its peak memory (wait4's rusage of that
child), against the same plan with no ledger (the baseline: what the ledger adds), and the
fold alone (``ledger.fold`` in this process) against the floor of parsing every line with
orjson. PostgreSQL is measured when ``PLANRUNNER_TEST_PG`` names a database and the
PostgreSQL ledger exists; ``ledger compact`` when the command exists.
Goal: `plan` over 10^6 records under 2 s and 300 MB.

Rerun rounds (issue 22): the fold is also timed over a ledger of the same size where one
flow's records carry ``parameters`` and one key in 20 has a rerun round (``round``,
``sentTime``), against the plain ledger. With ``--against REV`` (a git revision, e.g. the
commit before rounds), the fold of REV's code and of this tree's are timed on both ledgers,
each in its own process, alternately: the before/after ratio of the same run.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import (
    Table,
    available,
    fmt_s,
    fmt_x,
    median,
    planrunner,
    print_tables,
    run_child,
    verdict,
)

from testing import write_plan

START = 1_735_689_600_000  # 2025-01-01T00:00Z
PER_FLOW = 105_120
SIZES = (10_000, 100_000, 1_000_000)
GOAL_SECONDS, GOAL_MB = 2.0, 300.0

# The big plan: two flows, every 5 minutes for 2025 (bench/shared_ledger.py plans it too).
BIG_FLOWS = "".join(
    f'  - {{name: b{i}, flowId: {i}, cron: "*/5 * * * *", from: 2025-01-01, to: 2025-12-31}}\n'
    for i in (1, 2)
)


def write_ledgers(tmp: Path, sizes: tuple[int, ...]) -> dict[int, Path]:
    """One ledger per size; each smaller one is the start of the biggest."""
    from planrunner import ledger

    biggest = max(sizes)
    keys = [(fid, START + k * 300_000) for fid in (1, 2) for k in range(PER_FLOW)]
    paths = {n: tmp / f"l{n}.ledger.jsonl" for n in sizes}
    files = {n: open(p, "wb") for n, p in paths.items()}  # noqa: SIM115 - closed below
    try:
        written = i = 0
        chunk: list[dict[str, object]] = []
        while written < biggest:
            fid, tt = keys[i] if i < len(keys) else (3 + i % 50, START + i * 60_000)
            key = f"o1/{fid}/{tt}"
            a = f"run.{i}"
            chunk.append(ledger.record("intent", key, fid, "o1", tt, a, flow="b", run="run"))
            chunk.append(
                ledger.record("triggered", key, fid, "o1", tt, a, flowInstanceId=f"{fid}-x")
            )
            written += 2
            i += 1
            if written % 10_000 == 0:  # every size is a multiple of 10^4 records
                data = ledger.encode(chunk)
                for n, f in files.items():
                    if written <= n:
                        f.write(data)
                chunk = []
    finally:
        for f in files.values():
            f.close()
    return paths


RERUN_EVERY = 20  # one key in this many has a rerun round in the rounds ledger


def write_rounds_ledger(path: Path, size: int) -> Path:
    """A ledger of ``size`` records like :func:`write_ledgers`' where flow 2's records carry
    parameters and every RERUN_EVERY-th key of the plan has a rerun round (its round-0
    records make way for it, so the size stays the same)."""
    from planrunner import ledger

    keys = [(fid, START + k * 300_000) for fid in (1, 2) for k in range(PER_FLOW)]
    with open(path, "wb") as f:
        written = i = 0
        chunk: list[dict[str, object]] = []
        while written < size:
            fid, tt = keys[i] if i < len(keys) else (3 + i % 50, START + i * 60_000)
            key = f"o1/{fid}/{tt}"
            a = f"run.{i}"
            extra: dict[str, object] = {"parameters": {"date": str(tt), "out": "/data"}} if fid == 2 else {}
            if i < len(keys) and i % RERUN_EVERY == 0:
                extra |= {"round": 1, "sentTime": tt + 60_000}
            chunk.append(ledger.record("intent", key, fid, "o1", tt, a, flow="b", run="run", **extra))
            chunk.append(
                ledger.record("triggered", key, fid, "o1", tt, a, flowInstanceId=f"{fid}-x", **extra)
            )
            written += 2
            i += 1
            if len(chunk) >= 10_000:
                f.write(ledger.encode(chunk))
                chunk = []
        f.write(ledger.encode(chunk))
    return path


_FOLD_CHILD = """
import gc, json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from planrunner import ledger
keys = set(json.load(open(sys.argv[3])))
samples = []
for _ in range(int(sys.argv[4])):
    gc.collect()
    t0 = time.process_time()  # CPU seconds: other work on a shared machine counts less
    ledger.fold(sys.argv[2], keys)
    samples.append(time.process_time() - t0)
print(statistics.median(samples))
"""


def fold_in_child(src: Path, path: Path, keys_file: Path, runs: int) -> float:
    """Median CPU seconds of ``ledger.fold`` by the planrunner package under ``src``, in a child."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _FOLD_CHILD, str(src), str(path), str(keys_file), str(runs)],
        capture_output=True,
        text=True,
        cwd=keys_file.parent,  # not the repository: the child imports only ``src``'s package
        check=True,
    )
    return float(out.stdout.split()[-1])


def against_rows(rev: str, tmp: Path, paths: dict[str, Path], keys: set[str], runs: int) -> list[list[str]]:
    """The fold of ``rev``'s code and of this tree's on each ledger, alternately: before/after."""
    import json
    import subprocess

    from _common import ROOT

    old = tmp / "before"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "planrunner"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    keys_file = tmp / "keys.json"
    keys_file.write_text(json.dumps(sorted(keys)))
    rows = []
    for name, path in paths.items():
        before, after = [], []
        for _ in range(runs):  # alternate, so a busy moment of the machine hits both
            before.append(fold_in_child(old, path, keys_file, 1))
            after.append(fold_in_child(ROOT, path, keys_file, 1))
        b, a = median(before), median(after)
        rows.append([name, fmt_s(b), fmt_s(a), f"{a / b:.3f}", verdict(a / b <= 1.10)])
    return rows


def parse_floor(path: Path) -> float:
    import orjson

    t0 = time.perf_counter()
    with open(path, "rb") as f:
        for line in f:
            orjson.loads(line)
    return time.perf_counter() - t0


def fold_seconds(path: Path, keys: set[str]) -> float:
    from planrunner import ledger

    gc.collect()
    t0 = time.perf_counter()
    ledger.fold(str(path), keys)
    return time.perf_counter() - t0


def plan_keys(plan: Path) -> set[str]:
    from planrunner.checking import read_plan
    from planrunner.resolve import resolve

    return {e.key for e in resolve(read_plan(str(plan)), 0, 300_000)[0]}


def plan_process(plan: Path, ledger_spec: str, runs: int) -> tuple[float, float]:
    """(median seconds, max peak MB) of `plan --format json` over ``ledger_spec``."""
    cmd = planrunner(
        "plan", str(plan), "--format", "json", "--max-triggers", "300000", "--ledger", ledger_spec
    )
    run_child(cmd)  # warm-up: page cache and bytecode, so the first size is not penalised
    times, peaks = [], []
    for _ in range(runs):
        c = run_child(cmd)
        assert c.code == 0, c.err[-1000:]
        times.append(c.seconds)
        peaks.append(c.peak_mb)
    return median(times), max(peaks)


def postgres_rows(plan: Path, paths: dict[int, Path], base: float, runs: int) -> list[list[str]]:
    url = os.environ.get("PLANRUNNER_TEST_PG")
    why = None
    if not url:
        why = "not available (PLANRUNNER_TEST_PG not set)"
    else:
        import importlib.util

        if importlib.util.find_spec("planrunner.ledger.postgres") is None:
            why = "not available (planrunner/ledger/postgres.py does not exist yet)"
    if why is not None:
        return [["PostgreSQL", "-", why, "-", "-", "-", "-"]]
    rows = []
    assert url is not None
    for n, path in sorted(paths.items()):
        # A fresh ledger per size: import the file's records, then plan over the database.
        # The URL's database is shared; this relies on `ledger import` adding only new records,
        # so sizes are measured smallest first and each import tops up the previous one.
        imp = run_child(planrunner("ledger", "import", "--ledger", url, str(path)))
        if imp.code != 0:
            rows.append(
                [f"PostgreSQL {n:,}", "-", f"import failed: {imp.err[-200:]!r}", "-", "-", "-", "-"]
            )
            continue
        seconds, peak = plan_process(plan, url, runs)
        rows.append(
            [
                f"PostgreSQL {n:,}",
                "-",
                f"{fmt_s(seconds)} ({fmt_x(seconds / base)})",
                f"{peak:.0f} MB",
                "-",
                "-",
                "-",
            ]
        )
    return rows


def compact_row(path: Path, plan_seconds: float, runs: int) -> list[str]:
    if not available("ledger", "compact"):
        return [
            "`ledger compact` 10^6",
            "not available (the command does not exist yet)",
            "-",
            "-",
            "-",
        ]
    import subprocess

    from _common import ROOT

    usage = subprocess.run(
        planrunner("ledger", "compact", "--help"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout
    times, peaks, after = [], [], 0
    runs = 1  # one run: it takes tens of seconds and gigabytes (see the table)
    for r in range(runs):
        copy = path.with_name(f"compact{r}.ledger.jsonl")
        shutil.copyfile(path, copy)
        args = ["--ledger", str(copy)] if "--ledger" in usage else [str(copy)]
        c = run_child(planrunner("ledger", "compact", *args))
        if c.code != 0:
            return [
                "`ledger compact` 10^6",
                f"failed: {c.err.decode(errors='replace')[-200:]!r}",
                "-",
                "-",
                "-",
            ]
        times.append(c.seconds)
        peaks.append(c.peak_mb)
        with open(copy, "rb") as f:
            after = sum(1 for _ in f)
        copy.unlink()
    seconds = median(times)
    return [
        "`ledger compact` 10^6",
        f"{fmt_s(seconds)}",
        f"{max(peaks):.0f} MB",
        f"{after:,} records after",
        f"{fmt_x(seconds / plan_seconds)} of `plan` over the same ledger (1 run)",
    ]


def collect(runs: int, max_records: int = max(SIZES), against: str | None = None) -> list[Table]:
    sizes = tuple(n for n in SIZES if n <= max_records)
    table = Table(
        "Ledger: `plan --format json` over a file ledger (baseline: the same plan, no ledger)",
        [
            "records",
            "file",
            "plan process (ratio to no ledger)",
            "peak memory",
            "fold() in process",
            "orjson parse floor",
            "fold / floor",
        ],
    )
    compact = Table(
        "`ledger compact` on 10^6 records",
        ["what", "seconds", "peak memory", "result", "ratio"],
    )
    rounds_table = Table(
        f"fold() CPU seconds before and after rerun rounds (issue 22): {against or '-'} against this tree",
        ["ledger", "before", "after", "after / before", "within 10%"],
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        plan = write_plan(tmp, BIG_FLOWS, name="big.yaml")
        keys = plan_keys(plan)
        paths = write_ledgers(tmp, sizes)
        base, base_peak = plan_process(plan, str(tmp / "none.ledger.jsonl"), runs)
        table.rows.append(["0 (baseline)", "-", fmt_s(base), f"{base_peak:.0f} MB", "-", "-", "-"])
        series: dict[str, list[float]] = {
            "records": [],
            "plan": [],
            "fold": [],
            "peak": [],
            "floor": [],
        }
        for n in sizes:
            path = paths[n]
            seconds, peak = plan_process(plan, str(path), runs)
            fold = median([fold_seconds(path, keys) for _ in range(runs)])
            floor = median([parse_floor(path) for _ in range(runs)])
            table.rows.append(
                [
                    f"{n:,}",
                    f"{path.stat().st_size / 1e6:.0f} MB",
                    f"{fmt_s(seconds)} ({fmt_x(seconds / base)})",
                    f"{peak:.0f} MB",
                    fmt_s(fold),
                    fmt_s(floor),
                    fmt_x(fold / floor),
                ]
            )
            for k, v in (
                ("records", n),
                ("plan", seconds),
                ("fold", fold),
                ("peak", peak),
                ("floor", floor),
            ):
                series[k].append(float(v))
        biggest = max(sizes)
        rounds_path = write_rounds_ledger(tmp / "rounds.ledger.jsonl", biggest)
        plain_fold = series["fold"][-1]
        rounds_fold = median([fold_seconds(rounds_path, keys) for _ in range(runs)])
        table.rows.append(
            [
                f"{biggest:,} with rerun rounds and parameters",
                f"{rounds_path.stat().st_size / 1e6:.0f} MB",
                "-",
                "-",
                f"{fmt_s(rounds_fold)} ({rounds_fold / plain_fold:.3f} of the plain ledger's)",
                "-",
                "-",
            ]
        )
        if against:
            rounds_table.rows += against_rows(
                against, tmp, {f"plain {biggest:,}": paths[biggest], f"rounds {biggest:,}": rounds_path}, keys, runs
            )
        table.rows += postgres_rows(plan, paths, base, runs)
        if max(sizes) == 1_000_000:
            seconds, peak = series["plan"][-1], series["peak"][-1]
            table.notes.append(
                f"goal: `plan` over 10^6 records under {GOAL_SECONDS:.0f} s and {GOAL_MB:.0f} MB: "
                f"{seconds:.2f} s, {peak:.0f} MB; memory {verdict(peak < GOAL_MB)}; seconds are "
                "this machine's (shared, 2 CPUs), read them against the no-ledger baseline"
            )
            compact.rows.append(compact_row(paths[1_000_000], seconds, runs))
        table.notes.append(
            "the plan's 210,240 entries are resolved and rendered in every row; the fold reads "
            "every record, the plan's keys and other flows' alike"
        )
        table.data = series
    return [table, compact, *([rounds_table] if against else [])]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-records", type=int, default=max(SIZES))
    parser.add_argument("--against", metavar="REV", help="time REV's fold too (git revision)")
    args = parser.parse_args()
    print_tables(collect(args.runs, args.max_records, args.against), args.runs)


if __name__ == "__main__":
    main()
