"""The service client against a hostile, odd or slow service: findings N4-N7, N11, N16, D5,
and the newcomer trial's 26 and 36.

The hostile gateway is a small loopback ``ThreadingHTTPServer`` (the probe's appendix lists
its answers): the token call gets ``TOKEN``, Get Time Zone ``GMT+8``, Get 62102, Search the
instances it created; each test changes one answer. The proxy is a small loopback CONNECT
proxy that records what it was asked to reach.
"""

from __future__ import annotations

import json
import select
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from planrunner import enos, protocol
from planrunner.errors import ServiceError
from planrunner.sim import Dialect, Simulator
from testing import make_client, write_plan
from testing.hostile import KEY, SECRET, TOKEN

INJECTION = "\x1b[2J\x1b[31m::error file=x::INJECTED\n::add-mask::x\r\n"
GMT8 = protocol.server_zone("GMT+8")
TWO = '  - {name: f1, flowId: 1, at: ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"]}\n'
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass
class Reply:
    """One answer: ``drip`` > 0 writes it a byte at a time, that many seconds apart
    (``whole``: the status line and headers too, not only the body)."""

    status: int
    body: bytes
    drip: float = 0.0
    whole: bool = False


def env(code: int, msg: str = "", data: Any = None) -> Reply:
    return Reply(200, json.dumps({"status": code, "msg": msg, "data": data}).encode())


Handler = Callable[[str, dict[str, str], Any], Reply | None]


