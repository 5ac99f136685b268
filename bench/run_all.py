"""Run every benchmark once and write docs/benchmarks.md with its plots (docs/benchmarks/).

Run: pip install -e '.[bench]' && python bench/run_all.py [--runs 3]

Each table compares against a baseline measured in the same run (medians of --runs runs),
so its ratios hold on a busy machine where seconds do not. Takes a few minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _common
from _common import ROOT, Table, machine

DOC = ROOT / "docs" / "benchmarks.md"
PLOTS = ROOT / "docs" / "benchmarks"


def plot_apply(table: Table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for (label, series), colour in zip(
        table.data["throughput"].items(), ("tab:blue", "tab:orange"), strict=False
    ):
        xs = sorted(c for c in series if c)
        ax.plot(
            xs, [series[c] for c in xs], marker="o", color=colour, label=f"apply, {label} latency"
        )
        ax.axhline(
            series[0], color=colour, linestyle="--", linewidth=1, label=f"naive script, {label}"
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(c for c in next(iter(table.data["throughput"].values())) if c))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_yscale("log")
    ax.set_xlabel("--concurrency")
    ax.set_ylabel("durable triggers per second")
    ax.set_title("Apply throughput against concurrency")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_ledger(table: Table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = table.data
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 4.0))
    left.plot(d["records"], d["plan"], marker="o", label="`plan` process")
    left.plot(d["records"], d["fold"], marker="o", label="fold() alone")
    left.plot(d["records"], d["floor"], marker="o", linestyle="--", label="orjson parse floor")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("ledger records")
    left.set_ylabel("seconds")
    left.set_title("Fold time against ledger size")
    left.legend(fontsize=8)
    left.grid(True, which="both", alpha=0.3)
    right.plot(
        d["records"], d["peak"], marker="o", color="tab:red", label="`plan` process peak RSS"
    )
    right.axhline(300, color="grey", linestyle="--", linewidth=1, label="goal, 300 MB")
    right.set_xscale("log")
    right.set_ylim(bottom=0)
    right.set_xlabel("ledger records")
    right.set_ylabel("MB")
    right.set_title("Peak memory against ledger size")
    right.legend(fontsize=8)
    right.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_status(table: Table, path: Path) -> None:
    """Status time against instances, before batching and now, with plan's as the floor.

    An SVG by matplotlib (already the bench extra; no new dependency): log-log axes and a
    legend, which a mermaid xychart has not; text kept as text, so the file stays small
    and its numbers diff as text."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["svg.hashsalt"] = "planrunner"  # the same ids every run
    import matplotlib.pyplot as plt

    d = table.data
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for key, label, style in (
        ("before_curve", "status before (one lookup per entry)", "o--"),
        ("status_curve", "status now (batched lookups)", "o-"),
        ("plan_curve", "plan of the same plan (baseline)", "s:"),
    ):
        series = d.get(key) or {}
        xs = sorted(series)
        if xs:
            ax.plot(xs, [series[x] for x in xs], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("instances (100 flows)")
    ax.set_ylabel("seconds (whole process)")
    ax.set_title("Status time against instances")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import apply as apply_bench
    import ledger as ledger_bench
    import resolve as resolve_bench
    import startup as startup_bench
    import status as status_bench

    started = time.perf_counter()
    sections: list[tuple[str, list[Table]]] = []
    for name, module in (
        ("Resolution", resolve_bench),
        ("Ledger", ledger_bench),
        ("Apply", apply_bench),
        ("Status", status_bench),
        ("Start-up", startup_bench),
    ):
        t0 = time.perf_counter()
        print(f"{name} ...", file=sys.stderr, flush=True)
        tables = module.collect(args.runs)
        for t in tables:
            print(t.text(), file=sys.stderr, flush=True)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        sections.append((name, tables))
    total = time.perf_counter() - started
    PLOTS.mkdir(parents=True, exist_ok=True)
    plots = {}
    for _, tables in sections:
        for t in tables:
            if "throughput" in t.data:
                plot_apply(t, PLOTS / "apply-throughput.png")
                plots[t.title] = "benchmarks/apply-throughput.png"
            if "records" in t.data:
                plot_ledger(t, PLOTS / "ledger-fold.png")
                plots[t.title] = "benchmarks/ledger-fold.png"
            if "status_curve" in t.data:
                plot_status(t, PLOTS / "status-time.svg")
                plots[t.title] = "benchmarks/status-time.svg"
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run_all.py`; do not edit by hand. Every table compares against a",
        "baseline measured in the same run, and every figure is the median of "
        f"{args.runs} runs: on a",
        "shared or slower machine the seconds change, the ratios much less. Goals are ratios,",
        "except memory (and the 2 s of `plan` over 10^6 records, which is read against the",
        "no-ledger baseline beside it).",
        "",
        f"- machine: {machine()}",
        f"- reproduce: `pip install -e '.[bench]' && python bench/run_all.py --runs {args.runs}` "
        "(each `bench/*.py` also runs alone and prints its tables)",
        f"- this run took {total:.0f} s",
        "",
    ]
    for name, tables in sections:
        lines += [f"## {name}", ""]
        for t in tables:
            lines += [t.markdown(), ""]
            if t.title in plots:
                lines += [f"![{t.title}]({plots[t.title]})", ""]
    DOC.write_text("\n".join(lines))
    print(f"wrote {DOC.relative_to(ROOT)} in {total:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    _ = _common  # the import puts the repository root on sys.path
    main()
