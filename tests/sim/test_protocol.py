"""The simulator against the service as documented (docs/protocol.md, docs/simulator.md).

Requests are built by hand here (plain `requests`, digests from planrunner.protocol), never
with planrunner's client, so that the client and the simulator cannot share a misreading.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from planrunner import protocol as P
from planrunner.commands import sim as sim_command
from planrunner.errors import UsageError
from planrunner.sim import Dialect, Faults, SimFlow, Simulator, load_flows
from testing import ROOT

KEY, SECRET = "app-key", "app-secret"
T0 = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC
USER = {"userId": "u1", "orgId": "o1"}
FLOWS = [
    SimFlow(
        3377, owners=("alice",), users=("u1",), org_id="o1", run_seconds=0.3, name="daily-report"
    ),
    SimFlow(2430, users=("u1",), org_id="o1", tasks=0),
    SimFlow(11, users=("u2",), org_id="o1"),
    SimFlow(12, users=("u1",), org_id="o1", locked=True),
    SimFlow(40, owners=("alice", "bob"), users=("u1",), org_id="o1", type=2, run_seconds=0.05),
    SimFlow(998),  # any user, any org
]


def now_ms() -> int:
    return int(time.time() * 1000)


class Api:
    """A hand-made caller: tokens and signed calls, over one keep-alive session."""

    def __init__(self, url: str, version: P.Api = P.V20) -> None:
        self.url = url
        self.v = version
        self.http = requests.Session()
        self.token = ""
        self.ts = now_ms()

    def fresh_ts(self) -> int:
        self.ts = max(self.ts + 1, now_ms())
        return self.ts

    def token_call(
        self, path: str = P.TOKEN_GET_PATH, *, key: str = KEY, secret: str = SECRET, **extra: Any
    ) -> dict[str, Any]:
        ts = self.fresh_ts()
        body = {"appKey": key, "encryption": P.token_encryption(key, ts, secret), "timestamp": ts}
        body.update(extra)
        result: dict[str, Any] = self.http.post(self.url + path, json=body, timeout=5).json()
        return result

    def login(self) -> Api:
        self.token = self.token_call()["data"]["accessToken"]
        return self

    def call(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        secret: str = SECRET,
    ) -> requests.Response:
        raw = json.dumps(body).encode() if body is not None else b""
        tok = self.token if token is None else token
        ts = now_ms()
        sig = P.signature(tok, params, raw or None, ts, secret)
        headers = {"apim-accesstoken": tok, "apim-timestamp": str(ts), "apim-signature": sig}
        if body is not None:
            headers["Content-Type"] = "application/json;charset=UTF-8"
        return self.http.request(
            method, self.url + path, params=params, data=raw or None, headers=headers, timeout=5
        )

    def code(self, r: requests.Response) -> int:
        assert r.status_code == 200, r.text
        value: int = r.json()[self.v.code_key]
        return value

    def trigger(
        self, flow_id: int, tt: int, user: str = "u1", org: str = "o1"
    ) -> requests.Response:
        params = {"action": "trigger", "userId": user, "orgId": org}
        return self.call("POST", self.v.flows, params, {"flowId": flow_id, "triggerTime": tt})

    def update_and_trigger(
        self, flow_id: int, tt: int, parameters: Any, user: str = "u1", org: str = "o1"
    ) -> dict[str, Any]:
        params = {"action": "updateAndTrigger", "userId": user, "orgId": org}
        body = {"flowId": flow_id, "triggerTime": tt, "parameters": parameters}
        result: dict[str, Any] = self.call("POST", self.v.flows, params, body).json()
        return result

    def get_flow(self, flow_id: int) -> dict[str, Any]:
        params = {"action": "get", "flowId": str(flow_id), **USER}
        result: dict[str, Any] = self.call("GET", self.v.flows, params).json()
        return result

    def get_log(self, task_inst_id: str, max_length: int | None = None) -> dict[str, Any]:
        params = {"action": "getLog", "taskInstId": task_inst_id, **USER}
        params["maxLength"] = "" if max_length is None else str(max_length)
        path = self.v.prefix + "/taskInstances"
        result: dict[str, Any] = self.call("GET", path, params).json()
        return result

    def created(self, flow_id: int, tt: int) -> str:
        r = self.trigger(flow_id, tt).json()
        assert r[self.v.code_key] == 0, r
        iid: str = r["data"]["flowInstanceId"]
        return iid

    def get(self, iid: str) -> dict[str, Any]:
        params = {"action": "get", "flowInstId": iid, **USER}
        result: dict[str, Any] = self.call("GET", self.v.instances, params).json()
        return result

    def search(self, **body: Any) -> dict[str, Any]:
        params = {"action": "search", **USER}
        result: dict[str, Any] = self.call("POST", self.v.instances, params, body).json()
        return result

    def cancel(self, iid: str) -> dict[str, Any]:
        params = {"action": "cancel", **USER}
        result: dict[str, Any] = self.call(
            "POST", self.v.instances, params, {"flowInstId": iid}
        ).json()
        return result


def search_body(lo: int | str, hi: int | str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": 0,
        "owner": "",
        "expression": "",
        "fromTriggerTime": lo,
        "toTriggerTime": hi,
        "status": P.ALL_STATUSES,
        "pagination": {"pageNo": 0, "pageSize": 100},
    }
    body.update(over)
    return body


@contextmanager
def simulator(flows: list[SimFlow] = FLOWS, **kw: Any) -> Iterator[tuple[Simulator, Api]]:
    dialect = kw.pop("dialect", None) or Dialect()
    with Simulator(flows, access_key=KEY, secret_key=SECRET, dialect=dialect, **kw) as sim:
        yield sim, Api(sim.url, dialect.version).login()


@pytest.fixture
def gw() -> Iterator[tuple[Simulator, Api]]:
    with simulator() as pair:
        yield pair


# --- envelopes and paths ----------------------------------------------------------------------


def test_v20_envelope_and_paths(gw) -> None:
    _sim, api = gw
    assert api.trigger(3377, 1574385824000).json() == {
        "status": 0,
        "msg": " Success",
        "data": {"flowInstanceId": "3377-20191122012300"},
    }
    assert api.call("GET", P.V20.time, {"action": "getTimeZone"}).json()["msg"] == "Success"
    other = api.call("GET", P.V21.time, {"action": "getTimeZone"})
    assert other.status_code == 404


def test_v21_envelope_and_paths() -> None:
    with simulator(dialect=Dialect(api="v2.1")) as (_sim, api):
        assert api.trigger(3377, 1574385824000).json() == {
            "code": 0,
            "msg": "OK",
            "data": {"flowInstanceId": "3377-20191122012300"},
        }
        assert api.trigger(2430, T0).json()["code"] == 62104
        assert api.call("GET", P.V21.time, {"action": "getTimeZone"}).json() == {
            "code": 0,
            "msg": "OK",
            "data": {"timezone": "GMT+8"},
        }
        assert api.call("POST", P.V20.flows, {"action": "trigger", **USER}, {}).status_code == 404


# --- tokens and signatures --------------------------------------------------------------------


def test_token_is_the_same_while_valid_and_accepts_a_string_timestamp(gw) -> None:
    _sim, api = gw
    first = api.token_call()
    assert first["status"] == 0 and first["business"] == "apim-token-service"
    assert first["data"]["expire"] == 7200
    assert api.token_call()["data"]["accessToken"] == first["data"]["accessToken"]
    ts = api.fresh_ts()
    as_string = {
        "appKey": KEY,
        "encryption": P.token_encryption(KEY, ts, SECRET),
        "timestamp": str(ts),
    }
    r = requests.post(api.url + P.TOKEN_GET_PATH, json=as_string, timeout=5).json()
    assert r["status"] == 0 and r["data"]["accessToken"] == first["data"]["accessToken"]


def test_token_error_codes(gw) -> None:
    _sim, api = gw
    ts = api.fresh_ts()
    body = {"appKey": KEY, "encryption": P.token_encryption(KEY, ts, SECRET), "timestamp": ts}
    post = lambda b: requests.post(api.url + P.TOKEN_GET_PATH, json=b, timeout=5).json()["status"]  # noqa: E731
    assert post(body) == 0
    assert post(body) == 1001  # the same encryption twice
    assert api.token_call(key="nobody")["status"] == 1002
    assert api.token_call(secret="wrong")["status"] == 1003
    assert post({"appKey": KEY, "encryption": "x", "timestamp": "t"}) == 1004
    assert post({"appKey": KEY, "encryption": "x", "timestamp": True}) == 1004
    assert post({"appKey": KEY}) == 1202
    assert api.token_call(P.TOKEN_REFRESH_PATH)["status"] == 1202  # no accessToken
    assert api.token_call(P.TOKEN_REFRESH_PATH, accessToken="nope")["status"] == 1204


def test_refresh_issues_a_new_token_and_the_old_one_stays_valid(gw) -> None:
    _sim, api = gw
    old = api.token
    r = api.token_call(P.TOKEN_REFRESH_PATH, accessToken=old)
    assert r["status"] == 0 and r["data"]["accessToken"] != old
    assert api.code(api.trigger(3377, T0)) == 0  # the old token still works
    api.token = r["data"]["accessToken"]
    assert api.code(api.trigger(3377, T0 + 60_000)) == 0
    assert api.token_call()["data"]["accessToken"] == api.token  # Get returns the newest


def test_expired_token_refresh_is_1203() -> None:
    with simulator(token_ttl=1) as (_sim, api):
        time.sleep(1.05)
        assert api.token_call(P.TOKEN_REFRESH_PATH, accessToken=api.token)["status"] == 1203
        assert api.trigger(3377, T0).status_code == 401


def test_signature_is_checked_over_the_exact_bytes(gw) -> None:
    sim, api = gw
    params = {"action": "trigger", **USER}
    # Signed over compact JSON, sent with an extra space: the bytes differ, so it is refused.
    signed_bytes = b'{"flowId":3377,"triggerTime":1767225660000}'
    sent = b'{"flowId":3377, "triggerTime":1767225660000}'
    ts = now_ms()
    sig = P.signature(api.token, params, signed_bytes, ts, SECRET)
    headers = {"apim-accesstoken": api.token, "apim-timestamp": str(ts), "apim-signature": sig}
    r = requests.post(api.url + P.V20.flows, params=params, data=sent, headers=headers, timeout=5)
    assert r.status_code == 401
    # The same bytes as signed: accepted, whatever their spacing.
    ts = now_ms()
    sig = P.signature(api.token, params, sent, ts, SECRET)
    headers = {"apim-accesstoken": api.token, "apim-timestamp": str(ts), "apim-signature": sig}
    r = requests.post(api.url + P.V20.flows, params=params, data=sent, headers=headers, timeout=5)
    assert r.json()["status"] == 0
    # Query values are signed decoded.
    iid = "3377-20260101000100"
    r = api.call(
        "GET",
        P.V20.instances,
        {"action": "get", "flowInstId": iid, "userId": "u 1/é", "orgId": "o1"},
    )
    assert r.status_code == 200
    assert api.trigger(3377, T0, org="o1").status_code == 200
    assert (
        api.call(
            "POST", P.V20.flows, params, {"flowId": 1, "triggerTime": T0}, secret="x"
        ).status_code
        == 401
    )
    assert [t["status"] for t in sim.state.triggers][-1] == 401


def test_auth_failure_http_shape(gw) -> None:
    _sim, api = gw
    r = api.call("GET", P.V20.time, {"action": "getTimeZone"}, token="not-a-token")
    assert r.status_code == 401 and r.json()["status"] == 401 and r.json()["msg"]
    r = api.call("GET", P.V20.time, {"action": "getTimeZone"}, secret="wrong")
    assert r.status_code == 401 and r.json()["status"] == 401


def test_auth_failure_body_shape() -> None:
    with simulator(dialect=Dialect(auth_failure="body")) as (sim, api):
        r = api.call("GET", P.V20.time, {"action": "getTimeZone"}, token="not-a-token")
        assert r.status_code == 200
        assert r.json() == {"apim_status": 4011, "msg": "access token expired or invalid"}
        r = api.call("GET", P.V20.time, {"action": "getTimeZone"}, secret="wrong")
        assert r.status_code == 200
        assert r.json() == {"status": 497, "msg": "signature or timestamp check failed"}
        api.trigger(3377, T0, org="o1")
        sim.state.revoke_tokens()
        api.trigger(3377, T0 + 60_000)
        assert [t["status"] for t in sim.state.triggers] == [0, 4011]


# --- Trigger Flow -----------------------------------------------------------------------------


def test_trigger_codes(gw) -> None:
    sim, api = gw
    assert api.trigger(2430, T0).json() == {
        "status": 62104,
        "msg": "This workflow has no task. You cannot trigger it.",
        "data": None,
    }
    assert api.code(api.trigger(11, T0)) == 62103  # not the owner
    assert api.trigger(12, T0).json()["status"] == 62105  # locked
    assert api.trigger(12, T0).json()["msg"] == "Your account has been locked"
    assert api.code(api.trigger(3377, T0, org="o9")) == 62101
    assert api.code(api.trigger(3377, T0, user="")) == 62101
    assert api.code(api.trigger(998, T0, user="anyone", org="any-org")) == 0  # no users listed
    unknown = api.trigger(999, T0).json()  # a flow the service does not have
    assert unknown["status"] == 62102 and unknown["msg"].startswith(
        "Cannot create workflow instance. Please check if the workflow or task exist"
    )
    params = {"action": "trigger", **USER}
    bad = api.call("POST", P.V20.flows, params, {"flowId": "3377", "triggerTime": T0})
    assert bad.status_code == 200 and bad.json() == {
        "status": 62102,
        "msg": "Incorrect parameter",
        "data": None,
    }
    assert [t["status"] for t in sim.triggers()] == [
        62104, 62103, 62105, 62105, 62101, 62101, 0, 62102
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("zone", "offset_minutes"), [("GMT+8", 480), ("UTC", 0), ("GMT-5", -300), ("GMT+5:30", 330)]
)
def test_time_strings_are_wall_time_in_the_server_zone(zone: str, offset_minutes: int) -> None:
    tt = T0 - 3_600_000 + 12_345  # seconds kept: 23:00:12 UTC on 2025-12-31
    with simulator(dialect=Dialect(server_zone=zone)) as (_sim, api):
        iid = api.created(40, tt)
        time.sleep(0.15)
        inst = api.get(iid)["data"]
        shifted = datetime.fromtimestamp(tt / 1000 + offset_minutes * 60, UTC)
        assert inst["triggerTime"] == shifted.strftime("%Y-%m-%d %H:%M:%S")
        assert P.parse_time(inst["triggerTime"], P.server_zone(zone)) == tt // 1000 * 1000
        assert inst["calDt"] == (shifted.date() - timedelta(days=1)).isoformat()
        for key in ("startTime", "endTime"):
            started = P.parse_time(inst[key], P.server_zone(zone))
            assert started is not None and abs(started - now_ms()) < 5_000
        assert len(inst["timestamp"].rsplit(".", 1)[1]) == 1
        assert api.call("GET", P.V20.time, {"action": "getTimeZone"}).json()["data"] == {
            "timezone": zone
        }


def test_instance_has_every_documented_field(gw) -> None:
    _sim, api = gw
    inst = api.get(api.created(3377, T0 + 12_000))["data"]
    assert set(inst) >= {
        "instanceId", "flowId", "flowName", "status", "statusDesc", "triggerTime", "startTime",
        "endTime", "timestamp", "owner", "calDt", "virtual", "graph", "parameters", "cycle",
        "freq", "alertMode", "doAs", "hasEditPri", "hasReadPri",
    }  # fmt: skip
    assert inst["instanceId"] == "3377-20260101000000" and inst["flowId"] == 3377
    assert inst["flowName"] == "daily-report" and inst["owner"] == ";alice;"
    assert inst["triggerTime"] == "2026-01-01 08:00:12"  # GMT+8, seconds kept
    assert inst["calDt"] == "2025-12-31"
    assert inst["endTime"] is None and inst["statusDesc"] == P.STATUS_NAMES[inst["status"]]
    assert json.loads(inst["graph"])["instId"] == inst["instanceId"]
    assert (inst["virtual"], inst["parameters"], inst["cycle"], inst["alertMode"]) == (
        False,
        "[]",
        "D",
        3,
    )
    assert inst["hasEditPri"] is True and inst["hasReadPri"] is True


def test_id_digits_in_utc_or_in_the_server_zone() -> None:
    with simulator() as (_sim, api):
        assert api.created(3377, T0 + 5_000) == "3377-20260101000000"
    with simulator(dialect=Dialect(id_zone="server", server_zone="GMT+5:30")) as (_sim, api):
        assert api.created(3377, T0 + 5_000) == "3377-20260101053000"


# --- not found, duplicates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "answer"),
    [
        ("62102", {"status": 62102, "msg": "Instance not found", "data": None}),
        ("null", {"status": 0, "msg": " Success", "data": None}),
        ("empty", {"status": 0, "msg": " Success", "data": {}}),
    ],
)
def test_missing_instance_in_each_form(form: str, answer: dict[str, Any]) -> None:
    with simulator(dialect=Dialect(not_found=form)) as (_sim, api):
        assert api.get("3377-20000101000000") == answer
        assert api.cancel("3377-20000101000000") == answer


def test_duplicate_minute_key_refuses_the_same_minute(gw) -> None:
    sim, api = gw
    assert api.created(3377, T0) == "3377-20260101000000"
    r = api.trigger(3377, T0 + 10_000).json()
    assert r == {
        "status": 62102,
        "msg": "Do not trigger the same workflow repeatedly in 1 minute",
        "data": None,
    }
    assert api.created(3377, T0 + 60_000) == "3377-20260101000100"  # next minute: accepted
    assert [(t["status"], t["flowInstanceId"]) for t in sim.triggers()] == [
        (0, "3377-20260101000000"),
        (62102, None),
        (0, "3377-20260101000100"),
    ]


def test_duplicate_wall_clock_refuses_within_the_window_only() -> None:
    window = 0.2
    with simulator(dialect=Dialect(duplicate="wall-clock", duplicate_window=window)) as (sim, api):
        api.created(3377, T0)
        assert api.code(api.trigger(3377, T0 + 3_600_000)) == 62102  # any trigger time
        assert api.code(api.trigger(40, T0)) == 0  # another flow is not affected
        time.sleep(window + 0.05)
        # After the window, even the same minute creates a second instance with the same id.
        assert api.created(3377, T0 + 1_000) == "3377-20260101000000"
        created = [t for t in sim.triggers() if t["flowInstanceId"] == "3377-20260101000000"]
        assert len(created) == 2
        found = api.search(**search_body(T0, T0 + 60_000, expression="3377"))["data"]
        assert found["count"] == 2


def test_duplicate_none_creates_a_second_instance() -> None:
    with simulator(dialect=Dialect(duplicate="none")) as (sim, api):
        assert api.created(3377, T0) == api.created(3377, T0)
        assert [t["status"] for t in sim.triggers()] == [0, 0]
        assert all(t["flowInstanceId"] for t in sim.triggers())
        found = api.search(**search_body(T0, T0 + 60_000))["data"]
        assert found["count"] == 2
        assert [i["instanceId"] for i in found["flowInsts"]] == ["3377-20260101000000"] * 2
        assert api.get("3377-20260101000000")["data"]["instanceId"] == "3377-20260101000000"


# --- Search -----------------------------------------------------------------------------------


def test_search_requires_type_and_owner(gw) -> None:
    _sim, api = gw
    api.created(3377, T0)
    for missing in ("type", "owner"):
        body = search_body(T0, T0 + 60_000)
        del body[missing]
        assert api.search(**body) == {
            "status": 62102,
            "msg": "param: type/owner cannot be empty",
            "data": None,
        }
    assert api.search(**search_body(T0, T0 + 60_000, type="0"))["data"]["count"] == 1
    assert api.search(**search_body(T0, T0 + 60_000, owner="alice"))["data"]["count"] == 1
    assert api.search(**search_body(T0, T0 + 60_000, owner="u1"))["data"]["count"] == 0


def test_search_window_is_half_open_and_filters(gw) -> None:
    _sim, api = gw
    for i in range(3):
        api.created(3377, T0 + i * 60_000)
    api.created(40, T0)  # type 2
    hits = api.search(**search_body(T0, T0 + 60_000))["data"]
    assert [i["instanceId"] for i in hits["flowInsts"]] == ["3377-20260101000000"]  # `to` excluded
    assert hits["flowInsts"][0]["isCancelled"] is False
    hits = api.search(**search_body(T0, T0 + 60_001))["data"]
    assert hits["count"] == 2
    assert [i["triggerTime"] for i in hits["flowInsts"]] == [
        "2026-01-01 08:00:00",
        "2026-01-01 08:01:00",
    ]
    assert api.search(**search_body(str(T0), str(T0 + 60_000)))["data"]["count"] == 1
    assert api.search(**search_body(T0, T0 + 60_000, type=2))["data"]["count"] == 1
    assert api.search(**search_body(T0, T0 + 180_000, status="8"))["data"] == {
        "flowInsts": [],
        "count": 0,
    }
    assert api.search(**search_body(T0, T0 + 180_000, status=""))["data"]["count"] == 3


def test_search_expression_matches_instance_id_or_flow_name(gw) -> None:
    _sim, api = gw
    api.created(3377, T0)
    api.created(998, T0)
    window = (T0, T0 + 60_000)
    assert api.search(**search_body(*window, expression="3377-2026"))["data"]["count"] == 1
    assert api.search(**search_body(*window, expression="daily-rep"))["data"]["count"] == 1
    assert api.search(**search_body(*window, expression="flow-998"))["data"]["count"] == 1
    assert api.search(**search_body(*window, expression="nothing"))["data"]["count"] == 0
    body = search_body(*window)
    del body["expression"]
    assert api.search(**body)["data"]["count"] == 2


@pytest.mark.parametrize(
    ("dialect", "first"),
    [(Dialect(), 0), (Dialect(api="v2.1"), 1), (Dialect(api="v2.1", page_origin=0), 0)],
)
def test_search_pages_from_the_versions_origin(dialect: Dialect, first: int) -> None:
    with simulator(dialect=dialect) as (_sim, api):
        for i in range(5):
            api.created(3377, T0 + i * 60_000)
        window = (T0, T0 + 300_000)

        def page(no: int) -> dict[str, Any]:
            r = api.search(**search_body(*window, pagination={"pageNo": no, "pageSize": 2}))
            assert r[dialect.version.code_key] == 0
            data: dict[str, Any] = r["data"]
            return data

        pages = [page(first + n)["flowInsts"] for n in range(3)]
        assert [len(p) for p in pages] == [2, 2, 1]
        assert page(first)["count"] == 5
        if first == 1:
            assert page(0)["flowInsts"] == []


def test_search_count_total_or_page() -> None:
    with simulator(dialect=Dialect(search_count="page")) as (_sim, api):
        for i in range(3):
            api.created(3377, T0 + i * 60_000)
        r = api.search(**search_body(T0, T0 + 180_000, pagination={"pageNo": 0, "pageSize": 2}))
        assert r["data"]["count"] == 2
        r = api.search(**search_body(T0, T0 + 180_000, pagination={"pageNo": 1, "pageSize": 2}))
        assert r["data"]["count"] == 1


# --- statuses over time, Cancel ---------------------------------------------------------------


class Clock:
    """The simulated service's clock, moved by the test: a loaded machine cannot make a
    status test read a moment too late."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_statuses_move_one_instance_per_flow_at_a_time() -> None:
    clock = Clock()
    with simulator(clock=clock) as (_sim, api):
        past = now_ms() - 3_600_000
        first = api.created(3377, past)
        second = api.created(3377, past + 60_000)
        future = api.created(3377, int(clock.now * 1000) + 3_600_000)

        def status(iid: str) -> int:
            value: int = api.get(iid)["data"]["status"]
            return value

        assert status(first) == P.INIT
        clock.now += 0.1  # 0.1 s: the first runs (0-0.3 s), the second waits
        assert (status(first), status(second), status(future)) == (P.RUNNING, P.WAIT, P.READY)
        clock.now += 0.35  # 0.45 s: the second runs (0.3-0.6 s)
        assert (status(first), status(second)) == (P.SUCCESS, P.RUNNING)
        clock.now += 0.35  # 0.8 s
        assert (status(first), status(second), status(future)) == (P.SUCCESS, P.SUCCESS, P.READY)
        inst = api.get(first)["data"]
    assert inst["endTime"] is not None and inst["statusDesc"] == "SUCCESS"


