"""Helpers for the benchmarks: medians of repeated runs, printed side by side."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls of ``fn``."""
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def row(label: str, seconds: float, baseline: float | None = None) -> str:
    """One aligned line: label, seconds, and the ratio to a baseline."""
    ratio = f"{seconds / baseline:6.3f}x" if baseline else ""
    return f"  {label:<52} {seconds:9.4f} s  {ratio}"
