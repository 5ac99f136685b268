"""The service client against the simulator over loopback: every answer class of section 5."""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import pytest
from structlog.testing import capture_logs

from planrunner import enos, protocol, transport
from planrunner.errors import ServiceError, UsageError
from planrunner.sim import Dialect, Faults, SimFlow, Simulator
from testing import make_client

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
SECRET = "s3cr3t-never-shown-4d1f"
KEY = "ak-visible-nowhere-9b2e"


# --- signing ----------------------------------------------------------------------------


def test_signature_vector_with_body() -> None:
    params = {"userId": "u1", "orgId": "o1", "action": "trigger"}
    body = b'{"flowId":3377,"triggerTime":1574385824000}'
    # TOKEN + sorted name/value pairs + body bytes + timestamp + SECRET, written out by hand:
    text = b"tok" + b"actiontriggerorgIdo1userIdu1" + body + b"1574385824000" + b"sec"
    expected = "0ec3668f6e9e487855a56c04299a67929ff11a343c3c8b3e233a2a71f88c8c01"
    assert hashlib.sha256(text).hexdigest() == expected
    assert protocol.signature("tok", params, body, 1574385824000, "sec") == expected


def test_signature_vector_without_body() -> None:
    params = {"action": "get", "flowInstId": "3377-20191121010300", "userId": "u1", "orgId": "o1"}
    expected = "b82cb483e35164f3e8ba252fb370e783fcb03a0fe9b813b783c5937ffee94c94"
    assert protocol.signature("tok", params, None, 1574385824000, "sec") == expected


def test_token_encryption_vector() -> None:
    assert protocol.token_encryption("AK", 1574385824000, "SK") == (
        "3af364f253e914664a8db72fdcc7fb62c09fdead089be068931438946f1b27a8"
    )


def test_instance_id_is_the_minute_in_a_zone() -> None:
    assert protocol.instance_id(2430, 1563436200123) == "2430-20190718075000"
    assert protocol.instance_id(3377, 1767204000000) == "3377-20251231180000"
    gmt8 = protocol.server_zone("GMT+8")
    assert protocol.instance_id(3377, 1767204000000, gmt8) == "3377-20260101020000"


@pytest.mark.parametrize(
    ("name", "text", "ms"),
    [
        ("GMT+8", "2019-08-08 09:32:12", 1565227932000),
        ("GMT-5", "2019-08-08 09:32:12", 1565274732000),
        ("GMT+5:30", "2019-08-08 09:32:12", 1565236932000),
        ("UTC", "2019-08-08 09:32:12", 1565256732000),
        ("Asia/Shanghai", "2019-08-08 09:32:12", 1565227932000),
        ("GMT+8", "2019-08-08 09:34:36.0", 1565228076000),
    ],
)
def test_service_time_strings_are_read_in_the_server_zone(name: str, text: str, ms: int) -> None:
    zone = protocol.server_zone(name)
    assert protocol.parse_time(text, zone) == ms
    assert protocol.parse_time(ms, zone) == ms  # integers are epoch ms
    assert protocol.format_time(ms, zone) == text[:19]


@pytest.mark.parametrize("bad", ["GMT+25", "Mars/Olympus", "", "GMT+8:99"])
def test_bad_server_zones_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="zone"):
        protocol.server_zone(bad)


@pytest.mark.parametrize(
    ("body", "code", "auth"),
    [
        ({"status": 0, "msg": " Success", "data": 1}, 0, False),
        ({"code": 0, "msg": "OK", "data": 1}, 0, False),
        ({"code": 62102, "msg": "x"}, 62102, False),
        ({"apim_status": 4011, "msg": "expired"}, None, True),
        ({"status": 401, "msg": "no"}, 401, True),
        ({"status": 497, "msg": "sig"}, 497, True),
        ({"status": 498, "msg": "perm"}, 498, True),
        ({"status": 1203, "msg": "expired"}, 1203, True),
    ],
)
def test_envelopes_of_both_versions_and_auth_failures(body: dict, code: int | None, auth: bool) -> None:
    env = protocol.read_envelope(body)
    assert env is not None
    assert (env.code, env.auth_failure) == (code, auth)


@pytest.mark.parametrize("body", [None, [], "x", {"msg": "no code"}, {"status": "zero"}, {"status": True}])
def test_bodies_without_an_envelope(body: object) -> None:
    assert protocol.read_envelope(body) is None


# --- answers ------------------------------------------------------------------------------