def test_outcomes_follow_the_fixture_and_repeat_with_a_seed() -> None:
    flows = [SimFlow(7, run_seconds=0.0, fails=0.4, timeouts=0.3)]

    def outcomes(seed: int) -> list[int]:
        with simulator(flows, faults=Faults(seed=seed)) as (_sim, api):
            ids = [api.created(7, T0 + i * 60_000) for i in range(20)]
            time.sleep(0.02)
            return [api.get(i)["data"]["status"] for i in ids]

    first = outcomes(3)
    assert first == outcomes(3)
    assert {P.SUCCESS, P.FAIL, P.TIMEOUT} <= set(first)
    assert set(first) <= {P.SUCCESS, P.FAIL, P.TIMEOUT}
    with simulator([SimFlow(8, run_seconds=0.0, fails=1.0)]) as (_sim, api):
        assert api.get(api.created(8, T0))["data"]["statusDesc"] == "FAIL"


def test_cancel_frees_the_queue_and_final_instances_refuse() -> None:
    clock = Clock()
    with simulator(clock=clock) as (_sim, api):
        past = now_ms() - 3_600_000
        first = api.created(3377, past)
        second = api.created(3377, past + 60_000)
        clock.now += 0.1
        assert api.get(second)["data"]["status"] == P.WAIT
        assert api.cancel(second) == {"status": 0, "msg": " Success", "data": ""}
        assert api.get(second)["data"]["status"] == P.CANCEL
        assert api.cancel(first)["status"] == 0  # running
        third = api.created(3377, past + 120_000)
        clock.now += 0.1
        assert api.get(third)["data"]["status"] == P.RUNNING  # the flow was freed at once
        hits = api.search(**search_body(past - 1, past + 60_001))["data"]["flowInsts"]
        assert [(i["status"], i["isCancelled"]) for i in hits] == [(P.CANCEL, True)] * 2
        refused = api.cancel(first)
        assert refused == {
            "status": 62102,
            "msg": "instance status does not allow cancel",
            "data": None,
        }
        clock.now += 0.35
        assert api.cancel(third)["status"] == 62102  # SUCCESS is final


