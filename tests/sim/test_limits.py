"""Issue 20-22, simulator: the gateway's quotas, crowded minutes, Get Flow Instance's list
form, and their command-line switches.

Over loopback HTTP against the real simulator, requests built by hand.
"""

from __future__ import annotations

import os
import time

import pytest

from planrunner import protocol as P
from planrunner.commands.sim import crowd_from, quotas_from
from planrunner.errors import UsageError
from planrunner.sim import Dialect, Quota, SimFlow
from tests.sim.test_protocol import KEY, SECRET, T0, USER, Api, search_body, sim_process, simulator

FLOWS = [SimFlow(7, run_seconds=0.05), SimFlow(3377, run_seconds=0.05)]


def fresh_window(seconds: int, room: float) -> None:
    """Wait until at least ``room`` seconds are left in the current ``seconds`` window."""
    left = seconds - time.time() % seconds
    if left < room:
        time.sleep(left + 0.01)


def time_zone(api: Api) -> int:
    return api.call("GET", api.v.time, {"action": "getTimeZone"}).status_code


# --- item 7: quotas ---------------------------------------------------------------------------


def test_w4_quota_answers_429_without_retry_after_until_the_window_ends() -> None:
    with simulator(FLOWS, quotas=[Quota(3, 1)]) as (sim, api):
        fresh_window(1, 0.6)
        assert [time_zone(api) for _ in range(3)] == [200] * 3
        refused = api.trigger(7, T0)
        assert refused.status_code == 429 and "Retry-After" not in refused.headers
        assert time_zone(api) == 429
        api.login()  # the token service is another proxy: never counted, never refused
        time.sleep(1 - time.time() % 1 + 0.01)
        assert api.code(api.trigger(7, T0)) == 0
        assert [t["status"] for t in sim.triggers()] == [429, 0]


def test_w4_quota_counts_every_signed_call() -> None:
    with simulator(FLOWS, quotas=[Quota(8, 60)]) as (_sim, api):
        fresh_window(60, 15)
        iid = api.created(7, T0)
        calls = [
            api.get(iid)["status"],
            api.search(**search_body(T0, T0 + 60_000))["status"],
            api.get_flow(7)["status"],
            api.cancel(P.instance_id(7, T0 + 60_000))["status"],
            api.call("GET", api.v.time, {"action": "getCurrentTime"}).json()["status"],
            api.update_and_trigger(7, T0 + 120_000, [{"key": "a", "value": "b"}])["status"],
            api.get_log("1-20260101000000")["status"],
        ]
        assert calls == [0, 0, 0, 62102, 0, 0, 62102]  # 8 calls, each answered by the service
        assert time_zone(api) == 429


def test_w4_several_windows_at_once_and_a_429_counts_in_none() -> None:
    with simulator(FLOWS, quotas=[Quota(3, 1), Quota(5, 60)]) as (_sim, api):
        fresh_window(60, 15)
        fresh_window(1, 0.6)
        assert [time_zone(api) for _ in range(6)] == [200] * 3 + [429] * 3
        time.sleep(1 - time.time() % 1 + 0.01)
        # The three 429s did not count: the minute still has 2 calls left.
        assert [time_zone(api) for _ in range(3)] == [200, 200, 429]
        time.sleep(1 - time.time() % 1 + 0.01)
        assert time_zone(api) == 429  # the minute window, though the second is fresh


def test_w4_quota_on_the_command_line() -> None:
    assert quotas_from(["10/second", "600/minute", "5000/hour", "1/day"]) == [
        Quota(10, 1), Quota(600, 60), Quota(5000, 3600), Quota(1, 86400),
    ]  # fmt: skip
    for bad in ("0/minute", "10/week", "ten/second", "10"):
        with pytest.raises(UsageError, match="--quota: bad quota"):
            quotas_from([bad])
    env = {**os.environ, "ENOS_ACCESS_KEY": KEY, "ENOS_SECRET_KEY": SECRET}
    fresh_window(60, 15)
    with sim_process("--quota", "2/minute", "--quota", "100/second", env=env) as url:
        api = Api(url).login()
        assert [time_zone(api) for _ in range(3)] == [200, 200, 429]