def test_success(sim) -> None:
    a = make_client(sim.url).trigger(3377, T0)
    assert a.kind is enos.Kind.OK
    assert a.flow_instance_id == "3377-20260101000000"


@pytest.mark.parametrize(
    ("flow", "user", "org", "code"),
    [
        (SimFlow(1, users=("u1",), org_id="o2"), "u1", "o1", 62101),
        (SimFlow(1, users=("someone-else",), org_id="o1"), "u1", "o1", 62103),
        (SimFlow(1, users=("u1",), org_id="o1", locked=True), "u1", "o1", 62105),
        (SimFlow(1, users=("u1",), org_id="o1", tasks=0), "u1", "o1", 62104),
    ],
)
def test_permanent_refusals(flow: SimFlow, user: str, org: str, code: int) -> None:
    with Simulator([flow], accept_unknown_flows=True) as sim:
        a = make_client(sim.url, user_id=user, org_id=org).trigger(1, T0)
        assert (a.kind, a.code) == (enos.Kind.PERMANENT, code)
        assert sim.triggers()[0]["flowInstanceId"] is None


@pytest.mark.parametrize("code", sorted(protocol.PERMANENT_CODES))
def test_cleanup_6_the_permanent_row_is_protocol_data(code: int) -> None:
    # The answer table's permanent row is protocol.PERMANENT_CODES and PERMANENT_HTTP, read
    # by the classifier, and the cases above cover every member of both.
    client = make_client("http://127.0.0.1:9")
    body = f'{{"code": {code}, "msg": "refused", "data": null}}'.encode()
    answer = client._classify(transport.Reply(200, None, body), "trigger")
    assert (answer.kind, answer.code, answer.msg) == (enos.Kind.PERMANENT, code, "refused")
    assert protocol.PERMANENT_HTTP <= enos.GATEWAY_REFUSALS


def test_same_minute_is_a_duplicate(sim) -> None:
    c = make_client(sim.url)
    assert c.trigger(5, T0).kind is enos.Kind.OK
    a = c.trigger(5, T0 + 30_000)
    assert (a.kind, a.code) == (enos.Kind.DUPLICATE, 62102)
    assert [t["status"] for t in sim.triggers()] == [0, 62102]


@pytest.mark.parametrize(
    ("fault", "kind", "code"),
    [
        ("62109", enos.Kind.UNKNOWN, 62109),  # on Trigger: maybe created; look it up
        ("62109-after-create", enos.Kind.UNKNOWN, 62109),
        ("503", enos.Kind.RETRYABLE, 503),
        ("http-429", enos.Kind.RETRYABLE, 429),
        ("http-500", enos.Kind.UNKNOWN, 500),
        ("http-502", enos.Kind.UNKNOWN, 502),
        ("504-after-create", enos.Kind.UNKNOWN, 504),
        ("http-504", enos.Kind.UNKNOWN, 504),
        ("http-400", enos.Kind.PERMANENT, 400),
        ("http-413", enos.Kind.PERMANENT, 413),
        ("http-403", enos.Kind.PERMANENT, 403),
    ],
)
def test_faults_are_classified(fault: str, kind: enos.Kind, code: int) -> None:
    with Simulator(faults=Faults.parse([f"{fault}@1"]), accept_unknown_flows=True) as sim:
        a = make_client(sim.url).trigger(7, T0)
        assert (a.kind, a.code) == (kind, code)


def test_retry_after_is_read(sim) -> None:
    with Simulator(rate_limit=1, dialect=Dialect(retry_after=True), accept_unknown_flows=True) as limited:
        c = make_client(limited.url)
        c.token()
        answers = [c.trigger(8, T0 + i * 60_000) for i in range(3)]
    limited_answers = [a for a in answers if a.code == 429]
    assert limited_answers
    assert all(
        a.kind is enos.Kind.RETRYABLE and a.retry_after is not None and a.retry_after >= 1
        for a in limited_answers
    )


def test_dropped_connection_after_create_is_unknown_and_the_instance_exists() -> None:
    with Simulator(faults=Faults.parse(["drop-after-create@1"]), accept_unknown_flows=True) as sim:
        c = make_client(sim.url)
        a = c.trigger(9, T0)
        assert a.kind is enos.Kind.UNKNOWN
        assert c.find_instance(9, T0) == enos.Lookup(True, "9-20260101000000")


