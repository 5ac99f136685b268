"""The transport under the client: the http-only-to-loopback rule (D1), answers dripped
slowly (N16), proxies (newcomer finding 36)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planrunner import protocol, transport
from testing import write_plan
from testing.hostile import ONE, HostileGateway, envelope, no_traceback

# -- D1: the http-only-to-loopback rule --------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example\\@127.0.0.1:8080",
        "http://vm:1\\@127.0.0.1:9",
        "http://127.0.0.1:80@evil.com",
        "http://evil.com#@127.0.0.1",
        "http://evil.com?@127.0.0.1",
        "http://127.0.0.1%2f@evil.com",
        "http://127.0.0.1\t.evil.com",
        "http://127.0.0.1 @evil.com",
        "http://127.0.0.1\x00.evil.com",
        "http://localhost./",
        "http://127.0.0.1:8080/%2e%2e",
        "http://user@127.0.0.1",
    ],
)
def test_d1_urls_parsers_read_differently_are_refused(tmp_path: Path, run, url: str) -> None:
    assert protocol.gateway_problem(url) is not None
    plan = write_plan(tmp_path, ONE, gateway=json.dumps(url))
    r = run("validate", str(plan))
    assert r.code == 2, r.out + r.err
    assert "gateway" in r.err


def test_d1_accepted_urls_mean_the_same_host_to_the_http_stack() -> None:
    from urllib.parse import urlsplit

    import urllib3

    for url in (
        "https://apigw.example.com",
        "http://127.0.0.1:8080",
        "http://[::1]:9/x",
        "https://a.b:443/p/q",
    ):
        assert protocol.gateway_problem(url) is None
        assert (urllib3.util.parse_url(url).host or "").strip("[]") == urlsplit(url).hostname


def test_d1_plain_http_peer_must_be_loopback(tmp_path: Path, run, creds, monkeypatch) -> None:
    # The name passed the URL rule, but the connection reached a non-loopback peer (a
    # hosts-file entry, DNS): not one byte may be sent, not even the token request.
    monkeypatch.setattr(transport, "_peer_address", lambda sock: "10.1.2.3")
    with HostileGateway(lambda p, b: envelope(0, "ok", {"flowInstanceId": "1-x"})) as gw:
        plan = write_plan(tmp_path, ONE)
        r = run(
            "apply", str(plan), "--gateway", gw.url, "--yes", "--ledger", str(tmp_path / "l.jsonl")
        )
        assert r.code == 1, r.err
        assert "not a loopback address" in r.err and "10.1.2.3" in r.err
        assert gw.requests == []
    no_traceback(r.err)