# --- item 8: crowded minutes, Get Flow Instance as a list -------------------------------------


def test_w5_crowd_fills_a_minute_so_a_search_of_it_spans_pages() -> None:
    with simulator(FLOWS, crowd=[(3377, T0, 250)]) as (_sim, api):
        mine = api.created(3377, T0 + 30_000)
        found, ids, pages = [], set(), 0
        for page in range(4):
            body = search_body(T0, T0 + 60_000, expression="3377-")
            body["pagination"] = {"pageNo": page, "pageSize": 100}
            data = api.search(**body)["data"]
            assert data["count"] == 251
            pages += bool(data["flowInsts"])
            ids |= {i["instanceId"] for i in data["flowInsts"]}
            found += [i for i in data["flowInsts"] if i["flowId"] == 3377]
        assert pages == 3 and len(ids) == 251
        assert [i["instanceId"] for i in found] == [mine]
        others = ids - {mine}
        assert all(i.split("-")[0].endswith("3377") and i.split("-")[0] != "3377" for i in others)
        times = [P.parse_time(api.get(i)["data"]["triggerTime"], P.server_zone("GMT+8"))
                 for i in list(others)[:5]]  # fmt: skip
        assert all(t is not None and T0 <= t < T0 + 60_000 for t in times)
        assert api.code(api.trigger(3377, T0 + 10_000)) == 62102  # the minute is taken


def test_w5_crowd_on_the_command_line() -> None:
    assert crowd_from(["3377:2026-01-01T00:00:30Z:5", f"8:{T0 + 59_999}:2"]) == [
        (3377, T0, 5), (8, T0, 2),
    ]  # fmt: skip
    for bad in ("3377:2026-01-01T00:00:30:5", "3377:x:5", "3377:0:0", "3377"):
        with pytest.raises(UsageError, match="--crowd: bad"):
            crowd_from([bad])


def test_w8_instance_data_list_answers_a_one_element_list() -> None:
    with simulator(FLOWS, dialect=Dialect(instance_data="list")) as (_sim, api):
        iid = api.created(7, T0)
        data = api.get(iid)["data"]
        assert isinstance(data, list) and len(data) == 1 and data[0]["instanceId"] == iid
        assert api.get(P.instance_id(7, T0 + 60_000))["status"] == 62102
        search = api.search(**search_body(T0, T0 + 60_000))["data"]
        assert isinstance(search["flowInsts"][0], dict)


def test_w8_dialect_switches_on_the_command_line() -> None:
    env = {**os.environ, "ENOS_ACCESS_KEY": KEY, "ENOS_SECRET_KEY": SECRET}
    args = ("--instance-data", "list", "--parameters", "map", "--log-keep", "end",
            "--accept-unknown-flows", "--page-origin", "0", "--api", "v2.1")  # fmt: skip
    with sim_process(*args, env=env) as url:
        api = Api(url, P.V21).login()
        answer = api.update_and_trigger(7, T0, {"a": "b"})
        assert answer["code"] == 0
        assert isinstance(api.get(answer["data"]["flowInstanceId"])["data"], list)
        body = search_body(T0, T0 + 60_000)
        params = {"action": "search", **USER}
        first = api.call("POST", api.v.instances, params, body).json()["data"]
        assert first["count"] == 1 and len(first["flowInsts"]) == 1  # page 0 is the first


@pytest.mark.parametrize(
    ("option", "value"), [("--quota", "10/week"), ("--crowd", "7:yesterday:3")]
)
def test_w4_w5_bad_quota_or_crowd_is_a_one_line_usage_error(run, option: str, value: str) -> None:
    r = run("sim", "--port", "0", option, value)
    assert r.code == 2 and r.out == ""
    assert r.err.count("\n") == 1 and option in r.err and "Traceback" not in r.err