def test_malformed_body_is_unknown() -> None:
    with Simulator(faults=Faults.parse(["malformed@1"]), accept_unknown_flows=True) as sim:
        a = make_client(sim.url).trigger(9, T0)
        assert (a.kind, a.msg) == (enos.Kind.UNKNOWN, "unparsable answer body")


def test_read_timeout_is_unknown() -> None:
    with Simulator(faults=Faults(latency=1.0), accept_unknown_flows=True) as sim:
        c = make_client(sim.url, read_timeout=0.3)
        c.token()
        a = c.trigger(10, T0)
        assert (a.kind, a.msg) == (enos.Kind.UNKNOWN, "read timeout after sending")


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port now.
    c = make_client(f"http://127.0.0.1:{port}")
    with pytest.raises(ServiceError, match="cannot get an access token"):
        c.trigger(1, T0)
    sent = c._send("POST", protocol.V20.flows, {}, b"{}", {})
    assert isinstance(sent, enos.Answer)
    assert (sent.kind, sent.msg) == (enos.Kind.RETRYABLE, "connection refused (nothing sent)")


def test_connect_timeout_is_retryable() -> None:
    # A listener that never accepts, its backlog full: the next SYN goes unanswered.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.1)
        c = make_client(f"http://127.0.0.1:{port}", connect_timeout=0.3)
        sent = c._send("POST", protocol.V20.flows, {}, b"{}", {})
        assert isinstance(sent, enos.Answer)
        assert sent.kind is enos.Kind.RETRYABLE
        assert sent.msg in ("connect timeout (nothing sent)", "connection refused (nothing sent)")
    finally:
        for f in fillers:
            f.close()
        server.close()


def test_tls_is_always_verified(sim) -> None:
    # The simulator speaks plain HTTP; an https client must fail the handshake, not fall back.
    c = make_client(sim.url.replace("http://", "https://"))
    assert c.session.verify is True
    sent = c._send("GET", "/", {}, None, {})
    assert isinstance(sent, enos.Answer)
    assert sent.kind is enos.Kind.FATAL


# --- tokens ---------------------------------------------------------------------------------


def test_expired_or_revoked_token_is_refreshed_once_and_the_call_succeeds(sim) -> None:
    c = make_client(sim.url)
    assert c.trigger(11, T0).kind is enos.Kind.OK
    sim.state.revoke_tokens()
    assert c.trigger(11, T0 + 60_000).kind is enos.Kind.OK
    # The refresh of a revoked token fails (1204), so the client gets a new one.
    assert [(p.rsplit("/", 1)[1], st) for p, st in sim.state.token_log] == [
        ("get", 0),
        ("refresh", 1204),
        ("get", 0),
    ]


def test_persistent_401_stops_after_one_refresh(sim) -> None:
    c = make_client(sim.url)
    c.token()
    # Every API call is answered 401 by the gateway.
    sim.state.faults = Faults(rates={"http-401": 1.0})
    a = c.trigger(12, T0)
    assert (a.kind, a.code) == (enos.Kind.AUTH, 401)
    assert len(sim.state.token_log) == 2


def test_token_is_refreshed_well_before_expiry() -> None:
    with Simulator(token_ttl=2, accept_unknown_flows=True) as sim:
        c = make_client(sim.url, refresh_margin=0.5)
        c.token()
        time.sleep(1.1)
        assert c.trigger(13, T0).kind is enos.Kind.OK
        paths = [p.rsplit("/", 1)[1] for p, status in sim.state.token_log if status == 0]
        assert paths == ["get", "refresh"]


