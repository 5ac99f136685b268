"""The soak's short form (testing/soak.py, which bench/soak.py runs at size): every fault at
once and kill -9 at random moments, in two dialects, until every entry is done: each entry
exactly once, none lost or stuck."""

from __future__ import annotations

import pytest

from testing.soak import DIALECTS, run_soak


@pytest.mark.slow
@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_soak_short_form(dialect: str) -> None:
    r = run_soak(
        dialect,
        300,
        10,
        seed=7,
        fault_rate=0.05,
        kill_rate=0.3,
        kill_window=(0.4, 1.2),
        kill_first=3,
        max_runs=80,
    )
    print("\n".join(r.lines()))
    assert r.converged, r.lines()
    assert sum(r.injected.values()) > 0
    assert r.kills >= 2, r.lines()  # apply was killed mid-run, more than once
    assert (r.duplicates, r.resends, r.lost, r.stuck) == (0, 0, 0, 0), r.lines()
