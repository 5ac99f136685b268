"""One test per defect D1-D21 of the reliability probe (docs/reliability.md lists them).

Each test is the probe's reproduction, shrunk to run in a second or two; each fails on the
code the probe ran. The hostile gateway below is a tiny HTTP server on loopback that issues a
token and then answers API calls however a test tells it to.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from planrunner import enos, ledger, protocol, source, transport
from planrunner.errors import LedgerLocked
from planrunner.runs import apply as engine
from planrunner.sim import Dialect, Faults, Simulator
from testing import FAST_ENV, ROOT, SIM_ENV, crashed_intent, make_client, write_plan

SECRET = "SEKRET-abc123XYZ-secretvalue"
KEY = "AKEY-zzz987-accesskey"
TOKEN = "TOKEN-SENTINEL-7f3a9c"
ONE = '  - {name: f1, flowId: 1, at: ["2026-01-01T00:00:00Z"]}\n'
T0 = 1767225600000  # 2026-01-01T00:00:00Z

Reply = Callable[[str, bytes], tuple[int, bytes]]


def envelope(status: int, msg: str, data: Any = None) -> tuple[int, bytes]:
    return 200, json.dumps({"status": status, "msg": msg, "data": data}).encode()


class HostileGateway:
    """A loopback HTTP server: the token call gets ``token`` (or ``token_reply``), every other
    call ``reply(path, body)``. ``requests`` lists (path, headers, body) of everything it got."""

    def __init__(self, reply: Reply, token: Any = TOKEN, token_reply: Reply | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def _go(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((self.path, dict(self.headers), body))
                if "/token/" in self.path:
                    if token_reply is not None:
                        code, out = token_reply(self.path, body)
                    else:
                        code, out = envelope(0, "SUCCESS", {"accessToken": token, "expire": 7200})
                elif "/flows?" in self.path and "action=get&" in self.path:
                    # Get Flow, asked before a flow's first trigger: a flow with a task, so
                    # that the hostile answers reach the trigger they are meant for.
                    graph = json.dumps({"tasks": [{"taskId": "t1", "taskName": "t1"}]})
                    code, out = envelope(0, "Success", {"flowId": 1, "graph": graph})
                else:
                    code, out = reply(self.path, body)
                self.send_response(code)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _go

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HostileGateway:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def api_calls(self) -> list[str]:
        return [p for p, _, _ in self.requests if "/token/" not in p]


def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text and "Exception in thread" not in text, text[-2000:]


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENOS_ACCESS_KEY", KEY)
    monkeypatch.setenv("ENOS_SECRET_KEY", SECRET)
    for k, v in FAST_ENV.items():
        monkeypatch.setenv(k, v)


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


# -- D2, D3, D9, D20: the ledger file ----------------------------------------------------------


def test_d2_two_names_for_one_ledger_are_one_lock(tmp_path: Path, run, sim, sim_env) -> None:
    first = tmp_path / "a.jsonl"
    first.touch()
    second = tmp_path / "b.jsonl"
    os.link(first, second)
    held = ledger.Lock(str(first), "r-holder")
    held.acquire(0)
    try:
        with pytest.raises(LedgerLocked):
            ledger.Lock(str(second), "r-other").acquire(0)
        plan = write_plan(tmp_path, ONE)
        r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", str(second))
        assert r.code == 3, r.err
        assert "locked" in r.err
        assert sim.triggers() == []
    finally:
        held.release()
    r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", str(second))
    assert r.code == 0, r.err


def test_d3_a_symlinked_lock_file_is_never_followed(tmp_path: Path, run) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("IMPORTANT\nline2\n")
    led = tmp_path / "c.jsonl"
    (tmp_path / "c.jsonl.lock").symlink_to(victim)
    plan = write_plan(tmp_path, ONE)
    r = run("apply", str(plan), "--sim", "--yes", "--ledger", str(led))
    assert r.code == 3, r.err
    assert "symbolic link" in r.err
    assert victim.read_text() == "IMPORTANT\nline2\n"
    no_traceback(r.err)


def test_d3_a_symlinked_ledger_is_refused_and_its_target_not_created(tmp_path: Path, run) -> None:
    target = tmp_path / "elsewhere" / "real.jsonl"
    target.parent.mkdir()
    link = tmp_path / "led.jsonl"
    link.symlink_to(target)
    plan = write_plan(tmp_path, ONE)
    r = run("apply", str(plan), "--sim", "--yes", "--ledger", str(link))
    assert r.code == 3, r.err
    assert "symbolic link" in r.err
    assert not target.exists()


def test_ledger_and_lock_are_created_0600(tmp_path: Path, run) -> None:
    old = os.umask(0o022)
    try:
        plan = write_plan(tmp_path, ONE)
        led = tmp_path / "m.jsonl"
        assert run("apply", str(plan), "--sim", "--yes", "--ledger", str(led)).code == 0
    finally:
        os.umask(old)
    assert (led.stat().st_mode & 0o777, Path(f"{led}.lock").stat().st_mode & 0o777) == (
        0o600,
        0o600,
    )


def test_d9_a_torn_tail_that_cannot_be_cut_is_a_clean_exit_3(
    tmp_path: Path, run, sim, sim_env, monkeypatch
) -> None:
    plan = write_plan(tmp_path, ONE + '  - {name: f2, flowId: 2, at: ["2026-01-01T00:00:00Z"]}\n')
    led = tmp_path / "ro.jsonl"
    assert (
        run(
            "apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", str(led), "--flow", "f1"
        ).code
        == 0
    )
    with led.open("ab") as f:
        f.write(b'{"v":1,"event":"int')
    real = os.ftruncate

    def denied(fd: int, length: int) -> None:  # what a read-only or `chattr +a` file answers
        if os.readlink(f"/proc/self/fd/{fd}") == str(led):
            raise PermissionError(errno.EPERM, "Operation not permitted")
        real(fd, length)

    monkeypatch.setattr(os, "ftruncate", denied)
    before = len(sim.triggers())
    r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", str(led))
    assert r.code == 3, r.err
    assert f"{led}:3: cannot cut off the incomplete last line" in r.err
    assert len(sim.triggers()) == before
    no_traceback(r.err)


def test_d9_a_ledger_that_cannot_be_written_is_refused_before_sending(
    tmp_path: Path, run, sim, sim_env, monkeypatch
) -> None:
    led = tmp_path / "ro.jsonl"
    led.touch()
    real = os.open

    def read_only(path: Any, flags: int, *a: Any, **kw: Any) -> int:
        if str(path) == str(led) and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", read_only)
    r = run(
        "apply", str(write_plan(tmp_path, ONE)), "--gateway", sim.url, "--yes", "--ledger", str(led)
    )
    assert r.code == 3, r.err
    assert "cannot open the ledger for writing" in r.err
    assert sim.triggers() == []


@pytest.mark.parametrize("command", ["plan", "apply", "verify"])
def test_d20_a_fifo_ledger_is_refused_not_waited_on(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "f.jsonl"
    os.mkfifo(fifo)
    plan = write_plan(tmp_path, ONE)
    extra = ["--sim", "--yes"] if command == "apply" else []
    # ``ledger verify`` hung here before it read through the ledger's own safe opener.
    args = ["ledger", "verify"] if command == "verify" else [command, str(plan), *extra]
    p = subprocess.run(
        [sys.executable, "-m", "planrunner", *args, "--ledger", str(fifo)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert p.returncode == 3, p.stderr
    assert "FIFO" in p.stderr
    no_traceback(p.stderr)


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_d20_a_directory_ledger_is_exit_3(tmp_path: Path, run, command: str) -> None:
    d = tmp_path / "d.jsonl"
    d.mkdir()
    extra = ["--sim", "--yes"] if command == "apply" else []
    r = run(command, str(write_plan(tmp_path, ONE)), "--ledger", str(d), *extra)
    assert r.code == 3 and "directory" in r.err


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


# -- D5, D10, D14, D19: plan files -------------------------------------------------------------


@pytest.mark.parametrize(
    "gateway",
    [
        "ftp://${ENOS_SECRET_KEY}@gw",
        "http://${ENOS_SECRET_KEY}.example.com",
        "https://x:${ENOS_SECRET_KEY}@gw",
        "${ENOS_SECRET_KEY}",
    ],
)
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_d5_errors_name_the_variable_never_its_value(
    tmp_path: Path, run, monkeypatch, gateway: str, command: str
) -> None:
    monkeypatch.setenv("ENOS_SECRET_KEY", SECRET)
    plan = write_plan(tmp_path, ONE, gateway=gateway)
    r = run(command, str(plan))
    assert r.code == 2, r.out + r.err
    assert SECRET not in r.out + r.err
    assert "${ENOS_SECRET_KEY}" in r.err


def test_d5_apply_does_not_echo_an_expanded_gateway(tmp_path: Path, run, creds) -> None:
    plan = write_plan(tmp_path, ONE, gateway="http://${ENOS_SECRET_KEY}.example.com")
    r = run("apply", str(plan), "--yes", "--ledger", str(tmp_path / "l.jsonl"))
    assert r.code == 2 and SECRET not in r.out + r.err


@pytest.mark.parametrize("depth", [500, 600, 800, 990, 5000])
@pytest.mark.parametrize("style", ["[", "{a: "])
def test_d10_deep_yaml_is_a_located_error_not_a_crash(
    tmp_path: Path, run, depth: int, style: str
) -> None:
    close = "]" if style == "[" else "}"
    path = tmp_path / "deep.yaml"
    path.write_text(
        "version: 1\nx-deep: " + style * depth + "1" * (style != "[") + close * depth + "\n"
    )
    for command in ("validate", "plan"):
        r = run(command, str(path))
        assert r.code == 2, r.err
        assert f"{path}:2:" in r.err and "deeper than" in r.err


def test_d10_aliases_cannot_nest_past_the_limit(tmp_path: Path, run) -> None:
    # Each level is 30 deep as written; through the aliases the last one nests 240 deep.
    lines = ["version: 1", "x-0: &a0 " + "[" * 30 + "1" + "]" * 30]
    for i in range(1, 8):
        lines.append(f"x-{i}: &a{i} " + "[" * 30 + f"*a{i - 1}" + "]" * 30)
    path = tmp_path / "deep-alias.yaml"
    path.write_text("\n".join(lines) + "\n")
    r = run("validate", str(path))
    assert r.code == 2 and "deeper than" in r.err, r.err


@pytest.mark.parametrize(
    "text",
    [
        'version: 1\ntarget: !!python/object:subprocess.Popen {gateway: "https://gw.example.com", orgId: o1, userId: u1}\n'
        'flows:\n  - {name: a, flowId: 1, at: ["2026-01-01T00:00:00Z"]}\n',
        'version: 1\ntarget: {gateway: "https://gw.example.com", orgId: o1, userId: u1}\n'
        'flows: !!python/object/apply:os.system\n  - {name: a, flowId: 1, at: ["2026-01-01T00:00:00Z"]}\n',
        'version: 1\nx-a: !!python/object/apply:os.system ["true"]\ntarget: {gateway: "https://gw.example.com", orgId: o1, userId: u1}\n'
        'flows:\n  - {name: a, flowId: 1, at: ["2026-01-01T00:00:00Z"]}\n',
        'version: 1\ntarget: !custom {gateway: "https://gw.example.com", orgId: o1, userId: u1}\n'
        "flows:\n  - !!set {a}\n",
    ],
)
def test_d14_tags_on_sequences_and_mappings_are_refused(tmp_path: Path, run, text: str) -> None:
    path = tmp_path / "t7.yaml"
    path.write_text(text)
    r = run("validate", str(path))
    assert r.code == 2, r.out
    assert "unsupported tag" in r.err


def test_d19_a_plain_document_past_the_node_limit_says_which_limit(
    tmp_path: Path, run, monkeypatch
) -> None:
    monkeypatch.setattr(source, "MAX_NODES", 1000)
    path = write_plan(
        tmp_path, "  - {name: a, flowId: 1, at: [" + ", ".join(["1767225600"] * 2000) + "]}\n"
    )
    r = run("validate", str(path))
    assert r.code == 2
    assert "more than 1,000 nodes" in r.err and "node limit" in r.err
    assert "alias" not in r.err


@pytest.mark.parametrize("where", ["gateway", "name", "cron"])
def test_d19_a_huge_value_is_not_echoed(tmp_path: Path, run, where: str) -> None:
    big = "A" * 5_000_000
    flows = {
        "gateway": ONE,
        "name": f'  - {{name: "{big}", flowId: 1, at: ["2026-01-01T00:00:00Z"]}}\n',
        "cron": f'  - {{name: a, flowId: 1, cron: "{big}", from: 2026-01-01, count: 1}}\n',
    }[where]
    plan = write_plan(
        tmp_path, flows, gateway=f"ftp://{big}" if where == "gateway" else "https://gw.example.com"
    )
    r = run("validate", str(plan))
    assert r.code == 2
    assert len(r.err) < 4000, len(r.err)


def test_d19_a_file_past_the_size_limit_says_which_limit(tmp_path: Path, run) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:
        f.truncate(64 * 1024 * 1024 + 10)
    r = run("validate", str(path))
    assert r.code == 2 and "64 MiB" in r.err


# -- D6, D11, D16, D17, D21: the engine --------------------------------------------------------


def test_d6_a_request_still_in_flight_is_not_sent_again(
    tmp_path: Path, run, sim_env, monkeypatch
) -> None:
    # A killed run's request lands at the service 1 s after its intent; with no duplicate
    # rule at the service, a re-send before then would be a second instance.
    monkeypatch.setenv("PLANRUNNER_IN_FLIGHT_SECONDS", "2")
    with Simulator(dialect=Dialect(duplicate="none"), accept_unknown_flows=True) as sim:
        plan = write_plan(tmp_path, ONE)
        led = tmp_path / "l.jsonl"
        crashed_intent(led, T0)
        sent_at = time.time()
        late = threading.Timer(
            max(0.0, sent_at + 1.0 - time.time()), lambda: make_client(sim.url).trigger(1, T0)
        )
        late.start()
        try:
            r = run(
                "apply",
                str(plan),
                "--gateway",
                sim.url,
                "--yes",
                "--ledger",
                str(led),
                "--format",
                "json",
            )
        finally:
            late.join()
        created = [t for t in sim.triggers() if t["flowInstanceId"]]
    assert r.code == 0, r.err
    assert len(created) == 1, created
    assert json.loads(r.out)["summary"] == {"reconciled": 1}


@pytest.mark.parametrize("token", ["TOK\nEvil: 1", " TOK", "T\u20acST", 12345, ""])
def test_d11_an_unusable_token_sends_and_records_nothing(
    tmp_path: Path, run, creds, token: Any
) -> None:
    with HostileGateway(
        lambda p, b: envelope(0, "ok", {"flowInstanceId": "1-x"}), token=token
    ) as gw:
        plan = write_plan(tmp_path, ONE)
        led = tmp_path / "t.jsonl"
        r = run("apply", str(plan), "--gateway", gw.url, "--yes", "--ledger", str(led))
        assert r.code == 1, r.err
        assert gw.api_calls() == []
    assert [rec for rec in read_ledger(led) if rec["event"] == "intent"] == []
    no_traceback(r.err)
    assert "internal error" not in r.err


def test_d11_bad_secret_leaves_no_unknown_entries(tmp_path: Path, run, sim, monkeypatch) -> None:
    monkeypatch.setenv("ENOS_ACCESS_KEY", SIM_ENV["ENOS_ACCESS_KEY"])
    monkeypatch.setenv("ENOS_SECRET_KEY", "wrong")
    plan = write_plan(tmp_path, ONE + '  - {name: f2, flowId: 2, at: ["2026-01-01T00:00:00Z"]}\n')
    led = tmp_path / "b.jsonl"
    r = run(
        "apply",
        str(plan),
        "--gateway",
        sim.url,
        "--yes",
        "--ledger",
        str(led),
        "--concurrency",
        "8",
    )
    assert r.code == 1 and "1003" in r.err
    r = run("plan", str(plan), "--ledger", str(led), "--format", "json")
    assert json.loads(r.out)["summary"] == {"pending": 2}


def test_d11_a_token_failure_mid_run_closes_the_intent_as_aborted(
    tmp_path: Path, run, creds
) -> None:
    calls = {"token": 0}

    def token_reply(path: str, body: bytes) -> tuple[int, bytes]:
        calls["token"] += 1
        if calls["token"] == 1:
            return envelope(0, "SUCCESS", {"accessToken": TOKEN, "expire": 7200})
        return envelope(1005, "token service internal error")

    with HostileGateway(lambda p, b: (401, b"expired"), token_reply=token_reply) as gw:
        plan = write_plan(tmp_path, ONE)
        led = tmp_path / "a.jsonl"
        r = run("apply", str(plan), "--gateway", gw.url, "--yes", "--ledger", str(led))
    assert r.code == 1, r.err
    events = [rec["event"] for rec in read_ledger(led)]
    assert events == ["intent", "aborted"], events
    r = run("plan", str(plan), "--ledger", str(led), "--format", "json")
    assert json.loads(r.out)["summary"] == {"pending": 1}


def test_d16_entries_interrupted_before_sending_are_pending_not_retry(tmp_path: Path, run) -> None:
    led = tmp_path / "l.jsonl"
    crashed_intent(led, T0, "r1.1")
    ref = ledger.record(
        "aborted",
        f"o1/1/{T0}",
        1,
        "o1",
        T0,
        "r1.1",
        reason=engine.NOT_SENT,
        gateway="http://127.0.0.1",
    )
    with led.open("ab") as f:
        f.write(ledger.encode([ref]))
    r = run("plan", str(write_plan(tmp_path, ONE)), "--ledger", str(led), "--format", "json")
    doc = json.loads(r.out)
    assert doc["summary"] == {"pending": 1}
    assert doc["entries"][0]["error"] is None


def test_d17_lookups_are_retried_within_the_run(tmp_path: Path, run, sim_env) -> None:
    with Simulator(faults=Faults.parse(["lookup-503@1,2,3"]), accept_unknown_flows=True) as sim:
        plan = write_plan(tmp_path, ONE)
        led = tmp_path / "l.jsonl"
        crashed_intent(led, T0)
        r = run(
            "apply",
            str(plan),
            "--gateway",
            sim.url,
            "--yes",
            "--ledger",
            str(led),
            "--format",
            "json",
        )
    assert r.code == 0, r.err
    assert json.loads(r.out)["summary"] == {"triggered": 1}


def test_d18_the_simulator_binds_to_loopback_only(run) -> None:
    with pytest.raises(ValueError, match="loopback"):
        Simulator(host="0.0.0.0", accept_unknown_flows=True)
    r = run("sim", "--host", "0.0.0.0", "--port", "0")
    assert r.code == 2 and "loopback" in r.err


class _DeadGateway:
    """A client whose gateway never answers: every trigger times out, every lookup fails."""

    where = "https://dead.example.com"
    stopped = None  # the client never stops on its own here: the breaker does

    def __init__(self) -> None:
        self.triggers = 0

    def get_flow(self, flow_id: int) -> enos.Answer:
        return enos.Answer(enos.Kind.UNKNOWN, None, "read timeout after sending")

    def clean(self, text: str) -> str:
        return text

    def trigger(self, flow_id: int, trigger_time: int) -> enos.Answer:
        self.triggers += 1
        return enos.Answer(enos.Kind.UNKNOWN, None, "read timeout after sending")

    def find_instance(self, flow_id: int, trigger_time: int) -> enos.Lookup:
        return enos.Lookup(None, None, "get flow instance: read timeout after sending")

    def close(self) -> None:
        pass


def test_d21_a_dead_gateway_stops_the_run_after_5_timeouts(tmp_path: Path) -> None:
    from planrunner.resolve import Entry

    client = _DeadGateway()
    entries = [
        Entry(T0 + i * 60_000, 1, "f1", "o1", 0) for i in range(20)
    ]
    with ledger.Writer(str(tmp_path / "l.jsonl")) as w:
        runner = engine.Runner(client, w, ledger.Folded(), engine.Options(), "r1", gateway="x")  # type: ignore[arg-type]
        outcomes = runner.run(entries)
    assert client.triggers == engine.GATEWAY_DOWN_AFTER
    assert runner.fatal is not None and "looks down" in str(runner.fatal)
    assert sum(1 for o in outcomes.values() if o.status == "unknown") == engine.GATEWAY_DOWN_AFTER


# -- D7: a full disk ---------------------------------------------------------------------------


def test_d7_a_disk_that_fills_mid_run_stops_cleanly_with_the_report(
    tmp_path: Path, run, sim, sim_env, monkeypatch
) -> None:
    from testing import cron_flows

    real = ledger.file._write_all
    writes = {"n": 0}

    def filling(fd: int, data: bytes) -> None:
        writes["n"] += 1
        if writes["n"] > 12:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(ledger.file, "_write_all", filling)
    plan = write_plan(tmp_path, cron_flows(4, 10))
    led = tmp_path / "full.jsonl"
    r = run(
        "apply",
        str(plan),
        "--gateway",
        sim.url,
        "--yes",
        "--ledger",
        str(led),
        "--concurrency",
        "4",
    )
    assert r.code == 3, r.err
    assert "No space left on device" in r.err
    assert "Apply:" in r.out  # the report
    no_traceback(r.err)
    # Nothing was sent without its durable intent.
    intents: dict[tuple[int, int], int] = {}
    for rec in read_ledger(led) if led.read_bytes().endswith(b"\n") else []:
        if rec["event"] == "intent":
            k = (rec["flowId"], rec["triggerTime"])
            intents[k] = intents.get(k, 0) + 1
    sent: dict[tuple[int, int], int] = {}
    for t in sim.triggers():
        k = (t["flowId"], t["triggerTime"])
        sent[k] = sent.get(k, 0) + 1
    assert all(intents.get(k, 0) >= 1 for k in sent), (sent, intents)
    monkeypatch.setattr(ledger.file, "_write_all", real)
    r = run("apply", str(plan), "--gateway", sim.url, "--yes", "--ledger", str(led))
    assert r.code == 0, r.err


def test_d7_a_disk_full_before_the_run_is_a_clean_exit_3(
    tmp_path: Path, run, sim, sim_env, monkeypatch
) -> None:
    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    r = run(
        "apply",
        str(write_plan(tmp_path, ONE)),
        "--gateway",
        sim.url,
        "--yes",
        "--ledger",
        str(tmp_path / "l.jsonl"),
    )
    assert r.code == 3, r.err
    assert "No space left on device" in r.err
    assert sim.triggers() == []
    no_traceback(r.err)


# -- D15: signals during start-up --------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_d15_a_signal_while_waiting_for_the_lock_exits_130(tmp_path: Path, sig: int) -> None:
    plan = write_plan(tmp_path, ONE)
    led = tmp_path / "l.jsonl"
    held = ledger.Lock(str(led), "r-holder")
    held.acquire(0)
    try:
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "planrunner",
                "apply",
                str(plan),
                "--sim",
                "--yes",
                "--ledger",
                str(led),
                "--lock-timeout",
                "60",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        # Start-up has reached the lock when the process holds the lock file open.
        while time.monotonic() < deadline and p.poll() is None:
            fds = os.listdir(f"/proc/{p.pid}/fd")
            if any(os.path.realpath(f"/proc/{p.pid}/fd/{fd}") == str(led) + ".lock" for fd in fds):
                break
            time.sleep(0.02)
        p.send_signal(sig)
        _out, err = p.communicate(timeout=60)
    finally:
        held.release()
    assert p.returncode == 130, (p.returncode, err)
    assert "interrupted" in err
    no_traceback(err)


_IMPORT_SIGNAL = """
import importlib.abc, os, runpy, signal, sys
MODULE, SIG = sys.argv[1], getattr(signal, sys.argv[2])
class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == MODULE:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), SIG)
        return None
