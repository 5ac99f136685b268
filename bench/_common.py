"""Helpers for the benchmarks: medians, child processes with their peak memory, tables.

Every benchmark module has ``collect(runs) -> list[Table]`` (what ``bench/run_all.py``
renders into docs/benchmarks.md) and a ``main()`` that prints the same tables.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PY = sys.executable


def machine() -> str:
    """The machine, named: platform, CPU model and count, Python."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.platform()}; {model}; {os.cpu_count()} CPUs; Python {platform.python_version()}"
    )


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls of ``fn``."""
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def row(label: str, seconds: float, baseline: float | None = None) -> str:
    """One aligned line: label, seconds, and the ratio to a baseline."""
    ratio = f"{seconds / baseline:6.3f}x" if baseline else ""
    return f"  {label:<52} {seconds:9.4f} s  {ratio}"


@dataclass
class Child:
    """A finished child process: wall seconds, peak RSS in MB, exit code, output."""

    seconds: float
    peak_mb: float
    code: int
    out: bytes
    err: bytes


# The child runs under a small wrapper: a process forked from this (possibly big) one would
# report this one's memory as its own peak, since Linux counts the RSS it had before exec.
_WRAP = """
import resource, subprocess, sys, time
t0 = time.perf_counter()
code = subprocess.run(sys.argv[2:], check=False).returncode
seconds = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    f.write(f"{seconds} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {code}")
"""


def run_child(argv: Sequence[str], env: dict[str, str] | None = None, stdin: Any = None) -> Child:
    """Run ``argv``: its wall time and its own peak memory (``getrusage`` in a small wrapper)."""
    import tempfile

    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".usage") as usage,
    ):
        subprocess.run(
            [PY, "-c", _WRAP, usage.name, *argv],
            stdout=out,
            stderr=err,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            check=False,
        )
        seconds, maxrss, code = usage.read().split()
        out.seek(0)
        err.seek(0)
        return Child(float(seconds), int(maxrss) / 1024, int(code), out.read(), err.read())


def planrunner(*args: str) -> list[str]:
    """argv of ``python -m planrunner ARGS``."""
    return [PY, "-m", "planrunner", *args]


def available(*args: str) -> bool:
    """Whether ``planrunner ARGS --help`` works (a command another change may not have yet)."""
    p = subprocess.run(planrunner(*args, "--help"), capture_output=True, cwd=ROOT, check=False)
    return p.returncode == 0


# -- the simulator in its own process --------------------------------------------------------


class SimProcess:
    """``planrunner sim --port 0 ARGS`` as a child process; a context manager."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> SimProcess:
        self.proc = subprocess.Popen(
            planrunner("sim", "--port", "0", "--accept-unknown-flows", *self.args),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http"), self.url
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait()

    def triggers(self) -> list[dict[str, Any]]:
        """The simulator's trigger log (every trigger request and the status it got)."""
        from planrunner import protocol

        with urllib.request.urlopen(self.url + protocol.SIM_TRIGGERS_PATH, timeout=30) as r:
            result: list[dict[str, Any]] = json.loads(r.read())["triggers"]
        return result


# -- tables ---------------------------------------------------------------------------------


@dataclass
class Table:
    """One benchmark's table: a title, a header, rows, notes; ``data`` feeds the plots."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        widths = [
            max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
            for i, c in enumerate(self.columns)
        ]
        lines = [self.title]
        lines.append(
            "  " + "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True))
        )
        for r in self.rows:
            lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f} s"


def fmt_x(ratio: float) -> str:
    return f"{ratio:.3f}x"


def print_tables(tables: Sequence[Table], runs: int) -> None:
    print(f"machine: {machine()}; medians of {runs} runs")
    for t in tables:
        print()
        print(t.text())
