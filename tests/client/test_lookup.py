"""Batched lookups (contract section 12) and lookups on the real wire (section 11), against
the simulator over loopback: windows of a day, every page, types 0, 2, 1, Get by the
recorded id only for what the searches did not return, "not found" only when every search
answered."""

from __future__ import annotations

import threading

import pytest

from planrunner import enos, lookup, protocol
from planrunner.lookup import Wanted
from planrunner.sim import Dialect, Faults, SimFlow, Simulator
from testing import make_client

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
DAY = 86_400_000
MINUTE = 60_000
GMT8 = protocol.server_zone("GMT+8")


def trigger_all(client: enos.Client, keys: list[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """Trigger each (flow, time); the instance id each got."""
    ids = {}
    for flow_id, tt in keys:
        answer = client.trigger(flow_id, tt)
        assert answer.kind is enos.Kind.OK, answer
        assert answer.flow_instance_id is not None
        ids[flow_id, tt] = answer.flow_instance_id
    return ids


def test_hundreds_of_instances_across_days_cost_a_search_per_flow_and_day() -> None:
    # Two flows, 300 entries each, every 20 minutes: 72 a day, over 100 hours.
    keys = [(f, T0 + 7_000 + i * 20 * MINUTE) for f in (3377, 4488) for i in range(300)]
    missing = [(3377, T0 + 10 * MINUTE), (4488, T0 + 2 * DAY + 10 * MINUTE)]
    with Simulator([SimFlow(3377), SimFlow(4488)]) as s:
        ids = trigger_all(make_client(s.url), keys)
        client = make_client(s.url, server_zone=GMT8)
        seen = lookup.look_up_many(client, [Wanted(f, t, None) for f, t in keys + missing])
    assert set(seen) == set(keys + missing)
    for key in keys:
        assert seen[key].state in protocol.STATUS_NAMES.values(), seen[key]
        assert seen[key].flow_instance_id == ids[key]
    for key in missing:
        assert seen[key].state == lookup.NOT_FOUND
    # 300 entries 20 minutes apart span 100 hours: 5 windows of a day per flow, one page of
    # type 0 each (72 instances a day), and types 2 and 1 only where an entry is missing.
    assert client.calls == {"flowInstances.search": 2 * 5 + 2 * 2}


@pytest.mark.parametrize(
    ("dialect", "origin"),
    [
        (Dialect(), 0),
        (Dialect(api="v2.1"), 1),
        (Dialect(api="v2.1", page_origin=0), 0),
    ],
    ids=["v2.0", "v2.1-from-1", "v2.1-from-0"],
)
def test_w5_a_crowded_minute_spanning_pages_is_read_whole_from_either_page_origin(
    dialect: Dialect, origin: int
) -> None:
    # 150 flows whose ids hold "3377-" (13377, 23377, ...) crowd 3377's minute: the search's
    # expression matches them all, and 3377's instance, triggered last, is on the second page.
    others = [k * 10_000 + 3377 for k in range(1, 151)]
    with Simulator([SimFlow(f) for f in (*others, 3377)], dialect=dialect) as s:
        boot = make_client(s.url, api=protocol.api(dialect.api))
        trigger_all(boot, [(f, T0) for f in others])
        ids = trigger_all(boot, [(3377, T0 + 5_000)])
        client = make_client(s.url, api=protocol.api(dialect.api), server_zone=GMT8)
        seen = lookup.look_up_many(client, [Wanted(3377, T0 + 5_000, None)])
        assert seen[3377, T0 + 5_000].flow_instance_id == ids[3377, T0 + 5_000]
        assert client.page_origin == origin
        # The origin is remembered: the next lookup reads only the two pages there are.
        before = client.calls["flowInstances.search"]
        again = lookup.look_up_many(client, [Wanted(3377, T0 + 5_000, None)])
        assert again[3377, T0 + 5_000].flow_instance_id == ids[3377, T0 + 5_000]
        assert client.calls["flowInstances.search"] - before == 2
        assert lookup.find_instance(client, 3377, T0 + 5_000).found is True


def test_w5_search_narrows_to_the_flows_id_prefix_and_still_filters_by_flow_id() -> None:
    with Simulator([SimFlow(3377), SimFlow(13377)]) as s:
        boot = make_client(s.url)
        trigger_all(boot, [(13377, T0)])  # an id that holds "3377-"
        client = make_client(s.url, server_zone=GMT8)
        seen = lookup.look_up_many(client, [Wanted(3377, T0, None)])
    assert seen[3377, T0].state == lookup.NOT_FOUND


@pytest.mark.parametrize("type_", [protocol.TYPE_TEMPORARY, protocol.TYPE_PERIODIC])
def test_types_2_then_1_are_searched_for_entries_still_unmatched(type_: int) -> None:
    keys = [(7, T0 + i * MINUTE) for i in range(3)]
    with Simulator([SimFlow(7, type=type_)]) as s:
        ids = trigger_all(make_client(s.url), keys)
        client = make_client(s.url, server_zone=GMT8)
        seen = lookup.look_up_many(client, [Wanted(*k, None) for k in keys])
    assert {k: seen[k].flow_instance_id for k in keys} == ids
    searches = 2 if type_ == protocol.TYPE_TEMPORARY else 3  # stops once all matched
    assert client.calls == {"flowInstances.search": searches}


@pytest.mark.parametrize("recorded", [False, True], ids=["no-recorded-id", "recorded-id"])
def test_a_failing_search_page_fails_only_that_windows_entries(recorded: bool) -> None:
    day1 = [(5, T0 + i * 60 * MINUTE) for i in range(3)]
    day2 = [(5, T0 + DAY + i * 60 * MINUTE) for i in range(3)]
    # Lookup 1 is day 1's search; lookups 2 and 3 are day 2's first search and its retry.
    faults = Faults(schedule={"lookup-503": {2, 3}})
    with Simulator([SimFlow(5)], faults=faults) as s:
        ids = trigger_all(make_client(s.url), day1 + day2)
        s.state.faults = faults  # the fault schedule counts this client's lookups only
        client = make_client(s.url, server_zone=GMT8, lookup_tries=2, lookup_backoff_cap=0)
        wanted = [Wanted(*k, ids[k] if recorded else None) for k in day1 + day2]
        seen = lookup.look_up_many(client, wanted)
    for key in day1:
        assert seen[key].flow_instance_id == ids[key] and seen[key].state != lookup.LOOKUP_FAILED
    for key in day2:
        if recorded:  # Get by the recorded id finds what the failed search did not return
            assert seen[key].flow_instance_id == ids[key] and seen[key].state != lookup.LOOKUP_FAILED
        else:  # never "not found": a search covering it did not answer
            assert seen[key].state == lookup.LOOKUP_FAILED and "503" in seen[key].reason
    assert client.calls.get("flowInstances.get", 0) == (3 if recorded else 0)


def test_w7_a_daylight_saving_server_zone_reported_as_gmt_n_never_hides_or_invents_an_instance() -> None:
    # July, while the service reports today's (winter) offset GMT-5: every time string it
    # writes reads an hour off. Hourly entries, one never triggered.
    july = 1_783_000_800_000 - 1_783_000_800_000 % (60 * MINUTE)  # 2026-07-02T...
    keys = [(9, july + h * 60 * MINUTE + 30_000) for h in range(8)]
    absent = keys[4]
    with Simulator([SimFlow(9)], dialect=Dialect(server_zone_dst="America/New_York")) as s:
        ids = trigger_all(make_client(s.url), [k for k in keys if k != absent])
        client = make_client(s.url)  # asks Get Time Zone: "GMT-5" in December
        seen = lookup.look_up_many(client, [Wanted(*k, None) for k in keys])
        assert seen[absent].state == lookup.NOT_FOUND  # not the neighbour read an hour off
        for key in keys:
            if key != absent:
                assert seen[key].flow_instance_id == ids[key], (key, seen[key])
        # One entry: Search over its minute, where only the seconds are read.
        assert lookup.find_instance(client, *keys[0]).found is True
        assert lookup.find_instance(client, *absent).found is False


def test_stop_leaves_every_entry_lookup_failed_and_sends_nothing() -> None:
    with Simulator([SimFlow(1)]) as s:
        client = make_client(s.url, server_zone=GMT8)
        stop = threading.Event()
        stop.set()
        seen = lookup.look_up_many(client, [Wanted(1, T0, None), Wanted(1, T0 + DAY * 3, "1-x")], stop)
    assert {s.state for s in seen.values()} == {lookup.LOOKUP_FAILED}
    assert {s.reason for s in seen.values()} == {"stopped"}
    assert client.calls == {}


def test_i20_failed_instances_name_their_failed_task_from_the_graph() -> None:
    import time

    keys = [(2, T0 + i * MINUTE) for i in range(4)]
    with Simulator([SimFlow(2, tasks=3, run_seconds=0.05, fails=[T0 + MINUTE, T0 + 3 * MINUTE])]) as s:
        ids = trigger_all(make_client(s.url), keys)
        client = make_client(s.url, server_zone=GMT8)
        deadline = time.monotonic() + 10
        while True:
            seen = lookup.look_up_many(client, [Wanted(*k, None) for k in keys])
            if all(x.final for x in seen.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        log = client.get_task_log(seen[keys[1]].failed_task_id or "", 1000)
    assert [seen[k].state for k in keys] == ["SUCCESS", "FAIL", "SUCCESS", "FAIL"]
    assert [seen[k].flow_instance_id for k in keys] == [ids[k] for k in keys]
    assert [seen[k].failed_task for k in keys] == [None, "task-3", None, "task-3"]
    assert seen[keys[0]].failed_task_id is None and seen[keys[1]].failed_task_id
    assert log.kind is enos.Kind.OK and "task-3 ended FAIL" in log.data["log"]


def test_w7_the_server_zone_id_candidate_is_asked_only_once_the_id_zone_is_established() -> None:
    with Simulator([SimFlow(4)], dialect=Dialect(id_zone="server")) as s:
        trigger_all(make_client(s.url), [(4, T0)])
        client = make_client(s.url, server_zone=GMT8)
        assert lookup.find_instance(client, 4, T0).found is True  # by Search: UTC digits miss
        assert client.calls == {"flowInstances.get": 1, "flowInstances.search": 1}
        established = make_client(s.url, server_zone=GMT8)
        established.id_zone = "server"  # what doctor may establish
        assert lookup.find_instance(established, 4, T0).found is True
        assert established.calls == {"flowInstances.get": 1}
