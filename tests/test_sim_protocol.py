"""The simulator against a protocol test written from DESIGN.md section 6 alone.

Requests are built by hand here (plain `requests`, hashlib), not with planrunner's client,
so that the client and the simulator cannot share a misreading.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from planrunner.sim import Faults, SimFlow, Simulator
from tests.conftest import ROOT

KEY, SECRET = "app-key", "app-secret"
T0 = 1_767_225_600_000


def sha(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


def get_token(url: str, ts: int | None = None, key: str = KEY, secret: str = SECRET) -> dict:
    ts = ts or int(time.time() * 1000)
    body = {"appKey": key, "encryption": sha(f"{key}{ts}{secret}".encode()), "timestamp": ts}
    return requests.post(url + "/apim-token-service/v2.0/token/get", json=body, timeout=5).json()


def signed(
    url: str,
    method: str,
    path: str,
    params: dict,
    body: dict | None,
    token: str,
    secret: str = SECRET,
):
    raw = json.dumps(body).encode() if body is not None else b""
    ts = int(time.time() * 1000)
    p = "".join(f"{k}{params[k]}" for k in sorted(params))
    sig = sha(token.encode() + p.encode() + raw + str(ts).encode() + secret.encode())
    headers = {"apim-accesstoken": token, "apim-timestamp": str(ts), "apim-signature": sig}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return requests.request(
        method, url + path, params=params, data=raw or None, headers=headers, timeout=5
    )


@pytest.fixture
def gw():
    flows = [
        SimFlow(3377, owner="u1", org_id="o1", run_seconds=0.4),
        SimFlow(2430, owner="u1", org_id="o1", has_task=False),
        SimFlow(11, owner="u2", org_id="o1"),
        SimFlow(12, owner="u1", org_id="o1", locked=True),
    ]
    with Simulator(flows, access_key=KEY, secret_key=SECRET) as s:
        yield s


def trigger(gw, token, flow_id, tt, user="u1", org="o1"):
    return signed(
        gw.url,
        "POST",
        "/dataflow-batch-service/v2.0/flows",
        {"action": "trigger", "userId": user, "orgId": org},
        {"flowId": flow_id, "triggerTime": tt},
        token,
    )


def test_token_get_and_its_error_codes(gw) -> None:
    ok = get_token(gw.url)
    assert ok["status"] == 0
    assert isinstance(ok["data"]["accessToken"], str) and ok["data"]["expire"] == 7200
    ts = int(time.time() * 1000) + 5
    assert get_token(gw.url, ts)["status"] == 0
    assert get_token(gw.url, ts)["status"] == 1001  # the same encryption twice
    assert get_token(gw.url, key="nobody")["status"] == 1002
    assert get_token(gw.url, secret="wrong")["status"] == 1003
    r = requests.post(
        gw.url + "/apim-token-service/v2.0/token/get", json={"appKey": KEY}, timeout=5
    ).json()
    assert r["status"] == 1202
    r = requests.post(
        gw.url + "/apim-token-service/v2.0/token/get",
        json={"appKey": KEY, "encryption": "x", "timestamp": "t"},
        timeout=5,
    ).json()
    assert r["status"] == 1004


def test_token_refresh(gw) -> None:
    token = get_token(gw.url)["data"]["accessToken"]
    ts = int(time.time() * 1000) + 17
    body = {
        "appKey": KEY,
        "encryption": sha(f"{KEY}{ts}{SECRET}".encode()),
        "timestamp": ts,
        "accessToken": token,
    }
    r = requests.post(
        gw.url + "/apim-token-service/v2.0/token/refresh", json=body, timeout=5
    ).json()
    assert r["status"] == 0 and r["data"]["accessToken"] != token
    body = {
        **body,
        "timestamp": ts + 1,
        "encryption": sha(f"{KEY}{ts + 1}{SECRET}".encode()),
        "accessToken": "nope",
    }
    assert (
        requests.post(
            gw.url + "/apim-token-service/v2.0/token/refresh", json=body, timeout=5
        ).json()["status"]
        == 1204
    )


def test_signature_is_checked_over_the_bytes_received(gw) -> None:
    token = get_token(gw.url)["data"]["accessToken"]
    assert trigger(gw, token, 3377, T0).json()["status"] == 0
    # Same headers, different bytes: whitespace inside the body changes the signature.
    raw = b'{"flowId": 3377,  "triggerTime": 1767225660000}'
    ts = int(time.time() * 1000)
    params = {"action": "trigger", "userId": "u1", "orgId": "o1"}
    sig_other = sha(
        token.encode()
        + b"actiontriggerorgIdo1userIdu1"
        + b'{"flowId": 3377, "triggerTime": 1767225660000}'
        + str(ts).encode()
        + SECRET.encode()
    )
    r = requests.post(
        gw.url + "/dataflow-batch-service/v2.0/flows",
        params=params,
        data=raw,
        headers={"apim-accesstoken": token, "apim-timestamp": str(ts), "apim-signature": sig_other},
        timeout=5,
    )
    assert r.status_code == 401
    assert trigger(gw, "not-a-token", 3377, T0 + 120_000).status_code == 401
    assert (
        signed(
            gw.url,
            "POST",
            "/dataflow-batch-service/v2.0/flows",
            params,
            {"flowId": 3377, "triggerTime": T0},
            token,
            secret="x",
        ).status_code
        == 401
    )


def test_trigger_answers_and_codes(gw) -> None:
    token = get_token(gw.url)["data"]["accessToken"]
    ok = trigger(gw, token, 3377, 1574385824000).json()
    assert ok == {"status": 0, "msg": " Success", "data": {"flowInstanceId": "3377-20191122012300"}}
    assert trigger(gw, token, 3377, 1574385824000 + 10_000).json()["status"] == 62102  # same minute
    assert trigger(gw, token, 2430, T0).json() == {
        "status": 62104,
        "msg": "This workflow has no task, you cannot trigger it!",
        "data": None,
    }
    assert trigger(gw, token, 11, T0).json()["status"] == 62103  # not the owner
    assert trigger(gw, token, 12, T0).json()["status"] == 62103  # locked
    assert trigger(gw, token, 3377, T0, org="o9").json()["status"] == 62101
    assert (
        trigger(gw, token, 999, T0, user="anyone", org="any-org").json()["status"] == 0
    )  # unlisted: permissive


def test_instances_move_init_wait_running_success_one_at_a_time(gw) -> None:
    token = get_token(gw.url)["data"]["accessToken"]
    now_ms = int(time.time() * 1000) - 3_600_000
    first = trigger(gw, token, 3377, now_ms).json()["data"]["flowInstanceId"]
    second = trigger(gw, token, 3377, now_ms + 60_000).json()["data"]["flowInstanceId"]

    def status(iid: str) -> int:
        r = signed(
            gw.url,
            "GET",
            "/dataflow-batch-service/v2.0/flowInstances",
            {"action": "get", "flowInstId": iid, "userId": "u1", "orgId": "o1"},
            None,
            token,
        )
        data = r.json()["data"]
        assert data["instanceId"] == iid and data["flowId"] == 3377
        return data["status"]

    assert status(first) == 0  # INIT, just created
    time.sleep(0.1)
    assert (status(first), status(second)) == (2, 5)  # RUNNING, WAIT
    time.sleep(0.4)
    assert (status(first), status(second)) == (1, 2)  # SUCCESS, RUNNING
    time.sleep(0.4)
    assert (status(first), status(second)) == (1, 1)
    missing = signed(
        gw.url,
        "GET",
        "/dataflow-batch-service/v2.0/flowInstances",
        {"action": "get", "flowInstId": "3377-20000101000000", "userId": "u1", "orgId": "o1"},
        None,
        token,
    )
    assert missing.json()["status"] == 62102


def test_search_flow_instances(gw) -> None:
    token = get_token(gw.url)["data"]["accessToken"]
    for i in range(3):
        trigger(gw, token, 3377, T0 + i * 60_000)
    body = {
        "fromTriggerTime": T0,
        "toTriggerTime": T0 + 60_000,
        "expression": "3377",
        "status": "-1,0,1,2,3,4,5,6,7,8,9,10",
        "pagination": {"pageNo": 0, "pageSize": 100},
    }
    r = signed(
        gw.url,
        "POST",
        "/dataflow-batch-service/v2.0/flowInstances",
        {"action": "search", "userId": "u1", "orgId": "o1"},
        body,
        token,
    ).json()
    assert r["status"] == 0
    assert r["data"]["count"] == 2
    assert [i["triggerTime"] for i in r["data"]["flowInsts"]] == [T0, T0 + 60_000]
    body["status"] = "8"
    r = signed(
        gw.url,
        "POST",
        "/dataflow-batch-service/v2.0/flowInstances",
        {"action": "search", "userId": "u1", "orgId": "o1"},
        body,
        token,
    ).json()
    assert r["data"] == {"flowInsts": [], "count": 0}


def test_inspection_lists_every_trigger_in_arrival_order(gw) -> None:
    token = get_token(gw.url)["data"]["accessToken"]
    trigger(gw, token, 3377, T0)
    trigger(gw, token, 3377, T0)
    trigger(gw, token, 2430, T0)
    listed = requests.get(gw.url + "/__sim__/triggers", timeout=5).json()["triggers"]
    assert listed == [
        {
            "flowId": 3377,
            "triggerTime": T0,
            "userId": "u1",
            "orgId": "o1",
            "status": 0,
            "flowInstanceId": "3377-20260101000000",
        },
        {
            "flowId": 3377,
            "triggerTime": T0,
            "userId": "u1",
            "orgId": "o1",
            "status": 62102,
            "flowInstanceId": None,
        },
        {
            "flowId": 2430,
            "triggerTime": T0,
            "userId": "u1",
            "orgId": "o1",
            "status": 62104,
            "flowInstanceId": None,
        },
    ]


def test_rate_limit_answers_429_with_retry_after() -> None:
    with Simulator(rate_limit=2) as sim:
        codes = [
            requests.get(sim.url + "/dataflow-batch-service/v2.0/flowInstances", timeout=5)
            for _ in range(5)
        ]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and all(int(r.headers["Retry-After"]) >= 1 for r in limited)


def test_faults_repeat_with_a_seed() -> None:
    def run() -> list[int]:
        with Simulator(
            faults=Faults.parse(["62109=0.3", "503=0.2"], seed=42),
            access_key=KEY,
            secret_key=SECRET,
        ) as sim:
            token = get_token(sim.url)["data"]["accessToken"]
            return [trigger(sim, token, 5, T0 + i * 60_000).status_code for i in range(30)]

    first, second = run(), run()
    assert first == second
    assert 503 in first and 200 in first


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
        "- {flowId: 7, owner: u1, orgId: o1, locked: false, hasTask: true, runSeconds: 1}\n"
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
        token = get_token(url)["data"]["accessToken"]
        r = signed(
            url,
            "POST",
            "/dataflow-batch-service/v2.0/flows",
            {"action": "trigger", "userId": "u2", "orgId": "o1"},
            {"flowId": 7, "triggerTime": T0},
            token,
        )
        assert r.json()["status"] == 62103


def test_sim_command_default_keys() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ENOS_ACCESS_KEY", "ENOS_SECRET_KEY")}
    with sim_process(env=env) as url:
        assert get_token(url, key="sim-access-key", secret="sim-secret-key")["status"] == 0


def test_bad_flows_file_is_a_usage_error(tmp_path: Path, run) -> None:
    flows = tmp_path / "flows.yaml"
    flows.write_text("- {flowId: 7, colour: blue}\n")
    r = run("sim", "--port", "0", "--flows", str(flows))
    assert r.code == 2
    assert "unknown key(s) colour" in r.err