# --- Get Flow, time ---------------------------------------------------------------------------


def test_get_flow_time_zone_and_current_time(gw) -> None:
    _sim, api = gw
    r = api.call("GET", P.V20.flows, {"action": "get", "flowId": "40", **USER}).json()
    assert r["status"] == 0
    assert {k: r["data"][k] for k in ("flowId", "owner", "type", "locked", "active")} == {
        "flowId": 40,
        "owner": ";alice;bob;",
        "type": 2,
        "locked": False,
        "active": 1,
    }
    assert r["data"]["isUserLocked"] is False and r["data"]["cycle"] == "D"
    assert "hasTask" not in r["data"] and "tasks" not in r["data"]
    assert [t["taskName"] for t in json.loads(r["data"]["graph"])["tasks"]] == ["task-1"]
    r = api.call("GET", P.V20.flows, {"action": "get", "flowId": "555", **USER}).json()
    assert r["status"] == 62102
    zone = api.call("GET", P.V20.time, {"action": "getTimeZone"}).json()
    assert zone == {"status": 0, "msg": "Success", "data": {"timezone": "GMT+8"}}
    before = now_ms()
    current = api.call("GET", P.V20.time, {"action": "getCurrentTime"}).json()
    assert current["status"] == 0 and before - 1 <= current["data"] <= now_ms() + 1