def test_no_two_token_calls_share_a_timestamp(sim) -> None:
    c = make_client(sim.url)
    threads = [
        threading.Thread(target=lambda: [c.token(force=True) for _ in range(25)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = [status for _, status in sim.state.token_log]
    assert len(codes) >= 100
    assert 1001 not in codes


@pytest.mark.parametrize(
    ("key", "secret", "code"),
    [("wrong-key", "sim-secret-key", 1002), ("sim-access-key", SECRET, 1003)],
)
def test_bad_credentials_stop_with_the_token_code(sim, key: str, secret: str, code: int) -> None:
    c = make_client(sim.url, credentials=enos.Credentials(key, secret))
    with pytest.raises(ServiceError, match=f"code {code}") as e:
        c.trigger(1, T0)
    assert SECRET not in str(e.value)


# --- lookups ----------------------------------------------------------------------------------


def test_find_instance_by_id_then_by_search(sim) -> None:
    c = make_client(sim.url)
    assert c.find_instance(20, T0) == enos.Lookup(False, None)
    assert c.trigger(20, T0).kind is enos.Kind.OK
    assert c.find_instance(20, T0) == enos.Lookup(True, "20-20260101000000")
    # Flow 2 must not take flow 20's instance (Search's expression is empty; flowId decides).
    assert c.find_instance(2, T0) == enos.Lookup(False, None)


def test_search_pages_and_its_half_open_window(sim) -> None:
    c = make_client(sim.url)
    for i in range(5):
        assert c.trigger(30, T0 + i * 60_000).kind is enos.Kind.OK
    a = c.search_instances(T0, T0 + 4 * 60_000, page_no=1, page_size=2)
    assert a.kind is enos.Kind.OK
    assert [i["triggerTime"] for i in a.data["flowInsts"]] == [
        protocol.format_time(T0 + 120_000, protocol.server_zone("GMT+8")),
        protocol.format_time(T0 + 180_000, protocol.server_zone("GMT+8")),
    ]
    whole = c.search_instances(T0, T0 + 4 * 60_000, page_size=100)
    assert len(whole.data["flowInsts"]) == 4  # the instance at exactly `to` is outside


def test_lookups_are_retried_through_503s() -> None:
    with Simulator(faults=Faults.parse(["lookup-503=0.5"], seed=3), accept_unknown_flows=True) as sim:
        c = make_client(sim.url)
        assert c.trigger(31, T0).kind is enos.Kind.OK
        assert all(c.find_instance(31, T0).found for _ in range(5))


def test_server_zone_is_asked_once_and_a_given_one_is_not_asked() -> None:
    with Simulator(dialect=Dialect(server_zone="GMT-5"), accept_unknown_flows=True) as sim:
        c = make_client(sim.url)
        assert c.server_zone().utcoffset(None).total_seconds() == -5 * 3600  # type: ignore[union-attr]
        assert c.trigger(32, T0 + 7_000).kind is enos.Kind.OK
        assert c.find_instance(32, T0 + 7_000).found is True
        given = make_client(sim.url, server_zone=protocol.server_zone("GMT-5"))
        assert given.find_instance(32, T0 + 7_000).found is True


# --- the loopback rule and secrets ------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://apigw.example.com", "http://10.0.0.1:8080", "ftp://x", "apigw.example.com"]
)
def test_plain_http_only_to_loopback(url: str) -> None:
    with pytest.raises(UsageError, match="gateway"):
        make_client(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://apigw.example.com",
        "http://127.0.0.1:1",
        "http://127.8.9.10",
        "http://localhost:80",
        "http://[::1]:8080",
    ],
)
def test_accepted_gateways(url: str) -> None:
    assert make_client(url).gateway == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1\\@evil.example.com",
        "https://user:pw@apigw.example.com",
        "https://apigw.example.com /x",
        "https://apigw.example.com\x00",
        "https://apigw.example.com/?a=1",
    ],
)
def test_ambiguous_gateway_urls_are_refused(url: str) -> None:
    with pytest.raises(UsageError, match="gateway"):
        make_client(url)


def test_secrets_never_appear_in_reprs_logs_or_errors() -> None:
    with Simulator(access_key=KEY, secret_key=SECRET, faults=Faults.parse(["http-401@2"]), accept_unknown_flows=True) as sim:
        creds = enos.Credentials(KEY, SECRET)
        texts = [repr(creds), str(creds)]
        with capture_logs() as logs:
            c = enos.Client(sim.url, "o1", "u1", creds)
            texts.append(repr(c))
            texts += [repr(c.trigger(1, T0 + i * 60_000)) for i in range(3)]
            bad = enos.Client(sim.url, "o1", "u1", enos.Credentials(KEY, SECRET + "x"))
            with pytest.raises(ServiceError) as e:
                bad.trigger(1, T0)
            texts.append(str(e.value))
        texts += [repr(entry) for entry in logs]
    blob = "\n".join(texts)
    assert SECRET not in blob
    assert KEY not in blob
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(creds)


def test_credentials_come_from_the_environment_only() -> None:
    with pytest.raises(UsageError, match="ENOS_SECRET_KEY not set"):
        enos.Credentials.from_env({"ENOS_ACCESS_KEY": "a"})
    assert repr(enos.Credentials.from_env({"ENOS_ACCESS_KEY": "a", "ENOS_SECRET_KEY": "b"})) == (
        "Credentials(access_key=***, secret_key=***)"
    )
