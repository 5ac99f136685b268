"""The transport under the client: the http-only-to-loopback rule (D1), answers dripped
slowly (N16), proxies (newcomer finding 36)."""

from __future__ import annotations

import json
import select
import socket
import socketserver
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from planrunner import enos, protocol, transport
from planrunner.errors import ServiceError, UsageError
from planrunner.sim import Simulator
from testing import write_plan
from testing.gateway import T0, TWO, Gateway, Reply, _Serving, client
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


class ConnectProxy(_Serving):
    """A loopback CONNECT proxy that records every ``host:port`` it was asked to reach."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        outer = self

        class H(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode("latin-1").split()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                if len(line) < 2 or line[0] != "CONNECT":
                    self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    return
                outer.asked.append(line[1])
                host, port = line[1].rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=5) as up:
                    self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self.wfile.flush()
                    ends = [self.connection, up]
                    while True:
                        ready, _, _ = select.select(ends, [], [], 5)
                        if not ready:
                            return
                        for s in ready:
                            data = s.recv(65536)
                            if not data:
                                return
                            (up if s is self.connection else self.connection).sendall(data)

        self._start(socketserver.ThreadingTCPServer(("127.0.0.1", 0), H))


# -- newcomer 36: an explicit proxy -------------------------------------------------------------


@pytest.fixture
def sim_https() -> Iterator[tuple[str, int]]:
    """An https:// URL of a loopback plain-HTTP service: a request reaches it, then fails TLS."""
    with Simulator(accept_unknown_flows=True) as sim:
        port = urlsplit(sim.url).port
        assert port is not None
        yield sim.url.replace("http://", "https://"), port


# -- N16: a drip-fed answer ---------------------------------------------------------------------


@pytest.mark.parametrize("whole", [False, True])
def test_n16_a_drip_fed_answer_ends_as_an_unknown_timeout(
    monkeypatch: pytest.MonkeyPatch, whole: bool
) -> None:
    monkeypatch.setenv(enos.ANSWER_DEADLINE_ENV, "0.6")  # the env knob sets the overall cap
    slow = Reply(200, json.dumps({"status": 0, "msg": "OK", "data": {"x": "y" * 100}}).encode(), 0.2, whole)
    with Gateway(lambda p, q, b: slow if q.get("action") == "trigger" else None) as gw:
        c = client(gw.url, read_timeout=5.0)  # every byte comes well within the read timeout
        got = c.trigger(1, T0)
    assert got.kind is enos.Kind.UNKNOWN, got
    assert got.http_status is None  # counted by the circuit breaker as a timeout
    assert "read timeout after sending" in got.msg and "0.6 s" in got.msg


def test_n16_a_bad_deadline_setting_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("0", "-1", "nan", "inf", "soon"):
        monkeypatch.setenv(enos.ANSWER_DEADLINE_ENV, bad)
        with pytest.raises(UsageError, match=enos.ANSWER_DEADLINE_ENV):
            client("http://127.0.0.1:9")


def test_finding_36_requests_go_through_the_given_proxy(
    sim_https: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, port = sim_https
    with ConnectProxy() as proxy:
        # The tunnel reaches the service; TLS fails on its plain HTTP: nothing sent in clear.
        with pytest.raises(ServiceError, match="TLS error"):
            client(url, proxy=proxy.url).token()
        monkeypatch.setenv(enos.PROXY_ENV, proxy.url)
        with pytest.raises(ServiceError, match="TLS error"):
            client(url).token()
    assert proxy.asked == [f"127.0.0.1:{port}"] * 2


def test_finding_36_the_proxy_option_on_apply_and_doctor(
    tmp_path: Path, run: Any, creds: None, sim_https: tuple[str, int]
) -> None:
    url, port = sim_https
    plan = write_plan(tmp_path, TWO, gateway=url)
    with ConnectProxy() as proxy:
        a = run("apply", str(plan), "--yes", "--ledger", str(tmp_path / "l.jsonl"), "--proxy", proxy.url)
        d = run("doctor", str(plan), "--proxy", proxy.url)
        after = list(proxy.asked)
        s = run("doctor", str(plan))  # the option does not outlive its command
    assert a.code == 1 and d.code == 1 and s.code == 1
    assert "TLS error" in a.err and "TLS error" in d.out
    assert after and set(after) == {f"127.0.0.1:{port}"}
    assert proxy.asked == after


def test_finding_36_https_proxy_from_the_environment_is_never_used(
    sim_https: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = sim_https
    with ConnectProxy() as proxy:
        for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv(enos.PROXY_ENV, raising=False)
        with pytest.raises(ServiceError, match="TLS error"):
            client(url).token()
    assert proxy.asked == []


@pytest.mark.parametrize(
    "bad", ["socks5://127.0.0.1:1080", "127.0.0.1:3128", "http://u:p@", "http://h:99999", "http://h/x?y"]
)
def test_finding_36_a_bad_proxy_is_a_usage_error_that_does_not_echo_it(
    run: Any, creds: None, bad: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as e:
        run("doctor", "--gateway", "http://127.0.0.1:9", "--org", "o", "--user", "u", "--proxy", bad)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--proxy" in err and bad not in err
    monkeypatch.setenv(enos.PROXY_ENV, bad)
    r = run("doctor", "--gateway", "http://127.0.0.1:9", "--org", "o", "--user", "u")
    assert r.code == 2 and enos.PROXY_ENV in r.err and bad not in r.err