class _Serving:
    """A loopback server run on a thread while in a ``with`` block."""

    server: socketserver.TCPServer

    def _start(self, server: socketserver.TCPServer) -> None:
        self.server = server
        self.server.daemon_threads = True  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Gateway(_Serving):
    """A loopback gateway; ``on(path, params, body) -> Reply | None`` overrides any answer
    (None: the default one). Triggers create instances unless ``create`` is False."""

    def __init__(self, on: Handler | None = None, *, create: bool = True) -> None:
        self.on = on or (lambda path, params, body: None)
        self.create = create
        self.created: list[tuple[int, int]] = []
        self.triggers = 0
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def _go(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                body = json.loads(raw) if raw else None
                reply = outer.answer(parts.path, params, body)
                head = f"HTTP/1.1 {reply.status} X\r\nContent-Length: {len(reply.body)}\r\n\r\n"
                data = head.encode() + reply.body
                if not reply.drip:
                    self.wfile.write(data)
                    return
                start = 0 if reply.whole else len(head)
                self.wfile.write(data[:start])
                self.wfile.flush()
                try:
                    for i in range(start, len(data)):
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                        time.sleep(reply.drip)
                except OSError:
                    pass  # the client gave up: that is the point

            do_GET = do_POST = _go

        self._start(ThreadingHTTPServer(("127.0.0.1", 0), H))

    def answer(self, path: str, params: dict[str, str], body: Any) -> Reply:
        special = self.on(path, params, body)
        if "/token/" in path:
            return special or env(0, "SUCCESS", {"accessToken": TOKEN, "expire": 7200})
        action = params.get("action")
        if action == "trigger":
            with self.lock:
                self.triggers += 1
                if self.create:
                    self.created.append((body["flowId"], body["triggerTime"]))
            fid, tt = body["flowId"], body["triggerTime"]
            return special or env(0, "OK", {"flowInstanceId": protocol.instance_id(fid, tt)})
        if special is not None:
            return special
        if action == "get" and "flowId" in params:  # Get Flow, asked before a flow's first trigger
            graph = json.dumps({"tasks": [{"taskId": "t1", "taskName": "t1"}]})
            return env(0, "OK", {"flowId": int(params["flowId"]), "graph": graph})
        if action == "getTimeZone":
            return env(0, "OK", {"timezone": "GMT+8"})
        if action == "getCurrentTime":
            return env(0, "OK", int(time.time() * 1000))
        if action == "search":
            lo, hi = body["fromTriggerTime"], body["toTriggerTime"]
            with self.lock:
                hits = [(f, t) for f, t in self.created if lo <= t < hi]
            insts = [
                {
                    "instanceId": protocol.instance_id(f, t),
                    "flowId": f,
                    "triggerTime": protocol.format_time(t, GMT8),
                    "status": protocol.SUCCESS,
                }
                for f, t in hits
            ]
            return env(0, "OK", {"flowInsts": insts})
        return env(62102, "Instance not found")


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


def client(url: str, **kw: Any) -> enos.Client:
    kw.setdefault("lookup_tries", 1)
    return enos.Client(url, "o1", "u1", enos.Credentials(KEY, SECRET), **kw)


def apply(run: Any, tmp_path: Path, url: str, plan_text: str = TWO, *extra: str) -> tuple[Any, Path]:
    plan = write_plan(tmp_path, plan_text)
    led = tmp_path / "l.jsonl"
    r = run("apply", str(plan), "--gateway", url, "--yes", "--ledger", str(led), *extra)
    return r, led


def pieces(value: str, n: int = 12) -> list[str]:
    return [value[i : i + n] for i in range(len(value) - n + 1)]


def assert_harmless(*texts: str) -> None:
    """No credential (nor any 12-character piece of one), ANSI escape, line-initial ``::``,
    traceback or 100 KB value."""
    for text in texts:
        for value in (SECRET, TOKEN, KEY):
            assert not any(p in text for p in pieces(value)), text[:2000]
        assert "\x1b" not in text and "\r" not in text
        assert not any(line.lstrip().startswith("::") for line in text.splitlines())
        assert "Traceback" not in text and "Exception in thread" not in text
        assert len(text) < 20_000


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


# -- N5: 5xx and answers without an envelope -----------------------------------------------------


@pytest.mark.parametrize("status", [500, 501, 502, 504, 505, 507, 520, 522, 524, 527, 599, 302, 408])
def test_n5_any_5xx_or_unexpected_status_after_sending_is_unknown(status: int) -> None:
    trigger_only: Handler = lambda p, q, b: (  # noqa: E731
        Reply(status, b"origin timed out") if q.get("action") == "trigger" else None
    )
    with Gateway(trigger_only) as gw:
        got = client(gw.url).trigger(1, T0)
    assert got.kind is enos.Kind.UNKNOWN, got
    assert gw.created == [(1, T0)]


@pytest.mark.parametrize(
    "body", [b"<html>502 Bad Gateway</html>", b"", b"[]", b'{"data": {}}', b'{"status": true}']
)
def test_n5_a_200_without_a_service_envelope_is_unknown(body: bytes) -> None:
    with Gateway(lambda p, q, b: Reply(200, body) if q.get("action") == "trigger" else None) as gw:
        assert client(gw.url).trigger(1, T0).kind is enos.Kind.UNKNOWN


@pytest.mark.parametrize("status", [520, 524])
def test_n5_a_created_instance_answered_524_is_looked_up_not_resent(
    tmp_path: Path, run: Any, creds: None, status: int
) -> None:
    def on(path: str, q: dict[str, str], b: Any) -> Reply | None:
        return Reply(status, b"origin timed out") if q.get("action") == "trigger" else None

    with Gateway(on) as gw:
        r, led = apply(run, tmp_path, gw.url)
        r2, _ = apply(run, tmp_path, gw.url)
    assert r.code == 0, r.out + r.err
    events = [json.loads(line)["event"] for line in led.read_text().splitlines()]
    assert "failed" not in events and events.count("reconciled") == 2
    assert gw.triggers == 2 and len(gw.created) == 2  # one request per entry, in two runs
    assert r2.code == 0


# -- N6: every string from the service is cleaned ----------------------------------------------


def test_n6_a_hostile_instance_id_is_refused_and_never_reaches_output_or_ledger(
    tmp_path: Path, run: Any, creds: None
) -> None:
    hostile = INJECTION + SECRET + " " + TOKEN + " " + "Z" * 100_000

    def on(path: str, q: dict[str, str], b: Any) -> Reply | None:
        if q.get("action") == "trigger":
            return env(0, "OK", {"flowInstanceId": hostile})
        return None

    with Gateway(on) as gw:
        got = client(gw.url).trigger(1, T0)
        r, led = apply(run, tmp_path, gw.url, TWO, "--format", "json")
        plan = tmp_path / "plan.yaml"
        shown = [
            run("plan", str(plan), "--ledger", str(led)),
            run("plan", str(plan), "--ledger", str(led), "--format", "json"),
            run("ledger", "log", str(plan), "--ledger", str(led)),
        ]
    assert got.kind is enos.Kind.OK and got.flow_instance_id is None  # created; the id refused
    assert r.code == 0, r.err
    assert_harmless(r.out, r.err, led.read_text(), *(x.out + x.err for x in shown))
    assert led.stat().st_size < 5_000


@pytest.mark.parametrize(
    "value",
    [
        "1-20260101000000",
        "2438-201907261239",
    ],
)
def test_n6_instance_ids_of_the_documented_shapes_are_kept(value: str) -> None:
    assert client("http://127.0.0.1:9").checked_id(value) == value


@pytest.mark.parametrize(
    "value", ["", "x" * 101, "1-2026\n::error::x", "a" + SECRET, KEY, "1 2", "::x", 12, None]
)
def test_n6_instance_ids_of_other_shapes_are_refused(value: object) -> None:
    c = client("http://127.0.0.1:9")
    assert c.checked_id(value) is None


def test_n6_hostile_statuses_and_ids_from_get_are_cleaned_in_status(
    tmp_path: Path, run: Any, creds: None
) -> None:
    hostile = INJECTION + TOKEN + SECRET + "Q" * 100_000
    served: list[Gateway] = []

    def on(path: str, q: dict[str, str], b: Any) -> Reply | None:
        if q.get("action") == "search" and served:  # status reads Search first (issue 20)
            lo, hi = b["fromTriggerTime"], b["toTriggerTime"]
            hits = [(f, t) for f, t in served[0].created if lo <= t < hi]
            insts = [
                {"instanceId": protocol.instance_id(f, t), "flowId": f,
                 "triggerTime": protocol.format_time(t, GMT8), "status": hostile}
                for f, t in hits
            ]  # fmt: skip
            return env(0, "OK", {"flowInsts": insts})
        if q.get("action") == "get" and "flowInstId" in q:
            iid = q["flowInstId"]
            fid, _ = iid.split("-", 1)
            tt = T0 if iid.endswith("20260101000000") else T0 + 3_600_000
            return env(
                0,
                "OK",
                {
                    "instanceId": INJECTION + TOKEN,
                    "flowId": int(fid),
                    "triggerTime": protocol.format_time(tt, GMT8),
                    "status": hostile,
                },
            )
        return None

    with Gateway(on) as gw:
        served.append(gw)
        r, led = apply(run, tmp_path, gw.url)
        plan = tmp_path / "plan.yaml"
        outs = [
            run("status", str(plan), "--gateway", gw.url, "--ledger", str(led), "--format", fmt)
            for fmt in ("text", "markdown", "json")
        ]
    assert r.code == 0
    for o in outs:
        assert "STATUS_" in o.out  # shown, cleaned and cut
        assert_harmless(o.out, o.err)


def test_n6_a_hostile_time_zone_name_is_cleaned_in_doctor(run: Any, creds: None) -> None:
    name = "Mars/Olympus" + INJECTION + SECRET

    def on(path: str, q: dict[str, str], b: Any) -> Reply | None:
        return env(0, "OK", {"timezone": name}) if q.get("action") == "getTimeZone" else None

    with Gateway(on) as gw:
        outs = [
            run("doctor", "--gateway", gw.url, "--org", "o1", "--user", "u1", "--format", fmt)
            for fmt in ("text", "json")
        ]
        c = client(gw.url)
        with pytest.raises(ServiceError) as e:
            c.server_zone()
    for o in outs:
        assert o.code == 1 and "Mars/Olympus" in o.out
        assert_harmless(o.out, o.err)
    assert_harmless(str(e.value))


# -- N7: redact before cutting -----------------------------------------------------------------


@pytest.mark.parametrize("pad", [470, 480, 488, 490, 495, 498, 499, 505])
def test_n7_a_secret_straddling_the_cut_never_leaks_a_piece(pad: int) -> None:
    c = client("http://127.0.0.1:9")
    for value in (SECRET, KEY):
        cleaned = c.clean("x" * pad + value + " and more " + value)
        assert len(cleaned) <= enos.FOREIGN_TEXT_LIMIT
        assert not any(p in cleaned for p in pieces(value, 4)), cleaned[-40:]


def test_n7_a_400_body_with_the_secret_at_the_cut(tmp_path: Path, run: Any, creds: None) -> None:
    body = ("x" * 480 + SECRET + " and token " + TOKEN).encode()

    def on(path: str, q: dict[str, str], b: Any) -> Reply | None:
        return Reply(400, body) if q.get("action") == "trigger" else None

    with Gateway(on) as gw:
        r, led = apply(run, tmp_path, gw.url)
        rj, _ = apply(run, tmp_path, gw.url, TWO, "--format", "json")
        plan = tmp_path / "plan.yaml"
        p = run("plan", str(plan), "--ledger", str(led), "--format", "json")
        log = run("ledger", "log", str(plan), "--ledger", str(led))
    assert r.code == 1 and "xxxx" in r.out
    assert_harmless(r.out, r.err, rj.out, rj.err, p.out, log.out, led.read_text())


# -- N11: answers that cannot be read ----------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000
HOSTILE_BODIES = {
    "deep-json": DEEP,
    "deep-object": b'{"a":' * 50_000 + b"0" + b"}" * 50_000,
    "inf-status": b'{"status": Infinity, "msg": "x"}',
    "nan-status": b'{"status": NaN}',
    "big-float-status": b'{"status": 1e400}',
    "huge-int-status": b'{"status": 99999999999999999999999}',
    "huge-int-data": b'{"status": 0, "data": {"flowInstanceId": "1-20260101000000", "n": 1' + b"0" * 5000 + b"}}",
    "not-utf8": b'{"status": 0, "msg": "\xff\xfe"}',
}


@pytest.mark.parametrize("mode", sorted(HOSTILE_BODIES))
def test_n11_an_unreadable_answer_is_unknown_for_a_trigger_and_retryable_for_a_lookup(
    mode: str,
) -> None:
    bad = Reply(200, HOSTILE_BODIES[mode])
    with Gateway(lambda p, q, b: bad if "/token/" not in p else None) as gw:
        c = client(gw.url, server_zone=GMT8)
        trig = c.trigger(1, T0)
        got = c.get_instance("1-20260101000000")
        look = c.find_instance(1, T0)
    assert trig.kind is enos.Kind.UNKNOWN and trig.msg == "unparsable answer body"
    assert got.kind is enos.Kind.UNKNOWN  # a lookup retries it, then gives up
    assert look.found is None


@pytest.mark.parametrize("mode", ["deep-json", "inf-status", "big-float-status", "huge-int-status"])
def test_n11_apply_over_unreadable_answers_has_no_traceback_and_no_exit_70(
    tmp_path: Path, run: Any, creds: None, mode: str
) -> None:
    bad = Reply(200, HOSTILE_BODIES[mode])
    with Gateway(lambda p, q, b: bad if q.get("action") == "trigger" else None) as gw:
        r, led = apply(run, tmp_path, gw.url)
    assert r.code not in (3, 70), r.err
    assert "internal error" not in r.err and "cannot write ledger" not in r.err
    assert_harmless(r.out, r.err)
    # Both entries were sent; the gateway created them; lookups found them.
    assert gw.triggers == 2
    events = [json.loads(line)["event"] for line in led.read_text().splitlines()]
    assert events.count("reconciled") == 2


TOKEN_ANSWERS = {
    "expire-huge": b'{"status":0,"data":{"accessToken":"TOK","expire":1' + b"0" * 400 + b"}}",
    "expire-absurd": b'{"status":0,"data":{"accessToken":"TOK","expire":1e300}}',
    "expire-negative": b'{"status":0,"data":{"accessToken":"TOK","expire":-5}}',
    "expire-inf": b'{"status":0,"data":{"accessToken":"TOK","expire":Infinity}}',
    "token-deep": b'{"status":0,"data":' + DEEP + b"}",
    "token-nested": b'{"status":0,"data":{"data":{"data":{"accessToken":"TOK"}}}}',
}


@pytest.mark.parametrize("mode", sorted(TOKEN_ANSWERS))
def test_n11_odd_token_answers_are_a_clean_token_error(run: Any, creds: None, mode: str) -> None:
    bad = Reply(200, TOKEN_ANSWERS[mode])
    with Gateway(lambda p, q, b: bad if "/token/" in p else None) as gw:
        with pytest.raises(ServiceError, match="token"):
            client(gw.url).token()
        r = run("doctor", "--gateway", gw.url, "--org", "o1", "--user", "u1")
    assert r.code == 1 and "problem" in r.out, r.out + r.err
    assert_harmless(r.out, r.err)


def test_n11_a_deep_search_answer_is_a_doctor_problem_not_exit_70(run: Any, creds: None) -> None:
    bad = Reply(200, DEEP)
    with Gateway(lambda p, q, b: bad if q.get("action") == "search" else None) as gw:
        r = run("doctor", "--gateway", gw.url, "--org", "o1", "--user", "u1")
    assert r.code == 1, r.out + r.err
    assert "search" in r.out and "unparsable" in r.out
    assert_harmless(r.out, r.err)


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
        with pytest.raises(enos.UsageError, match=enos.ANSWER_DEADLINE_ENV):
            client("http://127.0.0.1:9")


# -- D5: a gateway written with ${VAR} ----------------------------------------------------------


def test_d5_an_expanded_gateway_is_never_shown_at_run_time(
    tmp_path: Path, run: Any, creds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_token = env(1003, "encryption not valid")
    with Gateway(lambda p, q, b: bad_token if "/token/" in p else None) as gw:
        monkeypatch.setenv("GW_PORT", str(gw.port))
        plan = write_plan(tmp_path, TWO, gateway="http://127.0.0.1:${GW_PORT}")
        led = tmp_path / "l.jsonl"
        outs = [
            run("apply", str(plan), "--yes", "--ledger", str(led), "--log-format", "text", "-v"),
            run("doctor", str(plan)),
            run("doctor", str(plan), "--format", "json"),
            run("status", str(plan), "--ledger", str(led)),
        ]
    expanded = f"127.0.0.1:{gw.port}"
    assert outs[0].code == 1 and outs[1].code == 1
    for o in outs:
        assert expanded not in o.out + o.err
    assert "${GW_PORT}" in outs[0].err and "${GW_PORT}" in outs[1].out


# -- newcomer 26: a wrong API version on apply --------------------------------------------------


def test_finding_26_a_404_on_trigger_says_wrong_api(tmp_path: Path, run: Any, sim_env: None) -> None:
    with Simulator(dialect=Dialect(api="v2.1"), accept_unknown_flows=True) as sim:
        plan = write_plan(tmp_path, TWO)  # target.api defaults to v2.0
        r = run(
            "apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", str(tmp_path / "l.jsonl")
        )
    assert r.code == 1
    assert "wrong target.api? run planrunner doctor" in r.out


# -- newcomer 36: an explicit proxy -------------------------------------------------------------


@pytest.fixture
def sim_https() -> Iterator[tuple[str, int]]:
    """An https:// URL of a loopback plain-HTTP service: a request reaches it, then fails TLS."""
    with Simulator(accept_unknown_flows=True) as sim:
        port = urlsplit(sim.url).port
        assert port is not None
        yield sim.url.replace("http://", "https://"), port


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