sys.meta_path.insert(0, Hook())
sys.argv = ["planrunner", *sys.argv[3:]]
runpy.run_module("planrunner", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    "module", ["planrunner.cli", "requests", "planrunner.runs.apply", "planrunner.resolve"]
)
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_d15_a_signal_during_imports_exits_130_without_a_traceback(
    tmp_path: Path, module: str, sig: str
) -> None:
    plan = write_plan(tmp_path, ONE)
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            _IMPORT_SIGNAL,
            module,
            sig,
            "apply",
            str(plan),
            "--sim",
            "--yes",
            "--ledger",
            str(tmp_path / "l.jsonl"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert p.returncode == 130, (p.returncode, p.stderr)
    assert "interrupted" in p.stderr
    no_traceback(p.stderr)


# -- D8: typed ledger records ------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("key", ["a"]),
        ("key", {"a": 1}),
        ("key", 5),
        ("event", ["intent"]),
        ("attempt", ["a"]),
        ("attempt", {"a": 1}),
        ("flowId", "9"),
        ("triggerTime", 1.5),
        ("v", True),
    ],
)
def test_d8_records_of_the_wrong_type_are_exit_3_with_their_line(
    tmp_path: Path, run, field: str, value: Any
) -> None:
    led = tmp_path / "l.jsonl"
    good = ledger.record(
        "intent", f"o1/1/{T0}", 1, "o1", T0, "a.1", flow="f1", run="a", gateway="x"
    )
    bad = {**good, field: value}
    led.write_bytes(ledger.encode([good, bad]))
    plan = write_plan(tmp_path, ONE)
    r = run("plan", str(plan), "--ledger", str(led))
    assert r.code == 3, r.err
    assert f"{led}:2:" in r.err
    if field != "v":
        assert field in r.err
    no_traceback(r.err)