# --- gateway limits, faults, trigger log ------------------------------------------------------


@pytest.mark.parametrize("retry_after", [False, True])
def test_rate_limit_429_with_or_without_retry_after(retry_after: bool) -> None:
    with Simulator(rate_limit=2, dialect=Dialect(retry_after=retry_after)) as sim:
        answers = [requests.get(sim.url + P.V20.time, timeout=5) for _ in range(5)]
    limited = [r for r in answers if r.status_code == 429]
    assert limited
    if retry_after:
        assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    else:
        assert all("Retry-After" not in r.headers for r in limited)


def test_trigger_faults_and_the_log() -> None:
    faults = Faults.parse(
        [
            "62109@1",
            "503@2",
            "504-after-create@3",
            "drop-after-create@4",
            "malformed@5",
            "62109-after-create@6",
            "http-413@7",
        ]
    )
    with simulator(faults=faults) as (sim, api):
        answers = []
        for i in range(8):
            try:
                answers.append(api.trigger(3377, T0 + i * 60_000).status_code)
            except requests.ConnectionError:
                answers.append(-1)
        assert answers == [200, 503, 504, -1, 200, 200, 413, 200]
        log = sim.triggers()
    assert [t["status"] for t in log] == [62109, 503, 504, -1, 200, 62109, 413, 0]
    assert [bool(t["flowInstanceId"]) for t in log] == [
        False,
        False,
        True,
        True,
        True,
        True,
        False,
        True,
    ]
    assert log[0] == {
        "flowId": 3377,
        "triggerTime": T0,
        "userId": "u1",
        "orgId": "o1",
        "status": 62109,
        "flowInstanceId": None,
        "answered": True,
        "parameters": None,
    }
    assert [t["answered"] for t in log] == [True, True, True, False, True, True, True, True]
    assert sim.state.triggers == log


