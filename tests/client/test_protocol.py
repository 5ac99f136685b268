"""The wire (planrunner/protocol.py): a server zone with daylight saving time (N4)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from planrunner import enos, protocol
from planrunner.sim import Dialect, Simulator
from testing import make_client

# -- N4: a server zone with daylight saving time ------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "wall", "first", "second"),
    [
        ("America/New_York", "2026-11-01 01:30:00", 1_793_511_000_000, 1_793_514_600_000),
        ("Europe/Berlin", "2026-10-25 02:30:00", 1_792_888_200_000, 1_792_891_800_000),
    ],
)
def test_n4_an_ambiguous_wall_time_matches_either_instant(
    zone: str, wall: str, first: int, second: int
) -> None:
    z = ZoneInfo(zone)
    assert protocol.parse_times(wall, z) == (first, second)
    for tt in (first, second):
        inst = {"flowId": 7, "triggerTime": wall}
        assert protocol.same_trigger(inst, 7, tt, z)
        # Get by a derived id cannot tell the two hours apart: Search decides.
        assert not protocol.same_trigger(inst, 7, tt, z, ambiguous=False)
    assert protocol.parse_times("2026-07-01 01:30:00", z) == (protocol.parse_time("2026-07-01 01:30:00", z),)


def test_n4_entries_in_the_repeated_hour_are_found() -> None:
    first, second = 1_793_511_000_000, 1_793_514_600_000  # 01:30 EDT, then 01:30 EST
    with Simulator(dialect=Dialect(server_zone="America/New_York"), accept_unknown_flows=True) as sim:
        c = make_client(sim.url)
        for tt in (first, second):
            assert c.trigger(5, tt).kind is enos.Kind.OK
        for tt in (first, second):
            found = c.find_instance(5, tt)
            assert found.found is True, found
            assert found.flow_instance_id == protocol.instance_id(5, tt)


def test_n4_zone_has_dst() -> None:
    assert protocol.zone_has_dst("America/New_York") and protocol.zone_has_dst("Europe/Berlin")
    for fixed in ("GMT+8", "UTC", "Asia/Shanghai", "GMT-5"):
        assert not protocol.zone_has_dst(fixed)
    with pytest.raises(ValueError, match="zone"):
        protocol.zone_has_dst("Mars/Olympus")
