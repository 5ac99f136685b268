"""Soak: thousands of entries against a simulator with every fault at once and kill -9 of
apply processes at random moments, in two dialects, repeated until every entry is done.

    python bench/soak.py                      # 5,000 entries over 50 flows, per dialect
    python bench/soak.py --entries 300 --flows 10 --kill-rate 0.5 --seed 3

Prints, per dialect: entries, apply runs, kills, faults injected (by kind), requests,
duplicates (instances created twice: must be 0), re-sends over an existing instance (must
be 0), lost (entries with no instance: must be 0), stuck (entries not done in the ledger
after the last run: must be 0), and the peak memory (max RSS) of every apply run against the
entries it had to send, which stays flat as entries grow. Exit 1 when any must-be-0 is not.
The core (``run_soak``) lives in testing/soak.py, which tests/runs/test_soak.py runs short.
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401 - puts the repository root on sys.path

from testing.soak import DIALECTS, FAULTS, run_soak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=5000, help="entries per dialect (default 5000)")
    ap.add_argument("--flows", type=int, default=50)
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--fault-rate", type=float, default=0.03, help="rate of each fault kind")
    ap.add_argument(
        "--kill-rate", type=float, default=0.3, help="share of apply runs killed with -9"
    )
    ap.add_argument(
        "--kill-first", type=int, default=10, help="kill -9 the first N runs for sure (default 10)"
    )
    ap.add_argument("--dialect", action="append", choices=sorted(DIALECTS), help="default: both")
    args = ap.parse_args()
    print(
        f"soak: {args.entries} entries over {args.flows} flows per dialect, each of {len(FAULTS)} "
        f"fault kinds at {args.fault_rate}, kill -9 of the first {args.kill_first} runs and "
        f"{args.kill_rate:.0%} of later ones, seed {args.seed}",
        flush=True,
    )
    ok = True
    for i, name in enumerate(args.dialect or list(DIALECTS)):
        started = time.monotonic()
        r = run_soak(
            name,
            args.entries,
            args.flows,
            seed=args.seed + i,
            fault_rate=args.fault_rate,
            kill_rate=args.kill_rate,
            kill_first=args.kill_first,
        )
        for line in r.lines():
            print(line)
        print(f"  {time.monotonic() - started:.0f} s", flush=True)
        ok = ok and r.ok
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
