"""Plan-language findings: zones, limits, saved plans given to plan, YAML marks, counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from planrunner import plan as planlib
from planrunner import protocol, saved
from testing import write_plan
from testing.gateway import TWO, Gateway, env
from testing.hostile import ONE, SECRET

NOW = "2026-12-03T00:00Z"


def _errors(run, path: Path, *more: str) -> list[str]:
    r = run("validate", "--now", NOW, str(path), *more)
    assert r.code == 2, r.out
    assert "Traceback" not in r.err
    return [line.split(": error: ", 1)[1] for line in r.err.splitlines()]


@pytest.mark.parametrize(
    ("zone", "offset"),
    [("GMT+8", "+08:00"), ("UTC-5", "-05:00"), ("GMT+5:30", "+05:30"), ("GMT+0545", "+05:45")],
)
def test_finding_6_gmt_offsets_are_accepted_as_enos_writes_them(
    tmp_path: Path, run, zone: str, offset: str
) -> None:
    path = write_plan(tmp_path, '  - {name: a, flowId: 1, at: ["2026-03-01 10:00"]}\n', zone=zone)
    r = run("plan", "--now", NOW, str(path), "--ledger", str(tmp_path / "l.jsonl"))
    assert r.code == 0, r.err
    assert f"2026-03-01T10:00:00{offset}" in r.out
    assert f"flowId 1, {zone})" in r.out


@pytest.mark.parametrize(
    ("zone", "message"),
    [
        ("utc", 'unknown time zone "utc" (did you mean "UTC"?)'),
        ("Asia/Beijing", 'unknown time zone "Asia/Beijing" (did you mean "Asia/Shanghai"?)'),
        (
            "+08:00",
            'unknown time zone "+08:00" (did you mean "GMT+8", "Asia/Shanghai" or "Etc/GMT-8"? '
            "Etc/ names invert the sign: Etc/GMT-8 is +08:00)",
        ),
        ("GMT+15", 'time zone "GMT+15" is out of range (GMT-14 .. GMT+14)'),
        ("Etc/GMT+8x", 'unknown time zone "Etc/GMT+8x"'),
    ],
)
def test_finding_6_zone_suggestions_never_have_another_offset(
    tmp_path: Path, run, zone: str, message: str
) -> None:
    path = write_plan(tmp_path, '  - {name: a, flowId: 1, at: ["2026-03-01 10:00"]}\n', zone=zone)
    assert _errors(run, path) == [f"timezone: {message}"]


def test_finding_17_a_saved_plan_given_to_plan_or_validate_says_apply_it(
    tmp_path: Path, run
) -> None:
    path = write_plan(tmp_path, '  - {name: a, flowId: 1, at: ["2026-03-01 10:00"]}\n')
    out = tmp_path / "saved.plan.json"
    assert run("plan", "--now", NOW, str(path), "--out", str(out), "--ledger", str(tmp_path / "l")).code == 0
    expected = [f"{out}:1:1: error: this is a saved plan: apply it with `planrunner apply {out}`"]
    for command in ("plan", "validate"):
        r = run(command, "--now", NOW, str(out))
        assert r.code == 2
        assert r.err.splitlines() == expected
    assert planlib.SAVED_KIND == saved.KIND


def test_finding_19_an_unclosed_quote_points_where_it_started(tmp_path: Path, run) -> None:
    path = write_plan(tmp_path, '  - name: a\n    flowId: 1\n    cron: "*/5 * * * *\n    from: 2026-01-01\n    count: 3\n')
    r = run("validate", str(path))
    assert r.code == 2
    line = path.read_text().splitlines().index('    cron: "*/5 * * * *') + 1
    assert r.err.splitlines() == [f"{path}:{line}:11: error: YAML: unclosed quote started here"]


@pytest.mark.parametrize(
    ("flow", "where", "message"),
    [
        (
            '{name: a, flowId: 1, cron: "0 0 1 1 *", from: "0001-01-01", count: 2}',
            "flows[0].from",
            '"0001-01-01" is before 2000-01-01 (plan times run from 2000 to 9999)',
        ),
        (
            '{name: a, flowId: 1, cron: "* * * * *", from: "0001-01-01", to: "9999-12-31"}',
            "flows[0].from",
            '"0001-01-01" is before 2000-01-01 (plan times run from 2000 to 9999)',
        ),
        (
            '{name: a, flowId: 1, at: ["0001-01-01T00:00:00+14:00"]}',
            "flows[0].at[0]",
            '"0001-01-01T00:00:00+14:00" is before 2000-01-01 (plan times run from 2000 to 9999)',
        ),
        (
            '{name: a, flowId: 1, at: ["0001-01-01T00:00:00Z"]}',
            "flows[0].at[0]",
            '"0001-01-01T00:00:00Z" is before 2000-01-01 (plan times run from 2000 to 9999)',
        ),
        (
            '{name: a, flowId: 1, at: ["1999-12-31T23:59:59Z"]}',
            "flows[0].at[0]",
            '"1999-12-31T23:59:59Z" is before 2000-01-01 (plan times run from 2000 to 9999)',
        ),
        (
            '{name: a, flowId: 1, at: [946684799999]}',
            "flows[0].at[0]",
            "946684799999 is before 2000-01-01; times are epoch milliseconds, not seconds",
        ),
        (
            '{name: a, flowId: 1, cron: "* * * * *", from: "2000-01-01", to: "9999-12-31"}',
            "flows[0].cron",
            'flow "a" yields more than 11,000,000 entries, over --max-triggers 110,000 '
            "(narrow its window, or split it)",
        ),
        (
            '{name: a, flowId: 1, timezone: Pacific/Kiritimati, at: ["9999-12-31T23:59:00Z"]}',
            "flows[0].at[0]",
            "9999-12-31T23:59:00.000Z is after year 9999 in Pacific/Kiritimati",
        ),
        (
            '{name: a, flowId: 1, timezone: Etc/GMT+12, cron: "0 0 * * *", from: 9999-12-01, to: 9999-12-31}',
            "flows[0].to",
            "9999-12-31T23:59 is after year 9999",
        ),
        (
            '{name: a, flowId: 1, cron: "0 0 1 1 *", from: "9999-01-01", count: 3}',
            "flows[0].count",
            'only 1 fire times from "from" to the end of 9999, fewer than count 3',
        ),
    ],
)
def test_n15_times_near_the_calendar_limits_are_located_errors(
    tmp_path: Path, run, flow: str, where: str, message: str
) -> None:
    path = write_plan(tmp_path, f"  - {flow}\n")
    for command in ("validate", "plan"):
        r = run(command, "--now", NOW, str(path))
        assert r.code == 2, r.err
        assert [line.split(": error: ", 1)[1] for line in r.err.splitlines()] == [f"{where}: {message}"]


def test_n15_the_calendar_end_itself_resolves(tmp_path: Path, run) -> None:
    path = write_plan(
        tmp_path,
        '  - {name: a, flowId: 1, cron: "59 23 31 12 *", from: 9990-01-01, to: 9999-12-31}\n'
        '  - {name: b, flowId: 2, timezone: Pacific/Kiritimati, at: ["9999-12-31T23:59"]}\n',
    )
    r = run("plan", "--now", NOW, str(path), "--ledger", str(tmp_path / "l.jsonl"))
    assert r.code == 0, r.err
    assert "last  9999-12-31T23:59:00+00:00  253402300740000" in r.out
    assert "9999-12-31T23:59:00+14:00" in r.out


def test_finding_18_at_times_moved_by_a_dst_gap_are_marked_in_text_and_json(
    tmp_path: Path, run
) -> None:
    path = write_plan(
        tmp_path,
        '  - {name: a, flowId: 1, at: ["2026-03-29 02:30", "2026-03-29 04:00", "2026-03-29T02:30:00+02:00"]}\n'
        '  - {name: c, flowId: 2, cron: "30 2 * * *", from: 2026-03-28, to: 2026-03-29}\n',
        zone="Europe/Berlin",
    )
    ledger = str(tmp_path / "l.jsonl")
    r = run("plan", "--now", NOW, str(path), "--ledger", ledger)
    assert r.code == 0, r.err
    marked = [line.split()[1] for line in r.out.splitlines() if "(moved by a DST gap)" in line]
    # The naive 02:30 (gap) is moved; the same instant written with its offset is not.
    assert marked == ["2026-03-29T03:00:00+02:00", "2026-03-29T03:00:00+02:00"]
    r = run("plan", "--now", NOW, str(path), "--ledger", ledger, "--format", "json")

    doc = json.loads(r.out)
    moved = {(e["flow"], e["time"]): e.get("moved") for e in doc["entries"]}
    assert moved == {
        ("a", "2026-03-29T03:00:00+02:00"): "dst-gap",
        ("a", "2026-03-29T04:00:00+02:00"): None,
        ("a", "2026-03-29T01:30:00+01:00"): None,
        ("c", "2026-03-28T02:30:00+01:00"): None,
        ("c", "2026-03-29T03:00:00+02:00"): "dst-gap",
    }
    assert doc["formatVersion"] == 1


def test_finding_29_disabled_flows_are_counted_and_listed(tmp_path: Path, run) -> None:
    path = write_plan(
        tmp_path,
        '  - {name: off, flowId: 1, enabled: false, cron: "0 2 * * *", from: 2026-01-01, to: 2026-01-31}\n',
    )
    r = run("validate", "--now", NOW, str(path))
    assert r.code == 0
    assert r.out.strip() == f"{path}: ok (0 entries in 0 flows; 1 flow disabled)"
    ledger = str(tmp_path / "l.jsonl")
    r = run("plan", "--now", NOW, str(path), "--ledger", ledger)
    assert r.out.splitlines()[-1] == "Plan: 0 entries; 1 flow disabled."
    md = run("plan", "--now", NOW, str(path), "--ledger", ledger, "--format", "markdown").out
    assert "0 entries: nothing; 1 flow disabled" in md
    assert "| off | 1 | UTC | disabled |" in md


def test_finding_31_text_counts_have_thousands_separators(tmp_path: Path, run) -> None:
    path = write_plan(
        tmp_path,
        '  - {name: a, flowId: 1, cron: "* * * * *", from: 2026-01-01, to: 2026-01-01}\n',
    )
    r = run("plan", "--now", NOW, str(path), "--ledger", str(tmp_path / "l.jsonl"))
    assert "flow a (flowId 1, UTC): 1,440 entries" in r.out
    assert "    ... 1,435 more pending ..." in r.out
    assert r.out.splitlines()[-1] == "Plan: 1,440 entries (1,440 pending)."
    assert run("validate", "--now", NOW, str(path)).out.strip() == f"{path}: ok (1,440 entries in 1 flow)"


def test_finding_31_plan_json_streams_in_chunks_with_the_same_bytes(tmp_path: Path) -> None:
    # The writer is handed pieces of at most a chunk of entries, never the whole document.
    from planrunner import checking, report

    path = write_plan(
        tmp_path, '  - {name: a, flowId: 1, cron: "* * * * *", from: 2026-01-01, to: 2026-01-31}\n'
    )
    plan, entries = checking.load_entries(str(path), 0, 100_000)
    result = report.PlanResult(plan, "l.jsonl", 0, entries, {})
    pieces: list[str] = []
    report.write_json(result, pieces.append)
    whole = "".join(pieces)
    assert len(entries) == 31 * 1440
    assert max(len(p) for p in pieces) < len(whole) / 2
    assert len(pieces) >= len(entries) // report.JSON_CHUNK
    assert whole == report.render_json(result)

    doc = json.loads(whole)
    assert [e["key"] for e in doc["entries"]] == [e.key for e in entries]


def test_finding_31_entry_keys_answer_membership_without_a_set(tmp_path: Path) -> None:
    from planrunner import checking
    from planrunner.resolve import EntryKeys

    path = write_plan(
        tmp_path,
        '  - {name: a, flowId: 1, cron: "0 * * * *", from: 2026-01-01, to: 2026-01-01}\n'
        '  - {name: b, flowId: 2, cron: "0 * * * *", from: 2026-01-01, to: 2026-01-01}\n',
    )
    _, entries = checking.load_entries(str(path), 0, 1000)
    keys = EntryKeys(entries)
    assert set(keys) == {e.key for e in entries} and len(keys) == 48
    assert all(e.key in keys for e in entries)
    first = entries[0]
    assert f"o2/{first.flow_id}/{first.trigger_time}" not in keys
    assert f"{first.org_id}/3/{first.trigger_time}" not in keys
    assert f"{first.org_id}/{first.flow_id}/{first.trigger_time + 1}" not in keys
    assert f"{first.org_id}/{first.flow_id}/0{first.trigger_time}" not in keys
    assert "garbage" not in keys and 5 not in keys  # type: ignore[comparison-overlap]


PEAK_RSS = """
import resource, sys
from planrunner.cli import main
code = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
raise SystemExit(code)
"""


def test_finding_31_plan_json_of_2_million_entries_stays_under_600_mb(tmp_path: Path) -> None:
    # A year of */5 over 20 flows in Europe/Berlin: 2,102,400 entries, about 500 MB of JSON.

    flows = "".join(
        f'  - {{name: five-{i:02d}, flowId: {7000 + i}, cron: "*/5 * * * *", from: 2025-01-01, to: 2025-12-31}}\n'
        for i in range(20)
    )
    path = write_plan(tmp_path, flows, zone="Europe/Berlin")
    argv = ["plan", str(path), "--format", "json", "--max-triggers", "110000", "--now", NOW]
    argv += ["--ledger", str(tmp_path / "l.jsonl")]
    with open(tmp_path / "out.json", "wb") as out:
        p = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, *argv],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    assert p.returncode == 0, p.stderr
    peak_kb = int(p.stderr.strip().splitlines()[-1])
    assert peak_kb < 600 * 1024, f"peak RSS {peak_kb // 1024} MB"
    with open(tmp_path / "out.json", "rb") as f:
        f.seek(-200, 2)
        assert b'"summary": {"pending": 2102400}' in f.read()


def test_finding_20_semantic_checks_run_on_flows_that_are_structurally_fine(
    tmp_path: Path, run
) -> None:
    path = write_plan(
        tmp_path,
        '  - {name: a, flowId: 1, cron: "0 25 * * *", from: 2026-01-01, to: 2026-01-31}\n'
        '  - {name: b, flowId: 2, cron: "*/0 * * * *", from: 2026-01-01, to: 2026-01-31}\n'
        '  - {name: c, flowId: 3, cron: "@reboot", from: 2026-01-01, to: 2026-01-31}\n'
        '  - {name: d, flowId: 4, cron: "0 1 * * *", from: 2026-01-01, to: 2026-01-31, count: 3}\n'
        '  - {name: e, flowId: 5, cron: "0 1 * * *", from: 2026-01-01, to: 2026-01-31, timezone: Asia/Beijing}\n'
        '  - {name: f, flowId: 6, at: ["2026-13-01"]}\n',
    )
    assert _errors(run, path) == [
        'flows[0].cron: bad hour field "25" (0-23)',
        'flows[1].cron: bad minute field "*/0" (step must be a number >= 1)',
        'flows[2].cron: unknown macro "@reboot" (known: @annually @daily @hourly @midnight @monthly @weekly @yearly)',
        'flows[3]: a cron flow needs exactly one of "to" or "count"',
        'flows[4].timezone: unknown time zone "Asia/Beijing" (did you mean "Asia/Shanghai"?)',
        'flows[5].at[0]: "2026-13-01" is not a valid date or time (month must be in 1..12)',
    ]


@pytest.mark.parametrize(
    ("server_zone", "warned"),
    [("America/New_York", True), ("Europe/Berlin", True), ("Asia/Shanghai", False), ("GMT+8", False), ("UTC", False)],
)
def test_n4_validate_names_a_server_zone_with_daylight_saving_as_a_risk(
    tmp_path: Path, run, server_zone: str, warned: bool
) -> None:
    path = write_plan(
        tmp_path,
        '  - {name: a, flowId: 1, at: ["2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"]}\n',
        server_zone=server_zone,
    )
    r = run("validate", "--now", NOW, str(path))
    assert r.code == 0
    warnings = [line.split(": warning: ", 1)[1] for line in r.err.splitlines()]
    expected = (
        f"target.serverTimezone: server zone {server_zone} has daylight saving: instance times "
        "in its repeated hour are ambiguous (the service writes them without an offset), so an "
        "entry there may not be found when its outcome is looked up"
    )
    assert warnings == ([expected] if warned else [])
    assert r.out.strip().endswith("1 warning)" if warned else "in 1 flow)")


def test_n4_a_zone_without_daylight_saving_in_the_plans_years_is_not_a_risk() -> None:

    # China kept daylight saving from 1986 to 1991 only.
    assert protocol.zone_has_dst("Asia/Shanghai", [1988])
    assert not protocol.zone_has_dst("Asia/Shanghai", range(2000, 2030))
    assert protocol.zone_has_dst("America/Santiago", [2026])


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


def test_env_references_are_expanded(tmp_path: Path, run, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(
        "version: 1\ntarget: {gateway: 'https://${GW_HOST}', orgId: '${ORG}', userId: u}\n"
        "flows: [{name: a, flowId: 9, at: [2026-01-01T00:00:00Z]}]\n"
    )
    monkeypatch.setenv("GW_HOST", "apigw.example.com")
    monkeypatch.setenv("ORG", "o-env")
    r = run("plan", str(plan), "--format", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["entries"][0]["key"] == "o-env/9/1767225600000"
