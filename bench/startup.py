"""Start-up: `--help`, `validate` and `plan` on a small plan, against a bare interpreter.

Run: python bench/startup.py [--runs 5]

Each is a whole process; the baseline is `python -c pass` measured in the same run, so the
ratio says what planrunner's imports and work add to the interpreter's own start.
"""

from __future__ import annotations

import argparse

from _common import PY, ROOT, Table, fmt_s, fmt_x, median, planrunner, print_tables, run_child

SMALL = str(ROOT / "plans" / "example.yaml")


def collect(runs: int) -> list[Table]:
    cases = [
        ("python -c pass (baseline)", [PY, "-c", "pass"]),
        ("planrunner --help", planrunner("--help")),
        ("planrunner validate plans/example.yaml", planrunner("validate", SMALL)),
        (
            "planrunner plan plans/example.yaml",
            planrunner("plan", SMALL, "--ledger", "/nonexistent/none.jsonl"),
        ),
        (
            "planrunner plan plans/example.yaml --format json",
            planrunner("plan", SMALL, "--format", "json", "--ledger", "/nonexistent/none.jsonl"),
        ),
    ]
    table = Table(
        "Start-up: whole processes (baseline: the bare interpreter)",
        ["command", "seconds (ratio to baseline)", "peak memory"],
    )
    base = None
    for label, argv in cases:
        times, peaks = [], []
        for _ in range(runs):
            c = run_child(argv)
            assert c.code == 0, (label, c.err[-500:])
            times.append(c.seconds)
            peaks.append(c.peak_mb)
        t = median(times)
        base = base or t
        table.rows.append([label, f"{fmt_s(t)} ({fmt_x(t / base)})", f"{max(peaks):.0f} MB"])
    return [table]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print_tables(collect(args.runs), args.runs)


if __name__ == "__main__":
    main()