def test_lookup_faults() -> None:
    faults = Faults.parse(["lookup-503@1", "lookup-62109@2", "lookup-drop@3"])
    with simulator(faults=faults) as (_sim, api):
        iid = api.created(3377, T0)
        params = {"action": "get", "flowInstId": iid, **USER}
        assert api.call("GET", P.V20.instances, params).status_code == 503
        assert api.call("GET", P.V20.instances, params).json()["status"] == 62109
        with pytest.raises(requests.ConnectionError):
            api.call("GET", P.V20.instances, params)
        assert api.get(iid)["data"]["instanceId"] == iid


def test_fault_rates_repeat_with_a_seed() -> None:
    def run() -> list[int]:
        faults = Faults.parse(["62109=0.3", "503=0.2"], seed=42)
        with simulator(faults=faults) as (_sim, api):
            return [api.trigger(5, T0 + i * 60_000).status_code for i in range(30)]

    first = run()
    assert first == run()
    assert 503 in first and 200 in first


def test_latency_delays_trigger_answers_and_bad_faults_are_refused() -> None:
    with simulator(faults=Faults(latency=0.1)) as (_sim, api):
        started = time.monotonic()
        api.trigger(3377, T0)
        assert time.monotonic() - started >= 0.1
    for bad in (["nope=0.1"], ["503=2"], ["http-418@1"], ["503@x"], ["503"]):
        with pytest.raises(ValueError):
            Faults.parse(bad)
    with pytest.raises(ValueError, match="latency"):
        Faults(latency=-1)


def test_dialect_values_are_validated() -> None:
    for field, value in [
        ("api", "v3"),
        ("server_zone", "Mars/Base"),
        ("id_zone", "local"),
        ("not_found", "404"),
        ("duplicate", "sometimes"),
        ("duplicate_window", -1.0),
        ("auth_failure", "smoke"),
        ("page_origin", 2),
        ("search_count", "all"),
    ]:
        with pytest.raises(ValueError, match=field):
            kw: dict[str, Any] = {field: value}
            Dialect(**kw)


def test_concurrent_triggers_of_one_minute_create_exactly_one(gw) -> None:
    sim, api = gw
    token = api.token
    codes: list[int] = []

    def send() -> None:
        mine = Api(sim.url)
        mine.token = token
        codes.append(mine.code(mine.trigger(3377, T0)))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [0] + [62102] * 7
    assert len([t for t in sim.triggers() if t["flowInstanceId"]]) == 1


