"""Reading the service's answers: what counts as unknown, failed or done, and what of a
hostile answer may reach output, logs or the ledger (D4, D12, D13, N5-N7, N11, finding 26)."""

from __future__ import annotations

from pathlib import Path

import pytest

from planrunner import enos
from testing import write_plan
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
