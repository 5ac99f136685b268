"""Reading the service's answers: what counts as unknown, failed or done, and what of a
hostile answer may reach output, logs or the ledger (D4, D12, D13, N5-N7, N11, finding 26)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from planrunner import enos
from planrunner.errors import ServiceError
from planrunner.sim import Dialect, Simulator
from testing import SIM_ENV, cron_flows, run_process, write_plan
from testing.gateway import (
    DEEP,
    GMT8,
    INJECTION,
    T0,
    TWO,
    Gateway,
    Handler,
    Reply,
    apply,
    assert_harmless,
    client,
    env,
    pieces,
)
from testing.hostile import KEY, ONE, SECRET, TOKEN, HostileGateway, envelope, read_ledger

# -- D4, D12, D13: foreign text ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [
        "401-secret",
        "401-token",
        "400-secret",
        "400-token",
        "62104-secret",
        "62104-token",
        "62109-key",
    ],
)
def test_d4_secrets_and_token_echoed_by_a_gateway_are_redacted(
    tmp_path: Path, run, creds, kind: str
) -> None:
    code, what = kind.split("-")
    echoed = {"secret": SECRET, "token": TOKEN, "key": KEY}[what]

    def reply(path: str, body: bytes) -> tuple[int, bytes]:
        text = f"refused; expected {echoed} here"
        if code.startswith("6"):
            return envelope(int(code), text)
        return int(code), text.encode()

    with HostileGateway(reply) as gw:
        plan = write_plan(tmp_path, ONE)
        led = tmp_path / "h.jsonl"
        r = run(
            "apply",
            str(plan),
            "--gateway",
            gw.url,
            "--yes",
            "--ledger",
            str(led),
            "--format",
            "json",
            "-v",
        )
        r2 = run("plan", str(plan), "--ledger", str(led), "--format", "json")
    assert r.code == 1
    for text in (r.out, r.err, led.read_text(), r2.out, r2.err):
        assert SECRET not in text and TOKEN not in text and KEY not in text


def test_d12_control_characters_and_workflow_commands_are_neutralised(
    tmp_path: Path, run, creds
) -> None:
    nasty = "no task\n::error::INJECTED\r\x1b[31mRED\x1b[2J\u2028x"
    for code in (62104, 400):
        gw_reply = (
            (lambda p, b: envelope(62104, nasty))
            if code == 62104
            else (lambda p, b: (400, nasty.encode()))
        )
        with HostileGateway(gw_reply) as gw:
            plan = write_plan(tmp_path, ONE)
            led = tmp_path / f"i{code}.jsonl"
            r = run("apply", str(plan), "--gateway", gw.url, "--yes", "--ledger", str(led))
        for text in (r.out, r.err, led.read_text()):
            assert "\x1b" not in text and "\r" not in text and "\u2028" not in text
            assert "::error::" not in text
            assert not any(line.startswith("::") for line in text.splitlines())
        assert "INJECTED" in r.out  # shown, made harmless


def test_d13_foreign_text_is_cut_to_500_characters(tmp_path: Path, run, creds) -> None:
    with HostileGateway(lambda p, b: envelope(62104, "A" * 1_000_000)) as gw:
        plan = write_plan(tmp_path, ONE)
        led = tmp_path / "big.jsonl"
        r = run("apply", str(plan), "--gateway", gw.url, "--yes", "--ledger", str(led))
    failed = [rec for rec in read_ledger(led) if rec["event"] == "failed"]
    assert failed and all(len(rec["msg"]) <= enos.FOREIGN_TEXT_LIMIT for rec in failed)
    assert led.stat().st_size < 5000
    assert len(r.out) < 5000 and len(r.err) < 5000


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


TOKEN_ANSWERS = {
    "expire-huge": b'{"status":0,"data":{"accessToken":"TOK","expire":1' + b"0" * 400 + b"}}",
    "expire-absurd": b'{"status":0,"data":{"accessToken":"TOK","expire":1e300}}',
    "expire-negative": b'{"status":0,"data":{"accessToken":"TOK","expire":-5}}',
    "expire-inf": b'{"status":0,"data":{"accessToken":"TOK","expire":Infinity}}',
    "token-deep": b'{"status":0,"data":' + DEEP + b"}",
    "token-nested": b'{"status":0,"data":{"data":{"data":{"accessToken":"TOK"}}}}',
}


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


@pytest.mark.parametrize("mode", sorted(TOKEN_ANSWERS))
def test_n11_odd_token_answers_are_a_clean_token_error(run: Any, creds: None, mode: str) -> None:
    bad = Reply(200, TOKEN_ANSWERS[mode])
    with Gateway(lambda p, q, b: bad if "/token/" in p else None) as gw:
        with pytest.raises(ServiceError, match="token"):
            client(gw.url).token()
        r = run("doctor", "--gateway", gw.url, "--org", "o1", "--user", "u1")
    assert r.code == 1 and "problem" in r.out, r.out + r.err
    assert_harmless(r.out, r.err)


# -- newcomer 26: a wrong API version on apply --------------------------------------------------


def test_finding_26_a_404_on_trigger_says_wrong_api(tmp_path: Path, run: Any, sim_env: None) -> None:
    with Simulator(dialect=Dialect(api="v2.1"), accept_unknown_flows=True) as sim:
        plan = write_plan(tmp_path, TWO)  # target.api defaults to v2.0
        r = run(
            "apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", str(tmp_path / "l.jsonl")
        )
    assert r.code == 1
    assert "wrong target.api? run planrunner doctor" in r.out


def test_finding_7_a_token_error_without_a_code_says_no_none(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, cron_flows(1, 1))
    p = run_process(
        ["apply", str(plan), "--gateway", "http://127.0.0.1:9", "--yes"], env=SIM_ENV
    )
    assert p.returncode == 1
    assert "cannot get an access token" in p.stderr and "None" not in p.stderr