# --- loopback only, fixture, command ----------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_non_loopback_bind_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        Simulator(host=host)
    args = argparse.ArgumentParser()
    sim_command.add_arguments(args)
    with pytest.raises(UsageError, match="loopback"):
        sim_command.run(args.parse_args(["--host", host, "--port", "0"]))


def test_flows_fixture_and_the_sample(tmp_path: Path) -> None:
    sample = load_flows(str(ROOT / "plans" / "sim-flows.yaml"))
    assert sample and all(isinstance(f, SimFlow) for f in sample)
    path = tmp_path / "flows.yaml"
    path.write_text(
        "- flowId: 7\n  name: nightly\n  owner: ;alice;bob;\n  users: u1\n  orgId: o1\n"
        "  runSeconds: 0.5\n  type: 2\n  fails: 0.25\n  timeouts: 0.25\n"
    )
    assert load_flows(str(path)) == [
        SimFlow(
            7, ("alice", "bob"), ("u1",), "o1", run_seconds=0.5, type=2, fails=0.25,
            timeouts=0.25, name="nightly",
        )
    ]  # fmt: skip
    for text, message in [
        ("- flowId: 7\n  colour: blue\n", "2:3: unknown key(s) colour"),
        ("- flowId: 7\n  type: 5\n", "2:9: type must be"),
        ("- flowId: 7\n  fails: 2\n", "2:10: fails must be a number between 0 and 1"),
        ("- flowId: 7\n  locked: yes\n", "2:11: locked must be true or false"),
        ("- flowId: 0\n", "1:11: flowId must be an integer >= 1"),
        ("- {flowId: 7}\n- {flowId: 7}\n", "2:12: flowId 7 is listed twice"),
        ("flowId: 7\n", "1:1: expected a list of flows"),
    ]:
        path.write_text(text)
        with pytest.raises(UsageError, match=re.escape(message)) as e:
            load_flows(str(path))
        assert str(e.value).startswith(f"{path}:") and "\n" not in str(e.value)


