"""Secrets audit: runs that fail in every way, with -v and --log-format json, and a search of
everything they leave (stdout, stderr, logs, the ledger and its lock, the JSON output,
exception texts) for the app key, the secret, the access token and a database password.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from planrunner import enos
from planrunner.errors import PlanrunnerError
from planrunner.sim import Faults, Simulator
from testing import FAST_ENV, make_client, write_plan
from testing.hostile import KEY, ONE, SECRET, TOKEN, HostileGateway, envelope

DB_PASSWORD = "DBPASS-q8w7e6-password"
PG_URL = f"postgresql://user:{DB_PASSWORD}@127.0.0.1:1/db"
FLOWS = ONE + '  - {name: f2, flowId: 2, at: ["2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"]}\n'


def _echo_everything(path: str, body: bytes) -> tuple[int, bytes]:
    """A hostile gateway: every kind of answer, each echoing the credentials and the token."""
    text = f"key {KEY} secret {SECRET} token {TOKEN}"
    if "flowInstances" in path:
        return 503, text.encode()
    if b'"flowId":1' in body:
        return 400, text.encode()
    return envelope(62104, text)


def _token_echo(path: str, body: bytes) -> tuple[int, bytes]:
    return envelope(1003, f"encryption not valid for {KEY} / {SECRET} / {TOKEN}")


@pytest.fixture
def audit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    """Runs main([...]) in the given environment; collects all it printed and wrote."""
    from planrunner.cli import main

    seen: list[str] = []
    for k, v in FAST_ENV.items():
        monkeypatch.setenv(k, v)

    def run(env: dict[str, str], *argv: str) -> int:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        code = main(list(argv))
        out = capsys.readouterr()
        seen.extend([out.out, out.err])
        return code

    run.seen = seen  # type: ignore[attr-defined]
    return run


def test_no_secret_token_or_password_anywhere(
    tmp_path: Path, audit: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = {"ENOS_ACCESS_KEY": KEY, "ENOS_SECRET_KEY": SECRET}
    plan = write_plan(tmp_path, FLOWS)
    codes = []
    with (
        Simulator(
            access_key=KEY, secret_key=SECRET, faults=Faults.parse(["http-401=1.0"]), accept_unknown_flows=True
        ) as sim401,
        Simulator(
            access_key=KEY,
            secret_key=SECRET,
            faults=Faults.parse(
                ["http-500=0.3", "drop-after-create=0.3", "lookup-503=0.3"], seed=3
            ), accept_unknown_flows=True
        ) as flaky,
        HostileGateway(_echo_everything) as hostile,
        HostileGateway(_echo_everything, token_reply=_token_echo) as bad_token,
    ):
        runs = [
            ({"ENOS_ACCESS_KEY": "wrong-" + KEY, "ENOS_SECRET_KEY": SECRET}, sim401.url),  # bad key
            (
                {"ENOS_ACCESS_KEY": KEY, "ENOS_SECRET_KEY": SECRET + "-wrong"},
                sim401.url,
            ),  # bad secret
            (good, sim401.url),  # every trigger answered 401
            (good, flaky.url),  # 5xx, drops, lookup failures
            (good, hostile.url),  # a gateway echoing everything in bodies and messages
            (good, bad_token.url),  # token errors echoing everything
        ]
        for i, (env, url) in enumerate(runs):
            for fmt in (["--log-format", "json", "-v"], ["-vv"]):
                led = tmp_path / f"l{i}.jsonl"
                codes.append(
                    audit(
                        env,
                        "apply",
                        str(plan),
                        "--gateway",
                        url,
                        "--yes",
                        "--ledger",
                        str(led),
                        "--format",
                        "json",
                        *fmt,
                    )
                )
                codes.append(
                    audit(env, "plan", str(plan), "--ledger", str(led), "--format", "json", *fmt)
                )
                codes.append(
                    audit(env, "status", str(plan), "--ledger", str(led), "--gateway", url, *fmt)
                )
        # A PostgreSQL ledger that cannot be reached: its password is never shown.
        for fmt in (["--log-format", "json", "-v"], ["-vv"]):
            codes.append(
                audit(
                    good,
                    "apply",
                    str(plan),
                    "--gateway",
                    hostile.url,
                    "--yes",
                    "--ledger",
                    PG_URL,
                    *fmt,
                )
            )
            codes.append(
                audit(good, "plan", str(plan), "--ledger", PG_URL, "--format", "json", *fmt)
            )
        # Exception texts, straight from the client.
        texts: list[str] = []
        for url in (hostile.url, bad_token.url, sim401.url):
            client = make_client(url, credentials=enos.Credentials(KEY, SECRET))
            try:
                texts.append(repr(client.trigger(1, 1767225600000)))
                texts.append(repr(client.find_instance(1, 1767225600000)))
            except PlanrunnerError as e:
                texts.append(str(e))
            texts.append(repr(client))
    assert any(c != 0 for c in codes)
    files = [p.read_text(errors="replace") for p in tmp_path.iterdir() if p.is_file()]
    haystack = [*audit.seen, *files, *texts, caplog.text]
    assert json.dumps(haystack)  # everything collected is text
    for needle in (SECRET, KEY, TOKEN, DB_PASSWORD):
        hits = [
            h[max(0, h.find(needle) - 200) : h.find(needle) + 50] for h in haystack if needle in h
        ]
        assert not hits, (needle, hits[:2])
    # The audit saw the failures it meant to provoke.
    everything = "\n".join(audit.seen)
    for expected in ("1002", "1003", "401", "62104", "400"):
        assert expected in everything, expected


def test_n6_secrets_audit_with_every_service_string_hostile(
    tmp_path: Path, audit: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Every string the service returns (instance ids, statuses, the zone name, messages)
    # carries terminal escapes, line-initial workflow commands, the access token, the secret
    # and 100 KB: no command, output, log or file may pass any of it on.
    import re

    from planrunner.sim import Dialect

    caplog.set_level(logging.DEBUG)
    good = {"ENOS_ACCESS_KEY": KEY, "ENOS_SECRET_KEY": SECRET}
    plan = write_plan(tmp_path, FLOWS)
    led = str(tmp_path / "hostile.jsonl")
    with Simulator(
        access_key=KEY,
        secret_key=SECRET,
        dialect=Dialect(hostile=True),
        faults=Faults.parse(["504-after-create=0.5"], seed=5),  # lookups by Get and Search
        accept_unknown_flows=True,
    ) as sim:
        url = sim.url
        for fmt in (["--log-format", "json", "-v"], ["-vv"]):
            audit(good, "apply", str(plan), "--gateway", url, "--yes", "--ledger", led, "--format", "json", *fmt)
            audit(good, "apply", str(plan), "--gateway", url, "--yes", "--ledger", led, *fmt)
            for out in ("text", "json", "markdown"):
                audit(good, "plan", str(plan), "--ledger", led, "--format", out, *fmt)
                audit(good, "status", str(plan), "--ledger", led, "--gateway", url, "--format", out, *fmt)
            for out in ("text", "json"):
                audit(good, "doctor", str(plan), "--gateway", url, "--format", out, *fmt)
            audit(good, "ledger", "log", "--ledger", led, *fmt)
            audit(good, "ledger", "verify", "--ledger", led, *fmt)
        audit(good, "ledger", "export", "--ledger", led, str(tmp_path / "export.jsonl"))
        audit(good, "cancel", str(plan), "--ledger", led, "--gateway", url, "--yes", "-v")
        tokens = list(sim.state.gateway.tokens)
        assert sim.triggers(), "the audit sent triggers to the hostile service"
    assert tokens, "the simulator issued tokens"
    files = [p.read_text(errors="replace") for p in tmp_path.iterdir() if p.is_file()]
    haystack = "\n".join([*audit.seen, *files, caplog.text])
    pieces = {SECRET[i : i + 12] for i in range(len(SECRET) - 11)}
    for needle in (*pieces, KEY, *tokens):
        assert needle not in haystack, needle
    assert "\x1b" not in haystack
    assert not re.search(r"(?m)^\s*::", haystack), re.findall(r"(?m)^\s*::.{0,40}", haystack)[:3]
    assert "Z" * 1000 not in haystack  # the 100 KB padding was cut
    # ... and the hostile strings did reach the outputs, neutralised (the audit saw them).
    assert "INJECTED" in haystack
