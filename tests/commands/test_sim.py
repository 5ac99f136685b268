"""`planrunner sim`: the simulator binds to loopback only (D18)."""

from __future__ import annotations

import pytest

from planrunner.sim import Simulator


def test_d18_the_simulator_binds_to_loopback_only(run) -> None:
    with pytest.raises(ValueError, match="loopback"):
        Simulator(host="0.0.0.0", accept_unknown_flows=True)
    r = run("sim", "--host", "0.0.0.0", "--port", "0")
    assert r.code == 2 and "loopback" in r.err