def test_command_options_build_the_dialect_in_process(tmp_path: Path, monkeypatch) -> None:
    parser = argparse.ArgumentParser()
    sim_command.add_arguments(parser)
    args = parser.parse_args(
        [
            "--port", "0", "--api", "v2.1", "--server-zone", "GMT-5", "--id-zone", "server",
            "--not-found", "null", "--duplicate", "wall-clock", "--duplicate-window", "0.2",
            "--auth-failure", "body", "--page-origin", "0", "--search-count", "page",
            "--retry-after",
        ]
    )  # fmt: skip
    assert sim_command.dialect_from(args) == Dialect(
        api="v2.1",
        server_zone="GMT-5",
        id_zone="server",
        not_found="null",
        duplicate="wall-clock",
        duplicate_window=0.2,
        auth_failure="body",
        page_origin=0,
        search_count="page",
        retry_after=True,
    )
    with pytest.raises(UsageError, match="--server-zone"):
        sim_command.dialect_from(parser.parse_args(["--server-zone", "Nowhere/City"]))
    for bad in (["--latency", "-1"], ["--port", "70000"], ["--duplicate-window", "-1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)

    # run() prints the URL first and serves; stop it with the KeyboardInterrupt Ctrl-C raises.
    def interrupted(self: Simulator) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Simulator, "serve", interrupted)
    out = io.StringIO()
    with redirect_stdout(out):
        assert sim_command.run(args) == 0
    assert out.getvalue().startswith("http://127.0.0.1:")


@contextmanager
def sim_process(*args: str, env: dict[str, str]) -> Iterator[str]:
    """`planrunner sim --port 0 ARGS` as a real process; yields its URL; Ctrl-C must end it with 0."""
    with subprocess.Popen(
        [sys.executable, "-m", "planrunner", "sim", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            yield proc.stdout.readline().strip()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_sim_command_prints_its_url_first_and_serves(tmp_path: Path) -> None:
    flows = tmp_path / "flows.yaml"
    flows.write_text(
        "- {flowId: 7, owner: alice, users: [u1], orgId: o1, locked: false, tasks: 1, runSeconds: 1}\n"
    )
    env = {**os.environ, "ENOS_ACCESS_KEY": "", "ENOS_SECRET_KEY": ""}
    args = (
        "--host",
        "127.0.0.1",
        "--flows",
        str(flows),
        "--access-key",
        KEY,
        "--secret-key",
        SECRET,
    )
    with sim_process(*args, env=env) as url:
        assert url.startswith("http://127.0.0.1:")
        api = Api(url).login()
        assert api.code(api.trigger(7, T0, user="u2")) == 62103


def test_sim_command_serves_the_dialect_its_options_name() -> None:
    env = {**os.environ, "ENOS_ACCESS_KEY": KEY, "ENOS_SECRET_KEY": SECRET}
    args = ("--api", "v2.1", "--server-zone", "UTC", "--id-zone", "server", "--not-found", "empty")
    with sim_process(*args, env=env) as url:
        api = Api(url, P.V21).login()
        assert api.call("GET", P.V21.time, {"action": "getTimeZone"}).json()["data"] == {
            "timezone": "UTC"
        }
        assert api.get("1-20000101000000") == {"code": 0, "msg": "OK", "data": {}}


def test_sim_command_default_keys() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ENOS_ACCESS_KEY", "ENOS_SECRET_KEY")}
    with sim_process(env=env) as url:
        ts = now_ms()
        body = {
            "appKey": "sim-access-key",
            "encryption": P.token_encryption("sim-access-key", ts, "sim-secret-key"),
            "timestamp": ts,
        }
        assert requests.post(url + P.TOKEN_GET_PATH, json=body, timeout=5).json()["status"] == 0


def test_bad_flows_file_is_a_usage_error(tmp_path: Path, run) -> None:
    flows = tmp_path / "flows.yaml"
    flows.write_text("- {flowId: 7, colour: blue}\n")
    r = run("sim", "--port", "0", "--flows", str(flows))
    assert r.code == 2
    assert "unknown key(s) colour" in r.err


# --- the slow, unforgiving service (reliability probe N1, N4, N5, N6, N17) -------------------

SETTLE = 10.0  # seconds a test waits for the simulator's backend to finish


def test_n1_processing_longer_than_the_read_timeout_creates_after_the_client_has_gone() -> None:
    # 2 s of processing against a 0.1 s read timeout: even a loaded machine reads the
    # simulator before the instance exists (0.6 s was not enough under load).
    with simulator(faults=Faults(processing=2.0), dialect=Dialect(duplicate="none")) as (sim, api):
        params = {"action": "trigger", **USER}
        raw = json.dumps({"flowId": 3377, "triggerTime": T0}).encode()
        ts = now_ms()
        headers = {
            "apim-accesstoken": api.token,
            "apim-timestamp": str(ts),
            "apim-signature": P.signature(api.token, params, raw, ts, SECRET),
            "Content-Type": "application/json;charset=UTF-8",
        }
        # A client that gives up after 0.1 s and closes its connection at once (a timed-out
        # socket left to the garbage collector would make "answered" a matter of timing).
        import http.client
        import urllib.parse

        where = urllib.parse.urlsplit(api.url)
        conn = http.client.HTTPConnection(str(where.hostname), where.port, timeout=0.1)
        try:
            conn.request("POST", P.V20.flows + "?" + urllib.parse.urlencode(params), raw, headers)
            with pytest.raises(TimeoutError):
                conn.getresponse()
        finally:
            # shutdown, not only close: the timed-out response still holds the socket's file,
            # and a close would wait for it to be collected.
            if conn.sock is not None:
                conn.sock.shutdown(socket.SHUT_RDWR)
            conn.close()
        assert sim.triggers() == [] and not sim.state.instances  # still processing
        assert sim.state.settle(SETTLE)
        # settle() ends when the instance is made; the HTTP layer marks the record unanswered
        # a moment later, once it finds the client gone.
        deadline = time.monotonic() + SETTLE
        while sim.triggers()[0]["answered"] and time.monotonic() < deadline:
            time.sleep(0.01)
        [gone] = sim.triggers()
        assert gone["flowInstanceId"] == P.instance_id(3377, T0) and gone["answered"] is False
        assert api.get(P.instance_id(3377, T0))["data"]["instanceId"] == P.instance_id(3377, T0)
        # A client that waits long enough hears the answer.
        assert api.code(api.trigger(3377, T0 + 60_000)) == 0
        assert sim.triggers()[-1]["answered"] is True
    with pytest.raises(ValueError, match="processing"):
        Faults(processing=-1)


@pytest.mark.parametrize("kind", ["504-then-create", "drop-then-create"])
def test_n1_then_create_answers_at_once_and_the_backend_creates_later(kind: str) -> None:
    faults = Faults.parse([f"{kind}@1"], backend_delay=0.5)
    with simulator(faults=faults, dialect=Dialect(duplicate="none")) as (sim, api):
        started = time.monotonic()
        try:
            answer = api.trigger(3377, T0).status_code
        except requests.ConnectionError:
            answer = -1
        assert answer == (504 if kind.startswith("504") else -1)
        assert time.monotonic() - started < 0.5  # the gateway did not wait for the backend
        iid = P.instance_id(3377, T0)
        assert api.get(iid)["status"] == P.BAD_PARAMETER_OR_DUPLICATE  # not there yet
        [first] = sim.triggers()
        assert first["flowInstanceId"] is None and first["status"] == max(answer, -1)
        # A second send while the backend still works: on a service without dedup, two.
        assert api.code(api.trigger(3377, T0)) == 0
        assert sim.state.settle(SETTLE)
        log = sim.triggers()
        assert [t["flowInstanceId"] for t in log] == [iid, iid]
        assert len([i for i in sim.state.service.history if i.instance_id == iid]) == 2
        assert api.get(iid)["data"]["instanceId"] == iid


def test_n1_then_create_under_the_minute_rule_the_later_create_is_refused() -> None:
    faults = Faults.parse(["504-then-create@1"], backend_delay=0.3)
    with simulator(faults=faults) as (sim, api):
        assert api.trigger(3377, T0).status_code == 504
        assert api.code(api.trigger(3377, T0)) == 0  # arrives first, so it creates
        assert sim.state.settle(SETTLE)
        assert [t["flowInstanceId"] for t in sim.triggers()] == [None, P.instance_id(3377, T0)]
        assert len(sim.state.service.history) == 1


@pytest.mark.parametrize("status", [500, 501, 505, 520, 524, 599])
def test_n5_any_5xx_after_create(status: int) -> None:
    faults = Faults.parse([f"{status}-after-create@1"])
    with simulator(faults=faults) as (sim, api):
        r = api.trigger(3377, T0)
        assert r.status_code == status and "origin" in r.text
        [t] = sim.triggers()
        assert t["status"] == status and t["flowInstanceId"] == P.instance_id(3377, T0)
    for bad in ("499-after-create@1", "600-after-create@1", "5xx-after-create@1"):
        with pytest.raises(ValueError, match="unknown fault"):
            Faults.parse([bad])


@pytest.mark.parametrize(
    ("zone", "first", "wall"),
    [
        ("America/New_York", "2026-11-01T05:30:00+00:00", "2026-11-01 01:30:00"),
        ("Europe/Berlin", "2026-10-25T00:30:00+00:00", "2026-10-25 02:30:00"),
    ],
)
def test_n4_dst_zone_writes_the_repeated_hour_ambiguously(zone: str, first: str, wall: str) -> None:
    a = int(datetime.fromisoformat(first).timestamp() * 1000)
    b = a + 3_600_000  # one hour later: the same wall time, the second time round
    for dialect, named in [
        (Dialect(server_zone=zone), zone),
        (Dialect(server_zone_dst=zone), None),
    ]:
        with simulator(flows=[SimFlow(5, run_seconds=0.01)], dialect=dialect) as (_sim, api):
            for tt in (a, b):
                api.created(5, tt)
            time.sleep(0.1)
            got = [api.get(P.instance_id(5, tt))["data"]["triggerTime"] for tt in (a, b)]
            assert got == [wall, wall]  # zone-less: nothing tells the two apart
            window = api.search(**search_body(a, b + 60_000))["data"]["flowInsts"]
            assert [i["triggerTime"] for i in window] == [wall, wall]
            said = api.call("GET", P.V20.time, {"action": "getTimeZone"}).json()["data"]
            expected = named or dialect.zone_name(time.time())
            assert said == {"timezone": expected}
    ny = Dialect(server_zone_dst="America/New_York")
    assert ny.zone_name(a / 1000 - 86_400 * 30) == "GMT-4"  # October: daylight time
    assert ny.zone_name(b / 1000 + 86_400 * 30) == "GMT-5"
    assert Dialect(server_zone_dst="Asia/Kolkata").zone_name(a / 1000) == "GMT+5:30"
    with pytest.raises(ValueError, match="server_zone_dst"):
        Dialect(server_zone_dst="GMT+8")
    with pytest.raises(ValueError, match="server_zone_dst"):
        Dialect(server_zone_dst="Mars/Base")


def test_n6_hostile_puts_escapes_workflow_commands_and_secrets_in_every_string() -> None:
    from planrunner.sim.faults import HOSTILE_PADDING, HOSTILE_TEXT

    with simulator(dialect=Dialect(hostile=True)) as (_sim, api):
        assert "\x1b" not in api.token  # the token itself stays usable
        marks = ("\x1b[2J", "\n::error file=x::INJECTED", "\r\n", api.token, SECRET)

        def poisoned(text: object, *, long: bool) -> None:
            assert isinstance(text, str)
            assert all(m in text for m in marks), text[:200]
            assert (len(text) > HOSTILE_PADDING) is long

        r = api.trigger(3377, T0).json()
        assert r["status"] == 0
        poisoned(r["msg"], long=True)
        iid = r["data"]["flowInstanceId"]
        poisoned(iid, long=True)
        assert iid.startswith(P.instance_id(3377, T0) + HOSTILE_TEXT)
        time.sleep(0.1)
        inst = api.get(P.instance_id(3377, T0))["data"]
        poisoned(inst["instanceId"], long=True)
        for key in ("status", "statusDesc", "flowName", "doAs"):
            poisoned(inst[key], long=False)
        assert inst["status"].split("\x1b")[0].lstrip("-").isdigit()
        assert inst["triggerTime"] == "2026-01-01 08:00:00" and inst["flowId"] == 3377
        # The id as a client would send it back (escapes and all) still names the instance.
        again = api.get(P.instance_id(3377, T0) + "\x1b[2J::error::x")["data"]
        assert again["instanceId"].startswith(P.instance_id(3377, T0))
        [found] = api.search(**search_body(T0, T0 + 60_000))["data"]["flowInsts"]
        poisoned(found["instanceId"], long=True)
        poisoned(found["status"], long=False)
        zone = api.call("GET", P.V20.time, {"action": "getTimeZone"}).json()["data"]["timezone"]
        poisoned(zone, long=True)
        assert zone.startswith("GMT+8")
        refused = api.trigger(3377, T0).json()
        assert refused["status"] == P.BAD_PARAMETER_OR_DUPLICATE
        assert refused["msg"].startswith("Do not trigger the same workflow repeatedly")
        poisoned(refused["msg"], long=True)


def test_n17_incorrect_parameter_as_a_flow_property_and_as_a_fault(tmp_path: Path) -> None:
    flows = [*FLOWS, SimFlow(5000, users=("u1",), org_id="o1", bad_parameter=True)]
    faults = Faults.parse(["62102@2"])
    with simulator(flows=flows, faults=faults) as (sim, api):
        for minute in range(3):
            r = api.trigger(5000, T0 + minute * 60_000).json()
            assert (r["status"], r["msg"]) == (P.BAD_PARAMETER_OR_DUPLICATE, "Incorrect parameter")
        r = api.trigger(3377, T0).json()  # trigger #4: the scheduled fault is spent on #2
        assert r["status"] == 0
        assert not any(t["flowInstanceId"] for t in sim.triggers()[:3])
    with simulator(faults=Faults.parse(["62102@1"])) as (sim, api):
        assert api.trigger(3377, T0).json()["msg"] == "Incorrect parameter"
        assert api.code(api.trigger(3377, T0)) == 0
        assert [bool(t["flowInstanceId"]) for t in sim.triggers()] == [False, True]
    path = tmp_path / "flows.yaml"
    path.write_text("- {flowId: 9, badParameter: true}\n")
    assert load_flows(str(path)) == [SimFlow(9, bad_parameter=True)]
    path.write_text("- {flowId: 9, badParameter: 1}\n")
    with pytest.raises(UsageError, match="badParameter must be true or false"):
        load_flows(str(path))


def test_slow_service_options_on_the_command_line() -> None:
    parser = argparse.ArgumentParser()
    sim_command.add_arguments(parser)
    args = parser.parse_args(
        ["--server-zone-dst", "Europe/Berlin", "--hostile", "--processing", "1.5",
         "--backend-delay", "0.5", "--fault", "524-after-create=0.1"]
    )  # fmt: skip
    assert sim_command.dialect_from(args) == Dialect(server_zone_dst="Europe/Berlin", hostile=True)
    assert (args.processing, args.backend_delay) == (1.5, 0.5)
    with pytest.raises(UsageError, match="--server-zone-dst"):
        sim_command.dialect_from(parser.parse_args(["--server-zone-dst", "GMT+1"]))
    for bad in (["--processing", "-1"], ["--backend-delay", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_sim_command_serves_a_slow_hostile_service() -> None:
    env = {**os.environ, "ENOS_ACCESS_KEY": KEY, "ENOS_SECRET_KEY": SECRET}
    args = (
        "--hostile", "--fault", "504-then-create@1", "--backend-delay", "0.3", "--duplicate",
        "none", "--accept-unknown-flows",
    )  # fmt: skip
    with sim_process(*args, env=env) as url:
        api = Api(url).login()
        assert api.trigger(3377, T0).status_code == 504
        deadline = time.monotonic() + SETTLE
        while api.get(P.instance_id(3377, T0))["status"] != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        inst = api.get(P.instance_id(3377, T0))
        assert inst["status"] == 0 and SECRET in inst["data"]["instanceId"]


def test_finding_23_the_sample_flows_accept_every_entry_of_the_example_plan(
    tmp_path: Path, run: Any, sim_env: None
) -> None:
    flows = load_flows(str(ROOT / "plans" / "sim-flows.yaml"))
    with Simulator(flows, access_key="sim-access-key", secret_key="sim-secret-key") as sim:
        r = run(
            "apply", str(ROOT / "plans" / "example.yaml"), "--gateway", sim.url, "--yes",
            "--format", "json", "--ledger", str(tmp_path / "example.ledger.jsonl"),
        )  # fmt: skip
        assert r.code == 0, r.err
        doc = json.loads(r.out)
        log = sim.triggers()
    assert set(doc["summary"]) == {"triggered"}, doc["summary"]
    assert log and {t["status"] for t in log} == {0}
    assert {t["flowId"] for t in log} == {3377, 3378, 2430}
    # The refusal flows refuse that same user and org, each with its own code.
    with simulator(flows=flows) as (_sim, api):
        user = {"user": "u-data-eng", "org": "o15589291262751"}
        codes = {f: api.code(api.trigger(f, T0, **user)) for f in (2431, 2809, 2957, 2958, 3100)}
    assert codes == {2431: 62104, 2809: 62105, 2957: 62103, 2958: 62101, 3100: 62102}
